"""Image identity in the session: pictures that changed under the same name, and their annotations under review.

The working file records each image's ``file_sha256`` (see
:mod:`annotator.data.identity`; the accept path records it). When a folder
opens, :class:`IdentityReview` compares every recorded digest with the file on
disk, on a worker thread (:func:`annotator.data.identity.find_changed`: file
bytes at disk speed, files already hashed in this process only ``stat``-ed).
An image whose content changed is **flagged** (its row in the image list,
with the reason as tooltip) and the annotations made on the old picture are
**under review** (marked in the annotations panel). They are never silently
treated as valid: an accept on that image is refused by
:meth:`annotator.data.document.Dataset.ensure_image` until the user either

* **keeps** them (:meth:`IdentityReview.keep`: the new picture's digest is
  recorded, the document saved; the masks are then the user's call), or
* **deletes** them (:meth:`IdentityReview.delete`: one undo step; undoing it
  brings them back, still under review).

An image stays flagged while any annotation made on the old picture is still
in the document and the user has not kept them. Images whose file is missing
are reported in the status bar only (they are not in the image list).

The image loader hashes every image it reads (after sending it on), so the
accept path finds its digest memoised and reads no file on the GUI thread,
even while this check is still hashing the folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from annotator.data.identity import ImageChange, find_changed
from annotator.session.rows import AnnotationRow, ImageRow

log = logging.getLogger(__name__)


class DeleteUnderReviewCommand(QUndoCommand):
    """Delete the annotations made on an earlier picture, in one undo step (one save)."""

    def __init__(self, document, annotations: Sequence) -> None:
        super().__init__(f"Delete {len(annotations)} annotation(s) made on an earlier picture")
        self.document = document
        self.annotations = list(annotations)

    def redo(self) -> None:
        self.document.apply_remove_annotations([a.id for a in self.annotations])

    def undo(self) -> None:
        self.document.apply_add_annotations(self.annotations)


class KeepOnNewPictureCommand(QUndoCommand):
    """Keep a changed image's annotations on its new picture: its new digest recorded (undo: the old one, flagged again)."""

    def __init__(self, review: "IdentityReview", change: ImageChange) -> None:
        super().__init__(f"Keep the annotations of '{change.file_name}' on its new picture")
        self.review = review
        self.change = change

    def redo(self) -> None:
        self.review._set_kept(self.change, kept=True)

    def undo(self) -> None:
        self.review._set_kept(self.change, kept=False)


