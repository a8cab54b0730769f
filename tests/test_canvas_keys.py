"""Space on the canvas: a real release without a drag accepts once; key autorepeat never accepts.

Holding a key makes the platform send release/press pairs back to back
(autorepeat), and on some platforms neither event carries the autorepeat flag.
A user who holds Space to pan must never get an annotation from that.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication

from annotator.ui.canvas import Canvas

pytestmark = pytest.mark.gui


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    img = np.full((300, 400, 3), 128, np.uint8)
    c.set_image(QImage(img.data, 400, 300, 1200, QImage.Format.Format_RGB888).copy())
    c.show()
    qtbot.waitExposed(c)
    c.zoom_by(3)  # something to pan
    accepts = []
    c.spaceReleased.connect(lambda: accepts.append(1))
    return c, accepts


def _key(c, kind, autorepeat):
    QApplication.sendEvent(c, QKeyEvent(kind, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, "", autorepeat))


def _settled(qtbot, c):
    """Every Space release has been decided (the settle timer is not running)."""
    qtbot.waitUntil(lambda: not c.pan.settling, timeout=2000)


def _drag(c, start, end):
    vp = c.viewport()
    for kind, pos, buttons in (
        (QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton),
        (QEvent.Type.MouseMove, end, Qt.MouseButton.LeftButton),
        (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton),
    ):
        ev = QMouseEvent(kind, QPointF(*pos), QPointF(*pos), Qt.MouseButton.LeftButton, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)


def test_a_tap_accepts_once(qtbot, canvas):
    c, accepts = canvas
    with qtbot.waitSignal(c.spaceReleased, timeout=2000):
        _key(c, QEvent.Type.KeyPress, False)
        _key(c, QEvent.Type.KeyRelease, False)
    _settled(qtbot, c)
    assert accepts == [1]


@pytest.mark.parametrize("flagged", [True, False], ids=["autorepeat-flag", "no-flag"])
def test_holding_space_to_pan_never_accepts(qtbot, canvas, flagged):
    c, accepts = canvas
    h0 = c.horizontalScrollBar().value()
    _key(c, QEvent.Type.KeyPress, False)
    for _ in range(15):  # about a second of autorepeat
        _key(c, QEvent.Type.KeyRelease, flagged)
        _key(c, QEvent.Type.KeyPress, flagged)
    _drag(c, (200, 150), (120, 150))
    for _ in range(5):
        _key(c, QEvent.Type.KeyRelease, flagged)
        _key(c, QEvent.Type.KeyPress, flagged)
    _key(c, QEvent.Type.KeyRelease, False)  # the real release, after a drag: no accept
    _settled(qtbot, c)
    assert accepts == []
    assert c.horizontalScrollBar().value() != h0  # it panned
    assert not c.pan.space_down  # and left pan mode


@pytest.mark.parametrize("flagged", [True, False], ids=["autorepeat-flag", "no-flag"])
def test_holding_space_without_a_drag_accepts_once_on_the_real_release(qtbot, canvas, flagged):
    c, accepts = canvas
    _key(c, QEvent.Type.KeyPress, False)
    for _ in range(15):
        _key(c, QEvent.Type.KeyRelease, flagged)
        _key(c, QEvent.Type.KeyPress, flagged)
    assert accepts == []
    with qtbot.waitSignal(c.spaceReleased, timeout=2000):
        _key(c, QEvent.Type.KeyRelease, False)
    _settled(qtbot, c)
    assert accepts == [1]


def test_a_click_right_after_a_tap_is_a_click_not_a_pan(qtbot, canvas):
    c, accepts = canvas
    points = []
    c.pointClicked.connect(lambda x, y, label: points.append((x, y, label)))
    _key(c, QEvent.Type.KeyPress, False)
    _key(c, QEvent.Type.KeyRelease, False)
    _drag(c, (200, 150), (200, 150))  # a click within the settle time
    assert accepts == [1]  # the release was settled (accepted) before the click was handled
    assert len(points) == 1
