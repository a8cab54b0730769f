"""Bringing existing labels into a working file: the functions File → Import and ``sam-annotator import`` call.

Two steps, so that the slow part can run on a worker thread:

1. :func:`read_labels` (any thread): read a source in one of
   :data:`IMPORT_FORMATS` into an :class:`~annotator.data.formats.plan.ImportPlan`:
   masks rasterised to RLE at each image's size, a report line for everything
   unusable.
2. :func:`apply_plan` (where the dataset lives): add the plan to a
   :class:`~annotator.data.document.Dataset`. It only ever adds: images are
   matched by their path relative to the working file's folder, categories by
   name (created in the source's class order when missing), and a mask that
   is already there (same image and category, IoU >= :data:`SAME_MASK_IOU`
   with it or with its holes filled: a re-import of labels exported from this
   file, polygons included) is not added twice. An
   image whose label file lists nothing (a negative) is marked
   ``"state": "done"`` so that exports write it as a negative
   (:mod:`annotator.data.formats.negatives`).
   It returns an :class:`ImportChanges` (what was added, for undo) and the
   report lines.

Images only the source holds (labelme ``imageData``) are written next to
their JSON file by :func:`write_embedded` (never over a file), read from the
JSON file again at that moment: a plan holds only a reference to each
(:class:`~annotator.data.formats.plan.EmbeddedImage`). :func:`apply_plan`
writes them itself unless told they are written already (the window writes
them on its import thread first, then adds the records on the GUI thread).

:func:`import_labels` does both. Writing the working file is left to the
caller (:meth:`Dataset.save`, which backs the old file up first).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from annotator.data import coco
from annotator.data.atomic import atomic_write_bytes
from annotator.data.document import Dataset, DatasetError
from annotator.data.formats import cocoin, labelme, voc, yolo
from annotator.data.formats.common import rle_ious
from annotator.data.image_states import DONE, STATE_FIELD, recorded_state
from annotator.data.formats.plan import (
    EmbeddedChanged,
    EmbeddedImage,
    ImportCancelled,
    ImportedImage,
    ImportFailed,
    ImportPlan,
    ProgressFn,
    check_cancel,
)
from annotator.data.maskedit import fill_holes

__all__ = [
    "IMPORT_FORMATS",
    "ImportChanges",
    "ImportFailed",
    "ImportCancelled",
    "ImportPlan",
    "read_labels",
    "apply_plan",
    "EmbeddedWrites",
    "write_embedded",
    "import_labels",
    "undo_import",
]

_READERS: Dict[str, Callable[..., ImportPlan]] = {
    "labelme": labelme.read_labelme,
    "yolo-seg": yolo.read_yolo,
    "voc": voc.read_voc,
    "coco": cocoin.read_coco,
}

#: A mask this close (IoU) to one of the same category on the same image is the same mask: not added twice.
SAME_MASK_IOU = 0.95

#: Formats :func:`read_labels` reads.
IMPORT_FORMATS = tuple(_READERS)


@dataclass
class ImportChanges:
    """What :func:`apply_plan` added to a dataset (ids), for the window's undo and summary."""

    images: List[int] = field(default_factory=list)  # image records created
    categories: List[int] = field(default_factory=list)  # categories created
    annotations: List[int] = field(default_factory=list)  # annotations added
    images_touched: List[int] = field(default_factory=list)  # every image that got annotations or is a negative
    states: List[Tuple[int, Optional[str]]] = field(default_factory=list)  # (image id, state before) marked done

    @property
    def empty(self) -> bool:
        return not (self.images or self.categories or self.annotations or self.states)


