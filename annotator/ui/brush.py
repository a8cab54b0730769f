"""The brush and the eraser on the canvas, and the switch between them and prompting.

:class:`BrushTool` is a :class:`~annotator.ui.canvas_tools.CanvasTool`: a
left drag paints (the eraser: erases) along the path the cursor takes, a
right drag does the opposite, Shift+drag draws a scribble meant as SAM
points, Ctrl+wheel changes the radius. While the stroke is drawn only its
path grows on the canvas (a path item, see
:class:`~annotator.ui.canvas_overlays.StrokePreview`); on release the canvas
emits ``strokeDrawn(points, radius, erase)`` with every position the cursor
took, in image pixels converted by :meth:`Canvas.image_at` (the one
conversion), and the session rasterises it exactly at full resolution. The
radius is in image pixels, so the outline drawn around the cursor shows what
a stroke will cover at any zoom.

:class:`EditTools` is the window's switch: ``B`` / ``E`` pick the brush or
the eraser (again: back to prompting), Esc goes back to prompting, ``[`` /
``]`` change the radius, which is kept in the preferences.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QCursor, QMouseEvent, QWheelEvent

from annotator.data.maskedit import MAX_RADIUS, MIN_RADIUS
from annotator.data.prompts import image_to_scene
from annotator.ui.canvas_overlays import StrokePreview
from annotator.ui.canvas_tools import CanvasTool, ToolHost
from annotator.ui.settings import DEFAULT_BRUSH_RADIUS

#: ``[`` and ``]`` change the radius by this factor; one wheel notch with Ctrl by :data:`WHEEL_STEP`.
KEY_STEP = 1.25
WHEEL_STEP = 1.1
DEFAULT_RADIUS = DEFAULT_BRUSH_RADIUS


def clamp_radius(radius: float) -> float:
    """``radius`` within the brush's bounds, to 0.1 px."""
    return float(min(MAX_RADIUS, max(MIN_RADIUS, round(float(radius), 1))))


class BrushTool(CanvasTool):
    """Paint (``erase`` False) or erase along drags; see the module notes.

    ``on_radius(radius)`` is called when the radius changes (Ctrl+wheel, or :meth:`set_radius`).
    """

    def __init__(self, canvas: ToolHost, radius: float = DEFAULT_RADIUS, erase: bool = False,
                 on_radius: Optional[Callable[[float], None]] = None) -> None:
        super().__init__(canvas)
        self.radius = clamp_radius(radius)
        self.erase = erase
        self._on_radius = on_radius
        self._points: List[Tuple[float, float]] = []
        self._button = Qt.MouseButton.NoButton
        self._stroke_erase = False
        self._scribble = False
        self._preview: Optional[StrokePreview] = None
        self._at: Optional[QPointF] = None  # viewport position of the cursor, for its outline

    @property
    def painting(self) -> bool:
        """A stroke is being drawn."""
        return self._button != Qt.MouseButton.NoButton

    def set_radius(self, radius: float) -> None:
        radius = clamp_radius(radius)
        if radius == self.radius:
            return
        self.radius = radius
        self._outline()
        if self._on_radius is not None:
            self._on_radius(radius)

    def press(self, event: QMouseEvent) -> bool:
        button = event.button()
        if button not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton) or self.canvas.image_size is None:
            return False
        self.cancel()
        self._button = button
        self._stroke_erase = self.erase != (button == Qt.MouseButton.RightButton)
        self._scribble = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        self._at = event.position()
        x, y = self.canvas.image_at(event.position())
        self._points = [(x, y)]
        self._preview = self.canvas.overlays.begin_stroke(QPointF(*image_to_scene(x, y)), self.radius,
                                                          self._stroke_erase)
        self._outline()
        return True

    def move(self, event: QMouseEvent) -> bool:
        self._at = event.position()
        self._outline()
        if not self.painting:
            return False  # (the canvas reports the cursor position)
        x, y = self.canvas.image_at(event.position())
        if (x, y) != self._points[-1]:
            self._points.append((x, y))
            self._preview.add(QPointF(*image_to_scene(x, y)))
        return True

    def release(self, event: QMouseEvent) -> bool:
        if event.button() != self._button or not self.painting:
            return False
        points, preview = self._points, self._preview
        self._button, self._points, self._preview = Qt.MouseButton.NoButton, [], None
        if self._scribble:
            preview.remove()
            self.canvas.scribbleDrawn.emit(points, self.radius, self._stroke_erase)
        else:
            self.canvas.overlays.stroke_finished(preview)  # it stays until the result is drawn
            self.canvas.strokeDrawn.emit(points, self.radius, self._stroke_erase)
        return True

    def wheel(self, event: QWheelEvent) -> bool:
        if not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False
        notches = (event.angleDelta().y() or event.angleDelta().x()) / 120.0
        self.set_radius(self.radius * WHEEL_STEP ** notches)
        return True

    def activate(self) -> None:
        pos = self.canvas.viewport().mapFromGlobal(QCursor.pos())
        self._at = QPointF(pos) if self.canvas.viewport().rect().contains(pos) else None
        self._outline()

    def leave(self) -> None:
        self._at = None
        self._outline()

    def cancel(self) -> None:
        """Drop a stroke in progress (nothing is emitted) and hide the outline."""
        if self._preview is not None:
            self._preview.remove()
        self._button, self._points, self._preview = Qt.MouseButton.NoButton, [], None
        self._at = None
        self._outline()

    def _outline(self) -> None:
        if self._at is None or self.canvas.image_size is None:
            self.canvas.overlays.show_brush(None)
            return
        self.canvas.overlays.show_brush(self.canvas.scene_at(self._at), self.radius)


