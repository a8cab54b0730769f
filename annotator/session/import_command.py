"""File → Import's undoable step: :class:`ImportCommand` (see :mod:`annotator.session.importing`).

The records a plan adds are added on redo (the first time with
:func:`~annotator.data.formats.importing.apply_plan`, later the same records
with the same ids) and removed on undo. Images only the source holds
(labelme ``imageData``) are written before the command is pushed (on the
import thread); undo deletes each one that still has the digest of what was
written and that the working file no longer records; redo writes those back,
read from their JSON file again. No image bytes are kept: ``(path,
EmbeddedImage)`` pairs only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

from PySide6.QtGui import QUndoCommand

from annotator.data.atomic import atomic_write_bytes
from annotator.data.formats.importing import ImportChanges, ImportPlan, apply_plan
from annotator.data.formats.plan import EmbeddedChanged, EmbeddedImage
from annotator.data.image_states import DONE

__all__ = ["ImportCommand"]


class ImportCommand(QUndoCommand):
    """One import as one user step (see the module notes).

    ``edits``: the session's DocumentEdits; ``listing``: a
    :class:`~annotator.session.image_listing.FolderImages` that lists the
    images the import writes (``None``: the files are still written and
    removed, the list is not kept in step). ``written``: ``(path, embedded)`` of
    each image this import wrote (labelme ``imageData``), already written
    when the command is pushed (:func:`~annotator.data.formats.importing.write_embedded`,
    whose plan it is given); ``None`` (a plan not written yet): the first
    redo writes them itself.
    """

    def __init__(self, edits, plan: ImportPlan, listing=None,
                 written: Optional[List[Tuple[Path, EmbeddedImage]]] = None) -> None:
        self._text = f"Import {plan.fmt} labels"
        super().__init__(self._text)
        self.edits = edits
        self.plan = plan
        self.listing = listing
        self.changes: Optional[ImportChanges] = None
        self.report: List[str] = []
        self._prewritten = written
        self.written: List[Tuple[Path, EmbeddedImage]] = []
        self._deleted: List[Tuple[Path, EmbeddedImage]] = []  # written, then deleted by undo: redo writes them again
        self._removed_images: list = []
        self._removed_annotations: list = []
        self._removed_categories: list = []

    def redo(self) -> None:
        ds = self.edits.dataset
        if self.changes is None:  # the first time: add the plan
            if self._prewritten is not None:
                self.changes, self.report = apply_plan(ds, self.plan, embedded_written=True)
                self.written = list(self._prewritten)
            else:
                absent = [(Path(img.path), img.data) for img in self.plan.images
                          if img.data is not None and not os.path.lexists(img.path)]
                self.changes, self.report = apply_plan(ds, self.plan)
                self.written = [(path, emb) for path, emb in absent if emb.matches(path)]
            self._prewritten = None
            self._list([path for path, _ in self.written])
        else:  # again after an undo: the same records, same ids
            for rec in self._removed_images:
                ds.restore_image(rec)
            for removed in reversed(self._removed_categories):
                self.edits.apply_restore_category(removed)
            for image_id, _old in self.changes.states:
                ds.set_image_state(image_id, DONE)
            for ann in self._removed_annotations:
                ds.add_annotation(ann)
        self.edits.apply_changed(self.changes.images_touched)  # one save, one refresh
        if self._deleted:
            self._write_again()

    def undo(self) -> None:
        ds, changes = self.edits.dataset, self.changes
        for image_id, old in reversed(changes.states):
            ds.set_image_state(image_id, old)
        self._removed_annotations = self.edits.apply_remove_annotations(
            [aid for aid in changes.annotations if aid in ds.annotations]
        )
        self._removed_categories = [
            self.edits.apply_remove_category(cid, None) for cid in reversed(changes.categories) if cid in ds.categories
        ]
        self.edits.apply_changed(changes.images_touched)
        # the image records it listed go too (an image annotated since stays)
        self._removed_images = [ds.remove_image(iid) for iid in reversed(changes.images)
                                if iid in ds.images and not ds.annotations_for(iid)][::-1]
        if self._removed_images:
            self.edits.document_changed()
        self._delete_written()

    def _list(self, paths: List[Path]) -> None:
        if self.listing is not None and paths:
            self.listing.add(paths)

    def _delete_written(self) -> None:
        """Delete the images this import wrote that are unchanged and no longer recorded; say which are kept."""
        ds = self.edits.dataset
        kept, gone, self._deleted = [], [], []
        for path, emb in self.written:
            if ds.image_by_name(ds.relative_name(path)) is not None:
                kept.append(f"{path.name} kept (the working file still records it)")
            elif os.path.lexists(path) and not emb.matches(path):
                kept.append(f"{path.name} kept (changed since the import wrote it)")
            elif os.path.lexists(path) and not _still_held(emb):  # deleting it would lose the only copy
                kept.append(f"{path.name} kept ({emb.source.name} no longer holds it)")
            else:  # (one deleted meanwhile: only the list is put right; redo writes it again all the same)
                gone.append(path)
                self._deleted.append((path, emb))
        if self.listing is not None and gone:
            self.listing.remove(gone)  # (moves off the image on show first if it is one)
        failed = []
        for path, emb in list(self._deleted):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                kept.append(f"{path.name} kept (cannot delete it: {exc.strerror or exc})")
                self._deleted.remove((path, emb))
                failed.append(path)
        self._list(failed)  # still there: listed again
        self.setText(self._text + (f"; {', '.join(kept)}" if kept else ""))

    def _write_again(self) -> None:
        """Redo: write the images undo deleted (never over a file), read from their JSON files, and list them again."""
        notes, listed = [], []
        for path, emb in self._deleted:
            if os.path.lexists(path) and not emb.matches(path):
                notes.append(f"{path.name} is another file now; not written")
                continue
            try:
                if not os.path.lexists(path):
                    atomic_write_bytes(path, emb.read())
                listed.append(path)
            except EmbeddedChanged:
                notes.append(f"{path.name} not written ({emb.source.name} changed since the import read it)")
            except OSError as exc:
                notes.append(f"cannot write {path.name} ({exc.strerror or exc})")
        self._deleted = []
        self._list(listed)
        self.setText(self._text + (f"; {', '.join(notes)}" if notes else ""))


def _still_held(emb) -> bool:
    """Whether the label file an image was written from still holds that image (redo can write it again)."""
    try:
        emb.read()
    except (EmbeddedChanged, OSError, ValueError):
        return False
    return True
