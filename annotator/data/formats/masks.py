"""Plain mask PNGs, for tools that want pixels and a table.

Two layouts, both lossless (no polygons: holes and every pixel kept):

* **one PNG per annotation** (default): ``OUT/<name>/<annotation id>.png``,
  8-bit grayscale, 255 inside the mask and 0 outside;
* **one PNG per image** (``per_image=True``): ``OUT/<name>.png``, 16-bit
  grayscale, value ``k`` where the image's ``k``-th annotation (id order) is,
  0 elsewhere. Overlaps: the smaller mask is on top (warned), as for VOC.

``OUT/masks.csv`` lists every image exported with its masks:
``image`` (path relative to OUT), ``mask`` (PNG relative to OUT), ``value``
(255, or the instance value), ``annotation_id``, ``category_id``,
``category``. A negative (no annotations) has one row with empty mask
columns (per image, it also gets an all-zero PNG). Empty masks are left out,
with a warning.
"""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from annotator.data.formats.common import (
    ProgressFn,
    Snapshot,
    check_cancel,
    output_keys,
    paint_instances,
    png_bytes,
)
from annotator.data.formats.staging import StagedFolder

FORMAT = "masks"
CSV_NAME = "masks.csv"
MAX_PER_IMAGE = 65535


def write_masks(
    data: Mapping[str, Any],
    out: Path,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
    *,
    per_image: bool = False,
    protected: Tuple[str, ...] = (),
) -> List[str]:
    """Write a COCO snapshot (``file_name`` relative to ``out``) as mask PNGs and ``masks.csv``; returns the warnings."""
    snap = Snapshot(data, out)
    warnings: List[str] = []
    paths = snap.paths
    keys = output_keys(snap.images, paths, snap.base, warnings.append, snap.shown)
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["image", "mask", "value", "annotation_id", "category_id", "category"])
    total = len(snap.images)
    with StagedFolder(out, FORMAT, protected=protected) as stage:
        for n, img in enumerate(snap.images):
            check_cancel(cancel)
            key = keys.get(img["id"])
            if key is not None:
                kept = []
                for ann in snap.by_image[img["id"]]:
                    mask = snap.mask(ann, img)
                    if mask.any():
                        kept.append((ann, mask))
                    else:
                        warnings.append(f"{snap.describe(ann)}: the mask is empty; left out of the export")
                if len(kept) > MAX_PER_IMAGE and per_image:
                    warnings.append(
                        f"{snap.image(img)}: {len(kept)} masks, but a 16-bit PNG holds {MAX_PER_IMAGE}; "
                        "the rest are left out"
                    )
                    kept = kept[:MAX_PER_IMAGE]
                image = img["file_name"]
                if per_image:
                    rel = f"{key}.png"
                    entries = [(k + 1, m) for k, (_, m) in enumerate(kept)]
                    shape = (int(img["height"]), int(img["width"]))
                    index = paint_instances(entries, shape, np.uint16, snap.image(img), warnings.append)
                    stage.write_bytes(rel, png_bytes(index))
                    for k, (ann, _) in enumerate(kept):
                        rows.writerow([image, rel, k + 1, ann["id"], ann["category_id"], snap.names[ann["category_id"]]])
                    if not kept:
                        rows.writerow([image, rel, "", "", "", ""])
                else:
                    for ann, mask in kept:
                        rel = f"{key}/{ann['id']}.png"
                        stage.write_bytes(rel, png_bytes(mask.astype(np.uint8) * 255))
                        rows.writerow([image, rel, 255, ann["id"], ann["category_id"], snap.names[ann["category_id"]]])
                    if not kept:
                        rows.writerow([image, "", "", "", "", ""])
            if progress is not None:
                progress(n + 1, total)
        check_cancel(cancel)
        stage.write_text(CSV_NAME, table.getvalue())
        warnings.extend(stage.commit())
    return warnings
