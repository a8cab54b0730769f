"""The main window's first size: the size it prefers, but never larger than the screen it opens on.

A fixed 1400x900 opened past the screen's edges on a 1366x768 laptop and on HiDPI screens
(``QT_SCALE_FACTOR=2`` on a 1400x900 screen: 2800x1800 device pixels), with the Categories and
Annotations docks out of sight; a window manager does not always bring it back.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QWidget

#: Room left for the window's frame and title bar (logical pixels), which the window manager adds.
FRAME_ROOM = QSize(16, 48)


def fit_to_screen(widget: QWidget, preferred: QSize) -> QSize:
    """``preferred``, shrunk to the available area of ``widget``'s screen (less the frame); not below its minimum."""
    screen = widget.screen()
    if screen is None:
        return QSize(preferred)
    room = screen.availableGeometry().size() - FRAME_ROOM
    size = preferred.boundedTo(room)
    return size.expandedTo(widget.minimumSizeHint())


def resize_to_fit(widget: QWidget, preferred: QSize) -> None:
    """Resize ``widget`` to :func:`fit_to_screen` and keep it on that screen's available area."""
    size = fit_to_screen(widget, preferred)
    widget.resize(size)
    screen = widget.screen()
    if screen is not None:
        area = screen.availableGeometry()
        if not area.contains(widget.geometry()):
            widget.move(area.topLeft())
