"""Memory benchmark (issue 15): resident memory over a run of fresh encodes, with and without returning freed memory.

Each configuration runs in its own child process: MobileSAM on the CPU,
``EmbeddingCache.get_or_compute`` with the disk tier on and a bounded memory
tier, distinct photos (crops and rescalings of scikit-image's photos, 700 to
2200 pixels a side, decoded from JPEG files by ``load_image`` as the window
does). Configurations:

* ``fresh, trim``: every encode on a fresh thread, as the window does
  (``in_fresh_thread``); ``malloc_trim(0)`` after each encode (the fix);
* ``fresh, no trim``: the same without it (before the fix: the reference);
* ``one thread, no trim``: every encode on one long-lived thread, as
  ``sam-annotator encode`` does.

Reported: resident memory after the model is loaded and two images encoded
(``start``), after the whole run (``end``), the largest value seen, and the
growth per image over the second half of the run. Results go to
``docs/benchmarks/memory.md`` with the machine and date.

Run from the repository root::

    python benchmarks/bench_memory.py --images 150 --cache-mb 64
    python benchmarks/bench_memory.py --images 40 --omp-threads 16   # the arena count of a 16-core machine
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, tempfile, threading
import cv2, numpy as np
from PIL import Image
from skimage import data
import sam_core.cache as sc
from sam_core import Predictor, ensure_checkpoint, load_model
from annotator.data.imageio import load_image

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

n, cache_mb, fresh, trim = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "fresh", sys.argv[4] == "trim"
if not trim:
    sc.release_free_memory = lambda: False
folder = tempfile.mkdtemp()
rng = np.random.default_rng(0)
photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
paths = []
for i in range(n):
    h, w = int(rng.integers(700, 2200)), int(rng.integers(700, 2200))
    img = np.roll(cv2.resize(photos[i % 4], (w, h)), int(rng.integers(0, 50)), axis=1)
    p = os.path.join(folder, f"img{i:04d}.jpg")
    Image.fromarray(np.ascontiguousarray(img)).save(p, quality=90)
    paths.append(p)
ck = ensure_checkpoint("vit_t")
predictor = Predictor(load_model("vit_t", checkpoint=ck, device="cpu"))
cache = sc.EmbeddingCache(os.path.join(folder, "emb"), model_type="vit_t", checkpoint_id=sc.checkpoint_fingerprint(ck),
                          memory_bytes=cache_mb * 2**20)

def encode(path):
    image = load_image(path)
    if fresh:
        t = threading.Thread(target=cache.get_or_compute, args=(image, predictor)); t.start(); t.join()
    else:
        cache.get_or_compute(image, predictor)

trace = []
for i, p in enumerate(paths):
    encode(p)
    trace.append(round(rss_mb()))
print(json.dumps({"trace": trace, "misses": cache.stats.misses}))
"""

CONFIGS = [("fresh, trim", "fresh", "trim"), ("fresh, no trim", "fresh", "notrim"), ("one thread, no trim", "one", "notrim")]


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(images: int, cache_mb: int, omp_threads: int) -> Dict[str, List[int]]:
    out = {}
    for label, threads, trim in CONFIGS:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if omp_threads:
            env.update(OMP_NUM_THREADS=str(omp_threads), MALLOC_ARENA_MAX=str(8 * omp_threads))
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(images), str(cache_mb), threads, trim],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])["trace"]
        print(label, out[label], flush=True)
    return out


def render(traces: Dict[str, List[int]], images: int, cache_mb: int, omp_threads: int) -> str:
    import torch

    lines = [
        "# Memory over fresh encodes (issue 15) — `benchmarks/bench_memory.py`",
        "",
        f"{_dt.date.today().isoformat()}; {_cpu()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OpenMP threads {omp_threads or torch.get_num_threads()}; MobileSAM on the CPU, {images} distinct photos "
        f"(700-2200 px a side, JPEG), memory tier {cache_mb} MB, disk tier on. Resident memory in MB.",
        "",
        "| configuration | after 2 images | end | largest | growth per image, second half |",
        "|---|---|---|---|---|",
    ]
    for label, trace in traces.items():
        half = len(trace) // 2
        slope = (trace[-1] - trace[half]) / max(1, len(trace) - 1 - half)
        lines.append(f"| {label} | {trace[1]} | {trace[-1]} | {max(trace)} | {slope:+.2f} MB |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--omp-threads", type=int, default=0, help="OpenMP threads (and 8x as many malloc arenas)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "memory.md"))
    args = ap.parse_args(argv)
    traces = run(args.images, args.cache_mb, args.omp_threads)
    text = render(traces, args.images, args.cache_mb, args.omp_threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