class _Worker:
    """One daemon thread running queued calls in order; :meth:`stop` joins it."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sam-identity", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - a hashing failure must not kill the thread
                log.exception("image identity check failed")

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None


class IdentityReview(QObject):
    """Flags for changed pictures and the review of their annotations. See the module notes.

    ``edits`` is the session's :class:`~annotator.session.document_edits.DocumentEdits`
    (the document and its apply methods), ``images`` the navigator (the
    folder's paths and the image on show).
    """

    imageFlagChanged = Signal(object)  # the Path whose flag changed
    annotationsChanged = Signal()  # review marks of the current image may have changed
    statusMessage = Signal(str, int)
    checked = Signal()  # the check of the folder just opened is done
    _found = Signal(int, object)  # (from the worker) job id, list[ImageChange]

    def __init__(self, edits, images, undo_stack: QUndoStack, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._edits = edits
        self._images = images
        self._undo = undo_stack
        self._changes: Dict[Path, ImageChange] = {}
        self._job = 0
        self._cancel = threading.Event()
        self._worker = _Worker()
        self._found.connect(self._on_found)

    # -- checking ----------------------------------------------------------------------------

    def start(self) -> None:
        """Check the document just opened against its image files (in the background)."""
        self._cancel.set()
        self._cancel = cancel = threading.Event()
        self._job += 1
        job = self._job
        flagged = list(self._changes)
        self._changes = {}
        for path in flagged:
            self.imageFlagChanged.emit(path)
        dataset = self._edits.dataset
        records = dataset.image_digest_records() if dataset is not None else []
        if not records:
            self.checked.emit()
            return
        self._worker.submit(lambda: self._found.emit(job, find_changed(records, cancel=cancel)))

    def _on_found(self, job: int, changes: List[ImageChange]) -> None:
        if job != self._job:
            return  # another folder opened meanwhile
        self._changes = {Path(c.path): c for c in changes if c.annotation_ids}
        for path in self._changes:
            self.imageFlagChanged.emit(path)
        self.annotationsChanged.emit()
        if changes:
            first = changes[0].describe()
            more = f" (and {len(changes) - 1} more image(s))" if len(changes) > 1 else ""
            self.statusMessage.emit(f"{first}{more}", 0)
            for c in changes:
                log.warning("image identity: %s", c.describe())
        self.checked.emit()

    # -- state -------------------------------------------------------------------------------

    def change_for(self, path: Optional[Path]) -> Optional[ImageChange]:
        """The change of ``path`` while it is flagged (annotations of the old picture left), else ``None``."""
        change = self._changes.get(Path(path)) if path is not None else None
        dataset = self._edits.dataset
        if change is None or dataset is None:
            return None
        return change if any(i in dataset.annotations for i in change.annotation_ids) else None

    def under_review(self, annotation_id: int) -> bool:
        change = self.change_for(self._images.current_path)
        return change is not None and annotation_id in change.annotation_ids

    def image_row(self, row: ImageRow) -> ImageRow:
        """``row``, with the reason in ``review`` when its image is flagged."""
        change = self.change_for(row.path)
        return replace(row, review=change.describe()) if change is not None else row

    def annotation_rows(self, rows: Sequence[AnnotationRow]) -> List[AnnotationRow]:
        """``rows`` of the current image, those made on an earlier picture marked ``review``."""
        change = self.change_for(self._images.current_path)
        if change is None:
            return list(rows)
        return [replace(r, review=True) if r.id in change.annotation_ids else r for r in rows]

    # -- the user's answers --------------------------------------------------------------------

    def keep(self, path: Optional[Path] = None) -> bool:
        """Keep the annotations of ``path`` (default: the image on show) on its new picture; saved at once, undoable."""
        path = path if path is not None else self._images.current_path
        change = self.change_for(path)
        if change is None or change.current is None:
            return False
        self._undo.push(KeepOnNewPictureCommand(self, change))
        self.statusMessage.emit(f"Kept the annotations of '{change.file_name}' on its new picture", 4000)
        return True

    def _set_kept(self, change: ImageChange, kept: bool) -> None:
        """Record the new picture's digest and clear the flag (``kept``), or put the old digest and the flag back."""
        self._edits.dataset.set_image_digest(change.image_id, change.current if kept else change.recorded)
        if kept:
            self._changes.pop(Path(change.path), None)
        else:
            self._changes[Path(change.path)] = change
        self._edits.save()
        self.imageFlagChanged.emit(Path(change.path))
        self.annotationsChanged.emit()

    def delete(self, path: Optional[Path] = None) -> int:
        """Delete the annotations of ``path`` (default: the image on show) made on its old picture (undoable)."""
        path = path if path is not None else self._images.current_path
        change = self.change_for(path)
        dataset = self._edits.dataset
        if change is None:
            return 0
        anns = [dataset.annotations[i] for i in change.annotation_ids if i in dataset.annotations]
        self._undo.push(DeleteUnderReviewCommand(self._edits, anns))
        self.imageFlagChanged.emit(Path(path))
        self.statusMessage.emit(f"Deleted {len(anns)} annotation(s) made on the old '{change.file_name}'", 4000)
        return len(anns)

    def shutdown(self) -> None:
        """Stop the worker (joins its thread). Idempotent."""
        self._cancel.set()
        self._job += 1
        self._worker.stop()
