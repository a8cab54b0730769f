"""Benchmark: ``sam-annotator encode`` in one process against ``encode --ray``, and a model of a GPU cluster.

Measured on this machine, same weights (MobileSAM ``vit_t``, CPU) and the
same real photos (scikit-image's, a few flipped or cropped so that every
one is a distinct cache entry), each run into a fresh cache folder:

* single process: :func:`annotator.commands.encode.encode_folder` with one
  torch thread, on 1 image and on N images (model loaded beforehand, not
  timed);
* Ray: :func:`annotator.commands.encode_ray.encode_paths` on a local Ray
  (``ray.init(num_cpus=C)`` already started, its start timed apart), one
  actor of one CPU (so one torch thread, the same arithmetic), on 1 image
  and on N images. Each run starts its actor and loads the model there:
  that is part of a run's fixed cost.

The fixed cost of a Ray run (planning, actor start, model load in the
actor) is ``ray(1) - single(1)``. On a shared machine the encoder's time
varies far more than Ray's overhead per image, so that overhead is measured
apart: the same pipeline (the real read stage, rows shipped to an actor and
back to the driver, ``--batch`` rows per actor call) with a worker that
encodes nothing, over M tiny images (so that reading costs next to nothing),
on Ray and in one process (:func:`annotator.commands.cluster.run_local`);
the overhead is the difference of the slopes between 1 and M images,
``((ray(M) - ray(1)) - (local(M) - local(1))) / (M - 1)``, median of
``--repeats``. The read stage's CPU cost per image (decode, EXIF, content
digest, resize to 1024) is timed on a 12-megapixel JPEG too, since cluster photos are large.

Then a model of a cluster of G GPUs encoding 100,000 images with ViT-H,
at a per-image GPU time (``--gpu-ms``: measured or published), the entry
size (2 MiB float16 + header), a shared-storage rate (``--storage-gbs``, all
nodes together, reading the photos and writing the entries), the read
stage's CPU cost measured here with ``--cpus-per-gpu`` CPUs per GPU, and the
Ray overhead measured here:

    per image on one actor  t = gpu_ms + entry / actor_write_rate + ray_overhead
    throughput              min(G / t, G * cpus_per_gpu / read_cpu_s, storage_rate / (photo + entry))
    time                    fixed + 100000 / throughput

Writes ``docs/benchmarks/cluster.md``. Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_cluster.py [--images 8] [--cpus 2] [--gpu-ms 110]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "cluster.md"
ENTRY_BYTES = 256 * 64 * 64 * 2 + 24 + 4 + 400  # float16 features + magic/checksum, length, JSON header
IMAGES_100K = 100_000


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def photos(folder: Path, n: int) -> List[Path]:
    """``n`` distinct real photos saved as PNG/JPEG in ``folder`` (flips and crops of scikit-image's)."""
    from skimage import data

    base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    variants = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[: a.shape[0] * 3 // 4]]
    out = []
    for i in range(n):
        image = np.ascontiguousarray(variants[(i // len(base)) % len(variants)](base[i % len(base)]))
        path = folder / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(image).save(path, quality=92)
        out.append(path)
    return out


def time_single(paths: List[Path], predictor, checkpoint_id: str, root: Path) -> float:
    from annotator.commands.encode import encode_folder
    from sam_core.cache import EmbeddingCache

    cache = EmbeddingCache(root / "embeddings", model_type="vit_t", checkpoint_id=checkpoint_id, memory_bytes=0)
    t0 = time.perf_counter()
    summary = encode_folder(paths, predictor, cache, batch_size=1)
    seconds = time.perf_counter() - t0
    assert summary.encoded == len(paths) and not summary.failed, summary
    return seconds


def time_ray(ray, paths: List[Path], job_args: Dict[str, str], root: Path) -> float:
    from annotator.commands import cluster, encode_ray

    job = cluster.Job(kind="encode", embeddings_dir=str(root / "embeddings"), device="cpu", **job_args)
    t0 = time.perf_counter()
    summary = encode_ray.encode_paths(paths, job, pool=cluster.Pool(concurrency=1, cpus_per_actor=1))
    seconds = time.perf_counter() - t0
    assert summary.encoded == len(paths) and not summary.failed, summary
    return seconds


class NullWorker:
    """The work stage without a model: drops the pixels and reports the row as encoded (no cache write)."""

    def __init__(self, job) -> None:
        self.job = job

    def __call__(self, batch):
        from annotator.commands import cluster

        rows = list(cluster.to_rows(batch))
        for row in rows:
            del row["image"]
            row.update(encoded=row["status"] == cluster.TODO, records="", seconds=0.0)
        return cluster.to_columns(rows)


def time_null(ray, paths: List[Path], root: Path, batch_size: int) -> float:
    """Wall seconds of the pipeline with :class:`NullWorker`, on ``ray`` (connected) or in this process (None)."""
    from annotator.commands import cluster

    job = cluster.Job(kind="encode", model_type="vit_t", checkpoint="", checkpoint_id="x",
                      embeddings_dir=str(root / "embeddings"))
    rows = [{"path": str(p), "known": "", "done": ""} for p in paths]
    t0 = time.perf_counter()
    if ray is None:
        out = list(cluster.run_local(job, rows, batch_size=batch_size, worker_cls=NullWorker))
    else:
        out = list(cluster.run_ray(ray, job, rows, batch_size=batch_size, pool=cluster.Pool(concurrency=1),
                                   worker_cls=NullWorker))
    seconds = time.perf_counter() - t0
    assert len(out) == len(paths) and all(r["encoded"] for r in out)
    return seconds


def time_read_12mp(folder: Path, repeats: int = 3) -> float:
    """CPU seconds of the read stage for one 4000 x 3000 JPEG (median)."""
    from annotator.commands import cluster
    from skimage import data

    path = folder / "big.jpg"
    Image.fromarray(data.coffee()).resize((4000, 3000), Image.BICUBIC).save(path, quality=90)
    job = cluster.Job(kind="encode", model_type="vit_t", checkpoint="", checkpoint_id="x",
                      embeddings_dir=str(folder / "none"))
    batch = cluster.to_columns([{"path": str(path), "known": "", "done": ""}])
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        out = cluster.read_batch(batch, job)
        times.append(time.process_time() - t0)
        assert out["status"][0] == cluster.TODO and out["image"][0].shape[:2] == (768, 1024)
    return float(np.median(times))


def model_rows(gpu_ms: float, ray_ms: float, fixed_s: float, storage_gbs: float, actor_write_mbs: float,
               read_s: float, cpus_per_gpu: float, photo_mb: float, gpus: List[int]) -> List[List[str]]:
    rows = []
    for g in gpus:
        t = gpu_ms / 1000 + ENTRY_BYTES / (actor_write_mbs * 1e6) + ray_ms / 1000
        bounds = {"GPUs": g / t, "reading": g * cpus_per_gpu / read_s,
                  "storage": storage_gbs * 1e9 / (ENTRY_BYTES + photo_mb * 1e6)}
        bound = min(bounds, key=bounds.get)
        total = fixed_s + IMAGES_100K / bounds[bound]
        rows.append([f"{storage_gbs:g}", str(g), f"{t * 1000:.0f}"] + [f"{v:.0f}" for v in bounds.values()]
                    + [f"{bounds[bound]:.0f}", bound, f"{total / 60:.0f} min ({total / 3600:.2f} h)"])
    return rows


def table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="N (default 8)")
    parser.add_argument("--null-images", type=int, default=200, help="M, for the overhead (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the overhead measurement (default 3)")
    parser.add_argument("--batch", type=int, default=8, help="rows per actor call for the overhead (GPU default: 8)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="num_cpus of the local Ray")
    parser.add_argument("--gpu-ms", type=float, default=27.9,
                        help="ViT-H encoder time per image on one GPU, ms (default: 27.9, measured on an H200, "
                        "fp16 autocast, batch 8)")
    parser.add_argument("--gpu-source", default="measured: `Predictor.encode_batch`, 8 images of 1024x768, fp16 "
                        "autocast, NVIDIA H200, torch 2.11+cu130", help="where --gpu-ms comes from (for the report)")
    parser.add_argument("--cpus-per-gpu", type=float, default=12.0, help="CPUs per GPU for the read tasks (model)")
    parser.add_argument("--actor-start-s", type=float, default=30.0,
                        help="seconds to start an actor and load ViT-H (2.4 GiB) from shared storage (model)")
    parser.add_argument("--storage-gbs", default="1,10",
                        help="shared storage rates to model, GB/s, all nodes, reads and writes together (default 1,10: "
                        "an NFS server, a parallel file system)")
    parser.add_argument("--photo-mb", type=float, default=4.0, help="size of one photo file, MB (model)")
    parser.add_argument("--actor-write-mbs", type=float, default=500.0, help="write rate of one actor, MB/s")
    parser.add_argument("--gpus", default="1,8,32,64,128", help="cluster sizes for the model")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import ray

    from sam_core import Predictor, ensure_checkpoint, load_model
    from sam_core.cache import checkpoint_fingerprint

    torch.set_num_threads(1)  # the arithmetic of a 1-CPU actor
    checkpoint = ensure_checkpoint("vit_t")
    checkpoint_id = checkpoint_fingerprint(checkpoint)
    predictor = Predictor(load_model("vit_t", checkpoint=checkpoint, device="cpu"))
    job_args = dict(model_type="vit_t", checkpoint=str(checkpoint), checkpoint_id=checkpoint_id)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = photos(tmp / "images", args.images)
        (tmp / "tiny").mkdir()
        rng = np.random.default_rng(0)
        tiny = []
        for i in range(args.null_images):
            tiny.append(tmp / "tiny" / f"{i:04d}.png")
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tiny[-1])
        read_12mp = time_read_12mp(tmp)
        single_1 = time_single(paths[:1], predictor, checkpoint_id, tmp / "s1")
        single_n = time_single(paths[: args.images], predictor, checkpoint_id, tmp / "sn")
        sizes = (1, args.null_images)
        null_local = [[time_null(None, tiny[:m], tmp / "nl", args.batch) for m in sizes] for _ in range(args.repeats)]
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        try:
            ray_1 = time_ray(ray, paths[:1], job_args, tmp / "r1")
            ray_n = time_ray(ray, paths[: args.images], job_args, tmp / "rn")
            null_ray = [[time_null(ray, tiny[:m], tmp / "nr", args.batch) for m in sizes] for _ in range(args.repeats)]
        finally:
            ray.shutdown()
    load_after = os.getloadavg()

    n, m = args.images, args.null_images
    slopes = [((r[1] - r[0]) - (lo[1] - lo[0])) / (m - 1) for r, lo in zip(null_ray, null_local)]
    per_image = float(np.median(slopes))
    null_local = [float(np.median([r[i] for r in null_local])) for i in range(2)]
    null_ray = [float(np.median([r[i] for r in null_ray])) for i in range(2)]
    fixed = ray_1 - single_1
    machine = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "load average (1 min) before / after": f"{load_before[0]:.1f} / {load_after[0]:.1f}",
        "torch / ray / python": f"{torch.__version__} / {ray.__version__} / {platform.python_version()}",
        "local Ray": f"num_cpus={args.cpus}, one actor of 1 CPU; single process with 1 torch thread",
    }
    measured = [
        ["single process, 1 image", f"{single_1:.2f} s", f"{1 / single_1:.2f}"],
        [f"single process, {n} images", f"{single_n:.2f} s", f"{n / single_n:.2f}"],
        ["`encode --ray`, 1 image (actor start + model load included)", f"{ray_1:.2f} s", f"{1 / ray_1:.2f}"],
        [f"`encode --ray`, {n} images", f"{ray_n:.2f} s", f"{n / ray_n:.2f}"],
        [f"pipeline without encoding, in one process, 1 / {m} tiny images (median)",
         f"{null_local[0]:.2f} / {null_local[1]:.2f} s",
         f"{m / null_local[1]:.1f}"],
        [f"pipeline without encoding, on Ray, 1 / {m} tiny images (median)", f"{null_ray[0]:.2f} / {null_ray[1]:.2f} s",
         f"{m / null_ray[1]:.1f}"],
    ]
    gpus = [int(g) for g in args.gpus.split(",")]
    fixed_cluster = ray_start + args.actor_start_s
    rows = []
    for rate in (float(x) for x in args.storage_gbs.split(",")):
        rows += model_rows(args.gpu_ms, max(per_image, 0.0) * 1000, fixed_cluster, rate, args.actor_write_mbs,
                           read_12mp, args.cpus_per_gpu, args.photo_mb, gpus)
    text = "\n".join([
        "# Cluster encode (issue 21): `benchmarks/bench_cluster.py`",
        "",
        table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
        f"MobileSAM (`vit_t`) on CPU, {n} distinct real photos, each run into a fresh cache folder.",
        "",
        table(["run", "wall", "images/s"], measured),
        "",
        f"* Ray start (`ray.init`, local): {ray_start:.1f} s (not in the runs above).",
        f"* Ray overhead per image: **{per_image * 1000:.1f} ms** (pipeline without encoding on {m} tiny images, "
        f"{args.batch} rows per actor call: slope on Ray minus slope in one process; median of "
        f"{', '.join(f'{x * 1000:.1f}' for x in slopes)} ms);",
        f"  fixed cost of a run (planning, actor start, model load in the actor): {fixed:.1f} s.",
        f"* Read stage (decode, digest, resize to 1024) of a 12 MP JPEG: {read_12mp * 1000:.0f} ms of CPU.",
        "",
        "## Model: 100,000 images with ViT-H",
        "",
        f"Per-image GPU time {args.gpu_ms:.1f} ms ({args.gpu_source}); entry {ENTRY_BYTES / 2**20:.2f} MiB, "
        f"written by its actor at {args.actor_write_mbs:.0f} MB/s; Ray overhead per image "
        f"{max(per_image, 0) * 1000:.1f} ms (measured above, on this CPU; counted on the actor's path, "
        f"which overstates it); read stage {read_12mp * 1000:.0f} ms of CPU per 12 MP JPEG with "
        f"{args.cpus_per_gpu:.0f} CPUs per GPU; shared storage at the rate in the first column for all nodes "
        f"together, reading a {args.photo_mb:.0f} MB photo and writing its entry per image; "
        f"fixed {fixed_cluster:.0f} s (Ray start + {args.actor_start_s:.0f} s to start the actors and load ViT-H).",
        "",
        table(["storage GB/s", "GPUs", "ms per image per actor", "GPU-bound img/s", "read-bound img/s",
               "storage-bound img/s",
               "img/s", "bound", "100,000 images"], rows),
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
