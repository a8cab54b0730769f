"""Editing masks by hand: brush and eraser strokes, and cleanup (holes, islands, largest part).

Qt-free numpy, used by the window's brush/eraser and cleanup commands, by the
benchmarks' simulated user and by tests.

Coordinates: original-image pixels, **x then y**, with the centre of pixel
``(col, row)`` at ``(col, row)`` (the convention of :mod:`annotator.data.prompts`
and :meth:`sam_core.Predictor.decode`). Masks are ``(H, W)`` bool arrays at full
image resolution.

A stroke is the path the cursor took (its positions, in order) and a radius.
It covers exactly the pixels whose **centre** lies within ``radius`` of the
path (the union of the segments between consecutive positions, each thickened
into a capsule): a stroke made on a 12 MP photo seen at 20 % lands on the same
full-resolution pixels as the same path drawn at 100 %, with no gaps between
mouse events however fast the cursor moved. A stroke that leaves the image is
clipped to it.

Edits are returned as :class:`MaskDelta` values (the changed rectangle's old
and new contents), so an undo step stores only what changed. A stroke or a
:class:`Cleanup` is an *edit*: a small immutable value that :func:`apply_edit`
turns into a delta on any mask, so a list of edits can be replayed on a mask
that changed under it (the window keeps a candidate's edits while SAM refines
the candidate).

Refining with SAM (issue 17): :func:`prompt_fields` / :func:`prompt_from_fields`
store the prompt an annotation was accepted from in its extra fields, and
:func:`mask_logits` turns any mask into the decoder's ``mask_input``, as SAM's
preprocessing would see it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from annotator.data.prompts import PromptState, clamp_box, inside

#: Brush radius bounds (image pixels) for the window's ``[`` / ``]`` keys.
MIN_RADIUS = 0.5
MAX_RADIUS = 500.0


@dataclass(frozen=True)
class Stroke:
    """A brush or eraser stroke.

    points:
        ``(N, 2)`` float, x then y, image pixels, in the order drawn (N >= 1; one point is a dab).
    radius:
        Half the brush width in image pixels (> 0).
    erase:
        ``True`` for the eraser (removes pixels), ``False`` for the brush (adds).
    """

    points: Tuple[Tuple[float, float], ...]
    radius: float
    erase: bool = False

    @staticmethod
    def make(points: Sequence[Sequence[float]], radius: float, erase: bool = False) -> "Stroke":
        """A stroke from any ``(N, 2)`` sequence; raises ``ValueError`` for no points, non-finite values or radius <= 0."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            raise ValueError("a stroke needs at least one point")
        if not np.isfinite(pts).all():
            raise ValueError("a stroke's points must be finite numbers")
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
            raise ValueError(f"the brush radius must be a number > 0, got {radius!r}")
        return Stroke(tuple((float(x), float(y)) for x, y in pts), float(radius), bool(erase))


