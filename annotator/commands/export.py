"""``sam-annotator export``: write a working file out in the format a trainer reads.

::

    sam-annotator export ANNOTATIONS.json --format F -o OUT [--tolerance 0.25]
        [--copy-images] [--voc-border N] [--masks-per-image]

=============  =====================================================================
``--format``   ``-o OUT`` and what is written there
=============  =====================================================================
coco-rle       a COCO JSON file; masks as compressed RLE (lossless, the default)
coco-polygon   a COCO JSON file; masks traced as polygons (holes filled)
yolo-seg       a folder: ``labels/<image>.txt`` polygons and ``data.yaml`` (Ultralytics)
voc            a folder: ``SegmentationClass/``, ``SegmentationObject/`` PNGs, ``class_names.txt``, ``Annotations/*.xml``
labelme        a folder: one labelme JSON per image (``imagePath`` relative)
masks          a folder: one PNG per annotation (or per image) and ``masks.csv``
=============  =====================================================================

Polygon formats trace each mask with ``--tolerance`` (pixels a simplified
outline may stray; default 0.25, which keeps real masks pixel-exact apart
from holes); every annotation whose mask has a hole is named in a warning on
stderr (its holes are filled); an empty mask is left out, with a warning.
``voc`` and ``masks`` (per image) put the smaller mask on top where masks
overlap, with a warning. Every annotated image gets its output, and so does
every negative (an image marked ``"state": "done"`` with no annotations: an
empty label); an image with no annotations that is not marked done is left
out, with a warning.

The output's image paths are relative to where it is written. A polygon
export over the working file is refused, as is any export that would write
over a source image. COCO output is validated
(:func:`annotator.data.coco.validate_coco`) and written atomically; a COCO
file already there is backed up first (``NAME.<time>.bak``), and one open in a
window (its lock held: the working file of a folder being annotated) is not
written at all (:mod:`annotator.data.replacing`); folder
output is staged and moved into place at the end, backing up files there that
sam-annotator did not write. Exit status: 0 on success, 1 on a bad input
file or a failed write or validation, 2 on a usage error.

From Python (the window's File → Export): :mod:`annotator.data.export`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from typing import Optional, Sequence

from annotator.data.document import Dataset, DatasetError
from annotator.data.export import DEFAULT_TOLERANCE, FOLDER_FORMATS, FORMATS, export_data, snapshot
from annotator.data.files import path_arg
from annotator.data.lock import LockBusy
from annotator.data.replacing import replacing


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sam-annotator export",
        description="Export a working file as COCO (RLE or polygons), YOLO segmentation, Pascal VOC, labelme or mask PNGs.",
    )
    p.add_argument("annotations", type=path_arg, help="the working file (COCO JSON)")
    p.add_argument("--format", choices=FORMATS, default="coco-rle", help="output format (default coco-rle)")
    p.add_argument(
        "-o", "--output", type=path_arg, required=True,
        help="the COCO JSON file to write (coco-*), or the folder to write into (the others)",
    )  # fmt: skip
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"polygon simplification, in pixels (coco-polygon, yolo-seg, labelme; 0 keeps every corner; "
        f"default {DEFAULT_TOLERANCE})",
    )
    p.add_argument(
        "--copy-images",
        action="store_true",
        help="yolo-seg: copy the images into OUT/images (where Ultralytics looks); voc: into OUT/JPEGImages",
    )
    p.add_argument("--voc-border", type=int, default=0, metavar="N", help="voc: mark N pixels along object edges as 255")
    p.add_argument("--masks-per-image", action="store_true", help="masks: one 16-bit instance PNG per image")
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
    if args.voc_border < 0:
        err(f"error: --voc-border must be >= 0, got {args.voc_border}")
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

    backup = None
    try:
        data = snapshot(ds, args.output, args.format)
        n_images, n_annotations = len(data["images"]), len(data["annotations"])
        with replacing(args.output) if args.format not in FOLDER_FORMATS else contextlib.nullcontext() as backup:
            warnings = export_data(
                data, args.output, args.format, args.tolerance,
                copy_images=args.copy_images, voc_border=args.voc_border, masks_per_image=args.masks_per_image,
            )  # fmt: skip
    except LockBusy as exc:
        who = exc.holder.describe() if exc.holder is not None else "its lock file cannot be read"
        err(f"error: {args.output} is open in another window or program ({who}); it was not overwritten: "
            "close it there first, or export to another file")
        return 1
    except ValueError as exc:
        err(f"error: {exc}")
        return 1
    except OSError as exc:
        err(f"error: cannot write {args.output}: {exc.strerror or exc}")
        return 1
    for w in warnings:
        err(f"warning: {w}")
    if args.format not in FOLDER_FORMATS:
        n_annotations = len(data["annotations"])
    kept = f" (the previous file was backed up as {backup.name})" if backup is not None else ""
    print(f"wrote {args.output}: {n_images} images, {n_annotations} annotations, {args.format}{kept}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
