"""The small pictures: the candidate strip's thumbnails, list swatches and state dots.

Pure functions of numpy arrays to :class:`QImage` (safe off the GUI thread,
like the rest of :mod:`annotator.render`, which re-exports them). Colours are
``(r, g, b)`` 0-255; sizes ``(h, w)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from annotator.render.pixels import Color, _argb_image, _premultiplied, outline, rgb_image

if TYPE_CHECKING:
    from PySide6.QtGui import QImage

#: Side of the candidate strip's thumbnails, in pixels.
THUMB_SIDE = 120


def thumbnails(source: np.ndarray, masks: Sequence[np.ndarray], color: Color, side: int = THUMB_SIDE) -> list:
    """The candidate strip's pictures: the same crop of the image for every candidate, the differences visible.

    ``source`` is the image's small copy ``(hs, ws, 3)`` RGB; ``masks`` the
    candidates, best first, each ``(hp, wp)`` bool covering the whole image.
    The crop is the box around all candidates grown by half its size (at
    least a quarter of the image), so small objects stay visible and the
    pictures line up. Candidate 1 is tinted in ``color``; the others lightly
    where they agree with it, strongly where they add to it, and what they
    leave out of it is striped. Work after the crop is at thumbnail size.
    Returns RGB32 QImages whose longest side is ``side``.
    """
    import cv2

    hp, wp = masks[0].shape
    hs, ws = source.shape[:2]
    union = np.logical_or.reduce([np.asarray(m, bool) for m in masks])
    ys, xs = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if len(xs):  # the bounding box, in source pixels
        bx0, bx1, by0, by1 = xs[0] * ws / wp, (xs[-1] + 1) * ws / wp, ys[0] * hs / hp, (ys[-1] + 1) * hs / hp
        half = max(bx1 - bx0, by1 - by0, max(hs, ws) / 4) * 0.75
        cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
        x0, x1 = max(0, int(cx - half)), min(ws, int(np.ceil(cx + half)))
        y0, y1 = max(0, int(cy - half)), min(hs, int(np.ceil(cy + half)))
    else:
        x0, x1, y0, y1 = 0, ws, 0, hs
    f = side / max(y1 - y0, x1 - x0)
    size = (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f)))
    base = cv2.resize(source[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA).astype(np.float32)
    my0, my1 = y0 * hp // hs, max(y0 * hp // hs + 1, -(-y1 * hp // hs))
    mx0, mx1 = x0 * wp // ws, max(x0 * wp // ws + 1, -(-x1 * wp // ws))
    small = [cv2.resize(np.asarray(m[my0:my1, mx0:mx1], np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
             for m in masks]
    tint = np.asarray(color, dtype=np.float32)
    yy, xx = np.mgrid[:size[1], :size[0]]
    stripes = ((xx + yy) // 3) % 2 == 0
    out = []
    for i, m in enumerate(small):
        img = base.copy()
        first = small[0]
        same, added, left_out = (m, np.zeros_like(m), np.zeros_like(m)) if i == 0 else (m & first, m & ~first, first & ~m)
        img[~m & ~left_out] *= 0.6  # dim the surroundings so the candidate stands out
        img[same] = img[same] * (0.45 if i == 0 else 0.6) + tint * (0.55 if i == 0 else 0.4)
        img[added] = img[added] * 0.15 + tint * 0.85
        img[left_out & stripes] = (255, 255, 255)
        img[left_out & ~stripes] *= 0.35
        img[outline(m)] = tint
        out.append(rgb_image(img.clip(0, 255).astype(np.uint8)))
    return out


def swatch(color: Color, side: int = 14) -> QImage:
    """A small square of ``color`` with a dark border (list icons)."""
    argb = np.full((side, side), _premultiplied(color, 1.0), dtype=np.uint32)
    argb[0, :] = argb[-1, :] = argb[:, 0] = argb[:, -1] = _premultiplied((30, 30, 30), 1.0)
    return _argb_image(argb)


def dot(color: Color, side: int = 12, hollow: bool = False) -> QImage:
    """A round dot (image-list state icons)."""
    yy, xx = np.mgrid[:side, :side]
    r = (side - 1) / 2
    d = np.hypot(yy - r, xx - r)
    disc = d <= r
    if hollow:
        disc &= d >= r - 2
    argb = np.zeros((side, side), dtype=np.uint32)
    argb[disc] = _premultiplied(color, 1.0)
    return _argb_image(argb)
