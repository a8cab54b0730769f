"""The main window opens inside its screen (found under Xvfb with ``QT_SCALE_FACTOR=2``: a 2800x1800 window on a
1400x900 screen, the right-hand docks out of sight). The offscreen platform's screen is 800x800, smaller than
the 1400x900 the window prefers."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSize

from annotator.ui.screen_fit import fit_to_screen

pytestmark = pytest.mark.gui


def test_the_window_opens_within_a_small_screen(qtbot, tmp_path):
    from annotator.ui.main_window import MainWindow
    from annotator.ui.settings import Settings

    w = MainWindow(settings=Settings(tmp_path / "prefs.ini"))
    qtbot.addWidget(w)
    area = w.screen().availableGeometry()
    assert area.width() < 1400 or area.height() < 900, "the test needs a screen smaller than the preferred size"
    w.show()
    qtbot.waitExposed(w)
    assert area.contains(w.geometry()), (area, w.geometry())
    assert w.width() >= w.minimumSizeHint().width() and w.height() >= w.minimumSizeHint().height()
    w.close()


def test_fit_to_screen_keeps_a_size_that_fits(qtbot):
    from PySide6.QtWidgets import QWidget

    widget = QWidget()
    qtbot.addWidget(widget)
    area = widget.screen().availableGeometry().size()
    assert fit_to_screen(widget, QSize(300, 200)) == QSize(300, 200)
    big = fit_to_screen(widget, QSize(10_000, 10_000))
    assert big.width() < area.width() and big.height() < area.height()
