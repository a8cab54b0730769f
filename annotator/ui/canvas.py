"""The image view: shows the image, the prompt, the current candidate and the annotations; turns mouse input into prompts.

Coordinates: the scene is the image, one scene unit per image pixel, pixel
``(col, row)`` covering ``[col, col + 1) x [row, row + 1)``. Signals carry
image coordinates as :mod:`annotator.data.prompts` defines them (pixel centres at
integers, x then y), converted in exactly one place (:meth:`Canvas.image_at`).
Mapping goes through the view's full-precision transform, so positions are
exact at every zoom level.

The canvas knows nothing about models or documents: it draws what it is given
and emits what the user did.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Union

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from annotator.data.prompts import PromptState, image_to_scene, inside, scene_to_image

#: A press that moves further than this (screen pixels) becomes a box drag.
DRAG_THRESHOLD_PX = 5
#: A Space release waits this long for a Space press that would make it half of a key-autorepeat pair
#: (those come back to back, well under a millisecond apart) before it counts as the accept key.
SPACE_SETTLE_MS = 60
MIN_SCALE, MAX_SCALE = 0.01, 40.0
FG_COLOR = QColor(40, 220, 90)
BG_COLOR = QColor(235, 60, 60)
BOX_COLOR = QColor(255, 210, 40)
BACKGROUND = QColor(38, 40, 44)
POINT_RADIUS = 5.5


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
    """

    pointClicked = Signal(float, float, int)
    boxDrawn = Signal(float, float, float, float)
    spaceReleased = Signal()
    viewScaleChanged = Signal(float)
    cursorMoved = Signal(float, float)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
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
        self._annotation_items: dict[int, QGraphicsPixmapItem] = {}
        self._annotations_visible = True
        self._proposal_items: dict[int, QGraphicsPixmapItem] = {}
        self._candidate_item = self._overlay_item(z=2)
        self._box_item = QGraphicsRectItem()
        self._box_item.setPen(_cosmetic_pen(BOX_COLOR, 2))
        self._box_item.setZValue(3)
        self._box_item.hide()
        self._scene.addItem(self._box_item)
        self._drag_item = QGraphicsRectItem()
        self._drag_item.setPen(_cosmetic_pen(BOX_COLOR, 1.5, Qt.PenStyle.DashLine))
        self._drag_item.setZValue(3)
        self._drag_item.hide()
        self._scene.addItem(self._drag_item)
        self._point_items: list[QGraphicsEllipseItem] = []

        self._image_size: Optional[Tuple[int, int]] = None  # (width, height)
        self._levels: Tuple[QImage, ...] = ()  # the image's pyramid, full size first
        self._level = -1  # the level drawn
        self._fit_mode = True  # refit on resize until the user zooms
        self._press: Optional[QPointF] = None
        self._press_shift = False
        self._dragging = False
        self._pan_from: Optional[QPointF] = None
        self._pan_button = Qt.MouseButton.NoButton
        self._space_down = False
        self._space_used = False
        # A Space release counts only once no Space press follows it at once: key autorepeat sends
        # release/press pairs back to back, on some platforms without the autorepeat flag, and an
        # accept from one of those would create an annotation the user never asked for.
        self._space_settle = QTimer(self)
        self._space_settle.setSingleShot(True)
        self._space_settle.setInterval(SPACE_SETTLE_MS)
        self._space_settle.timeout.connect(self._space_settled)

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

    def clear_overlays(self) -> None:
        self.set_candidate_overlay(None)
        self.set_annotation_overlays(())
        self.set_proposals(())
        self.set_prompt(PromptState())
        self._drag_item.hide()

    def set_candidate_overlay(self, image: Optional[QImage]) -> None:
        """Draw ``image`` (any size, stretched over the whole image) as the current candidate, or nothing."""
        self._set_overlay(self._candidate_item, image)

    def set_annotation_overlays(self, overlays: Iterable[Tuple[int, QImage, Tuple[float, float, float, float]]]) -> None:
        """Replace the annotation layer with ``(annotation id, overlay, rect)`` (drawn in order).

        ``rect`` is ``(x, y, width, height)`` in image pixels: the region the
        overlay image is stretched over (its bounding box, not the whole image).
        """
        for item in self._annotation_items.values():
            self._scene.removeItem(item)
        self._annotation_items = {}
        for z, (ann_id, image, rect) in enumerate(overlays):
            item = self._overlay_item(z=1 + z * 1e-6)
            self._set_overlay(item, image, rect)
            item.setVisible(self._annotations_visible and item.isVisible())
            self._annotation_items[ann_id] = item

    def set_proposals(self, proposals: Iterable[Tuple[int, QImage, Tuple[float, float, float, float]]]) -> None:
        """Replace the segment-everything proposals with ``(index, image, rect)`` (drawn in order, above annotations).

        ``rect`` is ``(x, y, width, height)`` in image pixels, as for annotations.
        """
        for item in self._proposal_items.values():
            self._scene.removeItem(item)
        self._proposal_items = {}
        for z, (index, image, rect) in enumerate(proposals):
            item = self._overlay_item(z=1.5 + z * 1e-6)
            self._set_overlay(item, image, rect)
            self._proposal_items[index] = item

    def update_proposal(self, index: int, image: QImage) -> None:
        """Draw proposal ``index`` with ``image`` (same rect as before), e.g. once it is selected."""
        item = self._proposal_items.get(index)
        if item is not None and not image.isNull():
            item.setPixmap(QPixmap.fromImage(image))

    @property
    def proposal_count(self) -> int:
        return len(self._proposal_items)

    def set_annotations_visible(self, visible: bool) -> None:
        self._annotations_visible = bool(visible)
        for item in self._annotation_items.values():
            item.setVisible(self._annotations_visible)

    def set_prompt(self, prompt: PromptState) -> None:
        """Draw ``prompt``'s points (green foreground, red background) and its box."""
        for item in self._point_items:
            self._scene.removeItem(item)
        self._point_items = []
        for (x, y), label in zip(prompt.points, prompt.labels):
            sx, sy = image_to_scene(x, y)
            r = POINT_RADIUS
            item = QGraphicsEllipseItem(-r, -r, 2 * r, 2 * r)
            item.setPos(sx, sy)
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            item.setBrush(QBrush(FG_COLOR if label == 1 else BG_COLOR))
            item.setPen(QPen(QColor(255, 255, 255), 1.5))
            item.setZValue(4)
            self._scene.addItem(item)
            self._point_items.append(item)
        if prompt.box is None:
            self._box_item.hide()
        else:
            x0, y0, x1, y1 = prompt.box
            (sx0, sy0), (sx1, sy1) = image_to_scene(x0, y0), image_to_scene(x1, y1)
            self._box_item.setRect(QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1)))
            self._box_item.show()

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
        inverse, _ = self.viewportTransform().inverted()
        fixed = inverse.map(QPointF(anchor))  # the scene point that must stay under the anchor
        old = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(target / current, target / current)
        self.setTransformationAnchor(old)
        drift = self.viewportTransform().map(fixed) - QPointF(anchor)
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(drift.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(drift.y()))
        self._after_zoom()

    def actual_size(self) -> None:
        self.zoom_by(1.0 / max(self.view_scale(), 1e-9))

    def image_at(self, viewport_pos: QPointF) -> Tuple[float, float]:
        """Image coordinates (x, y) under a viewport position (float precision)."""
        inverse, _ = self.viewportTransform().inverted()
        scene = inverse.map(QPointF(viewport_pos))
        return scene_to_image(scene.x(), scene.y())

    def viewport_pos(self, x: float, y: float) -> QPointF:
        """Viewport position of image point ``(x, y)`` (inverse of :meth:`image_at`)."""
        sx, sy = image_to_scene(x, y)
        return self.viewportTransform().map(QPointF(sx, sy))

    def _after_zoom(self) -> None:
        self._show_level()
        # Show the pixels when zoomed in: smoothing blurs exactly what the user zoomed in to see.
        smooth = self.view_scale() < 2.0
        self._image_item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        )
        self.viewScaleChanged.emit(self.view_scale())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(1.0015**delta, anchor=event.position())
        event.accept()

    # -- mouse -----------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._space_settle.isActive():  # Space went up just before this click: settle it first
            self._space_settle.stop()
            self._space_settled()
        button = event.button()
        pos = event.position()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_down):
            self._pan_from, self._pan_button = pos, button
            self._space_used = self._space_used or self._space_down
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton:
            self._press = pos
            self._press_shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._dragging = False
            event.accept()
            return
        if button == Qt.MouseButton.RightButton:
            self._emit_point(pos, 0)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self._pan_from is not None:
            delta = pos - self._pan_from
            self._pan_from = pos
            self._fit_mode = False
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            event.accept()
            return
        if self._press is not None and self._image_size is not None:
            moved = pos - self._press
            if self._dragging or abs(moved.x()) + abs(moved.y()) > DRAG_THRESHOLD_PX:
                self._dragging = True
                inverse, _ = self.viewportTransform().inverted()
                self._drag_item.setRect(QRectF(inverse.map(self._press), inverse.map(pos)).normalized())
                self._drag_item.show()
        if self._image_size is not None:
            x, y = self.image_at(pos)
            self.cursorMoved.emit(x, y)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        button = event.button()
        if self._pan_from is not None and button == self._pan_button:
            self._pan_from = None
            self.viewport().setCursor(
                Qt.CursorShape.OpenHandCursor if self._space_down else Qt.CursorShape.CrossCursor
            )
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._press is not None:
            press, self._press = self._press, None
            if self._dragging:
                self._dragging = False
                self._drag_item.hide()
                x0, y0 = self.image_at(press)
                x1, y1 = self.image_at(event.position())
                if self._image_size is not None:
                    self.boxDrawn.emit(x0, y0, x1, y1)
            else:
                self._emit_point(press, 0 if self._press_shift else 1)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def _emit_point(self, viewport_pos: QPointF, label: int) -> None:
        if self._image_size is None:
            return
        x, y = self.image_at(viewport_pos)
        if inside(x, y, *self._image_size):
            self.pointClicked.emit(x, y, label)

    # -- keys ------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            if self._space_settle.isActive():  # the release just before was half of an autorepeat pair
                self._space_settle.stop()
            elif not event.isAutoRepeat() and not self._space_down:
                self._space_down, self._space_used = True, False
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat() and self._space_down:
                self._space_settle.start()  # decided in _space_settled, unless a press follows
            event.accept()
            return
        super().keyReleaseEvent(event)

    def _space_settled(self) -> None:
        """Space is really up: leave pan mode; accept if nothing was dragged while it was held."""
        if not self._space_down:
            return
        self._space_down = False
        if self._pan_from is None:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        if not self._space_used:
            self.spaceReleased.emit()

    def focusOutEvent(self, event) -> None:  # noqa: N802
        # A Space released elsewhere must not leave the canvas in pan mode, nor accept.
        self._space_settle.stop()
        self._space_down = False
        super().focusOutEvent(event)

    # -- helpers ---------------------------------------------------------------------

    def _overlay_item(self, z: float) -> QGraphicsPixmapItem:
        item = QGraphicsPixmapItem()
        item.setZValue(z)
        item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(item)
        return item

    def _set_overlay(self, item: QGraphicsPixmapItem, image: Optional[QImage], rect=None) -> None:
        """Stretch ``image`` over ``rect`` ``(x, y, w, h)`` in image pixels (default: the whole image)."""
        if image is None or image.isNull() or self._image_size is None:
            item.setPixmap(QPixmap())
            item.hide()
            return
        x, y, w, h = rect if rect is not None else (0.0, 0.0, *self._image_size)
        item.setPixmap(QPixmap.fromImage(image))
        item.setPos(x, y)
        item.setTransform(QTransform.fromScale(w / image.width(), h / image.height()))
        item.show()


def _cosmetic_pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCosmetic(True)  # same width on screen at every zoom
    return pen
