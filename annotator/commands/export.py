"""``sam-annotator export``: write a working file out as COCO RLE or polygons.

::

    sam-annotator export ANNOTATIONS.json --format coco-rle|coco-polygon -o OUT.json [--tolerance 1.0]

``coco-rle`` (the default) is lossless: the working file's masks as compressed
RLE. ``coco-polygon`` traces each mask with :func:`annotator.data.coco.mask_to_polygons`
(``--tolerance``: how far, in pixels, a simplified outline may stray); ``area``
and ``bbox`` are then those of the polygons as pycocotools rasterises them.
Polygons cannot carry holes, so every annotation whose mask has one is named
in a warning on stderr (its holes are filled in the export); an empty mask has
no polygon and is left out, with a warning.

The output's ``file_name`` values are rewritten relative to the output's
folder. A polygon export over the working file itself is refused (it would
lose the holes). The result is validated (:func:`annotator.data.coco.validate_coco`) before
it is written, atomically. Exit status: 0 on success, 1 on a bad input file or
a failed write or validation, 2 on a usage error.

From Python (the window's File → Export): :func:`export_dataset` exports a
:class:`~annotator.data.document.Dataset` as it is in memory and returns the
warnings; :func:`snapshot` + :func:`export_data` split it into the part that
must run where the document lives and the part that may run on a worker
thread (with progress and cancel).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from annotator.data.document import Dataset, DatasetError
from annotator.data.export import FORMATS, export_data, snapshot


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
