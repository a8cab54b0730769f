"""The image view: shows the image, the prompt, the current candidate and the annotations; turns input into intents.

Coordinates: the scene is the image, one scene unit per image pixel, pixel
``(col, row)`` covering ``[col, col + 1) x [row, row + 1)``. Signals carry
image coordinates as :mod:`annotator.data.prompts` defines them (pixel centres at
integers, x then y), converted in exactly one place (:meth:`Canvas.image_at`).
Mapping goes through the view's full-precision transform, so positions are
exact at every zoom level.

The canvas knows nothing about models or documents: it draws what it is given
and emits what the user did. It is three parts, so each can change alone:

* :class:`Canvas` (here): the view. The image pyramid, zoom, fit, scrolling,
  coordinate conversion, and the signals.
* :class:`~annotator.ui.canvas_overlays.OverlayLayers` (``canvas.overlays``):
  what is drawn over the image.
* :mod:`annotator.ui.canvas_tools`: what mouse and keys mean. ``canvas.pan``
  (Space / middle-drag panning, Space as the accept key) sees every event
  first, then ``canvas.pick`` (Ctrl+click selects an annotation), then the
  active tool (``canvas.tool``, by default a
  :class:`~annotator.ui.canvas_tools.PromptTool`; the brush is a
  :class:`~annotator.ui.brush.BrushTool`; :meth:`Canvas.set_tool` switches).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Union

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPixmap, QPixmapCache, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from annotator.data.prompts import PromptState, image_to_scene, scene_to_image
from annotator.ui.canvas_overlays import Overlay, OverlayLayers
from annotator.ui.canvas_tools import CanvasTool, PanTool, PickTool, PromptTool

MIN_SCALE, MAX_SCALE = 0.01, 40.0
#: Qt's pixmap cache limit while a canvas exists, in KiB (see Canvas.__init__).
PIXMAP_CACHE_KB = 160 * 1024
BACKGROUND = QColor(38, 40, 44)


class Canvas(QGraphicsView):
    """QGraphicsView over one image.

    Signals
    -------
    pointClicked(x, y, label):
        A click on the image; label 1 foreground (left click), 0 background
        (right click or Shift+left click).
    boxDrawn(x0, y0, x1, y1):
        A left drag; corners in image coordinates, in drag order (unclamped).
    spaceReleased():
        Space went up without a pan in between (the accept key).
    viewScaleChanged(scale):
        Screen pixels per image pixel after a zoom or fit.
    cursorMoved(x, y):
        The image position under the mouse (for the status bar).
    strokeDrawn(points, radius, erase):
        A brush (``erase`` False) or eraser stroke was released: ``points`` a
        list of ``(x, y)`` image positions in the order the cursor took them
        (unclamped: a stroke may leave the image), ``radius`` in image pixels.
    scribbleDrawn(points, radius, erase):
        The same drawn with Shift: meant as SAM points, not pixels.
    pickClicked(x, y):
        Ctrl+click on the image: select the annotation there.
    pickHovered(position):
        ``(x, y)`` under the mouse while Ctrl is held, or ``None``.
    visibleRegionChanged(x0, y0, x1, y1):
        The part of the image in view changed (zoom, scroll, resize); scene
        units, i.e. image pixel edges (see :meth:`visible_rect`).
    """

    pointClicked = Signal(float, float, int)
    boxDrawn = Signal(float, float, float, float)
    spaceReleased = Signal()
    viewScaleChanged = Signal(float)
    cursorMoved = Signal(float, float)
    strokeDrawn = Signal(object, float, bool)
    scribbleDrawn = Signal(object, float, bool)
    pickClicked = Signal(float, float)
    pickHovered = Signal(object)
    visibleRegionChanged = Signal(float, float, float, float)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        # Every overlay item keeps its picture at the current zoom in Qt's pixmap cache (DeviceCoordinateCache).
        # Qt's default 10 MB holds a handful of them: past that each repaint redraws every overlay (30 annotations
        # on a 12 MP photo at 21 %: 46 ms a repaint instead of 3, with outlines 0.9 s; benchmarks/bench_overlays.py).
        QPixmapCache.setCacheLimit(max(QPixmapCache.cacheLimit(), PIXMAP_CACHE_KB))
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(BACKGROUND)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)

        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # keep the image as drawn at the current zoom: a repaint (a new overlay, a point) blits it, no resampling
        self._image_item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._scene.addItem(self._image_item)
        self._image_size: Optional[Tuple[int, int]] = None  # (width, height)
        self._levels: Tuple[QImage, ...] = ()  # the image's pyramid, full size first
        self._level = -1  # the level drawn
        self._fit_mode = True  # refit on resize until the user zooms
        self.overlays = OverlayLayers(self._scene, lambda: self._image_size)
        self.pan = PanTool(self)
        self.pick = PickTool(self)
        self._tool: CanvasTool = PromptTool(self)

    # -- content ---------------------------------------------------------------------

    def set_image(self, image: Union[QImage, Sequence[QImage], None]) -> None:
        """Show an image (or nothing), drop all overlays and fit it to the view.

        ``image`` is a QImage, or its pyramid: the full image, then smaller
        copies of it (see :func:`annotator.render.pyramid`). The view draws
        the smallest level with at least one pixel per screen pixel; scene
        coordinates are those of the full image at every level.
        """
        self.clear_overlays()
        levels = tuple(image) if isinstance(image, (tuple, list)) else (image,)
        self._levels = ()
        self._level = -1
        if not levels or levels[0] is None or levels[0].isNull():
            self._image_item.setPixmap(QPixmap())
            self._image_item.setTransform(QTransform())
            self._image_size = None
            self._scene.setSceneRect(QRectF())
            return
        self._levels = levels
        self._image_size = (levels[0].width(), levels[0].height())
        self._scene.setSceneRect(QRectF(0, 0, levels[0].width(), levels[0].height()))
        self.fit()

    def _show_level(self) -> None:
        """Draw the image from the smallest level that still has a pixel per screen pixel at the current zoom."""
        if not self._levels:
            return
        full_w, full_h = self._image_size
        scale = self.view_scale()
        k = 0
        for i, level in enumerate(self._levels):
            if level.width() >= full_w * scale * 0.999:
                k = i
        if k == self._level:
            return
        level = self._levels[k]
        self._level = k
        self._image_item.setPixmap(QPixmap.fromImage(level))
        self._image_item.setTransform(QTransform.fromScale(full_w / level.width(), full_h / level.height()))

    @property
    def image_level(self) -> int:
        """Index of the pyramid level drawn now (0: the full image; -1: none)."""
        return self._level

    @property
    def image_size(self) -> Optional[Tuple[int, int]]:
        """``(width, height)`` of the image shown, or ``None``."""
        return self._image_size

    # overlays: drawn by self.overlays (annotator.ui.canvas_overlays); these are the slots the window wires

    def clear_overlays(self) -> None:
        self.overlays.clear()

    def set_candidate_overlay(self, image: Optional[QImage]) -> None:
        """Draw ``image`` as the current candidate (over its ``placement``, else the whole image), or nothing."""
        self.overlays.set_candidate(image)

    def set_annotation_overlays(self, overlays: Iterable[Overlay]) -> None:
        """Replace the annotation layer with ``(annotation id, overlay, rect)`` (drawn in order).

        ``rect`` is ``(x, y, width, height)`` in image pixels: the region the
        overlay image is stretched over (its bounding box, not the whole image).
        """
        self.overlays.set_annotations(overlays)

    def set_proposals(self, proposals: Iterable[Overlay]) -> None:
        """Replace the segment-everything proposals with ``(index, image, rect)`` (drawn in order, above annotations)."""
        self.overlays.set_proposals(proposals)

    def update_proposal(self, index: int, image: QImage) -> None:
        """Draw proposal ``index`` with ``image`` (same rect as before), e.g. once it is selected."""
        self.overlays.update_proposal(index, image)

    @property
    def proposal_count(self) -> int:
        return len(self.overlays.proposal_items)

    def set_annotations_visible(self, visible: bool) -> None:
        self.overlays.set_annotations_visible(visible)

    def set_prompt(self, prompt: PromptState) -> None:
        """Draw ``prompt``'s points (green foreground, red background) and its box."""
        self.overlays.set_prompt(prompt)

    def set_draft_overlay(self, overlay) -> None:
        """Draw the candidate edited by hand, ``(image, rect)``, in place of the candidate; ``None``: the candidate."""
        self.overlays.set_draft(overlay)

    def set_hover_overlay(self, overlay) -> None:
        """Outline what a Ctrl+click would pick, ``(image, rect)``, or nothing."""
        self.overlays.set_hover(overlay)

    def stroke_done(self) -> None:
        """The oldest stroke released is drawn: its preview goes."""
        self.overlays.stroke_done()

    # -- view ------------------------------------------------------------------------

    def view_scale(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    def fit(self) -> None:
        """Fit the whole image in the view (and keep fitting it on resize until the user zooms)."""
        self._fit_mode = True
        if self._image_size is None:
            return
        self.fitInView(QRectF(0, 0, *self._image_size), Qt.AspectRatioMode.KeepAspectRatio)
        self._after_zoom()

    def zoom_by(self, factor: float, anchor: Optional[QPointF] = None) -> None:
        """Zoom by ``factor``, keeping the image point under viewport position ``anchor`` (default: the centre) still."""
        current = self.view_scale()
        target = min(MAX_SCALE, max(MIN_SCALE, current * factor))
        if current <= 0 or abs(target - current) < 1e-9:
            return
        self._fit_mode = False
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        fixed = self.scene_at(anchor)  # the scene point that must stay under the anchor
        old = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(target / current, target / current)
        self.setTransformationAnchor(old)
        drift = self.viewportTransform().map(fixed) - QPointF(anchor)
        self.scroll_by(drift.x(), drift.y())
        self._after_zoom()

    def actual_size(self) -> None:
        self.zoom_by(1.0 / max(self.view_scale(), 1e-9))

    def image_at(self, viewport_pos: QPointF) -> Tuple[float, float]:
        """Image coordinates (x, y) under a viewport position (float precision)."""
        scene = self.scene_at(viewport_pos)
        return scene_to_image(scene.x(), scene.y())

    def scene_at(self, viewport_pos: QPointF) -> QPointF:
        """Scene position under a viewport position (scene units are image pixels, corners at integers)."""
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(viewport_pos))

    def scroll_by(self, dx: float, dy: float) -> None:
        """Scroll the view by ``(dx, dy)`` screen pixels (a pan: the view stops refitting on resize)."""
        self._fit_mode = False
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(dx))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(dy))

    def viewport_pos(self, x: float, y: float) -> QPointF:
        """Viewport position of image point ``(x, y)`` (inverse of :meth:`image_at`)."""
        sx, sy = image_to_scene(x, y)
        return self.viewportTransform().map(QPointF(sx, sy))

    def visible_rect(self) -> Optional[Tuple[float, float, float, float]]:
        """``(x0, y0, x1, y1)`` of the scene in view (image pixel edges: column ``c`` spans ``[c, c + 1)``;
        may reach past the image), or ``None`` without an image."""
        if self._image_size is None:
            return None
        r = self.mapToScene(self.viewport().rect()).boundingRect()
        return (r.left(), r.top(), r.right(), r.bottom())

    def _emit_visible(self) -> None:
        rect = self.visible_rect()
        if rect is not None:
            self.visibleRegionChanged.emit(*rect)

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 (Qt naming)
        super().scrollContentsBy(dx, dy)
        self._emit_visible()

    def _after_zoom(self) -> None:
        self._show_level()
        # Show the pixels when zoomed in: smoothing blurs exactly what the user zoomed in to see.
        smooth = self.view_scale() < 2.0
        self._image_item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        )
        self.viewScaleChanged.emit(self.view_scale())
        self._emit_visible()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()
        else:
            self._emit_visible()

    def wheelEvent(self, event) -> None:  # noqa: N802
        if self._tool.wheel(event):  # e.g. a brush's Ctrl+wheel
            event.accept()
            return
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(1.0015**delta, anchor=event.position())
        event.accept()

    # -- input: the pan tool first, then the active tool (annotator.ui.canvas_tools) ---------

    @property
    def tool(self) -> CanvasTool:
        """The active tool (what a click or drag means); panning is always on besides it."""
        return self._tool

    def set_tool(self, tool: CanvasTool) -> None:
        """Make ``tool`` the active tool (the previous one drops any gesture in progress)."""
        if tool is self._tool:
            return
        self._tool.cancel()
        self._tool = tool
        if not self.pan.panning and not self.pan.space_down:
            self.viewport().setCursor(tool.cursor)
        tool.activate()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.pan.press(event) or self.pick.press(event) or self._tool.press(event):
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.pan.move(event) or self.pick.move(event) or self._tool.move(event):
            event.accept()
            return
        if self._image_size is not None:
            x, y = self.image_at(event.position())
            self.cursorMoved.emit(x, y)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.pan.release(event) or self.pick.release(event) or self._tool.release(event):
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if self.pan.key_press(event) or self.pick.key_press(event) or self._tool.key_press(event):
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if self.pan.key_release(event) or self.pick.key_release(event) or self._tool.key_release(event):
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.pick.leave()
        self._tool.leave()
        super().leaveEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        self.pan.cancel()  # a Space released elsewhere must not leave pan mode on, nor accept
        self.pick.cancel()
        super().focusOutEvent(event)
