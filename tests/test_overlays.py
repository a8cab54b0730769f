"""Rendering helpers of the decoder thread (annotator/render.py): outlines, overlays, previews."""

from __future__ import annotations

import numpy as np
import pytest

from annotator import render
from sam_core.types import Candidates


def _outline_by_definition(mask: np.ndarray, width: int) -> np.ndarray:
    """Mask pixels within ``width`` 4-neighbour steps of a non-mask pixel or of the image's edge."""
    inner = mask.copy()
    for _ in range(width):
        grown = np.pad(inner, 1, constant_values=False)
        inner = inner & grown[:-2, 1:-1] & grown[2:, 1:-1] & grown[1:-1, :-2] & grown[1:-1, 2:]
    return mask & ~inner


@pytest.mark.parametrize("shape", [(40, 50), (1, 9), (9, 1), (1, 1), (3, 3)])
@pytest.mark.parametrize("width", [1, 2, 3])
def test_outline_is_the_inner_band(shape, width):
    rng = np.random.default_rng(width)
    for density in (0.3, 0.7, 1.0):
        mask = rng.random(shape) < density
        np.testing.assert_array_equal(render.outline(mask, width), _outline_by_definition(mask, width))


def test_outline_of_a_filled_square_is_a_ring():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    band = render.outline(mask, 2)
    assert band.sum() == 100 - 36 and not band[7:13, 7:13].any() and band[5, 5] and band[6, 9]


def test_mask_overlay_pixels_are_the_fill_and_the_outline_travels_as_a_path():
    mask = np.zeros((12, 16), bool)
    mask[2:10, 3:13] = True
    mask[5:7, 7:9] = False  # a hole
    img = render.mask_overlay(mask, (200, 0, 0), fill_alpha=0.5, edge_color=(255, 255, 255), edge_width=3)
    assert (img.width(), img.height()) == (16, 12)
    inside, edge, outside = img.pixelColor(7, 3), img.pixelColor(3, 5), img.pixelColor(0, 0)
    assert outside.alpha() == 0 and img.pixelColor(7, 5).alpha() == 0
    for px in (inside, edge):  # the outline is not in the pixels (it would shrink with the zoom)
        assert px.alpha() == 128 and px.red() > 190 and px.green() == 0
    assert img.edge_color == (255, 255, 255) and img.edge_width == 3
    polygons = img.outline.toSubpathPolygons()
    assert len(polygons) == 2  # the outer boundary and the hole's
    outer = max(polygons, key=lambda p: p.boundingRect().width())
    r = outer.boundingRect()  # through the centres of the boundary pixels
    assert (r.left(), r.top(), r.right(), r.bottom()) == (3.5, 2.5, 12.5, 9.5)
    assert render.mask_overlay(np.zeros((4, 4), bool), (1, 2, 3)).outline.isEmpty()


def test_previews_agree_with_the_engines_preview():
    rng = np.random.default_rng(0)
    smooth = rng.normal(size=(3, 32, 32)).astype(np.float32)
    logits = np.stack([np.kron(s, np.ones((8, 8), np.float32)) for s in smooth])  # blobs, not noise
    cands = Candidates(np.array([0.9, 0.8, 0.7], np.float32), logits, original_size=(3000, 4000),
                       input_size=(768, 1024))
    assert cands.valid_low_res_logits.shape == (3, 192, 256)
    for size in [(810, 1080), (96, 128), (3000, 4000)]:
        ours = render.previews(cands, size)
        engine = cands.previews(size)
        assert engine.shape == (3, *size)
        for i in range(3):
            assert ours[i].shape == size and ours[i].dtype == bool
            np.testing.assert_array_equal(engine[i], cands.preview(i, size))
            assert (ours[i] != engine[i]).mean() < 1e-4  # rounding at the threshold only
            assert 0.2 < ours[i].mean() < 0.8


def test_pyramid_halves_down_to_the_minimum_side():
    img = np.zeros((3000, 4001, 3), np.uint8)
    img[:, 2000:] = 200
    levels = render.pyramid(img, min_side=1024)
    assert [lv.shape for lv in levels] == [(3000, 4001, 3), (1500, 2001, 3), (750, 1001, 3)]
    assert levels[0] is img
    assert levels[2][:, :490].max() == 0 and levels[2][:, 510:].min() == 200  # area averaging keeps the edge
    small = np.zeros((600, 800, 3), np.uint8)
    assert len(render.pyramid(small, min_side=1024)) == 1


def test_in_fresh_thread_returns_raises_and_leaves_no_thread():
    import threading

    from annotator.workers.base import in_fresh_thread

    # Count only the threads this test made: other tests' threads may still be ending (a process-wide
    # count went 7 -> 6 under a full run). Each job records the thread it ran on; all must be gone after.
    ran_on = []

    def job(a, b=0):
        ran_on.append(threading.current_thread())
        return a + b

    def failing():
        ran_on.append(threading.current_thread())
        return {}["boom"]

    assert in_fresh_thread(job, 2, b=3) == 5
    with pytest.raises(KeyError, match="boom"):
        in_fresh_thread(failing)
    assert len(ran_on) == 2
    assert all(t is not threading.current_thread() for t in ran_on)
    assert ran_on[0] is not ran_on[1]
    assert not any(t.is_alive() for t in ran_on)


@pytest.mark.parametrize("scale", [0.5, 0.9975, 1.0, 2.0])
def test_outline_at_a_scale_stays_within_the_screen_error(scale):
    """The outline drawn at ``scale`` screen pixels per overlay pixel deviates from the mask's contour by at most
    :data:`render.OUTLINE_ERROR_PX` screen pixels (Douglas-Peucker keeps a subset of the contour's points; zoomed
    in further, the full-detail outline's tolerance), and
    one seen at up to one screen pixel per overlay pixel (a candidate's, rendered at the view's size) is coarser
    than the full-detail outline."""
    import cv2

    yy, xx = np.mgrid[:300, :400]
    mask = (np.hypot(xx - 190.3, (yy - 160.7) * 1.4) < 120) | (np.hypot(xx - 300.0, yy - 90.0) < 45)
    overlay = render.candidate_overlay(mask, (255, 196, 0))
    path = overlay.outline_at(scale)
    fine = overlay.path_within(render.FINE_TOLERANCE)
    polygons = [np.array([[p.x(), p.y()] for p in poly], np.float32) for poly in path.toSubpathPolygons()]
    contours = render.mask_contours(mask)
    assert len(polygons) == len(contours)
    worst = 0.0
    for contour in contours:
        pts = contour.reshape(-1, 2).astype(np.float32) + 0.5
        polygon = min(polygons, key=lambda q: abs(cv2.pointPolygonTest(q, tuple(map(float, pts[0])), True)))
        worst = max(worst, max(abs(cv2.pointPolygonTest(polygon, tuple(map(float, p)), True)) for p in pts))
    # (zoomed in past the full-detail outline's reach, its own tolerance is the bound)
    assert worst <= max(render.OUTLINE_ERROR_PX / scale, render.FINE_TOLERANCE) + 1e-6
    if scale <= 1.0:
        assert path.elementCount() < 0.7 * fine.elementCount()
    else:
        assert path.elementCount() == fine.elementCount()

