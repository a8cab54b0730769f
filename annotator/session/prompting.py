"""Prompting: the current image's SAM prompt, its decode requests and the candidates on display.

Flow of one click::

    Prompting.add_point(x, y, label)
      -> PromptCommand pushed (undoable) -> apply_prompt -> promptChanged
      -> DecodeJob(id, embedding, prompt snapshot) -> DecoderService (latest wins)
      -> decoded(id, result); a stale id or prompt is dropped
      -> candidateOverlayChanged(overlay): the candidate to show, drawn first
      -> completed(id, result): the other overlays and the thumbnails
      -> candidatesChanged(rows, selected); the result becomes ``result``

The mask is on the canvas a few milliseconds before the strip's thumbnails
and the other candidates' overlays exist (they come in the same job, just
after it). Until then :attr:`Prompting.result` and :attr:`Prompting.current`
still describe what they described before (:attr:`Prompting.displayed` is
what the canvas shows); a pick (Tab, 1-3) or a refining click made then
applies to the candidates on display, and so does an accept.

Before the image's embedding exists (still encoding), prompts are kept and
decoded once :meth:`Prompting.image_ready` is called. Leaving the image
(:meth:`Prompting.reset`) gives every later request a new id, so nothing
decoded for one image is ever shown on another. Accepting the candidate on
display is the :class:`annotator.session.accepting.AcceptPipeline`'s job:
:meth:`Prompting.take_for_accept` hands it over, and
:meth:`Prompting.on_accept` clears (or, on undo, restores) the prompt.
Coordinates are image pixels, x then y (see :mod:`annotator.data.prompts`).

A prompt may carry hand edits and a refined annotation
(:mod:`annotator.session.drafts`), keyed by the prompt state itself: every
prompt change makes a new state (clearing too, never the shared ``EMPTY``
once the image is open), and :attr:`Prompting.lineage` is told when a click
or a box makes a state out of another, so what it carries goes along.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotator import render
from annotator.data.prompts import EMPTY, PromptState, clamp_box, inside, mask_frame_of
from annotator.session.rows import CandidateRow, Color
from annotator.session.style import OverlayStyle
from annotator.session.undo import Accepted, PromptCommand
from annotator.workers.messages import DecodeJob, DecodeResult, LoadedImage, ModelInfo

#: Colour of the candidates when no category colour is given.
DEFAULT_COLOR: Color = (255, 196, 0)


class PromptLineage(Protocol):
    """What follows a prompt from state to state (:class:`annotator.session.editing.MaskEditing`)."""

    def inherit(self, before: PromptState, after: PromptState) -> None:
        """``after`` was made from ``before`` by a click or a box: it carries what ``before`` carried."""

    def refine_logits(self, prompt: PromptState) -> Any:
        """``(256, 256)`` mask input for a click on ``prompt`` when it has no candidate on display, or ``None``."""


class PromptImage(Protocol):
    """The current image, as prompting needs it (implemented by :class:`annotator.session.navigation.ImageNavigator`)."""

    @property
    def current_path(self) -> Optional[Path]: ...

    @property
    def loaded(self) -> Optional[LoadedImage]: ...

    @property
    def embedding(self) -> Any: ...

    @property
    def model_info(self) -> Optional[ModelInfo]: ...


@dataclass(frozen=True, eq=False)
class Chosen:
    """The candidate on display, handed to the accept pipeline: ``candidates[index]`` decoded from ``prompt``."""

    prompt: PromptState
    candidates: Any  # sam_core.Candidates
    index: int

    @property
    def score(self) -> float:
        return float(self.candidates.scores[self.index])


class Prompting(QObject):
    """The prompt and candidates of the current image. See the module notes."""

    promptChanged = Signal(object)  # PromptState
    candidatesChanged = Signal(object, int)  # list[CandidateRow] (empty: none), selected index
    candidateOverlayChanged = Signal(object)  # QImage or None
    statusMessage = Signal(str, int)
    acceptReady = Signal()  # the mask an accept was waiting for is on display: accept it now

    def __init__(
        self,
        decoder,
        undo_stack: QUndoStack,
        image: PromptImage,
        style: OverlayStyle,
        color: Optional[Callable[[], Color]] = None,
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self.decoder = decoder
        self.undo_stack = undo_stack
        self._image = image
        self._style = style
        self._color = color or (lambda: DEFAULT_COLOR)
        self.prompt: PromptState = EMPTY
        self.result: Optional[DecodeResult] = None
        self.selected = 0
        #: A result whose chosen overlay is on the canvas, its rest still being drawn (see the module notes).
        self._early: Optional[DecodeResult] = None
        self._early_selected = 0
        self._decode_id = 0
        self.visit = 0  # times the image was left (reset): prompt steps of an earlier visit are stale
        self._selection_memo: "weakref.WeakKeyDictionary[PromptState, int]" = weakref.WeakKeyDictionary()
        self._accept_when_ready = False
        self.view_scale = 1.0
        self.last_click_latency: Optional[float] = None  # seconds, user action -> overlay ready
        self._t_action: Optional[float] = None  # perf_counter() of the user action being answered
        #: Told when a click or box makes a prompt state from another (hand edits, refining); optional.
        self.lineage: Optional[PromptLineage] = None
        #: ``(prompt, whole-image embedding or None) -> embedding to decode on`` (or None: wait); the session sets
        #: it to :meth:`annotator.session.regions.RegionController.embedding_for` (a region's, when one fits).
        self.embedding_for: Callable[[PromptState, Any], Any] = lambda prompt, whole: whole
        #: ``(result, selected index) -> bool``: False drops a result before it is shown (and decodes the prompt
        #: again, where :attr:`embedding_for` now sends it): the region controller's check of a mask cut by the
        #: region's edge (:meth:`annotator.session.regions.RegionController.usable`).
        self.result_usable: Callable[[Any, int], bool] = lambda result, selected: True
        decoder.decoded.connect(self._on_decoded)
        decoder.completed.connect(self._on_completed)
        decoder.failed.connect(self._on_decode_failed)
        style.changed.connect(self.rerender)

    @property
    def current_path(self) -> Optional[Path]:
        return self._image.current_path

    # -- user actions --------------------------------------------------------------------

    def add_point(self, x: float, y: float, label: int) -> bool:
        """Add a point (image coordinates, x then y; label 1 foreground / 0 background); ``False`` if ignored."""
        loaded = self._image.loaded
        if self.current_path is None or loaded is None or not inside(x, y, loaded.width, loaded.height):
            return False
        t0 = time.perf_counter()
        after = self.prompt.with_point(x, y, label, *self._refine_from())
        self.push(after, f"Add {'foreground' if label == 1 else 'background'} point", t0, inherit=True)
        return True

    def add_points(self, points, labels, text: str) -> bool:
        """Add several points in ONE step (a scribble: ``points`` ``(N, 2)`` x, y; ``labels`` 1/0); points off the
        image are dropped. ``False`` if none is left."""
        loaded = self._image.loaded
        if self.current_path is None or loaded is None:
            return False
        t0 = time.perf_counter()
        after, refine = self.prompt, self._refine_from()
        for (x, y), label in zip(points, labels):
            if inside(float(x), float(y), loaded.width, loaded.height):
                after = after.with_point(float(x), float(y), int(label), *refine)
        if after is self.prompt:
            return False
        self.push(after, text, t0, inherit=True)
        return True

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Set the box (any corner order; clamped to the image; too thin a box is ignored)."""
        loaded = self._image.loaded
        if loaded is None:
            return False
        box = clamp_box((x0, y0, x1, y1), loaded.width, loaded.height)
        if box is None:
            return False
        self.push(self.prompt.with_box(box, *self._refine_from()), "Draw box", time.perf_counter(), inherit=True)
        return True

    def clear(self, force: bool = False) -> bool:
        """Esc: forget the points and box (undoable); ``False`` if there were none (``force``: a new empty prompt
        anyway, dropping what the empty one carried, e.g. strokes painted from scratch)."""
        if self.prompt.empty and not force:
            return False
        self.push(PromptState(), "Clear prompts", time.perf_counter())
        return True

    def push(self, after: PromptState, text: str, t0: Optional[float] = None, *, inherit: bool = False,
             select: Optional[int] = None) -> None:
        """Make ``after`` the prompt as one undoable step called ``text`` (``t0``: when the user acted).

        ``inherit``: ``after`` was made from the current prompt by a click or a
        box (:attr:`lineage` is told); ``select``: the candidate to show once
        it is decoded (default the best-ranked).
        """
        self._accept_when_ready = False
        self._t_action = t0
        if inherit and self.lineage is not None:
            self.lineage.inherit(self.prompt, after)
        if select is not None:
            self._selection_memo[after] = int(select)
        self.undo_stack.push(PromptCommand(self, self.current_path, self.prompt, after, text))

    def select_candidate(self, index: int) -> None:
        """Show candidate ``index`` (0-based); the next prompt change refines from it."""
        early = self._early
        if early is not None:  # picked before the strip is filled: shown now if drawn, else once it is
            if 0 <= index < len(early.overlays) and index != self._early_selected:
                self._early_selected = index
                self._selection_memo[early.prompt] = index
                self.candidateOverlayChanged.emit(self._overlay_of(early, index))
            return
        r = self.result
        if r is None or not 0 <= index < len(r.overlays) or index == self.selected:
            return
        self.selected = index
        self._selection_memo[r.prompt] = index
        self.candidatesChanged.emit(self.candidate_rows(), index)
        self.candidateOverlayChanged.emit(r.overlays[index])

    def cycle_candidate(self, step: int) -> None:
        if self._early is not None:
            self.select_candidate((self._early_selected + step) % len(self._early.overlays))
            return
        r = self.result
        if r is not None and len(r.overlays):
            self.select_candidate((self.selected + step) % len(r.overlays))

    def set_view_scale(self, scale: float) -> None:
        """The canvas zoomed: render the candidates again when the overlay would look soft."""
        self.view_scale = scale
        r, loaded = self.result, self._image.loaded
        if r is None or loaded is None:
            return
        want = render.overlay_size(loaded.height, loaded.width, scale)
        if want[0] > r.previews[0].shape[0] * 1.3:
            self._request_decode(time.perf_counter())

    def take_for_accept(self) -> Optional[Chosen]:
        """The candidate on display, to accept; ``None`` (and a word to the user) when there is none yet.

        When the prompt's mask is still being decoded, ``acceptReady`` is
        emitted once it is on display (unless the prompt changes first).
        """
        if self.prompt.empty:
            self.statusMessage.emit("Nothing to accept: click on an object first", 3000)
            return None
        shown = self.displayed
        if shown is None or shown.prompt is not self.prompt:
            self._accept_when_ready = True
            self.statusMessage.emit("Accepting as soon as the mask is ready…", 2000)
            return None
        return Chosen(self.prompt, shown.candidates, self._early_selected if shown is self._early else self.selected)

    # -- state -----------------------------------------------------------------------------

    @property
    def current(self) -> bool:
        """The candidates on display belong to the prompt."""
        return self.result is not None and self.result.prompt is self.prompt

    @property
    def displayed(self) -> Optional[DecodeResult]:
        """The result whose overlay the canvas shows: :attr:`result`, or one whose rest is still being drawn."""
        return self._early if self._early is not None else self.result

    def candidate_rows(self) -> List[CandidateRow]:
        r = self.result
        if r is None:
            return []
        scores = r.candidates.scores
        return [CandidateRow(i + 1, float(scores[i]), r.areas[i], r.thumbs[i]) for i in range(len(r.overlays))]

    # -- called by undo commands and the session -----------------------------------------------

    def apply_prompt(self, state: PromptState) -> None:
        """Make ``state`` the prompt (undo commands call this) and decode it."""
        self.prompt = state
        self.promptChanged.emit(state)
        if state.empty:
            self._decode_id += 1
            self.decoder.cancel()
            self._show_result(None)
            return
        t0 = self._t_action or time.perf_counter()
        self._t_action = None
        self._request_decode(t0)

    def on_accept(self, accepted: Accepted, applied: bool) -> None:
        """An accept from a prompt on the current image clears it; undoing the accept puts it back."""
        if accepted.prompt is not None and accepted.image == self.current_path:
            self.apply_prompt(PromptState() if applied else accepted.prompt)  # (a new state: it carries nothing)

    def reset(self) -> None:
        """The image is being left: no prompt, no candidates; decodes still on their way are dropped."""
        self.visit += 1  # the prompt steps made so far are stale, even when the user comes back
        self._decode_id += 1
        self.decoder.cancel()
        self.prompt = EMPTY
        self.result = None
        self._early = None
        self._accept_when_ready = False
        self._selection_memo = weakref.WeakKeyDictionary()
        self.promptChanged.emit(EMPTY)
        self._emit_candidates()

    def forget_result(self) -> None:
        """Another model: the candidates on display (and decodes on their way) are dropped; the prompt stays."""
        self._decode_id += 1
        if self.result is not None or self._early is not None:
            self._show_result(None)

    def image_ready(self, *_: object) -> None:
        """The current image's embedding arrived: decode a prompt made while it was encoding."""
        if not self.prompt.empty and not self.current:
            self._request_decode(time.perf_counter())

    def redecode(self, *_: object) -> None:
        """A better embedding for the prompt may be there (a region's): decode it again if there is one."""
        if not self.prompt.empty:
            self._request_decode(time.perf_counter())

    def rerender(self, *_: object) -> None:
        """The colour or the opacity changed: draw the candidates on display again."""
        if self.current:
            self._request_decode(time.perf_counter())

    # -- internals ---------------------------------------------------------------------------

    def _refine_from(self):
        """Low-res logits of the candidate on display and their frame, if it belongs to the current prompt; else
        what the lineage gives (e.g. the mask of an annotation being refined, in the whole image's frame)."""
        early = self._early
        if early is not None and early.prompt is self.prompt and not self.prompt.empty:
            return early.candidates.low_res_logits[self._early_selected], mask_frame_of(early.candidates)
        if self.current and not self.prompt.empty:
            cands = self.result.candidates
            return cands.low_res_logits[self.selected], mask_frame_of(cands)
        return (self.lineage.refine_logits(self.prompt) if self.lineage is not None else None), None

    def _request_decode(self, t0: float) -> None:
        im = self._image
        loaded = im.loaded
        embedding = self.embedding_for(self.prompt, im.embedding) if loaded is not None else None
        if embedding is None or loaded is None or self.prompt.empty or im.model_info is None:
            if not self.prompt.empty and loaded is not None:
                self.statusMessage.emit("The mask will appear when the image is encoded…", 2000)
            return
        self._decode_id += 1
        size = render.overlay_size(loaded.height, loaded.width, self.view_scale)
        self.decoder.submit(
            DecodeJob(self._decode_id, embedding, self.prompt, size, loaded.small, self._color(), t0,
                      self._style.opacity, show=self._selection_memo.get(self.prompt, 0))
        )

    def _on_decoded(self, job_id: int, result: DecodeResult) -> None:
        if job_id != self._decode_id or result.prompt is not self.prompt:
            return
        selected = min(self._selection_memo.get(result.prompt, 0), len(result.overlays) - 1)
        if not self.result_usable(result, selected):
            self._request_decode(result.t0)  # on what answers it now (never shown, never accepted)
            return
        if result.complete:
            self._show_result(result, selected)
        else:  # the mask now (the one drawn, if the pick changed since the request); the rest in _on_completed
            self._early, self._early_selected = result, selected
            self.candidateOverlayChanged.emit(self._overlay_of(result, selected))
        self.last_click_latency = time.perf_counter() - result.t0
        self._accept_if_waiting()

    def _on_completed(self, job_id: int, result: DecodeResult) -> None:
        """The rest of the result on display: it becomes :attr:`result`; the strip; the pick made meanwhile."""
        early = self._early
        if early is None or early.job_id != job_id:  # (left, cleared or replaced meanwhile)
            return
        selected = self._early_selected
        self._show_result(result, selected, overlay=early.overlays[selected] is None)  # (drawn here meanwhile)

    def _overlay_of(self, result: DecodeResult, index: int):
        """Candidate ``index``'s overlay; drawn here (~0.6 ms) when the result's rest is still on its way.

        What the canvas shows is then always the candidate that a pick chose and an accept or a refining click
        takes, also in the few ms between a result's first part and its rest.
        """
        drawn = result.overlays[index]
        if drawn is not None:
            return drawn
        size = result.previews[result.shown].shape[:2]
        return render.candidate_view(result.candidates, index, size, self._color(), self._style.opacity)[1]

    def _accept_if_waiting(self) -> None:
        if self._accept_when_ready:
            self._accept_when_ready = False
            self.acceptReady.emit()

    def _on_decode_failed(self, job_id: int, message: str) -> None:
        if job_id == self._decode_id:
            self._accept_when_ready = False
            self.statusMessage.emit(f"SAM could not use this prompt: {message}", 5000)

    def _show_result(self, result: Optional[DecodeResult], selected: int = 0, overlay: bool = True) -> None:
        self.result = result
        self._early = None
        self.selected = selected
        self._emit_candidates(overlay)

    def _emit_candidates(self, overlay: bool = True) -> None:
        r = self.result
        if r is None:
            self.candidatesChanged.emit([], -1)
            self.candidateOverlayChanged.emit(None)
            return
        self.candidatesChanged.emit(self.candidate_rows(), self.selected)
        if overlay:
            self.candidateOverlayChanged.emit(r.overlays[self.selected])
