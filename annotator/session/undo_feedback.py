"""What Ctrl+Z and Ctrl+Shift+Z say (the step undone or redone, and its image) and offer (:class:`UndoState`).

Document steps (an accept, a deletion, a stroke on an accepted annotation, an
image's state) are undone from any image (see :mod:`annotator.session.undo`),
so a Ctrl+Z pressed on one image can change another the user cannot see; the
message names that image. Steps without one image (a category, an import)
are named alone. A prompt step of an image the user has left is skipped by
Ctrl+Z, so the Undo and Redo actions follow :class:`UndoState`, not the
stack's top command (which may be such a step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import shiboken6
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotator.session.undo import next_step


def step_image(cmd: Any, dataset: Any) -> Optional[str]:
    """The ``file_name`` (relative to the dataset's root) of the image ``cmd`` changed, or None (no one image).

    Reads the values the commands hold (``accepted.image``, ``image``,
    ``file_name``, an annotation's ``image_id``); never calls them.
    """
    if dataset is None:
        return None
    accepted = getattr(cmd, "accepted", None)
    path = getattr(accepted, "image", None) if accepted is not None else getattr(cmd, "image", None)
    if isinstance(path, Path):
        return dataset.relative_name(path)
    for holder in (cmd, getattr(cmd, "change", None)):  # an image's state; a changed picture's review
        name = getattr(holder, "file_name", None)
        if isinstance(name, str):
            return name
    anns = getattr(cmd, "annotations", None) or [None]
    found = [getattr(cmd, "annotation", None), getattr(cmd, "new", None), anns[0]]
    if isinstance(getattr(cmd, "annotation_id", None), int):
        found.append(dataset.annotations.get(cmd.annotation_id))
    for ann in found:  # ``new`` is also a category's new name or colour: only annotations have an image_id
        image_id = getattr(ann, "image_id", None)
        if isinstance(image_id, int) and image_id in dataset.images:
            return dataset.images[image_id].file_name
    return None


def step_message(verb: str, cmd: Any, dataset: Any, current: Optional[Path]) -> str:
    """``"Undid: Accept object"``, plus ``" (on img.jpg)"`` when the step's image is not ``current``.

    ``verb``: ``"Undid"`` or ``"Redid"``; ``cmd``: the command done, or None
    (then ``"Nothing to undo"`` / ``"Nothing to redo"``).
    """
    if cmd is None:
        return f"Nothing to {'undo' if verb == 'Undid' else 'redo'}"
    text = cmd.text() or "the last step"
    name = step_image(cmd, dataset)
    here = dataset.relative_name(current) if dataset is not None and current is not None else None
    if name is not None and name != here and Path(name).name not in text:  # ("Mark a.jpg done" names it)
        return f"{verb}: {text} (on {name})"
    return f"{verb}: {text}"


class UndoState(QObject):
    """Whether Ctrl+Z / Ctrl+Shift+Z would do anything now, and the step each would do (its text).

    ``images``: the navigator (``currentIndexChanged``: moving on makes that
    image's prompt steps stale). Emits ``changed(can_undo, undo_text,
    can_redo, redo_text)`` when any of them changes; :meth:`refresh` emits
    the state now.
    """

    changed = Signal(bool, str, bool, str)

    def __init__(self, stack: QUndoStack, images: Any, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._stack = stack
        self._last: Optional[tuple] = None
        stack.indexChanged.connect(self._update)
        images.currentIndexChanged.connect(self._update)

    def state(self) -> tuple:
        if not shiboken6.isValid(self._stack):  # the session closing: its children go in any order
            return (False, "", False, "")
        u, r = next_step(self._stack, True), next_step(self._stack, False)
        return (u is not None, u.text() if u is not None else "", r is not None, r.text() if r is not None else "")

    def refresh(self) -> None:
        self._last = self.state()
        self.changed.emit(*self._last)

    def _update(self, *_: object) -> None:
        state = self.state()
        if state != self._last:
            self._last = state
            self.changed.emit(*state)
