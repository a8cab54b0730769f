"""Document edits: the open document, its categories and annotations, every change to them, and saving.

:class:`DocumentEdits` owns the :class:`annotator.data.document.Dataset`,
the current category, the :class:`~annotator.session.annotation_layer.AnnotationLayer`
(how the current image's annotations are drawn) and the autosave. User
actions push one undo command each (:mod:`annotator.session.undo`); the
commands call the public ``apply_*`` methods here, which change the document,
save it and emit the signals. This is where edits of accepted annotations
hook in (:meth:`DocumentEdits.replace_annotation`: a new mask for an
annotation in one undo step).

Saving: an accept, a deletion and their undo/redo are written at once (so a
crash at any moment after one shows loses nothing); category edits are
debounced by :data:`AUTOSAVE_MS`. With autosave off, nothing is written
until :meth:`DocumentEdits.save` or :meth:`DocumentEdits.flush`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QUndoStack

from annotator.data.image_states import STATE_FIELD, TODO
from annotator.session.annotation_layer import AnnotationLayer, CurrentImage
from annotator.session.read_only import read_only_reason
from annotator.session.rows import AnnotationRow, CategoryRow, Color
from annotator.session.style import OverlayStyle
from annotator.session.undo import (
    AddCategoryCommand,
    DeleteAnnotationCommand,
    DeleteCategoryCommand,
    EditCategoryCommand,
    ReplaceAnnotationCommand,
    SetAnnotationCategoryCommand,
)
from annotator.workers.base import make_timer

log = logging.getLogger(__name__)

#: Autosave delay after a category edit (ms). Accepts, deletions and their undo/redo save at once instead.
AUTOSAVE_MS = 250
#: Colour of the candidates when there is no current category.
NO_CATEGORY_COLOR: Color = (255, 196, 0)


def default_categories() -> List[Tuple[str, Optional[Color]]]:
    """``(name, colour)`` pairs from ``resources/default_categories.json`` (``object`` if it is missing)."""
    from annotator.data.appdata import resource_text

    text = resource_text("default_categories.json")
    if text is None:
        return [("object", None)]
    entries = json.loads(text)["categories"]
    return [(e["name"], tuple(e["color"]) if e.get("color") else None) for e in entries]


class DocumentEdits(QObject):
    """The document and every edit of it. See the module notes.

    ``image`` tells which image is current (for the annotation panel and
    overlays); ``decoder`` renders annotation overlays in the background.
    """

    annotationsChanged = Signal()  # rows or overlays of the current image changed
    categoriesChanged = Signal()
    currentCategoryChanged = Signal(int)
    colorChanged = Signal()  # the current category's colour may have changed: redraw what uses it
    imageEdited = Signal(object)  # path whose annotation count may have changed, or None for every image
    statusMessage = Signal(str, int)
    dirtyChanged = Signal(bool)
    saveFailed = Signal(str)
    saveConflict = Signal(object)  # ConflictError: the file changed on disk; ours went beside it (not saveFailed)

    def __init__(self, decoder, undo_stack: QUndoStack, image: CurrentImage, style: OverlayStyle,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.undo_stack = undo_stack
        self._image = image
        self.dataset = None  # annotator.data.document.Dataset
        self.category_id: Optional[int] = None
        self.layer = AnnotationLayer(decoder, image, style, self)
        self.layer.changed.connect(self.annotationsChanged)
        #: Save after every change (else on Ctrl+S, image or folder change and quit).
        self.autosave = True
        self._save_timer = make_timer(self, AUTOSAVE_MS, single_shot=True)
        self._save_timer.timeout.connect(self.save)
        self._closed = False
        self._current_when_removed: set = set()  # ids of deleted categories that were current then

    # -- the document ------------------------------------------------------------------------

    def set_dataset(self, dataset) -> None:
        """Edit ``dataset`` from now on (default categories added to an empty one, not worth a save by themselves)."""
        if not dataset.categories:
            dataset.add_categories(default_categories())
            dataset.saved_revision = dataset.revision
        self.dataset = dataset
        self.layer.reset(forget_hidden=True)
        self.category_id = min(dataset.categories) if dataset.categories else None
        self.categoriesChanged.emit()
        if self.category_id is not None:
            self.currentCategoryChanged.emit(self.category_id)
        self._emit_dirty()

    def current_record(self):
        """The document's record of the current image, or ``None`` (not annotated yet)."""
        path = self._image.current_path
        if self.dataset is None or path is None:
            return None
        return self.dataset.image_by_name(self.dataset.relative_name(path))

    def annotation_count(self, path: Path) -> int:
        if self.dataset is None:
            return 0
        rec = self.dataset.image_by_name(self.dataset.relative_name(path))
        return 0 if rec is None else len(self.dataset.annotations_for(rec.id))

    # -- annotations of the current image --------------------------------------------------------

    def current_annotations(self) -> list:
        rec = self.current_record()
        return [] if rec is None else self.dataset.annotations_for(rec.id)

    def annotation_rows(self) -> List[AnnotationRow]:
        return self.layer.rows(self.current_annotations(), self.dataset.categories) if self.dataset else []

    def annotation_overlays(self) -> List[Tuple[int, QImage, tuple]]:
        """``(id, overlay, rect)`` of the visible annotations of the current image (masks decoded in the background)."""
        if self.dataset is None or self._image.loaded is None:
            return []  # (not drawn before the image is)
        return self.layer.overlays(self.current_annotations(), self.dataset.categories)

    @property
    def selected_annotation(self) -> Optional[int]:
        """The annotation selected in the panel (drawn highlighted; Delete removes it)."""
        return self.layer.selected

    def select_annotation(self, annotation_id: Optional[int]) -> None:
        if annotation_id != self.layer.selected:
            self.layer.selected = annotation_id
            self.annotationsChanged.emit()

    def set_annotation_visible(self, annotation_id: int, visible: bool) -> None:
        (self.layer.hidden.discard if visible else self.layer.hidden.add)(annotation_id)
        self.annotationsChanged.emit()

    def delete_annotation(self, annotation_id: Optional[int] = None) -> None:
        """Delete ``annotation_id`` (default: the selected one)."""
        aid = self.selected_annotation if annotation_id is None else annotation_id
        if self.dataset is None or aid is None or aid not in self.dataset.annotations:
            if annotation_id is None:
                self.statusMessage.emit("Select an annotation in the Annotations panel to delete it", 3000)
            return
        ann = self.dataset.annotations[aid]
        cat = self.dataset.categories.get(ann.category_id)
        self.undo_stack.push(DeleteAnnotationCommand(self, ann))
        self.statusMessage.emit(f"Deleted {cat.name if cat else 'annotation'} #{aid} (Undo brings it back)", 5000)

    def set_annotation_category(self, annotation_id: int, category_id: int) -> None:
        ann = self.dataset.annotations.get(annotation_id) if self.dataset else None
        if ann is None or category_id not in self.dataset.categories or ann.category_id == category_id:
            return
        self.undo_stack.push(SetAnnotationCategoryCommand(self, annotation_id, category_id, ann.category_id))

    def replace_annotation(self, new, text: str = "Edit annotation", patch=None) -> bool:
        """Put ``new`` in place of the annotation with its id (e.g. an edited mask) as ONE undo step.

        ``patch``: the new mask's overlay patch, when known (drawn at once; the
        old one's, known to the layer, is kept for undo).
        """
        old = self.dataset.annotations.get(new.id) if self.dataset else None
        if old is None:
            return False
        self.undo_stack.push(ReplaceAnnotationCommand(self, old, new, text, patch, self.layer.patch(old.id)))
        return True

    def set_refining(self, annotation_id: Optional[int]) -> None:
        """Draw ``annotation_id`` as the candidate being refined (hidden from the annotation layer), or none."""
        if annotation_id != self.layer.refining:
            self.layer.refining = annotation_id
            self.annotationsChanged.emit()

    # -- categories ------------------------------------------------------------------------------

    def category_rows(self) -> List[CategoryRow]:
        if self.dataset is None:
            return []
        counts: Dict[int, int] = {}
        for ann in self.dataset.annotations.values():
            counts[ann.category_id] = counts.get(ann.category_id, 0) + 1
        rows = []
        for i, cat in enumerate(sorted(self.dataset.categories.values(), key=lambda c: c.id)):
            quick = f"Ctrl+{i + 1}" if i < 9 else None
            rows.append(CategoryRow(cat.id, cat.name, cat.color, counts.get(cat.id, 0), quick))
        return rows

    def current_category(self):
        """The current :class:`~annotator.data.document.Category`, or ``None``."""
        if self.dataset is None or self.category_id is None:
            return None
        return self.dataset.categories.get(self.category_id)

    def category_color(self) -> Color:
        cat = self.current_category()
        return tuple(cat.color) if cat is not None else NO_CATEGORY_COLOR

    def set_current_category(self, category_id: int) -> None:
        if self.dataset is None or category_id not in self.dataset.categories or category_id == self.category_id:
            return
        self.category_id = category_id
        self.currentCategoryChanged.emit(category_id)
        self.statusMessage.emit(f"Category: {self.dataset.categories[category_id].name}", 2000)
        self.colorChanged.emit()

    def quick_category(self, n: int) -> None:
        """Ctrl+``n``: make the ``n``-th category (1-based, panel order) current."""
        rows = self.category_rows()
        if 1 <= n <= len(rows):
            self.set_current_category(rows[n - 1].id)

    def add_category(self, name: str, color: Optional[Color] = None) -> bool:
        if self.dataset is None:
            return False
        name = name.strip()
        if not name or self.dataset.category_by_name(name) is not None:
            self.statusMessage.emit(f"A category called “{name}” exists already" if name else "Empty name", 4000)
            return False
        cmd = AddCategoryCommand(self, name, color)
        self.undo_stack.push(cmd)
        self.set_current_category(cmd.category_id)
        return True

    def add_categories(self, entries) -> List[str]:
        """Add ``(name, colour or None)`` entries whose name is new, as one undo step; returns the names added.

        Names already present are kept as they are (not duplicated, colour
        untouched); the current category does not change.
        """
        if self.dataset is None:
            return []
        new = []
        for name, color in entries:
            name = name.strip()
            if name and self.dataset.category_by_name(name) is None and name not in (n for n, _ in new):
                new.append((name, color))
        if new:
            self.undo_stack.beginMacro(f"Load {len(new)} categories" if len(new) > 1 else f"Add category {new[0][0]}")
            for name, color in new:
                self.undo_stack.push(AddCategoryCommand(self, name, color))
            self.undo_stack.endMacro()
        return [name for name, _ in new]

    def rename_category(self, category_id: int, name: str) -> bool:
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        name = name.strip()
        if cat is None or not name:
            return False
        other = self.dataset.category_by_name(name)
        if other is not None and other.id != category_id:  # a rename never merges two categories silently
            self.statusMessage.emit(f"A category called “{other.name}” exists already. To merge “{cat.name}” "
                                    f"into it, delete “{cat.name}” and move its annotations to “{other.name}”", 8000)
            return False
        self.undo_stack.push(EditCategoryCommand(self, category_id, "name", name, cat.name))
        return True

    def recolor_category(self, category_id: int, color: Color) -> None:
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        if cat is not None and tuple(color) != tuple(cat.color):
            self.undo_stack.push(EditCategoryCommand(self, category_id, "color", tuple(color), cat.color))

    def delete_category(self, category_id: int, reassign_to: Optional[int]) -> None:
        """Delete a category; its annotations move to ``reassign_to`` or, with ``None``, are deleted (undoable)."""
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        if cat is not None:
            self.undo_stack.push(DeleteCategoryCommand(self, category_id, cat.name, reassign_to))

    # -- apply methods (called by the undo commands: undo.DocumentTarget) ----------------------------

    def apply_add_annotations(self, annotations: Sequence[Any]) -> None:
        """Add annotations (one user step: one save, one refresh); an image annotated first is marked to do."""
        for ann in annotations:
            self.dataset.add_annotation(ann)
        for image_id in dict.fromkeys(a.image_id for a in annotations):
            if STATE_FIELD not in self.dataset.images[image_id].extra:
                self.dataset.set_image_state(image_id, TODO)  # listed from now on, with its state
        self._annotations_edited(a.image_id for a in annotations)

    def apply_remove_annotations(self, annotation_ids: Sequence[int]) -> list:
        removed = [self.dataset.remove_annotation(i) for i in annotation_ids]
        for ann in removed:
            self.layer.forget(ann.id)
        self._annotations_edited(a.image_id for a in removed)
        return removed

    def apply_replace_annotation(self, annotation, patch=None) -> Any:
        """Put ``annotation`` in place of the one with its id; ``patch``: its overlay patch, when already known."""
        old = self.dataset.replace_annotation(annotation)
        rec = self.current_record()
        if patch is not None and rec is not None and annotation.image_id == rec.id:
            self.layer.put(annotation.id, patch)
        else:
            self.layer.invalidate(annotation.id)
        self._annotations_edited((old.image_id, annotation.image_id))
        return old

    def apply_annotation_category(self, annotation_id: int, category_id: int) -> None:
        ann = self.dataset.annotations[annotation_id]
        self.dataset.set_annotation_category(annotation_id, category_id)
        self._annotations_edited((ann.image_id,))

    def apply_add_category(self, name: str, color: Optional[Color]) -> int:
        cat = self.dataset.add_category(name, color)
        self._categories_edited()
        return cat.id

    def apply_category_field(self, category_id: int, field: str, value: Any) -> None:
        if field == "name":
            self.dataset.rename_category(category_id, value)
        else:
            self.dataset.recolor_category(category_id, value)
        self._categories_edited()

    def apply_remove_category(self, category_id: int, reassign_to: Optional[int]):
        removed = self.dataset.remove_category(category_id, reassign_to)
        for ann in removed.removed_annotations:
            self.layer.forget(ann.id)
        if self.category_id == category_id:
            self._current_when_removed.add(category_id)  # its undo makes it current again
            self.category_id = reassign_to if reassign_to is not None else min(self.dataset.categories, default=None)
            if self.category_id is not None:
                self.currentCategoryChanged.emit(self.category_id)
        self._categories_edited()
        return removed

    def apply_restore_category(self, removed) -> None:
        self.dataset.restore_category(removed)
        self._categories_edited()
        cid = removed.category.id
        if cid in self._current_when_removed:  # it was current: new masks go to it again, not to where it went
            self._current_when_removed.discard(cid)
            self.set_current_category(cid)

    def apply_changed(self, image_ids) -> None:
        """The document was changed in one go outside these methods (an import's ``apply_plan``): save, refresh."""
        self._annotations_edited(image_ids)

    def document_changed(self) -> None:
        """Another part changed the document (an image's state, :mod:`annotator.session.image_states`): saved
        at once, as an accept is."""
        self._save_now()

    def _annotations_edited(self, image_ids) -> None:
        # Saved at once, not debounced: once an accept (or delete) shows, it is on disk, so a crash or
        # kill at any moment after it loses nothing (a save costs a few ms for a typical file).
        self._save_now()
        for image_id in dict.fromkeys(image_ids):
            rec = self.dataset.images.get(image_id)
            if rec is not None:
                self.imageEdited.emit(self.dataset.image_path(rec))
        self.annotationsChanged.emit()
        self.categoriesChanged.emit()

    def _categories_edited(self) -> None:
        self._schedule_save()
        self.categoriesChanged.emit()
        self.annotationsChanged.emit()
        self.imageEdited.emit(None)
        self.colorChanged.emit()

    # -- saving ----------------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self.dataset is not None and self.dataset.dirty

    @property
    def save_pending(self) -> bool:
        """An autosave is scheduled (after a category edit)."""
        return self._save_timer.isActive()

    def set_autosave(self, on: bool) -> None:
        """Save after every change (``True``), or only on Ctrl+S, image or folder change and quit."""
        self.autosave = bool(on)
        if self.autosave and self.dirty:
            self._schedule_save()
        elif not self.autosave:
            self._save_timer.stop()

    def save(self, force: bool = False) -> bool:
        """Write the working file now (atomically). On failure the user is told and the state stays unsaved.

        ``force``: overwrite the file even if another program changed it (the
        user chose "keep mine"); without it such a change is never overwritten
        and ``saveConflict`` says where this version went instead.
        """
        from annotator.data.workfile import ConflictError, ReadOnlyError

        self._save_timer.stop()
        if self.dataset is None:
            return True
        try:
            self.dataset.save(force=force)
        except ConflictError as exc:
            log.warning("save conflict: %s", exc)
            self.saveConflict.emit(exc)
            self._emit_dirty()
            return False
        except ReadOnlyError as exc:  # saving here can never work: no "press Ctrl+S"
            message = (f"Not saved: {read_only_reason(self.dataset)}. Your changes are kept in this window; "
                       "File → Save a Copy writes them to another file.")
            log.warning("save failed: %s", exc)
            self.saveFailed.emit(message)
            self._emit_dirty()
            return False
        except OSError as exc:
            reason = (exc.strerror or str(exc)).rstrip(".")
            message = f"Could not save {self.dataset.path}: {reason}. Your work is kept in memory; fix the problem and press Ctrl+S."
            log.warning("save failed: %s", exc)
            self.saveFailed.emit(message)
            self._emit_dirty()
            return False
        self._emit_dirty()
        return True

    def flush(self) -> bool:
        """Save if there is anything unsaved worth a file (image switch, folder change, close)."""
        if self.dataset is None or not self.dataset.dirty:
            return True
        if not self.dataset.annotations and not self.dataset.images and not self.dataset.path.exists():
            return True  # nothing but categories: no need to create a file yet
        return self.save()

    def close(self) -> None:
        """Shutting down: no more autosaves (call :meth:`flush` first)."""
        self._closed = True
        self._save_timer.stop()

    def _save_now(self) -> None:
        if self._closed or not self.autosave:
            self._emit_dirty()
            return
        self.save()

    def _schedule_save(self) -> None:
        self._emit_dirty()
        if not self._closed and self.autosave:
            self._save_timer.start()

    def _emit_dirty(self) -> None:
        self.dirtyChanged.emit(self.dirty)
