"""Opening and saving a large working file: what a user waits for on a 100k-annotation dataset.

A COCO working file of ``N`` annotations (``N / 100`` images of 640 x 480,
100 rectangles each, compressed RLE as the window writes it, one extra field
per annotation) is written once; then, each timed ``--repeat`` times
(median):

* **open**: :meth:`Dataset.open` with the lock (read, parse, validate every
  RLE, build the records);
* **save after one accept**: one annotation added (as an accept does), then
  :meth:`Dataset.save` (encode, external-change check, atomic write, fsync):
  what the window does on the GUI thread after every accept;
* **first save**: the first :meth:`Dataset.save` after opening (no line of
  the save cache is filled yet: every record is serialised);
* **external-change check**: :meth:`Dataset.changed_on_disk` on an unchanged
  file (what runs before every save);

against the references measured in the same run: ``json.loads`` and
``json.dumps`` of the same file (the floor of any loader or saver of it), the
time ``coco.inspect_coco`` takes alone to validate every RLE (part of the
open), and **re-serialise all**: ``dumps_coco(to_coco())`` and UTF-8 encoding,
the encode step every save ran before the save cache (without its write).

Prints a markdown table (``--out`` to write it). Run from the repository root::

    python benchmarks/bench_working_file.py --n 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _write(path: Path, n: int) -> None:
    import numpy as np

    from annotator.data import coco

    rng = np.random.default_rng(0)
    mask = np.zeros((480, 640), bool)
    shapes = []
    for _ in range(64):  # distinct masks, reused: the file is what matters here, not how it was made
        mask[:] = False
        y, x = int(rng.integers(0, 400)), int(rng.integers(0, 560))
        mask[y : y + 50, x : x + 60] = True
        rle = coco.encode_mask(mask)
        shapes.append((rle, coco.rle_area(rle), coco.rle_bbox(rle)))
    per_image = 100
    images, annotations = [], []
    for i in range(max(1, n // per_image)):
        images.append({"id": i + 1, "file_name": f"sub{i % 10}/img{i:06d}.jpg", "width": 640, "height": 480})
        for j in range(per_image):
            if len(annotations) == n:
                break
            rle, area, bbox = shapes[(i + j) % len(shapes)]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + j % 5,
                                "segmentation": rle, "area": area, "bbox": bbox, "iscrowd": 0,
                                "predicted_iou": 0.9})
    categories = [{"id": c, "name": f"class {c}"} for c in range(1, 6)]
    from annotator.data.document import dumps_coco

    path.write_text(dumps_coco({"images": images, "annotations": annotations, "categories": categories}))


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(n: int, repeat: int, tmp: Path) -> List[str]:
    from annotator.data import atomic, coco
    from annotator.data.document import Dataset

    path = tmp / f"n{n}" / "annotations.json"
    path.parent.mkdir()
    _write(path, n)
    size_mb = path.stat().st_size / 1e6
    raw = path.read_bytes()
    data = json.loads(raw)

    def open_():
        Dataset.open(path, lock=True).close()

    t_open = _median(open_, repeat)
    t_inspect = _median(lambda: coco.inspect_coco(data, check_geometry=False, require_all=False), repeat)
    t_loads = _median(lambda: json.loads(raw), repeat)
    from annotator.data import jsonsafe
    from annotator.data.document import dumps_coco

    def first_save() -> float:
        fresh = Dataset.open(path, lock=True)
        try:
            fresh.add_category(f"c{time.perf_counter_ns()}")
            t = time.perf_counter()
            fresh.save()
            return time.perf_counter() - t
        finally:
            fresh.close()

    atomic._backed_up.add(os.path.normcase(os.path.abspath(path)))  # time the save, not the first backup
    t_first = statistics.median(first_save() for _ in range(repeat))
    ds = Dataset.open(path, lock=True)
    try:
        ds.save()  # fills the save cache, as the first save of a session does
        image_id = min(ds.images)
        rle = ds.annotations[min(ds.annotations)].segmentation

        def accept_and_save():
            ds.add_annotation(ds.make_annotation(image_id, 1, rle=rle, predicted_iou=0.9))
            ds.save()

        t_save = _median(accept_and_save, repeat)
        t_check = _median(ds.changed_on_disk, repeat)
        t_all = _median(lambda: jsonsafe.encode_text(dumps_coco(ds.to_coco())), repeat)
    finally:
        ds.close()
    t_dumps = _median(lambda: json.dumps(data), repeat)
    return [f"| {n:,} | {size_mb:.0f} MB | {t_open:.2f} s | {t_inspect:.2f} s | {t_loads:.2f} s "
            f"| {t_save:.3f} s | {t_first:.2f} s | {t_all:.2f} s | {t_dumps:.2f} s | {t_check * 1e3:.0f} ms |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000], help="annotations per file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load:.1f} at the start; "
        f"medians of {args.repeat}",
        "",
        "| annotations | file | open | RLE validation alone | ref. json.loads | save after one accept "
        "| first save | ref. re-serialise all | ref. json.dumps | external-change check |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            lines += run(n, args.repeat, Path(tmp))
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
