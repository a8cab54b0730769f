"""The annotation session: everything the window shows, without any widget.

:class:`Session` is a thin facade over parts that each own one thing:

* :class:`~annotator.session.navigation.ImageNavigator` (``session.images``):
  the folder's images, which one is current (the one owner of that fact),
  its pixels and embedding, the prefetch, the model;
* :class:`~annotator.session.prompting.Prompting` (``session.prompts``): the
  prompt, its decodes and the candidates on display;
* :class:`~annotator.session.regions.RegionController` (``session.regions``):
  region embeddings of the part of the image in view, and which embedding
  answers a prompt;
* :class:`~annotator.session.document_edits.DocumentEdits` (``session.edits``):
  the document, categories, annotations, every edit's apply method, saving;
* :class:`~annotator.session.accepting.AcceptPipeline` (``session.accepts``):
  the one way a candidate or proposals become annotations;
* :class:`~annotator.session.review.EverythingController` (``session.everything``):
  segment everything and the review of its proposals;
* :class:`~annotator.session.editing.MaskEditing` (``session.editing``): brush,
  eraser and cleanup on the candidate or an annotation, refining with SAM;
* :class:`~annotator.session.picking.AnnotationPicker` (``session.picking``):
  Ctrl+click selection of annotations on the canvas;
* :class:`~annotator.session.style.OverlayStyle` (``session.style``): the
  one owner of the overlays' opacity;
* :class:`~annotator.session.exporting.ExportRunner` (``session.exports``);
* :class:`~annotator.session.importing.ImportRunner` (``session.imports``):
  File → Import's reading (on its own thread) and its one undoable step.
* :class:`~annotator.session.identity_review.IdentityReview` (``session.identity``):
  pictures changed under the same name, and their annotations under review.

The facade routes user actions (a click goes to the review while one is open,
else to the prompt), orchestrates what spans parts (an image change, a model
change, a new folder), forwards the parts' signals under the names the window
uses, and owns saving, export and shutdown. Every user action waits behind
one :class:`~annotator.session.gate.ActionGate` while an accept is being
finished. The services (encoder, decoder, job threads) can be passed in;
they default to today's, each on its own thread.

For the window, tests and benchmarks it keeps the accessors and entry points
of what its parts hold (``session.prompt``, ``session.embedding``,
``session.add_category``...): each is a line of delegation, no logic; the
document's user actions are made by :func:`_edit_action` (behind the gate).

Why so long: the facade is the one object the window talks to; most of its lines are one-line delegations and signal forwarding to the parts (navigation, prompting, edits, accepting, review, editing, picking, regions), kept so that the window and the benchmarks need no knowledge of which part owns what.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotator.data.export import DEFAULT_TOLERANCE
from annotator.data.prompts import PromptState, clamp_box, inside
from annotator.session.accepting import AcceptPipeline
from annotator.session.document_edits import DocumentEdits
from annotator.session.editing import MaskEditing
from annotator.session.exporting import ExportRunner, export_now
from annotator.session.gate import ActionGate, waits_for_accept
from annotator.session.image_states import ImageStates
from annotator.session.image_listing import FolderImages
from annotator.session.importing import ImportRunner
from annotator.session.identity_review import IdentityReview
from annotator.session.navigation import ImageNavigator
from annotator.session.picking import AnnotationPicker
from annotator.session.prompting import Prompting
from annotator.session.read_only import read_only_reason
from annotator.session.regions import RegionController
from annotator.session.review import EverythingController
from annotator.session.rows import ImageRow
from annotator.session.style import OverlayStyle
from annotator.session.stepping import filtered_step
from annotator.session.undo import redo_step, undo_step
from annotator.session.undo_feedback import UndoState, step_message
from annotator.workers.decoder import DecoderService
from annotator.workers.encoder import EncoderService
from annotator.workers.jobs import JobService
from annotator.workers.messages import ModelInfo

log = logging.getLogger(__name__)

#: How many user actions Ctrl+Z can go back.
UNDO_LIMIT = 500


class UnsavedWork(Exception):
    """Leaving the open document would lose changes that could not be saved: ask the user first."""


def _edit_action(name: str):
    """``Session.<name>``: the user action ``DocumentEdits.<name>``, waiting behind the gate (see waits_for_accept)."""
    def action(self, *args, **kwargs):
        return self.gate.call(getattr(self.edits, name), *args, **kwargs)

    action.__name__ = name
    action.__doc__ = getattr(DocumentEdits, name).__doc__
    action.waits_for_accept = True
    return action


def _part(part: str, name: str):
    """``Session.<name>``: ``self.<part>.<name>``, forwarded."""
    return property(lambda self: getattr(getattr(self, part), name), doc=f"``{part}.{name}``")


class Session(QObject):
    """State and behaviour of one annotation window. See the module notes.

    Parameters
    ----------
    parent:
        The owning QObject (the window), or ``None``.
    encoder, decoder, everything_jobs, export_jobs:
        The services to use (default: a new :class:`EncoderService`,
        :class:`DecoderService`, and :class:`JobService` ``"sam-everything"``
        and ``"sam-export"``). :meth:`shutdown` shuts them all down.
    """

    folderChanged = Signal()  # a new folder (image list, document) is open
    imageRowChanged = Signal(int)  # a row of the image list changed
    imageListChanged = Signal()  # images joined or left the open folder's list (currentIndexChanged follows)
    currentIndexChanged = Signal(int)
    imageShown = Signal(object)  # the current image's levels (tuple of QImage, full size first), or None
    promptChanged = Signal(object)  # PromptState
    candidatesChanged = Signal(object, int)  # list[CandidateRow] (empty: none), selected index
    candidateOverlayChanged = Signal(object)  # QImage or None
    draftOverlayChanged = Signal(object)  # (QImage, rect) of the candidate edited by hand (shown over it), or None
    hoverChanged = Signal(object)  # (QImage, rect) outline of the annotation a Ctrl+click would pick, or None
    strokeDone = Signal()  # a brush or eraser stroke's result is on display (once per stroke)
    annotationsChanged = Signal()  # rows or overlays of the current image changed
    categoriesChanged = Signal()
    currentCategoryChanged = Signal(int)
    statusMessage = Signal(str, int)  # text, timeout in ms (0: until replaced)
    encoderStatus = Signal(str, float)  # "" | "model" | "loading" | "encoding", perf_counter() at its start
    modelChanged = Signal(object)  # ModelInfo
    modelFailed = Signal(object)  # ModelFailure
    downloadProgress = Signal(object, object)  # done bytes, total bytes or None
    dirtyChanged = Signal(bool)
    saveFailed = Signal(str)
    saveConflict = Signal(object)  # ConflictError (see DocumentEdits.save)
    exportProgress = Signal(int, int, str)  # done, total (0: unknown), text
    exportRunning = Signal(bool)
    exportFinished = Signal(object, object)  # Path written, ExportSummary
    exportFailed = Signal(str)  # message for the user

    def __init__(
        self,
        parent: Optional[QObject] = None,
        *,
        encoder: Optional[EncoderService] = None,
        decoder: Optional[DecoderService] = None,
        everything_jobs: Optional[JobService] = None,
        export_jobs: Optional[JobService] = None,
    ) -> None:
        super().__init__(parent)
        self.encoder = encoder if encoder is not None else EncoderService(self)
        self.decoder = decoder if decoder is not None else DecoderService(self)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self.gate = ActionGate()
        self.style = OverlayStyle(parent=self)
        self._closed = False

        self.images = ImageNavigator(self.encoder, clicks_busy=lambda: self.decoder.busy,
                                     annotation_count=lambda path: self.edits.annotation_count(path),
                                     progress=lambda path: self.states.progress(path), parent=self)
        self.edits = DocumentEdits(self.decoder, self.undo_stack, self.images, self.style, self)
        self.prompts = Prompting(self.decoder, self.undo_stack, self.images, self.style, self.edits.category_color,
                                 self)
        self.regions = RegionController(self.encoder, self.images, self.prompts,
                                        clicks_busy=lambda: self.decoder.busy, parent=self)
        self.accepts = AcceptPipeline(self.decoder, self.edits, self.undo_stack, self.gate, self.style, self.images,
                                      parent=self)
        self.everything = EverythingController(self.images, self.accepts, self.gate, self.style,
                                               self.edits.category_color, everything_jobs, self)
        self.everything.annotated = self._annotation_rles
        self.everything.stored_source = self._stored_proposals_source
        self.accepts.listeners += [self.prompts, self.everything]
        self.editing = MaskEditing(self.decoder, self.undo_stack, self.gate, self.images, self.prompts, self.edits,
                                   self.accepts, self.style, self)
        self.picking = AnnotationPicker(self.edits, self.gate, lambda: self.editing.refining, self)
        self.exports = ExportRunner(export_jobs, self)
        self.undo_state = UndoState(self.undo_stack, self.images, self)  # what Undo / Redo offer (stale steps skipped)
        self.states = ImageStates(self.edits, self.images, self.undo_stack, self.gate, self.go_to, self)
        self.imports = ImportRunner(self.edits, self.images, self.undo_stack, self.gate, parent=self,
                                    listing=FolderImages(self.images, self.go_to, self._leave_image))
        self.identity = IdentityReview(self.edits, self.images, self.undo_stack, self)  # changed pictures
        self._wire()

    def _annotation_rles(self, path: Path) -> List[Dict[str, Any]]:
        """The masks (compressed RLE) image ``path`` already has: segment everything hides their duplicates."""
        ds = self.edits.dataset
        rec = ds.image_by_name(ds.relative_name(path)) if ds is not None else None
        return [a.segmentation for a in ds.annotations_for(rec.id)] if rec is not None else []

    def _stored_proposals_source(self, path: Path):
        """Where ``sam-annotator auto`` would have stored this image's proposals: (working file, name, digest)."""
        ds, loaded = self.edits.dataset, self.images.loaded
        if ds is None or loaded is None or loaded.path != path:
            return None
        return ds.path, ds.relative_name(path), loaded.digest

    def _wire(self) -> None:
        im, pr, ed, ev, ex = self.images, self.prompts, self.edits, self.everything, self.exports
        for part in (im, pr, ed, self.accepts, ev, ex, self.editing, self.picking, self.regions, self.states,
                     self.imports):
            part.statusMessage.connect(self.statusMessage)
        self.editing.draftOverlayChanged.connect(self.draftOverlayChanged)
        self.editing.strokeDone.connect(self.strokeDone)
        self.picking.hoverChanged.connect(self.hoverChanged)
        im.imageRowChanged.connect(self.imageRowChanged)
        im.imageListChanged.connect(self.imageListChanged)
        im.currentIndexChanged.connect(self.currentIndexChanged)
        im.imageShown.connect(self._on_image_shown)
        im.embeddingArrived.connect(pr.image_ready)
        im.encoderStatus.connect(self.encoderStatus)
        im.modelChanged.connect(self._on_model_changed)
        im.modelFailed.connect(self.modelFailed)
        im.downloadProgress.connect(self.downloadProgress)
        pr.promptChanged.connect(self._on_prompt_changed)
        pr.candidatesChanged.connect(self.candidatesChanged)
        pr.candidateOverlayChanged.connect(self.candidateOverlayChanged)
        pr.acceptReady.connect(self.accept)
        ed.annotationsChanged.connect(self.annotationsChanged)
        ed.categoriesChanged.connect(self.categoriesChanged)
        ed.currentCategoryChanged.connect(self.currentCategoryChanged)
        ed.colorChanged.connect(self._on_color_changed)
        ed.imageEdited.connect(im.emit_row)
        ed.dirtyChanged.connect(self.dirtyChanged)
        ed.saveFailed.connect(self.saveFailed)
        ed.saveConflict.connect(self.saveConflict)
        ev.reviewChanged.connect(self._on_review_changed)
        self.style.changed.connect(self._on_style_changed)  # after the parts' own (they redraw first)
        ex.exportProgress.connect(self.exportProgress)
        ex.exportRunning.connect(self.exportRunning)
        ex.exportFinished.connect(self.exportFinished)
        ex.exportFailed.connect(self.exportFailed)
        idr = self.identity
        idr.statusMessage.connect(self.statusMessage)
        idr.imageFlagChanged.connect(im.emit_row)
        idr.annotationsChanged.connect(self.annotationsChanged)
        self.folderChanged.connect(idr.start)

    # -- model -----------------------------------------------------------------------------------

    load_model = _part("images", "load_model")  # in the background: modelChanged or modelFailed follows
    use_model = _part("images", "use_model")  # one already loaded (tests; a model shared between windows)
    cancel_download = _part("images", "cancel_download")

    @property
    def model_info(self) -> Optional[ModelInfo]:
        return self.images.model_info

    def _on_model_changed(self, info: ModelInfo) -> None:
        # (the navigator then encodes the current image again with the new model)
        self.everything.stop(model_changed=True)
        self.decoder.set_model(info.model)
        self.prompts.forget_result()
        self.modelChanged.emit(info)

    # -- folders and images ----------------------------------------------------------------------

    def open_folder(self, folder: Path, output: Optional[Path] = None, *, replace_bad_file: bool = False,
                    discard_unsaved: bool = False, images: Optional[List[Path]] = None) -> None:
        """Open ``folder``'s images with the working file ``output`` (default ``folder/annotations.json``).

        ``images``: just these image files (``sam-annotator a.jpg b.jpg``), in
        this order, instead of every image in ``folder``. The document opens
        at the image the user was on last time (``states.resume``), else the first.

        The working file is locked for this window; held by another window or
        program, it opens read-only (saving it then fails with a message that
        names the holder; :meth:`Dataset.save_copy` still works).

        Raises
        ------
        UnsavedWork
            The open document has changes that could not be saved; nothing
            changed. Call again with ``discard_unsaved=True`` once the user
            agreed to lose them (or saved a copy).
        ------
        annotator.data.document.DatasetError
            The working file exists but cannot be used. Nothing changes (the
            current folder stays open) and the file is not touched. Call again
            with ``replace_bad_file=True`` to start an empty document there
            (its first save keeps a backup of the bad file), or with another
            ``output``.
        annotator.data.imageio.ImageLoadError, OSError
            The folder cannot be listed.
        """
        from annotator.data.document import ANNOTATIONS_FILENAME, Dataset
        from annotator.data.imageio import list_images

        folder = Path(folder)
        output = Path(output) if output is not None else folder / ANNOTATIONS_FILENAME
        paths = list_images(folder) if images is None else [Path(p) for p in images]
        if not discard_unsaved and not self.flush():
            raise UnsavedWork("the annotations of the open folder could not be saved (see the status bar)")
        old = self.edits.dataset
        if old is not None and Path(old.path).resolve() == output.resolve():
            old.close()  # the same file again: our own lock must not make it read-only
        if replace_bad_file:
            dataset = Dataset(output, image_dir=folder)
            dataset.acquire_lock()
        else:  # one writer per working file: a second window gets it read-only
            dataset = Dataset.open(output, image_dir=folder, lock=True)
        if old is not None:
            old.close()  # its lock goes (closing twice is harmless)
        self.undo_stack.clear()
        self._leave_image()
        self.images.set_folder(folder, paths)
        dataset.prepare_save()  # the first autosave (first accept) then costs what later ones do
        self.edits.set_dataset(dataset)
        self.folderChanged.emit()
        log.info("opened %s: %d images; working file %s, %d annotations%s", folder, len(paths), output,
                 len(dataset.annotations), f"; read-only: {dataset.read_only}" if dataset.read_only else "")
        if dataset.read_only:
            self.statusMessage.emit(f"Read-only: {read_only_reason(dataset)}", 0)
        problems = dataset.check_image_sizes() if dataset.images else []
        if problems:
            self.statusMessage.emit(f"{len(problems)} recorded image(s) differ from their files: {problems[0]}", 0)
        if paths:
            self.go_to(self.states.resume_index())
        else:
            self.statusMessage.emit(f"No images in {folder}", 0)

    mark_image = _part("states", "mark")  # "todo" | "done" | "skipped": the current image, one undo step
    next_todo = _part("states", "next_todo")  # the next image to do, wrapping; says so when none is left

    #: The image list's filter (a :data:`annotator.session.rows.LIST_STATES` state; ``""``: all): D / A step
    #: through the images it shows (:mod:`annotator.session.stepping`). The window sets it.
    list_filter = ""

    def set_list_filter(self, state: str) -> None:
        self.list_filter = state or ""

    @waits_for_accept
    def next_image(self) -> None:
        self._step(1)

    @waits_for_accept
    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, direction: int) -> None:
        i, why = filtered_step(self.images, direction, self.list_filter)
        if i is not None:
            self.go_to(i)
        elif why:
            self.statusMessage.emit(why, 5000)

    @waits_for_accept
    def go_to(self, index: int) -> None:
        """Show image ``index``: prompts are cleared, the work is saved, the image is loaded and encoded."""
        if not self.images.can_show(index):
            return
        self.flush()
        self._leave_image()
        self.images.show(index)

    def _leave_image(self) -> None:
        self.everything.stop()
        self.editing.reset()
        self.picking.reset()
        self.prompts.reset()
        self.edits.layer.reset()
        self.images.clear()
        self.annotationsChanged.emit()

    def _on_image_shown(self, levels) -> None:
        self.imageShown.emit(levels)
        if levels is not None:
            self.annotationsChanged.emit()  # its annotations can be drawn now

    folder = property(lambda self: self.images.folder)
    paths = property(lambda self: self.images.paths)
    index = property(lambda self: self.images.index)
    current_path = property(lambda self: self.images.current_path, doc="The image on show (see ImageNavigator).")
    loaded = property(lambda self: self.images.loaded)
    embedding = property(lambda self: self.images.embedding)
    encoder_idle = property(lambda self: self.images.encoder_idle)

    def image_count(self) -> int:
        return self.images.image_count()

    def image_row(self, i: int) -> ImageRow:
        return self.identity.image_row(self.images.image_row(i))  # (flagged when its picture changed)

    # -- prompts, candidates, the review (a click goes to the one that is active) ----------------

    @waits_for_accept
    def add_point(self, x: float, y: float, label: int) -> None:
        """Add a point (image coordinates, x then y; label 1 foreground / 0 background).

        While proposals are being reviewed a click does not prompt SAM: label 1
        toggles the proposal under the point, label 0 unselects it.
        """
        loaded = self.loaded
        if self.current_path is None or loaded is None or not inside(x, y, loaded.width, loaded.height):
            return
        if self.everything.reviewing:
            self.everything.toggle_at(x, y, None if label == 1 else False)
            return
        self.editing.prompt_starting()
        self.prompts.add_point(x, y, label)

    @waits_for_accept
    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Set the box (any corner order; clamped to the image; too thin a box is ignored); in a review, select
        the proposals inside."""
        loaded = self.loaded
        box = clamp_box((x0, y0, x1, y1), loaded.width, loaded.height) if loaded is not None else None
        if box is None:
            return
        if self.everything.reviewing:
            self.everything.select_inside(box)
            return
        self.editing.prompt_starting()
        self.prompts.set_box(*box)

    @waits_for_accept
    def clear_prompts(self) -> None:
        """Esc: forget the current points, box and hand edits (undoable; refining: cancel it); cancels segment
        everything, or leaves its review."""
        if self.everything.running:
            self.everything.cancel()
        elif self.everything.reviewing:
            self.everything.reject_all()
        else:
            self.prompts.clear(force=self.editing.has_draft() or self.editing.refining is not None)

    @waits_for_accept
    def select_candidate(self, index: int) -> None:
        """Show candidate ``index`` (0-based); the next prompt change refines from it."""
        self.prompts.select_candidate(index)

    @waits_for_accept
    def cycle_candidate(self, step: int) -> None:
        self.prompts.cycle_candidate(step)

    def set_view_scale(self, scale: float) -> None:
        """The canvas zoomed: candidates are rendered again when their overlay would look soft."""
        self.prompts.set_view_scale(scale)

    prompt = property(lambda self: self.prompts.prompt)
    result = property(lambda self: self.prompts.result)
    selected = property(lambda self: self.prompts.selected, doc="Index of the candidate on display.")
    last_click_latency = property(lambda self: self.prompts.last_click_latency)

    def _on_prompt_changed(self, state) -> None:
        if not state.empty:
            self.everything.leave()  # going back to a prompt (undo) ends a review
        self.promptChanged.emit(state)

    def _on_review_changed(self, reviewing: bool) -> None:
        if reviewing and not self.prompt.empty and not self.accepting:  # (an accept in flight clears it itself)
            self.prompts.push(PromptState(), "Clear prompts")

    # -- accepting -------------------------------------------------------------------------------

    @waits_for_accept
    def accept(self) -> None:
        """Accept the candidate on display (or, in a review, the selected proposals) in the current category.

        Until the annotation is in the document and saved, further user
        actions wait in order (see :mod:`annotator.session.gate`).
        """
        loaded = self.loaded
        if self.dataset is None or loaded is None:
            self.statusMessage.emit(self.images.unavailable() or "Open a folder of images first", 5000)
            return
        if self.everything.reviewing:
            self.everything.accept_selected()
            return
        self.editing.accept()  # the candidate on display, with its hand edits, or the refined annotation

    @property
    def accepting(self) -> bool:
        """An accept is being finished (its full-resolution mask is being computed)."""
        return self.accepts.accepting

    def wait_for_accept(self, timeout_s: float = 30.0) -> bool:
        """Finish an accept in flight now (before saving on close, or opening another folder)."""
        return self.accepts.wait(timeout_s)

    # -- annotations and categories (DocumentEdits; the brush and friends: session.editing) ------

    delete_annotation = _edit_action("delete_annotation")
    set_annotation_category = _edit_action("set_annotation_category")
    set_current_category = _edit_action("set_current_category")
    quick_category = _edit_action("quick_category")
    add_category = _edit_action("add_category")
    add_categories = _edit_action("add_categories")
    rename_category = _edit_action("rename_category")
    recolor_category = _edit_action("recolor_category")
    delete_category = _edit_action("delete_category")
    select_annotation = _part("edits", "select_annotation")
    set_annotation_visible = _part("edits", "set_annotation_visible")

    def annotation_rows(self):
        return self.identity.annotation_rows(self.edits.annotation_rows())  # (marked when under review)

    annotation_overlays = _part("edits", "annotation_overlays")
    category_rows = _part("edits", "category_rows")
    dataset = _part("edits", "dataset")
    category_id = _part("edits", "category_id")
    selected_annotation = _part("edits", "selected_annotation")

    def set_cleanup(self, min_island: int, on_accept: bool) -> None:
        """Preferences: "remove islands" removes parts under ``min_island`` pixels; ``on_accept``: every accepted
        candidate is cleaned up (holes filled, such islands removed)."""
        self.editing.min_island = int(min_island)
        self.accepts.cleanup = int(min_island) if on_accept else None

    def _on_color_changed(self) -> None:
        self.prompts.rerender()
        self.everything.restyle()

    # -- undo ------------------------------------------------------------------------------------

    @waits_for_accept
    def undo(self) -> None:
        """Undo the last action on this image or the document (prompt steps of other images are skipped)."""
        done = undo_step(self.undo_stack)
        self.statusMessage.emit(step_message("Undid", done, self.dataset, self.current_path), 5000)

    @waits_for_accept
    def redo(self) -> None:
        done = redo_step(self.undo_stack)
        self.statusMessage.emit(step_message("Redid", done, self.dataset, self.current_path), 5000)

    # -- preferences, saving, export -------------------------------------------------------------

    autosave = property(lambda self: self.edits.autosave, doc="Save after every change (see set_autosave).")
    opacity = property(lambda self: self.style.opacity, doc="Fill opacity of every overlay (0..1).")
    dirty = property(lambda self: self.edits.dirty)

    set_autosave = _part("edits", "set_autosave")  # after every change, or only on Ctrl+S, image change, quit
    set_opacity = _part("style", "set_opacity")  # fill opacity (0..1) of the overlays, drawn again

    def _on_style_changed(self, _opacity: float) -> None:
        self.annotationsChanged.emit()

    save = _part("edits", "save")  # now, atomically; on failure the user is told and the state stays unsaved

    def flush(self) -> bool:
        """Save if there is anything unsaved worth a file (called on image switch and close)."""
        self.wait_for_accept()
        return self.edits.flush()

    def title(self) -> str:
        if self.dataset is None:
            return "sam-annotator"
        star = "*" if self.dirty else ""
        return f"{star}{self.dataset.path.name} — {self.folder} — sam-annotator"

    def export_coco(self, path: Path, fmt: str = "coco-rle", tolerance: float = DEFAULT_TOLERANCE,
                    **options: Any) -> List[str]:
        """Export now, on this thread; the window uses :meth:`start_export` (a thread, with progress)."""
        return export_now(self.dataset, path, fmt, tolerance, **options)

    def start_export(self, path: Path, fmt: str = "coco-rle", tolerance: float = DEFAULT_TOLERANCE,
                     **options: Any) -> bool:
        """Export in the background: ``exportProgress``, then ``exportFinished(path, summary)`` or ``exportFailed``."""
        return self.exports.start(self.dataset, path, fmt, tolerance, **options)

    cancel_export = _part("exports", "cancel")

    exporting = property(lambda self: self.exports.running)

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Stop the workers (joining their threads) and the timers. Call :meth:`flush` first. Idempotent."""
        self._closed = True
        self.images.stop()
        self.regions.stop()
        self.edits.close()
        if self.edits.dataset is not None:
            self.edits.dataset.close()  # the working file's lock goes
        self.gate.clear()
        self.identity.shutdown()
        c = self.everything.shutdown(timeout_ms)
        d = self.exports.shutdown(timeout_ms)
        e = self.imports.shutdown(timeout_ms)
        a = self.encoder.shutdown(timeout_ms)
        b = self.decoder.shutdown(timeout_ms)
        return a and b and c and d and e
