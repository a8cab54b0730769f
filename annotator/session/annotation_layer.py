"""How the accepted annotations of the current image are shown: overlays, visibility, selection.

Decoding an annotation's RLE, shrinking it to overlay size and colouring it
costs tens of milliseconds for a 12 MP image, so it runs on the decoder thread
as a task (:func:`annotator.render.annotation_patches`). Each overlay is cut
to the annotation's bounding box (:class:`~annotator.render.MaskPatch`), so
memory follows the objects' size, not the image's. Patches are kept for the
current image only (the session calls :meth:`AnnotationLayer.reset` when it
changes; which image is current is asked of the navigator, never stored here);
a freshly accepted annotation brings its own, so it shows at once.
Re-colouring (a category colour change, the selection highlight, the
opacity of :class:`~annotator.session.style.OverlayStyle`) happens on the GUI
thread from the cached patch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from annotator import render
from annotator.session.rows import AnnotationRow
from annotator.session.style import OverlayStyle


class CurrentImage(Protocol):
    """Which image is current and whether it is on show (see :class:`annotator.session.navigation.ImageNavigator`)."""

    @property
    def current_path(self) -> Optional[Path]: ...

    @property
    def loaded(self) -> Any: ...  # its LoadedImage once read, else None


class AnnotationLayer(QObject):
    """Overlays and panel rows for the annotations of one image at a time.

    ``changed`` is emitted when masks requested in the background arrive.
    """

    changed = Signal()

    def __init__(self, decoder, image: CurrentImage, style: OverlayStyle, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._decoder = decoder
        self._image = image
        self._style = style
        self.hidden: set[int] = set()
        self.selected: Optional[int] = None
        #: The annotation being refined with SAM (its candidate is drawn instead), or None.
        self.refining: Optional[int] = None
        self._patches: Dict[int, render.MaskPatch] = {}  # annotation id -> patch (current image)
        self._images: Dict[tuple, QImage] = {}  # (id, colour, selected) -> overlay at the style's opacity
        self._task: Optional[int] = None
        self._task_path: Optional[Path] = None
        self._task_opacity = style.opacity
        decoder.taskDone.connect(self._on_task_done)
        style.changed.connect(self._on_style_changed)

    @property
    def opacity(self) -> float:
        return self._style.opacity

    def reset(self, forget_hidden: bool = False) -> None:
        """Another image is current (or none): forget the masks and the selection (and, with
        ``forget_hidden``, which annotations were hidden: another document)."""
        self._patches.clear()
        self._images.clear()
        self.selected = None
        self.refining = None
        self._task = None
        if forget_hidden:
            self.hidden.clear()

    def put(self, annotation_id: int, patch: render.MaskPatch, color=None, image: Optional[QImage] = None) -> None:
        """The overlay patch of an annotation of the current image (and its plain overlay in ``color``)."""
        self._patches[annotation_id] = patch
        self._drop_images(annotation_id)
        if image is not None and color is not None:
            self._images[(annotation_id, tuple(color), False)] = image

    def forget(self, annotation_id: int) -> None:
        """The annotation left the document: no longer hidden, selected or drawn."""
        self.hidden.discard(annotation_id)
        if self.selected == annotation_id:
            self.selected = None
        # (its patch stays: undoing the removal shows it again at once)

    def invalidate(self, annotation_id: int) -> None:
        """The annotation's mask changed: its patch is decoded again when next drawn."""
        self._patches.pop(annotation_id, None)
        self._drop_images(annotation_id)
        self._task = None  # a task in flight may hold the old mask: its result is dropped

    def request(self, annotations: Sequence, categories: dict) -> None:
        """Decode, in the background, the patches of ``annotations`` (of the current image) not known yet."""
        missing = [
            (a.id, a.segmentation, a.size[0], a.size[1], tuple(categories[a.category_id].color))
            for a in annotations
            if a.id not in self._patches
        ]
        if missing and self._task is None:
            self._task_path = self._image.current_path
            self._task_opacity = self.opacity
            self._task = self._decoder.run_task(render.annotation_patches, missing, self.opacity)

    def overlays(self, annotations: Sequence, categories: dict) -> List[Tuple[int, QImage, tuple]]:
        """``(id, overlay, rect)`` of the visible annotations whose patches are known, the selected one last.

        ``rect`` is ``(x, y, width, height)`` in image pixels. Patches not
        known yet are asked for (``changed`` follows when they arrive).
        """
        anns = [a for a in annotations if a.id not in self.hidden and a.id != self.refining]
        anns.sort(key=lambda a: a.id == self.selected)
        out = []
        for ann in anns:
            patch = self._patches.get(ann.id)
            if patch is None:
                continue
            color = tuple(categories[ann.category_id].color)
            selected = ann.id == self.selected
            key = (ann.id, color, selected)
            image = self._images.get(key)
            if image is None:
                image = self._images[key] = render.annotation_overlay(patch.mask, color, selected, self.opacity)
            out.append((ann.id, image, patch.rect))
        self.request(annotations, categories)
        return out

    def patch(self, annotation_id: int) -> Optional[render.MaskPatch]:
        """The overlay patch of an annotation of the current image, if decoded."""
        return self._patches.get(annotation_id)

    def hits(self, x: float, y: float, annotations: Sequence) -> List[int]:
        """Ids of the drawn annotations whose overlay covers image point ``(x, y)``, topmost first.

        Tested on what is drawn (the overlay patches, in drawing order by id),
        so the pick matches what the user sees; annotations hidden, being
        refined or not decoded yet are not hit.
        """
        out = []
        for ann in annotations:
            patch = self._patches.get(ann.id)
            if patch is not None and ann.id not in self.hidden and ann.id != self.refining and patch.contains(x, y):
                out.append(ann.id)
        return out[::-1]

    def rows(self, annotations: Iterable, categories: dict) -> List[AnnotationRow]:
        rows = []
        for ann in annotations:
            cat = categories[ann.category_id]
            score = ann.extra.get("predicted_iou")
            rows.append(
                AnnotationRow(
                    ann.id, cat.id, cat.name, tuple(cat.color), int(ann.area), ann.id not in self.hidden,
                    float(score) if isinstance(score, (int, float)) else None,
                )
            )
        return rows

    def _on_style_changed(self, _opacity: float) -> None:
        self._images.clear()  # drawn again, at the new opacity, from the patches

    def _drop_images(self, annotation_id: int) -> None:
        for key in [k for k in self._images if k[0] == annotation_id]:
            del self._images[key]

    def _on_task_done(self, task_id: int, result: object) -> None:
        if task_id != self._task:
            return
        self._task = None
        task_opacity = self._task_opacity
        if self._task_path != self._image.current_path:
            return  # the user has moved on
        for ann_id, (patch, color, image) in result.items():
            if ann_id in self._patches:
                continue  # put since the task was asked (it asks only for missing ones): an edit, newer than this
            self.put(ann_id, patch, color, image if task_opacity == self.opacity else None)
        self.changed.emit()
