"""Segment everything: the job that proposes masks for a whole image, and the proposals it returns.

Flow::

    Ctrl+E -> EverythingController.start()  (annotator.session.review)
      -> JobService("sam-everything"): run_everything(...) on its own thread
         (sam_core.AutomaticMaskGenerator on the image's embedding, then each
         proposal's overlay patch and outline), progress and Cancel
      -> finished(id, EverythingResult); a stale id (image left, cancelled,
         another run) is dropped
      -> the review (annotator.session.review): proposals drawn as outlines, a
         click toggles the one under the cursor, Enter accepts the selected
         through the session's one accept pipeline, in ONE undo step.

This module holds the job and its values (no QObject): what runs on the job
thread and what it hands back. Coordinates are image pixels, x then y (see
:mod:`annotator.data.prompts`); sizes ``(h, w)``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtGui import QImage

from annotator import render
from annotator.data.palette import PROPOSAL_COLORS, proposal_colors
from annotator.data.proposals import GeneratorParams

log = logging.getLogger(__name__)


#: Parameters of :class:`sam_core.AutomaticMaskGenerator` used by the app: the same value ``sam-annotator auto``
#: stores with its proposals (``points_per_side`` None, the default, is the generator's fast mode; ``n`` prompts the
#: official ``n x n`` grid, 32 taking tens of seconds for MobileSAM on a CPU).
EverythingOptions = GeneratorParams


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
        return self.patch.contains(x, y)

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
    stored: bool = False  # read from the proposals file ``sam-annotator auto`` wrote, not computed now


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
                outline=QImage(),  # drawn below, once the neighbours are known
            )
        )
        if report is not None:
            report(i + 1, len(records), "Preparing proposals…")
    out.sort(key=lambda p: -p.area)
    edges = proposal_colors([p.patch.rect for p in out])  # neighbours get different outline colours
    return tuple(replace(p, outline=render.proposal_overlay(p.patch.mask, edge=PROPOSAL_COLORS[k]))
                 for p, k in zip(out, edges))


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


def run_stored_or_everything(
    stored_source: Optional[Tuple[Path, str, str]],
    make_generator: Callable[[Any, EverythingOptions], Any],
    model: Any,
    path: Path,
    embedding: Any,
    options: EverythingOptions,
    *,
    report: Callable[..., None],
    cancel,
) -> EverythingResult:
    """The job: the proposals ``sam-annotator auto`` stored for this image if there are any for its content,
    else :func:`run_everything`.

    ``stored_source`` is ``(working file, file_name, content digest)`` or ``None``. A proposals file that
    cannot be used is logged and the proposals are computed instead (the user loses nothing but time).
    """
    if stored_source is not None:
        from annotator.data.proposals import ProposalsError, load_for_review

        t0 = time.perf_counter()
        try:
            stored = load_for_review(*stored_source)
        except ProposalsError as exc:
            log.warning("stored proposals not used: %s", exc)
            stored = None
        if stored is not None:
            (h, w), records = stored
            proposals = prepare_proposals(records, h, w, report, cancel)
            return EverythingResult(Path(path), (h, w), proposals, time.perf_counter() - t0, stored=True)
    return run_everything(make_generator, model, path, embedding, options, report=report, cancel=cancel)


def duplicates(proposals: Sequence[Proposal], annotated: Sequence[Dict[str, Any]], threshold: float) -> set:
    """Indices of the proposals whose mask IoU with one of the ``annotated`` RLEs exceeds ``threshold``."""
    if not proposals or not annotated:
        return set()
    from pycocotools import mask as mask_utils

    def enc(seg):
        counts = seg["counts"]
        return {"size": [int(v) for v in seg["size"]], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}

    ious = mask_utils.iou([enc(p.segmentation) for p in proposals], [enc(a) for a in annotated],
                          [0] * len(annotated))
    ious = np.asarray(ious).reshape(len(proposals), len(annotated))
    return {p.index for p, row in zip(proposals, ious) if row.max() > threshold}

