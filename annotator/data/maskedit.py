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
and new contents), so an undo step stores only what changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

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
        """``mask`` with the edit applied (a copy)."""
        out = mask.copy()
        out[self.y0:self.y1, self.x0:self.x1] = self.after
        return out

    def revert(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with the edit undone (a copy)."""
        out = mask.copy()
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
