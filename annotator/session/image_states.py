"""Image states (to do, done, skipped), "next to do" and where to resume: the session's side.

:class:`ImageStates` (``session.states``) marks the current image to do, done
or skipped (one undo step each, saved like an accept), tells each list row
its state (:func:`annotator.session.rows.list_state` adds *unusable*) and
finds the next image to do. The state is stored in the working file (see
:mod:`annotator.data.image_states`): marking an image the document does not
list yet (no annotation) adds its record, so a negative (done, zero
annotations) is listed; undoing that mark removes the record again.

Resuming: the session asks a :class:`ResumeStore` (the window gives one kept
in the user's settings, :mod:`annotator.ui.resume`) which image of a working
file the user was on, opens there, and tells the store on every image change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from annotator.data.image_states import DONE, SKIPPED, STATE_FIELD, STATES, TODO, effective_state
from annotator.session.gate import ActionGate, waits_for_accept
from annotator.session.read_only import read_only_reason
from annotator.session.rows import list_state

#: ``before`` of a :class:`SetImageStateCommand` that listed the image: undo removes its record.
NOT_LISTED = object()

_NAMES = {TODO: "to do", DONE: "done", SKIPPED: "skipped"}


class ResumeStore(Protocol):
    """Where the user was, per working file (absolute paths)."""

    def get(self, working_file: Path) -> Optional[Path]: ...

    def put(self, working_file: Path, image: Path) -> None: ...


class StateTarget(Protocol):
    def apply_image_state(self, file_name: str, size: Tuple[int, int], value: Any) -> None: ...


class SetImageStateCommand(QUndoCommand):
    """Image ``file_name`` (``size`` = width, height) went from state ``before`` to ``after``.

    ``before`` is the old value of the record's field (``None``: absent) or
    :data:`NOT_LISTED` when the document had no record of the image. A
    document command: never stale (undoing it after moving on restores that
    image's state).
    """

    def __init__(self, target: StateTarget, file_name: str, size: Tuple[int, int], before: Any, after: str,
                 text: str) -> None:
        super().__init__(text)
        self.target, self.file_name, self.size, self.before, self.after = target, file_name, size, before, after

    def redo(self) -> None:
        self.target.apply_image_state(self.file_name, self.size, self.after)

    def undo(self) -> None:
        self.target.apply_image_state(self.file_name, self.size, self.before)


class ImageStates(QObject):
    """The user's image states, "next to do" and resuming. See the module notes.

    Parameters
    ----------
    edits:
        :class:`annotator.session.document_edits.DocumentEdits` (the document; saves).
    images:
        :class:`annotator.session.navigation.ImageNavigator` (the list, the current image).
    undo_stack, gate:
        The session's.
    go_to:
        ``(index) -> None``: show image ``index`` (the session's, which saves and leaves the current one).
    """

    statusMessage = Signal(str, int)

    def __init__(self, edits, images, undo_stack: QUndoStack, gate: ActionGate, go_to: Callable[[int], None],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._edits = edits
        self._images = images
        self.undo_stack = undo_stack
        self.gate = gate
        self._go_to = go_to
        #: Where to resume each working file; ``None``: always start at the first image.
        self.resume: Optional[ResumeStore] = None
        images.currentIndexChanged.connect(self._remember)

    # -- states ------------------------------------------------------------------------------

    def _record(self, path: Path):
        ds = self._edits.dataset
        return None if ds is None else ds.image_by_name(ds.relative_name(path))

    def progress(self, path: Path) -> str:
        """``"todo"``, ``"done"`` or ``"skipped"`` for image ``path`` (to do when not listed or no state recorded)."""
        rec = self._record(path)
        return effective_state(rec.extra if rec is not None else None)

    @waits_for_accept
    def mark(self, state: str) -> None:
        """Mark the current image ``state`` (one of :data:`annotator.data.image_states.STATES`), one undo step."""
        if state not in STATES:
            raise ValueError(f"an image state is one of {', '.join(STATES)}, got {state!r}")
        ds, path = self._edits.dataset, self._images.current_path
        if ds is None or path is None:
            return
        if ds.read_only:
            self.statusMessage.emit(f"Read-only: {read_only_reason(ds)}", 5000)
            return
        rec = self._record(path)
        if rec is not None and rec.extra.get(STATE_FIELD) == state:
            self.statusMessage.emit(f"{path.name} is {_NAMES[state]} already", 2000)
            return
        if rec is None and state == TODO:
            self.statusMessage.emit(f"{path.name} is to do already", 2000)
            return
        size = self._size(path) if rec is None else (rec.width, rec.height)
        if size is None:
            return
        before = NOT_LISTED if rec is None else rec.extra.get(STATE_FIELD)
        text = f"Mark {path.name} {_NAMES[state]}"
        self.undo_stack.push(SetImageStateCommand(self, ds.relative_name(path), size, before, state, text))
        rec = self._record(path)
        negative = state == DONE and rec is not None and not ds.annotations_for(rec.id)
        negative = " (no annotations: a negative)" if negative else ""
        self.statusMessage.emit(f"{path.name}: {_NAMES[state]}{negative}", 3000)

    def _size(self, path: Path) -> Optional[Tuple[int, int]]:
        """``(width, height)`` of ``path`` as displayed: from the loaded image, else its header."""
        loaded = self._images.loaded
        if loaded is not None and loaded.path == path:
            return loaded.width, loaded.height
        from annotator.data.imageio import ImageLoadError, image_size

        try:
            return image_size(path)
        except ImageLoadError as exc:
            self.statusMessage.emit(f"Cannot mark {path.name}: {exc}", 5000)
            return None

    def apply_image_state(self, file_name: str, size: Tuple[int, int], value: Any) -> None:
        """Set the state field of ``file_name`` to ``value`` (``None``: no field; :data:`NOT_LISTED`: no record).

        Called by :class:`SetImageStateCommand`; saves as an accept does.
        """
        from annotator.data.document import DatasetError

        ds = self._edits.dataset
        rec = ds.image_by_name(file_name)
        try:
            if value is NOT_LISTED:
                if rec is not None:
                    if ds.annotations_for(rec.id):
                        ds.set_image_state(rec.id, TODO)  # annotated since: it stays listed, to do
                    else:
                        ds.remove_image(rec.id)
            else:
                if rec is None:
                    rec = ds.ensure_image(file_name, *size)
                ds.set_image_state(rec.id, value)
        except DatasetError as exc:  # its size changed on disk since
            self.statusMessage.emit(str(exc), 0)
        self._edits.document_changed()
        self._images.emit_row(ds.root / file_name)

    # -- next to do ----------------------------------------------------------------------------

    def next_todo_index(self) -> Optional[int]:
        """The first image after the current one (wrapping) that is to do, or ``None``."""
        n, here = self._images.image_count(), self._images.index
        for step in range(1, n + 1):
            i = (here + step) % n
            if i != here and list_state(self._images.image_row(i)) == TODO:
                return i
        return None

    @waits_for_accept
    def next_todo(self) -> None:
        """Show the next image to do (wrapping; done, skipped and unusable ones are passed over), or say none is left."""
        if self._images.image_count() == 0:
            return
        i = self.next_todo_index()
        if i is not None:
            self._go_to(i)
            return
        here = self._images.index
        if 0 <= here and list_state(self._images.image_row(here)) == TODO:
            self.statusMessage.emit("No other image to do: this is the last one", 5000)
        else:
            self.statusMessage.emit("No image left to do: every image is done, skipped or unusable", 5000)

    # -- resuming ------------------------------------------------------------------------------

    def resume_index(self) -> int:
        """Index of the image to open the document at: where the user was in this working file, else 0."""
        ds = self._edits.dataset
        if self.resume is None or ds is None:
            return 0
        image = self.resume.get(Path(ds.path).absolute())
        if image is None:
            return 0
        for i, path in enumerate(self._images.paths):
            if Path(path).absolute() == image:
                return i
        return 0

    def _remember(self, index: int) -> None:
        ds, path = self._edits.dataset, self._images.current_path
        if self.resume is not None and ds is not None and path is not None:
            self.resume.put(Path(ds.path).absolute(), Path(path).absolute())
