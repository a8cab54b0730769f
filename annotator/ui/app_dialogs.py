"""The window's application dialogs: keyboard help, About, the log folder, error reports and Preferences.

:class:`AppDialogs` opens them for the main window (non-blocking, with
``open()``) and keeps a reference to the one showing; the dialogs themselves
are built in :mod:`annotator.ui.dialogs` and :mod:`annotator.ui.preferences`.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMainWindow

from annotator import __version__
from annotator.ui import dialogs
from annotator.ui.preferences import PreferencesDialog


class AppDialogs(QObject):
    """Application dialogs for ``window`` (its session, settings, status bar, ``interactive`` and ``closing``).

    Attributes
    ----------
    help_dialog, about_box, error_box, preferences_dialog:
        The dialog of that kind last opened (``None`` before).
    """

    #: An error report (summary, details) on its way to the GUI thread (queued).
    errorRaised = Signal(str, str)

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.help_dialog = None
        self.about_box = None
        self.error_box: Optional[dialogs.ErrorBox] = None
        self.preferences_dialog: Optional[PreferencesDialog] = None
        self.errorRaised.connect(self._show_error, Qt.ConnectionType.QueuedConnection)

    # -- help ------------------------------------------------------------------------

    def show_help(self) -> None:
        """F1: the keys in use (the user's remapped ones included) and the mouse gestures."""
        self.help_dialog = dialogs.help_dialog(self._window, self._window.settings.effective_specs())
        self.help_dialog.open()

    def about_rows(self):
        """What Help → About lists: version, model, device, weights, log, cache and settings paths."""
        from annotator.data.cachefiles import embeddings_dir
        from annotator.data.logs import log_path

        info = self._window.session.model_info
        cache_root = embeddings_dir(self._window.model_dialogs.cache_root()).parent
        return dialogs.about_rows(
            __version__,
            info.model_type if info else "none loaded",
            info.device if info else "—",
            str(info.checkpoint or "—") if info else "—",
            log_path(),
            cache_root,
            self._window.settings.path,
        )

    def show_about(self) -> None:
        self.about_box = dialogs.about_box(self._window, self.about_rows())
        self.about_box.open()

    def open_log_folder(self) -> bool:
        """Help → Open Log Folder."""
        from annotator.data.logs import log_dir

        return dialogs.open_folder(log_dir())

    # -- errors ----------------------------------------------------------------------

    def report_error(self, summary: str, details: str) -> None:
        """Report an uncaught exception; safe from any thread (the report is queued to the GUI thread)."""
        self.errorRaised.emit(summary, details)

    def _show_error(self, summary: str, details: str) -> None:
        from annotator.data.logs import log_path

        path = log_path()
        window = self._window
        window.statusBar().showMessage(f"Internal error: {summary} (details in {path})", 0)
        if not window.interactive or window.closing:
            return
        if self.error_box is None or not self.error_box.isVisible():
            self.error_box = dialogs.ErrorBox(window, path)
            self.error_box.add(summary, details)
            self.error_box.open()
        else:
            self.error_box.add(summary, details)

    # -- preferences -----------------------------------------------------------------

    def show_preferences(self) -> None:
        """Edit → Preferences: non-blocking; OK applies what can be applied now (``window.apply_settings``)."""
        dialog = PreferencesDialog(self._window.settings, parent=self._window, clear_cache=self.clear_embedding_cache)
        dialog.accepted.connect(lambda: self._preferences_accepted(dialog))
        self.preferences_dialog = dialog
        dialog.open()

    def _preferences_accepted(self, dialog: PreferencesDialog) -> None:
        self._window.apply_settings()
        if dialog.restart_required:
            self._window.statusBar().showMessage(
                "Preferences saved. The model, device and cache folder change when sam-annotator next starts.", 0
            )
        else:
            self._window.statusBar().showMessage("Preferences saved", 3000)

    def clear_embedding_cache(self) -> str:
        """Delete the stored image embeddings (all models; weights stay); returns what was done, for the dialog."""
        from annotator.data.cachefiles import clear_embeddings, embeddings_dir

        cache = self._window.session.encoder.cache
        directory = cache.directory if cache is not None and cache.directory is not None \
            else embeddings_dir(self._window.model_dialogs.cache_root())
        if cache is not None:
            cache.clear_memory()
        files, size = clear_embeddings(directory)
        return f"Deleted {files} embedding(s), {size / 2**20:.0f} MB."
