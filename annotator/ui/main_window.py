"""The main window: lays out the widgets and actions and wires them to the session.

It computes nothing: every behaviour lives in :class:`annotator.session.session.Session`
(a facade over the session's parts: images, prompting, document edits, the
accept pipeline, the segment-everything review, export), the canvas
(:mod:`annotator.ui.canvas`: view, overlays, input tools; :mod:`annotator.ui.brush`:
the brush and eraser and the switch to them) or a panel (display). The questions it asks the user live in four helpers:
:class:`~annotator.ui.file_dialogs.FileDialogs` (folders, the working file,
saving), :class:`~annotator.ui.format_dialogs.FormatDialogs` (export, import),
:class:`~annotator.ui.model_dialogs.ModelDialogs`
(checkpoint, load failures, the weights download) and
:class:`~annotator.ui.app_dialogs.AppDialogs` (help, About, error reports,
Preferences). The menus and toolbar come from the one action table
(:mod:`annotator.ui.actions`). Every handler below is a session entry point
that waits while an accept is being finished (the review's included).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QVBoxLayout, QWidget

from annotator.session.session import Session
from annotator.ui import actions, category_menu
from annotator.ui.app_dialogs import AppDialogs
from annotator.ui.brush import EditTools
from annotator.ui.candidate_strip import CandidateStrip
from annotator.ui.canvas import Canvas
from annotator.ui.categories_panel import CategoriesPanel
from annotator.ui.category_loading import CategoryLoading
from annotator.ui.dock_fit import DockFit
from annotator.ui.file_dialogs import FileDialogs
from annotator.ui.format_dialogs import FormatDialogs
from annotator.ui.model_dialogs import ModelDialogs
from annotator.ui.panels import AnnotationsPanel, EncoderStatus, ImageListPanel
from annotator.ui.resume import SettingsResume
from annotator.ui.safety_dialogs import SafetyDialogs
from annotator.ui.screen_fit import resize_to_fit
from annotator.ui.settings import Settings, apply_shortcuts
from annotator.ui.task_widgets import ReviewBar, TaskProgress
from annotator.workers.messages import ModelInfo, ModelRequest

log = logging.getLogger(__name__)

STRIP_HINT = (
    "Click an object · right click: background · drag: box · Enter: accept · B/E: brush/eraser · "
    "Ctrl+click: select · Ctrl+E: everything"
)


class MainWindow(QMainWindow):
    """The annotator window.

    Parameters
    ----------
    session:
        Defaults to a new :class:`Session` owned by the window.
    parent:
        Parent widget.
    settings:
        The user's preferences (default: :class:`Settings` ``()``, the store
        named by ``$SAM_ANNOTATOR_SETTINGS`` or the user's); read now, written
        by Edit → Preferences.

    Attributes
    ----------
    interactive:
        ``False`` (the launch smoke test) shows errors in the status bar and
        the log only, never in a dialog that waits for a click.
    closing:
        ``True`` while the window is closing (no new dialogs then).
    file_dialogs, model_dialogs, app_dialogs:
        The helpers that ask the user questions (see the module docstring).
    """

    def __init__(
        self, session: Optional[Session] = None, parent: Optional[QWidget] = None, settings: Optional[Settings] = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings if settings is not None else Settings()
        self.session = session or Session(self)
        self.session.states.resume = SettingsResume(self.settings)
        self.interactive = True
        self.closing = False
        self.file_dialogs = FileDialogs(self)
        self.model_dialogs = ModelDialogs(self)
        self.app_dialogs = AppDialogs(self)
        self.category_loading = CategoryLoading(self, self.session)

        self.canvas = Canvas(self)
        self.tools = EditTools(self.canvas, self.settings, self.session,
                               lambda text, ms: self.statusBar().showMessage(text, ms), self)
        self.strip = CandidateStrip(self)
        self.review_bar = ReviewBar(self)
        self.review_bar.setFixedHeight(self.strip.height())
        self.review_bar.hide()
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.strip)
        layout.addWidget(self.review_bar)
        self.setCentralWidget(central)

        s = self.session
        self.images = ImageListPanel(s.image_count, s.image_row, self)
        self.categories = CategoriesPanel(self)
        self.annotations = AnnotationsPanel(self)
        self._dock("Images", self.images, Qt.DockWidgetArea.LeftDockWidgetArea)
        categories = self._dock("Categories", self.categories, Qt.DockWidgetArea.RightDockWidgetArea)
        annotations = self._dock("Annotations", self.annotations, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([categories, annotations], [260, 500], Qt.Orientation.Vertical)
        self.dock_fit = DockFit(self)  # a small window: the docks give way to the canvas

        self.encoder_status = EncoderStatus(self)
        self.everything_progress = TaskProgress("everythingProgress", self)
        self.export_progress = TaskProgress("exportProgress", self)
        self.model_label = QLabel("no model", self)
        self.model_label.setObjectName("modelLabel")
        self.position_label = QLabel("", self)
        self.zoom_label = QLabel("", self)
        self.answer_label = QLabel("", self)  # which embedding answered: the whole image or the region in view
        self.answer_label.setObjectName("answerLabel")
        self.answer_label.setToolTip("The embedding SAM answered the last prompt from: the whole image, or the "
                                     "region in view, encoded finer when you zoom in (Preferences → General)")
        for w in (self.everything_progress, self.export_progress, self.encoder_status, self.position_label,
                  self.zoom_label, self.answer_label, self.model_label):
            self.statusBar().addPermanentWidget(w)
        self.format_dialogs = FormatDialogs(self)  # File → Export… and Import… (adds the import's progress)

        self.actions_by_name: Dict[str, QAction] = actions.build_actions(self, self._handlers())
        actions.build_menus(self.menuBar(), self.actions_by_name)
        self.toolbar = actions.build_toolbar(self, self.actions_by_name)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.toolbar)
        a = self.actions_by_name
        a["toggle_annotations"].setChecked(True)
        a["undo"].setEnabled(False)
        a["redo"].setEnabled(False)
        self._review_actions_enabled(False)
        self._wire()
        self.safety = SafetyDialogs(self)  # conflicts on save, load notes (it connects itself)
        self.apply_settings()
        self.strip.set_candidates((), hint=STRIP_HINT)
        self.setWindowTitle(s.title())
        resize_to_fit(self, QSize(1400, 900))  # never past the screen (small or HiDPI screens)
        self.canvas.setFocus()

    # =====================================================================================
    # construction
    # =====================================================================================

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock{title}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _handlers(self) -> Dict[str, object]:
        s, files, models, app = self.session, self.file_dialogs, self.model_dialogs, self.app_dialogs
        handlers: Dict[str, object] = {
            "open_folder": files.choose_folder,
            "open_images": files.choose_images,
            "save": files.save,
            "save_copy": files.save_copy,
            "save_as": files.save_as,
            "export_coco": self.format_dialogs.export,
            "import_labels": self.format_dialogs.import_labels,
            "choose_checkpoint": models.choose_checkpoint,
            "quit": self.close,
            "undo": s.undo,
            "redo": s.redo,
            "accept": s.accept,
            "clear_prompts": lambda: self.tools.escape() or s.clear_prompts(),
            "delete_annotation": lambda: s.delete_annotation(None),
            "next_image": s.next_image,
            "previous_image": s.previous_image,
            "next_todo": s.next_todo,
            "mark_todo": lambda: s.mark_image("todo"),
            "mark_done": lambda: s.mark_image("done"),
            "mark_skipped": lambda: s.mark_image("skipped"),
            "next_candidate": lambda: s.cycle_candidate(1),
            "previous_candidate": lambda: s.cycle_candidate(-1),
            "candidate_1": lambda: s.select_candidate(0),
            "candidate_2": lambda: s.select_candidate(1),
            "candidate_3": lambda: s.select_candidate(2),
            "brush": lambda: self.tools.toggle(False),
            "eraser": lambda: self.tools.toggle(True),
            "brush_smaller": self.tools.shrink,
            "brush_bigger": self.tools.grow,
            "refine_annotation": s.editing.refine_selected,
            "fill_holes": lambda: s.editing.cleanup("fill_holes"),
            "remove_islands": lambda: s.editing.cleanup("remove_islands"),
            "keep_largest": lambda: s.editing.cleanup("keep_largest"),
            "add_category": self.categories.add,
            "fit_view": self.canvas.fit,
            "zoom_in": lambda: self.canvas.zoom_by(1.25),
            "zoom_out": lambda: self.canvas.zoom_by(0.8),
            "actual_size": self.canvas.actual_size,
            "toggle_annotations": lambda on: (self.canvas.set_annotations_visible(on), s.picking.set_shown(on)),
            "preferences": app.show_preferences,
            "segment_everything": s.everything.start,
            "accept_proposals": s.everything.accept_selected,
            "accept_all_proposals": s.everything.accept_all,
            "reject_proposals": s.everything.reject_all,
            "help": app.show_help,
            "open_log_folder": app.open_log_folder,
            "about": app.show_about,
        }
        for i in range(1, actions.QUICK_CATEGORIES + 1):
            handlers[f"category_{i}"] = lambda n=i: s.quick_category(n)
        return handlers

    def _strip_hint(self) -> str:
        """What the strip says when it shows no candidates: how to prompt, or why the image on show cannot be used."""
        return self.session.images.current_error() or STRIP_HINT

    def _review_actions_enabled(self, on: bool) -> None:
        for name in ("accept_proposals", "accept_all_proposals", "reject_proposals"):
            self.actions_by_name[name].setEnabled(on)

    def _wire(self) -> None:
        s, c = self.session, self.canvas
        a = self.actions_by_name
        files, models = self.file_dialogs, self.model_dialogs
        # session -> widgets
        s.folderChanged.connect(self.images.reset)
        s.folderChanged.connect(self._update_title)
        s.imageRowChanged.connect(self.images.refresh_row)
        s.imageListChanged.connect(self.images.reset)
        s.currentIndexChanged.connect(self.images.set_current)
        s.imageShown.connect(c.set_image)
        s.imageShown.connect(lambda _levels: self.position_label.clear())  # the last image's cursor means nothing here
        s.promptChanged.connect(c.set_prompt)
        s.candidatesChanged.connect(lambda rows, sel: self.strip.set_candidates(rows, sel, self._strip_hint()))
        s.imageRowChanged.connect(lambda i: i == s.index and self.strip.hint.setText(self._strip_hint()))
        s.currentIndexChanged.connect(lambda _i: self.strip.hint.setText(self._strip_hint()))
        s.candidateOverlayChanged.connect(c.set_candidate_overlay)
        s.draftOverlayChanged.connect(c.set_draft_overlay)
        s.hoverChanged.connect(c.set_hover_overlay)
        s.strokeDone.connect(c.stroke_done)
        s.annotationsChanged.connect(self._refresh_annotations)
        s.categoriesChanged.connect(self._refresh_categories)
        s.currentCategoryChanged.connect(self.categories.set_current)
        s.statusMessage.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        s.encoderStatus.connect(self.encoder_status.set_state)
        s.modelChanged.connect(self._model_changed)
        s.modelFailed.connect(lambda _failure: self.model_label.setText(s.model_info.label if s.model_info else
                                                                        "no model"))  # a failed load keeps the old one
        s.modelFailed.connect(models.failed)
        s.downloadProgress.connect(models.download_progress)
        s.dirtyChanged.connect(self._update_title)
        s.saveFailed.connect(self._update_title)
        s.saveFailed.connect(files.save_failed)
        s.undo_state.changed.connect(lambda *state: _show_undo_state(a["undo"], a["redo"], *state))
        s.undo_state.refresh()
        ev = s.everything
        ev.runningChanged.connect(self._everything_running)
        ev.progress.connect(self.everything_progress.set_progress)
        ev.reviewChanged.connect(self._review_changed)
        ev.overlaysChanged.connect(lambda: c.set_proposals(ev.overlays()))
        ev.proposalChanged.connect(c.update_proposal)
        ev.selectionChanged.connect(self.review_bar.set_counts)
        self.everything_progress.cancelRequested.connect(ev.cancel)
        self.review_bar.acceptSelected.connect(a["accept_proposals"].trigger)
        self.review_bar.acceptAll.connect(a["accept_all_proposals"].trigger)
        self.review_bar.rejectAll.connect(a["reject_proposals"].trigger)
        s.exportRunning.connect(lambda on: self.export_progress.start("Exporting…") if on
                                else self.export_progress.finish())
        s.exportProgress.connect(self.export_progress.set_progress)
        self.format_dialogs.wire()
        self.export_progress.cancelRequested.connect(s.cancel_export)
        # widgets -> session
        c.pointClicked.connect(s.add_point)
        c.boxDrawn.connect(s.set_box)
        c.strokeDrawn.connect(s.editing.stroke)
        c.scribbleDrawn.connect(s.editing.scribble)
        c.pickClicked.connect(s.picking.pick_at)
        c.pickHovered.connect(lambda at: s.picking.hover_at(*(at or (None,))))
        c.spaceReleased.connect(a["accept"].trigger)
        c.viewScaleChanged.connect(s.set_view_scale)
        c.viewScaleChanged.connect(lambda k: self.zoom_label.setText(f"{k * 100:.0f}%"))
        c.cursorMoved.connect(lambda x, y: self.position_label.setText(f"x {x:.0f}  y {y:.0f}"))
        c.visibleRegionChanged.connect(s.regions.view_changed)
        s.regions.answerChanged.connect(lambda text: self.answer_label.setText(f"SAM: {text}" if text else ""))
        self.strip.candidateChosen.connect(s.select_candidate)
        self.images.imageChosen.connect(s.go_to)
        self.images.filterChanged.connect(s.set_list_filter)
        self.annotations.selected.connect(s.select_annotation)
        self.annotations.visibilityChanged.connect(s.set_annotation_visible)
        self.annotations.deleteRequested.connect(s.delete_annotation)
        self.annotations.categoryChangeRequested.connect(s.set_annotation_category)
        cp = self.categories
        cp.currentChanged.connect(s.set_current_category)
        cp.addRequested.connect(s.add_category)
        cp.renameRequested.connect(s.rename_category)
        cp.recolorRequested.connect(s.recolor_category)
        cp.deleteRequested.connect(s.delete_category)
        cp.loadRequested.connect(self.category_loading.choose)

    # =====================================================================================
    # refreshers (pull rows from the session)
    # =====================================================================================

    def _refresh_annotations(self) -> None:
        s = self.session
        self.canvas.set_annotation_overlays(s.annotation_overlays())
        self.annotations.set_rows(s.annotation_rows(), s.selected_annotation)

    def _refresh_categories(self) -> None:
        rows = category_menu.sync(self.actions_by_name, self.session.category_rows())
        self.categories.set_rows(rows, self.session.category_id)
        self.annotations.set_categories(rows)

    def _update_title(self, *_: object) -> None:
        self.setWindowTitle(self.session.title())

    def _model_changed(self, info: ModelInfo) -> None:
        self.model_dialogs.close_progress()
        self.model_label.setText(info.label)
        self.model_label.setToolTip(str(info.checkpoint or ""))

    def _everything_running(self, running: bool) -> None:
        self.actions_by_name["segment_everything"].setEnabled(not running)
        if running:
            self.everything_progress.start("Segmenting everything…")
        else:
            self.everything_progress.finish()

    def _review_changed(self, reviewing: bool) -> None:
        if reviewing:
            self.tools.use_prompt()  # a click selects proposals now; nothing is painted meanwhile
        self.strip.setVisible(not reviewing)
        self.review_bar.setVisible(reviewing)
        self._review_actions_enabled(reviewing)
        self.canvas.setFocus()

    # =====================================================================================
    # entry points (the launcher, the error hook)
    # =====================================================================================

    def start(self, folder: Optional[Path] = None, output: Optional[Path] = None,
              model: Optional[ModelRequest] = None, images: Optional[List[Path]] = None,
              categories: Optional[Path] = None) -> None:
        """Open ``folder`` (if any; ``images``: just these files of it), add the ``categories`` list to its working
        file, and start loading ``model`` in the background."""
        self.category_loading.load_when_open(categories)
        if folder is not None:
            self.open_folder(Path(folder), output, images)
        if model is not None:
            self.model_dialogs.load(model)

    def use_model(self, info: ModelInfo) -> None:
        self.session.use_model(info)

    def open_folder(self, folder: Path, output: Optional[Path] = None, images: Optional[List[Path]] = None) -> bool:
        """Open ``folder`` (``images``: just these files); a bad working file is never overwritten without the user's say."""
        return self.file_dialogs.open_folder(folder, output, images=images)

    def show_error(self, summary: str, details: str) -> None:
        """Report an uncaught exception (see :func:`annotator.data.logs.install_excepthook`).

        Safe to call from any thread: the report reaches the GUI thread through
        a queued signal, where a dialog shows the summary, the details and the
        log file's path (one dialog collects further errors while it is open).
        """
        self.app_dialogs.report_error(summary, details)

    def apply_settings(self) -> None:
        """Take the preferences that apply at once: shortcuts, opacity, autosave, region encoding, cache bounds,
        the image memory budget."""
        st = self.settings
        apply_shortcuts(self.actions_by_name, st)
        self._refresh_categories()  # the quick keys the panel shows
        self.session.set_autosave(st.autosave)
        self.session.regions.set_enabled(st.region_encoding)
        self.session.set_opacity(st.overlay_opacity)
        self.session.set_cleanup(st.min_island_px, st.cleanup_on_accept)
        self.model_dialogs.set_cache_bounds(st.memory_bytes(), st.disk_bytes())
        self.session.encoder.image_budget = st.image_budget_bytes()  # larger images: refused, never prefetched

    # =====================================================================================
    # closing
    # =====================================================================================

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.closing = True
        if not self.session.flush() and not self.file_dialogs.quit_unsaved():
            self.closing = False
            event.ignore()
            return
        self.model_dialogs.close_progress()
        self.encoder_status.stop()
        self.everything_progress.finish()
        self.export_progress.finish()
        self.format_dialogs.import_progress.finish()
        if (self.session.encoder.busy or self.session.everything.running or self.session.exporting
                or self.session.imports.running):
            self.hide()  # the window goes at once; the encode in flight may take a moment to finish
            QApplication.processEvents()
        self.session.shutdown()
        event.accept()


def _show_undo_state(undo, redo, can_undo: bool, undo_text: str, can_redo: bool, redo_text: str) -> None:
    """The Undo and Redo actions offer what Ctrl+Z and Ctrl+Shift+Z would do (session.undo_state)."""
    undo.setEnabled(can_undo)
    undo.setText(f"&Undo {undo_text}".strip())
    redo.setEnabled(can_redo)
    redo.setText(f"&Redo {redo_text}".strip())
