"""The window's model questions: which checkpoint, what to do when loading fails, and the weights download.

:class:`ModelDialogs` keeps the model request the window works with (the
command line's, then the user's later choices), asks the user when a choice
is needed and hands the request to the session, which loads the model in the
background. It computes nothing itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox, QProgressDialog

from annotator.ui.settings import Settings
from annotator.workers.messages import ModelFailure, ModelRequest



def settings_request(settings: Settings) -> ModelRequest:
    """A model request from the preferences alone (no command line)."""
    return ModelRequest(
        model_type=settings.model_type(), device=settings.device, cache_root=settings.cache_root(),
        memory_bytes=settings.memory_bytes(), disk_bytes=settings.disk_bytes(),
    )


class ModelDialogs:
    """Model questions for ``window`` (its session, settings, status bar and ``interactive`` flag).

    Attributes
    ----------
    request:
        The model request last given to the session (``None`` before any).
    progress:
        The weights-download progress dialog while a download runs.
    """

    def __init__(self, window: QMainWindow) -> None:
        self._window = window
        self.request: Optional[ModelRequest] = None
        self.progress: Optional[QProgressDialog] = None

    def load(self, request: ModelRequest) -> None:
        """Load the model ``request`` names, in the background."""
        self.request = request
        self._window.session.load_model(request)

    def cache_root(self) -> Optional[Path]:
        """The cache folder in use: the request's, else the preferences'."""
        if self.request is not None:
            return self.request.cache_root
        return self._window.settings.cache_root()

    def set_cache_bounds(self, memory_bytes: int, disk_bytes: int) -> None:
        """New embedding-cache bounds: applied to the running cache and to later requests."""
        cache = self._window.session.encoder.cache
        if cache is not None:
            cache.memory_bytes = memory_bytes
            cache.disk_bytes = disk_bytes
        if self.request is not None:
            self.request = replace(self.request, memory_bytes=memory_bytes, disk_bytes=disk_bytes)

    def choose_checkpoint(self, model_type: Optional[str] = None) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._window, "SAM checkpoint", str(Path.home()), "Checkpoints (*.pt *.pth);;All files (*)"
        )
        if path:
            base = self.request or settings_request(self._window.settings)
            self.load(replace(base, model_type=model_type, checkpoint=Path(path)))

    def failed(self, failure: ModelFailure) -> None:
        """Loading failed: offer another file, or loading it as the type the checkpoint looks like."""
        self.close_progress()
        window = self._window
        kept = window.session.model_info  # the encoder goes on with the model it had
        still = f"Still using {kept.label}." if kept is not None else ""
        if not window.interactive:
            kept_text = f" (still using {kept.label})" if kept is not None else ""
            window.statusBar().showMessage(f"The model could not be loaded{kept_text}: {failure.message}", 0)
            return
        if failure.kind == "cancelled":
            window.statusBar().showMessage("Download cancelled. File → Load Checkpoint… picks weights from a file.", 0)
            return
        box = QMessageBox(window)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("The model could not be loaded")
        box.setText(failure.message.splitlines()[0] if failure.message else "The model could not be loaded.")
        box.setDetailedText(failure.message)
        if still:
            box.setInformativeText(still)
        pick = box.addButton("Choose Another File…", QMessageBox.ButtonRole.AcceptRole)
        as_detected = None
        if failure.detected_type and failure.detected_type != failure.model_type:
            as_detected = box.addButton(f"Load as {failure.detected_type}", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is pick:
            self.choose_checkpoint()
        elif as_detected is not None and box.clickedButton() is as_detected:
            base = self.request or settings_request(window.settings)
            self.load(replace(base, model_type=failure.detected_type, checkpoint=failure.checkpoint))

    def download_progress(self, done: int, total: Optional[int]) -> None:
        """Bytes downloaded so far (``total`` ``None``: unknown); the dialog's Cancel cancels the download."""
        if self.progress is None:
            self.progress = QProgressDialog("Downloading model weights…", "Cancel", 0, 0, self._window)
            self.progress.setWindowTitle("sam-annotator")
            self.progress.setWindowModality(Qt.WindowModality.WindowModal)
            self.progress.setMinimumDuration(0)
            self.progress.canceled.connect(self._window.session.cancel_download)
        if total:
            self.progress.setMaximum(1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setLabelText(f"Downloading model weights… {done / 1e6:.0f} of {total / 1e6:.0f} MB")
        else:
            self.progress.setLabelText(f"Downloading model weights… {done / 1e6:.0f} MB")

    def close_progress(self, *_: object) -> None:
        if self.progress is not None:
            self.progress.canceled.disconnect()
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None
