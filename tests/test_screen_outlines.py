"""Outlines keep their width on screen at every zoom, and fills stay visible (issue 16, defect 7).

Rendered for real: a 4000 x 3000 image in the canvas, an annotation's
overlay as the window draws it, the viewport grabbed and the outline's width
counted in screen pixels along a scanline.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from annotator import render
from annotator.ui.canvas import Canvas

pytestmark = pytest.mark.gui

GREEN = (60, 180, 75)  # the palette's second colour
GREY = 110


def _grab(canvas) -> np.ndarray:
    img = canvas.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(bytes(img.constBits()), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def _canvas(qtbot, selected=False):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(1100, 800)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(render.rgb_image(np.full((3000, 4000, 3), GREY, np.uint8)))
    mask = np.zeros((3000, 4000), bool)
    mask[1000:1800, 1000:2400] = True
    patch = render.patch_of(mask)
    overlay = render.annotation_overlay(patch.mask, GREEN, selected=selected)
    canvas.set_annotation_overlays([(1, overlay, patch.rect)])
    return canvas


def _zoom(qtbot, canvas, scale):
    canvas.zoom_by(scale / canvas.view_scale())
    assert canvas.view_scale() == pytest.approx(scale, rel=1e-6)
    canvas.centerOn(1000, 1400)  # the middle of the mask's left edge
    pos = canvas.viewport_pos(1000, 1400)
    assert canvas.viewport().rect().adjusted(40, 40, -40, -40).contains(pos.toPoint())
    return pos


def _outline_run(row: np.ndarray, x: int, color) -> np.ndarray:
    """Indices of the pixels of ``row`` near ``x`` (the mask's edge) at least half-way from the background to ``color``."""
    x0 = max(0, x - 12)
    near = row[x0: x + 12].astype(float)
    grey = np.array([GREY] * 3, float)
    target = np.array(color, float)
    t = ((near - grey) @ (target - grey)) / ((target - grey) @ (target - grey))  # 1: exactly the colour
    return x0 + np.flatnonzero(t > 0.5)


def _outline_width(row: np.ndarray, x: int, color) -> int:
    run = _outline_run(row, x, color)
    assert len(run) == 0 or run[-1] - run[0] + 1 == len(run), "one run of outline pixels"
    return len(run)


@pytest.mark.parametrize("scale", [0.21, 0.5, 1.0, 3.0])
def test_outline_has_the_same_screen_width_at_every_zoom(qtbot, scale):
    canvas = _canvas(qtbot)
    pos = _zoom(qtbot, canvas, scale)
    shot = _grab(canvas)
    x, y = int(pos.x()), int(pos.y())
    width = _outline_width(shot[y], x, GREEN)
    assert 2 <= width <= 3, f"outline {width} px wide at zoom {scale}"
    # a dark halo on both sides, so the outline shows on backgrounds of its own colour
    run = _outline_run(shot[y], x, GREEN)
    row = shot[y].astype(float).mean(axis=1)
    assert row[run[0] - 1] < row[run[0] - 6] - 15 and row[run[-1] + 1] < row[run[-1] + 6] - 15


def test_selected_outline_is_wider_and_in_the_reserved_colour_at_21_percent(qtbot):
    canvas = _canvas(qtbot, selected=True)
    pos = _zoom(qtbot, canvas, 0.21)
    shot = _grab(canvas)
    assert 3 <= _outline_width(shot[int(pos.y())], int(pos.x()), render.SELECTED_EDGE) <= 4


def test_fill_stays_visible_when_zoomed_out(qtbot):
    canvas = _canvas(qtbot)
    pos = _zoom(qtbot, canvas, 0.21)
    shot = _grab(canvas)
    inside = shot[int(pos.y()), int(pos.x()) + 30].astype(int)  # 30 screen px inside the mask, off the outline
    outside = shot[int(pos.y()), int(pos.x()) - 30].astype(int)
    assert tuple(outside) == (GREY, GREY, GREY)
    # tinted towards the category colour by the fill's opacity (0.45 x 0.8 = 0.36 by default)
    assert inside[1] - GREY >= 0.3 * (GREEN[1] - GREY) and GREY - inside[0] >= 0.3 * (GREY - GREEN[0])
