"""The one adapter between our masks and COCO segmentations (pycocotools).

pycocotools is fast and is the reference everybody evaluates with, but it has
traps, all handled here and nowhere else:

* :func:`pycocotools.mask.encode` wants a Fortran-ordered ``uint8`` array of
  0/1 (any other value is taken literally and corrupts the runs).
* It returns ``counts`` as ``bytes``, which :mod:`json` cannot write; we keep
  ``str`` everywhere and accept ``bytes`` on input.
* ``frPyObjects`` guesses the input kind from lengths: a polygon with 4
  numbers is taken for a box, and a flat list of numbers crashes. We only
  ever hand it validated lists of polygons of at least 3 points.
* Its C decoder trusts its input: RLE counts that add up to more than
  ``height * width`` write past the end of the mask buffer, a ``counts``
  string that ends in the middle of a number reads past its end, and huge or
  non-finite polygon coordinates make it allocate without bound. Everything
  from a file is therefore checked in Python (numpy) first, and every problem
  raises :class:`SegmentationError`.
* ``pycocotools.coco`` is imported only inside the functions that need it
  (the self-evaluation): it pulls in plotting code for ``showAnns``.

Conventions
-----------
* Masks are ``(H, W)`` ``bool`` arrays, row ``y`` then column ``x``.
* Compressed RLE is ``{"size": [H, W], "counts": str}`` (height first, as
  pycocotools writes it), column-major runs starting with background.
* Boxes are COCO ``[x, y, width, height]`` floats, x to the right, y down.
* Polygons are flat ``[x0, y0, x1, y1, ...]`` lists in pycocotools' pixel
  convention: pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``.

Why so long: it is the one adapter over pycocotools, on purpose: every conversion between our masks and COCO segmentations (RLE in its three spellings, polygons both ways, area and bbox, validation of a whole file) is here so that the traps listed above are handled in exactly one place.
"""

from __future__ import annotations

import collections.abc
import contextlib
import copy
import io
import math
import numbers
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "SegmentationError",
    "MAX_MASK_PIXELS",
    "encode_mask",
    "decode_rle",
    "to_compressed_rle",
    "empty_rle",
    "rle_area",
    "rle_bbox",
    "rle_areas_and_bboxes",
    "mask_to_polygons",
    "polygons_to_rle",
    "validate_coco",
    "inspect_coco",
    "self_evaluation_ap",
]

#: Largest mask accepted (height * width), the same limit as for images.
MAX_MASK_PIXELS = 1_000_000_000

_UINT32 = 1 << 32
_BATCH_CHARS = 1 << 18  # characters of counts strings checked together: 0.35 s for 13 M, 0.59 s with 1 << 20 (cache)
_RLE_ALPHABET = re.compile(r"[0-o]*")  # pycocotools writes chr(48 + c), c in 0..63


class SegmentationError(ValueError):
    """A segmentation (RLE or polygons) is malformed or does not fit its image."""


def _is_int(value: Any) -> bool:
    if type(value) is int:  # the common case, without the slow ABC check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    if type(value) is int or type(value) is float:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_mapping(value: Any) -> bool:
    # typing.Mapping's isinstance goes through the ABC machinery: 1 us a call, 0.3 s per 100,000 annotations
    return type(value) is dict or isinstance(value, collections.abc.Mapping)


def _check_size(h: Any, w: Any) -> Tuple[int, int]:
    if not (_is_int(h) and _is_int(w)) or h < 1 or w < 1:
        raise SegmentationError(f"image size must be positive integers, got height {h!r}, width {w!r}")
    if int(h) * int(w) > MAX_MASK_PIXELS:
        raise SegmentationError(f"image of {w} x {h} pixels is over the limit of {MAX_MASK_PIXELS} pixels")
    return int(h), int(w)


