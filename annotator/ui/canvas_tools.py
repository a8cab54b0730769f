"""Canvas input: tools that turn mouse and key events into intents.

The canvas (:mod:`annotator.ui.canvas`) hands every mouse and key event first
to its :class:`PanTool` (always on: Space and middle-button panning, Space as
the accept key), then to its :class:`PickTool` (always on: Ctrl+click picks an
annotation, Ctrl held outlines it), then to its active tool
(:class:`PromptTool`: points and boxes; or the brush,
:class:`annotator.ui.brush.BrushTool`). A tool reports what the user meant through the canvas's signals,
in image coordinates converted by :meth:`Canvas.image_at` (the one place), and
draws its feedback through ``canvas.overlays``. Another mode (a brush, a
selection click) is another :class:`CanvasTool` passed to
:meth:`Canvas.set_tool`; neither the canvas's view code nor its drawing
changes for it.

Event positions are viewport positions (``QMouseEvent.position()``).
"""

from __future__ import annotations

from typing import Optional, Protocol, Tuple

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, SignalInstance
from PySide6.QtGui import QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

from annotator.data.prompts import inside
from annotator.ui.canvas_overlays import OverlayLayers

#: A press that moves further than this (screen pixels) becomes a box drag.
DRAG_THRESHOLD_PX = 5
#: A Space release waits this long for a Space press that would make it half of a key-autorepeat pair
#: (those come back to back, well under a millisecond apart) before it counts as the accept key.
SPACE_SETTLE_MS = 60


class ToolHost(Protocol):
    """What a tool uses of :class:`annotator.ui.canvas.Canvas` (named here so this module need not import it)."""

    overlays: OverlayLayers
    pointClicked: SignalInstance
    boxDrawn: SignalInstance
    spaceReleased: SignalInstance
    strokeDrawn: SignalInstance
    scribbleDrawn: SignalInstance
    pickClicked: SignalInstance
    pickHovered: SignalInstance

    @property
    def image_size(self) -> Optional[Tuple[int, int]]: ...
    @property
    def tool(self) -> "CanvasTool": ...
    def viewport(self) -> QWidget: ...
    def image_at(self, viewport_pos: QPointF) -> Tuple[float, float]: ...
    def scene_at(self, viewport_pos: QPointF) -> QPointF: ...
    def scroll_by(self, dx: float, dy: float) -> None: ...


class CanvasTool:
    """One way of turning input into intents. Each handler returns ``True`` when it used the event.

    ``cursor`` is the viewport cursor while the tool is active (and not panning).
    """

    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost) -> None:
        self.canvas = canvas

    def press(self, event: QMouseEvent) -> bool:
        return False

    def move(self, event: QMouseEvent) -> bool:
        return False

    def release(self, event: QMouseEvent) -> bool:
        return False

    def key_press(self, event: QKeyEvent) -> bool:
        return False

    def key_release(self, event: QKeyEvent) -> bool:
        return False

    def wheel(self, event: QWheelEvent) -> bool:
        """``False`` leaves the wheel to the canvas (zoom)."""
        return False

    def leave(self) -> None:
        """The mouse left the view."""

    def activate(self) -> None:
        """The tool was made the active one."""

    def cancel(self) -> None:
        """Drop a gesture in progress (focus lost, tool switched); emits nothing."""


class PanTool(CanvasTool):
    """Middle-drag or Space+left-drag pans; Space released without a pan in between emits ``spaceReleased``.

    A Space release counts only once no Space press follows it at once: key
    autorepeat sends release/press pairs back to back, on some platforms
    without the autorepeat flag, and an accept from one of those would create
    an annotation the user never asked for.
    """

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._pan_from: Optional[QPointF] = None
        self._pan_button = Qt.MouseButton.NoButton
        self._space_down = False
        self._space_used = False
        self._space_settle = QTimer(canvas)
        self._space_settle.setSingleShot(True)
        self._space_settle.setInterval(SPACE_SETTLE_MS)
        self._space_settle.timeout.connect(self._space_settled)

    @property
    def space_down(self) -> bool:
        """Space is held (pan mode)."""
        return self._space_down

    @property
    def settling(self) -> bool:
        """A Space release is waiting to be told apart from key autorepeat."""
        return self._space_settle.isActive()

    @property
    def panning(self) -> bool:
        return self._pan_from is not None

    def press(self, event: QMouseEvent) -> bool:
        if self._space_settle.isActive():  # Space went up just before this click: settle it first
            self._space_settle.stop()
            self._space_settled()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_down):
            self._pan_from, self._pan_button = event.position(), button
            self._space_used = self._space_used or self._space_down
            self.canvas.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return True
        return False

    def move(self, event: QMouseEvent) -> bool:
        if self._pan_from is None:
            return False
        pos = event.position()
        delta, self._pan_from = pos - self._pan_from, pos
        self.canvas.scroll_by(-delta.x(), -delta.y())
        return True

    def release(self, event: QMouseEvent) -> bool:
        if self._pan_from is None or event.button() != self._pan_button:
            return False
        self._pan_from = None
        self.canvas.viewport().setCursor(
            Qt.CursorShape.OpenHandCursor if self._space_down else self.canvas.tool.cursor
        )
        return True

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() != Qt.Key.Key_Space:
            return False
        if self._space_settle.isActive():  # the release just before was half of an autorepeat pair
            self._space_settle.stop()
        elif not event.isAutoRepeat() and not self._space_down:
            self._space_down, self._space_used = True, False
            self.canvas.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        return True

    def key_release(self, event: QKeyEvent) -> bool:
        if event.key() != Qt.Key.Key_Space:
            return False
        if not event.isAutoRepeat() and self._space_down:
            self._space_settle.start()  # decided in _space_settled, unless a press follows
        return True

    def _space_settled(self) -> None:
        """Space is really up: leave pan mode; accept if nothing was dragged while it was held."""
        if not self._space_down:
            return
        self._space_down = False
        if self._pan_from is None:
            self.canvas.viewport().setCursor(self.canvas.tool.cursor)
        if not self._space_used:
            self.canvas.spaceReleased.emit()

    def cancel(self) -> None:
        # A Space released elsewhere must not leave the canvas in pan mode, nor accept.
        self._space_settle.stop()
        self._space_down = False


