"""File → Export in the background: the document written in any export format on its own thread.

The document is copied on the GUI thread (:func:`annotator.data.export.snapshot`);
the conversion (RLE, polygons, label files, PNGs), validation and the
all-or-nothing write run on a :class:`annotator.workers.jobs.JobService`
thread, with progress and Cancel. The result is an :class:`ExportSummary`.

A COCO file is written as ``sam-annotator export`` writes it, inside
:func:`annotator.data.replacing.replacing` on the export thread: the
target's lock is held while writing, so a file another window (or program)
has open as its working file is refused, naming the holder, before anything
is written; a file already there is copied aside first (``NAME.<time>.bak``),
and the summary says where. The window's own working file is refused at once
(its lock is this window's; File → Save writes it), and so is one mask PNG
per image into the folder of the images (the next open would list the masks
as images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from PySide6.QtCore import QObject, Signal

from annotator.data.export import DEFAULT_TOLERANCE
from annotator.workers.jobs import JobService


@dataclass(frozen=True)
class ExportSummary:
    """What one export wrote: ``images`` (of which ``negatives`` with no annotations), ``annotations``.

    ``skipped``: empty masks left out (every format but ``coco-rle`` leaves
    them out); ``warnings``: one sentence each (holes filled, overlaps, images
    left out, files backed up...).
    """

    path: Path
    fmt: str
    images: int
    negatives: int
    annotations: int
    skipped: int
    warnings: Tuple[str, ...]
    backup: Optional[Path] = None  # the copy of the COCO file that was at ``path`` (None: there was none)

    def text(self) -> str:
        """One line for the status bar."""
        negatives = f" ({self.negatives} with no annotations)" if self.negatives else ""
        kept = f" (the previous file was backed up as {self.backup.name})" if self.backup is not None else ""
        skipped = f"; {self.skipped} empty mask(s) left out" if self.skipped else ""
        warned = f"; {len(self.warnings)} warning(s)" if self.warnings else ""
        return (f"Exported {self.images} image(s){negatives} and {self.annotations} annotation(s) as {self.fmt} "
                f"to {self.path}{kept}{skipped}{warned}")


def _summarise(data: Dict[str, Any], path: Path, fmt: str) -> Dict[str, Any]:
    """The counts of an export's snapshot (taken before the writers change it)."""
    from annotator.data import coco

    annotated = {a["image_id"] for a in data["annotations"]}
    empty = 0 if fmt == "coco-rle" else sum(1 for a in data["annotations"] if coco.rle_area(a["segmentation"]) == 0)
    return {"path": path, "fmt": fmt, "images": len(data["images"]),
            "negatives": sum(1 for img in data["images"] if img["id"] not in annotated),
            "annotations": len(data["annotations"]) - empty, "skipped": empty}


class ExportRunner(QObject):
    """One export at a time: ``exportProgress``, then ``exportFinished(path, summary)`` or ``exportFailed``."""

    exportProgress = Signal(int, int, str)  # done, total (0: unknown), text
    exportRunning = Signal(bool)
    exportFinished = Signal(object, object)  # Path written, ExportSummary
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

    def start(self, dataset, path: Path, fmt: str = "coco-rle", tolerance: float = DEFAULT_TOLERANCE,
              **options: Any) -> bool:
        """Export ``dataset`` (as it is now, saved or not) to ``path`` (a file for ``coco-*``, else a folder).

        ``options``: :func:`annotator.data.export.export_data`'s keywords
        (``copy_images``, ``voc_border``, ``masks_per_image``). ``False``
        (with ``exportFailed``) if it cannot start.
        """
        from annotator.data import export

        if dataset is None:
            self.exportFailed.emit("no folder is open")
            return False
        path = Path(path)
        if fmt not in export.FOLDER_FORMATS and _same_file(path, dataset.path):
            self.exportFailed.emit(f"{path} is this window's working file: it was not overwritten. Export to "
                                   "another file (File → Save writes the working file).")
            return False
        if fmt == "masks" and options.get("masks_per_image") and _same_file(path, dataset.image_dir):
            self.exportFailed.emit(
                f"{path} is the folder of the images: one mask PNG per image written there would be listed as "
                f"images the next time it opens. Nothing was written; export to another folder (say "
                f"{path.parent / (path.name + '_masks_export')}, beside it).")
            return False
        try:
            export.check_args(fmt, tolerance, options.get("voc_border", 0))
            data = export.snapshot(dataset, path, fmt)
        except ValueError as exc:
            self.exportFailed.emit(str(exc))
            return False
        self._path = path
        self.jobs.submit(_export_job, data, path, fmt, tolerance, options)
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

    def _on_finished(self, _job_id: int, outcome: Union[ExportSummary, str]) -> None:
        path = self._end()
        if isinstance(outcome, str):  # refused before anything was written (the target is held)
            self.exportFailed.emit(outcome)
        else:
            self.exportFinished.emit(path, outcome)

    def _on_failed(self, _job_id: int, message: str) -> None:
        self._end()
        self.exportFailed.emit(message)

    def _on_cancelled(self, _job_id: int) -> None:
        self._end()


def export_now(dataset, path: Path, fmt: str = "coco-rle", tolerance: float = DEFAULT_TOLERANCE,
               **options: Any) -> List[str]:
    """Export now, on this thread (any format; see :meth:`ExportRunner.start`); returns warnings.

    Raises OSError or ValueError with a message for the user.
    """
    from annotator.data import export

    if dataset is None:
        raise ValueError("no folder is open")
    return list(export.export_dataset(dataset, Path(path), fmt, tolerance, **options))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # (a symlink loop: not the working file)
        return False


def _export_job(data: dict, path: Path, fmt: str, tolerance: float, options: Dict[str, Any], *, report,
                cancel) -> Union[ExportSummary, str]:
    """The export's job (export thread): convert, validate and write a snapshot; returns its summary.

    A COCO file is written under :func:`~annotator.data.replacing.replacing`
    (see the module notes); a target another process or window holds, or a
    refusal of the writers (``ValueError``: an output that would replace a
    source image...), gives the sentence for the user instead of a summary,
    nothing written.
    """
    import contextlib

    from annotator.data import export
    from annotator.data.replacing import LockBusy, replacing

    report(0, 0, f"Exporting {path.name}…")
    counts = _summarise(data, path, fmt)
    try:
        with replacing(path) if fmt not in export.FOLDER_FORMATS else contextlib.nullcontext() as backup:
            warnings = export.export_data(
                data, path, fmt, tolerance,
                progress=lambda done, total: report(done, total, f"Exporting {path.name}…"),
                cancel=cancel, **options,
            )
    except LockBusy as exc:
        who = exc.holder.describe() if exc.holder is not None else "its lock file cannot be read"
        return (f"{path} is open in another window or program ({who}); it was not overwritten. Close it there "
                "first, or export to another file.")
    except ValueError as exc:  # the writers' refusals (a source image in the way...): a sentence, not "ValueError:"
        text = str(exc).strip().rstrip(".") or "the export was refused"
        return f"{text}\n\nNothing was written." if "\n" in text else f"{text}. Nothing was written."
    return ExportSummary(warnings=tuple(warnings), backup=backup, **counts)