# ----------------------------------------------------------------------------
# masks <-> RLE


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """Compressed RLE of a mask.

    Parameters
    ----------
    mask
        ``(H, W)`` array; ``bool``, or any dtype where non-zero means inside.

    Returns
    -------
    dict
        ``{"size": [H, W], "counts": str}`` with plain Python ``int`` sizes.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array, got shape {m.shape}")
    if m.dtype != np.bool_:
        m = m != 0
    rle = mask_utils.encode(np.asfortranarray(m, dtype=np.uint8))
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle["counts"].decode("ascii")}


def empty_rle(h: int, w: int) -> Dict[str, Any]:
    """Compressed RLE of an all-background ``(h, w)`` mask (no pixel buffer)."""
    h, w = _check_size(h, w)
    return _as_str_counts(mask_utils.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w))


def _as_str_counts(rle: Mapping[str, Any]) -> Dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _counts_from_string(s: str) -> np.ndarray:
    """Decode a pycocotools counts string into run lengths (int64), checked.

    Each run is a little-endian base-32 number written 5 bits per character
    (``chr(48 + c)``; bit 0x20 = more characters follow, bit 0x10 of the last
    character = negative). From the fourth run on, each value is stored as
    the difference to the run two places earlier.
    """
    if not _RLE_ALPHABET.fullmatch(s):
        bad = next(ch for ch in s if not ("0" <= ch <= "o"))
        raise SegmentationError(f"RLE counts string contains {bad!r}, which is not in the RLE alphabet")
    if not s:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(s.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    more = (c & 0x20) != 0
    if more[-1]:
        raise SegmentationError("RLE counts string ends in the middle of a number (truncated?)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:
        raise SegmentationError("RLE counts string holds a number too large for a run length")
    position = np.arange(c.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((c & 0x1F) << (5 * position), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])  # index 1 is absolute, 3, 5, ... are deltas
    if runs.size > 2:
        runs[2::2] = np.cumsum(x[2::2])  # index 2 is absolute, 4, 6, ... are deltas
    if runs.size and (runs.min() < 0 or runs.max() >= _UINT32):
        raise SegmentationError("RLE counts string decodes to negative or oversized run lengths")
    return runs


def valid_counts_strings(strings: List[str], pixels: List[int]) -> np.ndarray:
    """Which compressed-RLE ``counts`` strings are valid for masks of ``pixels`` pixels, all at once.

    ``result[k]`` is True exactly when ``_counts_from_string(strings[k])``
    succeeds and its runs add up to ``pixels[k]`` (what
    :func:`to_compressed_rle` requires of a string): a few numpy passes over
    many strings together (in batches of 256 k characters), instead of a
    dozen numpy calls per string, which took 5.3 s for the 100,000 masks of
    a large working file. The message for a refused string comes from
    :func:`to_compressed_rle`.
    """
    n = len(strings)
    ok = np.ones(n, dtype=bool)
    begin = 0
    while begin < n:
        end, size = begin, 0
        while end < n and (size < _BATCH_CHARS or end == begin):
            size += len(strings[end])
            end += 1
        ok[begin:end] = _valid_counts_batch(strings[begin:end], pixels[begin:end])
        begin = end
    return ok


def _valid_counts_batch(strings: List[str], pixels: List[int]) -> np.ndarray:
    n = len(strings)
    ok = np.ones(n, dtype=bool)
    if n == 0:
        return ok
    try:
        buf = "".join(strings).encode("ascii")
    except UnicodeEncodeError:  # a character outside ASCII somewhere: leave those strings out
        ascii_ = np.fromiter((s.isascii() for s in strings), dtype=bool, count=n)
        keep = np.flatnonzero(ascii_)
        ok[:] = False
        if keep.size:
            ok[keep] = _valid_counts_batch([strings[k] for k in keep], [pixels[k] for k in keep])
        return ok
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=n)
    wanted = np.asarray(pixels, dtype=np.int64)
    ok &= (lengths > 0) | (wanted == 0)  # an empty string has no runs: 0 pixels
    nonempty = np.flatnonzero(lengths > 0)
    if nonempty.size == 0:
        return ok
    offsets = np.cumsum(lengths)  # one past each string's last character
    c = np.frombuffer(buf, dtype=np.uint8)
    bad_char = np.flatnonzero((c < 48) | (c > 111))  # not in the alphabet "0".."o"
    if bad_char.size:
        ok[np.searchsorted(offsets, bad_char, side="right")] = False
    d = c - np.uint8(48)  # (wraps for characters refused above)
    last = offsets[nonempty] - 1
    more = (d & 0x20) != 0
    ok[nonempty[more[last]]] = False  # ends in the middle of a number
    is_end = ~more
    is_end[last] = True  # a number never runs on into the next string
    ends = np.flatnonzero(is_end)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    num_len = ends - starts + 1
    first_num = np.searchsorted(ends, offsets[nonempty] - lengths[nonempty])  # each string's first number
    per_string = np.diff(np.append(first_num, ends.size))
    num_string = np.repeat(nonempty, per_string)
    ok[np.unique(num_string[num_len > 7])] = False  # too many characters for a run length
    low = d & 0x1F
    x = low[starts].astype(np.int64)
    for k in range(1, 7):  # 5 bits per character, little-endian
        sel = np.flatnonzero(num_len > k)
        if sel.size == 0:
            break
        x[sel] |= low[starts[sel] + k].astype(np.int64) << (5 * k)
    negative = np.flatnonzero((d[ends] & 0x10) != 0)
    x[negative] -= np.left_shift(1, 5 * np.minimum(num_len[negative], 7))
    # run 0 as it is; runs 1, 3, 5, ... and 2, 4, 6, ... are two chains of deltas: a running sum per chain
    # and string (int64 sums that wrap are still exact after the subtraction: the true values are small)
    index = np.arange(ends.size) - np.repeat(first_num, per_string)  # of each number within its string
    runs = x.copy()
    odd = (index & 1) == 1
    for chain in (odd, ~odd & (index > 0)):
        cs = np.cumsum(np.where(chain, x, 0))
        before = np.where(first_num > 0, cs[first_num - 1], 0)
        runs[chain] = (cs - np.repeat(before, per_string))[chain]
    out_of_range = (runs < 0) | (runs >= _UINT32)
    ok[np.unique(num_string[out_of_range])] = False
    totals = np.zeros(n, dtype=np.int64)
    totals[nonempty] = np.add.reduceat(np.where(out_of_range, 0, runs), first_num)
    ok &= totals == wanted
    return ok


def _check_runs_total(total: int, h: int, w: int) -> None:
    if total != h * w:
        raise SegmentationError(
            f"RLE run lengths add up to {total} pixels, but the mask has {h} x {w} = {h * w}"
        )


def _check_rle_size(size: Any, h: int, w: int) -> None:
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(_is_int(v) for v in size)
    ):
        raise SegmentationError(f"RLE 'size' must be [height, width] integers, got {size!r}")
    if int(size[0]) != h or int(size[1]) != w:
        raise SegmentationError(
            f"RLE size [height {size[0]}, width {size[1]}] disagrees with the image "
            f"(height {h}, width {w})"
        )


def _polygon_list(seg: Any) -> List[List[float]]:
    """Validate polygons; returns lists of floats, degenerate (< 3 points) dropped."""
    if seg and all(_is_number(v) for v in seg):
        seg = [seg]  # a single flat polygon, as some tools write it
    polygons = []
    for i, poly in enumerate(seg):
        if not isinstance(poly, (list, tuple)):
            raise SegmentationError(f"polygon {i} is a {type(poly).__name__}, expected a list of numbers")
        if not all(_is_number(v) for v in poly):
            raise SegmentationError(f"polygon {i} contains something other than numbers")
        if len(poly) % 2:
            raise SegmentationError(f"polygon {i} has an odd number of coordinates ({len(poly)})")
        if len(poly) < 6:
            continue  # fewer than 3 points: no area (pycocotools would read 4 numbers as a box)
        try:
            values = [float(v) for v in poly]
        except OverflowError:  # an integer of hundreds of digits
            raise SegmentationError(f"polygon {i} has a coordinate too large to be a number") from None
        if not all(math.isfinite(v) for v in values):
            raise SegmentationError(f"polygon {i} has a NaN or infinite coordinate")
        polygons.append(values)
    return polygons


def polygons_to_rle(polygons: Any, h: int, w: int) -> Dict[str, Any]:
    """Rasterise COCO polygons into one compressed RLE (their union).

    Parameters
    ----------
    polygons
        List of flat ``[x0, y0, x1, y1, ...]`` lists (or one flat list).
        Polygons with fewer than 3 points are dropped (they have no area).
    h, w
        Image height and width.

    Raises
    ------
    SegmentationError
        Non-numbers, odd length, NaN/inf, or coordinates absurdly far outside
        the image (more than one image size beyond an edge).
    """
    h, w = _check_size(h, w)
    if not isinstance(polygons, (list, tuple)):
        raise SegmentationError(f"polygons must be a list, got {type(polygons).__name__}")
    polys = _polygon_list(polygons)
    if not polys:
        return empty_rle(h, w)
    perimeter = 0.0
    for i, poly in enumerate(polys):
        xy = np.asarray(poly).reshape(-1, 2)
        if xy[:, 0].min() < -w or xy[:, 0].max() > 2 * w or xy[:, 1].min() < -h or xy[:, 1].max() > 2 * h:
            raise SegmentationError(
                f"polygon {i} has coordinates far outside the {w} x {h} image"
            )
        step = np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1)
        perimeter += float(step.sum())
    # pycocotools walks every edge at 5x resolution; bound its work and memory
    if perimeter > 8 * (h * w + h + w) + 64:
        raise SegmentationError("polygons are implausibly long for the image")
    rles = mask_utils.frPyObjects(polys, h, w)
    return _as_str_counts(mask_utils.merge(rles) if len(rles) > 1 else rles[0])


def to_compressed_rle(seg: Any, h: int, w: int) -> Dict[str, Any]:
    """Turn any COCO segmentation into checked compressed RLE, without decoding.

    Parameters
    ----------
    seg
        Compressed RLE (``counts`` ``str`` or ``bytes``), uncompressed RLE
        (``counts`` a list of run lengths), or polygons (list of flat lists).
    h, w
        Height and width of the image it belongs to.

    Returns
    -------
    dict
        ``{"size": [h, w], "counts": str}``.

    Raises
    ------
    SegmentationError
        The segmentation is malformed or its size disagrees with ``(h, w)``.
    """
    h, w = _check_size(h, w)
    if _is_mapping(seg):
        if "counts" not in seg or "size" not in seg:
            raise SegmentationError("RLE must have 'size' and 'counts'")
        _check_rle_size(seg["size"], h, w)
        counts = seg["counts"]
        if isinstance(counts, (bytes, bytearray)):
            try:
                counts = bytes(counts).decode("ascii")
            except UnicodeDecodeError:
                raise SegmentationError("RLE counts bytes are not ASCII") from None
        if isinstance(counts, str):
            runs = _counts_from_string(counts)
            _check_runs_total(int(runs.sum()), h, w)
            return {"size": [h, w], "counts": counts}
        if isinstance(counts, (list, tuple)):
            if not all(_is_int(v) for v in counts):
                raise SegmentationError("uncompressed RLE counts must all be integers")
            if any(v < 0 or v >= _UINT32 for v in counts):
                raise SegmentationError("uncompressed RLE counts must be in 0 .. 2**32 - 1")
            _check_runs_total(sum(int(v) for v in counts), h, w)
            plain = {"size": [h, w], "counts": [int(v) for v in counts]}
            return _as_str_counts(mask_utils.frPyObjects(plain, h, w))
        raise SegmentationError(
            f"RLE counts must be a string or a list of integers, got {type(counts).__name__}"
        )
    if isinstance(seg, (list, tuple)):
        return polygons_to_rle(list(seg), h, w)
    raise SegmentationError(
        f"segmentation must be an RLE object or a list of polygons, got {type(seg).__name__}"
    )


def decode_rle(seg: Any, h: int, w: int) -> np.ndarray:
    """Decode any COCO segmentation into a mask.

    Parameters
    ----------
    seg
        As for :func:`to_compressed_rle`.
    h, w
        Image height and width.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` ``bool``, C-contiguous.
    """
    rle = to_compressed_rle(seg, h, w)
    m = mask_utils.decode(rle)  # (h, w) uint8 of 0/1, Fortran order
    return np.ascontiguousarray(m.view(np.bool_))


def rle_area(rle: Mapping[str, Any]) -> float:
    """Number of mask pixels of a compressed RLE, as a float (COCO ``area``)."""
    return float(mask_utils.area(dict(rle)))


def rle_areas_and_bboxes(rles: List[Mapping[str, Any]]) -> Tuple[List[float], List[List[float]]]:
    """:func:`rle_area` and :func:`rle_bbox` of many compressed RLEs, one pycocotools call each."""
    if not rles:
        return [], []
    plain = [{"size": r["size"], "counts": r["counts"]} for r in rles]
    # pycocotools' area() of a list sizes its result with np.array((n,), dtype=uint8): lists of at most 255
    areas = np.concatenate([np.asarray(mask_utils.area(plain[k : k + 255]), dtype=np.float64).reshape(-1)
                            for k in range(0, len(plain), 255)])
    boxes = np.asarray(mask_utils.toBbox(plain), dtype=np.float64).reshape(-1, 4)
    return areas.tolist(), boxes.tolist()


def rle_bbox(rle: Mapping[str, Any]) -> List[float]:
    """Tight box ``[x, y, width, height]`` (floats) of a compressed RLE."""
    return [float(v) for v in mask_utils.toBbox(dict(rle))]


# ----------------------------------------------------------------------------
# polygons


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0) -> Tuple[List[List[float]], bool]:
    """Outer boundaries of a mask as COCO polygons.

    The boundary is traced on a 2x upsampled copy of the mask, so that the
    vertices lie a quarter pixel inside the pixel edges: with ``tolerance=0``
    the polygons rasterise back (pycocotools) to exactly the mask with its
    holes filled. ``cv2.approxPolyDP`` then simplifies them.

    Parameters
    ----------
    mask
        ``(H, W)`` bool (non-zero = inside).
    tolerance
        Maximum distance, in pixels, between the simplified polygon and the
        traced boundary; 0 keeps every corner.

    Returns
    -------
    polygons : list of list of float
        One flat ``[x0, y0, x1, y1, ...]`` list per connected component
        (8-connectivity), in pycocotools' pixel convention. A polygon that
        simplification would reduce below 3 points is kept unsimplified;
        degenerate polygons (< 3 points) are dropped.
    has_holes : bool
        True when a component has a hole (found with ``RETR_CCOMP``); polygons
        cannot carry holes, so the holes are filled in ``polygons``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    m = m.astype(bool, copy=False)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return [], False
    cols = np.flatnonzero(m.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = np.pad(m[y0:y1, x0:x1].astype(np.uint8), 1)
    up = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:  # pragma: no cover - non-empty masks always have a contour
        return [], False
    links = hierarchy.reshape(-1, 4)
    has_holes = bool((links[:, 3] >= 0).any())
    polygons = []
    for contour, link in zip(contours, links):
        if link[3] >= 0:
            continue  # a hole
        pts = contour
        if tolerance > 0:
            simplified = cv2.approxPolyDP(contour, 2.0 * tolerance, True)
            if len(simplified) >= 3:
                pts = simplified
        if len(pts) < 3:
            continue
        xy = pts.reshape(-1, 2).astype(np.float64)
        # up-sampled index u (with the 1-pixel pad) -> image coordinate
        xs = (xy[:, 0] + 0.5) / 2.0 - 1.0 + x0
        ys = (xy[:, 1] + 0.5) / 2.0 - 1.0 + y0
        polygons.append([float(v) for v in np.column_stack([xs, ys]).ravel()])
    return polygons, has_holes


# ----------------------------------------------------------------------------
# validation


def _where(kind: str, index: int, item: Any) -> str:
    if _is_mapping(item) and _is_int(item.get("id")):
        return f"{kind}[{index}] (id {item['id']})"
    return f"{kind}[{index}]"


class _Where:
    """:func:`_where`, worked out only if a message needs it (most annotations have no problem)."""

    __slots__ = ("kind", "index", "item")

    def __init__(self, kind: str, index: int, item: Any):
        self.kind, self.index, self.item = kind, index, item

    def __str__(self) -> str:
        return _where(self.kind, self.index, self.item)


def _finite_real(value: Any) -> bool:
    """A number (not a bool) that is finite as a float: an integer of 400 digits is not (float() overflows)."""
    if type(value) is float:
        return math.isfinite(value)
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _valid_id(value: Any, minimum: int = 0) -> bool:
    return _is_int(value) and minimum <= value < (1 << 53)


def _id_problem(key: str, value: Any, expected: str = "a non-negative integer") -> str:
    """What is wrong with an id :func:`_valid_id` refused (``key``: the field's name)."""
    if _is_int(value) and value >= (1 << 53):
        return (f"'{key}' {value} is too large: ids must be below 2**53 = {1 << 53}, beyond which JSON "
                "readers that hold numbers as doubles (JavaScript, many COCO tools) cannot keep it exact")
    return f"'{key}' must be {expected}, got {value!r}"


def _checked_counts(annotations: List[Any], images: Mapping[int, Tuple[int, int, str]]) -> Dict[int, Dict[str, Any]]:
    """``index -> compressed RLE`` of the annotations whose ``counts`` string is valid for their image.

    What :func:`to_compressed_rle` would return for them, checked for all of
    them at once (:func:`valid_counts_strings`); the rest (polygons, lists,
    bytes, anything refused) go through :func:`to_compressed_rle` one by one,
    which gives the message.
    """
    index: List[int] = []
    strings: List[str] = []
    pixels: List[int] = []
    shapes: List[Tuple[int, int]] = []
    for i, ann in enumerate(annotations):
        if type(ann) is not dict:
            continue
        seg, iid = ann.get("segmentation"), ann.get("image_id")
        if type(seg) is not dict or type(iid) is not int or iid not in images:
            continue
        counts, size = seg.get("counts"), seg.get("size")
        h, w = images[iid][0], images[iid][1]
        if type(counts) is not str or type(size) is not list or len(size) != 2:
            continue
        if type(size[0]) is not int or type(size[1]) is not int or size[0] != h or size[1] != w:
            continue
        index.append(i)
        strings.append(counts)
        pixels.append(h * w)
        shapes.append((h, w))
    ok = valid_counts_strings(strings, pixels)
    return {i: {"size": [h, w], "counts": s}
            for i, s, (h, w), good in zip(index, strings, shapes, ok.tolist()) if good}


def inspect_coco(
    data: Any,
    image_sizes: Optional[Mapping[str, Tuple[int, int]]] = None,
    *,
    check_geometry: bool = True,
    require_all: bool = True,
) -> Tuple[List[str], Dict[int, Dict[str, Any]]]:
    """:func:`validate_coco`, also returning the checked segmentations.

    Returns
    -------
    problems : list of str
    rles : dict
        ``index in data["annotations"]`` -> compressed RLE (``counts`` str),
        for every annotation whose segmentation was valid.
    """
    problems: List[str] = []
    rles: Dict[int, Dict[str, Any]] = {}
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        return [f"the top level is {kind}, expected a COCO object with 'images', 'annotations' and 'categories'"], rles

    sections = {}
    for key in ("images", "annotations", "categories"):
        if key not in data:
            if key == "images" or require_all:
                problems.append(f"not a COCO file: the '{key}' list is missing")
            sections[key] = []
        elif not isinstance(data[key], list):
            problems.append(f"'{key}' must be a list, got {type(data[key]).__name__}")
            sections[key] = []
        else:
            sections[key] = data[key]

    images: Dict[int, Tuple[int, int, str]] = {}  # id -> (h, w, file_name)
    first_index: Dict[int, int] = {}
    names: Dict[str, int] = {}
    for i, img in enumerate(sections["images"]):
        where = _where("images", i, img)
        if not _is_mapping(img):
            problems.append(f"{where}: expected an object, got {type(img).__name__}")
            continue
        iid, name, w, h = img.get("id"), img.get("file_name"), img.get("width"), img.get("height")
        ok = True
        if not _valid_id(iid):
            problems.append(f"{where}: {_id_problem('id', iid)}")
            ok = False
        elif iid in first_index:
            problems.append(f"{where}: duplicate image id {iid} (also images[{first_index[iid]}])")
            ok = False
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: 'file_name' must be a non-empty string, got {name!r}")
            ok = False
        elif name in names:
            problems.append(f"{where}: duplicate file_name {name!r} (also images[{names[name]}])")
        if not (_is_int(w) and _is_int(h) and w >= 1 and h >= 1):
            problems.append(f"{where}: 'width' and 'height' must be positive integers, got {w!r} x {h!r}")
            ok = False
        elif w * h > MAX_MASK_PIXELS:
            problems.append(f"{where}: {w} x {h} is over the limit of {MAX_MASK_PIXELS} pixels")
            ok = False
        if isinstance(name, str) and name and name not in names:
            names[name] = i
        if _valid_id(iid) and iid not in first_index:
            first_index[iid] = i
            if ok:
                images[iid] = (int(h), int(w), name)
        if ok and image_sizes is not None and name in image_sizes:
            fw, fh = image_sizes[name]
            if (fw, fh) != (w, h):
                problems.append(
                    f"{where}: '{name}' is {w} x {h} in the JSON but the image file is "
                    f"{fw} x {fh} (width x height, EXIF orientation applied)"
                )

    categories: Dict[int, int] = {}
    for i, cat in enumerate(sections["categories"]):
        where = _where("categories", i, cat)
        if not _is_mapping(cat):
            problems.append(f"{where}: expected an object, got {type(cat).__name__}")
            continue
        cid = cat.get("id")
        if not _valid_id(cid):
            problems.append(f"{where}: {_id_problem('id', cid)}")
        elif cid in categories:
            problems.append(f"{where}: duplicate category id {cid} (also categories[{categories[cid]}])")
        else:
            categories[cid] = i
        if not isinstance(cat.get("name"), str) or not cat.get("name"):
            problems.append(f"{where}: 'name' must be a non-empty string, got {cat.get('name')!r}")
        if "supercategory" in cat and not isinstance(cat["supercategory"], str):
            problems.append(f"{where}: 'supercategory' must be a string")

    checked = _checked_counts(sections["annotations"], images)
    seen_ann: Dict[int, int] = {}
    for i, ann in enumerate(sections["annotations"]):
        where = _Where("annotations", i, ann)
        if not _is_mapping(ann):
            problems.append(f"{where}: expected an object, got {type(ann).__name__}")
            continue
        aid = ann.get("id")
        if not _valid_id(aid, minimum=1):
            problems.append(f"{where}: {_id_problem('id', aid, 'an integer >= 1 (COCOeval cannot match id 0)')}")
        elif aid in seen_ann:
            problems.append(f"{where}: duplicate annotation id {aid} (also annotations[{seen_ann[aid]}])")
        else:
            seen_ann[aid] = i
        iid = ann.get("image_id")
        if not _valid_id(iid):
            problems.append(f"{where}: {_id_problem('image_id', iid)}")
        elif iid not in images and iid not in first_index:
            problems.append(f"{where}: image_id {iid} is not in 'images' (annotation for a missing image)")
        cid = ann.get("category_id")
        if not _valid_id(cid):
            problems.append(f"{where}: {_id_problem('category_id', cid)}")
        elif cid not in categories:
            problems.append(f"{where}: category_id {cid} is not in 'categories'")
        if "iscrowd" in ann and not (_is_int(ann["iscrowd"]) and ann["iscrowd"] in (0, 1)):
            problems.append(f"{where}: 'iscrowd' must be 0 or 1, got {ann.get('iscrowd')!r}")
        area, bbox = ann.get("area"), ann.get("bbox")
        if "area" in ann and not (_finite_real(area) and area >= 0):
            problems.append(f"{where}: 'area' must be a finite number >= 0, got {area!r}")
            area = None
        if "bbox" in ann and not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(map(_finite_real, bbox))
            and bbox[2] >= 0
            and bbox[3] >= 0
        ):
            problems.append(f"{where}: 'bbox' must be [x, y, width, height] finite numbers, got {bbox!r}")
            bbox = None
        if "segmentation" not in ann:
            problems.append(f"{where}: 'segmentation' is missing")
            continue
        if not _valid_id(iid) or iid not in images:  # (a list or dict image_id cannot be looked up)
            continue
        h, w, name = images[iid]
        try:
            rle = checked.get(i) or to_compressed_rle(ann["segmentation"], h, w)
        except SegmentationError as exc:
            problems.append(f"{where}: segmentation for image id {iid} ({name!r}): {exc}")
            continue
        rles[i] = rle
        if check_geometry:
            true_area = rle_area(rle)
            if area is None or abs(float(area) - true_area) > max(0.5, 1e-6 * true_area):
                problems.append(f"{where}: 'area' {area!r} disagrees with the mask ({true_area:g} pixels)")
            true_box = rle_bbox(rle)
            if bbox is None or any(abs(float(a) - b) > 1e-3 for a, b in zip(bbox, true_box)):
                problems.append(f"{where}: 'bbox' {bbox!r} disagrees with the mask's box {true_box}")
    return problems, rles


def validate_coco(
    data: Any,
    image_sizes: Optional[Mapping[str, Tuple[int, int]]] = None,
    *,
    check_geometry: bool = True,
    require_all: bool = True,
) -> List[str]:
    """Everything wrong with a COCO instance-segmentation object.

    Parameters
    ----------
    data
        The parsed JSON.
    image_sizes
        Optional ``file_name -> (width, height)`` of the actual image files
        (after EXIF orientation, see :func:`annotator.data.imageio.image_size`);
        images listed here must agree with their JSON ``width``/``height``.
    check_geometry
        Also require ``area`` and ``bbox`` to be present and agree with the
        mask (area within half a pixel, box within 0.001 pixel).
    require_all
        Require ``annotations`` and ``categories`` to be present (``images``
        is always required).

    Returns
    -------
    list of str
        One sentence per problem, naming the entry (``annotations[3] (id 7)``)
        and what is wrong; empty when the data is valid. Checked: the three
        lists and their types, integer ids (annotation ids >= 1), duplicate
        ids and file names, annotations pointing at missing images or
        categories, positive image sizes, segmentations (RLE size against the
        image size, run lengths, polygons), ``iscrowd``, ``area``, ``bbox``.
    """
    return inspect_coco(data, image_sizes, check_geometry=check_geometry, require_all=require_all)[0]


# ----------------------------------------------------------------------------
# evaluation with pycocotools itself


def self_evaluation_ap(data: Mapping[str, Any]) -> float:
    """COCOeval (``segm``) AP of a COCO object scored against itself.

    Every annotation becomes a detection with score 1.0; a lossless file gives
    AP = 1.0. Annotations with an empty mask are left out of both sides (IoU
    with an empty mask is 0, so nothing could match them), as are crowd
    annotations on the detection side. ``maxDets`` is raised to the largest
    number of annotations on one image.

    pycocotools prints progress; it is swallowed here with
    :func:`contextlib.redirect_stdout`, which is process-wide, so call this
    from a command-line tool or a test, not from a GUI worker thread.

    Returns
    -------
    float
        ``COCOeval.stats[0]`` (AP at IoU 0.50:0.95, all areas); -1.0 when
        there is nothing to evaluate.
    """
    from pycocotools.coco import COCO  # lazily: see the module docstring
    from pycocotools.cocoeval import COCOeval

    dataset = copy.deepcopy(dict(data))
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        probe = COCO()
        probe.dataset = copy.deepcopy(dataset)
        probe.createIndex()
        kept = []
        for ann in dataset.get("annotations", []):
            if rle_area(_as_str_counts(_rle_of(probe, ann))) > 0:
                kept.append(ann)
        dataset["annotations"] = kept
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        results = []
        per_image: Dict[int, int] = {}
        for ann in kept:
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
            if ann.get("iscrowd", 0):
                continue
            results.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "segmentation": _as_str_counts(_rle_of(gt, ann)),
                    "score": 1.0,
                }
            )
        if not results:
            return -1.0
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "segm")
        ev.params.maxDets = [1, 10, max(100, max(per_image.values()))]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def _rle_of(coco: Any, ann: Mapping[str, Any]) -> Dict[str, Any]:
    seg = ann["segmentation"]
    if isinstance(seg, Mapping) and isinstance(seg.get("counts"), str):
        return dict(seg)
    return coco.annToRLE(ann)
