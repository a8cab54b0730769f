"""The window's informational dialogs: keyboard help, About, and the error report.

All are window-modal at most and opened with ``open()`` (never a nested
event loop), so background work and timers keep running while they show.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional, Sequence, Tuple

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from annotator.ui import actions


def help_dialog(parent: QWidget, specs: Sequence[actions.ActionSpec]) -> QDialog:
    """F1: every key and mouse gesture, from ``specs`` (the table with the user's remapped keys)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Keyboard and mouse")
    text = QTextBrowser(dialog)
    text.setObjectName("helpText")
    text.setHtml(actions.help_html(specs))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.resize(640, 760)
    return dialog


def about_rows(version: str, model: str, device: str, checkpoint: str, log_file: Path, cache_root: Path,
               settings_file: str) -> Tuple[Tuple[str, str], ...]:
    """``(label, value)`` rows of the About box."""
    return (
        ("Version", version),
        ("Model", model),
        ("Device", device),
        ("Weights", checkpoint),
        ("Log file", str(log_file)),
        ("Cache (weights, embeddings)", str(cache_root)),
        ("Settings", settings_file),
    )


def about_box(parent: QWidget, rows: Sequence[Tuple[str, str]]) -> QMessageBox:
    """Help → About: what runs and where its files are."""
    box = QMessageBox(parent)
    box.setObjectName("aboutBox")
    box.setWindowTitle("About sam-annotator")
    box.setIcon(QMessageBox.Icon.Information)
    table = "".join(
        f"<tr><td style='padding-right:12px'><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>" for k, v in rows
    )
    box.setText(
        "<b>sam-annotator</b>: Segment Anything annotation with three ranked candidates per click."
        f"<table cellspacing='0' cellpadding='2'>{table}</table>"
    )
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    return box


def open_folder(folder: Path) -> bool:
    """Show ``folder`` in the desktop's file manager (created first if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class ErrorBox(QMessageBox):
    """An uncaught exception, told to the user: what happened, the details and the log file.

    Further errors while it is open are added to it (``count``), not stacked
    as new windows.
    """

    def __init__(self, parent: Optional[QWidget], log_file: Optional[Path]) -> None:
        super().__init__(parent)
        self.setObjectName("errorBox")
        self.setIcon(QMessageBox.Icon.Critical)
        self.setWindowTitle("sam-annotator: unexpected error")
        self.log_file = log_file
        self.count = 0
        self.summaries: list[str] = []
        self._details: list[str] = []
        self.open_logs_button = self.addButton("Open Log Folder", QMessageBox.ButtonRole.ActionRole)
        self.open_logs_button.setObjectName("openLogsButton")
        self.addButton(QMessageBox.StandardButton.Close)
        self.open_logs_button.clicked.connect(self._open_logs)

    def add(self, summary: str, details: str) -> None:
        self.count += 1
        self.summaries.append(summary)
        self._details.append(details)
        where = f"The details are in the log file:\n{self.log_file}" if self.log_file else "Logging to a file failed."
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        self.setText(f"Something went wrong{more}: {escape(self.summaries[0])}")
        self.setInformativeText(
            "The application is still running and your annotations are saved as usual; "
            "if it misbehaves, save (Ctrl+S) and restart it.\n\n" + where
        )
        self.setDetailedText("\n\n".join(self._details[-5:]))

    def _open_logs(self) -> None:
        if self.log_file is not None:
            open_folder(self.log_file.parent)
