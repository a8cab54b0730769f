"""What the canvas draws over the image: the candidate, annotations, proposals, the prompt, a drag box, brush strokes.

:class:`OverlayLayers` owns these scene items and nothing else: it takes no
input and knows no zoom (outlines that must keep their screen width use
cosmetic pens or items that ignore transformations). Changing how overlays
look happens here, without touching the view (:mod:`annotator.ui.canvas`) or
the input tools (:mod:`annotator.ui.canvas_tools`).

Coordinates: scene units are image pixels, pixel ``(col, row)`` covering
``[col, col + 1) x [row, row + 1)``; overlay rects are ``(x, y, width,
height)`` in those units. Prompt points and boxes arrive in image coordinates
(:mod:`annotator.data.prompts`: pixel centres at integers, x then y) and are
converted with :func:`annotator.data.prompts.image_to_scene`.

Brush strokes being painted are drawn as path items (a pen as wide as the
brush, round caps and joins: exactly the capsules the stroke will cover), so
a mouse move costs one short path, never a mask; a stroke's preview stays
until the window is told its result is drawn (:meth:`OverlayLayers.stroke_done`,
oldest first). The brush's outline follows the cursor in scene units, so it
shows the radius at the current zoom.

Stacking (z): annotations 1, proposals 1.5, candidate 2, the candidate edited
by hand 2.2 (hides the candidate), the annotation a Ctrl+click would pick 2.6,
boxes 3, strokes being painted 3.5, points 4, the brush outline 5.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, Iterable, List, Optional, Tuple

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
)

from annotator.data.prompts import PromptState, image_to_scene

FG_COLOR = QColor(40, 220, 90)
BG_COLOR = QColor(235, 60, 60)
BOX_COLOR = QColor(255, 210, 40)
POINT_RADIUS = 5.5
BRUSH_COLOR = QColor(255, 255, 255, 120)
ERASER_COLOR = QColor(15, 15, 20, 150)
#: A stroke's preview starts a new path item every this many points, so a move redraws a short path only.
STROKE_CHUNK = 48

#: ``(id, overlay image, (x, y, width, height))``: an overlay stretched over a rect in image pixels.
Overlay = Tuple[int, QImage, Tuple[float, float, float, float]]


class OverlayLayers:
    """The overlay items of one scene.

    Parameters
    ----------
    scene:
        The canvas's scene; items are added to it.
    image_size:
        Returns the ``(width, height)`` of the image shown, or ``None`` (then
        overlays are hidden).

    Attributes
    ----------
    candidate_item:
        The current candidate's overlay (hidden when there is none).
    annotation_items:
        Annotation id -> its overlay item, in drawing order.
    proposal_items:
        Proposal index -> its overlay item, in drawing order.
    """

    def __init__(self, scene: QGraphicsScene, image_size: Callable[[], Optional[Tuple[int, int]]]) -> None:
        self._scene = scene
        self._image_size = image_size
        self.annotation_items: Dict[int, MaskItem] = {}
        self._annotation_drawn: Dict[int, Tuple[QImage, tuple]] = {}  # id -> (its image, rect) as drawn
        self.proposal_items: Dict[int, MaskItem] = {}
        self._annotations_visible = True
        self.candidate_item = self._overlay_item(z=2)
        self._box_item = self._rect_item(_cosmetic_pen(BOX_COLOR, 2))
        self._drag_item = self._rect_item(_cosmetic_pen(BOX_COLOR, 1.5, Qt.PenStyle.DashLine))
        self._point_items: List[QGraphicsEllipseItem] = []
        self.draft_item = self._overlay_item(z=2.2)
        self.hover_item = self._overlay_item(z=2.6)
        self.strokes: Deque[StrokePreview] = deque()  # finished strokes waiting for their result, oldest first
        self.brush_items = (self._circle_item(QColor(0, 0, 0, 200), 3.0), self._circle_item(QColor(255, 255, 255), 1.4))

    def clear(self) -> None:
        """Drop every overlay (a new image)."""
        self.set_candidate(None)
        self.set_draft(None)
        self.set_hover(None)
        self.set_annotations(())
        self.set_proposals(())
        self.set_prompt(PromptState())
        self.hide_drag()
        while self.strokes:
            self.strokes.popleft().remove()

    # -- masks -------------------------------------------------------------------------

    def set_candidate(self, image: Optional[QImage]) -> None:
        """Draw ``image`` as the current candidate, or nothing: stretched over its ``placement`` (an
        :class:`annotator.render.OverlayImage` cut to the mask's box), else over the whole image."""
        self._set_overlay(self.candidate_item, image, getattr(image, "placement", None))
        if self.draft_item.isVisible():
            self.candidate_item.hide()

    def set_draft(self, overlay: Optional[Tuple[QImage, tuple]]) -> None:
        """Draw the candidate edited by hand, ``(image, rect)``, in place of the candidate; ``None``: the candidate."""
        image, rect = overlay if overlay is not None else (None, None)
        self._set_overlay(self.draft_item, image, rect)
        showing = self.draft_item.isVisible()
        has_candidate = not self.candidate_item.pixmap().isNull()
        self.candidate_item.setVisible(has_candidate and not showing)

    def set_hover(self, overlay: Optional[Tuple[QImage, tuple]]) -> None:
        """Outline the annotation a Ctrl+click would pick, ``(image, rect)``, or nothing."""
        image, rect = overlay if overlay is not None else (None, None)
        self._set_overlay(self.hover_item, image, rect)

    def set_annotations(self, overlays: Iterable[Overlay]) -> None:
        """Replace the annotation layer with ``(annotation id, overlay, rect)`` (drawn in order).

        An annotation drawn with the same image object over the same rect as
        before keeps its item (and the pixmap cached at the current zoom): a
        stroke on one annotation redraws that one only.
        """
        old, self.annotation_items = self.annotation_items, {}
        drawn, self._annotation_drawn = self._annotation_drawn, {}
        for z, (ann_id, image, rect) in enumerate(overlays):
            item = old.pop(ann_id, None)
            before = drawn.get(ann_id)
            if item is None or before is None or before[0] is not image or before[1] != tuple(rect) \
                    or self._image_size() is None:
                if item is not None:
                    self._scene.removeItem(item)
                item = self._overlay_item(z=1)
                self._set_overlay(item, image, rect)
            item.setZValue(1 + z * 1e-6)
            item.setVisible(self._annotations_visible and not item.pixmap().isNull())
            self.annotation_items[ann_id] = item
            self._annotation_drawn[ann_id] = (image, tuple(rect))
        for item in old.values():
            self._scene.removeItem(item)

    def set_annotations_visible(self, visible: bool) -> None:
        self._annotations_visible = bool(visible)
        for item in self.annotation_items.values():
            item.setVisible(self._annotations_visible)

    def set_proposals(self, proposals: Iterable[Overlay]) -> None:
        """Replace the segment-everything proposals with ``(index, image, rect)`` (in order, above annotations)."""
        for item in self.proposal_items.values():
            self._scene.removeItem(item)
        self.proposal_items = {}
        for z, (index, image, rect) in enumerate(proposals):
            item = self._overlay_item(z=1.5 + z * 1e-6)
            self._set_overlay(item, image, rect)
            self.proposal_items[index] = item

    def update_proposal(self, index: int, image: QImage) -> None:
        """Draw proposal ``index`` with ``image`` (same rect as before)."""
        item = self.proposal_items.get(index)
        if item is not None and not image.isNull():
            item.set_image(image)

    # -- prompt and drag ---------------------------------------------------------------

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

    def show_drag(self, scene_rect: QRectF) -> None:
        """Show the rubber band of a box being dragged (scene coordinates)."""
        self._drag_item.setRect(scene_rect.normalized())
        self._drag_item.show()

    def hide_drag(self) -> None:
        self._drag_item.hide()

    # -- brush -------------------------------------------------------------------------

    def begin_stroke(self, scene_pos: QPointF, radius: float, erase: bool) -> "StrokePreview":
        """Start drawing a stroke at ``scene_pos``, ``radius`` in scene units (image pixels)."""
        return StrokePreview(self._scene, scene_pos, radius, ERASER_COLOR if erase else BRUSH_COLOR)

    def stroke_finished(self, preview: "StrokePreview") -> None:
        """A stroke was released: its preview stays until :meth:`stroke_done`."""
        self.strokes.append(preview)

    def stroke_done(self) -> None:
        """The oldest finished stroke's result is drawn: remove its preview."""
        if self.strokes:
            self.strokes.popleft().remove()

    def show_brush(self, scene_pos: Optional[QPointF], radius: float = 0.0) -> None:
        """The brush outline: a circle of ``radius`` (scene units) at ``scene_pos``; ``None`` hides it."""
        for item in self.brush_items:
            if scene_pos is None:
                item.hide()
                continue
            item.setRect(QRectF(scene_pos.x() - radius, scene_pos.y() - radius, 2 * radius, 2 * radius))
            item.show()

    # -- helpers -----------------------------------------------------------------------

    def _rect_item(self, pen: QPen) -> QGraphicsRectItem:
        item = QGraphicsRectItem()
        item.setPen(pen)
        item.setZValue(3)
        item.hide()
        self._scene.addItem(item)
        return item

    def _circle_item(self, color: QColor, width: float) -> QGraphicsEllipseItem:
        item = QGraphicsEllipseItem()
        item.setPen(_cosmetic_pen(color, width))
        item.setZValue(5)
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        item.hide()
        self._scene.addItem(item)
        return item

    def _overlay_item(self, z: float) -> "MaskItem":
        item = MaskItem()
        item.setZValue(z)
        item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # kept as drawn at the current zoom: a repaint under a brush stroke blits it instead of scaling a
        # 2048-pixel overlay again (mouse move -> repaint p99 on a 12 MP photo: 16.9 -> see docs/benchmarks.md)
        item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(item)
        return item

    def _set_overlay(self, item: "MaskItem", image: Optional[QImage], rect=None) -> None:
        """Stretch ``image`` over ``rect`` ``(x, y, w, h)`` in image pixels (default: the whole image)."""
        size = self._image_size()
        if image is None or image.isNull() or size is None:
            item.set_image(QImage())
            item.hide()
            return
        x, y, w, h = rect if rect is not None else (0.0, 0.0, *size)
        item.set_image(image)
        item.setPos(x, y)
        item.setTransform(QTransform.fromScale(w / image.width(), h / image.height()))
        item.show()


class StrokePreview:
    """The path of a stroke being painted, as path items in the scene (see the module notes)."""

    def __init__(self, scene: QGraphicsScene, start: QPointF, radius: float, color: QColor) -> None:
        self._scene = scene
        self._pen = QPen(color, 2.0 * radius, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                         Qt.PenJoinStyle.RoundJoin)
        self.items: List[QGraphicsPathItem] = []
        self._last = QPointF(start)
        self._count = 0
        self._path = QPainterPath()
        self._new_chunk()
        self._path.lineTo(start + QPointF(1e-3, 0))  # a dab: the round caps of a tiny segment make the disc
        self.items[-1].setPath(self._path)

    def add(self, scene_pos: QPointF) -> None:
        """The cursor moved to ``scene_pos``."""
        if self._count >= STROKE_CHUNK:
            self._new_chunk()
        self._path.lineTo(scene_pos)
        self._last = QPointF(scene_pos)
        self._count += 1
        self.items[-1].setPath(self._path)

    def remove(self) -> None:
        for item in self.items:
            self._scene.removeItem(item)
        self.items = []

    def _new_chunk(self) -> None:
        self._path = QPainterPath(self._last)
        self._count = 0
        item = QGraphicsPathItem()
        item.setPen(self._pen)
        item.setZValue(3.5)
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(item)
        self.items.append(item)


#: Under every mask outline: a dark line this many screen pixels wider, so the outline shows on any background.
HALO_COLOR, HALO_EXTRA = QColor(0, 0, 0, 150), 3.0  # drawn without antialiasing: a pixel more keeps one each side
#: Bounding-rect margin of a mask item, in overlay pixels, so that the halo of an outline on the mask's
#: extreme rows and columns is not cut off: 3 screen pixels at the zoom of a 12 MP photo fitted in a window.
OUTLINE_MARGIN = 8.0


class MaskItem(QGraphicsPixmapItem):
    """A mask overlay: its fill (the pixmap) and its outline at a constant width on screen.

    The outline (:attr:`annotator.render.OverlayImage.outline`, in the
    pixmap's pixels) is drawn with a cosmetic pen over a wider dark halo, in
    this item's own :meth:`paint`, so the item's device-coordinate cache
    holds fill and outline together: stroking long antialiased paths is slow
    in Qt's raster engine (tens of ms for a few thousand vertices), and with
    the cache it happens once per zoom, not on every repaint
    (``benchmarks/bench_overlays.py``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._image: Optional[QImage] = None  # an OverlayImage with an outline, else None
        self._pen = self._halo = QPen()

    def set_image(self, image: QImage) -> None:
        """Show ``image`` and the outline it carries (none for a plain QImage).

        The outline's path is built when first painted, at the zoom it is seen at
        (:meth:`annotator.render.OverlayImage.outline_at`), not here.
        """
        self.prepareGeometryChange()
        self.setPixmap(QPixmap.fromImage(image))
        self._image = image if getattr(image, "has_outline", False) else None
        if self._image is not None:
            width = image.edge_width
            self._pen = _cosmetic_pen(QColor(*image.edge_color), width)
            self._halo = _cosmetic_pen(HALO_COLOR, width + HALO_EXTRA)
            for pen in (self._pen, self._halo):
                # bevelled, not round: Qt strokes a path of ~1000 vertices with round joins 2x slower (the
                # antialiased 2-pixel edge of a candidate on a 12 MP photo: 12.7 -> 5.8 ms CPU, the halo 2.1 ->
                # 1.0 ms; the first paint after each click pays it). At 2-5 screen pixels the two differ by
                # under half a pixel, at sharp corners only.
                pen.setJoinStyle(Qt.PenJoinStyle.BevelJoin)

    @property
    def outline(self) -> QPainterPath:
        """The full-detail outline (empty for none)."""
        return self._image.outline if self._image is not None else QPainterPath()

    @property
    def outline_pen(self) -> QPen:
        return self._pen

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt's name)
        rect = super().boundingRect()
        if self._image is None:
            return rect
        m = OUTLINE_MARGIN
        return rect.adjusted(-m, -m, m, m)

    def paint(self, painter, option, widget=None) -> None:
        super().paint(painter, option, widget)
        if self._image is None:
            return
        path = self._image.outline_at(abs(painter.worldTransform().m11()))  # screen pixels per overlay pixel
        painter.setBrush(Qt.BrushStyle.NoBrush)
        # the halo without antialiasing: 4x cheaper to stroke, and a soft dark band shows no staircase
        antialiased = painter.testRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(self._halo)
        painter.drawPath(path)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, antialiased)
        painter.setPen(self._pen)
        painter.drawPath(path)


def _cosmetic_pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCosmetic(True)  # same width on screen at every zoom
    return pen
