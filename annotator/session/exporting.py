"""File → Export in the background: a COCO copy of the document written on its own thread.

The document is copied on the GUI thread (:func:`annotator.data.export.snapshot`);
the conversion (RLE or polygons), validation and the atomic write run on a
:class:`annotator.workers.jobs.JobService` thread, with progress and Cancel.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import QObject, Signal

from annotator.workers.jobs import JobService


class ExportRunner(QObject):
    """One export at a time: ``exportProgress``, then ``exportFinished(path, warnings)`` or ``exportFailed``."""

    exportProgress = Signal(int, int, str)  # done, total (0: unknown), text
    exportRunning = Signal(bool)
    exportFinished = Signal(object, object)  # Path written, list of warnings
    exportFailed = Signal(str)  # message for the user
    statusMessage = Signal(str, int)

    def __init__(self, jobs: Optional[JobService] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.jobs = jobs if jobs is not None else JobService("sam-export", self)
        self.jobs.progress.connect(lambda _id, done, total, text: self.exportProgress.emit(done, total, text))
        self.jobs.finished.connect(self._on_finished)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.cancelled.connect(self._on_cancelled)
        self._path: Optional[Path] = None

    @property
    def running(self) -> bool:
        return self.jobs.running

    def start(self, dataset, path: Path, fmt: str = "coco-rle", tolerance: float = 1.0) -> bool:
        """Export ``dataset`` (as it is now, saved or not) to ``path``; ``False`` (with ``exportFailed``) if it
        cannot start."""
        from annotator.data import export

        if dataset is None:
            self.exportFailed.emit("no folder is open")
            return False
        path = Path(path)
        try:
            data = export.snapshot(dataset, path, fmt)
        except ValueError as exc:
            self.exportFailed.emit(str(exc))
            return False
        self._path = path
        self.jobs.submit(_export_job, data, path, fmt, tolerance)
        self.exportRunning.emit(True)
        self.exportProgress.emit(0, 0, f"Exporting {path.name}…")
        return True

    def cancel(self) -> None:
        if self.jobs.cancel():
            self.statusMessage.emit("Export cancelled", 3000)

    def shutdown(self, timeout_ms: int = -1) -> bool:
        return self.jobs.shutdown(timeout_ms)

    def _end(self) -> Optional[Path]:
        path, self._path = self._path, None
        self.exportRunning.emit(False)
        return path

    def _on_finished(self, _job_id: int, warnings: List[str]) -> None:
        path = self._end()
        self.exportFinished.emit(path, list(warnings))

    def _on_failed(self, _job_id: int, message: str) -> None:
        self._end()
        self.exportFailed.emit(message)

    def _on_cancelled(self, _job_id: int) -> None:
        self._end()


def export_now(dataset, path: Path, fmt: str = "coco-rle", tolerance: float = 1.0) -> List[str]:
    """Write a COCO copy now, on this thread (``"coco-rle"`` or ``"coco-polygon"``); returns warnings.

    Raises OSError or ValueError with a message for the user.
    """
    from annotator.data import export

    if dataset is None:
        raise ValueError("no folder is open")
    return list(export.export_dataset(dataset, Path(path), fmt, tolerance))


def _export_job(data: dict, path: Path, fmt: str, tolerance: float, *, report, cancel) -> List[str]:
    """The export's job (export thread): convert, validate and write a COCO snapshot."""
    from annotator.data import export

    report(0, 0, f"Exporting {path.name}…")
    return export.export_data(
        data, path, fmt, tolerance, progress=lambda done, total: report(done, total, f"Exporting {path.name}…"),
        cancel=cancel,
    )
