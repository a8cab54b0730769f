"""Exporting a working file: the functions the window's File → Export and ``sam-annotator export`` both call.

:func:`export_dataset` exports a :class:`~annotator.data.document.Dataset` as
it is in memory and returns the warnings; :func:`snapshot` +
:func:`export_data` split it into the part that must run where the document
lives and the part that may run on a worker thread (with progress and cancel).

``coco-rle`` is lossless. ``coco-polygon`` traces each mask with
:func:`annotator.data.coco.mask_to_polygons`; ``area`` and ``bbox`` are then
those of the polygons as pycocotools rasterises them. Polygons cannot carry
holes: each annotation whose mask has one is named in a warning (its holes are
filled); an empty mask has no polygon and is left out, with a warning.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from annotator.data import coco
from annotator.data.atomic import atomic_write_text
from annotator.data.document import Dataset, dumps_coco

FORMATS = ("coco-rle", "coco-polygon")


class ExportCancelled(Exception):
    """:func:`export_data` stopped because its ``cancel`` flag was set (nothing was written)."""


ProgressFn = Callable[[int, int], object]


def _to_polygons(
    data: Dict[str, Any],
    tolerance: float,
    warn: Callable[[str], None],
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> None:
    """Replace every RLE in ``data`` by polygons, in place; empty masks are dropped.

    Works on ``data`` alone (each mask is decoded from its own RLE), so it may
    run on any thread once the snapshot is taken.
    """
    images = {img["id"]: img for img in data["images"]}
    categories = {cat["id"]: cat["name"] for cat in data["categories"]}
    kept = []
    items = data["annotations"]
    for n, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            raise ExportCancelled("the export was cancelled")
        h, w = (int(v) for v in item["segmentation"]["size"])
        mask = coco.decode_rle(item["segmentation"], h, w)
        polygons, has_holes = coco.mask_to_polygons(mask, tolerance)
        where = (
            f"annotation {item['id']} (image '{images[item['image_id']]['file_name']}', "
            f"category '{categories.get(item['category_id'], item['category_id'])}')"
        )
        if not polygons:
            warn(f"{where}: the mask is empty; left out of the export")
        else:
            if has_holes:
                warn(f"{where}: the mask has holes; polygons cannot carry holes, so they are filled in the export")
            rle = coco.polygons_to_rle(polygons, h, w)
            item["segmentation"] = polygons
            item["area"] = coco.rle_area(rle)
            item["bbox"] = coco.rle_bbox(rle)
            kept.append(item)
        if progress is not None:
            progress(n + 1, len(items))
    data["annotations"] = kept


def _check_args(fmt: str, tolerance: float) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"the tolerance must be a number >= 0, got {tolerance}")


def export_data(
    data: Dict[str, Any],
    output: Path,
    fmt: str = "coco-rle",
    tolerance: float = 1.0,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> List[str]:
    """Convert a COCO snapshot to ``fmt``, validate it and write it to ``output`` atomically.

    Parameters
    ----------
    data
        ``Dataset.to_coco(root=output.parent)``: a snapshot that no one else
        changes (it is modified in place). Only it is read, so this may run on
        a worker thread while the document keeps changing.
    output
        The COCO JSON file to write.
    fmt
        ``"coco-rle"`` (lossless) or ``"coco-polygon"``.
    tolerance
        Polygon simplification in pixels (``coco-polygon`` only).
    progress
        ``progress(done, total)`` after each annotation converted (polygons only).
    cancel
        Checked between annotations; once set, :class:`ExportCancelled` is raised and nothing is written.

    Returns
    -------
    list of str
        Warnings for the user (masks with holes, empty masks), without a ``warning:`` prefix.

    Raises
    ------
    ValueError
        A bad format or tolerance, or data that fails :func:`annotator.data.coco.validate_coco`.
    OSError
        The file could not be written.
    ExportCancelled
        ``cancel`` was set.
    """
    _check_args(fmt, tolerance)
    warnings: List[str] = []
    if fmt == "coco-polygon":
        _to_polygons(data, tolerance, warnings.append, progress, cancel)
    problems = coco.validate_coco(data)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:20])
        raise ValueError(f"the exported data failed validation ({len(problems)} problems):\n{listed}")
    if cancel is not None and cancel.is_set():
        raise ExportCancelled("the export was cancelled")
    atomic_write_text(output, dumps_coco(data))
    return warnings


def snapshot(dataset: Dataset, output: Path, fmt: str = "coco-rle") -> Dict[str, Any]:
    """The part of an export that must run where ``dataset`` lives (the GUI thread): a COCO copy.

    ``file_name`` values are made relative to ``output``'s folder. Raises
    ``ValueError`` for a polygon export over the working file itself (it would lose the holes).
    """
    output = Path(output)
    if fmt == "coco-polygon" and output.resolve() == Path(dataset.path).resolve():
        raise ValueError(f"refusing to overwrite the working file {dataset.path} with a lossy polygon export")
    return dataset.to_coco(root=output.parent)


def export_dataset(
    dataset: Dataset,
    output: Path,
    fmt: str = "coco-rle",
    tolerance: float = 1.0,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> List[str]:
    """Export ``dataset`` (as it is in memory, saved or not) to ``output``; returns the warnings.

    :func:`snapshot` then :func:`export_data` (see there for the parameters and errors).
    """
    _check_args(fmt, tolerance)
    output = Path(output)
    return export_data(snapshot(dataset, output, fmt), output, fmt, tolerance, progress, cancel)
