"""File → Export… and File → Import…: the questions they ask and the reports they show.

:class:`FormatDialogs` asks (a format and its options, then a file for COCO
or a folder for the folder formats; a source to import) and hands the answer
to the session; the work runs there, on worker threads
(:mod:`annotator.session.exporting`, :mod:`annotator.session.importing`).
An import shows what it would add (matched and unmatched images, bad lines)
in :class:`ImportReportDialog` before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from annotator.data.export import DEFAULT_TOLERANCE, FOLDER_FORMATS, POLYGON_FORMATS
from annotator.ui.export_folder import ProposedFolder
from annotator.ui.task_widgets import TaskProgress

#: Export formats: (format, menu text, its limits in one sentence; the README says the same).
EXPORT_FORMATS: Tuple[Tuple[str, str, str], ...] = (
    ("coco-rle", "COCO JSON, RLE masks (one file)", "Lossless: every pixel and hole kept."),
    ("coco-polygon", "COCO JSON, polygons (one file)",
     "Holes are filled (each one warned about); outlines simplified by the tolerance."),
    ("yolo-seg", "YOLO segmentation, Ultralytics (folder)",
     "labels/*.txt and data.yaml; one polygon per instance (parts joined), holes filled, 6 decimals."),
    ("voc", "Pascal VOC class and instance PNGs (folder)",
     "Pixel-exact PNGs, Annotations/*.xml (one <object> per instance) and ImageSets/ lists; where masks overlap "
     "the smaller is on top; crowd regions are void (255), not objects; at most 254 classes and instances per "
     "image."),
    ("labelme", "labelme JSON, one per image (folder)",
     "Polygons, imagePath relative, no embedded image; holes filled; parts of a mask share a group_id."),
    ("masks", "Mask PNGs and masks.csv (folder)",
     "Pixel-exact: one PNG per annotation, or one 16-bit instance PNG per image (smaller mask on top)."),
)

#: Import formats: (format, menu text, what to pick).
IMPORT_FORMATS: Tuple[Tuple[str, str, str], ...] = (
    ("labelme", "labelme JSON",
     "Pick the folder of labelme JSON files (searched with its sub-folders). An image found only inside a JSON "
     "(imageData) is written next to it on import."),
    ("yolo-seg", "YOLO segmentation (Ultralytics)",
     "Pick the dataset folder (images/ and labels/, or split folders train/images, train/labels, valid/..., "
     "and data.yaml); labels pair with this folder's images by path. 5-number lines (boxes) become rectangles."),
    ("voc", "Pascal VOC PNGs",
     "Pick the folder with SegmentationObject/ and SegmentationClass/; class names from class_names.txt, "
     "labelmap.txt (CVAT, Datumaro: names and colours) or Annotations/*.xml."),
    ("coco", "COCO JSON",
     "Pick the COCO JSON file; file_name is relative to it, or to ../images/ as in CVAT's layout "
     "(annotations/instances_default.json)."),
)

_LIMITS = {fmt: limits for fmt, _text, limits in EXPORT_FORMATS}
_HINTS = {fmt: hint for fmt, _text, hint in IMPORT_FORMATS}

#: The folder pickers' names for a folder export, by format.
_DEFAULT_FOLDER = {"yolo-seg": "yolo_export", "voc": "voc_export", "labelme": "labelme_export", "masks": "masks_export"}


@dataclass(frozen=True)
class ExportChoice:
    """A format and its options (see :func:`annotator.data.export.export_data`)."""

    fmt: str = "coco-rle"
    tolerance: float = DEFAULT_TOLERANCE
    copy_images: bool = False
    voc_border: int = 0
    masks_per_image: bool = False

    def options(self) -> Dict[str, object]:
        """The keyword options that apply to :attr:`fmt`."""
        if self.fmt in ("yolo-seg", "voc"):
            out: Dict[str, object] = {"copy_images": self.copy_images}
            if self.fmt == "voc":
                out["voc_border"] = self.voc_border
            return out
        return {"masks_per_image": self.masks_per_image} if self.fmt == "masks" else {}


class ExportDialog(QDialog):
    """The format and the options that apply to it (the rest are disabled)."""

    def __init__(self, choice: ExportChoice, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export")
        self.format = QComboBox(self)
        self.format.setObjectName("exportFormat")
        for fmt, text, limits in EXPORT_FORMATS:
            self.format.addItem(text, fmt)
            self.format.setItemData(self.format.count() - 1, limits, Qt.ItemDataRole.ToolTipRole)
        self.limits = QLabel(self)
        self.limits.setWordWrap(True)
        self.tolerance = QDoubleSpinBox(self)
        self.tolerance.setRange(0.0, 10.0)
        self.tolerance.setSingleStep(0.25)
        self.tolerance.setSuffix(" px")
        self.tolerance.setToolTip("How far a simplified outline may stray; 0.25 keeps real masks pixel-exact")
        self.copy_images = QCheckBox("Copy the images into the export (images/ or JPEGImages/)", self)
        self.voc_border = QSpinBox(self)
        self.voc_border.setRange(0, 50)
        self.voc_border.setSuffix(" px")
        self.voc_border.setToolTip("Mark this many pixels along object edges as 255 (ignored by VOC trainers)")
        self.masks_per_image = QCheckBox("One 16-bit instance PNG per image", self)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("", self.limits)
        form.addRow("Polygon tolerance", self.tolerance)
        form.addRow("", self.copy_images)
        form.addRow("VOC border", self.voc_border)
        form.addRow("", self.masks_per_image)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.set_choice(choice)

    def set_choice(self, choice: ExportChoice) -> None:
        self.format.setCurrentIndex(max(0, self.format.findData(choice.fmt)))
        self.tolerance.setValue(choice.tolerance)
        self.copy_images.setChecked(choice.copy_images)
        self.voc_border.setValue(choice.voc_border)
        self.masks_per_image.setChecked(choice.masks_per_image)
        self._format_changed()

    def choice(self) -> ExportChoice:
        return ExportChoice(self.format.currentData(), float(self.tolerance.value()), self.copy_images.isChecked(),
                            int(self.voc_border.value()), self.masks_per_image.isChecked())

    def _format_changed(self, *_: object) -> None:
        fmt = self.format.currentData()
        self.limits.setText(_LIMITS[fmt])
        self.tolerance.setEnabled(fmt in POLYGON_FORMATS)
        self.copy_images.setEnabled(fmt in ("yolo-seg", "voc"))
        self.voc_border.setEnabled(fmt == "voc")
        self.masks_per_image.setEnabled(fmt == "masks")


class ImportFormatDialog(QDialog):
    """Which format the labels to import are in."""

    def __init__(self, fmt: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("importFormatDialog")
        self.setWindowTitle("Import labels")
        self.format = QComboBox(self)
        self.format.setObjectName("importFormat")
        for key, text, _hint in IMPORT_FORMATS:
            self.format.addItem(text, key)
        self.hint = QLabel(self)
        self.hint.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Choose…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Labels are added to the open working file (one undoable step); nothing there "
                                "is changed or removed.", self))
        layout.addWidget(self.format)
        layout.addWidget(self.hint)
        layout.addWidget(buttons)
        self.format.currentIndexChanged.connect(lambda *_: self.hint.setText(_HINTS[self.format.currentData()]))
        self.format.setCurrentIndex(max(0, self.format.findData(fmt)))
        self.hint.setText(_HINTS[self.format.currentData()])

    def chosen(self) -> str:
        return self.format.currentData()


class ImportReportDialog(QDialog):
    """What an import would add, and every line of its report, before anything changes: Import or Cancel."""

    def __init__(self, summary: str, lines: List[str], can_import: bool, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("importReportDialog")
        self.setWindowTitle("Import labels: report")
        self.summary = QLabel(summary, self)
        self.summary.setWordWrap(True)
        self.lines = QPlainTextEdit(self)
        self.lines.setReadOnly(True)
        self.lines.setPlainText("\n".join(lines) if lines else "No problems found.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.import_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.import_button.setText("Import")
        self.import_button.setEnabled(can_import)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.lines, 1)
        layout.addWidget(buttons)
        self.resize(760, 420)


class FormatDialogs:
    """Export and import questions for ``window`` (its session and status bar); owns the import's progress widget."""

    def __init__(self, window: QMainWindow) -> None:
        self._window = window
        self.export_choice = ExportChoice()
        self.import_format = "labelme"
        self.import_progress = TaskProgress("importProgress", window)
        window.statusBar().addPermanentWidget(self.import_progress)

    @property
    def _session(self):
        return self._window.session

    def _status(self, text: str, ms: int = 0) -> None:
        self._window.statusBar().showMessage(text, ms)

    def wire(self) -> None:
        """Connect the session's export and import signals (call once the session exists)."""
        s = self._session
        s.exportFinished.connect(self.export_finished)
        s.exportFailed.connect(self.export_failed)
        imp = s.imports
        imp.importRunning.connect(lambda on: self.import_progress.start("Reading labels…") if on
                                  else self.import_progress.finish())
        imp.importProgress.connect(self.import_progress.set_progress)
        imp.previewReady.connect(self.preview_ready)
        imp.importFailed.connect(self.import_failed)
        imp.imported.connect(self.imported)
        self.import_progress.cancelRequested.connect(imp.cancel)

    # -- export ----------------------------------------------------------------------

    def export(self) -> None:
        """Ask for a format and its options, then a file (COCO) or folder; the export runs in the background."""
        dataset = self._session.dataset
        if dataset is None:
            self._status("Open a folder first", 3000)
            return
        dialog = ExportDialog(self.export_choice, self._window)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        choice = dialog.choice()
        dialog.deleteLater()
        if not accepted:
            return
        self.export_choice = choice
        if choice.fmt in FOLDER_FORMATS:
            proposed = ProposedFolder(self._session.folder or dataset.root, dataset.path, _DEFAULT_FOLDER[choice.fmt])
            target = QFileDialog.getExistingDirectory(
                self._window, f"Export {choice.fmt}: the folder to write into", str(proposed.start))
            proposed.done(Path(target) if target else None)
        else:
            default = dataset.path.with_name("coco_export.json")
            target, _ = QFileDialog.getSaveFileName(self._window, f"Export {choice.fmt}", str(default),
                                                    "COCO JSON (*.json)")
        if target:
            self._session.start_export(Path(target), choice.fmt, choice.tolerance, **choice.options())

    def export_finished(self, path: Path, summary) -> None:
        """The status bar says what was written; warnings, or a file that was there and backed up, are shown."""
        self._status(summary.text(), 10000)
        if (summary.warnings or summary.backup is not None) and self._window.interactive:
            warnings = list(summary.warnings)
            more = f"\n… and {len(warnings) - 20} more" if len(warnings) > 20 else ""
            QMessageBox.information(self._window, "Exported with warnings" if warnings else "Exported",
                                    "\n\n".join([summary.text()] + (["\n".join(warnings[:20]) + more] if warnings
                                                                     else [])))

    def export_failed(self, message: str) -> None:
        self._status(f"Export failed: {message.splitlines()[0] if message else ''}")
        if self._window.interactive:
            QMessageBox.warning(self._window, "Export failed", message)

    # -- import ----------------------------------------------------------------------

    def import_labels(self) -> None:
        """Ask for a format and a source, then read it in the background; the report comes before any change."""
        s = self._session
        if s.dataset is None:
            self._status("Open a folder first: labels are imported into its working file", 3000)
            return
        dialog = ImportFormatDialog(self.import_format, self._window)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        fmt = dialog.chosen()
        dialog.deleteLater()
        if not accepted:
            return
        self.import_format = fmt
        start = str(s.folder or Path.home())
        if fmt == "coco":
            source, _ = QFileDialog.getOpenFileName(self._window, "Import COCO labels", start, "COCO JSON (*.json)")
        else:
            source = QFileDialog.getExistingDirectory(self._window, f"Import {fmt} labels: the folder", start)
        if source:
            s.imports.read(Path(source), fmt)

    def preview_ready(self, preview) -> None:
        """Show what the import would add; Import applies it (one undoable step)."""
        lines = list(preview.unmatched) + list(preview.problems)
        can_import = preview.images > 0
        summary = preview.text() if can_import else f"Nothing to import: {preview.text()}"
        dialog = ImportReportDialog(summary, lines, can_import, self._window)
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        dialog.deleteLater()
        if accepted and can_import:
            self._session.imports.apply(preview)
        else:
            self._status("Import cancelled: nothing was changed", 5000)

    def imported(self, result) -> None:
        """The status bar says what was added; what only adding could find (masks already there...) is shown."""
        self._status(result.text(), 10000)
        if result.late and self._window.interactive:
            late = list(result.late)
            more = f"\n… and {len(late) - 20} more" if len(late) > 20 else ""
            QMessageBox.information(self._window, "Imported, with notes", result.text() + "\n\n"
                                    + "\n".join(late[:20]) + more)

    def import_failed(self, message: str) -> None:
        self._status(f"Import failed: {message.splitlines()[0] if message else ''}")
        if self._window.interactive:
            QMessageBox.warning(self._window, "Import failed", message)


__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "ExportChoice", "ExportDialog", "FormatDialogs", "ImportFormatDialog",
           "ImportReportDialog"]
