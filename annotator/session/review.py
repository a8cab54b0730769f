"""The segment-everything controller: runs the job for the current image and holds the review of its proposals.

While a review is open the session routes clicks, boxes, Enter and Esc here
instead of to SAM's prompt: a click toggles the proposal under the cursor, a
drag selects those inside the box, Enter accepts the selected ones, Shift+Enter
all, Esc leaves. Accepted proposals go through the session's one accept
pipeline (:class:`annotator.session.accepting.AcceptPipeline`) as one undo
step; undoing it shows them again while the review is open
(:meth:`EverythingController.on_accept`).

Every user entry point waits behind the session's :class:`~annotator.session.gate.ActionGate`
while an accept is being finished, like every other action. Which image is
current is asked of the navigator; a run's result for an image the user has
left is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from annotator import render
from annotator.session.accepting import ReadyMask
from annotator.session.everything import (
    EverythingOptions,
    EverythingResult,
    Proposal,
    default_generator,
    duplicates,
    run_stored_or_everything,
)
from annotator.session.gate import ActionGate, waits_for_accept
from annotator.session.rows import Color
from annotator.session.style import OverlayStyle
from annotator.session.undo import Accepted
from annotator.workers.jobs import JobService
from annotator.workers.messages import LoadedImage, ModelInfo

log = logging.getLogger(__name__)


class ReviewImage(Protocol):
    """The current image and model (implemented by :class:`annotator.session.navigation.ImageNavigator`)."""

    @property
    def current_path(self) -> Optional[Path]: ...

    @property
    def loaded(self) -> Optional[LoadedImage]: ...

    @property
    def embedding(self) -> Any: ...

    @property
    def model_info(self) -> Optional[ModelInfo]: ...

    def unavailable(self) -> str: ...


class ProposalSink(Protocol):
    """Where accepted proposals go (implemented by :class:`annotator.session.accepting.AcceptPipeline`)."""

    @property
    def model_type(self) -> str: ...

    def accept_proposals(self, image: Path, width: int, height: int, review: int,
                         chosen: Sequence[Tuple[int, ReadyMask]]) -> int: ...


class Review:
    """The proposals of one image under review (Qt-free state).

    ``selected``: indices (:attr:`Proposal.index`) the user picked;
    ``accepted``: indices already made into annotations (not drawn, not
    clickable; undoing the accept puts them back); ``annotated``: indices
    that match an annotation the image already has (mask IoU above the
    controller's :attr:`~EverythingController.duplicate_iou`): hidden, and
    never accepted a second time.
    """

    def __init__(self, result: EverythingResult, token: int) -> None:
        self.result = result
        self.token = token  # identifies this review for the undo commands
        self.by_index: Dict[int, Proposal] = {p.index: p for p in result.proposals}
        self.selected: set[int] = set()
        self.accepted: set[int] = set()
        self.annotated: set[int] = set()

    @property
    def path(self) -> Path:
        return self.result.path

    def open(self) -> List[Proposal]:
        """Proposals not accepted yet, largest first."""
        return [p for p in self.result.proposals if p.index not in self.accepted and p.index not in self.annotated]

    def at(self, x: float, y: float) -> Optional[Proposal]:
        """The smallest open proposal whose mask holds ``(x, y)``; failing that, whose box holds it."""
        hits = [p for p in self.open() if p.in_bbox(x, y) and p.contains(x, y)]
        if not hits:  # a sliver lost at overlay resolution
            hits = [p for p in self.open() if p.in_bbox(x, y) and p.area < 64]
        return min(hits, key=lambda p: p.area) if hits else None

    def inside(self, box: Tuple[float, float, float, float]) -> List[Proposal]:
        """Open proposals whose bounding box lies inside ``box`` ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = box
        out = []
        for p in self.open():
            bx, by, bw, bh = p.bbox
            if bx - 0.5 >= x0 - 1 and by - 0.5 >= y0 - 1 and bx + bw - 0.5 <= x1 + 1 and by + bh - 0.5 <= y1 + 1:
                out.append(p)
        return out


class EverythingController(QObject):
    """Runs segment-everything and holds the review. See the module notes.

    Attributes
    ----------
    options:
        :class:`EverythingOptions` for the next run (settable: tests and
        power users lower ``points_per_side``).
    make_generator:
        ``(model, options) -> generator`` with ``generate(image, embedding=,
        progress=, cancel=)``; :func:`default_generator` by default.
    gate:
        The :class:`ActionGate` its user entry points wait behind.
    duplicate_iou:
        A proposal whose mask IoU with an annotation of the image is above this
        is taken as already annotated (a preference).
    annotated:
        ``annotated(path) -> [RLE]``: the masks the image already has.
    stored_source:
        ``stored_source(path) -> (working file, file_name, digest) or None``:
        where ``sam-annotator auto`` may have stored this image's proposals.
    """

    #: How many reviews ended by accepting everything are kept, so that undo can bring them back.
    KEPT_REVIEWS = 8

    runningChanged = Signal(bool)
    progress = Signal(int, int, str)  # done, total (0: unknown), text
    reviewChanged = Signal(bool)  # a review began (True) or ended (False)
    overlaysChanged = Signal()  # the proposals to draw changed (call overlays())
    proposalChanged = Signal(int, object)  # proposal index, its new QImage (a toggle)
    selectionChanged = Signal(int, int)  # selected, open
    statusMessage = Signal(str, int)

    def __init__(
        self,
        image: ReviewImage,
        accepts: ProposalSink,
        gate: ActionGate,
        style: OverlayStyle,
        color: Optional[Callable[[], Color]] = None,
        jobs: Optional[JobService] = None,
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self._image = image
        self._accepts = accepts
        self.gate = gate
        self._style = style
        self._color = color or (lambda: render.PROPOSAL_EDGE)
        self.options = EverythingOptions()
        self.duplicate_iou = 0.8
        self.annotated: Callable[[Path], List[Dict[str, Any]]] = lambda path: []
        self.stored_source: Callable[[Path], Optional[Tuple[Path, str, str]]] = lambda path: None
        self._ended: Dict[int, Review] = {}  # token -> a review that accepting everything ended
        self.make_generator: Callable[[Any, EverythingOptions], Any] = default_generator
        self.jobs = jobs if jobs is not None else JobService("sam-everything", self)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.finished.connect(self._on_finished)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.cancelled.connect(self._on_cancelled)
        self.review: Optional[Review] = None
        self.last_result: Optional[EverythingResult] = None
        self._kept_for: Optional[tuple] = None  # (path, model info, options, make_generator) of last_result
        self._job_for: Optional[tuple] = None  # ... of the run in flight
        self._job: Optional[int] = None
        self._job_path: Optional[Path] = None
        self._tokens = 0
        self._selected_images: Dict[tuple, QImage] = {}
        style.changed.connect(self.restyle)

    # -- state -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A run for the current image is under way."""
        return self._job is not None

    @property
    def reviewing(self) -> bool:
        return self.review is not None

    # -- running -----------------------------------------------------------------------

    @waits_for_accept
    def start(self) -> bool:
        """Segment everything on the current image (its embedding is reused); ``False`` if it cannot start now."""
        im = self._image
        path = im.current_path
        if path is None or im.loaded is None:
            self.statusMessage.emit(im.unavailable() or "Open a folder of images first", 5000)
            return False
        if im.model_info is None:
            self.statusMessage.emit("Segment everything can start once the model is loaded", 4000)
            return False
        if im.embedding is None:
            self.statusMessage.emit("Segment everything can start once the image is encoded", 4000)
            return False
        if self.running:
            return True
        self.leave()
        if self._reopen(path, im.model_info):
            return True
        self._job_path = path
        self._job_for = (path, im.model_info, self.options, self.make_generator)
        self._job = self.jobs.submit(run_stored_or_everything, self.stored_source(path), self.make_generator,
                                     im.model_info.model, path, im.embedding, self.options)
        self.runningChanged.emit(True)
        self.progress.emit(0, 0, "Segmenting everything…")
        return True

    @waits_for_accept
    def cancel(self) -> bool:
        """Stop the run in flight (``runningChanged(False)`` follows at once). Returns whether one was running."""
        if self._job is None:
            return False
        self.jobs.cancel()
        self._end_run()
        self.statusMessage.emit("Segment everything cancelled", 3000)
        return True

    def stop(self, model_changed: bool = False) -> None:
        """The image (or, ``model_changed``, the model) changes: cancel any run and leave the review, saying
        what was left.

        The proposals stay in :attr:`last_result`: Ctrl+E back on the same
        image, with the same model and options, shows them again at once
        (after a model change they are another model's, and are computed anew).
        """
        why = "the model changed" if model_changed else "the image changed"
        if self._job is not None:
            self.jobs.cancel()
            self._end_run()
            self.statusMessage.emit(f"Segment everything cancelled ({why})", 5000)
        if self.review is not None:
            n, name = len(self.review.open()), self.review.path.name
            self.leave()
            if n and model_changed:
                self.statusMessage.emit(f"Left the review of {n} proposals on {name} ({why}): Segment Everything "
                                        "there runs again with the new model", 8000)
            elif n:  # replaces "N proposals ...: Enter accepts", which no longer holds
                self.statusMessage.emit(f"Left the review of {n} proposals on {name}: Segment Everything there "
                                        "shows them again", 8000)

    def _reopen(self, path: Path, model_info: Any) -> bool:
        """Show the proposals of the last run again if it was for ``path`` with this model and these options."""
        result = self.last_result
        kept = self._kept_for
        if result is None or kept is None or result.path != path or not result.proposals:
            return False
        if kept[0] != path or kept[1] is not model_info or kept[2:] != (self.options, self.make_generator):
            return False
        self._announce(result, "kept from the last run")
        return True

    def shutdown(self, timeout_ms: int = -1) -> bool:
        self._job = None
        return self.jobs.shutdown(timeout_ms)

    def _end_run(self) -> None:
        self._job = None
        self._job_path = None
        self.runningChanged.emit(False)

    def _mine(self, job_id: int) -> bool:
        return job_id == self._job and self._job_path == self._image.current_path

    def _on_progress(self, job_id: int, done: int, total: int, text: str) -> None:
        if self._mine(job_id):
            self.progress.emit(done, total, text)

    def _on_finished(self, job_id: int, result: EverythingResult) -> None:
        if not self._mine(job_id) or result.path != self._image.current_path:
            return
        self._kept_for, self._job_for = self._job_for, None
        self._end_run()
        self.last_result = result
        n = len(result.proposals)
        if n == 0:
            self.statusMessage.emit(f"Segment everything found no objects ({result.seconds:.1f} s)", 5000)
            return
        self._announce(result, "from sam-annotator auto" if result.stored else f"in {result.seconds:.1f} s")

    def _announce(self, result: EverythingResult, where: str) -> None:
        """Open the review of ``result`` (a run's, found ``where``) and say how many proposals it has."""
        n = len(result.proposals)
        self._begin(result)
        known = len(self.review.annotated)
        if known == n:
            self.leave()
            self.statusMessage.emit(f"All {n} proposals ({where}) are already annotated", 5000)
            return
        hidden = f", {known} already annotated (hidden)" if known else ""
        self.statusMessage.emit(
            f"{n - known} proposals {where}{hidden}: click to select, Enter accepts the selected, "
            "Shift+Enter all, Esc leaves", 0,
        )

    def _on_failed(self, job_id: int, message: str) -> None:
        if self._mine(job_id):
            self._end_run()
            self.statusMessage.emit(f"Segment everything failed: {message}", 0)

    def _on_cancelled(self, job_id: int) -> None:
        if self._mine(job_id):
            self._end_run()

    # -- review ------------------------------------------------------------------------

    def _begin(self, result: EverythingResult) -> None:
        self._tokens += 1
        self.review = Review(result, self._tokens)
        self.review.annotated = duplicates(result.proposals, self.annotated(result.path), self.duplicate_iou)
        self._selected_images.clear()
        self.reviewChanged.emit(True)
        self.overlaysChanged.emit()
        self._emit_counts()

    def leave(self) -> None:
        """End the review (the proposals not accepted are dropped)."""
        if self.review is None:
            return
        self.review = None
        self._selected_images.clear()
        self.reviewChanged.emit(False)
        self.overlaysChanged.emit()

    @waits_for_accept
    def reject_all(self) -> None:
        """Esc while reviewing: leave without accepting the rest."""
        if self.review is not None:
            n = len(self.review.open())
            self.leave()
            self.statusMessage.emit(f"Rejected {n} proposal(s)", 3000)

    @waits_for_accept
    def toggle_at(self, x: float, y: float, select: Optional[bool] = None) -> Optional[int]:
        """Toggle (or set, with ``select``) the proposal under image point ``(x, y)``; returns its index."""
        review = self.review
        p = review.at(x, y) if review is not None else None
        if p is None:
            return None
        want = (p.index not in review.selected) if select is None else bool(select)
        self.set_selected([p.index], want)
        return p.index

    @waits_for_accept
    def select_inside(self, box: Tuple[float, float, float, float]) -> List[int]:
        """Select the open proposals whose box lies inside ``box`` ``(x0, y0, x1, y1)``."""
        if self.review is None:
            return []
        chosen = [p.index for p in self.review.inside(box)]
        self.set_selected(chosen, True)
        return chosen

    @waits_for_accept
    def set_selected(self, indices: Sequence[int], selected: bool) -> None:
        review = self.review
        if review is None:
            return
        for i in indices:
            if i in review.accepted or i not in review.by_index or (i in review.selected) == selected:
                continue
            (review.selected.add if selected else review.selected.discard)(i)
            self.proposalChanged.emit(i, self.image_of(review.by_index[i]))
        self._emit_counts()

    def image_of(self, p: Proposal) -> QImage:
        """How proposal ``p`` is drawn now (outline; a fill in the category colour when selected)."""
        review = self.review
        if review is None or p.index not in review.selected:
            return p.outline
        key = (p.index, tuple(self._color()), self._style.opacity)
        image = self._selected_images.get(key)
        if image is None:
            image = self._selected_images[key] = render.proposal_overlay(p.patch.mask, True, key[1], key[2])
        return image

    def overlays(self) -> List[Tuple[int, QImage, Tuple[float, float, float, float]]]:
        """``(index, image, rect)`` of the open proposals, largest first (``rect`` in image pixels)."""
        if self.review is None:
            return []
        return [(p.index, self.image_of(p), p.patch.rect) for p in self.review.open()]

    def restyle(self, *_: object) -> None:
        """The category colour or the opacity changed: draw the selected proposals again."""
        if self.review is not None and self.review.selected:
            self._selected_images.clear()
            self.overlaysChanged.emit()

    def counts(self) -> Tuple[int, int]:
        """``(selected, open)`` proposals of the review (0, 0 without one)."""
        if self.review is None:
            return 0, 0
        return len(self.review.selected - self.review.accepted), len(self.review.open())

    def _emit_counts(self) -> None:
        self.selectionChanged.emit(*self.counts())

    # -- accepting ---------------------------------------------------------------------

    @waits_for_accept
    def accept_selected(self) -> int:
        """Accept the selected proposals in the current category (one undo step); returns how many."""
        review = self.review
        if review is None:
            return 0
        chosen = [p for p in review.open() if p.index in review.selected]
        if not chosen:
            self.statusMessage.emit("Click proposals to select them (or Shift+Enter to accept all, Esc to leave)", 4000)
            return 0
        return self._accept(chosen)

    @waits_for_accept
    def accept_all(self) -> int:
        """Accept every open proposal in the current category (one undo step) and leave the review."""
        review = self.review
        if review is None:
            self.statusMessage.emit("No proposals to accept: Segment Everything (Ctrl+E) first", 3000)
            return 0
        return self._accept(review.open())

    def _accept(self, chosen: Sequence[Proposal]) -> int:
        review = self.review
        # never twice: what matches an annotation made since the review began is left out
        again = duplicates(chosen, self.annotated(review.path), self.duplicate_iou)
        if again:
            review.annotated |= again
            chosen = [p for p in chosen if p.index not in again]
            self.overlaysChanged.emit()
            if not chosen:
                self.statusMessage.emit("Those proposals are already annotated", 3000)
                return 0
        model = self._accepts.model_type
        ready = [
            (p.index, ReadyMask(p.segmentation, p.patch, {
                "predicted_iou": round(p.predicted_iou, 4), "stability_score": round(p.stability_score, 4),
                "model": model, "source": "segment-everything",
            }))
            for p in chosen
        ]
        h, w = review.result.size
        n = self._accepts.accept_proposals(review.path, w, h, review.token, ready)
        if n and self.review is not None and not self.review.open():
            self._ended[review.token] = review  # undo brings the review back as it was
            while len(self._ended) > self.KEPT_REVIEWS:
                self._ended.pop(next(iter(self._ended)))
            self.leave()
        return n

    def on_accept(self, accepted: Accepted, applied: bool) -> None:
        """An accept of this review's proposals was done (or redone) or undone: hide or show them again."""
        review = self.review
        if accepted.review is not None and not applied and review is None:
            ended = self._ended.pop(accepted.review, None)
            if ended is not None and ended.path == self._image.current_path:
                review = self.review = ended  # the accept that ended it is undone: review again
                self._selected_images.clear()
                self.reviewChanged.emit(True)
        if accepted.review is None or review is None or review.token != accepted.review:
            return
        if applied:
            review.accepted.update(accepted.proposals)
            review.selected.difference_update(accepted.proposals)
            if not review.open():  # a redo of "accept all": the review ends again, as it did
                self._ended[review.token] = review
                self.leave()
                return
        else:
            review.accepted.difference_update(accepted.proposals)
        self.overlaysChanged.emit()
        self._emit_counts()
