"""Small windows (found driving the real window under Xvfb): at 700x500 the side docks kept their width (264 and
306 px), the canvas shrank to ~100 px and the Categories panel's "Load…" button was cut off. The docks now give
way to the canvas (at most a share of the width each side, never below what their contents need), the buttons
wrap onto more rows, and the docks get their width back when the window grows."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QDockWidget, QToolButton

from annotator.ui.dock_fit import PREFERRED_WIDTH

pytestmark = pytest.mark.gui


def _docks(w):
    return {d.windowTitle(): d for d in w.findChildren(QDockWidget)}


def _cut_off(w):
    """The Categories buttons not wholly inside their dock's visible area (or hidden)."""
    dock = _docks(w)["Categories"]
    inside = dock.rect()
    out = []
    for b in w.categories.findChildren(QToolButton):
        r = QRect(b.mapTo(dock, b.rect().topLeft()), b.size())
        if not b.isVisible() or not inside.contains(r) or r.width() < b.sizeHint().width():
            out.append(b.text())
    return out


@pytest.mark.parametrize("size, share", [((1000, 600), 0.5), ((800, 600), 0.5), ((700, 500), 0.45)])
def test_the_canvas_keeps_most_of_a_small_window_and_nothing_is_cut_off(qtbot, make_window, image_folder, size,
                                                                        share):
    w = make_window(image_folder)
    w.resize(*size)
    qtbot.waitUntil(lambda: w.width() == size[0] and w.canvas.width() >= share * size[0], timeout=5000)
    qtbot.waitUntil(lambda: not _cut_off(w), timeout=5000)
    for title in ("Images", "Categories", "Annotations"):
        dock = _docks(w)[title]
        assert dock.isVisible() and dock.width() >= dock.minimumSizeHint().width(), title
    assert w.images.summary.wordWrap() and w.annotations.empty_hint.wordWrap()


def test_the_docks_get_their_width_back_and_keep_the_users(qtbot, make_window, image_folder):
    w = make_window(image_folder)
    docks = _docks(w)
    w.resize(1600, 900)
    qtbot.waitUntil(lambda: docks["Images"].width() == PREFERRED_WIDTH, timeout=5000)
    qtbot.waitUntil(lambda: docks["Categories"].width() == PREFERRED_WIDTH, timeout=5000)
    assert not _cut_off(w)
    w.resize(800, 600)
    qtbot.waitUntil(lambda: docks["Categories"].width() < 200, timeout=5000)
    w.resize(1600, 900)
    qtbot.waitUntil(lambda: docks["Categories"].width() == PREFERRED_WIDTH, timeout=5000)

    # the user widens the image list: a later resize keeps their width while there is room for it
    w.resizeDocks([docks["Images"]], [360], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: docks["Images"].width() == 360, timeout=5000)
    w.resize(1800, 900)
    qtbot.waitUntil(lambda: w.width() == 1800, timeout=5000)
    qtbot.waitUntil(lambda: docks["Images"].width() == 360, timeout=5000)
