"""Fixing masks: brush, eraser and cleanup on the candidate or an accepted annotation; refining with SAM.

:class:`MaskEditing` owns what is being edited and how:

* **Which mask a stroke or a cleanup changes** (:meth:`MaskEditing.target`):
  while an annotation is being refined, its candidate; else the annotation
  selected (Ctrl+click or the panel); else the candidate on display, or a
  mask painted from scratch. Starting a new prompt unselects the annotation
  (:meth:`MaskEditing.prompt_starting`), so the brush then paints the new
  candidate.
* **The candidate's hand edits** (:class:`~annotator.session.drafts.Draft`,
  one per prompt state): a stroke is one undoable :class:`EditsCommand`
  pushed at once, without waiting for anything (painting needs no
  embedding); the edited mask is drawn when the decoder thread has applied
  it (:func:`~annotator.session.drafts.render_draft`, an urgent task, one in
  flight: the latest edits win). Enter accepts the edited candidate through
  the one accept pipeline.
* **Edits of an accepted annotation** are applied at once: the new mask is
  computed on the decoder thread (an urgent task; user actions wait behind
  the :class:`~annotator.session.gate.ActionGate` meanwhile, as for an
  accept), then ONE :class:`ReplaceAnnotationCommand` puts it in the
  document (saved). An eraser stroke that empties the mask deletes the
  annotation instead, as one undoable step. The full-resolution masks of
  the last annotations edited are kept, so a stroke costs what its pixels
  cost plus the RLE encoding, not a decode.
* **Refine with SAM** (:meth:`MaskEditing.refine_selected`): the selected
  annotation's stored prompt comes back (its mask as the decoder's mask
  input) when SAM then gives the annotation back (checked, IoU 0.9:
  :func:`~annotator.session.drafts.refine_choice`), or, without one or
  else, its mask becomes the draft's base and mask input; further clicks
  refine it and Enter replaces it (same id, one undo step).

The canvas's live stroke preview is not drawn here: :attr:`strokeDone` tells
the window when a stroke's result is on display (once per :meth:`stroke`).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Protocol, Tuple

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotator import render
from annotator.data import maskedit
from annotator.data.maskedit import Cleanup, Edit, Stroke
from annotator.data.prompts import PromptState
from annotator.session import drafts
from annotator.session.accepting import AcceptPipeline, annotation_with_mask
from annotator.session.document_edits import DocumentEdits
from annotator.session.drafts import Draft, EditedMask
from annotator.session.gate import ActionGate, waits_for_accept
from annotator.session.prompting import Prompting
from annotator.session.style import OverlayStyle
from annotator.session.undo import DeleteAnnotationCommand, EditsCommand
from annotator.workers.messages import LoadedImage

#: Default "remove islands smaller than" (pixels): the preferences' value is set on :attr:`MaskEditing.min_island`.
MIN_ISLAND_PX = 100
#: Full-resolution masks of annotations kept for the next stroke (12 MB each on a 12 MP photo).
KEEP_ANNOTATION_MASKS = 3
#: A scribble turned into SAM points gives at most this many points.
SCRIBBLE_POINTS = 8


class EditImage(Protocol):
    """The current image (see :class:`annotator.session.navigation.ImageNavigator`)."""

    @property
    def current_path(self) -> Optional[Path]: ...

    @property
    def loaded(self) -> Optional[LoadedImage]: ...

    @property
    def embedding(self) -> Any: ...


@dataclass(frozen=True, eq=False)
class _Task:
    task_id: int
    kind: str  # "edit", "refine" or "prefetch"
    annotation: Any
    edit: Optional[Edit] = None
    stroke: bool = False


class MaskEditing(QObject):
    """See the module notes. ``min_island``: pixels, for "remove islands"."""

    statusMessage = Signal(str, int)
    draftOverlayChanged = Signal(object)  # (QImage, (x, y, w, h)) of the edited candidate, or None: SAM's is shown
    strokeDone = Signal()  # a stroke's result is on display (or it was dropped): once per stroke()

    def __init__(self, decoder, undo_stack: QUndoStack, gate: ActionGate, image: EditImage, prompts: Prompting,
                 edits: DocumentEdits, accepts: AcceptPipeline, style: OverlayStyle,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.decoder = decoder
        self.undo_stack = undo_stack
        self.gate = gate
        self._image = image
        self.prompts = prompts
        self.edits = edits
        self.accepts = accepts
        self._style = style
        self.min_island = MIN_ISLAND_PX
        self._drafts: "weakref.WeakKeyDictionary[PromptState, Draft]" = weakref.WeakKeyDictionary()
        self.visit = 0  # times the image was left (reset): edit steps of an earlier visit are stale
        self._cache: Optional[EditedMask] = None  # the current draft, edited, when computed
        self._display: Optional[int] = None  # task id of the draft being drawn
        self._display_again = False
        self._shown: Optional[EditedMask] = None  # what draftOverlayChanged last showed
        self._waiting_strokes = 0  # strokes on the draft not on display yet
        # id(annotation) -> (annotation, mask, grid): full-resolution masks of the annotations last edited
        self._masks: "OrderedDict[int, Tuple[Any, np.ndarray, np.ndarray]]" = OrderedDict()
        self._task: Optional[_Task] = None  # an annotation edit or refine being computed (the gate is held)
        self._prefetch: Optional[_Task] = None
        prompts.lineage = self
        prompts.promptChanged.connect(self._on_prompt_changed)
        prompts.candidatesChanged.connect(lambda *_: self._refresh())
        edits.colorChanged.connect(self._restyle)
        style.changed.connect(self._restyle)
        decoder.taskDone.connect(self._on_task_done)
        decoder.taskFailed.connect(self._on_task_failed)

    @property
    def current_path(self) -> Optional[Path]:
        return self._image.current_path

    # -- what is edited ----------------------------------------------------------------------

    def draft(self, prompt: Optional[PromptState] = None) -> Optional[Draft]:
        """The draft the prompt (default: the current one) carries, if any."""
        return self._drafts.get(self.prompts.prompt if prompt is None else prompt)

    @property
    def refining(self) -> Optional[int]:
        """Id of the annotation being refined with SAM (Enter replaces it), or ``None``."""
        d = self.draft()
        return d.target if d is not None else None

    def target(self) -> Optional[int]:
        """The annotation a stroke or cleanup changes now, or ``None``: the candidate (or a mask from scratch)."""
        if self.refining is not None:
            return None
        selected = self.edits.selected_annotation
        ann = self.edits.dataset.annotations.get(selected) if self.edits.dataset is not None and selected else None
        rec = self.edits.current_record()
        return selected if ann is not None and rec is not None and ann.image_id == rec.id else None

    @property
    def busy(self) -> bool:
        """Something is being computed: a draft drawn, a mask prepared, an annotation edited or refined."""
        return self._display is not None or self._prefetch is not None or self._task is not None

    def has_draft(self) -> bool:
        """The current prompt carries hand edits or a base mask (what Esc would clear)."""
        d = self.draft()
        return d is not None and d.shown

    def prompt_starting(self) -> None:
        """A click or box is about to prompt SAM: a new object (not a refinement) unselects the annotation."""
        if self.prompts.prompt.empty and self.refining is None and not self.has_draft():
            self.edits.select_annotation(None)

    # -- user actions --------------------------------------------------------------------------

    @waits_for_accept
    def stroke(self, points, radius: float, erase: bool) -> None:
        """A brush (``erase`` False) or eraser stroke along ``points`` ``(N, 2)`` (image pixels, x then y)."""
        try:
            edit = Stroke.make(points, radius, erase)
        except ValueError as exc:
            self.statusMessage.emit(f"Stroke ignored: {exc}", 3000)
            self.strokeDone.emit()
            return
        if not self._edit(edit, stroke=True):
            self.strokeDone.emit()

    @waits_for_accept
    def cleanup(self, kind: str) -> None:
        """``"fill_holes"``, ``"remove_islands"`` (smaller than :attr:`min_island` pixels) or ``"keep_largest"``."""
        self._edit(Cleanup(kind, int(self.min_island) if kind == "remove_islands" else 1), stroke=False)

    @waits_for_accept
    def scribble(self, points, radius: float, erase: bool) -> None:
        """A stroke as SAM prompts: up to :data:`SCRIBBLE_POINTS` points along it, foreground (background when
        ``erase``), added in one step, so SAM finds the edge the scribble roughly follows."""
        try:
            stroke = Stroke.make(points, radius, erase)
        except ValueError:
            return
        pts = np.asarray(stroke.points)
        length = float(np.hypot(*np.diff(pts, axis=0).T).sum()) if len(pts) > 1 else 0.0
        spacing = max(length / (SCRIBBLE_POINTS - 1), radius, 1.0)
        sampled, labels = maskedit.stroke_prompts(stroke, spacing)
        self.prompt_starting()
        self.prompts.add_points(sampled[:SCRIBBLE_POINTS], labels[:SCRIBBLE_POINTS],
                                f"Scribble ({'background' if erase else 'foreground'})")

    @waits_for_accept
    def refine_selected(self) -> None:
        """R: refine the selected annotation with SAM (its stored prompt, else its mask, as a new prompt)."""
        ann_id = self.edits.selected_annotation if self.refining is None else None
        ann = self.edits.dataset.annotations.get(ann_id) if self.edits.dataset is not None and ann_id else None
        if ann is None or self.target() != ann.id:
            self.statusMessage.emit("Select an annotation first (Ctrl+click it, or pick it in the panel)"
                                    if self.refining is None else "Already refining: click, then Enter or Esc", 3000)
            return
        embedding, info = self._image.embedding, getattr(self._image, "model_info", None)
        size = tuple(embedding.input_size) if embedding is not None else None
        stored = self._stored_prompt(ann)  # SAM's answer to it is checked against the mask (refine_inputs)
        check = (info.model, embedding, stored[0]) if stored is not None and info is not None else ()
        task = self.decoder.run_task(drafts.refine_inputs, ann.segmentation, ann.size, size, *check, urgent=True)
        self._task = _Task(task, "refine", ann)
        self.gate.hold()

    def accept(self) -> None:
        """Enter: accept the candidate on display with its edits (or the mask painted), or replace the refined one."""
        loaded, prompt = self._image.loaded, self.prompts.prompt
        if loaded is None:
            return
        d = self.draft() or Draft()
        cache = self._cache
        if prompt.empty:
            if not d.shown:
                self.statusMessage.emit("Nothing to accept: click on an object first (or paint one with B)", 3000)
                return
            self.accepts.accept_draft(loaded.path, loaded.width, loaded.height, prompt, d.base, d.edits,
                                      cache if cache is not None and cache.same_base(d.base, 0, _shape(loaded))
                                      else None, d.target)
            return
        chosen = self.prompts.take_for_accept()
        if chosen is None:
            return  # (it is accepted once the candidate is decoded)
        same = cache is not None and cache.same_base(chosen.candidates, chosen.index, _shape(loaded))
        self.accepts.accept_candidate(loaded.path, loaded.width, loaded.height, chosen.prompt, chosen.candidates,
                                      chosen.index, edits=d.edits, cache=cache if same else None, replaces=d.target)

    # -- called by undo commands and the session ---------------------------------------------

    def apply_edits(self, prompt: PromptState, edits: Tuple[Edit, ...]) -> None:
        """Make ``edits`` the hand edits ``prompt`` carries (undo commands call this) and draw them."""
        self._drafts[prompt] = (self._drafts.get(prompt) or Draft()).with_edits(edits)
        if prompt is self.prompts.prompt:
            self._refresh()

    def inherit(self, before: PromptState, after: PromptState) -> None:
        d = self._drafts.get(before)
        if d is not None:
            self._drafts[after] = d

    def refine_logits(self, prompt: PromptState):
        d = self._drafts.get(prompt)
        return d.logits if d is not None else None

    def reset(self) -> None:
        """The image is being left: no drafts, nothing computed for it is applied any more."""
        self.visit += 1  # the edit steps made so far are stale, even when the user comes back
        self._drafts = weakref.WeakKeyDictionary()
        self._cache = None
        self._display = None
        self._display_again = False
        self._prefetch = None
        self._masks.clear()
        self._show(None)
        self._strokes_shown()

    def prepare(self) -> None:
        """The brush or eraser was picked: compute the target's full-resolution mask now, so the first stroke is
        as quick as the next ones."""
        loaded, ann_id = self._image.loaded, self.target()
        if loaded is None or self._prefetch is not None or self._task is not None:
            return
        if ann_id is not None:
            ann = self.edits.dataset.annotations[ann_id]
            if self._cached_mask(ann) is None:
                task = self.decoder.run_task(drafts.annotation_mask, ann.segmentation, ann.size,
                                             self.edits.layer.patch(ann.id))
                self._prefetch = _Task(task, "prefetch", ann)
        elif self._display is None and self.prompts.current and not self.prompts.prompt.empty \
                and not self.has_draft():
            source, index = self.prompts.result.candidates, self.prompts.selected
            if self._cache is None or not self._cache.same_base(source, index, _shape(loaded)):
                self._display = self.decoder.run_task(drafts.render_draft, source, index, _shape(loaded), (), None,
                                                      self.edits.category_color(), self._style.opacity)

    # -- edits -----------------------------------------------------------------------------

    def _edit(self, edit: Edit, stroke: bool) -> bool:
        """Apply ``edit`` to the target; ``False`` when nothing was done (said in the status bar)."""
        if self._image.loaded is None or self.edits.dataset is None:
            return False
        ann_id = self.target()
        if ann_id is not None:
            return self._edit_annotation(self.edits.dataset.annotations[ann_id], edit, stroke)
        prompt = self.prompts.prompt
        d = self.draft() or Draft()
        if prompt.empty and not d.shown and (not isinstance(edit, Stroke) or edit.erase):
            self.statusMessage.emit("Nothing to change here: click on an object, Ctrl+click an annotation, "
                                    "or paint a new mask with the brush", 3000)
            return False
        if stroke:
            self._waiting_strokes += 1
        self.undo_stack.push(EditsCommand(self, self._image.current_path, prompt, d.edits, d.edits + (edit,),
                                          maskedit.describe_edit(edit)))
        return True

    def _edit_annotation(self, ann, edit: Edit, stroke: bool) -> bool:
        cached = self._cached_mask(ann)
        mask, grid = cached if cached is not None else (None, None)
        color = tuple(self.edits.dataset.categories[ann.category_id].color)
        task = self.decoder.run_task(drafts.edit_annotation, mask, grid, ann.segmentation, ann.size, edit,
                                     color, self._style.opacity, self.edits.layer.patch(ann.id), urgent=True)
        self._task = _Task(task, "edit", ann, edit, stroke)
        self.gate.hold()
        return True

    def _cached_mask(self, ann) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        entry = self._masks.get(id(ann))
        if entry is None or entry[0] is not ann:
            return None
        self._masks.move_to_end(id(ann))
        return entry[1], entry[2]

    def _keep_mask(self, ann, mask: np.ndarray, grid: np.ndarray) -> None:
        """Keep ``ann``'s mask (the dict holds ``ann`` itself, so its ``id`` cannot be reused meanwhile)."""
        self._masks[id(ann)] = (ann, mask, grid)
        self._masks.move_to_end(id(ann))
        while len(self._masks) > KEEP_ANNOTATION_MASKS:
            self._masks.popitem(last=False)

    def _finish_edit(self, task: _Task, result: drafts.AnnotationEdit) -> None:
        ann, edits = task.annotation, self.edits
        if edits.dataset is None or edits.dataset.annotations.get(ann.id) is not ann:
            self.statusMessage.emit(f"Annotation {ann.id} changed meanwhile; the edit was not applied", 3000)
            return
        what = maskedit.describe_edit(task.edit)
        if result.delta.empty:
            self.statusMessage.emit(f"{what}: annotation {ann.id} did not change", 2000)
            return
        if result.finished.empty:
            self.undo_stack.push(DeleteAnnotationCommand(edits, ann))
            self.statusMessage.emit(f"{what} erased all of annotation {ann.id}: deleted (Ctrl+Z brings it back)", 5000)
            return
        new = annotation_with_mask(ann, result.finished.rle, {maskedit.EDITED_FIELD: True})
        edits.replace_annotation(new, f"{what} on annotation {ann.id}", result.finished.patch)
        self._keep_mask(new, result.mask, result.grid)  # (the old one's stays kept: undo, then paint again)

    def _finish_refine(self, ann, mask: np.ndarray, logits: np.ndarray, ious=None) -> None:
        if self._image.loaded is None or self.edits.dataset is None or self.edits.dataset.annotations.get(
                ann.id) is not ann:
            return
        stored, hint = drafts.refine_choice(self._stored_prompt(ann), ious)
        if stored is not None:
            prompt, index = stored
            state = PromptState(prompt.points, prompt.labels, prompt.box, logits)
            self._drafts[state] = Draft(target=ann.id)
        else:
            state, index = PromptState(), 0
            self._drafts[state] = Draft(target=ann.id, base=mask, logits=logits)
        self.prompts.push(state, f"Refine annotation {ann.id}", select=index)
        self.statusMessage.emit(f"Refining annotation {ann.id} ({hint}): click to change it, Enter replaces it, "
                                "Esc cancels", 0)

    def _stored_prompt(self, ann):
        """``(PromptState, candidate index)`` stored with ``ann`` when it was accepted, or None."""
        im, field = self._image.loaded, ann.extra.get(maskedit.PROMPT_FIELD)
        return maskedit.prompt_from_fields(field, im.width, im.height) if im is not None else None

    # -- the draft on display ------------------------------------------------------------------

    def _on_prompt_changed(self, state: PromptState) -> None:
        d = self._drafts.get(state)
        self.edits.set_refining(d.target if d is not None else None)
        self._refresh()

    def _want(self) -> Optional[Tuple[Any, int, Tuple[Edit, ...]]]:
        """``(source, index, edits)`` of the draft to draw now; ``None`` when SAM's candidate is shown as it is."""
        prompt, d = self.prompts.prompt, self.draft()
        if d is None or not d.shown or self._image.loaded is None:
            return None
        if prompt.empty:
            return d.base, 0, d.edits
        if not self.prompts.current:
            return d.base, -1, d.edits  # (waiting for SAM's candidate: the overlay on show stays)
        return self.prompts.result.candidates, self.prompts.selected, d.edits

    def _refresh(self) -> None:
        want, loaded = self._want(), self._image.loaded
        if want is None:
            self._show(None)
            self._strokes_shown()
            return
        source, index, edits = want
        if index < 0:
            return
        cache = self._cache
        if cache is not None and cache.same_base(source, index, _shape(loaded)) and _same(cache.edits, edits):
            self._show(cache)
            return
        if self._display is not None:
            self._display_again = True  # one draw in flight; the latest edits are drawn after it
            return
        self._display = self.decoder.run_task(drafts.render_draft, source, index, _shape(loaded), edits, cache,
                                              self.edits.category_color(), self._style.opacity, urgent=True)

    def _show(self, edited: Optional[EditedMask]) -> None:
        if edited is self._shown:
            return
        self._shown = edited
        self.draftOverlayChanged.emit(None if edited is None else (edited.overlay, edited.patch.rect))
        if edited is not None:
            self._strokes_shown()

    def _strokes_shown(self) -> None:
        n, self._waiting_strokes = self._waiting_strokes, 0
        for _ in range(n):
            self.strokeDone.emit()

    def _restyle(self, *_: object) -> None:
        """The category colour or the opacity changed: draw the draft on show again (from its overlay patch)."""
        shown = self._shown
        if shown is not None:
            overlay = render.candidate_overlay(shown.patch.mask, self.edits.category_color(), self._style.opacity)
            restyled = replace(shown, overlay=overlay)
            if self._cache is shown:
                self._cache = restyled
            self._show(restyled)

    # -- decoder results ---------------------------------------------------------------------

    def _on_task_done(self, task_id: int, result: object) -> None:
        if task_id == self._display:
            self._display = None
            loaded = self._image.loaded
            if loaded is not None and result.shape == _shape(loaded):
                self._cache = result
            self._display_again = False
            self._refresh()
            return
        pre = self._prefetch
        if pre is not None and task_id == pre.task_id:
            self._prefetch = None
            dataset = self.edits.dataset
            if dataset is not None and dataset.annotations.get(pre.annotation.id) is pre.annotation:
                self._keep_mask(pre.annotation, *result)
            return
        task = self._task
        if task is None or task_id != task.task_id:
            return
        self._task = None
        try:
            if task.kind == "edit":
                self._finish_edit(task, result)
            else:
                self._finish_refine(task.annotation, *result)
        finally:
            if task.stroke:
                self.strokeDone.emit()
            self.gate.release()

    def _on_task_failed(self, task_id: int, message: str) -> None:
        if task_id == self._display:
            self._display = None
            self.statusMessage.emit(f"Could not draw the edited mask: {message}", 0)
            self._strokes_shown()
            return
        if self._prefetch is not None and task_id == self._prefetch.task_id:
            self._prefetch = None
            return
        task = self._task
        if task is not None and task_id == task.task_id:
            self._task = None
            self.statusMessage.emit(f"Could not {'edit' if task.kind == 'edit' else 'refine'} annotation "
                                    f"{task.annotation.id}: {message}", 0)
            if task.stroke:
                self.strokeDone.emit()
            self.gate.release()


def _shape(loaded: LoadedImage) -> Tuple[int, int]:
    return loaded.height, loaded.width


def _same(a: Tuple[Edit, ...], b: Tuple[Edit, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


__all__ = ["MaskEditing", "MIN_ISLAND_PX"]