@dataclass(frozen=True, eq=False)
class MaskDelta:
    """What an edit changed: rows ``y0:y1``, columns ``x0:x1`` were ``before`` and are now ``after``."""

    y0: int
    y1: int
    x0: int
    x1: int
    before: np.ndarray
    after: np.ndarray

    @property
    def empty(self) -> bool:
        return self.before.size == 0 or bool(np.array_equal(self.before, self.after))

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with the edit applied (a copy, in ``mask``'s memory order)."""
        out = mask.copy(order="K")
        out[self.y0:self.y1, self.x0:self.x1] = self.after
        return out

    def revert(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with the edit undone (a copy, in ``mask``'s memory order)."""
        out = mask.copy(order="K")
        out[self.y0:self.y1, self.x0:self.x1] = self.before
        return out


def _segment_cover(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    """Whether each pixel centre of the grid ``ys x xs`` lies within ``r`` of segment ``a``-``b``."""
    px = xs[None, :] - a[0]
    py = ys[:, None] - a[1]
    d = b - a
    dd = float(d @ d)
    if dd == 0.0:
        t = 0.0
    else:
        t = np.clip((px * d[0] + py * d[1]) / dd, 0.0, 1.0)
    qx = px - t * d[0]
    qy = py - t * d[1]
    return qx * qx + qy * qy <= r * r


def stroke_bounds(stroke: Stroke, height: int, width: int) -> Optional[Tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)``: the pixels a stroke can touch, clipped to the image; ``None`` if it misses it."""
    pts = np.asarray(stroke.points)
    r = stroke.radius
    x0 = max(0, int(np.ceil(pts[:, 0].min() - r)))
    x1 = min(width, int(np.floor(pts[:, 0].max() + r)) + 1)
    y0 = max(0, int(np.ceil(pts[:, 1].min() - r)))
    y1 = min(height, int(np.floor(pts[:, 1].max() + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def rasterize_stroke(stroke: Stroke, height: int, width: int) -> Tuple[Optional[Tuple[int, int, int, int]], np.ndarray]:
    """The pixels a stroke covers: ``(bounds, cover)`` with ``cover`` a bool array of the bounds' shape.

    Each segment is evaluated only over its own bounding box (widened by the
    radius), so the cost follows the painted area, not the image size.
    """
    bounds = stroke_bounds(stroke, height, width)
    if bounds is None:
        return None, np.zeros((0, 0), bool)
    y0, y1, x0, x1 = bounds
    cover = np.zeros((y1 - y0, x1 - x0), bool)
    pts = np.asarray(stroke.points, dtype=np.float64)
    r = stroke.radius
    segments = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:]))
    for a, b in segments:
        sx0 = max(x0, int(np.ceil(min(a[0], b[0]) - r)))
        sx1 = min(x1, int(np.floor(max(a[0], b[0]) + r)) + 1)
        sy0 = max(y0, int(np.ceil(min(a[1], b[1]) - r)))
        sy1 = min(y1, int(np.floor(max(a[1], b[1]) + r)) + 1)
        if sx0 >= sx1 or sy0 >= sy1:
            continue
        xs = np.arange(sx0, sx1, dtype=np.float64)
        ys = np.arange(sy0, sy1, dtype=np.float64)
        cover[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] |= _segment_cover(xs, ys, a, b, r)
    return bounds, cover


def paint(mask: np.ndarray, stroke: Stroke) -> MaskDelta:
    """The edit a stroke makes to ``mask`` (not modified): brush sets the covered pixels, eraser clears them."""
    h, w = mask.shape
    bounds, cover = rasterize_stroke(stroke, h, w)
    if bounds is None:
        return MaskDelta(0, 0, 0, 0, np.zeros((0, 0), bool), np.zeros((0, 0), bool))
    y0, y1, x0, x1 = bounds
    before = mask[y0:y1, x0:x1].copy()
    after = before & ~cover if stroke.erase else before | cover
    return MaskDelta(y0, y1, x0, x1, before, after)


def _whole(mask: np.ndarray, new: np.ndarray) -> MaskDelta:
    """A delta over the rectangle where ``mask`` and ``new`` differ (empty if they are equal)."""
    diff = mask != new
    if not diff.any():
        return MaskDelta(0, 0, 0, 0, np.zeros((0, 0), bool), np.zeros((0, 0), bool))
    rows = np.flatnonzero(diff.any(axis=1))
    cols = np.flatnonzero(diff.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return MaskDelta(y0, y1, x0, x1, mask[y0:y1, x0:x1].copy(), new[y0:y1, x0:x1].copy())


def _components(mask: np.ndarray, connectivity: int) -> Tuple[int, np.ndarray, np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    return n, labels, stats


def fill_holes(mask: np.ndarray) -> MaskDelta:
    """Fill every hole: background not connected (4-connected) to the image border becomes foreground."""
    n, labels, _ = _components(~mask, 4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = np.ones(n, bool)
    holes[0] = False  # label 0 is the mask itself (not background)
    holes[border] = False
    return _whole(mask, mask | holes[labels])


def remove_islands(mask: np.ndarray, min_area: int) -> MaskDelta:
    """Remove the foreground parts (8-connected) smaller than ``min_area`` pixels."""
    if min_area < 1:
        raise ValueError(f"the smallest part to keep must be at least 1 pixel, got {min_area}")
    n, labels, stats = _components(mask, 8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return _whole(mask, keep[labels])


def keep_largest(mask: np.ndarray) -> MaskDelta:
    """Keep only the largest foreground part (8-connected); an empty mask stays empty."""
    n, labels, stats = _components(mask, 8)
    if n <= 2:
        return _whole(mask, mask)
    keep = np.zeros(n, bool)
    keep[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = True
    return _whole(mask, keep[labels])


def stroke_prompts(stroke: Stroke, spacing: float) -> Tuple[np.ndarray, np.ndarray]:
    """SAM prompts from a scribble: points every ``spacing`` pixels along the path, labels 1 (brush) or 0 (eraser).

    Returns ``points`` ``(K, 2)`` float (x, y) and ``labels`` ``(K,)`` int, K >= 1.
    """
    if not spacing > 0:
        raise ValueError(f"the spacing must be > 0, got {spacing}")
    pts = np.asarray(stroke.points, dtype=np.float64)
    out: List[np.ndarray] = [pts[0]]
    carry = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        seg = float(np.hypot(*(b - a)))
        t = spacing - carry
        while t <= seg:
            out.append(a + (b - a) * (t / seg))
            t += spacing
        carry = (carry + seg) % spacing  # arc length since the last point
    points = np.array(out, dtype=np.float64)
    labels = np.full(len(points), 0 if stroke.erase else 1, dtype=np.int64)
    return points, labels


# ---------------------------------------------------------------------------
# edits as values: strokes and cleanups, replayable on any mask
# ---------------------------------------------------------------------------

#: The cleanups, by name: what :class:`Cleanup` ``kind`` may be.
CLEANUPS = ("fill_holes", "remove_islands", "keep_largest")


@dataclass(frozen=True)
class Cleanup:
    """A cleanup step: ``kind`` one of :data:`CLEANUPS`; ``min_area`` (pixels, >= 1) for ``"remove_islands"``."""

    kind: str
    min_area: int = 1

    def __post_init__(self) -> None:
        if self.kind not in CLEANUPS:
            raise ValueError(f"unknown cleanup {self.kind!r}; expected one of {', '.join(CLEANUPS)}")
        if self.kind == "remove_islands" and not (isinstance(self.min_area, int) and self.min_area >= 1):
            raise ValueError(f"the smallest part to keep must be an integer >= 1, got {self.min_area!r}")


Edit = Union[Stroke, Cleanup]


def apply_edit(mask: np.ndarray, edit: Edit) -> MaskDelta:
    """The delta ``edit`` (a :class:`Stroke` or a :class:`Cleanup`) makes to ``mask`` (not modified)."""
    if isinstance(edit, Stroke):
        return paint(mask, edit)
    if edit.kind == "fill_holes":
        return fill_holes(mask)
    if edit.kind == "remove_islands":
        return remove_islands(mask, edit.min_area)
    return keep_largest(mask)


def describe_edit(edit: Edit) -> str:
    """Short text for the undo history: ``"Brush stroke"``, ``"Remove islands < 100 px"``..."""
    if isinstance(edit, Stroke):
        return "Eraser stroke" if edit.erase else "Brush stroke"
    if edit.kind == "remove_islands":
        return f"Remove islands < {edit.min_area} px"
    return {"fill_holes": "Fill holes", "keep_largest": "Keep largest part"}[edit.kind]


# ---------------------------------------------------------------------------
# refining with SAM: the stored prompt, and a mask as the decoder's mask input
# ---------------------------------------------------------------------------

#: The annotation's extra field holding the prompt it was accepted from (other COCO readers ignore it).
PROMPT_FIELD = "sam_prompt"
#: The annotation's extra field set once its mask was changed by hand (brush, eraser, cleanup).
EDITED_FIELD = "edited"
#: Logit given to a cell fully inside (minus: fully outside) the mask in :func:`mask_logits`. MobileSAM's own
#: logits reach +13..+21 inside objects. Measured on three skimage photos x 3 candidates: decoding the mask alone
#: (no point) gave IoU 0.16-0.998 with it at 20 but 0.0-0.995 at 8 (too weak a prior is ignored); reopening the
#: stored points with the mask as input gave 0.70-0.999 at 20, against 0.16-0.997 without the mask.
MASK_LOGIT = 20.0


def prompt_fields(prompt: PromptState, candidate: int) -> Dict[str, Any]:
    """The JSON value stored under :data:`PROMPT_FIELD`: points, labels, box and the chosen candidate.

    ``{"points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1], "candidate": 0}``
    (``box`` only when there is one); image pixels, x then y, pixel centres
    at integers (:mod:`annotator.data.prompts`), rounded to 0.01 px.
    """
    out: Dict[str, Any] = {
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in prompt.points],
        "labels": [int(v) for v in prompt.labels],
    }
    if prompt.box is not None:
        out["box"] = [round(float(v), 2) for v in prompt.box]
    out["candidate"] = int(candidate)
    return out


def prompt_from_fields(value: Any, width: int, height: int) -> Optional[Tuple[PromptState, int]]:
    """``(prompt, candidate)`` from a stored :data:`PROMPT_FIELD` value, or ``None`` if it is missing or unusable.

    The value may come from a hand-edited or foreign file: anything that is
    not a list of points inside the ``width`` x ``height`` image with labels
    0/1, an optional box, and a candidate index 0..2 is rejected as a whole.
    """
    if not isinstance(value, Mapping):
        return None
    points, labels, box = value.get("points", []), value.get("labels", []), value.get("box")
    candidate = value.get("candidate", 0)
    if not isinstance(points, list) or not isinstance(labels, list) or len(points) != len(labels):
        return None
    if isinstance(candidate, bool) or not isinstance(candidate, int) or not 0 <= candidate <= 2:
        return None
    pts = []
    for p, lab in zip(points, labels):
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p)):
            return None
        if isinstance(lab, bool) or lab not in (0, 1) or not inside(float(p[0]), float(p[1]), width, height):
            return None
        pts.append((float(p[0]), float(p[1])))
    clamped = None
    if box is not None:
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
            return None
        clamped = clamp_box(tuple(float(v) for v in box), width, height)  # type: ignore[arg-type]
        if clamped is None:
            return None
    if not pts and clamped is None:
        return None
    return PromptState(tuple(pts), tuple(int(v) for v in labels), clamped), candidate


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def input_size(height: int, width: int, long_side: int = 1024) -> Tuple[int, int]:
    """``(h, w)`` of an image after SAM's resize of its longest side to ``long_side`` (before padding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def mask_logits(mask: np.ndarray, size: Optional[Tuple[int, int]] = None, logit: float = MASK_LOGIT) -> np.ndarray:
    """A mask as the decoder's ``mask_input``: ``(256, 256)`` float32 logits over SAM's padded 1024 x 1024 input.

    ``mask`` ``(H, W)`` bool, full resolution; ``size`` the embedding's
    ``input_size`` ``(h, w)`` (default: :func:`input_size` of the mask).
    The mask goes through what SAM's preprocessing does to the image (its
    longest side resized to 1024 by area averaging, padding at the bottom and
    right), then 4 x 4 averaging to the 256 x 256 grid of the low-resolution
    logits; the fraction ``f`` of each cell inside the mask becomes the logit
    ``(2 f - 1) * logit`` (padding: ``-logit``, outside).
    """
    h, w = mask.shape
    hi, wi = size if size is not None else input_size(h, w)
    frac = cv2.resize(np.ascontiguousarray(mask, dtype=np.float32), (wi, hi), interpolation=cv2.INTER_AREA)
    padded = np.zeros((1024, 1024), np.float32)
    padded[:hi, :wi] = frac
    low = padded.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    return np.ascontiguousarray((2.0 * low - 1.0) * float(logit), dtype=np.float32)
