"""Segment everything: automatic mask proposals for the current image, then a review.

Flow::

    Ctrl+E -> EverythingController.start()
      -> JobService("sam-everything"): run_everything(...) on its own thread
         (sam_core.AutomaticMaskGenerator on the image's embedding, then each
         proposal's overlay patch and outline), progress and Cancel
      -> finished(id, EverythingResult); a stale id (image left, cancelled,
         another run) is dropped
      -> review: proposals drawn as outlines; a click toggles the one under
         the cursor, a drag selects those inside the box; Enter accepts the
         selected ones, Shift+Enter all, Esc leaves
      -> accepted proposals become annotations of the current category in ONE
         undo step (AcceptProposalsCommand), their RLE used as computed.

The controller belongs to a :class:`annotator.session.session.Session` and uses its
current image, embedding, model, category and undo stack; it emits signals
for the window (progress, review state, overlays). Coordinates are image
pixels, x then y (see :mod:`annotator.data.prompts`); sizes ``(h, w)``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from annotator import render
from annotator.workers.jobs import JobService
from annotator.data.prompts import EMPTY

if TYPE_CHECKING:  # pragma: no cover
    from annotator.session.session import Session

log = logging.getLogger(__name__)

Color = Tuple[int, int, int]


@dataclass(frozen=True)
class EverythingOptions:
    """Parameters of :class:`sam_core.AutomaticMaskGenerator` used by the app.

    ``points_per_side`` ``n`` prompts an ``n x n`` grid of points (the cost
    grows with ``n**2``: 32, the default, takes tens of seconds for MobileSAM
    on a CPU; 8 or 16 give fewer, coarser proposals quickly). The others have
    the generator's meaning.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0

    def generator_kwargs(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Proposal:
    """One proposed mask.

    ``segmentation`` is compressed COCO RLE (``counts`` str) over the whole
    image; ``bbox`` ``(x, y, w, h)`` in image pixels; ``patch`` the mask at
    overlay resolution cut to its box (:class:`annotator.render.MaskPatch`);
    ``outline`` how it is drawn when not selected.
    """

    index: int
    segmentation: Dict[str, Any]
    area: int
    bbox: Tuple[float, float, float, float]
    predicted_iou: float
    stability_score: float
    patch: render.MaskPatch
    outline: QImage

    def contains(self, x: float, y: float) -> bool:
        """Whether image point ``(x, y)`` is inside the mask (judged on the overlay patch)."""
        rx, ry, rw, rh = self.patch.rect
        ph, pw = self.patch.mask.shape
        col = int(np.floor((x + 0.5 - rx) * pw / rw))
        row = int(np.floor((y + 0.5 - ry) * ph / rh))
        return 0 <= row < ph and 0 <= col < pw and bool(self.patch.mask[row, col])

    def in_bbox(self, x: float, y: float) -> bool:
        bx, by, bw, bh = self.bbox
        return bx - 0.5 <= x < bx + bw + 0.5 and by - 0.5 <= y < by + bh + 0.5


@dataclass(frozen=True, eq=False)
class EverythingResult:
    """The proposals for the image at ``path`` of size ``(h, w)``, largest first (drawn first, under the rest)."""

    path: Path
    size: Tuple[int, int]
    proposals: Tuple[Proposal, ...]
    seconds: float


def default_generator(model: Any, options: EverythingOptions):
    """A :class:`sam_core.AutomaticMaskGenerator` over ``model`` (a :class:`sam_core.SamModel`)."""
    import sam_core

    return sam_core.AutomaticMaskGenerator(sam_core.Predictor(model), **options.generator_kwargs())


def prepare_proposals(
    records: Sequence[Dict[str, Any]],
    height: int,
    width: int,
    report: Optional[Callable[..., None]] = None,
    cancel=None,
) -> Tuple[Proposal, ...]:
    """Generator records -> :class:`Proposal`\\ s with their overlay patches, largest first.

    Each RLE is decoded once at full resolution, shrunk to overlay size and
    cut to its box; the full-resolution mask is not kept. Runs on the job thread.
    """
    from annotator.data.coco import decode_rle

    out: List[Proposal] = []
    for i, r in enumerate(records):
        if cancel is not None and cancel.is_set():
            break
        seg = {"size": [int(v) for v in r["segmentation"]["size"]], "counts": r["segmentation"]["counts"]}
        if isinstance(seg["counts"], bytes):
            seg["counts"] = seg["counts"].decode("ascii")
        patch = render.patch_of(decode_rle(seg, height, width))
        x, y, w, h = (float(v) for v in r["bbox"])
        out.append(
            Proposal(
                index=i,
                segmentation=seg,
                area=int(r["area"]),
                bbox=(x, y, w, h),
                predicted_iou=float(r["predicted_iou"]),
                stability_score=float(r["stability_score"]),
                patch=patch,
                outline=render.proposal_overlay(patch.mask),
            )
        )
        if report is not None:
            report(i + 1, len(records), "Preparing proposals…")
    out.sort(key=lambda p: -p.area)
    return tuple(out)


def run_everything(
    make_generator: Callable[[Any, EverythingOptions], Any],
    model: Any,
    path: Path,
    embedding: Any,
    options: EverythingOptions,
    *,
    report: Callable[..., None],
    cancel,
) -> EverythingResult:
    """The job (job thread): read the image, generate the proposals on ``embedding``, prepare them.

    Raises whatever the generator raises (``sam_core.amg.Cancelled`` once ``cancel`` is set).
    """
    from annotator.data.imageio import load_image

    t0 = time.perf_counter()
    image = load_image(path)
    h, w = image.shape[:2]
    if tuple(embedding.original_size) != (h, w):
        raise ValueError(f"{path.name} changed on disk since it was encoded")
    generator = make_generator(model, options)
    records = generator.generate(
        image,
        embedding=embedding,
        cancel=cancel,
        progress=lambda done, total: report(done, total, "Segmenting everything…"),
    )
    del image
    proposals = prepare_proposals(records, h, w, report, cancel)
    return EverythingResult(Path(path), (h, w), proposals, time.perf_counter() - t0)


class Review:
    """The proposals of one image under review (Qt-free state).

    ``selected``: indices (:attr:`Proposal.index`) the user picked;
    ``accepted``: indices already made into annotations (not drawn, not
    clickable; undoing the accept puts them back).
    """

    def __init__(self, result: EverythingResult, token: int) -> None:
        self.result = result
        self.token = token  # identifies this review for the undo commands
        self.by_index: Dict[int, Proposal] = {p.index: p for p in result.proposals}
        self.selected: set[int] = set()
        self.accepted: set[int] = set()

    @property
    def path(self) -> Path:
        return self.result.path

    def open(self) -> List[Proposal]:
        """Proposals not accepted yet, largest first."""
        return [p for p in self.result.proposals if p.index not in self.accepted]

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
    """Runs segment-everything for a session and holds the review. See the module notes.

    Attributes
    ----------
    options:
        :class:`EverythingOptions` for the next run (settable: tests and
        power users lower ``points_per_side``).
    make_generator:
        ``(model, options) -> generator`` with ``generate(image, embedding=,
        progress=, cancel=)``; :func:`default_generator` by default.
    """

    runningChanged = Signal(bool)
    progress = Signal(int, int, str)  # done, total (0: unknown), text
    reviewChanged = Signal(bool)  # a review began (True) or ended (False)
    overlaysChanged = Signal()  # the proposals to draw changed (call overlays())
    proposalChanged = Signal(int, object)  # proposal index, its new QImage (a toggle)
    selectionChanged = Signal(int, int)  # selected, open

    def __init__(self, session: "Session") -> None:
        super().__init__(session)
        self.session = session
        self.options = EverythingOptions()
        self.make_generator: Callable[[Any, EverythingOptions], Any] = default_generator
        self.jobs = JobService("sam-everything", self)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.finished.connect(self._on_finished)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.cancelled.connect(self._on_cancelled)
        self.review: Optional[Review] = None
        self.last_result: Optional[EverythingResult] = None
        self._job: Optional[int] = None
        self._job_path: Optional[Path] = None
        self._tokens = 0
        self._selected_images: Dict[tuple, QImage] = {}

    # -- state -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A run for the current image is under way."""
        return self._job is not None

    @property
    def reviewing(self) -> bool:
        return self.review is not None

    # -- running -----------------------------------------------------------------------

    def start(self) -> bool:
        """Segment everything on the current image (its embedding is reused); ``False`` if it cannot start now."""
        s = self.session
        if s.current_path is None or s.loaded is None:
            s.statusMessage.emit("Open a folder of images first", 3000)
            return False
        if s.model_info is None:
            s.statusMessage.emit("Segment everything can start once the model is loaded", 4000)
            return False
        if s.embedding is None:
            s.statusMessage.emit("Segment everything can start once the image is encoded", 4000)
            return False
        if self.running:
            return True
        self.leave()
        self._job_path = s.current_path
        self._job = self.jobs.submit(
            run_everything, self.make_generator, s.model_info.model, s.current_path, s.embedding, self.options
        )
        self.runningChanged.emit(True)
        self.progress.emit(0, 0, "Segmenting everything…")
        return True

    def cancel(self) -> bool:
        """Stop the run in flight (``runningChanged(False)`` follows at once). Returns whether one was running."""
        if self._job is None:
            return False
        self.jobs.cancel()
        self._end_run()
        self.session.statusMessage.emit("Segment everything cancelled", 3000)
        return True

    def stop(self) -> None:
        """The image or the model changes: cancel any run and leave the review, without a word."""
        if self._job is not None:
            self.jobs.cancel()
            self._end_run()
        self.leave()

    def shutdown(self, timeout_ms: int = -1) -> bool:
        self._job = None
        return self.jobs.shutdown(timeout_ms)

    def _end_run(self) -> None:
        self._job = None
        self._job_path = None
        self.runningChanged.emit(False)

    def _mine(self, job_id: int) -> bool:
        return job_id == self._job and self._job_path == self.session.current_path

    def _on_progress(self, job_id: int, done: int, total: int, text: str) -> None:
        if self._mine(job_id):
            self.progress.emit(done, total, text)

    def _on_finished(self, job_id: int, result: EverythingResult) -> None:
        if not self._mine(job_id) or result.path != self.session.current_path:
            return
        self._end_run()
        self.last_result = result
        n = len(result.proposals)
        if n == 0:
            self.session.statusMessage.emit(f"Segment everything found no objects ({result.seconds:.1f} s)", 5000)
            return
        self._begin(result)
        self.session.statusMessage.emit(
            f"{n} proposals in {result.seconds:.1f} s: click to select, Enter accepts the selected, "
            "Shift+Enter all, Esc leaves", 0,
        )

    def _on_failed(self, job_id: int, message: str) -> None:
        if self._mine(job_id):
            self._end_run()
            self.session.statusMessage.emit(f"Segment everything failed: {message}", 0)

    def _on_cancelled(self, job_id: int) -> None:
        if self._mine(job_id):
            self._end_run()

    # -- review ------------------------------------------------------------------------

    def _begin(self, result: EverythingResult) -> None:
        s = self.session
        if not s.prompt.empty and not s.accepting:  # (an accept in flight clears it itself)
            s._push_prompt(EMPTY, "Clear prompts", time.perf_counter())
        self._tokens += 1
        self.review = Review(result, self._tokens)
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

    def reject_all(self) -> None:
        """Esc while reviewing: leave without accepting the rest."""
        if self.review is not None:
            n = len(self.review.open())
            self.leave()
            self.session.statusMessage.emit(f"Rejected {n} proposal(s)", 3000)

    def toggle_at(self, x: float, y: float, select: Optional[bool] = None) -> Optional[int]:
        """Toggle (or set, with ``select``) the proposal under image point ``(x, y)``; returns its index."""
        review = self.review
        if review is None:
            return None
        p = review.at(x, y)
        if p is None:
            return None
        want = (p.index not in review.selected) if select is None else bool(select)
        self.set_selected([p.index], want)
        return p.index

    def select_inside(self, box: Tuple[float, float, float, float]) -> List[int]:
        """Select the open proposals whose box lies inside ``box`` ``(x0, y0, x1, y1)``."""
        if self.review is None:
            return []
        chosen = [p.index for p in self.review.inside(box)]
        self.set_selected(chosen, True)
        return chosen

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
        key = (p.index, tuple(self.session.category_color()), self.session.opacity)
        image = self._selected_images.get(key)
        if image is None:
            image = self._selected_images[key] = render.proposal_overlay(
                p.patch.mask, True, key[1], self.session.opacity
            )
        return image

    def overlays(self) -> List[Tuple[int, QImage, Tuple[float, float, float, float]]]:
        """``(index, image, rect)`` of the open proposals, largest first (``rect`` in image pixels)."""
        if self.review is None:
            return []
        return [(p.index, self.image_of(p), p.patch.rect) for p in self.review.open()]

    def restyle(self) -> None:
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

    def accept_selected(self) -> int:
        """Accept the selected proposals in the current category (one undo step); returns how many."""
        review = self.review
        if review is None:
            return 0
        chosen = [p for p in review.open() if p.index in review.selected]
        if not chosen:
            self.session.statusMessage.emit(
                "Click proposals to select them (or Shift+Enter to accept all, Esc to leave)", 4000
            )
            return 0
        return self._accept(chosen)

    def accept_all(self) -> int:
        """Accept every open proposal in the current category (one undo step) and leave the review."""
        review = self.review
        if review is None:
            self.session.statusMessage.emit("No proposals to accept: Segment Everything (Ctrl+E) first", 3000)
            return 0
        return self._accept(review.open())

    def _accept(self, chosen: Sequence[Proposal]) -> int:
        from annotator.session.undo import AcceptProposalsCommand

        s = self.session
        review = self.review
        if s.dataset is None or not chosen or review is None:
            return 0
        category = s.dataset.categories.get(s.category_id) if s.category_id is not None else None
        if category is None:
            s.statusMessage.emit("Add a category first (Categories panel)", 5000)
            return 0
        h, w = review.result.size
        from annotator.data.document import DatasetError

        try:
            record = s.dataset.ensure_image(s.dataset.relative_name(review.path), w, h)
        except DatasetError as exc:
            s.statusMessage.emit(str(exc), 0)
            return 0
        model = s.model_info.model_type if s.model_info else ""
        anns = []
        for p in chosen:
            anns.append(
                s.dataset.make_annotation(
                    record.id, category.id, rle=p.segmentation, predicted_iou=round(p.predicted_iou, 4),
                    stability_score=round(p.stability_score, 4), model=model, source="segment-everything",
                )
            )
            if review.path == s.current_path:
                s.layer.put(anns[-1].id, p.patch)
        cmd = AcceptProposalsCommand(s, review.path, review.token, [p.index for p in chosen], anns, category.name)
        s.undo_stack.push(cmd)
        if self.review is not None and not self.review.open():
            self.leave()
        s.statusMessage.emit(f"Accepted {len(anns)} proposal(s) as {category.name}", 4000)
        return len(anns)

    def _mark_accepted(self, token: int, indices: Sequence[int], accepted: bool) -> None:
        """Undo commands: proposals ``indices`` of review ``token`` were accepted (or the accept undone)."""
        review = self.review
        if review is None or review.token != token:
            return
        if accepted:
            review.accepted.update(indices)
            review.selected.difference_update(indices)
        else:
            review.accepted.difference_update(indices)
        self.overlaysChanged.emit()
        self._emit_counts()