def read_labels(
    src: Path,
    fmt: str,
    images: Optional[Path] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> ImportPlan:
    """Read labels in ``fmt`` from ``src`` (may run on a worker thread).

    Parameters
    ----------
    src
        ``labelme``: a folder of JSON files (searched recursively) or one file;
        ``yolo-seg``: the dataset folder (``images/``, ``labels/``,
        ``data.yaml``) or its YAML file; ``voc``: the folder holding
        ``SegmentationObject/``, ``SegmentationClass/``, ``class_names.txt``;
        ``coco``: the JSON file.
    images
        Where the images are when not where the format expects them
        (``yolo-seg``: ``<src>/images``; ``voc``: ``<src>/JPEGImages``;
        ``labelme``: a fallback folder for images not found at ``imagePath``;
        ``coco``: the folder ``file_name`` is relative to).
    progress
        ``progress(done, total)`` over the label files.
    cancel
        Checked between files; once set, :class:`ImportCancelled` is raised.

    Raises
    ------
    ValueError
        An unknown format.
    ImportFailed
        The source is missing or not in that format at all.
    """
    if fmt not in _READERS:
        raise ValueError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")
    return _READERS[fmt](Path(src), Path(images) if images is not None else None, progress, cancel)


def apply_plan(dataset: Dataset, plan: ImportPlan, *, embedded_written: bool = False) -> Tuple[ImportChanges, List[str]]:
    """Add a plan to ``dataset`` (never removing or changing what is there).

    Images only the source holds are written first (:func:`write_embedded`,
    one at a time, where the caller runs), unless ``embedded_written``: the
    caller has run :func:`write_embedded` already and passes the plan it returned.

    Returns
    -------
    changes : ImportChanges
    report : list of str
        The plan's report lines, then one for each image the working file
        already records at another size, and one for each mask already there.
    """
    report = list(plan.report)
    changes = ImportChanges()
    for name in plan.categories:
        if dataset.category_by_name(name.strip()) is None:
            changes.categories.append(dataset.add_category(name).id)
    for image in plan.images:
        if not image.annotations and not image.negative:
            continue
        if image.data is not None and not embedded_written and not _write_one(image, report):
            continue
        file_name = dataset.relative_name(image.path)
        known = dataset.image_by_name(file_name)
        if known is not None and (known.width, known.height) != (image.width, image.height):
            report.append(
                f"{image.where}: the working file records '{file_name}' as {known.width} x {known.height}, "
                f"but the image is {image.width} x {image.height} (width x height); not imported"
            )
            continue
        try:
            rec = dataset.ensure_image(file_name, image.width, image.height)
        except DatasetError as exc:  # pragma: no cover - sizes were compared above
            report.append(f"{image.where}: {exc}; not imported")
            continue
        if known is None:
            changes.images.append(rec.id)
        changes.images_touched.append(rec.id)
        if image.negative and not image.annotations:
            _mark_negative(dataset, rec, image.where, file_name, changes, report)
        present: Dict[int, List[_Present]] = {}
        for a in dataset.annotations_for(rec.id):
            present.setdefault(a.category_id, []).append(_Present(a.segmentation, before=True))
        for item in image.annotations:
            cat = dataset.category_by_name(item.category.strip())
            if cat is None:
                cat = dataset.add_category(item.category)
                changes.categories.append(cat.id)
            same = _same_mask_iou(item.rle, present.get(cat.id, []))
            if same >= SAME_MASK_IOU:
                report.append(
                    f"{item.where}: the working file already has this '{cat.name}' mask "
                    f"(IoU {math.floor(same * 1000) / 1000:.3f}); not added again"
                )
                continue
            ann = dataset.make_annotation(rec.id, cat.id, rle=item.rle, **item.extra)
            ann.iscrowd = item.iscrowd
            dataset.add_annotation(ann)
            present.setdefault(cat.id, []).append(_Present(ann.segmentation, before=False))
            changes.annotations.append(ann.id)
    return changes, report


@dataclass
class EmbeddedWrites:
    """What :func:`write_embedded` did.

    ``plan``: the plan without the images that could not be written (its
    report has a line for each); ``written``: ``(path, embedded)`` of each
    file this call created.
    """

    plan: ImportPlan
    written: List[Tuple[Path, EmbeddedImage]] = field(default_factory=list)


def write_embedded(
    plan: ImportPlan,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
    written: Optional[List[Tuple[Path, EmbeddedImage]]] = None,
) -> EmbeddedWrites:
    """Write each image only the source holds (labelme ``imageData``) where the plan put it (any thread).

    Each is read from its JSON file again (checked against the digest read
    before: a file changed meanwhile is reported, not written) and written
    atomically; never over a file (one already there holding the same bytes
    counts as written before). ``written``, when given, gets each file as it
    is created (so a caller can clean up after a cancel it did not see end).

    Raises
    ------
    ImportCancelled
        ``cancel`` was set: the files this call created are deleted again.
    """
    made: List[Tuple[Path, EmbeddedImage]] = written if written is not None else []
    report = list(plan.report)
    kept: List[ImportedImage] = []
    todo = [img for img in plan.images if img.data is not None and (img.annotations or img.negative)]
    done = 0
    try:
        for image in plan.images:
            if image.data is None or not (image.annotations or image.negative):
                kept.append(image)
                continue
            check_cancel(cancel)
            existed = os.path.lexists(image.path)
            if _write_one(image, report):
                kept.append(image)
                if not existed:
                    made.append((Path(image.path), image.data))
            done += 1
            if progress is not None:
                progress(done, len(todo))
        check_cancel(cancel)
    except ImportCancelled:
        remove_written(made)
        raise
    return EmbeddedWrites(dataclasses.replace(plan, images=kept, report=report), made)


def remove_written(written: List[Tuple[Path, EmbeddedImage]]) -> List[Path]:
    """Delete files :func:`write_embedded` created, those still holding what it wrote; returns those it could not."""
    left = []
    for path, embedded in written:
        if embedded.matches(path):
            try:
                path.unlink()
            except OSError:
                left.append(path)
    return left


def _write_one(image: ImportedImage, report: List[str]) -> bool:
    """Write one embedded image at ``image.path``; never over a file.

    Returns False (with a report line) when it cannot be written, its JSON
    file changed meanwhile, or another file is there by now.
    """
    path = Path(image.path)
    if os.path.lexists(path):
        same = image.data.matches(path)
        if not same:
            report.append(f"{image.where}: {path} appeared meanwhile and is not the embedded image; not imported")
        return same
    try:
        data = image.data.read()
    except EmbeddedChanged as exc:
        report.append(f"{image.where}: {exc}; not imported")
        return False
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        report.append(f"{image.where}: cannot write the embedded image to {path} ({exc.strerror or exc}); not imported")
        return False
    return True


class _Present:
    """A mask on the image (``before``: there before this import), and (once needed) its holes filled."""

    __slots__ = ("rle", "before", "_filled", "_done")

    def __init__(self, rle: dict, before: bool) -> None:
        self.rle = rle
        self.before = before
        self._filled: Optional[dict] = None
        self._done = False

    def filled(self) -> Optional[dict]:
        """The mask with its holes filled, or None when it has none (computed on its bounding box, once)."""
        if not self._done:
            self._done = True
            h, w = (int(v) for v in self.rle["size"])
            x, y, bw, bh = (int(round(v)) for v in coco.rle_bbox(self.rle))
            if bw and bh:
                mask = coco.decode_rle(self.rle, h, w)
                crop = mask[y:y + bh, x:x + bw]  # holes lie inside the box; its outside is background
                delta = fill_holes(np.pad(crop, 1))
                if not delta.empty:
                    mask[y:y + bh, x:x + bw] = delta.apply(np.pad(crop, 1))[1:-1, 1:-1]
                    self._filled = coco.encode_mask(mask)
        return self._filled


def _same_mask_iou(rle: dict, present: List[_Present]) -> float:
    """The best IoU of ``rle`` with a mask already there, or with one of them with its holes filled.

    Polygon formats cannot carry holes, so a re-import of our own polygon
    export is the hole-filled mask: it is the same object, not a new one.
    Only masks there before the import are filled (a source does not fill
    its own holes).
    """
    if not present:
        return 0.0
    ious = rle_ious(rle, [p.rle for p in present])
    best = float(ious.max())
    if best < SAME_MASK_IOU:
        # Fill only the masks that can pass: E inside F = filled(E) and IoU(N, F) >= t imply
        # |E| <= |N| / t and |N & E| >= |E| - (1/t - 1) |N|, both known from the plain IoU and the areas.
        t, a = SAME_MASK_IOU, coco.rle_area(rle)
        filled = []
        for p, iou in zip(present, ious):
            b = coco.rle_area(p.rle)
            inter = iou * (a + b) / (1 + iou)
            if p.before and b <= a / t and inter >= b - (1 / t - 1) * a - 0.5:
                f = p.filled()
                if f is not None:
                    filled.append(f)
        if filled:
            best = max(best, float(rle_ious(rle, filled).max()))
    return best


def _mark_negative(dataset: Dataset, rec, where: str, file_name: str, changes: ImportChanges, report: List[str]) -> None:
    """An empty label file: mark the image done (a negative) unless the working file has masks on it."""
    present = len(dataset.annotations_for(rec.id))
    if present:
        report.append(
            f"{where}: lists no objects, but the working file has {present} annotation(s) on '{file_name}'; "
            "they are kept and the image is not marked as a negative"
        )
        return
    old = recorded_state(rec.extra)
    if rec.extra.get(STATE_FIELD) != DONE:
        dataset.set_image_state(rec.id, DONE)
        changes.states.append((rec.id, old))


def import_labels(
    dataset: Dataset,
    src: Path,
    fmt: str,
    images: Optional[Path] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> Tuple[ImportChanges, List[str]]:
    """:func:`read_labels` then :func:`apply_plan` (see there); the dataset is not saved."""
    return apply_plan(dataset, read_labels(src, fmt, images, progress, cancel))


def undo_import(dataset: Dataset, changes: ImportChanges) -> None:
    """Remove what :func:`apply_plan` added: its annotations, the categories and image records it created.

    Image states it set go back to what they were. An image record it created
    that holds annotations made since stays.
    """
    for image_id, old in reversed(changes.states):
        if image_id in dataset.images:
            dataset.set_image_state(image_id, old)
    for aid in reversed(changes.annotations):
        if aid in dataset.annotations:
            dataset.remove_annotation(aid)
    for cid in reversed(changes.categories):
        if cid in dataset.categories:
            dataset.remove_category(cid)
    for iid in reversed(changes.images):
        if iid in dataset.images and not dataset.annotations_for(iid):
            dataset.remove_image(iid)
