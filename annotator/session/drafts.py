"""Masks being edited by hand: the values, and the pure functions that run on the decoder thread.

A prompt (:class:`annotator.data.prompts.PromptState`) may carry a
:class:`Draft`: the hand edits made over its candidate (brush and eraser
strokes, cleanups: :mod:`annotator.data.maskedit` edits, replayable values),
and what it refines. The edits are *layered* over SAM: when a further click
changes SAM's candidate, the same edits are applied again to the new one, so
erasing a leak and then clicking to add a part keeps the leak erased. With no
point or box yet, the edits apply to the draft's ``base`` (the mask of an
annotation being refined, or an empty mask when painting from scratch).

The full-resolution work happens off the GUI thread as decoder tasks
(:func:`render_draft`, :func:`edit_annotation`, :func:`draft_mask`), on
immutable inputs; masks are Fortran-ordered (column-major, like COCO RLE) so
encoding one skips a 12 MP transpose, and every edit returns a new array
(:meth:`annotator.data.maskedit.MaskDelta.apply`), never changing one that
another thread may read. An :class:`EditedMask` is kept as a cache: the next
stroke is applied to it incrementally (only the stroke's pixels and the
overlay cells above them are recomputed), and undoing the last strokes
reverts their deltas.

Coordinates and shapes as in :mod:`annotator.data.maskedit`: ``(H, W)`` bool
masks at full image resolution, x then y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
from PySide6.QtGui import QImage

from annotator import render
from annotator.data import maskedit
from annotator.data.maskedit import Edit, MaskDelta

#: Deltas kept per edited mask for reverting the last edits without replaying all of them.
KEEP_DELTAS = 32


@dataclass(frozen=True, eq=False)
class Draft:
    """What a prompt carries besides SAM's points and box (see the module notes).

    edits:
        Strokes and cleanups applied over the candidate (or ``base``), in order.
    target:
        Id of the annotation this prompt refines (Enter replaces it), or ``None`` (Enter adds one).
    base:
        ``(H, W)`` bool mask shown and edited while the prompt has no point or box
        (the refined annotation's mask), or ``None`` (an empty mask).
    logits:
        ``(256, 256)`` float32: the decoder's ``mask_input`` for the first click
        when there is no candidate yet (``base`` as SAM sees a mask), or ``None``.
    """

    edits: Tuple[Edit, ...] = ()
    target: Optional[int] = None
    base: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None

    @property
    def shown(self) -> bool:
        """Whether the draft, not SAM's plain candidate, is what the canvas should show."""
        return bool(self.edits) or self.base is not None

    def with_edits(self, edits: Tuple[Edit, ...]) -> "Draft":
        return Draft(tuple(edits), self.target, self.base, self.logits)


@dataclass(frozen=True, eq=False)
class EditedMask:
    """A base mask with edits applied: ``source`` (``sam_core.Candidates``, an array or ``None``) and ``index`` say
    which base; ``mask`` is full resolution (Fortran order), ``grid`` its overlay grid
    (:func:`annotator.render.grid_of`), ``deltas`` the last edits' deltas (``None`` where not kept)."""

    source: Any
    index: int
    shape: Tuple[int, int]
    edits: Tuple[Edit, ...]
    mask: np.ndarray
    grid: np.ndarray
    deltas: Tuple[Optional[MaskDelta], ...]
    patch: render.MaskPatch
    overlay: Optional[QImage] = None

    def same_base(self, source: Any, index: int, shape: Tuple[int, int]) -> bool:
        return self.source is source and self.index == index and self.shape == tuple(shape)


def base_mask(source: Any, index: int, shape: Tuple[int, int]) -> np.ndarray:
    """The base to edit, Fortran-ordered: candidate ``index`` of ``source`` (``sam_core.Candidates``), ``source``
    itself (an array), or an empty mask of ``shape`` (``None``)."""
    if source is None:
        return np.zeros(shape, dtype=bool, order="F")
    if isinstance(source, np.ndarray):
        return np.asfortranarray(source, dtype=bool)
    return np.asfortranarray(source.mask(index))


def _prefix(short: Tuple[Edit, ...], long: Tuple[Edit, ...]) -> bool:
    return len(short) <= len(long) and all(a is b for a, b in zip(short, long))


def apply_edits(source: Any, index: int, shape: Tuple[int, int], edits: Tuple[Edit, ...],
                cache: Optional[EditedMask] = None) -> Tuple[np.ndarray, np.ndarray, Tuple[Optional[MaskDelta], ...]]:
    """``(mask, grid, deltas)``: the base with ``edits`` applied, reusing ``cache`` when it has the same base.

    Edits the cache already has are not applied again; edits it has beyond
    ``edits`` are reverted from their deltas when kept; anything else starts
    from the base.
    """
    h, w = shape
    if cache is not None and cache.same_base(source, index, shape):
        if _prefix(cache.edits, edits):
            mask, grid, deltas, done = cache.mask, cache.grid, list(cache.deltas), len(cache.edits)
            return _forward(mask, grid, deltas, edits[done:])
        if _prefix(edits, cache.edits) and all(d is not None for d in cache.deltas[len(edits):]):
            mask, grid = cache.mask, cache.grid
            for delta in reversed(cache.deltas[len(edits):]):
                mask = delta.revert(mask)
                grid = render.refresh_grid(grid, mask, delta.y0, delta.y1, delta.x0, delta.x1)
            return mask, grid, tuple(cache.deltas[:len(edits)])
    mask = base_mask(source, index, (h, w))
    grid = render.grid_of(mask) if source is not None else np.zeros(render.grid_size(h, w), bool)
    return _forward(mask, grid, [], edits)


def _forward(mask: np.ndarray, grid: np.ndarray, deltas: list, edits: Tuple[Edit, ...]):
    for edit in edits:
        delta = maskedit.apply_edit(mask, edit)
        if not delta.empty:
            mask = delta.apply(mask)
            grid = render.refresh_grid(grid, mask, delta.y0, delta.y1, delta.x0, delta.x1)
        deltas.append(delta)
    if len(deltas) > KEEP_DELTAS:
        deltas = [None] * (len(deltas) - KEEP_DELTAS) + deltas[-KEEP_DELTAS:]
    return mask, grid, tuple(deltas)


def render_draft(source: Any, index: int, shape: Tuple[int, int], edits: Tuple[Edit, ...],
                 cache: Optional[EditedMask], color: render.Color, opacity: float) -> EditedMask:
    """Decoder task: the draft's edited mask and its overlay (drawn like a candidate, cut to its patch)."""
    mask, grid, deltas = apply_edits(source, index, shape, edits, cache)
    patch = render.mask_patch(grid, shape[0], shape[1])
    overlay = render.candidate_overlay(patch.mask, color, opacity)
    return EditedMask(source, index, tuple(shape), tuple(edits), mask, grid, deltas, patch, overlay)


def draft_mask(source: Any, index: int, shape: Tuple[int, int], edits: Tuple[Edit, ...],
               cache: Optional[EditedMask]) -> np.ndarray:
    """Decoder task for an accept: the draft's full-resolution mask (from ``cache`` when it is up to date)."""
    return apply_edits(source, index, shape, edits, cache)[0]


@dataclass(frozen=True, eq=False)
class AnnotationEdit:
    """What an edit made of an annotation's mask: the new ``mask`` (Fortran order), its ``grid``, the ``delta`` and
    what the document needs (:class:`annotator.render.FinishedMask`: RLE, patch, overlay)."""

    mask: np.ndarray
    grid: np.ndarray
    delta: MaskDelta
    finished: render.FinishedMask


def annotation_mask(segmentation: Any, shape: Tuple[int, int], patch: Optional[render.MaskPatch] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Decoder task: an annotation's ``(mask, grid)`` to edit (grid from its drawn ``patch`` when known)."""
    from annotator.data.coco import decode_rle

    h, w = shape
    mask = np.asfortranarray(decode_rle(segmentation, h, w))
    grid = render.grid_from_patch(patch, h, w) if patch is not None else render.grid_of(mask)
    return mask, grid


def edit_annotation(mask: Optional[np.ndarray], grid: Optional[np.ndarray], segmentation: Any,
                    shape: Tuple[int, int], edit: Edit, color: render.Color, opacity: float,
                    patch: Optional[render.MaskPatch] = None) -> AnnotationEdit:
    """Decoder task: ``edit`` applied to an annotation's mask (decoded from ``segmentation`` unless given; its
    grid from its drawn ``patch`` when known)."""
    if mask is None or grid is None:
        mask, grid = annotation_mask(segmentation, shape, patch)
    delta = maskedit.apply_edit(mask, edit)
    if not delta.empty:
        mask = delta.apply(mask)
        grid = render.refresh_grid(grid, mask, delta.y0, delta.y1, delta.x0, delta.x1)
    patch = render.mask_patch(grid, shape[0], shape[1])
    return AnnotationEdit(mask, grid, delta, render.finish_mask(mask, color, opacity, patch))


#: R keeps an annotation's stored prompt only when SAM, given it and the mask as input, gives back a candidate
#: at least this close (IoU) to the annotation; else the mask itself is shown and guides SAM.
REFINE_MATCH_IOU = 0.9


def refine_inputs(segmentation: Any, shape: Tuple[int, int], input_size: Optional[Tuple[int, int]],
                  model: Any = None, embedding: Any = None, prompt: Any = None
                  ) -> Tuple[np.ndarray, np.ndarray, Optional[Tuple[float, ...]]]:
    """Decoder task for "refine with SAM": an annotation's ``(mask, logits, match)``: the mask (Fortran order),
    the decoder's ``mask_input`` made from it (:func:`annotator.data.maskedit.mask_logits`), and, given the
    ``model`` (``ModelInfo.model``), the image's whole ``embedding`` and the annotation's stored ``prompt`` (a
    :class:`~annotator.data.prompts.PromptState`), the IoU with the mask of each of SAM's candidates for that
    prompt (with the logits as mask input); else None. SAM does not always give an annotation back
    (a hand-edited one, or one of its lower-ranked candidates), and R must not show, nor Enter accept, a
    different mask than the one accepted."""
    from annotator.data.coco import decode_rle

    mask = decode_rle(segmentation, shape[0], shape[1])
    logits = maskedit.mask_logits(mask, input_size)
    ious: Optional[Tuple[float, ...]] = None
    if model is not None and embedding is not None and prompt is not None and not prompt.empty:
        from annotator.data.prompts import PromptState
        from annotator.workers.loader import make_predictor

        state = PromptState(prompt.points, prompt.labels, prompt.box, logits)
        cands = make_predictor(model).decode(embedding, multimask=True, **state.decode_args(embedding))
        area = int(mask.sum())
        found = []
        for i in range(len(cands)):
            m = cands.mask(i)
            inter = int(np.count_nonzero(m & mask))
            found.append(inter / max(1, area + int(np.count_nonzero(m)) - inter))
        ious = tuple(found)
    return np.asfortranarray(mask), logits, ious


def refine_choice(stored: Optional[Tuple[Any, int]], ious: Optional[Tuple[float, ...]]
                  ) -> Tuple[Optional[Tuple[Any, int]], str]:
    """What R reopens: ``(stored prompt and the candidate to show, or None: the mask itself), status hint``.

    ``stored``: ``(PromptState, candidate index)`` kept with the annotation,
    or None; ``ious``: from :func:`refine_inputs` (None: not checked). The
    stored candidate is kept when SAM gives the annotation back with it
    (IoU at least :data:`REFINE_MATCH_IOU`), else the candidate that does;
    when none does, the annotation's own mask is shown and guides SAM.
    """
    if stored is None:
        return None, "no stored prompt: its mask guides SAM"
    if not ious:
        return stored, "its prompt is back"
    prompt, index = stored
    if not (0 <= index < len(ious) and ious[index] >= REFINE_MATCH_IOU):
        index = int(np.argmax(ious))  # the stored candidate is not it (any more): the one that is
    if ious[index] < REFINE_MATCH_IOU:  # SAM would show, and Enter accept, another mask than the one accepted
        return None, f"SAM does not give it back from its prompt (IoU {max(ious):.2f}): its mask guides SAM"
    return (prompt, index), "its prompt is back"