class PickTool(CanvasTool):
    """Ctrl+left click emits ``pickClicked(x, y)`` (select the annotation under the cursor); while Ctrl is held,
    mouse moves emit ``pickHovered((x, y))`` and releasing Ctrl or leaving the view ``pickHovered(None)``."""

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._at: Optional[QPointF] = None  # last viewport position of the mouse
        self._hovering = False
        self._pressed = Qt.MouseButton.NoButton

    def press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not _ctrl(event):
            return False
        self._pressed = event.button()
        at = self._image_pos(event.position())
        if at is not None:
            self.canvas.pickClicked.emit(*at)
        return True

    def release(self, event: QMouseEvent) -> bool:
        if event.button() != self._pressed or self._pressed == Qt.MouseButton.NoButton:
            return False
        self._pressed = Qt.MouseButton.NoButton
        return True

    def move(self, event: QMouseEvent) -> bool:
        self._at = event.position()
        self._hover(_ctrl(event))
        return self._pressed != Qt.MouseButton.NoButton  # a Ctrl+click is not also the start of a drag

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Control:
            self._hover(True)
        return False

    def key_release(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Control:
            self._hover(False)
        return False

    def leave(self) -> None:
        self._at = None
        self._hover(False)

    def cancel(self) -> None:
        self._pressed = Qt.MouseButton.NoButton
        self._hover(False)

    def _hover(self, on: bool) -> None:
        at = self._image_pos(self._at) if on and self._at is not None else None
        if at is None and not self._hovering:
            return
        self._hovering = at is not None
        self.canvas.pickHovered.emit(at)

    def _image_pos(self, viewport_pos: QPointF) -> Optional[Tuple[float, float]]:
        size = self.canvas.image_size
        if size is None:
            return None
        x, y = self.canvas.image_at(viewport_pos)
        return (x, y) if inside(x, y, *size) else None


def _ctrl(event) -> bool:
    return bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)


class PromptTool(CanvasTool):
    """Left click: a foreground point; right or Shift+left click: a background point; left drag: a box.

    Emits the canvas's ``pointClicked(x, y, label)`` (only inside the image)
    and ``boxDrawn(x0, y0, x1, y1)`` (drag order, unclamped). During a
    segment-everything review the session reads the same intents as
    select/unselect.
    """

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._press: Optional[QPointF] = None
        self._press_shift = False
        self._dragging = False

    def press(self, event: QMouseEvent) -> bool:
        button = event.button()
        if button == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._press_shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._dragging = False
            return True
        if button == Qt.MouseButton.RightButton:
            self._emit_point(event.position(), 0)
            return True
        return False

    def move(self, event: QMouseEvent) -> bool:
        if self._press is None or self.canvas.image_size is None:
            return False
        pos = event.position()
        moved = pos - self._press
        if self._dragging or abs(moved.x()) + abs(moved.y()) > DRAG_THRESHOLD_PX:
            self._dragging = True
            self.canvas.overlays.show_drag(QRectF(self.canvas.scene_at(self._press), self.canvas.scene_at(pos)))
        return False  # the canvas still reports the cursor position

    def release(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or self._press is None:
            return False
        press, self._press = self._press, None
        if self._dragging:
            self._dragging = False
            self.canvas.overlays.hide_drag()
            x0, y0 = self.canvas.image_at(press)
            x1, y1 = self.canvas.image_at(event.position())
            if self.canvas.image_size is not None:
                self.canvas.boxDrawn.emit(x0, y0, x1, y1)
        else:
            self._emit_point(press, 0 if self._press_shift else 1)
        return True

    def cancel(self) -> None:
        self._press, self._dragging = None, False
        self.canvas.overlays.hide_drag()

    def _emit_point(self, viewport_pos: QPointF, label: int) -> None:
        size = self.canvas.image_size
        if size is None:
            return
        x, y = self.canvas.image_at(viewport_pos)
        if inside(x, y, *size):
            self.canvas.pointClicked.emit(x, y, label)
