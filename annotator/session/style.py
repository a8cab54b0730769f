"""How overlays are drawn: the one owner of the fill opacity.

Candidates, accepted annotations, selected proposals and freshly accepted
masks are all filled at :attr:`OverlayStyle.opacity` (the user's
preference). Every part that draws reads it here and listens to
:attr:`OverlayStyle.changed`; none keeps its own copy.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from annotator import render


class OverlayStyle(QObject):
    """The fill opacity (0..1) of every overlay; ``changed(opacity)`` when it changes."""

    changed = Signal(float)

    def __init__(self, opacity: float = render.DEFAULT_OPACITY, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._opacity = _clamp(opacity)

    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> bool:
        """Clamp to 0..1 and take it; returns whether it changed (``changed`` was emitted)."""
        opacity = _clamp(opacity)
        if opacity == self._opacity:
            return False
        self._opacity = opacity
        self.changed.emit(opacity)
        return True


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
