"""Selecting an accepted annotation on the canvas: Ctrl+click picks the topmost under the cursor, again cycles.

:class:`AnnotationPicker` answers "which annotation is under this point" from
what is drawn (:meth:`annotator.session.annotation_layer.AnnotationLayer.hits`,
topmost first) and makes it the selected one (the panel row follows; the
brush, the eraser, cleanup, Delete and R then act on it). A second Ctrl+click
where the same annotations overlap selects the next one down, and so on
round; a Ctrl+click on no annotation clears the selection, and so does one
while the annotations are hidden (View → Show Annotations off: nothing is
picked that the user cannot see; :meth:`AnnotationPicker.set_shown`). While Ctrl is
held, :meth:`AnnotationPicker.hover_at` outlines the annotation a click would
pick (``hoverChanged``). Coordinates are image pixels, x then y.
"""

from __future__ import annotations

from typing import List, Optional

from PySide6.QtCore import QObject, Signal

from annotator import render
from annotator.session.document_edits import DocumentEdits
from annotator.session.gate import ActionGate, waits_for_accept

#: Outline of the annotation a Ctrl+click would pick.
HOVER_EDGE = (255, 255, 255)


class AnnotationPicker(QObject):
    """See the module notes. ``refining`` returns the id being refined (no picking meanwhile) or ``None``."""

    hoverChanged = Signal(object)  # (QImage, (x, y, w, h)) outline of the annotation a Ctrl+click would pick, or None
    statusMessage = Signal(str, int)

    def __init__(self, edits: DocumentEdits, gate: ActionGate, refining=lambda: None,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.edits = edits
        self.gate = gate
        self._refining = refining
        self._hits: List[int] = []  # what the last pick saw under the cursor, topmost first
        self._hover: Optional[int] = None
        self.shown = True  # the annotations are drawn (View → Show Annotations)

    def set_shown(self, shown: bool) -> None:
        """View → Show Annotations: while off, a Ctrl+click picks nothing (and says why)."""
        self.shown = bool(shown)
        if not self.shown:
            self.hover_at(None)

    def under(self, x: float, y: float) -> List[int]:
        """Ids of the annotations drawn under ``(x, y)``, topmost first."""
        return self.edits.layer.hits(x, y, self.edits.current_annotations())

    def would_pick(self, x: float, y: float) -> Optional[int]:
        """The annotation a Ctrl+click at ``(x, y)`` would select (the next one down when it cycles)."""
        hits = self.under(x, y) if self.shown else []
        if not hits:
            return None
        selected = self.edits.selected_annotation
        if hits == self._hits and selected in hits:
            return hits[(hits.index(selected) + 1) % len(hits)]
        return hits[0]

    @waits_for_accept
    def pick_at(self, x: float, y: float) -> None:
        """Ctrl+click: select the topmost annotation under ``(x, y)``; again at the same place, the next one."""
        if self._refining() is not None:
            self.statusMessage.emit("Refining an annotation: Enter replaces it, Esc cancels", 3000)
            return
        choice = self.would_pick(x, y)
        self._hits = self.under(x, y) if self.shown else []
        self.edits.select_annotation(choice)
        if not self.shown:
            self.statusMessage.emit("The annotations are hidden: H (View → Show Annotations) shows them to select "
                                    "one", 4000)
        elif choice is not None:
            ann = self.edits.dataset.annotations[choice]
            name = self.edits.dataset.categories[ann.category_id].name
            more = f" ({self._hits.index(choice) + 1} of {len(self._hits)} here)" if len(self._hits) > 1 else ""
            self.statusMessage.emit(f"Selected {name} #{choice}{more}: B brush, E eraser, R refine, Del delete", 4000)
        self.hover_at(x, y)

    def hover_at(self, x: Optional[float], y: Optional[float] = None) -> None:
        """Ctrl held over ``(x, y)``: outline what a Ctrl+click would pick; ``None``: Ctrl released, or left."""
        choice = None if x is None or self._refining() is not None else self.would_pick(x, y)
        if choice == self._hover:
            return
        self._hover = choice
        patch = self.edits.layer.patch(choice) if choice is not None else None
        if patch is None:
            self._hover = None
            self.hoverChanged.emit(None)
            return
        image = render.mask_overlay(patch.mask, HOVER_EDGE, fill_alpha=0.12, edge_width=2)
        self.hoverChanged.emit((image, patch.rect))

    def reset(self) -> None:
        """Another image: forget the last pick and the outline."""
        self._hits = []
        if self._hover is not None:
            self._hover = None
            self.hoverChanged.emit(None)
