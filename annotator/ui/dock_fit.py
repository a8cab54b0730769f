"""The side docks give way to the canvas when the window is small.

QMainWindow shrinks the central widget first: in a 700x500 window the Images
dock kept 264 px and the Categories/Annotations docks 306 px, and the canvas
(the reason the window exists) was left ~100 px. :class:`DockFit` caps each
side's docks at :data:`SIDE_SHARE` of the window's width whenever the window
is resized (never below what their contents need), and gives them back the
width they had (the user's, if they dragged a dock's edge) when it grows.
"""

from __future__ import annotations

from typing import Dict

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow

#: The most of the window's width the docks of one side take after a resize (the canvas keeps the rest).
SIDE_SHARE = 0.22
#: The width of each side's docks with room to spare, until the user drags a dock's edge (px).
PREFERRED_WIDTH = 310

_SIDES = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)


class DockFit(QObject):
    """Caps the left and right docks of ``window`` at :data:`SIDE_SHARE` of its width (see the module notes).

    ``preferred``: each side's width with room to spare (:data:`PREFERRED_WIDTH`) until the user drags a
    dock's edge (a width this object did not set); then the user's width.
    """

    def __init__(self, window: QMainWindow, preferred: int = PREFERRED_WIDTH) -> None:
        super().__init__(window)
        self._window = window
        self._wanted: Dict[Qt.DockWidgetArea, int] = dict.fromkeys(_SIDES, preferred)
        self._set: Dict[Qt.DockWidgetArea, int] = {}  # the width this object last gave each side
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        # before the window lays itself out at the new size: one layout pass, no flicker, and no moment
        # at which the canvas and the candidate strip have the old docks' share
        if watched is self._window and event.type() == QEvent.Type.Resize:
            self.fit()
        return False

    def fit(self) -> None:
        """Resize the docks of each side to ``min(wanted, SIDE_SHARE * window width)``."""
        w = self._window
        cap = int(SIDE_SHARE * w.width())
        for side in _SIDES:
            docks = [d for d in w.findChildren(QDockWidget)
                     if d.isVisible() and not d.isFloating() and w.dockWidgetArea(d) == side]
            if not docks:
                continue
            width = max(d.width() for d in docks)
            if side in self._set and self._set[side] != width:  # not the width we gave it: the user's drag
                self._wanted[side] = width
            target = max(min(self._wanted[side], cap), max(d.minimumSizeHint().width() for d in docks))
            self._set[side] = target
            if target != width:
                w.resizeDocks(docks[:1], [target], Qt.Orientation.Horizontal)
