"""Automatic mask generation ("segment everything").

The image (and optionally overlapping crops of it) is prompted with single
foreground points of a regular lattice. Each point yields three candidate masks;
candidates with a low predicted IoU or an unstable threshold are dropped, and
duplicates are removed by box non-maximum suppression. The output has the
same meaning as the official ``SamAutomaticMaskGenerator`` with
``output_mode="coco_rle"``.

Two modes:

* **Full grid** (``points_per_side=n`` given, the official generator's
  behaviour): every point of the ``n x n`` lattice is prompted.
* **Fast** (the default, ``points_per_side=None``): a subset of the 32 x 32
  lattice chosen in rounds by :class:`~sam_core.amg_fast.PromptPlanner` (a
  coarse grid, points the image embedding singles out, then points that
  settle NMS conflicts, then points in area no kept mask covers, then
  points inside kept masks), at most :data:`FAST_MAX_PROMPTS` per crop. Every
  proposal is still a lattice point's candidate, filtered and de-duplicated
  exactly as in the full grid; what differs is which of the full grid's
  proposals are found. Recall and extra masks against the official
  generator are measured in ``benchmarks/bench_amg.py``.

A batch is decoded by :func:`sam_core.amg_decode.decode_points`: for SAM 1
models the mask upscaling runs only for prompts with a candidate above
``pred_iou_thresh``, and only on the part of the padded input the photo
fills (both exact).

Memory is bounded whatever the photo size: a batch of ``points_per_batch``
points is decoded at the decoder's 256 x 256 resolution, filtered there, and
only the surviving masks are upsampled to full resolution, a few at a time
(:data:`FULL_RES_BUDGET` elements), and compressed to RLE at once. Between
batches only RLEs, boxes and scores are kept. On a photo larger than the model
input, free C-heap memory is handed back to the OS after each batch (the
upsampling's blocks vary in size and would otherwise pile up); on smaller ones
only at the end, so that the next batch reuses the same blocks instead of
faulting in fresh pages (see :mod:`sam_core.allocator`). The peak is then the
mask decoder's working memory for one batch (about 1.6 GB on CPU for 64 points
with MobileSAM), whatever the photo size.

:meth:`AutomaticMaskGenerator.generate` may run in a worker thread: it only
reads the model, reports through a ``progress`` callback and stops at a
``cancel`` flag, raising :class:`Cancelled`.

Differences from the official generator (which upsamples every candidate to
full resolution before filtering):

* The stability filter is applied in stages. A candidate is dropped without
  being upsampled when its stability score on the 256 x 256 logits is below
  ``stability_score_thresh - LOW_RES_MARGIN``; on a photo larger than the
  model input, also when its score at the model input's resolution is below
  ``stability_score_thresh - MID_RES_MARGIN``. Every other candidate is
  judged, and reported, with its stability score at full resolution, exactly
  as the official generator does. A decision can differ only for a candidate
  whose cheap score is off by more than the margin (measured errors are well
  inside them).
* NMS is :func:`sam_core.amg_utils.nms` (exact to torchvision's, ties in
  stable score order).

Layout: this module (about 570 lines, the generator class about 430) drives
crops, batches and the two modes, and keeps the staged filtering in one
place (Why so long: the generator is one class, as segment-anything's
SamAutomaticMaskGenerator, sharing one set of parameters); the fast mode's choice of points is in :mod:`sam_core.amg_fast`, the
kept candidates' bookkeeping and post-processing in :mod:`sam_core.amg_records`.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .amg_utils import (
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    coco_area,
    generate_crop_boxes,
    is_box_near_crop_edge,
    release_free_memory,
    stability_score,
    threshold_masks,
)
from .amg_decode import decode_points, logit_window
from .amg_fast import PromptPlanner, lattice_pixels
from .amg_records import Cancelled, Found, cat_or_empty, encode_crop_masks, remove_small_regions_and_nms
from .types import LOW_RES, Candidates, ImageEmbedding

if TYPE_CHECKING:  # pragma: no cover
    from .predictor import Predictor

__all__ = [
    "AutomaticMaskGenerator",
    "Cancelled",
    "DECODER_BATCH",
    "FAST_LATTICE",
    "FAST_MAX_PROMPTS",
    "FULL_RES_BUDGET",
    "LOW_RES_MARGIN",
    "MID_RES_MARGIN",
]

#: Most prompts the mask decoder runs at once; a larger ``points_per_batch`` is decoded in parts. Its
#: working memory is about 25 MB per prompt (MobileSAM, CPU): 32 at once ran as fast per prompt as 64
#: (and 16 about 10 % slower), at half the peak memory.
DECODER_BATCH = 32

#: Lattice points per side the fast mode chooses its prompts from (the full grid's default).
FAST_LATTICE = 32

#: Most prompts of the fast mode per crop (on a 32 x 32 lattice; scaled with a smaller crop-layer lattice).
#: About 8 s for the whole generate() on an idle 2-core CPU (docs/benchmarks/amg.md: 384 reach 84 of
#: stereo_motorcycle's 93 official masks); a photo its masks soon cover stops earlier (coffee: 293).
FAST_MAX_PROMPTS = 384

#: Most float elements of full-resolution logits (plus their 1024 x 1024
#: intermediate) held at once while upsampling kept candidates: 2**25 float32
#: elements = 128 MiB. On a 12 MP photo that is two masks at a time.
FULL_RES_BUDGET = 2**25

#: A candidate whose stability score on the 256 x 256 logits is this far
#: below ``stability_score_thresh`` is dropped without upsampling. Measured
#: on photos: the full-resolution score of kept candidates exceeds the
#: low-resolution one by at most 0.04.
LOW_RES_MARGIN = 0.1

#: Same, for the score at the model input's resolution (longest side 1024),
#: used before the last upsampling when the photo is larger than that.
#: Measured: within 0.007 of the full-resolution score.
MID_RES_MARGIN = 0.02

IMG_SIZE = 1024  # side of the padded model input

ProgressFn = Callable[[int, int], None]
CancelFlag = Union[threading.Event, Callable[[], bool], None]


class AutomaticMaskGenerator:
    """Mask proposals for a whole image from a grid of point prompts.

    Parameters
    ----------
    predictor:
        A :class:`sam_core.Predictor` (only its ``encode`` and its model's
        ``transform_coords``, ``predict_low_res`` and ``mask_threshold`` are used).
    points_per_side:
        ``None`` (default): the fast mode, prompts chosen from a 32 x 32
        lattice (see the module docstring). An int ``n``: the full grid, all
        ``n**2`` points over the image (fewer on deeper crop layers, see
        ``crop_n_points_downscale_factor``), as the official generator.
    points_per_batch:
        Points decoded together; higher is faster but holds
        ``3 * points_per_batch`` low-resolution logits (256 KiB each).
    pred_iou_thresh:
        Keep candidates whose predicted IoU is ``>`` this (no filter at 0).
    stability_score_thresh:
        Keep candidates whose stability score is ``>=`` this (no filter at 0).
    stability_score_offset:
        The logit cutoff is moved by +- this to compute the stability score.
    box_nms_thresh:
        Box IoU above which the lower-scored of two candidates of one crop is dropped.
    crop_n_layers:
        Extra layers of overlapping crops; layer ``i`` has ``(2**i)**2`` crops,
        each encoded separately.
    crop_nms_thresh:
        Box IoU for removing duplicates between crops (masks from smaller crops win).
    crop_overlap_ratio:
        Overlap of first-layer crops as a fraction of the short side.
    crop_n_points_downscale_factor:
        Points per side on layer ``i`` are divided by this ``**i``.
    min_mask_region_area:
        If > 0, holes and islands smaller than this (pixels) are removed from
        each kept mask, then duplicates are removed again.
    """

    def __init__(
        self,
        predictor: "Predictor",
        points_per_side: Optional[int] = None,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
    ) -> None:
        self.fast = points_per_side is None
        if points_per_side is None:
            points_per_side = FAST_LATTICE
        if points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if crop_n_points_downscale_factor < 1:
            raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {crop_n_points_downscale_factor}")
        self.predictor = predictor
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = int(crop_n_points_downscale_factor)
        self.min_mask_region_area = int(min_mask_region_area)
        self.point_grids = build_all_layer_point_grids(
            self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor
        )
        for grid in self.point_grids:
            if len(grid) == 0:
                raise ValueError("a crop layer has no points: lower crop_n_points_downscale_factor")

    # ------------------------------------------------------------------ public

    def generate(
        self,
        image: np.ndarray,
        embedding: Optional[ImageEmbedding] = None,
        progress: Optional[ProgressFn] = None,
        cancel: CancelFlag = None,
    ) -> List[Dict[str, Any]]:
        """Mask proposals for ``image``.

        Parameters
        ----------
        image:
            ``(H, W, 3)`` uint8 RGB.
        embedding:
            The image's :class:`ImageEmbedding`, to skip encoding. Only with
            ``crop_n_layers == 0``; its ``original_size`` must be ``(H, W)``.
        progress:
            Called as ``progress(done, total)``: first with ``done = 0``, then
            after each image encoding (one unit per crop, also when an
            embedding is given) and each decoded batch of points.
        cancel:
            A :class:`threading.Event` or a callable returning True to stop.
            It is checked before each encoding and batch (and between the
            upsampling chunks of a batch); then :class:`Cancelled` is raised.

        Returns
        -------
        list of dict
            One record per proposal, in the official generator's order and
            meaning: ``segmentation`` (COCO RLE ``{"size": [H, W], "counts":
            str}``), ``area`` (int pixels), ``bbox`` ``[x, y, w, h]`` (ints;
            ``w = x1 - x0`` with inclusive ``x1``), ``predicted_iou`` (float),
            ``stability_score`` (float), ``point_coords`` ``[[x, y]]`` (the
            prompt, image pixels), ``crop_box`` ``[x, y, w, h]`` (ints).

        Raises
        ------
        Cancelled
            When ``cancel`` is set.
        ValueError
            For a malformed image, or an unusable ``embedding``.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        orig_h, orig_w = int(image.shape[0]), int(image.shape[1])
        if embedding is not None:
            if self.crop_n_layers > 0:
                raise ValueError("a precomputed embedding can be used only with crop_n_layers == 0")
            if tuple(embedding.original_size) != (orig_h, orig_w):
                raise ValueError(
                    f"embedding was computed for an image of size {tuple(embedding.original_size)}, "
                    f"not {(orig_h, orig_w)}"
                )
        is_cancelled = _cancel_checker(cancel)

        crop_boxes, layer_idxs = generate_crop_boxes((orig_h, orig_w), self.crop_n_layers, self.crop_overlap_ratio)
        n_batches = [math.ceil(self._max_prompts(layer) / self.points_per_batch) for layer in layer_idxs]
        total = len(crop_boxes) + sum(n_batches)
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)

        with torch.inference_mode():
            rles: List[Dict[str, Any]] = []
            per_crop: List[Dict[str, torch.Tensor]] = []
            for crop_box, layer, batches in zip(crop_boxes, layer_idxs, n_batches):
                target = done + 1 + batches  # progress once this crop is done

                def crop_step() -> None:
                    # the fast mode's rounds may use fewer (or more, partial) batches than its cap
                    if done < target - 1:
                        step()

                found = self._process_crop(image, crop_box, layer, embedding, is_cancelled, crop_step)
                while done < target:
                    step()
                crop_rles, data = found.finish(crop_box, self.box_nms_thresh)
                rles.extend(crop_rles)
                per_crop.append(data)
            shapes = {"boxes": (0, 4), "iou": (0,), "stability": (0,), "points": (0, 2), "crop": (0, 4)}
            data = {
                k: cat_or_empty([d[k] for d in per_crop], shape, torch.float64 if k == "points" else torch.float32)
                for k, shape in shapes.items()
            }
            if len(crop_boxes) > 1 and rles:
                # duplicates between crops: prefer masks from smaller crops
                order = batched_nms(
                    data["boxes"].float(),
                    1.0 / box_area(data["crop"]).float(),
                    torch.zeros(len(rles)),
                    self.crop_nms_thresh,
                )
                rles = [rles[i] for i in order.tolist()]
                data = {k: v[order] for k, v in data.items()}
            if self.min_mask_region_area > 0 and rles:
                order, rles, boxes = remove_small_regions_and_nms(
                    rles,
                    data["boxes"],
                    self.min_mask_region_area,
                    max(self.box_nms_thresh, self.crop_nms_thresh),
                    is_cancelled,
                )
                data = {k: v[order] for k, v in data.items()}
                data["boxes"] = boxes
        release_free_memory()

        boxes, crops = data["boxes"].tolist(), data["crop"].tolist()
        iou, stab, points = data["iou"].tolist(), data["stability"].tolist(), data["points"].tolist()
        return [
            {
                "segmentation": rles[i],
                "area": coco_area(rles[i]),
                "bbox": box_xyxy_to_xywh(boxes[i]),
                "predicted_iou": iou[i],
                "point_coords": [points[i]],
                "stability_score": stab[i],
                "crop_box": box_xyxy_to_xywh(crops[i]),
            }
            for i in range(len(rles))
        ]

    # ------------------------------------------------------------------ crops and batches

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: List[int],
        layer: int,
        embedding: Optional[ImageEmbedding],
        is_cancelled: Callable[[], bool],
        step: Callable[[], None],
    ) -> Found:
        """Candidates of one crop, filtered but not yet de-duplicated (crop coordinates)."""
        x0, y0, x1, y1 = crop_box
        orig_box = [0, 0, image.shape[1], image.shape[0]]
        if is_cancelled():
            raise Cancelled()
        if embedding is None:
            embedding = self.predictor.encode(np.ascontiguousarray(image[y0:y1, x0:x1]))
        step()
        crop_h, crop_w = y1 - y0, x1 - x0
        points = self.point_grids[layer] * np.array([[crop_w, crop_h]], dtype=np.float64)  # (P, 2) x, y
        found = Found()
        if self.fast:
            self._fast_rounds(image[y0:y1, x0:x1], points, layer, embedding, crop_box, orig_box, found, is_cancelled, step)
            return found
        for start in range(0, len(points), self.points_per_batch):
            if is_cancelled():
                raise Cancelled()
            batch = points[start : start + self.points_per_batch]
            self._process_batch(batch, embedding, crop_box, orig_box, found, is_cancelled)
            self._trim_between_batches(crop_box)
            step()
        return found

    @staticmethod
    def _trim_between_batches(crop_box: Sequence[int]) -> None:
        """Hand free heap memory back after a batch when the crop is larger than the model input.

        Measured on a 12 MP photo: without it the resident size grew by about
        1 GB per batch (upsampling blocks of varying sizes the heap fails to
        reuse). On smaller crops the blocks repeat from batch to batch and are
        reused; trimming there would cost page faults on every batch.
        """
        if (crop_box[2] - crop_box[0]) * (crop_box[3] - crop_box[1]) > IMG_SIZE * IMG_SIZE:
            release_free_memory()

    def _max_prompts(self, layer: int) -> int:
        """Most points prompted on a crop of ``layer``: its whole lattice, or the fast mode's cap."""
        lattice = len(self.point_grids[layer])
        if not self.fast:
            return lattice
        return min(lattice, max(1, FAST_MAX_PROMPTS * lattice // FAST_LATTICE**2))

    def _fast_rounds(
        self,
        crop: np.ndarray,
        points: np.ndarray,
        layer: int,
        embedding: ImageEmbedding,
        crop_box: List[int],
        orig_box: List[int],
        found: Found,
        is_cancelled: Callable[[], bool],
        step: Callable[[], None],
    ) -> None:
        """The fast mode on one crop: prompt the lattice ``points`` ``(P, 2)`` chosen round by round."""
        n = int(round(math.sqrt(len(points))))
        size = tuple(embedding.original_size)
        coords = np.asarray(self.predictor.model.transform_coords(points, size), dtype=np.float64)
        grid = embedding.features.shape[-1]
        cells = np.clip(np.floor(coords * grid / IMG_SIZE).astype(np.int64), 0, grid - 1)
        planner = PromptPlanner(
            n, points, cells, crop, embedding.features, self.box_nms_thresh, self._max_prompts(layer)
        )
        pixels = lattice_pixels(points, (crop.shape[0], crop.shape[1]))
        batch_idx = planner.first_round()
        while batch_idx.size:
            for start in range(0, batch_idx.size, self.points_per_batch):
                if is_cancelled():
                    raise Cancelled()
                batch = points[batch_idx[start : start + self.points_per_batch]]
                self._process_batch(batch, embedding, crop_box, orig_box, found, is_cancelled, (planner, pixels))
                self._trim_between_batches(crop_box)
                step()
            batch_idx = planner.next_round()

    def _process_batch(
        self,
        points: np.ndarray,
        embedding: ImageEmbedding,
        crop_box: List[int],
        orig_box: List[int],
        found: Found,
        is_cancelled: Callable[[], bool],
        planner: Optional[Tuple[PromptPlanner, np.ndarray]] = None,
    ) -> None:
        """Decode one batch of points ``(B, 2)`` (x, y, crop pixels) and add its kept candidates to ``found``.

        With ``planner = (PromptPlanner, (P, 2) lattice pixel columns and rows)``
        the kept candidates are reported to the planner too, with which
        lattice points each mask contains.
        """
        low_res, iou = self._decode_points(embedding, points, is_cancelled)  # (B, K, r, c), (B, K)
        k = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou = iou.flatten(0, 1).float()
        pts = torch.from_numpy(np.repeat(points, k, axis=0))  # (B*K, 2) float64
        threshold = self._mask_threshold()

        keep = torch.ones_like(iou, dtype=torch.bool)
        if self.pred_iou_thresh > 0.0:
            keep &= iou > self.pred_iou_thresh
        screen = self.stability_score_thresh > 0.0
        if screen:
            # stage 1: stability on the valid part of the 256 x 256 logits
            h_in, w_in = embedding.input_size
            hh = max(1, math.ceil(LOW_RES * h_in / 1024))
            ww = max(1, math.ceil(LOW_RES * w_in / 1024))
            sel = torch.nonzero(keep).flatten()
            rough = stability_score(low_res[sel, :hh, :ww].float(), threshold, self.stability_score_offset)
            keep[sel[~(rough >= self.stability_score_thresh - LOW_RES_MARGIN)]] = False
        idx = torch.nonzero(keep).flatten()
        if idx.numel() == 0:
            return

        crop_h, crop_w = crop_box[3] - crop_box[1], crop_box[2] - crop_box[0]
        h_in, w_in = embedding.input_size
        two_step = self._two_step_upsampling()
        # stage 2 pays off only when the full resolution is larger than the model input's
        screen_mid = screen and two_step and crop_h * crop_w > h_in * w_in
        chunk = max(1, FULL_RES_BUDGET // (IMG_SIZE * IMG_SIZE + crop_h * crop_w))
        for start in range(0, idx.numel(), chunk):
            if start > 0 and is_cancelled():
                raise Cancelled()
            sub = idx[start : start + chunk]
            low = low_res[sub].unsqueeze(1).float()  # (n, 1, r, c): the logit window
            if two_step:
                # SAM 1's upsampling (as types.upscale_logits), split in its two steps
                # (on the logits' window: the same scale, so the same values as the full 1024 x 1024)
                size = (low.shape[-2] * IMG_SIZE // LOW_RES, low.shape[-1] * IMG_SIZE // LOW_RES)
                low = F.interpolate(low, size, mode="bilinear", align_corners=False)[..., :h_in, :w_in]
            if screen_mid:
                # stage 2: stability at the model input's resolution
                rough = stability_score(low[:, 0], threshold, self.stability_score_offset)
                ok = rough >= self.stability_score_thresh - MID_RES_MARGIN
                if not bool(ok.any()):
                    continue
                low, sub = low[ok], sub[ok]
            logits = F.interpolate(low, (crop_h, crop_w), mode="bilinear", align_corners=False)[:, 0]
            del low
            # exact filters at full resolution
            stab = stability_score(logits, threshold, self.stability_score_offset)
            ok = stab >= self.stability_score_thresh if screen else torch.ones_like(stab, dtype=torch.bool)
            if not bool(ok.any()):
                continue
            masks = threshold_masks(logits, threshold)
            del logits
            if not bool(ok.all()):
                masks, stab, sub = masks[ok], stab[ok], sub[ok]
            rles, boxes = encode_crop_masks(masks, crop_box, orig_box)
            inside = None
            if planner is not None:
                px = torch.as_tensor(planner[1], device=masks.device)
                inside = masks[:, px[:, 1], px[:, 0]].cpu().numpy()  # (n, P)
            del masks
            ok = ~is_box_near_crop_edge(boxes, crop_box, orig_box)
            if not bool(ok.any()):
                continue
            rles = [r for r, k in zip(rles, ok.tolist()) if k]
            sub, stab = sub[ok.to(sub.device)], stab[ok.to(stab.device)]
            found.add(rles, boxes[ok], iou[sub], stab, pts[sub.cpu()])
            if planner is not None:
                planner[0].add_kept(rles, boxes[ok], iou[sub], inside[ok.cpu().numpy()])

    def _decode_points(
        self, embedding: ImageEmbedding, points: np.ndarray, is_cancelled: Callable[[], bool] = lambda: False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode single-point prompts ``(B, 2)`` (x, y, pixels of ``embedding.original_size``);
        :class:`Cancelled` between two decodes of :data:`DECODER_BATCH` prompts once ``is_cancelled()``.

        Returns ``(B, 3, r, c)`` logits over the top-left of the padded model
        input (the part the upsampling reads; all ``256 x 256`` for a SAM 2
        model) and ``(B, 3)`` predicted IoU; see :func:`sam_core.amg_decode.decode_points`.
        """
        window = None
        if self._two_step_upsampling():
            window = logit_window(tuple(embedding.input_size), int(embedding.features.shape[-1]), IMG_SIZE)
        def between() -> None:
            if is_cancelled():
                raise Cancelled()

        return decode_points(
            self.predictor.model, embedding, points, self.pred_iou_thresh, window, DECODER_BATCH, between
        )

    def _two_step_upsampling(self) -> bool:
        """True for SAM 1's mask upsampling (256 -> 1024, crop to ``input_size``, -> original).

        SAM 2 models (whose ``candidates_type`` is not the plain
        :class:`~sam_core.types.Candidates`) upsample 256 -> original directly.
        """
        return getattr(self.predictor.model, "candidates_type", Candidates) is Candidates

    def _mask_threshold(self) -> float:
        return float(getattr(self.predictor.model, "mask_threshold", 0.0))

def _cancel_checker(cancel: CancelFlag) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set  # type: ignore[union-attr]
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError("cancel must be a threading.Event, a callable returning bool, or None")