class EditTools(QObject):
    """Which tool the canvas uses: prompting, the brush or the eraser (see the module notes).

    ``settings`` keeps the radius (``brush_radius``); ``session`` is told when
    painting starts (so it prepares the mask to paint on).
    """

    modeChanged = Signal(str)  # "prompt", "brush" or "eraser"

    def __init__(self, canvas, settings, session, status: Callable[[str, int], None],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.settings = settings
        self.session = session
        self._status = status
        self.prompt_tool = canvas.tool
        self.brush = BrushTool(canvas, settings.brush_radius, on_radius=self._radius_changed)
        session.annotationsChanged.connect(self._prepare)

    @property
    def mode(self) -> str:
        if self.canvas.tool is self.brush:
            return "eraser" if self.brush.erase else "brush"
        return "prompt"

    def toggle(self, erase: bool) -> None:
        """B (``erase`` False) / E: take the brush / eraser; the same key again goes back to prompting."""
        if self.mode == ("eraser" if erase else "brush"):
            self.use_prompt()
            return
        if self.session.everything.reviewing:
            self._status("Accept or reject the proposals first (Enter, Esc)", 3000)
            return
        why = self.session.images.unavailable()
        if why:  # nothing to paint on (no folder, an image that cannot be used, or one still loading)
            self._status(why, 5000)
            return
        self.brush.erase = erase
        self.canvas.set_tool(self.brush)
        self.modeChanged.emit(self.mode)
        self._prepare()
        what = "Eraser" if erase else "Brush"
        self._status(f"{what} ({self.brush.radius:g} px) on {self._target_text()} · [ ] radius · "
                     f"right drag: {'paint' if erase else 'erase'} · Shift+drag: SAM points · "
                     f"{'E' if erase else 'B'} or Esc: back to prompting", 6000)

    def use_prompt(self) -> None:
        if self.canvas.tool is not self.prompt_tool:
            self.canvas.set_tool(self.prompt_tool)
            self.modeChanged.emit(self.mode)

    def escape(self) -> bool:
        """Esc: back to prompting from the brush or eraser (``True``), else ``False`` (Esc clears the prompt)."""
        if self.mode == "prompt":
            return False
        self.use_prompt()
        return True

    def grow(self) -> None:
        self.brush.set_radius(self.brush.radius * KEY_STEP)

    def shrink(self) -> None:
        self.brush.set_radius(self.brush.radius / KEY_STEP)

    def _radius_changed(self, radius: float) -> None:
        self.settings.brush_radius = radius
        self._status(f"Brush radius {radius:g} px", 1500)

    def _target_text(self) -> str:
        editing = self.session.editing
        ann = editing.target()
        if ann is not None:
            return f"annotation #{ann}"
        if editing.refining is not None:
            return f"annotation #{editing.refining} being refined"
        return "the candidate" if not self.session.prompt.empty or editing.has_draft() else "a new mask"

    def _prepare(self) -> None:
        if self.mode != "prompt":
            self.session.editing.prepare()
