"""Numpy masks and images -> QImages for the canvas and the candidate strip.

Only :mod:`PySide6.QtGui`'s :class:`QImage` is used, which may be built on
any thread: the decoder worker renders candidate overlays and thumbnails off
the GUI thread, and the GUI thread only turns them into pixmaps.

Sizes are ``(h, w)`` (rows, columns) like numpy shapes; colours are
``(r, g, b)`` 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from PySide6.QtGui import QImage, QPainterPath

from annotator.data import palette
from annotator.render.pixels import Color, _argb_image, _premultiplied, outline, rgb_image  # noqa: F401
from annotator.render.pictures import THUMB_SIDE, dot, swatch, thumbnails  # noqa: F401

#: Longest side of candidate previews and annotation overlays, in pixels. Bounds the click path's cost
#: whatever the image size (a 12 MP photo is drawn from a 2048-pixel overlay, scaled by the view).
MAX_OVERLAY_SIDE = 2048
#: Longest side of the downscaled copy of each image used for thumbnails.
THUMB_SOURCE_SIDE = 512


def overlay_size(height: int, width: int, view_scale: float = 1.0, max_side: int = MAX_OVERLAY_SIDE) -> Tuple[int, int]:
    """``(h, w)`` at which to render masks of a ``height`` x ``width`` image shown at ``view_scale``.

    Never larger than the image (nor than ``max_side`` on the longest side),
    never smaller than 256 on the longest side (so a zoomed-out view that
    is then zoomed in still looks smooth until the next render).
    """
    longest = max(height, width)
    target = min(longest, max_side, max(256, int(np.ceil(longest * min(1.0, max(view_scale, 1e-3))))))
    f = target / longest
    return max(1, round(height * f)), max(1, round(width * f))


class OverlayImage(QImage):
    """A mask overlay's fill, plus the outline the canvas draws over it at a constant screen width.

    The outline is not in the pixels: an outline drawn into an overlay of
    2048 pixels shrinks to a fraction of a screen pixel when a 4000-pixel
    photo is zoomed out to 21 %, and grows when zoomed in. The canvas draws
    :meth:`outline_at` the view's scale with a cosmetic pen of
    :attr:`edge_width` screen pixels instead (:mod:`annotator.ui.canvas_overlays`).

    The image carries the mask's contours (found once, where the overlay is
    made, usually a worker thread); each simplified :class:`QPainterPath` is
    built on first use and kept, so an edit pays only for the outline its
    zoom shows (building paths is most of an outline's cost).

    Attributes
    ----------
    outline:
        The mask's boundaries (outer contours and holes) as a
        :class:`QPainterPath` in this image's pixel coordinates (pixel
        ``(c, r)`` covers ``[c, c + 1) x [r, r + 1)``; the path runs through
        the centres of the mask's boundary pixels), simplified to within half
        a pixel. Empty for an empty mask.
    edge_color:
        ``(r, g, b)`` of the outline.
    edge_width:
        Outline width in screen pixels.
    placement:
        ``(x, y, width, height)`` in image pixels of the region the image is
        stretched over (e.g. the mask's bounding box: see
        :func:`candidate_patch_overlay`); ``None``: the whole image.
    """

    def __init__(self, image: QImage, contours: Sequence[np.ndarray], edge_color: Color, edge_width: float,
                 placement: "Tuple[float, float, float, float] | None" = None) -> None:
        super().__init__(image)
        self.placement = placement
        self._contours = tuple(contours)
        self._paths: dict = {}
        self.edge_color = tuple(int(c) for c in edge_color)
        self.edge_width = float(edge_width)

    @property
    def outline(self) -> QPainterPath:
        return self.path_within(FINE_TOLERANCE)

    @property
    def has_outline(self) -> bool:
        """Whether there is an outline to draw (without building any path)."""
        return bool(self._contours)

    def outline_at(self, scale: float) -> QPainterPath:
        """The outline to draw when one of this image's pixels is ``scale`` screen pixels wide.

        The coarsest version whose simplification stays within
        :data:`OUTLINE_ERROR_PX` screen pixels: antialiased strokes cost in
        proportion to their vertices, and a zoomed-out view needs few.
        """
        best = FINE_TOLERANCE
        for tolerance in COARSE_TOLERANCES:
            # (1 % slack: an overlay rendered at the view's size is seen at a scale a rounding above 1)
            if tolerance * scale <= OUTLINE_ERROR_PX * 1.01:
                best = tolerance
        return self.path_within(best)

    def path_within(self, tolerance: float) -> QPainterPath:
        """The outline simplified to within ``tolerance`` pixels (built once, then kept)."""
        path = self._paths.get(tolerance)
        if path is None:
            path = self._paths[tolerance] = contour_path(self._contours, tolerance)
        return path


#: Tolerances (image pixels) of the outlines an overlay offers, and the error allowed on screen. 0.8 serves an
#: overlay seen at up to one screen pixel per overlay pixel, as a candidate's is (rendered at the view's size): a
#: third of the vertices of 0.5 on a smooth SAM mask, and the first paint after a click strokes them (a 20 %
#: object on a 12 MP photo in a window: 4.4 -> 2.8 ms CPU), with no more on-screen error than the coarser levels.
FINE_TOLERANCE, COARSE_TOLERANCES, OUTLINE_ERROR_PX = 0.5, (0.8, 1.5, 4.0), 0.8


#: Contours enclosing less than this many overlay pixels get no outline (see :func:`mask_contours`).
MIN_OUTLINED_AREA = 6.0


def mask_contours(mask: np.ndarray) -> List[np.ndarray]:
    """Outer contours and holes of ``mask`` (OpenCV's two-level contours), specks and pinholes left out."""
    import cv2

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if mask.size == 0 or not mask.any():
        return []
    contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    # a speck or pinhole a few pixels across: its fill shows it, an outline would only clutter
    return [c for c in contours if len(c) >= 8 or cv2.contourArea(c) >= MIN_OUTLINED_AREA]


def contour_path(contours: Sequence[np.ndarray], tolerance: float) -> QPainterPath:
    """``contours`` as closed polygons, each simplified to within ``tolerance`` pixels (Douglas-Peucker)."""
    import cv2

    path = QPainterPath()
    for contour in contours:
        simple = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 and len(contour) > 8 else contour
        pts = (simple.reshape(-1, 2).astype(np.float64) + 0.5).tolist()
        path.moveTo(*pts[0])  # moveTo/lineTo: 2.4x faster than a QPolygonF of QPointF made in Python
        for x, y in pts[1:]:
            path.lineTo(x, y)
        path.closeSubpath()
    return path


def mask_overlay(
    mask: np.ndarray,
    color: Color,
    fill_alpha: float = 0.4,
    edge_alpha: float = 1.0,
    edge_color: Color | None = None,
    edge_width: float = 2,
) -> OverlayImage:
    """A translucent fill with an outline: ``(h, w)`` bool -> :class:`OverlayImage` ``w`` x ``h``.

    The image holds the fill (ARGB32 premultiplied, ``color`` at
    ``fill_alpha``); the outline travels with it as a path, in ``edge_color``
    (default ``color``) and ``edge_width`` screen pixels (none if ``edge_alpha`` is 0).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    argb = mask.view(np.uint8) * _premultiplied(color, fill_alpha)  # 0 outside, the fill inside
    contours = mask_contours(mask) if edge_alpha > 0 else []
    return OverlayImage(_argb_image(argb), contours, edge_color or color, edge_width)


#: Outline of the candidate being edited: white, so it stands apart from accepted annotations of its colour.
CANDIDATE_EDGE = palette.CANDIDATE_EDGE
#: Outline of the annotation selected in the panel (a colour no category gets from the palette).
SELECTED_EDGE = palette.SELECTED_EDGE
#: Outline of a segment-everything proposal not (yet) selected: the first of :data:`palette.PROPOSAL_COLORS`.
PROPOSAL_EDGE = palette.PROPOSAL_COLORS[0]
#: Fill opacity of the current candidate by default (the user's "mask opacity" preference).
DEFAULT_OPACITY = 0.45
#: Accepted annotations are filled lighter than the candidate being edited, by this factor.
ANNOTATION_FILL_RATIO = 0.8
#: Outline widths in screen pixels: annotations and proposals, the candidate, a selected annotation.
EDGE_WIDTH, CANDIDATE_EDGE_WIDTH, SELECTED_EDGE_WIDTH = 2.0, 2.0, 3.0


def _alpha(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def candidate_overlay(mask: np.ndarray, color: Color, opacity: float = DEFAULT_OPACITY) -> QImage:
    """How the current candidate is drawn: the category colour filled at ``opacity`` (0..1), a white outline."""
    return mask_overlay(mask, color, fill_alpha=_alpha(opacity), edge_color=CANDIDATE_EDGE,
                        edge_width=CANDIDATE_EDGE_WIDTH)


def candidate_patch_overlay(preview: np.ndarray, height: int, width: int, color: Color,
                            opacity: float = DEFAULT_OPACITY) -> OverlayImage:
    """:func:`candidate_overlay` of a display-size ``(h, w)`` bool ``preview`` of a ``height`` x ``width`` image, cut
    to the mask's bounding box (:func:`mask_patch`); its :attr:`OverlayImage.placement` says where it goes.

    A click's overlay then costs what the object covers, not the view: its pixels here, its copy to a pixmap, its
    cached drawing and the repaint on the GUI thread (a whole-view overlay is ~2 MB on a 12 MP photo in a window).
    """
    patch = mask_patch(preview, height, width)
    overlay = candidate_overlay(patch.mask, color, opacity)
    overlay.placement = patch.rect
    return overlay


def candidate_view(candidates, index: int, size: Tuple[int, int], color: Color,
                   opacity: float = DEFAULT_OPACITY) -> Tuple[np.ndarray, OverlayImage]:
    """Candidate ``index`` at display ``size``: its :func:`preview` and its :func:`candidate_patch_overlay`."""
    shown = preview(candidates, index, size)
    h, w = candidates.original_size
    return shown, candidate_patch_overlay(shown, h, w, color, opacity)


def annotation_overlay(
    mask: np.ndarray, color: Color, selected: bool = False, opacity: float = DEFAULT_OPACITY
) -> QImage:
    """How an accepted annotation is drawn: a light fill and an outline in its category colour (yellow when selected).

    The fill is ``opacity`` times :data:`ANNOTATION_FILL_RATIO` (a selected
    annotation: a little more than ``opacity``); outlines stay opaque at every
    opacity, so a fill of 0 still shows where each annotation is.
    """
    if selected:
        return mask_overlay(mask, color, fill_alpha=_alpha(opacity * 1.1), edge_color=SELECTED_EDGE,
                            edge_width=SELECTED_EDGE_WIDTH)
    return mask_overlay(mask, color, fill_alpha=_alpha(opacity * ANNOTATION_FILL_RATIO))


def proposal_overlay(mask: np.ndarray, selected: bool = False, color: Color = PROPOSAL_EDGE,
                     opacity: float = DEFAULT_OPACITY, edge: Color = PROPOSAL_EDGE) -> QImage:
    """How a segment-everything proposal is drawn.

    Not selected: an outline only, in ``edge`` (one of
    :data:`annotator.data.palette.PROPOSAL_COLORS`, so neighbours differ).
    Selected (it will be accepted): a thicker white outline and a fill in
    ``color`` (the current category's) at ``opacity``, like the candidate.
    """
    if selected:
        return mask_overlay(mask, color, fill_alpha=_alpha(opacity), edge_color=CANDIDATE_EDGE,
                            edge_width=SELECTED_EDGE_WIDTH)
    return mask_overlay(mask, edge, fill_alpha=0.0, edge_width=EDGE_WIDTH)


def previews(candidates, size: Tuple[int, int]) -> list[np.ndarray]:
    """Every candidate of a :class:`sam_core.Candidates` as an ``(h, w)`` bool mask at display ``size``.

    The resampling of :meth:`sam_core.Candidates.preview` (bilinear, pixel
    centres at half-integers, from the logits' valid region), done by OpenCV:
    ~3x faster than torch's for these shapes, and equal but for the odd pixel
    whose logit rounds to the other side of the threshold.
    """
    return [preview(candidates, i, size) for i in range(len(candidates.valid_low_res_logits))]


def preview(candidates, index: int, size: Tuple[int, int]) -> np.ndarray:
    """Candidate ``index`` of :func:`previews` alone."""
    import cv2

    h, w = size
    logits = np.ascontiguousarray(candidates.valid_low_res_logits[index])
    return cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR) > candidates.mask_threshold


#: The pyramid of a large image stops at this longest side.
PYRAMID_MIN_SIDE = 1024


def pyramid(rgb: np.ndarray, min_side: int = PYRAMID_MIN_SIDE) -> list[np.ndarray]:
    """``rgb`` ``(H, W, 3)`` uint8, then halves of it (area averaging) while the longest side exceeds ``min_side``.

    The canvas draws the smallest level that still has a pixel per screen
    pixel: a zoomed-out 12 MP photo is then painted from a 1000 x 750 copy,
    not resampled from 12 million pixels on every repaint (~6 ms each), and
    without the aliasing of bilinear shrinking by more than two.
    """
    import cv2

    levels = [rgb]
    while max(levels[-1].shape[:2]) > min_side:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
    return levels


def downscale(rgb: np.ndarray, max_side: int = THUMB_SOURCE_SIDE) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> at most ``max_side`` on its longest side (area averaging), C-contiguous."""
    h, w = rgb.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return np.ascontiguousarray(rgb)
    import cv2

    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool -> ``size`` ``(h, w)`` bool (area-weighted: a pixel is set when half its area is)."""
    if tuple(mask.shape) == tuple(size):
        return mask
    import cv2

    h, w = size
    small = cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA)
    return small >= 128


def areas(masks: Sequence[np.ndarray], scale: float) -> list[int]:
    """Pixel counts of display-resolution masks, scaled to original pixels by ``scale`` (= orig pixels / preview pixel)."""
    return [int(round(m.sum() * scale)) for m in masks]


# ---------------------------------------------------------------------------
# heavy mask work, run on the decoder thread (pure functions)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MaskPatch:
    """A mask at overlay resolution, cut to its bounding box (plus a margin for the outline).

    ``mask`` is ``(h, w)`` bool; ``rect`` is ``(x, y, width, height)`` of the
    region it covers, in image pixels (scene units: pixel ``(c, r)`` covers
    ``[c, c+1) x [r, r+1)``). Overlays of small objects thus cost little
    memory whatever the image size.
    """

    mask: np.ndarray
    rect: Tuple[float, float, float, float]

    def contains(self, x: float, y: float) -> bool:
        """Whether image point ``(x, y)`` (pixel centres at integers) is inside the mask, judged on the patch."""
        rx, ry, rw, rh = self.rect
        if rw <= 0 or rh <= 0:
            return False
        ph, pw = self.mask.shape
        col = int(np.floor((x + 0.5 - rx) * pw / rw))
        row = int(np.floor((y + 0.5 - ry) * ph / rh))
        return 0 <= row < ph and 0 <= col < pw and bool(self.mask[row, col])


def mask_patch(small: np.ndarray, height: int, width: int, margin: int = 3) -> MaskPatch:
    """Cut an overlay-size mask of a ``height`` x ``width`` image to its content."""
    h, w = small.shape
    ys = np.flatnonzero(small.any(axis=1))
    xs = np.flatnonzero(small.any(axis=0))
    if len(xs) == 0:
        return MaskPatch(np.zeros((1, 1), bool), (0.0, 0.0, width / w, height / h))
    y0, y1 = max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)
    x0, x1 = max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)
    sx, sy = width / w, height / h
    return MaskPatch(np.ascontiguousarray(small[y0:y1, x0:x1]), (x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy))


def patch_of(mask: np.ndarray) -> MaskPatch:
    """Full-resolution ``(H, W)`` bool mask -> its overlay patch."""
    return mask_patch(grid_of(mask), *mask.shape)


@dataclass(frozen=True, eq=False)
class FinishedMask:
    """An accepted candidate: full-resolution mask, its compressed RLE, its overlay patch and image."""

    mask: np.ndarray
    rle: dict
    patch: MaskPatch
    overlay: QImage
    empty: bool


def finish_mask(mask: np.ndarray, color: Color, opacity: float = DEFAULT_OPACITY,
                patch: "MaskPatch | None" = None) -> FinishedMask:
    """A full-resolution ``(H, W)`` bool mask (any memory order) -> what an annotation needs (off the GUI thread).

    The RLE from :func:`annotator.data.coco.encode_mask` (a Fortran-ordered
    mask skips its transpose: 14 ms less on 12 MP); the overlay patch from
    :func:`patch_of` unless ``patch`` is given; the overlay drawn at ``opacity``.
    """
    from annotator.data.coco import encode_mask

    patch = patch if patch is not None else patch_of(mask)
    overlay = annotation_overlay(patch.mask, color, opacity=opacity)
    return FinishedMask(mask, encode_mask(mask), patch, overlay, not mask.any())


# ---------------------------------------------------------------------------
# overlay grids of masks being edited: updated where a stroke changed them
# ---------------------------------------------------------------------------


def grid_size(height: int, width: int) -> Tuple[int, int]:
    """``(h, w)`` of the overlay grid of a ``height`` x ``width`` image: the size :func:`patch_of` renders at."""
    return overlay_size(height, width, 1.0)


def grid_of(mask: np.ndarray) -> np.ndarray:
    """The whole overlay grid ``(h, w)`` bool of a full-resolution mask (what :func:`patch_of` cuts from)."""
    h, w = mask.shape
    return resize_mask(np.ascontiguousarray(mask), grid_size(h, w))


def grid_from_patch(patch: MaskPatch, height: int, width: int) -> np.ndarray:
    """The overlay grid a patch of :func:`patch_of` was cut from (zeros outside the patch)."""
    gh, gw = grid_size(height, width)
    grid = np.zeros((gh, gw), bool)
    x, y, _, _ = patch.rect
    c0, r0 = int(round(x * gw / width)), int(round(y * gh / height))
    ph, pw = patch.mask.shape
    if patch.mask.any():
        grid[r0:r0 + ph, c0:c0 + pw] = patch.mask
    return grid


def refresh_grid(grid: np.ndarray, mask: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``grid`` (a copy) with the cells over mask rows ``y0:y1``, columns ``x0:x1`` recomputed from ``mask``.

    A cell is set when at least half of the mask pixels it covers are
    (:func:`resize_mask`'s area rule), computed exactly from a summed-area
    table of the block under those cells: cell edges fall between pixels at
    fractional positions, where the table is interpolated linearly (exact for
    pixels of constant value). Costs what the block costs, not the image.
    """
    out = grid.copy()
    if y0 >= y1 or x0 >= x1:
        return out
    h, w = mask.shape
    gh, gw = grid.shape
    sy, sx = h / gh, w / gw
    i0, i1 = int(y0 // sy), min(gh, int(np.ceil(y1 / sy)))
    j0, j1 = int(x0 // sx), min(gw, int(np.ceil(x1 / sx)))
    ra, rb = int(np.floor(i0 * sy)), min(h, int(np.ceil(i1 * sy)))
    ca, cb = int(np.floor(j0 * sx)), min(w, int(np.ceil(j1 * sx)))
    import cv2

    table = cv2.integral(np.ascontiguousarray(mask[ra:rb, ca:cb], dtype=np.uint8))  # (rows + 1, cols + 1) int32
    ye = np.minimum(np.arange(i0, i1 + 1) * sy, h) - ra
    xe = np.minimum(np.arange(j0, j1 + 1) * sx, w) - ca
    iy = np.minimum(np.floor(ye).astype(np.int64), rb - ra - 1)
    ix = np.minimum(np.floor(xe).astype(np.int64), cb - ca - 1)
    fy, fx = (ye - iy)[:, None], xe - ix
    rows = np.concatenate([iy, iy + 1])  # the table's rows next to each cell edge, then interpolated along x...
    near = table[rows][:, ix].astype(np.float64)
    far = table[rows][:, ix + 1].astype(np.float64)
    along_x = near + fx * (far - near)
    low, high = along_x[:len(iy)], along_x[len(iy):]
    at = low + fy * (high - low)  # ...and along y: the area inside the mask up to each cell corner
    sums = at[1:, 1:] - at[:-1, 1:] - at[1:, :-1] + at[:-1, :-1]
    areas = np.diff(ye)[:, None] * np.diff(xe)[None, :]
    out[i0:i1, j0:j1] = sums >= 0.5 * areas - 1e-9
    return out


def annotation_patches(items: Sequence[Tuple[int, dict, int, int, Color]], opacity: float = DEFAULT_OPACITY) -> dict:
    """``{id: (MaskPatch, colour, overlay QImage)}`` for ``(id, segmentation, height, width, colour)`` items."""
    from annotator.data.coco import decode_rle

    out = {}
    for ann_id, segmentation, h, w, color in items:
        patch = patch_of(decode_rle(segmentation, h, w))
        out[ann_id] = (patch, color, annotation_overlay(patch.mask, color, opacity=opacity))
    return out

