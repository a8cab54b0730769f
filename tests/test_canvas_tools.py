"""Canvas input goes through tools: the pan tool first, then the active tool, which can be swapped."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from annotator.ui.canvas import Canvas
from annotator.ui.canvas_tools import CanvasTool, PromptTool

pytestmark = pytest.mark.gui


class Recorder(CanvasTool):
    """A tool that takes left presses/releases and the wheel, and records them in image coordinates."""

    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self.events = []
        self.cancelled = 0

    def press(self, event):
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        self.events.append(("press", *self.canvas.image_at(event.position())))
        return True

    def release(self, event):
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        self.events.append(("release", *self.canvas.image_at(event.position())))
        return True

    def wheel(self, event):
        self.events.append(("wheel",))
        return True

    def cancel(self):
        self.cancelled += 1


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    img = np.full((300, 400, 3), 128, np.uint8)
    c.set_image(QImage(img.data, 400, 300, 1200, QImage.Format.Format_RGB888).copy())
    c.show()
    qtbot.waitExposed(c)
    c.zoom_by(3)
    return c


def _mouse(c, kind, pos, button=Qt.MouseButton.LeftButton):
    buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
    ev = QMouseEvent(kind, QPointF(*pos), QPointF(*pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(c.viewport(), ev)


def _click(c, pos, button=Qt.MouseButton.LeftButton):
    _mouse(c, QEvent.Type.MouseButtonPress, pos, button)
    _mouse(c, QEvent.Type.MouseButtonRelease, pos, button)


def test_the_active_tool_gets_clicks_and_the_wheel_instead_of_the_prompt(qtbot, canvas):
    c = canvas
    points = []
    c.pointClicked.connect(lambda x, y, label: points.append((x, y, label)))
    assert isinstance(c.tool, PromptTool)
    rec = Recorder(c)
    c.set_tool(rec)
    assert c.viewport().cursor().shape() == Qt.CursorShape.PointingHandCursor
    _click(c, (200, 150))
    x, y = c.image_at(QPointF(200, 150))
    assert rec.events == [("press", x, y), ("release", x, y)]
    assert points == []
    scale = c.view_scale()
    wheel = QWheelEvent(QPointF(200, 150), QPointF(200, 150), QPoint(), QPoint(0, 120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(c.viewport(), wheel)
    assert rec.events[-1] == ("wheel",) and c.view_scale() == scale  # the tool took it: no zoom

    c.set_tool(PromptTool(c))
    assert rec.cancelled == 1  # the tool switched away from drops its gesture
    _click(c, (200, 150))
    assert points == [(x, y, 1)] and len(rec.events) == 3


def test_panning_comes_before_the_active_tool(qtbot, canvas):
    c = canvas
    rec = Recorder(c)
    c.set_tool(rec)
    h0 = c.horizontalScrollBar().value()
    QApplication.sendEvent(c, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier))
    _mouse(c, QEvent.Type.MouseButtonPress, (200, 150))
    _mouse(c, QEvent.Type.MouseMove, (120, 150))
    _mouse(c, QEvent.Type.MouseButtonRelease, (120, 150))
    assert c.horizontalScrollBar().value() != h0
    assert rec.events == []  # Space+drag panned; the tool saw nothing
