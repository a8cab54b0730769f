"""Brush, eraser and cleanup on full-resolution masks (annotator.data.maskedit)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator.data import maskedit
from annotator.data.maskedit import Stroke


def _expected_cover(points, radius, h, w):
    """Brute force: pixel centre (c, r) within radius of the polyline."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.asarray(points, np.float64)
    segs = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:]))
    best = np.full((h, w), np.inf)
    for a, b in segs:
        d = b - a
        dd = d @ d
        t = np.zeros_like(xs) if dd == 0 else np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / dd, 0, 1)
        best = np.minimum(best, np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1]))
    return best <= radius


@settings(max_examples=150, deadline=None)
@given(
    pts=st.lists(st.tuples(st.floats(-20, 80), st.floats(-20, 60)), min_size=1, max_size=6),
    radius=st.floats(0.5, 12),
    erase=st.booleans(),
)
def test_a_stroke_covers_exactly_the_pixel_centres_within_its_radius(pts, radius, erase):
    h, w = 40, 60
    rng = np.random.default_rng(len(pts))
    mask = rng.random((h, w)) < 0.4
    stroke = Stroke.make(pts, radius, erase)
    expected_cover = _expected_cover(pts, radius, h, w)
    delta = maskedit.paint(mask, stroke)
    out = delta.apply(mask)
    expected = mask & ~expected_cover if erase else mask | expected_cover
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(delta.revert(out), mask)  # undo is exact
    assert mask.sum() == np.asarray(mask).sum()  # the input is untouched


def test_a_fast_stroke_leaves_no_gaps_and_a_stroke_off_the_image_is_clipped():
    h, w = 100, 200
    # two mouse events 150 px apart (a fast move seen at 20 % zoom): one solid band between them
    delta = maskedit.paint(np.zeros((h, w), bool), Stroke.make([(20, 50), (170, 50)], 3))
    out = delta.apply(np.zeros((h, w), bool))
    assert out[47:54, 20:171].all() and not out[:46].any() and not out[55:].any()
    off = maskedit.paint(np.zeros((h, w), bool), Stroke.make([(-50, -50), (-10, -10)], 5))
    assert off.empty
    partly = maskedit.paint(np.zeros((h, w), bool), Stroke.make([(-30, 10), (30, 10)], 4)).apply(np.zeros((h, w), bool))
    assert partly[6:15, 0:35].any() and partly.sum() == _expected_cover([(-30, 10), (30, 10)], 4, h, w).sum()


def test_a_long_stroke_on_a_12mp_mask_touches_only_its_band():
    h, w = 3000, 4000
    mask = np.zeros((h, w), bool)
    pts = [(100 + 37 * i, 1500 + 400 * np.sin(i / 9)) for i in range(100)]
    delta = maskedit.paint(mask, Stroke.make(pts, 10))
    # the delta holds the stroke's bounding box only, never the whole image
    assert delta.before.size < h * w / 2
    out = delta.apply(mask)
    assert out[int(pts[50][1]), int(pts[50][0])]


@pytest.mark.parametrize("bad", [[], [(0, float("nan"))], [(0, float("inf"))]])
def test_bad_strokes_are_refused(bad):
    with pytest.raises(ValueError):
        Stroke.make(bad, 3)


@pytest.mark.parametrize("radius", [0, -1, float("nan"), float("inf"), "3"])
def test_bad_radii_are_refused(radius):
    with pytest.raises(ValueError, match="radius"):
        Stroke.make([(1, 1)], radius)


def test_fill_holes_fills_only_enclosed_background():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5:8, 5:8] = False  # a hole
    m[0:4, 15:20] = True
    m[0:2, 17] = False  # a notch open to the border: not a hole
    d = maskedit.fill_holes(m)
    out = d.apply(m)
    assert out[5:8, 5:8].all()
    assert not out[0:2, 17].any()
    assert (out ^ m).sum() == 9
    np.testing.assert_array_equal(d.revert(out), m)


def test_remove_islands_and_keep_largest():
    m = np.zeros((30, 30), bool)
    m[5:20, 5:20] = True  # 225 px
    m[25:27, 25:27] = True  # 4 px speck
    m[0:4, 25:29] = True  # 16 px island
    assert maskedit.remove_islands(m, 5).apply(m).sum() == 225 + 16
    assert maskedit.remove_islands(m, 17).apply(m).sum() == 225
    assert maskedit.remove_islands(m, 1).empty
    out = maskedit.keep_largest(m).apply(m)
    assert out.sum() == 225 and out[10, 10]
    assert maskedit.keep_largest(np.zeros((5, 5), bool)).empty
    with pytest.raises(ValueError):
        maskedit.remove_islands(m, 0)


def test_stroke_prompts_are_spaced_along_the_path():
    pts, labels = maskedit.stroke_prompts(Stroke.make([(0, 0), (10, 0), (10, 10)], 2), 4)
    np.testing.assert_allclose(pts, [(0, 0), (4, 0), (8, 0), (10, 2), (10, 6), (10, 10)], atol=1e-9)
    assert labels.tolist() == [1] * 6
    _, neg = maskedit.stroke_prompts(Stroke.make([(5, 5)], 2, erase=True), 4)
    assert neg.tolist() == [0]
