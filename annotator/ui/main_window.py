"""The main window: builds the widgets and actions, wires them to the session, asks the user questions.

It computes nothing: every behaviour lives in :class:`annotator.session.session.Session`
(a facade over the session's parts: images, prompting, document edits, the
accept pipeline, the segment-everything review, export), the canvas
(drawing, mouse) or a panel (display). What remains here is layout, signal
wiring and the dialogs. Every handler below is a session entry point that
waits while an accept is being finished (the review's included).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from annotator import __version__

from annotator.ui import actions

from annotator.ui import dialogs
from annotator.ui.candidate_strip import CandidateStrip
from annotator.ui.canvas import Canvas
from annotator.ui.categories_panel import CategoriesPanel
from annotator.workers.messages import ModelFailure, ModelInfo, ModelRequest
from annotator.ui.panels import AnnotationsPanel, EncoderStatus, ImageListPanel
from annotator.session.session import Session
from annotator.ui.settings import Settings, apply_shortcuts
from annotator.ui.task_widgets import ReviewBar, TaskProgress

log = logging.getLogger(__name__)

STRIP_HINT = (
    "Click an object to segment it · right click: background · drag: box · Enter/Space: accept · "
    "Ctrl+E: segment everything"
)


class _ErrorRelay(QObject):
    """Carries error reports from any thread to the GUI thread (a queued signal)."""

    raised = Signal(str, str)  # summary, details


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
    """

    def __init__(
        self, session: Optional[Session] = None, parent: Optional[QWidget] = None, settings: Optional[Settings] = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings if settings is not None else Settings()
        self.session = session or Session(self)
        self.model_request: Optional[ModelRequest] = None
        self.interactive = True
        self._progress: Optional[QProgressDialog] = None
        self._save_error_shown = False
        self._closing = False
        self.error_box: Optional[dialogs.ErrorBox] = None
        self.preferences_dialog = None
        self._errors = _ErrorRelay(self)
        self._errors.raised.connect(self._show_error, Qt.ConnectionType.QueuedConnection)

        self.canvas = Canvas(self)
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

        self.encoder_status = EncoderStatus(self)
        self.everything_progress = TaskProgress("everythingProgress", self)
        self.export_progress = TaskProgress("exportProgress", self)
        self.model_label = QLabel("no model", self)
        self.model_label.setObjectName("modelLabel")
        self.position_label = QLabel("", self)
        self.zoom_label = QLabel("", self)
        for w in (self.everything_progress, self.export_progress, self.encoder_status, self.position_label,
                  self.zoom_label, self.model_label):
            self.statusBar().addPermanentWidget(w)

        self.actions_by_name: Dict[str, QAction] = actions.build_actions(self, self._handlers())
        self._build_menus()
        self._build_toolbar()
        self._wire()
        self.apply_settings()
        self.strip.set_candidates((), hint=STRIP_HINT)
        self.setWindowTitle(s.title())
        self.resize(1400, 900)
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
        s = self.session
        handlers: Dict[str, object] = {
            "open_folder": self.choose_folder,
            "save": self.save,
            "export_coco": self.export_coco,
            "choose_checkpoint": self.choose_checkpoint,
            "quit": self.close,
            "undo": s.undo,
            "redo": s.redo,
            "accept": s.accept,
            "clear_prompts": s.clear_prompts,
            "delete_annotation": lambda: s.delete_annotation(None),
            "next_image": s.next_image,
            "previous_image": s.previous_image,
            "next_candidate": lambda: s.cycle_candidate(1),
            "previous_candidate": lambda: s.cycle_candidate(-1),
            "candidate_1": lambda: s.select_candidate(0),
            "candidate_2": lambda: s.select_candidate(1),
            "candidate_3": lambda: s.select_candidate(2),
            "add_category": self.categories.add,
            "fit_view": self.canvas.fit,
            "zoom_in": lambda: self.canvas.zoom_by(1.25),
            "zoom_out": lambda: self.canvas.zoom_by(0.8),
            "actual_size": self.canvas.actual_size,
            "toggle_annotations": self.canvas.set_annotations_visible,
            "preferences": self.show_preferences,
            "segment_everything": s.everything.start,
            "accept_proposals": s.everything.accept_selected,
            "accept_all_proposals": s.everything.accept_all,
            "reject_proposals": s.everything.reject_all,
            "help": self.show_help,
            "open_log_folder": self.open_log_folder,
            "about": self.show_about,
        }
        for i in range(1, actions.QUICK_CATEGORIES + 1):
            handlers[f"category_{i}"] = lambda n=i: s.quick_category(n)
        return handlers

    def _build_menus(self) -> None:
        menus = {name: self.menuBar().addMenu(f"&{name}") for name in actions.MENUS}
        for spec in actions.ACTIONS:
            menu = menus[spec.menu]
            if spec.name in ("quit", "category_1", "add_category", "preferences", "accept_proposals", "about"):
                menu.addSeparator()
            menu.addAction(self.actions_by_name[spec.name])
        self.actions_by_name["toggle_annotations"].setChecked(True)
        self.actions_by_name["undo"].setEnabled(False)
        self.actions_by_name["redo"].setEnabled(False)
        self._review_actions_enabled(False)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setObjectName("toolbar")
        bar.setMovable(False)
        bar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        a = self.actions_by_name
        for name in ("open_folder", "save", "export_coco"):
            bar.addAction(a[name])
        bar.addSeparator()
        bar.addAction(a["segment_everything"])
        for name, text in (("undo", "Undo"), ("redo", "Redo")):
            a[name].setIconText(text)  # the menu text names the step ("Undo Accept object"); the button stays short
            bar.addAction(a[name])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.toolbar = bar
        for button in bar.findChildren(QWidget):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys keep going to the canvas

    def _review_actions_enabled(self, on: bool) -> None:
        for name in ("accept_proposals", "accept_all_proposals", "reject_proposals"):
            self.actions_by_name[name].setEnabled(on)

    def _wire(self) -> None:
        s, c = self.session, self.canvas
        a = self.actions_by_name
        # session -> widgets
        s.folderChanged.connect(self.images.reset)
        s.folderChanged.connect(self._update_title)
        s.imageRowChanged.connect(self.images.refresh_row)
        s.currentIndexChanged.connect(self.images.set_current)
        s.imageShown.connect(c.set_image)
        s.promptChanged.connect(c.set_prompt)
        s.candidatesChanged.connect(lambda rows, sel: self.strip.set_candidates(rows, sel, STRIP_HINT))
        s.candidateOverlayChanged.connect(c.set_candidate_overlay)
        s.annotationsChanged.connect(self._refresh_annotations)
        s.categoriesChanged.connect(self._refresh_categories)
        s.currentCategoryChanged.connect(self.categories.set_current)
        s.statusMessage.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        s.encoderStatus.connect(self.encoder_status.set_state)
        s.modelChanged.connect(self._model_changed)
        s.modelFailed.connect(self._model_failed)
        s.downloadProgress.connect(self._download_progress)
        s.dirtyChanged.connect(self._update_title)
        s.saveFailed.connect(self._save_failed)
        s.undo_stack.canUndoChanged.connect(a["undo"].setEnabled)
        s.undo_stack.canRedoChanged.connect(a["redo"].setEnabled)
        s.undo_stack.undoTextChanged.connect(lambda t: a["undo"].setText(f"&Undo {t}".strip()))
        s.undo_stack.redoTextChanged.connect(lambda t: a["redo"].setText(f"&Redo {t}".strip()))
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
        s.exportRunning.connect(self._export_running)
        s.exportProgress.connect(self.export_progress.set_progress)
        s.exportFinished.connect(self._export_finished)
        s.exportFailed.connect(self._export_failed)
        self.export_progress.cancelRequested.connect(s.cancel_export)
        # widgets -> session
        c.pointClicked.connect(s.add_point)
        c.boxDrawn.connect(s.set_box)
        c.spaceReleased.connect(a["accept"].trigger)
        c.viewScaleChanged.connect(s.set_view_scale)
        c.viewScaleChanged.connect(lambda k: self.zoom_label.setText(f"{k * 100:.0f}%"))
        c.cursorMoved.connect(lambda x, y: self.position_label.setText(f"x {x:.0f}  y {y:.0f}"))
        self.strip.candidateChosen.connect(s.select_candidate)
        self.images.imageChosen.connect(s.go_to)
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

    # =====================================================================================
    # refreshers (pull rows from the session)
    # =====================================================================================

    def _refresh_annotations(self) -> None:
        s = self.session
        self.canvas.set_annotation_overlays(s.annotation_overlays())
        self.annotations.set_rows(s.annotation_rows(), s.selected_annotation)

    def _refresh_categories(self) -> None:
        rows = self.session.category_rows()
        self.categories.set_rows(rows, self.session.category_id)
        self.annotations.set_categories(rows)

    def _update_title(self, *_: object) -> None:
        self.setWindowTitle(self.session.title())

    # =====================================================================================
    # segment everything
    # =====================================================================================

    def _everything_running(self, running: bool) -> None:
        self.actions_by_name["segment_everything"].setEnabled(not running)
        if running:
            self.everything_progress.start("Segmenting everything…")
        else:
            self.everything_progress.finish()

    def _review_changed(self, reviewing: bool) -> None:
        self.strip.setVisible(not reviewing)
        self.review_bar.setVisible(reviewing)
        self._review_actions_enabled(reviewing)
        self.canvas.setFocus()

    # =====================================================================================
    # starting
    # =====================================================================================

    def start(self, folder: Optional[Path] = None, output: Optional[Path] = None,
              model: Optional[ModelRequest] = None) -> None:
        """Open ``folder`` (if any) and start loading ``model`` in the background."""
        if folder is not None:
            self.open_folder(Path(folder), output)
        if model is not None:
            self.model_request = model
            self.session.load_model(model)

    def use_model(self, info: ModelInfo) -> None:
        self.session.use_model(info)

    # =====================================================================================
    # files
    # =====================================================================================

    def choose_folder(self) -> None:
        start = str(self.session.folder or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path, output: Optional[Path] = None) -> bool:
        """Open ``folder``; a bad working file is never overwritten without the user's say."""
        from annotator.data.document import DatasetError
        from annotator.data.imageio import ImageLoadError

        try:
            self.session.open_folder(folder, output)
            return True
        except DatasetError as exc:
            return self._bad_dataset(folder, output, exc)
        except (ImageLoadError, OSError) as exc:
            QMessageBox.warning(self, "Cannot open folder", f"{folder}\n\n{exc}")
            return False

    def _bad_dataset(self, folder: Path, output: Optional[Path], exc: Exception) -> bool:
        path = Path(getattr(exc, "path", output or folder / "annotations.json"))
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("The annotation file cannot be used")
        box.setText(f"<b>{path.name}</b> in {path.parent} cannot be loaded, so it has not been opened or changed.")
        box.setInformativeText(
            "Choose “Work in a New File…” to annotate into another file, or “Start Over” to replace it "
            "(a backup copy is kept next to it)."
        )
        box.setDetailedText(str(exc))
        new_file = box.addButton("Work in a New File…", QMessageBox.ButtonRole.AcceptRole)
        start_over = box.addButton("Start Over", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        try:
            if clicked is new_file:
                target, _ = QFileDialog.getSaveFileName(
                    self, "New annotation file", str(path.with_name(path.stem + "-new.json")), "COCO JSON (*.json)"
                )
                return bool(target) and self.open_folder(folder, Path(target))
            if clicked is start_over:
                self.session.open_folder(folder, path, replace_bad_file=True)
                return True
        except Exception as again:  # noqa: BLE001 - shown to the user
            QMessageBox.warning(self, "Cannot open folder", str(again))
        return False

    def save(self) -> None:
        if self.session.save():
            self.statusBar().showMessage(f"Saved {self.session.dataset.path}" if self.session.dataset else "", 3000)

    def _save_failed(self, message: str) -> None:
        self.statusBar().showMessage(message, 0)
        self._update_title()
        if not self._save_error_shown and not self._closing:  # one dialog per streak of failures
            self._save_error_shown = True
            QMessageBox.warning(self, "Could not save", message)
        self.session.dirtyChanged.connect(self._reset_save_error, Qt.ConnectionType.SingleShotConnection)

    def _reset_save_error(self, dirty: bool) -> None:
        if not dirty:
            self._save_error_shown = False

    def export_coco(self) -> None:
        if self.session.dataset is None:
            self.statusBar().showMessage("Open a folder first", 3000)
            return
        rle, poly = "COCO JSON, RLE masks (*.json)", "COCO JSON, polygons (*.json)"
        default = self.session.dataset.path.with_name("coco_export.json")
        target, chosen = QFileDialog.getSaveFileName(self, "Export COCO", str(default), f"{rle};;{poly}", rle)
        if not target:
            return
        fmt = "coco-polygon" if chosen == poly else "coco-rle"
        self.session.start_export(Path(target), fmt)

    def _export_running(self, running: bool) -> None:
        if running:
            self.export_progress.start("Exporting…")
        else:
            self.export_progress.finish()

    def _export_finished(self, path: Path, warnings: List[str]) -> None:
        self.statusBar().showMessage(f"Exported {path}", 5000)
        if warnings and self.interactive:
            more = f"\n… and {len(warnings) - 20} more" if len(warnings) > 20 else ""
            QMessageBox.information(self, "Exported with warnings", "\n".join(warnings[:20]) + more)

    def _export_failed(self, message: str) -> None:
        self.statusBar().showMessage(f"Export failed: {message.splitlines()[0] if message else ''}", 0)
        if self.interactive:
            QMessageBox.warning(self, "Export failed", message)

    # =====================================================================================
    # model
    # =====================================================================================

    def choose_checkpoint(self, model_type: Optional[str] = None) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", str(Path.home()), "Checkpoints (*.pt *.pth);;All files (*)")
        if path:
            base = self.model_request or self.settings_request()
            self.model_request = replace(base, model_type=model_type, checkpoint=Path(path))
            self.session.load_model(self.model_request)

    def _model_changed(self, info: ModelInfo) -> None:
        self._close_progress()
        self.model_label.setText(info.label)
        self.model_label.setToolTip(str(info.checkpoint or ""))

    def _model_failed(self, failure: ModelFailure) -> None:
        self._close_progress()
        self.model_label.setText("no model")
        if not self.interactive:
            self.statusBar().showMessage(f"The model could not be loaded: {failure.message}", 0)
            return
        if failure.kind == "cancelled":
            self.statusBar().showMessage("Download cancelled. File → Load Checkpoint… picks weights from a file.", 0)
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("The model could not be loaded")
        box.setText(failure.message.splitlines()[0] if failure.message else "The model could not be loaded.")
        box.setDetailedText(failure.message)
        pick = box.addButton("Choose Another File…", QMessageBox.ButtonRole.AcceptRole)
        as_detected = None
        if failure.detected_type and failure.detected_type != failure.model_type:
            as_detected = box.addButton(f"Load as {failure.detected_type}", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is pick:
            self.choose_checkpoint()
        elif as_detected is not None and box.clickedButton() is as_detected:
            base = self.model_request or self.settings_request()
            self.model_request = replace(base, model_type=failure.detected_type, checkpoint=failure.checkpoint)
            self.session.load_model(self.model_request)

    def _download_progress(self, done: int, total: Optional[int]) -> None:
        if self._progress is None:
            self._progress = QProgressDialog("Downloading model weights…", "Cancel", 0, 0, self)
            self._progress.setWindowTitle("sam-annotator")
            self._progress.setWindowModality(Qt.WindowModality.WindowModal)
            self._progress.setMinimumDuration(0)
            self._progress.canceled.connect(self.session.cancel_download)
        if total:
            self._progress.setMaximum(1000)
            self._progress.setValue(int(1000 * done / total))
            self._progress.setLabelText(f"Downloading model weights… {done / 1e6:.0f} of {total / 1e6:.0f} MB")
        else:
            self._progress.setLabelText(f"Downloading model weights… {done / 1e6:.0f} MB")

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.canceled.disconnect()
            self._progress.close()
            self._progress.deleteLater()
            self._progress = None

    # =====================================================================================
    # help
    # =====================================================================================

    def show_help(self) -> None:
        """F1: the keys in use (the user's remapped ones included) and the mouse gestures."""
        self.help_dialog = dialogs.help_dialog(self, self.settings.effective_specs())
        self.help_dialog.open()

    def about_rows(self):
        """What Help → About lists: version, model, device, weights, log, cache and settings paths."""
        from annotator.data.logs import log_path
        from annotator.data.cachefiles import embeddings_dir

        info = self.session.model_info
        cache_root = embeddings_dir(self._cache_root()).parent
        return dialogs.about_rows(
            __version__,
            info.model_type if info else "none loaded",
            info.device if info else "—",
            str(info.checkpoint or "—") if info else "—",
            log_path(),
            cache_root,
            self.settings.path,
        )

    def show_about(self) -> None:
        self.about_box = dialogs.about_box(self, self.about_rows())
        self.about_box.open()

    def open_log_folder(self) -> bool:
        """Help → Open Log Folder."""
        from annotator.data.logs import log_dir

        return dialogs.open_folder(log_dir())

    def show_error(self, summary: str, details: str) -> None:
        """Report an uncaught exception (see :func:`annotator.data.logs.install_excepthook`).

        Safe to call from any thread: the report reaches the GUI thread through
        a queued signal, where a dialog shows the summary, the details and the
        log file's path (one dialog collects further errors while it is open).
        """
        self._errors.raised.emit(summary, details)

    def _show_error(self, summary: str, details: str) -> None:
        from annotator.data.logs import log_path

        path = log_path()
        self.statusBar().showMessage(f"Internal error: {summary} (details in {path})", 0)
        if not self.interactive or self._closing:
            return
        if self.error_box is None or not self.error_box.isVisible():
            self.error_box = dialogs.ErrorBox(self, path)
            self.error_box.add(summary, details)
            self.error_box.open()
        else:
            self.error_box.add(summary, details)

    # =====================================================================================
    # preferences
    # =====================================================================================

    def settings_request(self) -> ModelRequest:
        """A model request from the preferences alone (no command line)."""
        st = self.settings
        return ModelRequest(
            model_type=st.model_type(), device=st.device, cache_root=st.cache_root(),
            memory_bytes=st.memory_bytes(), disk_bytes=st.disk_bytes(),
        )

    def _cache_root(self) -> Optional[Path]:
        if self.model_request is not None:
            return self.model_request.cache_root
        return self.settings.cache_root()

    def apply_settings(self) -> None:
        """Take the preferences that apply at once: shortcuts, opacity, autosave, cache bounds."""
        st = self.settings
        apply_shortcuts(self.actions_by_name, st)
        self.session.set_autosave(st.autosave)
        self.session.set_opacity(st.overlay_opacity)
        cache = self.session.encoder.cache
        if cache is not None:
            cache.memory_bytes = st.memory_bytes()
            cache.disk_bytes = st.disk_bytes()
        if self.model_request is not None:
            self.model_request = replace(self.model_request, memory_bytes=st.memory_bytes(),
                                         disk_bytes=st.disk_bytes())

    def show_preferences(self) -> None:
        """Edit → Preferences: non-blocking; OK applies what can be applied now."""
        from annotator.ui.preferences import PreferencesDialog

        dialog = PreferencesDialog(self.settings, parent=self, clear_cache=self.clear_embedding_cache)
        dialog.accepted.connect(lambda: self._preferences_accepted(dialog))
        self.preferences_dialog = dialog
        dialog.open()

    def _preferences_accepted(self, dialog) -> None:
        self.apply_settings()
        if dialog.restart_required:
            self.statusBar().showMessage(
                "Preferences saved. The model, device and cache folder change when sam-annotator next starts.", 0
            )
        else:
            self.statusBar().showMessage("Preferences saved", 3000)

    def clear_embedding_cache(self) -> str:
        """Delete the stored image embeddings (all models; weights stay); returns what was done, for the dialog."""
        from annotator.data.cachefiles import clear_embeddings, embeddings_dir

        cache = self.session.encoder.cache
        directory = cache.directory if cache is not None and cache.directory is not None \
            else embeddings_dir(self._cache_root())
        if cache is not None:
            cache.clear_memory()
        files, size = clear_embeddings(directory)
        return f"Deleted {files} embedding(s), {size / 2**20:.0f} MB."

    # =====================================================================================
    # closing
    # =====================================================================================

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self._closing = True
        if not self.session.flush():
            answer = QMessageBox.question(
                self, "Unsaved annotations",
                "The annotations could not be saved (see the status bar). Quit anyway and lose the unsaved changes?",
                QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Discard:
                self._closing = False
                event.ignore()
                return
        self._close_progress()
        self.encoder_status.stop()
        self.everything_progress.finish()
        self.export_progress.finish()
        if self.session.encoder.busy or self.session.everything.running or self.session.exporting:
            self.hide()  # the window goes at once; the encode in flight may take a moment to finish
            QApplication.processEvents()
        self.session.shutdown()
        event.accept()
