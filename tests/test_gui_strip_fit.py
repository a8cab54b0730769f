"""The candidate strip in a small window: all three candidates, picture and text (key, IoU, area), stay visible.

In a window asked for 700 x 500 (it is as small as its docks allow, about
880 wide) each entry was 121 px wide for a 120 px picture beside its text:
the key, IoU and area were cut off. The strip now shrinks the pictures, and
puts the text under them when that leaves a larger picture. Fake predictor.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from qt_fixtures import FakePredictor, fake_info

from annotator.ui.candidate_strip import MIN_THUMB, THUMB

pytestmark = pytest.mark.gui


def _show_candidates(qtbot, w):
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    s.add_point(256, 200, 1)
    qtbot.waitUntil(lambda: all(not b.isHidden() for b in w.strip.buttons), timeout=30_000)


def _fits(qtbot, w) -> int:
    """Every entry is whole inside the strip with room for its picture and text; returns the picture's side."""
    strip = w.strip
    qtbot.waitUntil(lambda: all(b.width() >= b.sizeHint().width() and b.height() >= b.sizeHint().height()
                                for b in strip.buttons), timeout=5_000)  # (the layout settles over a few passes)
    for b in strip.buttons:
        assert b.isVisible() and strip.rect().contains(b.geometry()), (b.objectName(), b.geometry(), strip.rect())
        hint = b.sizeHint()
        assert hint.width() <= b.width() and hint.height() <= b.height(), (b.objectName(), hint, b.size())
        assert b.text().startswith(f"Key {strip.buttons.index(b) + 1}\n")
    assert not QRect(strip.mapTo(w, strip.rect().topLeft()), strip.size()).intersects(
        QRect(w.statusBar().mapTo(w, w.statusBar().rect().topLeft()), w.statusBar().size()))
    sides = {b.iconSize().width() for b in strip.buttons}
    assert len(sides) == 1
    return sides.pop()


def test_three_candidates_fit_a_small_window_and_grow_back(qtbot, make_window, image_folder, tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    _show_candidates(qtbot, w)
    w.resize(700, 500)
    qtbot.waitUntil(lambda: w.width() < 1000, timeout=5_000)
    side = _fits(qtbot, w)
    assert MIN_THUMB <= side < THUMB  # smaller, still a picture worth looking at
    w.resize(1400, 900)
    qtbot.waitUntil(lambda: w.strip.buttons[0].iconSize().width() == THUMB, timeout=5_000)
    assert _fits(qtbot, w) == THUMB
