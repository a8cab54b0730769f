"""File → Import: read labels on a worker thread, show what would be imported, then add it as ONE undoable step.

Three stages, each with its own signal:

1. :meth:`ImportRunner.read` reads the source with
   :func:`annotator.data.formats.importing.read_labels` on a
   :class:`~annotator.workers.jobs.JobService` thread (``importProgress``,
   Cancel), so a large source never freezes the window.
2. ``previewReady(ImportPreview)``: the plan, restricted to the open folder's
   images and those the working file records (matched by path relative to
   the working file; an image elsewhere is listed as unmatched, never
   silently dropped), with the counts and the report lines to show *before*
   anything changes.
3. :meth:`ImportRunner.apply` writes the images only the source holds (see
   below) on the import thread, then pushes one :class:`ImportCommand`: the plan is
   added with :func:`~annotator.data.formats.importing.apply_plan` (only ever
   adding; the working file is then saved as after any edit, backed up once
   per session first); Ctrl+Z removes exactly the annotations, categories and
   image records it created and puts image states back; Ctrl+Shift+Z adds
   them again with the same ids. ``imported(ImportResult)`` follows.

Images only the source holds (labelme ``imageData``): such an image is
written next to its JSON file when the import is applied (never over a file),
on the import thread (:func:`~annotator.data.formats.importing.write_embedded`,
cancellable: a cancel deletes what it wrote), before the command is pushed, so
the GUI thread only adds records. Nothing keeps the image bytes: the plan and
the command hold the JSON file's path and the bytes' digest, and the image is
read from the JSON file again when it is (re)written. One that would land in the open folder itself counts as matched (and
the preview says how many will be written); once written it joins the image
list (:class:`~annotator.session.image_listing.FolderImages`) and can be shown
like any other. One that would land in a sub-folder, or outside the folder,
is listed as not imported: the window lists the open folder without its
sub-folders, so the image would vanish from the list at the next opening.
Undoing the import deletes each image it wrote, if the file still has the
digest of what was written and the working file no longer records it
(the JSON still holds it, so nothing is lost); a file changed since is kept
and the undo message says so. Redoing writes it again, read from the JSON
file (on the GUI thread: only the images that undo deleted; a JSON file
changed meanwhile is said, not written).

Where the images are: the source is first read where its format puts them
(YOLO ``images/``, VOC ``JPEGImages/``, labelme's ``imagePath``, COCO
``file_name`` relative to the JSON file), which matches an Ultralytics
``images/train`` folder opened in the window. When that folder is missing or
none of its images is the open folder's (labels exported from this folder
without copying the images, or with copies elsewhere), the source is read
again against the open folder, and the reading that matches more images wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, FrozenSet, List, Optional, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotator.data.formats.importing import IMPORT_FORMATS, ImportChanges, ImportPlan, remove_written, write_embedded
from annotator.data.formats.plan import EmbeddedImage, ImportedImage, ImportFailed, shown
from annotator.session.import_command import ImportCommand
from annotator.session.read_only import read_only_reason
from annotator.workers.jobs import JobService

__all__ = ["ImportPreview", "ImportResult", "ImportCommand", "ImportRunner"]


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _matches(img: ImportedImage, known: FrozenSet[str], folder: Path) -> bool:
    """``img`` is one of the ``known`` images, or one the import will write into the open ``folder`` itself."""
    return _key(img.path) in known or (img.data is not None and _key(Path(img.path).parent) == _key(folder))


def _known_images(dataset, paths) -> FrozenSet[str]:
    """The open folder's images and those the working file records (normalised absolute paths): what can match."""
    return frozenset(_key(p) for p in paths) | frozenset(_key(dataset.image_path(r)) for r in dataset.images.values())


