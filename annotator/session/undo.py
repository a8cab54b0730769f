"""Undo commands: one :class:`QUndoCommand` per user action.

Commands hold values (prompt states, annotations, category records) and call
the session's ``_apply_*`` methods, which change the document and emit the
signals; a command never touches widgets. ``redo()`` also does the first
application, when the command is pushed.

Prompt commands belong to one image. Once the user has moved to another image
they are *stale*: the session's undo skips them (and the stack drops them as
obsolete), so Ctrl+Z never edits a prompt the user cannot see.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from PySide6.QtGui import QUndoCommand

from annotator.data.prompts import PromptState

if TYPE_CHECKING:  # pragma: no cover
    from annotator.session.session import Session


class PromptCommand(QUndoCommand):
    """The prompt on ``image`` went from ``before`` to ``after`` (a click, a box, Esc)."""

    def __init__(self, session: "Session", image: Path, before: PromptState, after: PromptState, text: str) -> None:
        super().__init__(text)
        self.session = session
        self.image = image
        self.before = before
        self.after = after

    def stale(self) -> bool:
        return self.session.current_path != self.image

    def redo(self) -> None:
        if self.stale():
            self.setObsolete(True)
            return
        self.session._apply_prompt(self.after)

    def undo(self) -> None:
        if self.stale():
            self.setObsolete(True)
            return
        self.session._apply_prompt(self.before)


class AcceptCommand(QUndoCommand):
    """``annotation`` was accepted from ``prompt`` on ``image``: added to the document, prompt cleared.

    Undo removes it and, on the same image, puts the prompt (and its
    candidates) back, so the user can pick another candidate.
    """

    def __init__(self, session: "Session", image: Path, annotation: Any, prompt: PromptState, category_name: str) -> None:
        super().__init__(f"Accept {category_name}")
        self.session = session
        self.image = image
        self.annotation = annotation
        self.prompt = prompt

    def redo(self) -> None:
        self.session._apply_add_annotation(self.annotation)
        if self.session.current_path == self.image:
            self.session._apply_prompt(PromptState())

    def undo(self) -> None:
        self.session._apply_remove_annotation(self.annotation.id)
        if self.session.current_path == self.image:
            self.session._apply_prompt(self.prompt)


class AcceptProposalsCommand(QUndoCommand):
    """Segment-everything proposals ``indices`` (of review ``token``) became ``annotations``: one user step.

    Undo removes all of them at once and, while that review is still open,
    shows the proposals again; redo adds them back with the same ids.
    """

    def __init__(self, session: "Session", image: Path, token: int, indices: Sequence[int],
                 annotations: Sequence[Any], category_name: str) -> None:
        n = len(annotations)
        super().__init__(f"Accept {n} proposal{'s' if n != 1 else ''} as {category_name}")
        self.session = session
        self.image = image
        self.token = token
        self.indices = tuple(indices)
        self.annotations = tuple(annotations)

    def redo(self) -> None:
        self.session._apply_add_annotations(self.annotations)
        self.session.everything._mark_accepted(self.token, self.indices, True)

    def undo(self) -> None:
        self.session._apply_remove_annotations([a.id for a in self.annotations])
        self.session.everything._mark_accepted(self.token, self.indices, False)


class DeleteAnnotationCommand(QUndoCommand):
    def __init__(self, session: "Session", annotation: Any) -> None:
        super().__init__(f"Delete annotation {annotation.id}")
        self.session = session
        self.annotation = annotation

    def redo(self) -> None:
        self.session._apply_remove_annotation(self.annotation.id)

    def undo(self) -> None:
        self.session._apply_add_annotation(self.annotation)


class SetAnnotationCategoryCommand(QUndoCommand):
    def __init__(self, session: "Session", annotation_id: int, new: int, old: int) -> None:
        super().__init__(f"Change category of annotation {annotation_id}")
        self.session = session
        self.annotation_id = annotation_id
        self.new = new
        self.old = old

    def redo(self) -> None:
        self.session._apply_annotation_category(self.annotation_id, self.new)

    def undo(self) -> None:
        self.session._apply_annotation_category(self.annotation_id, self.old)


class AddCategoryCommand(QUndoCommand):
    """A category was added; undo removes it (it has no annotations yet), redo restores it with the same id."""

    def __init__(self, session: "Session", name: str, color: Optional[tuple]) -> None:
        super().__init__(f"Add category {name}")
        self.session = session
        self.name = name
        self.color = color
        self.category_id: Optional[int] = None
        self.removed: Any = None

    def redo(self) -> None:
        if self.removed is None:
            self.category_id = self.session._apply_add_category(self.name, self.color)
        else:
            self.session._apply_restore_category(self.removed)

    def undo(self) -> None:
        self.removed = self.session._apply_remove_category(self.category_id, None)


class EditCategoryCommand(QUndoCommand):
    """A category's name or colour changed (``field`` is ``"name"`` or ``"color"``)."""

    def __init__(self, session: "Session", category_id: int, field: str, new: Any, old: Any) -> None:
        super().__init__(f"{'Rename' if field == 'name' else 'Recolour'} category")
        self.session = session
        self.category_id = category_id
        self.field = field
        self.new = new
        self.old = old

    def redo(self) -> None:
        self.session._apply_category_field(self.category_id, self.field, self.new)

    def undo(self) -> None:
        self.session._apply_category_field(self.category_id, self.field, self.old)


class DeleteCategoryCommand(QUndoCommand):
    """A category was deleted, its annotations moved to ``reassign_to`` or (``None``) deleted with it."""

    def __init__(self, session: "Session", category_id: int, name: str, reassign_to: Optional[int]) -> None:
        super().__init__(f"Delete category {name}")
        self.session = session
        self.category_id = category_id
        self.reassign_to = reassign_to
        self.removed: Any = None

    def redo(self) -> None:
        self.removed = self.session._apply_remove_category(self.category_id, self.reassign_to)

    def undo(self) -> None:
        self.session._apply_restore_category(self.removed)
