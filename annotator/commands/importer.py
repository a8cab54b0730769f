"""``sam-annotator import``: bring existing labels into a working file.

::

    sam-annotator import SRC --format labelme|yolo-seg|voc|coco -o ANNOTATIONS.json [--images DIR]

=========  ====================================================================
format     SRC
=========  ====================================================================
labelme    a folder of labelme JSON files (searched recursively), or one file
yolo-seg   an Ultralytics dataset folder (``images/``, ``labels/``, ``data.yaml``), one with
           split folders (``train/images``, ``train/labels``, ``valid/...``, as Roboflow
           writes it) or its YAML; 5-number lines (boxes) become rectangles
voc        a folder with ``SegmentationObject/``, ``SegmentationClass/`` (images in
           ``JPEGImages/``); class names from ``class_names.txt``, ``labelmap.txt`` (CVAT,
           Datumaro: names and colours) or ``Annotations/*.xml``
coco       a COCO JSON file (images beside it, or in ``../images/`` as CVAT lays it out)
=========  ====================================================================

Polygons are rasterised to RLE at each image's size (read from the image
file, EXIF orientation applied); categories are created by name, in the
source's class order; images are matched to the working file's records by
their path relative to its folder. ``--images DIR`` says where the images are
when they are not where the format puts them.

The working file is created if missing; an existing one is only added to
(never dropped from), a mask already there is not added twice, and the old
file is backed up (``NAME.<time>.bak``) before it is written. A working file
open in a window (its lock held by another process) is not touched: the
import is refused with a message naming that process. Everything that
cannot be used (malformed lines or shapes, unknown classes, label files
without images, images without labels, duplicates) is listed on stderr, one
``warning:`` line each; the rest is imported. Exit status: 0 when something
was imported, 1 when nothing could be (or on a bad working file or a failed
write), 2 on a usage error.

From Python (the window's File → Import): :mod:`annotator.data.formats.importing`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from annotator.data.atomic import backup_once
from annotator.data.document import Dataset, DatasetError
from annotator.data.files import path_arg
from annotator.data.formats.importing import IMPORT_FORMATS, ImportFailed, apply_plan, read_labels


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sam-annotator import",
        description="Import labelme, YOLO segmentation, Pascal VOC or COCO labels into a working file.",
    )
    p.add_argument("source", type=path_arg, help="the labels to import (folder or file, see --format)")
    p.add_argument("--format", choices=IMPORT_FORMATS, required=True, help="the source's format")
    p.add_argument(
        "-o", "--output", type=path_arg, required=True,
        help="the working file (COCO JSON) to create or add to; image paths are stored relative to its folder",
    )  # fmt: skip
    p.add_argument("--images", type=path_arg, default=None, help="the images' folder, when not where the format puts it")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the import; returns the exit status (see the module docstring)."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help or a usage error, already printed
        return int(exc.code or 0)

    def err(message: str) -> None:
        print(message, file=sys.stderr)

    if args.images is not None and not args.images.is_dir():
        err(f"error: --images {args.images}: no such folder")
        return 1
    if args.output.exists() and not args.output.is_file():
        err(f"error: {args.output} is not a file")
        return 1
    try:
        dataset = Dataset.open(args.output, lock=True)  # one writer: not while a window has it open
    except DatasetError as exc:
        err(f"error: the working file cannot be used, so nothing was imported: {exc}")
        return 1
    try:
        return _import_into(dataset, args, err)
    finally:
        dataset.close()


def _import_into(dataset: Dataset, args: argparse.Namespace, err) -> int:
    """The import proper, with ``dataset`` open (and locked, unless the folder is read-only)."""
    if dataset.read_only:
        holder = dataset.lock_holder
        who = holder.describe() if holder is not None else "its lock file cannot be read"
        err(f"error: {args.output} is open in another window or program ({who}), so nothing was imported; "
            "close it there first, or import from that window (File > Import)")
        return 1
    try:
        plan = read_labels(args.source, args.format, args.images)
    except ImportFailed as exc:
        err(f"error: {exc}")
        return 1
    changes, report = apply_plan(dataset, plan)
    for line in report:
        err(f"warning: {line}")
    if not changes.images_touched:
        err(f"error: nothing could be imported from {args.source}; {args.output} was not written")
        return 1
    try:
        backup = backup_once(args.output)
        dataset.save()
    except OSError as exc:
        err(f"error: cannot write {args.output}: {exc.strerror or exc}")
        return 1
    kept = f" (the previous version was backed up as {backup.name})" if backup is not None else ""
    print(
        f"imported into {args.output}: {len(changes.images_touched)} images ({len(changes.images)} new), "
        f"{len(changes.annotations)} annotations, {len(changes.categories)} new categories, "
        f"{len(report)} problems reported{kept}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
