"""Undo commands: one :class:`QUndoCommand` per user action.

Commands hold values (prompt states, annotations, category records) and call
the public ``apply_*`` methods of their target, which change the document and
emit the signals; a command never touches widgets or private names. The
targets are described by the protocols below (:class:`PromptTarget`,
:class:`DocumentTarget`, :class:`AcceptListener`), so this module imports no
other part of the session. ``redo()`` also does the first application, when
the command is pushed.

Prompt commands (a click, a box, a brush stroke on the candidate) belong to
one image. Once the user has moved to another image they are *stale*, also
after coming back (leaving cleared the prompt they refer to; the target's
``visit`` counts the leaves): :func:`undo_step` skips them (and the stack
drops them as obsolete), so Ctrl+Z never edits a prompt the user cannot see. Document commands (an accept, an
edit of an accepted annotation) are never stale: undoing one after moving on
restores that image's annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, Tuple

from PySide6.QtGui import QUndoCommand, QUndoStack

from annotator.data.prompts import PromptState


class PromptTarget(Protocol):
    """What a :class:`PromptCommand` changes: the prompt of the current image."""

    @property
    def current_path(self) -> Optional[Path]: ...

    def apply_prompt(self, state: PromptState) -> None: ...


class DocumentTarget(Protocol):
    """The document edits commands make (see :class:`annotator.session.document_edits.DocumentEdits`)."""

    def apply_add_annotations(self, annotations: Sequence[Any]) -> None: ...

    def apply_remove_annotations(self, annotation_ids: Sequence[int]) -> list: ...

    def apply_replace_annotation(self, annotation: Any, patch: Any = None) -> Any: ...

    def apply_annotation_category(self, annotation_id: int, category_id: int) -> None: ...

    def apply_add_category(self, name: str, color: Optional[tuple]) -> int: ...

    def apply_category_field(self, category_id: int, field: str, value: Any) -> None: ...

    def apply_remove_category(self, category_id: int, reassign_to: Optional[int]) -> Any: ...

    def apply_restore_category(self, removed: Any) -> None: ...


@dataclass(frozen=True, eq=False)
class Accepted:
    """What one accept added: ``annotations`` on ``image``, and where they came from.

    ``prompt``: the SAM prompt they were accepted from (a click's candidate),
    put back when the accept is undone on the same image; ``review``: the token
    of the segment-everything review whose proposals ``proposals`` (indices)
    they were; ``replaced``: the annotations they took the place of, same ids
    (refining an accepted annotation with SAM), in the same order, else empty.
    """

    image: Path
    annotations: Tuple[Any, ...]
    prompt: Optional[PromptState] = None
    review: Optional[int] = None
    proposals: Tuple[int, ...] = ()
    replaced: Tuple[Any, ...] = ()


class EditTarget(Protocol):
    """What an :class:`EditsCommand` changes: the hand edits (strokes, cleanups) a prompt carries."""

    @property
    def current_path(self) -> Optional[Path]: ...

    def apply_edits(self, prompt: PromptState, edits: Tuple[Any, ...]) -> None: ...


class AcceptListener(Protocol):
    """A part that follows accepts: ``on_accept(accepted, True)`` when done (or redone), ``False`` when undone."""

    def on_accept(self, accepted: Accepted, applied: bool) -> None: ...


class PromptCommand(QUndoCommand):
    """The prompt on ``image`` went from ``before`` to ``after`` (a click, a box, Esc)."""

    def __init__(self, target: PromptTarget, image: Path, before: PromptState, after: PromptState, text: str) -> None:
        super().__init__(text)
        self.target = target
        self.image = image
        self.before = before
        self.after = after
        self.visit = getattr(target, "visit", 0)

    def stale(self) -> bool:
        return self.target.current_path != self.image or getattr(self.target, "visit", 0) != self.visit

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)

    def _set(self, state: PromptState) -> None:
        if self.stale():
            self.setObsolete(True)
            return
        self.target.apply_prompt(state)


class EditsCommand(QUndoCommand):
    """The hand edits carried by ``prompt`` on ``image`` went from ``before`` to ``after`` (a stroke, a cleanup)."""

    def __init__(self, target: EditTarget, image: Path, prompt: PromptState, before: Tuple[Any, ...],
                 after: Tuple[Any, ...], text: str) -> None:
        super().__init__(text)
        self.target = target
        self.image = image
        self.prompt = prompt
        self.before = before
        self.after = after
        self.visit = getattr(target, "visit", 0)

    def stale(self) -> bool:
        return self.target.current_path != self.image or getattr(self.target, "visit", 0) != self.visit

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)

    def _set(self, edits: Tuple[Any, ...]) -> None:
        if self.stale():
            self.setObsolete(True)
            return
        self.target.apply_edits(self.prompt, edits)


class AcceptCommand(QUndoCommand):
    """One accept (a candidate, or several proposals): its annotations added in ONE user step.

    Undo removes them all; each listener then puts back what the accept
    cleared (the prompt and its candidates, the proposals under review). An
    accept that refined annotations (``accepted.replaced``) puts the new
    versions in their place, and undo puts the old ones back.
    """

    def __init__(self, document: DocumentTarget, accepted: Accepted, listeners: Sequence[AcceptListener],
                 text: str, patches: Tuple[Sequence[Any], Sequence[Any]] = ((), ())) -> None:
        super().__init__(text)
        self.document = document
        self.accepted = accepted
        self.listeners = tuple(listeners)
        self.patches = patches  # overlay patches of the new and the replaced annotations, when known

    def redo(self) -> None:
        if self.accepted.replaced:
            for i, ann in enumerate(self.accepted.annotations):
                self.document.apply_replace_annotation(ann, _at(self.patches[0], i))
        else:
            self.document.apply_add_annotations(self.accepted.annotations)
        for listener in self.listeners:
            listener.on_accept(self.accepted, True)

    def undo(self) -> None:
        if self.accepted.replaced:
            for i, ann in enumerate(self.accepted.replaced):
                self.document.apply_replace_annotation(ann, _at(self.patches[1], i))
        else:
            self.document.apply_remove_annotations([a.id for a in self.accepted.annotations])
        for listener in self.listeners:
            listener.on_accept(self.accepted, False)


class DeleteAnnotationCommand(QUndoCommand):
    def __init__(self, document: DocumentTarget, annotation: Any) -> None:
        super().__init__(f"Delete annotation {annotation.id}")
        self.document = document
        self.annotation = annotation

    def redo(self) -> None:
        self.document.apply_remove_annotations([self.annotation.id])

    def undo(self) -> None:
        self.document.apply_add_annotations([self.annotation])


class ReplaceAnnotationCommand(QUndoCommand):
    """An annotation's mask (or fields) changed in one step: ``new`` replaced ``old`` (same id).

    ``new_patch`` / ``old_patch``: their overlay patches when known (drawn at
    once instead of being decoded again in the background).
    """

    def __init__(self, document: DocumentTarget, old: Any, new: Any, text: str, new_patch: Any = None,
                 old_patch: Any = None) -> None:
        super().__init__(text)
        self.document = document
        self.old = old
        self.new = new
        self.new_patch = new_patch
        self.old_patch = old_patch

    def redo(self) -> None:
        self.document.apply_replace_annotation(self.new, self.new_patch)

    def undo(self) -> None:
        self.document.apply_replace_annotation(self.old, self.old_patch)


class SetAnnotationCategoryCommand(QUndoCommand):
    def __init__(self, document: DocumentTarget, annotation_id: int, new: int, old: int) -> None:
        super().__init__(f"Change category of annotation {annotation_id}")
        self.document = document
        self.annotation_id = annotation_id
        self.new = new
        self.old = old

    def redo(self) -> None:
        self.document.apply_annotation_category(self.annotation_id, self.new)

    def undo(self) -> None:
        self.document.apply_annotation_category(self.annotation_id, self.old)


class AddCategoryCommand(QUndoCommand):
    """A category was added; undo removes it (it has no annotations yet), redo restores it with the same id."""

    def __init__(self, document: DocumentTarget, name: str, color: Optional[tuple]) -> None:
        super().__init__(f"Add category {name}")
        self.document = document
        self.name = name
        self.color = color
        self.category_id: Optional[int] = None
        self.removed: Any = None

    def redo(self) -> None:
        if self.removed is None:
            self.category_id = self.document.apply_add_category(self.name, self.color)
        else:
            self.document.apply_restore_category(self.removed)

    def undo(self) -> None:
        self.removed = self.document.apply_remove_category(self.category_id, None)


class EditCategoryCommand(QUndoCommand):
    """A category's name or colour changed (``field`` is ``"name"`` or ``"color"``)."""

    def __init__(self, document: DocumentTarget, category_id: int, field: str, new: Any, old: Any) -> None:
        super().__init__(f"{'Rename' if field == 'name' else 'Recolour'} category")
        self.document = document
        self.category_id = category_id
        self.field = field
        self.new = new
        self.old = old

    def redo(self) -> None:
        self.document.apply_category_field(self.category_id, self.field, self.new)

    def undo(self) -> None:
        self.document.apply_category_field(self.category_id, self.field, self.old)


class DeleteCategoryCommand(QUndoCommand):
    """A category was deleted, its annotations moved to ``reassign_to`` or (``None``) deleted with it."""

    def __init__(self, document: DocumentTarget, category_id: int, name: str, reassign_to: Optional[int]) -> None:
        super().__init__(f"Delete category {name}")
        self.document = document
        self.category_id = category_id
        self.reassign_to = reassign_to
        self.removed: Any = None

    def redo(self) -> None:
        self.removed = self.document.apply_remove_category(self.category_id, self.reassign_to)

    def undo(self) -> None:
        self.document.apply_restore_category(self.removed)


def _at(items: Sequence[Any], i: int) -> Any:
    return items[i] if i < len(items) else None


def next_step(stack: QUndoStack, undo: bool) -> Optional[QUndoCommand]:
    """The command :func:`undo_step` (``undo``) or :func:`redo_step` would do now, or None: the nearest one
    that is not a stale prompt or edit step (those are skipped)."""
    indices = range(stack.index() - 1, -1, -1) if undo else range(stack.index(), stack.count())
    for i in indices:
        cmd = stack.command(i)
        if not (isinstance(cmd, (PromptCommand, EditsCommand)) and cmd.stale()):
            return cmd
    return None


def undo_step(stack: QUndoStack) -> Optional[QUndoCommand]:
    """Undo the last user step on the current image or the document (stale prompt and edit steps are skipped).

    Returns the command undone (it stays on the stack), or None when there was none.
    """
    return _step(stack, stack.undo, stack.canUndo, lambda: stack.command(stack.index() - 1))


def redo_step(stack: QUndoStack) -> Optional[QUndoCommand]:
    """Redo the next user step (stale prompt steps are skipped); returns it, or None when there was none."""
    return _step(stack, stack.redo, stack.canRedo, lambda: stack.command(stack.index()))


def _step(stack: QUndoStack, do: Callable[[], None], can: Callable[[], bool],
          peek: Callable[[], Any]) -> Optional[QUndoCommand]:
    while can():
        cmd = peek()
        stale = isinstance(cmd, (PromptCommand, EditsCommand)) and cmd.stale()
        do()
        if not stale:
            return cmd
    return None

