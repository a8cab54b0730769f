"""Colours that mean something else never look like a category (issue 16, defect 6).

Distances are CIEDE2000 (``skimage.color.deltaE_ciede2000``, an
implementation independent of ours), on the real colour values the canvas
draws with.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from annotator import render
from annotator.data import palette
from annotator.data.document import Dataset
from annotator.session.picking import HOVER_EDGE

#: The palette's own colours are at least this far apart; anything reserved must be farther from all of them.
PALETTE_SPACING = 16.0
RESERVED_MARGIN = 20.0


def _lab(colors):
    return rgb2lab(np.asarray(colors, float).reshape(-1, 1, 3) / 255.0).reshape(-1, 3)


def _distances(a, b) -> np.ndarray:
    return deltaE_ciede2000(_lab(a)[:, None, :], _lab(b)[None, :, :])


def test_palette_colours_are_distinct():
    d = _distances(palette.CATEGORY_PALETTE, palette.CATEGORY_PALETTE)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= PALETTE_SPACING


def test_reserved_colours_are_far_from_every_palette_colour_and_from_each_other():
    reserved = [render.CANDIDATE_EDGE, render.SELECTED_EDGE, *palette.PROPOSAL_COLORS]
    assert set(palette.RESERVED) == set(reserved) and HOVER_EDGE in reserved
    d = _distances(reserved, palette.CATEGORY_PALETTE)
    worst = np.unravel_index(d.argmin(), d.shape)
    assert d.min() >= RESERVED_MARGIN, (reserved[worst[0]], palette.CATEGORY_PALETTE[worst[1]], d.min())
    between = _distances(reserved, reserved)
    np.fill_diagonal(between, np.inf)
    assert between.min() >= RESERVED_MARGIN


def test_a_new_category_never_gets_a_reserved_colour(tmp_path):
    ds = Dataset(tmp_path / "annotations.json")
    colors = [ds.add_category(f"c{i}").color for i in range(3 * len(palette.CATEGORY_PALETTE))]
    assert set(colors) == set(palette.CATEGORY_PALETTE)  # every colour the palette can produce, and only those
    assert _distances(palette.RESERVED, colors).min() >= RESERVED_MARGIN


def test_default_category_colour_is_from_the_palette():
    from annotator.session.document_edits import default_categories

    assert [name for name, _ in default_categories()] == ["object"]
    (_, color), = default_categories()
    assert tuple(color) in palette.CATEGORY_PALETTE


def _grid(n_x, n_y, size=10.0, gap=1.0):
    return [(x * (size + gap), y * (size + gap), size, size) for y in range(n_y) for x in range(n_x)]


@pytest.mark.parametrize("n_x,n_y", [(1, 1), (5, 1), (6, 6)])
def test_touching_proposals_get_different_colours(n_x, n_y):
    boxes = _grid(n_x, n_y)  # a lattice: each box touches its 4 (grown: 8) neighbours
    colors = palette.proposal_colors(boxes)
    assert all(0 <= c < len(palette.PROPOSAL_COLORS) for c in colors)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        if abs(a[0] - b[0]) <= 11 and abs(a[1] - b[1]) <= 11:
            assert colors[i] != colors[j], (a, b)


def test_far_apart_proposals_may_share_a_colour_and_nested_ones_do_not():
    colors = palette.proposal_colors([(0, 0, 100, 100), (10, 10, 20, 20), (500, 500, 10, 10)])
    assert colors[0] != colors[1] and colors[2] == 0


def test_proposal_outlines_use_their_colour():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    for color in palette.PROPOSAL_COLORS:
        image = render.proposal_overlay(mask, edge=color)
        assert image.edge_color == color and image.pixelColor(10, 10).alpha() == 0  # an outline, no fill
