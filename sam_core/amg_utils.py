"""Model-free helpers for automatic mask generation ("segment everything").

Everything here is plain torch / NumPy (plus pycocotools for RLE compression
and OpenCV for connected components) and can be tested without a model.

Conventions
-----------
* Points are ``(N, 2)`` arrays, **x then y**.
* Boxes are ``(N, 4)`` ``x0, y0, x1, y1``. Boxes computed from masks use
  *inclusive* pixel indices: a mask covering columns 3..7 has ``x0 = 3``,
  ``x1 = 7`` (this is the official generator's convention, so its XYWH boxes
  have ``w = x1 - x0``).
* Crop boxes are ``[x0, y0, x1, y1]`` with *exclusive* ends, in pixels of the
  original image.
* Masks are ``(N, H, W)`` bool tensors; RLE runs are in column-major
  (Fortran) order as COCO expects, starting with a run of zeros.

Why so long: it holds every numeric helper of mask generation (boxes, RLE, stability, NMS, crops, the point grids), each small and pure, mirroring segment-anything's utils/amg.py so that parity can be checked function by function.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

# ``malloc_trim`` lives with the allocator settings it undoes; re-exported for the generator
from .allocator import release_free_memory

__all__ = [
    "build_point_grid",
    "build_all_layer_point_grids",
    "generate_crop_boxes",
    "box_area",
    "box_xyxy_to_xywh",
    "nms",
    "pairwise_box_iou",
    "batched_nms",
    "stability_score",
    "threshold_masks",
    "masks_to_boxes",
    "is_box_near_crop_edge",
    "masks_to_rle_counts",
    "rle_counts_to_box",
    "counts_to_coco",
    "coco_to_mask",
    "coco_area",
    "mask_to_coco",
    "remove_small_regions",
    "release_free_memory",
]

# Rows of the IoU matrix computed at once by :func:`nms` (bounds its memory
# to about ``_NMS_BLOCK * N`` floats).
_NMS_BLOCK = 512


# --------------------------------------------------------------------------- grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """Points evenly spaced over the unit square, one per cell centre.

    Returns
    -------
    np.ndarray
        ``(n_per_side**2, 2)`` float64, x then y, in ``[0, 1]``. Row-major:
        x varies fastest.
    """
    if n_per_side < 1:
        raise ValueError(f"n_per_side must be >= 1, got {n_per_side}")
    half_cell = 1.0 / (2 * n_per_side)
    centres = np.linspace(half_cell, 1.0 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One normalised point grid per crop layer.

    Layer ``i`` has ``int(n_per_side / scale_per_layer**i)`` points per side.
    Returns ``n_layers + 1`` arrays of shape ``(n_i**2, 2)``, x then y.
    """
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: Tuple[int, int], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes for the crop layers of the automatic generator.

    Layer 0 is the whole image; layer ``i >= 1`` tiles the image with
    ``2**i x 2**i`` overlapping crops whose overlap is ``overlap_ratio`` of the
    short side scaled by ``2 / 2**i``.

    Parameters
    ----------
    im_size:
        ``(H, W)`` of the image.
    n_layers:
        Number of crop layers beyond the whole image.
    overlap_ratio:
        Overlap of neighbouring first-layer crops, as a fraction of the short side.

    Returns
    -------
    boxes, layer_idxs
        ``boxes``: list of ``[x0, y0, x1, y1]`` ints (ends exclusive), the
        whole image first; ``layer_idxs``: the layer of each box.
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    boxes: List[List[int]] = [[0, 0, im_w, im_h]]
    layers: List[int] = [0]
    short_side = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        n_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = int(math.ceil((overlap * (n_side - 1) + im_w) / n_side))
        crop_h = int(math.ceil((overlap * (n_side - 1) + im_h) / n_side))
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        # x-major order (all rows of the first column first), as the reference does
        for x0 in x0s:
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer)
    return boxes, layers


