"""The image list on a large folder: counts by state, "next to do", a burst of row changes (issue 16).

A real :class:`~annotator.session.session.Session` (no model, no image files
needed: rows are computed from the document) holds ``N`` images, 40% of them
listed in the working file with states; a real
:class:`~annotator.ui.panels.ImageListPanel` (offscreen) shows them. Measured:

* **counts**: one update of the filter's counts and the summary (reads every row);
* **burst**: ``N`` row changes at once (what the cached-embeddings scan does
  when a folder opens) until the counts are shown, against the reference
  measured in the same run: the counts updated once per row change, as the
  list did before (quadratic; measured at ``--reference-n`` images only);
* **next to do**: finding the next image to do when every image before the
  last is done (the worst case: a full scan).

Prints a markdown table (``--out`` to write it). Run from the repository root::

    python benchmarks/bench_image_list.py --n 1000 5000 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _session(n: int, tmp: Path):
    from annotator.data.document import Dataset
    from annotator.data.image_states import DONE, SKIPPED
    from annotator.session.session import Session

    folder = tmp / f"folder{n}"
    paths = [folder / f"img{i:06d}.jpg" for i in range(n)]
    ds = Dataset(folder / "annotations.json")
    for i, p in enumerate(paths):
        if i % 5 < 2:  # 40% listed
            rec = ds.ensure_image(ds.relative_name(p), 64, 48)
            ds.set_image_state(rec.id, DONE if i % 5 == 0 else SKIPPED)
    s = Session()
    s.images.set_folder(folder, paths)
    s.edits.set_dataset(ds)
    return s, paths


def _process(app) -> None:
    app.processEvents()
    app.processEvents()


def measure(n: int, reference: bool, repeats: int, tmp: Path) -> dict:
    from PySide6.QtWidgets import QApplication

    from annotator.ui.panels import ImageListPanel

    app = QApplication.instance() or QApplication([])
    s, paths = _session(n, tmp)
    panel = ImageListPanel(s.image_count, s.image_row)
    panel.reset()
    out = {"n": n}

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        panel._update_summary()
        times.append(time.perf_counter() - t0)
    out["counts_ms"] = statistics.median(times) * 1000

    t0 = time.perf_counter()
    for i in range(n):
        panel.refresh_row(i)
    _process(app)
    out["burst_s"] = time.perf_counter() - t0

    if reference:
        t0 = time.perf_counter()
        for i in range(n):
            panel.model.refresh_row(i)
            panel._update_summary()  # what refresh_row did before: the counts once per row
        out["burst_before_s"] = time.perf_counter() - t0

    ds = s.dataset
    for p in paths[:-1]:  # every image but the last is done: next to do scans them all
        rec = ds.image_by_name(ds.relative_name(p)) or ds.ensure_image(ds.relative_name(p), 64, 48)
        ds.set_image_state(rec.id, "done")
    s.images.index = 0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = s.states.next_todo_index()
        times.append(time.perf_counter() - t0)
    assert found == n - 1, found
    out["next_todo_ms"] = statistics.median(times) * 1000
    panel.deleteLater()
    s.shutdown()
    _process(app)
    return out


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000], help="folder sizes")
    p.add_argument("--reference-n", type=int, default=1000, help="the size at which the old per-row counts run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, n == args.reference_n, args.repeats, Path(tmp)) for n in args.n]
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| images | counts update | burst of N row changes | same, counts per row (before) | next to do, full scan |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        before = f"{r['burst_before_s']:.1f} s" if "burst_before_s" in r else "—"
        lines.append(f"| {r['n']:,} | {r['counts_ms']:.0f} ms | {r['burst_s'] * 1000:.0f} ms | {before} | "
                     f"{r['next_todo_ms']:.0f} ms |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
