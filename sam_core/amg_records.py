"""Kept candidates of the automatic generator, and what turns them into records.

:class:`Found` collects, batch by batch, what the output needs of each kept
candidate of one crop (RLE, box, scores, prompt) and de-duplicates them by box
NMS; :func:`encode_crop_masks` turns a batch of crop masks into RLEs over the
whole image; :func:`remove_small_regions_and_nms` is the optional
``min_mask_region_area`` post-processing. Split from :mod:`sam_core.amg`,
which orchestrates crops and batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from .amg_utils import (
    coco_to_mask,
    counts_to_coco,
    mask_to_coco,
    masks_to_boxes,
    masks_to_rle_counts,
    nms,
    remove_small_regions,
    rle_counts_to_box,
)

__all__ = ["Cancelled", "Found", "cat_or_empty", "encode_crop_masks", "remove_small_regions_and_nms"]


class Cancelled(Exception):
    """Raised by :meth:`sam_core.amg.AutomaticMaskGenerator.generate` when its cancel flag is set."""


@dataclass
class Found:
    """Kept candidates of one crop: no masks, only what the output needs.

    While a crop is processed, ``boxes`` (``(n, 4)`` int64 inclusive x0, y0,
    x1, y1) and ``points`` (``(n, 2)`` float64 x, y) are in crop pixels, one
    tensor per batch; :meth:`finish` de-duplicates and moves them to image pixels.
    """

    rles: List[Dict[str, Any]] = field(default_factory=list)
    boxes: List[torch.Tensor] = field(default_factory=list)
    iou: List[torch.Tensor] = field(default_factory=list)
    stability: List[torch.Tensor] = field(default_factory=list)
    points: List[torch.Tensor] = field(default_factory=list)

    def add(self, rles, boxes, iou, stability, points) -> None:
        self.rles.extend(rles)
        self.boxes.append(boxes.cpu())
        self.iou.append(iou.float().cpu())
        self.stability.append(stability.float().cpu())
        self.points.append(points.cpu())

    def finish(
        self, crop_box: Sequence[int], nms_thresh: float
    ) -> Tuple[List[Dict[str, Any]], Dict[str, torch.Tensor]]:
        """Box NMS by predicted IoU, then image coordinates.

        Returns the kept RLEs and a dict of tensors ``boxes`` ``(K, 4)``,
        ``iou`` ``(K,)``, ``stability`` ``(K,)``, ``points`` ``(K, 2)`` and
        ``crop`` ``(K, 4)`` (the crop box, xyxy), by descending predicted IoU.
        """
        boxes = cat_or_empty(self.boxes, (0, 4), torch.int64)
        iou = cat_or_empty(self.iou, (0,), torch.float32)
        keep = nms(boxes.float(), iou, nms_thresh)
        x0, y0 = int(crop_box[0]), int(crop_box[1])
        return [self.rles[i] for i in keep.tolist()], {
            "boxes": boxes[keep] + torch.tensor([x0, y0, x0, y0]),
            "iou": iou[keep],
            "stability": cat_or_empty(self.stability, (0,), torch.float32)[keep],
            "points": cat_or_empty(self.points, (0, 2), torch.float64)[keep] + torch.tensor([x0, y0], dtype=torch.float64),
            "crop": torch.tensor([list(crop_box)], dtype=torch.int64).expand(len(keep), 4),
        }


def cat_or_empty(parts: List[torch.Tensor], shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.empty(shape, dtype=dtype)


def encode_crop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int]
) -> Tuple[List[Dict[str, Any]], torch.Tensor]:
    """Encode crop masks over the whole image.

    Parameters
    ----------
    masks:
        ``(N, h, w)`` bool masks of the crop ``crop_box`` ``[x0, y0, x1, y1]``.
    orig_box:
        ``[0, 0, W, H]``.

    Returns
    -------
    rles, boxes
        COCO RLEs of size ``(H, W)`` (``counts`` str) and ``(N, 4)`` int64
        boxes ``x0, y0, x1, y1`` (inclusive) in *crop* pixels, ``[0, 0, 0, 0]``
        for an empty mask (the official convention).
    """
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    img_w, img_h = int(orig_box[2]), int(orig_box[3])
    whole = (x0, y0, x1, y1) == (0, 0, img_w, img_h)
    if not whole:
        masks = F.pad(masks, (x0, img_w - x1, y0, img_h - y1), value=False)
    all_counts = masks_to_rle_counts(masks)
    rles, boxes = [], []
    for counts in all_counts:
        rles.append(counts_to_coco(counts, (img_h, img_w)))
        box = rle_counts_to_box(counts, (img_h, img_w))
        if not whole and len(counts) > 1:  # non-empty: back to crop pixels
            box = [box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]
        boxes.append(box)
    return rles, torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)


def remove_small_regions_and_nms(
    rles: List[Dict[str, Any]],
    boxes: torch.Tensor,
    min_area: int,
    nms_thresh: float,
    is_cancelled: Callable[[], bool],
) -> Tuple[torch.Tensor, List[Dict[str, Any]], torch.Tensor]:
    """Remove holes and islands smaller than ``min_area`` pixels, one mask at a time, then box NMS again.

    Unchanged masks are preferred over changed ones in the NMS (threshold
    ``nms_thresh``). Returns the kept positions (into the inputs), their RLEs
    and boxes ``(K, 4)``. Raises :class:`Cancelled` when ``is_cancelled()``.
    """
    new_rles: List[Dict[str, Any]] = []
    new_boxes = torch.empty_like(boxes)
    scores = torch.empty(len(rles), dtype=torch.float32)
    for i, rle in enumerate(rles):
        if is_cancelled():
            raise Cancelled()
        mask = coco_to_mask(rle)
        mask, changed_holes = remove_small_regions(mask, min_area, "holes")
        mask, changed_islands = remove_small_regions(mask, min_area, "islands")
        changed = changed_holes or changed_islands
        scores[i] = 0.0 if changed else 1.0
        if changed:
            new_rles.append(mask_to_coco(mask))
            new_boxes[i] = masks_to_boxes(torch.from_numpy(mask)[None])[0]
        else:
            new_rles.append(rle)
            new_boxes[i] = boxes[i]
    keep = nms(new_boxes.float(), scores, nms_thresh)
    return keep, [new_rles[i] for i in keep.tolist()], new_boxes[keep]