@dataclass
class ImportPreview:
    """What an import would add to the open working file, for the user to confirm.

    ``plan`` holds only the images of the open folder; ``unmatched`` has a
    line for each image of the source that is not there; ``problems`` the
    reader's report (bad lines, unknown classes, label files without images,
    images without labels...). ``dataset``: the document it was read for
    (applying it to another one is refused).
    """

    plan: ImportPlan
    dataset: Any
    unmatched: List[str] = field(default_factory=list)
    new_categories: List[str] = field(default_factory=list)

    @property
    def problems(self) -> List[str]:
        return list(self.plan.report)

    @property
    def images(self) -> int:
        """Images that would get annotations or be marked as negatives."""
        return sum(1 for img in self.plan.images if img.annotations or img.negative)

    @property
    def negatives(self) -> int:
        return sum(1 for img in self.plan.images if img.negative and not img.annotations)

    @property
    def annotations(self) -> int:
        return self.plan.annotation_count

    @property
    def written(self) -> int:
        """Images only the source holds (labelme ``imageData``), to be written into the open folder."""
        return sum(1 for img in self.plan.images if img.data is not None and (img.annotations or img.negative))

    def text(self) -> str:
        """The summary shown above the report lines."""
        new = self.new_categories
        named = ", ".join(new[:12]) + (f" and {len(new) - 12} more" if len(new) > 12 else "")
        written = (f" ({self.written} only in the labelme files, 'imageData': written into the folder)"
                   if self.written else "")
        return (
            f"{self.images} image(s) of the open folder matched ({self.negatives} with no objects: marked done), "
            f"{self.annotations} annotation(s){written}, {len(new)} new categor{'y' if len(new) == 1 else 'ies'}"
            f"{': ' + named if new else ''}; "
            f"{len(self.unmatched)} image(s) not in the open folder, {len(self.problems)} problem(s) in the source."
        )


@dataclass(frozen=True)
class ImportResult:
    """What an applied import added (``changes``) and its report.

    ``report``: the preview's lines, then those only adding could find
    (``late``: a mask already there, an image recorded at another size, a
    negative whose image has annotations), which the preview could not show.
    """

    source: Path
    fmt: str
    changes: ImportChanges
    report: Tuple[str, ...]
    late: Tuple[str, ...] = ()

    def text(self) -> str:
        c = self.changes
        return (f"Imported {len(c.annotations)} annotation(s) on {len(c.images_touched)} image(s) and "
                f"{len(c.categories)} new categor{'y' if len(c.categories) == 1 else 'ies'} from {self.source}"
                f"{f'; {len(self.report)} line(s) reported' if self.report else ''} (Ctrl+Z undoes it)")


