"""``sam-annotator export``: write a working file out as COCO RLE or polygons.

::

    sam-annotator export ANNOTATIONS.json --format coco-rle|coco-polygon -o OUT.json [--tolerance 1.0]

``coco-rle`` (the default) is lossless: the working file's masks as compressed
RLE. ``coco-polygon`` traces each mask with :func:`annotator.coco.mask_to_polygons`
(``--tolerance``: how far, in pixels, a simplified outline may stray); ``area``
and ``bbox`` are then those of the polygons as pycocotools rasterises them.
Polygons cannot carry holes, so every annotation whose mask has one is named
in a warning on stderr (its holes are filled in the export); an empty mask has
no polygon and is left out, with a warning.

The output's ``file_name`` values are rewritten relative to the output's
folder. A polygon export over the working file itself is refused (it would
lose the holes). The result is validated (:func:`annotator.coco.validate_coco`) before
it is written, atomically. Exit status: 0 on success, 1 on a bad input file or
a failed write or validation, 2 on a usage error.

From Python (the window's File → Export): :func:`export_dataset` exports a
:class:`~annotator.document.Dataset` as it is in memory and returns the
warnings; :func:`snapshot` + :func:`export_data` split it into the part that
must run where the document lives and the part that may run on a worker
thread (with progress and cancel).
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from annotator import coco
from annotator.atomic import atomic_write_text
from annotator.document import Dataset, DatasetError, dumps_coco

FORMATS = ("coco-rle", "coco-polygon")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sam-annotator export",
        description="Export a working file as COCO instance segmentation (RLE or polygons).",
    )
    p.add_argument("annotations", type=Path, help="the working file (COCO JSON)")
    p.add_argument("--format", choices=FORMATS, default="coco-rle", help="segmentation encoding (default coco-rle)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the COCO JSON file to write")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="polygon simplification, in pixels (coco-polygon only; 0 keeps every corner; default 1.0)",
    )
    return p


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
        A bad format or tolerance, or data that fails :func:`annotator.coco.validate_coco`.
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the export; returns the exit status (see the module docstring)."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help or a usage error, already printed
        return int(exc.code or 0)

    def err(message: str) -> None:
        print(message, file=sys.stderr)

    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        err(f"error: --tolerance must be a number >= 0, got {args.tolerance}")
        return 2
    if not args.annotations.is_file():
        err(f"error: {args.annotations}: no such annotation file")
        return 1
    if args.format == "coco-polygon" and args.output.resolve() == args.annotations.resolve():
        err(f"error: refusing to overwrite the working file {args.annotations} with a lossy polygon export")
        return 1
    try:
        ds = Dataset.open(args.annotations)
    except DatasetError as exc:
        err(f"error: {exc}")
        return 1

    data = snapshot(ds, args.output, args.format)
    try:
        warnings = export_data(data, args.output, args.format, args.tolerance)
    except ValueError as exc:
        err(f"error: {exc}")
        return 1
    except OSError as exc:
        err(f"error: cannot write {args.output}: {exc.strerror or exc}")
        return 1
    for w in warnings:
        err(f"warning: {w}")
    n = len(data["annotations"])
    print(f"wrote {args.output}: {len(data['images'])} images, {n} annotations, {args.format}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
