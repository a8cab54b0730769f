"""The window's questions and reports about files: open a folder, a bad working file, saving, quitting unsaved.

(Export and import: :mod:`annotator.ui.format_dialogs`.)

:class:`FileDialogs` asks the user (file choosers, message boxes) and hands
the answer to the session; it computes nothing itself. A bad working file is
never overwritten without the user's say.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from annotator.session.read_only import read_only_reason


class FileDialogs:
    """File questions for ``window`` (its session, status bar, ``interactive`` and ``closing`` flags)."""

    def __init__(self, window: QMainWindow) -> None:
        self._window = window
        self._save_error_shown = False

    @property
    def _session(self):
        return self._window.session

    def _status(self, text: str, ms: int = 0) -> None:
        self._window.statusBar().showMessage(text, ms)

    # -- opening ---------------------------------------------------------------------

    def choose_folder(self) -> None:
        start = str(self._session.folder or Path.home())
        folder = QFileDialog.getExistingDirectory(self._window, "Open a folder of images", start)
        if folder:
            self.open_folder(Path(folder))

    def choose_images(self) -> None:
        """File → Open Images…: one or more image files; their working file goes in their common folder."""
        from annotator.data.image_states import common_folder
        from annotator.data.imageio import IMAGE_EXTENSIONS

        start = str(self._session.folder or Path.home())
        patterns = " ".join(f"*{e}" for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper()))
        names, _ = QFileDialog.getOpenFileNames(self._window, "Open images", start, f"Images ({patterns})")
        if not names:
            return
        images = [Path(n) for n in names]
        try:
            folder, output = common_folder(images), None
        except ValueError as exc:  # no folder to put the working file in: ask where
            target, _ = QFileDialog.getSaveFileName(self._window, f"Working file ({exc})", str(Path.home() /
                                                    "annotations.json"), "COCO JSON (*.json)")
            if not target:
                return
            folder, output = Path(target).parent, Path(target)
        self.open_folder(folder, output, images=images)

    def open_folder(self, folder: Path, output: Optional[Path] = None, discard_unsaved: bool = False,
                    images: Optional[List[Path]] = None) -> bool:
        """Open ``folder`` (``images``: just these files of it); a bad working file is never overwritten, nor
        unsaved work dropped, without the user's say."""
        from annotator.data.document import DatasetError
        from annotator.data.imageio import ImageLoadError
        from annotator.session.session import UnsavedWork

        try:
            self._session.open_folder(folder, output, discard_unsaved=discard_unsaved, images=images)
            dataset = self._session.dataset
            if dataset is not None and dataset.read_only and self._window.interactive:
                QMessageBox.information(self._window, "Opened read-only",
                                        f"{read_only_reason(dataset)}.\n\nThis window opened it read-only: your "
                                        "changes cannot be saved to it; File → Save a Copy writes them elsewhere.")
            return True
        except UnsavedWork:
            if not self.leave_unsaved("Open another folder"):
                return False
            return self.open_folder(folder, output, discard_unsaved=True, images=images)
        except DatasetError as exc:
            return self._bad_dataset(folder, output, exc, images)
        except (ImageLoadError, OSError) as exc:
            QMessageBox.warning(self._window, "Cannot open folder", f"{folder}\n\n{exc}")
            return False

    def _bad_dataset(self, folder: Path, output: Optional[Path], exc: Exception,
                     images: Optional[List[Path]] = None) -> bool:
        path = Path(getattr(exc, "path", output or folder / "annotations.json"))
        box = QMessageBox(self._window)
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
                    self._window, "New annotation file", str(path.with_name(path.stem + "-new.json")),
                    "COCO JSON (*.json)",
                )
                return bool(target) and self.open_folder(folder, Path(target), images=images)
            if clicked is start_over:
                self._session.open_folder(folder, path, replace_bad_file=True, images=images)
                return True
        except Exception as again:  # noqa: BLE001 - shown to the user
            QMessageBox.warning(self._window, "Cannot open folder", str(again))
        return False

    # -- saving ----------------------------------------------------------------------

    def save(self) -> None:
        if self._session.save():
            dataset = self._session.dataset
            self._status(f"Saved {dataset.path}" if dataset else "", 3000)

    def save_failed(self, message: str) -> None:
        """Status bar always; a dialog once per streak of failures (until a save succeeds)."""
        self._status(message)
        if not self._save_error_shown and not self._window.closing and self._window.interactive:
            self._save_error_shown = True
            QMessageBox.warning(self._window, "Could not save", message)
        self._session.dirtyChanged.connect(self._reset_save_error, Qt.ConnectionType.SingleShotConnection)

    def _reset_save_error(self, dirty: bool) -> None:
        if not dirty:
            self._save_error_shown = False

    def quit_unsaved(self) -> bool:
        """The annotations could not be saved: ``True`` if the user still wants to quit."""
        return self.leave_unsaved("Quit")

    def leave_unsaved(self, action: str) -> bool:
        """Unsaved changes could not be saved and ``action`` would leave them: ``True`` if the user goes on.

        Save writes a copy elsewhere first (then goes on), Discard drops the changes, Cancel stays.
        """
        dataset = self._session.dataset
        copy = dataset.conflict_copy if dataset is not None else None
        why = ("The annotations could not be saved (see the status bar)." if copy is None else
               f"Another program changed {dataset.path.name}, so this window's version was written to "
               f"{copy} at its last save instead of over it.")
        answer = QMessageBox.question(
            self._window, "Unsaved annotations",
            f"{why}\n\nSave a copy elsewhere before you {action.lower()}, or discard the unsaved changes?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Discard:
            return True
        if answer == QMessageBox.StandardButton.Save:
            return self.save_copy()
        return False

    def save_copy(self) -> bool:
        """Ask where, and write the document there (the working file is not touched); ``True`` once written."""
        dataset = self._session.dataset
        if dataset is None:
            self._status("Open a folder first", 3000)
            return False
        target, _ = QFileDialog.getSaveFileName(self._window, "Save a copy of the annotations",
                                                str(dataset.path.with_name(dataset.path.stem + "-copy.json")),
                                                "COCO JSON (*.json)")
        if not target:
            return False
        from annotator.session.save_as import check_target

        try:
            check_target(Path(target))  # not over an image, nor named like one
            written = dataset.save_copy(Path(target))
        except OSError as exc:
            QMessageBox.warning(self._window, "Could not save a copy", str(exc))
            return False
        self._status(f"Saved a copy to {written}", 5000)
        return True

    def save_as(self) -> bool:
        """File → Save As: ask where, write the document there and work on that file; ``True`` once written.

        Refused (a message, nothing changed) where Save a Copy is: another window's file, an unwritable place.
        """
        from annotator.session.save_as import save_as

        dataset = self._session.dataset
        if dataset is None:
            self._status("Open a folder first", 3000)
            return False
        target, _ = QFileDialog.getSaveFileName(self._window, "Save the annotations as (then work on that file)",
                                                str(dataset.path.with_name(dataset.path.stem + "-2.json")),
                                                "COCO JSON (*.json)")
        if not target:
            return False
        try:
            save_as(self._session, Path(target))
        except OSError as exc:
            QMessageBox.warning(self._window, "Could not save as", f"{exc}\n\nNothing was changed: this window "
                                f"still works on {dataset.path}.")
            return False
        return True