class ImportRunner(QObject):
    """File → Import's session part: one read at a time, then one undoable apply.

    Parameters
    ----------
    edits
        The session's :class:`~annotator.session.document_edits.DocumentEdits` (the document).
    images
        The :class:`~annotator.session.navigation.ImageNavigator` (the open folder's images).
    undo_stack, gate
        The session's undo stack and action gate (an apply waits behind an accept in flight).
    jobs
        The reading thread (default: a new :class:`JobService` ``"sam-import"``).
    """

    importProgress = Signal(int, int, str)  # done, total (0: unknown), text
    importRunning = Signal(bool)
    previewReady = Signal(object)  # ImportPreview
    importFailed = Signal(str)  # message for the user
    imported = Signal(object)  # ImportResult
    statusMessage = Signal(str, int)

    def __init__(self, edits, images, undo_stack: QUndoStack, gate, jobs: Optional[JobService] = None,
                 parent: Optional[QObject] = None, listing=None) -> None:
        super().__init__(parent)
        self._edits = edits
        self._images = images
        self._listing = listing
        self._undo_stack = undo_stack
        self._gate = gate
        self.jobs = jobs if jobs is not None else JobService("sam-import", self)
        self.jobs.progress.connect(lambda _id, done, total, text: self.importProgress.emit(done, total, text))
        self.jobs.finished.connect(self._on_finished)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.cancelled.connect(self._on_cancelled)
        # (dataset, folder, known image keys) the read in flight is for
        self._reading: Optional[Tuple[Any, Path, FrozenSet[str]]] = None
        # the preview whose embedded images are being written, and the files written so far (by the job)
        self._writing: Optional[ImportPreview] = None
        self._made: List[Tuple[Path, EmbeddedImage]] = []
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def read(self, source: Path, fmt: str) -> bool:
        """Start reading ``source`` (``fmt`` one of ``IMPORT_FORMATS``) for the open working file.

        ``previewReady`` or ``importFailed`` follows; ``False`` (with
        ``importFailed``) when it cannot start.
        """
        ds, folder = self._edits.dataset, self._images.folder
        if ds is None:
            self.importFailed.emit("Open a folder first: labels are imported into its working file.")
            return False
        if ds.read_only:
            self.importFailed.emit(f"{read_only_reason(ds)}; this window has it read-only, so nothing can be "
                                   "imported into it.")
            return False
        if fmt not in IMPORT_FORMATS:
            self.importFailed.emit(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")
            return False
        if self._writing is not None:
            self.importFailed.emit("An import is still writing its images; wait for it (or cancel it) first.")
            return False
        folder = Path(folder) if folder is not None else ds.image_dir
        known = _known_images(ds, self._images.paths)
        self._reading = (ds, folder, known)
        self.jobs.submit(_read_job, Path(source), fmt, folder, known)
        if not self._running:
            self._running = True
            self.importRunning.emit(True)
        self.importProgress.emit(0, 0, f"Reading {Path(source).name}…")
        return True

    def cancel(self) -> None:
        if self.jobs.cancel():
            self.statusMessage.emit("Import cancelled", 3000)

    def shutdown(self, timeout_ms: int = -1) -> bool:
        done = self.jobs.shutdown(timeout_ms)
        if self._writing is not None and done:
            remove_written(self._made)  # an import that never got pushed leaves no file behind
        self._end()
        return done

    def apply(self, preview: ImportPreview) -> Optional[ImportResult]:
        """Add ``preview``'s plan as one undoable step (behind the action gate); ``imported`` follows.

        Returns the result when added at once; ``None`` when it waits behind an
        accept, or first writes the images only the source holds on the import
        thread (``importRunning``, ``importProgress``; Cancel deletes them again).
        """
        if self._writing is not None:
            self.importFailed.emit("An import is still writing its images; wait for it (or cancel it) first.")
            return None
        if preview.written:
            return self._start_writing(preview)
        return self._gate.call(self._apply, preview)

    def _start_writing(self, preview: ImportPreview) -> None:
        if not self._check(preview):
            return None
        self._writing, self._made = preview, []
        self.jobs.submit(_write_job, preview.plan, self._made)
        if not self._running:
            self._running = True
            self.importRunning.emit(True)
        self.importProgress.emit(0, preview.written, f"Writing {preview.written} image(s) from the labelme files…")
        return None

    def _check(self, preview: ImportPreview) -> bool:
        if preview.dataset is not self._edits.dataset:
            self.importFailed.emit("Another working file is open now; read the labels again to import them into it.")
            return False
        return True

    def _apply(self, preview: ImportPreview, written: Optional[List[Tuple[Path, EmbeddedImage]]] = None,
               plan: Optional[ImportPlan] = None) -> Optional[ImportResult]:
        """Push the command: ``preview.plan``, or after :func:`write_embedded` the ``plan`` it returned and the
        images it ``written``. Its report lines past the preview's (a JSON file changed meanwhile...) count as late."""
        if not self._check(preview):
            if written:
                remove_written(written)  # copies of what the JSON files hold: nothing is lost
            return None
        command = ImportCommand(self._edits, plan if plan is not None else preview.plan, self._listing,
                                written=written if plan is not None else None)
        self._undo_stack.push(command)
        late = tuple(command.report[len(preview.plan.report):])  # apply_plan: the plan's lines, then its own
        result = ImportResult(preview.plan.source, preview.plan.fmt, command.changes,
                              tuple(preview.unmatched) + tuple(command.report), late)
        self.imported.emit(result)
        return result

    def _end(self) -> None:
        self._reading = None
        self._writing = None
        if self._running:
            self._running = False
            self.importRunning.emit(False)

    def _on_cancelled(self, _job_id: int) -> None:
        if self._writing is not None:
            remove_written(self._made)  # (the job deletes them itself, unless it had returned already)
        self._end()

    def _on_failed(self, _job_id: int, message: str) -> None:
        if self._writing is not None:
            remove_written(self._made)
        self._end()
        self.importFailed.emit(message)

    def _on_finished(self, _job_id: int, outcome: Any) -> None:
        writing = self._writing
        if writing is not None:
            self._end()
            # the images are written: push the command (behind the gate) with the plan of those that were
            self._gate.call(self._apply, writing, outcome.written, outcome.plan)
            return
        reading = self._reading
        self._end()
        plan, problem = outcome
        if plan is None:
            self.importFailed.emit(problem)
            return
        if reading is None or reading[0] is not self._edits.dataset:
            self.statusMessage.emit("The labels were read for a folder that is no longer open; not imported", 5000)
            return
        dataset, folder, known = reading
        self.previewReady.emit(_preview(plan, dataset, known, folder))


def _write_job(plan: ImportPlan, made: list, *, report, cancel):
    """The apply's job (import thread): write the images only the source holds; an :class:`EmbeddedWrites`."""
    total = sum(1 for img in plan.images if img.data is not None and (img.annotations or img.negative))
    text = f"Writing {total} image(s) from the labelme files…"
    return write_embedded(plan, lambda done, n: report(done, n, text), cancel, made)


def _preview(plan: ImportPlan, dataset, known: FrozenSet[str], folder: Path) -> ImportPreview:
    """Keep the plan's images that are ``known`` (the open folder's or the working file's) or will be written into
    the open folder (labelme ``imageData``); list the others."""
    kept, unmatched = [], []
    for img in plan.images:
        if _matches(img, known, folder):
            kept.append(img)
        elif img.data is not None:
            where = ("a sub-folder, which the window does not list" if Path(_key(img.path)).is_relative_to(_key(folder))
                     else "outside the open folder")
            unmatched.append(f"{img.where}: its image (only in the file, 'imageData') would be written to "
                             f"{shown(img.path, folder)}, {where}; not imported (put the JSON file next to the "
                             "folder's images, or open its folder)")
        else:
            unmatched.append(f"{img.where}: its image {shown(img.path, folder)} is not one of the open folder's "
                             "images nor in the working file; not imported")
    plan.images = kept
    names = list(plan.categories) + [a.category for img in kept for a in img.annotations]
    new = [n for n in dict.fromkeys(n.strip() for n in names) if n and dataset.category_by_name(n) is None]
    return ImportPreview(plan, dataset, unmatched, new)


def _read_job(source: Path, fmt: str, folder: Path, known: FrozenSet[str], *, report,
              cancel) -> Tuple[Optional[ImportPlan], str]:
    """The import's job (import thread): ``(plan, "")``, or ``(None, message)`` when nothing can be read.

    Reads where the format puts the images, then (unless every image found
    there is ``known``) against the open ``folder``; keeps the plan that
    matches more ``known`` images (see the module notes).
    """
    from annotator.data.formats.importing import read_labels

    text = f"Reading {source.name}…"
    best: Optional[ImportPlan] = None
    best_matched = -1
    failure = ""
    for images in (None, folder):
        try:
            plan = read_labels(source, fmt, images, lambda done, total: report(done, total, text), cancel)
        except ImportFailed as exc:
            failure = failure or str(exc)
            continue
        matched = sum(1 for img in plan.images if _matches(img, known, folder))
        if matched > best_matched:
            best, best_matched = plan, matched
        if matched and matched == len(plan.images):
            break
    return (best, "") if best is not None else (None, failure)