# --------------------------------------------------------------------------- boxes and NMS


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` x0, y0, x1, y1 -> ``(N,)`` area ``(x1 - x0) * (y1 - y0)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_xyxy_to_xywh(box: Sequence[float]) -> List[Any]:
    """One box ``x0, y0, x1, y1`` -> ``[x0, y0, x1 - x0, y1 - y0]`` (Python numbers)."""
    x0, y0, x1, y1 = (v.item() if hasattr(v, "item") else v for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _pairwise_iou(
    rows: torch.Tensor, cols: torch.Tensor, rows_area: torch.Tensor, cols_area: torch.Tensor
) -> torch.Tensor:
    """IoU ``(R, C)`` of float boxes, with the same float arithmetic as torchvision's CPU kernel.

    ``inter / (area_i + area_j - inter)``, evaluated left to right, in the
    boxes' dtype (no fused operations), so that threshold decisions agree bit
    for bit.
    """
    xx1 = torch.maximum(rows[:, None, 0], cols[None, :, 0])
    yy1 = torch.maximum(rows[:, None, 1], cols[None, :, 1])
    xx2 = torch.minimum(rows[:, None, 2], cols[None, :, 2])
    yy2 = torch.minimum(rows[:, None, 3], cols[None, :, 3])
    w = (xx2 - xx1).clamp_(min=0)
    h = (yy2 - yy1).clamp_(min=0)
    inter = w.mul_(h)
    union = (rows_area[:, None] + cols_area[None, :]).sub_(inter)
    return inter.div_(union)


#: Public name of the pairwise box IoU used by :func:`nms` (same float arithmetic).
pairwise_box_iou = _pairwise_iou


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, exact to ``torchvision.ops.nms``.

    Boxes are visited in descending score order (a *stable* sort, so ties keep
    their input order); a box is dropped when its IoU with an already kept
    box is strictly greater than ``iou_threshold``.

    Parameters
    ----------
    boxes:
        ``(N, 4)`` x0, y0, x1, y1 (float; integer boxes are converted to float32).
    scores:
        ``(N,)``.
    iou_threshold:
        Boxes overlapping a kept box by IoU ``> iou_threshold`` are removed.

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 indices of the kept boxes, by descending score.

    Notes
    -----
    The IoU matrix is computed in blocks of rows (memory ``O(block * N)``),
    vectorised; only the inherently sequential greedy pass loops, and only
    over boxes that are kept.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be ({boxes.shape[0]},), got {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].contiguous()
    area = box_area(b)
    suppressed = np.zeros(n, dtype=bool)
    keep: List[int] = []
    thr = float(iou_threshold)
    for start in range(0, n, _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, n)
        if suppressed[start:stop].all():
            continue
        # compare in float64, as the C++ kernel compares a float IoU with a double threshold
        over = (_pairwise_iou(b[start:stop], b[start:], area[start:stop], area[start:]).double() > thr).cpu().numpy()
        for i in range(stop - start):
            if suppressed[start + i]:
                continue
            keep.append(start + i)
            suppressed[start:] |= over[i]
    keep_t = torch.as_tensor(keep, dtype=torch.int64, device=order.device)
    return order[keep_t]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS run independently per category, exact to ``torchvision.ops.batched_nms``.

    Boxes with different ``idxs`` never suppress each other. Returns the kept
    indices ``(K,)`` int64 sorted by descending score (stable: ties in input
    order).
    """
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    keep_parts = []
    for cat in torch.unique(idxs):
        where = torch.nonzero(idxs == cat).flatten()
        keep_parts.append(where[nms(boxes[where], scores[where], iou_threshold)])
    keep = torch.cat(keep_parts)
    # descending score, ties by input index (stable sort on index-sorted keep)
    keep = torch.sort(keep).values
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


# --------------------------------------------------------------------------- mask statistics


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``mask_threshold +- offset``.

    The higher cutoff gives a subset of the lower one, so the IoU is the ratio
    of their pixel counts.

    Parameters
    ----------
    logits:
        ``(N, H, W)`` mask logits.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float32 (int32 counts divided as the official code does).
        0/0 (empty at the low cutoff) gives NaN, which no ``>=`` test passes.

    Notes
    -----
    On CPU the counting is done by NumPy (``count_nonzero`` is about 20x
    faster than a torch ``sum`` over a bool tensor); the comparisons are the
    same float32 comparisons either way.
    """
    n = logits.shape[0]
    if logits.device.type == "cpu" and n > 0:
        arr = logits.detach().numpy().reshape(n, -1)
        hi, lo = arr.dtype.type(mask_threshold + offset), arr.dtype.type(mask_threshold - offset)
        inner = np.array([np.count_nonzero(row > hi) for row in arr], dtype=np.int32)
        outer = np.array([np.count_nonzero(row > lo) for row in arr], dtype=np.int32)
        return torch.from_numpy(inner) / torch.from_numpy(outer)
    inner_t = (logits > (mask_threshold + offset)).sum(dim=(-2, -1), dtype=torch.int32)
    outer_t = (logits > (mask_threshold - offset)).sum(dim=(-2, -1), dtype=torch.int32)
    return inner_t / outer_t


def threshold_masks(logits: torch.Tensor, mask_threshold: float) -> torch.Tensor:
    """``logits > mask_threshold`` as a bool tensor (NumPy's faster comparison on CPU)."""
    if logits.device.type == "cpu" and logits.numel() > 0:
        arr = logits.detach().numpy()
        return torch.from_numpy(np.greater(arr, arr.dtype.type(mask_threshold)))
    return logits > mask_threshold


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bounding boxes of bool masks.

    Parameters
    ----------
    masks:
        ``(N, H, W)`` bool.

    Returns
    -------
    torch.Tensor
        ``(N, 4)`` int64 ``x0, y0, x1, y1`` with *inclusive* ends;
        ``[0, 0, 0, 0]`` for an empty mask.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    # argmax on uint8 returns the first maximum
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = (h - 1) - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = (w - 1) - cols.flip(1).to(torch.uint8).argmax(dim=1)
    out = torch.stack([x0, y0, x1, y1], dim=1)
    return out * rows.any(dim=1, keepdim=True)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Which boxes touch an edge of their crop that is not an edge of the image.

    Parameters
    ----------
    boxes:
        ``(N, 4)`` x0, y0, x1, y1 in *crop* coordinates.
    crop_box, orig_box:
        ``[x0, y0, x1, y1]`` of the crop and of the whole image, in image pixels.
    atol:
        Distance in pixels that counts as touching.

    Returns
    -------
    torch.Tensor
        ``(N,)`` bool.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    offset = torch.as_tensor([crop_box[0], crop_box[1], crop_box[0], crop_box[1]], device=boxes.device)
    img_boxes = (boxes + offset).float()
    near_crop = torch.isclose(img_boxes, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(img_boxes, orig[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


# --------------------------------------------------------------------------- RLE


def masks_to_rle_counts(masks: torch.Tensor | np.ndarray) -> List[List[int]]:
    """Uncompressed COCO run lengths of bool masks, vectorised over the batch.

    Parameters
    ----------
    masks:
        ``(N, H, W)`` bool, torch (any device) or NumPy, row-major as produced.

    Returns
    -------
    list of list of int
        Per mask, alternating run lengths of 0s and 1s in column-major order,
        starting with 0s (a leading 0 when the first pixel is set); they sum
        to ``H * W``.

    Notes
    -----
    The masks are never transposed (a full-size strided copy, the slowest
    step on a 12 MP photo). A new run starts at column-major position
    ``x * H + y`` when pixel ``(y, x)`` differs from the one above it, or, for
    ``y = 0``, from the bottom pixel of column ``x - 1``; both kinds of
    change are found on the row-major masks (NumPy, flat indices) and then
    sorted.
    """
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    n, h, w = m.shape
    total = h * w
    if n == 0:
        return []
    which, starts = [], []
    if h > 1:  # changes down a column: pixel (y + 1, x) differs from (y, x)
        flat = np.flatnonzero(m[:, 1:, :] != m[:, :-1, :])
        b, rest = np.divmod(flat, (h - 1) * w)
        y, x = np.divmod(rest, w)
        which.append(b)
        starts.append(x * h + y + 1)
    if w > 1:  # changes across a column seam: top of column x + 1 differs from bottom of column x
        flat = np.flatnonzero(m[:, 0, 1:] != m[:, -1, :-1])
        b, x = np.divmod(flat, w - 1)
        which.append(b)
        starts.append((x + 1) * h)
    which_a = np.concatenate(which) if which else np.zeros(0, dtype=np.int64)
    starts_a = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    order = np.argsort(which_a * (total + 1) + starts_a, kind="stable")
    positions = starts_a[order]
    bounds = np.searchsorted(which_a[order], np.arange(n + 1))
    first = m[:, 0, 0]
    out: List[List[int]] = []
    for i in range(n):
        edges = np.concatenate(([0], positions[bounds[i] : bounds[i + 1]], [total]))
        counts = np.diff(edges).tolist()
        if first[i]:
            counts.insert(0, 0)
        out.append(counts)
    return out


def rle_counts_to_box(counts: Sequence[int], size: Tuple[int, int]) -> List[int]:
    """Bounding box ``[x0, y0, x1, y1]`` (inclusive ends) of uncompressed run lengths.

    ``counts`` as from :func:`masks_to_rle_counts` for a mask of ``size``
    ``(H, W)``; ``[0, 0, 0, 0]`` for an empty mask. Equals
    :func:`masks_to_boxes` on the decoded mask without decoding it: a run of
    1s within one column spans its rows, and a run crossing into the next
    column covers both the bottom and the top row.
    """
    h = int(size[0])
    c = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(c)
    s = (ends - c)[1::2]
    e = ends[1::2] - 1  # last pixel of each run of 1s
    keep = c[1::2] > 0
    s, e = s[keep], e[keep]
    if s.size == 0:
        return [0, 0, 0, 0]
    col_s, col_e = s // h, e // h
    single = col_s == col_e
    y0 = np.where(single, s % h, 0).min()
    y1 = np.where(single, e % h, h - 1).max()
    return [int(col_s.min()), int(y0), int(col_e.max()), int(y1)]


def counts_to_coco(counts: List[int], size: Tuple[int, int]) -> Dict[str, Any]:
    """Compress uncompressed run lengths to a COCO RLE ``{"size": [h, w], "counts": str}``.

    ``counts`` as from :func:`masks_to_rle_counts`; ``size`` is ``(h, w)``.
    The ``counts`` of the result is a ``str`` (JSON-serialisable), not bytes.
    """
    from pycocotools import mask as mask_utils

    h, w = int(size[0]), int(size[1])
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def mask_to_coco(mask: np.ndarray) -> Dict[str, Any]:
    """One ``(H, W)`` bool mask -> COCO RLE with ``counts`` as str (pycocotools' encoder)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _as_pycoco(rle: Dict[str, Any]) -> Dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def coco_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` str or bytes) -> ``(H, W)`` bool mask."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(_as_pycoco(rle)).astype(bool)


def coco_area(rle: Dict[str, Any]) -> int:
    """Number of set pixels of a COCO RLE."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(_as_pycoco(rle)))


# --------------------------------------------------------------------------- post-processing


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill small holes in, or remove small islands from, one mask.

    Parameters
    ----------
    mask:
        ``(H, W)`` bool.
    area_thresh:
        Regions with fewer pixels than this are small.
    mode:
        ``"holes"``: set small connected regions of background (8-connected);
        ``"islands"``: clear small connected regions of foreground, but keep
        the largest one if all are small.

    Returns
    -------
    mask, changed
        The new ``(H, W)`` bool mask and whether it differs from the input.
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (~mask if holes else mask).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if holes:
        # label 0 is the original foreground; add the small holes to it
        lut = np.zeros(n_labels, dtype=bool)
        lut[0] = True
        lut[small] = True
    else:
        lut = np.ones(n_labels, dtype=bool)
        lut[0] = False
        lut[small] = False
        if not lut.any():
            lut[int(np.argmax(sizes)) + 1] = True
    return lut[labels], True

