"""What the canvas draws over the image: the candidate, accepted annotations, proposals, the prompt and a drag box.

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

Stacking (z): annotations 1, proposals 1.5, candidate 2, boxes 3, points 4.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Tuple

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
)

from annotator.data.prompts import PromptState, image_to_scene

FG_COLOR = QColor(40, 220, 90)
BG_COLOR = QColor(235, 60, 60)
BOX_COLOR = QColor(255, 210, 40)
POINT_RADIUS = 5.5

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
        self.annotation_items: Dict[int, QGraphicsPixmapItem] = {}
        self.proposal_items: Dict[int, QGraphicsPixmapItem] = {}
        self._annotations_visible = True
        self.candidate_item = self._overlay_item(z=2)
        self._box_item = self._rect_item(_cosmetic_pen(BOX_COLOR, 2))
        self._drag_item = self._rect_item(_cosmetic_pen(BOX_COLOR, 1.5, Qt.PenStyle.DashLine))
        self._point_items: List[QGraphicsEllipseItem] = []

    def clear(self) -> None:
        """Drop every overlay (a new image)."""
        self.set_candidate(None)
        self.set_annotations(())
        self.set_proposals(())
        self.set_prompt(PromptState())
        self.hide_drag()

    # -- masks -------------------------------------------------------------------------

    def set_candidate(self, image: Optional[QImage]) -> None:
        """Draw ``image`` (any size, stretched over the whole image) as the current candidate, or nothing."""
        self._set_overlay(self.candidate_item, image)

    def set_annotations(self, overlays: Iterable[Overlay]) -> None:
        """Replace the annotation layer with ``(annotation id, overlay, rect)`` (drawn in order)."""
        for item in self.annotation_items.values():
            self._scene.removeItem(item)
        self.annotation_items = {}
        for z, (ann_id, image, rect) in enumerate(overlays):
            item = self._overlay_item(z=1 + z * 1e-6)
            self._set_overlay(item, image, rect)
            item.setVisible(self._annotations_visible and item.isVisible())
            self.annotation_items[ann_id] = item

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
            item.setPixmap(QPixmap.fromImage(image))

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

    # -- helpers -----------------------------------------------------------------------

    def _rect_item(self, pen: QPen) -> QGraphicsRectItem:
        item = QGraphicsRectItem()
        item.setPen(pen)
        item.setZValue(3)
        item.hide()
        self._scene.addItem(item)
        return item

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
        size = self._image_size()
        if image is None or image.isNull() or size is None:
            item.setPixmap(QPixmap())
            item.hide()
            return
        x, y, w, h = rect if rect is not None else (0.0, 0.0, *size)
        item.setPixmap(QPixmap.fromImage(image))
        item.setPos(x, y)
        item.setTransform(QTransform.fromScale(w / image.width(), h / image.height()))
        item.show()


def _cosmetic_pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCosmetic(True)  # same width on screen at every zoom
    return pen
