"""Benchmark: "segment everything", ours (fast mode and full grid) vs the official MobileSAM generator.

Runs, on CPU with the real MobileSAM (``vit_t``) weights, on a real photo:

* ``fast``: ``sam_core.AutomaticMaskGenerator(predictor)`` with its defaults,
  i.e. the fast mode (prompts chosen from the 32 x 32 lattice);
* ``full``: ours with ``points_per_side`` given (the full grid, 32 unless
  ``--points-per-side``);
* ``ref``: the reference ``mobile_sam.SamAutomaticMaskGenerator``
  (``output_mode="coco_rle"``) with the same parameters as ``full``.

Each generator runs in its own child process so that its peak RSS is its
own. The timed call is the whole ``generate(image)``, image encoding
included; model loading is not timed. Wall time depends on what else runs on
the machine, so process CPU time (all threads) is reported too; with
``--threads 1`` CPU time is the work itself, free of the spinning of idle
worker threads on a loaded machine.

Recall of ``fast`` and ``full``: the share of the reference's masks matched by
one of ours with mask IoU >= 0.9; extra: our masks matching none of the
reference's. The reference's output can be reused from an earlier run
(``--ref-records``: it takes minutes), and is then not timed again.

Optionally (``--big``) our generator also runs on a 12-megapixel photo
(4000 x 3000, the photo upscaled) to show that memory stays bounded; the
reference is not run there (it holds 192 full-resolution float masks per
batch, about 9 GB).

Writes ``docs/benchmarks/amg.md``. Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_amg.py [--photo coffee] [--points-per-side 32] [--big]
    PYTHONPATH=. python benchmarks/bench_amg.py --photo stereo_motorcycle --only fast ref
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "amg.md"


def _photo(name: str, size: str) -> "Any":
    import cv2
    from skimage import data

    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if size == "12mp":
        image = cv2.resize(image, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    return image


def _rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child(
    impl: str, photo: str, size: str, params: Dict[str, Any], checkpoint: str, records_out: str = "", threads: int = 0
) -> Dict[str, Any]:
    """Run one generator once in this process; return its measurements (and write its records to ``records_out``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    import torch

    if threads:
        torch.set_num_threads(threads)
    image = _photo(photo, size)
    prompts: List[int] = []
    if impl in ("ours", "full", "fast"):
        from sam_core import Predictor, load_model
        from sam_core.amg import AutomaticMaskGenerator

        model = load_model("vit_t", checkpoint=checkpoint, device="cpu")

        def counting(module, args, kwargs):
            # a hook, not a wrapper: replacing predict_low_res would turn off the generator's split decode
            points = kwargs.get("points")
            if points is not None:
                prompts.append(int(points[0].shape[0]))

        model.prompt_encoder.register_forward_pre_hook(counting, with_kwargs=True)
        kwargs = dict(params)
        if impl == "fast":
            kwargs.pop("points_per_side", None)
        else:
            kwargs.setdefault("points_per_side", 32)
        generator = AutomaticMaskGenerator(Predictor(model), **kwargs)
        run = lambda: generator.generate(image)  # noqa: E731
    else:
        from refimpl import mobile_sam

        ms = mobile_sam()
        model = ms.sam_model_registry["vit_t"](checkpoint=checkpoint).eval()
        generator = ms.SamAutomaticMaskGenerator(model, output_mode="coco_rle", **params)
        run = lambda: generator.generate(image)  # noqa: E731
    rss_before = _rss_mib()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    records = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    if records_out:
        Path(records_out).write_text(json.dumps([{"segmentation": r["segmentation"]} for r in records]))
    return {
        "prompts": sum(prompts) if prompts else None,
        "impl": impl,
        "photo": photo,
        "size": list(image.shape[:2]),
        "wall_s": wall,
        "cpu_s": cpu,
        "masks": len(records),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_child(
    impl: str, photo: str, size: str, params: Dict[str, Any], checkpoint: str, records_out: str = "", threads: int = 0
) -> Dict[str, Any]:
    arg = json.dumps(
        {
            "impl": impl,
            "photo": photo,
            "size": size,
            "params": params,
            "checkpoint": checkpoint,
            "records_out": records_out,
            "threads": threads,
        }
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    load0 = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", arg], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} run failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_avg"] = (load0 + os.getloadavg()[0]) / 2
    print(json.dumps(result), flush=True)
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def match(ref_records: List[Dict[str, Any]], records: List[Dict[str, Any]], thr: float = 0.9) -> Dict[str, Any]:
    """Recall of ``ref_records`` in ``records`` (mask IoU >= ``thr``) and the extra masks of ``records``."""
    import numpy as np
    from pycocotools import mask as mask_utils

    def coco(rs):
        return [{"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()} for r in rs]

    if not ref_records or not records:
        return {"matched": 0, "of": len(ref_records), "recall": 0.0, "extra": len(records)}
    iou = np.asarray(mask_utils.iou(coco(ref_records), coco(records), [0] * len(records)))
    iou = iou.reshape(len(ref_records), len(records))
    matched = int((iou.max(axis=1) >= thr).sum())
    return {
        "matched": matched,
        "of": len(ref_records),
        "recall": matched / len(ref_records),
        "extra": int((iou.max(axis=0) < thr).sum()),
    }


NAMES = {
    "fast": "ours, fast mode (the default)",
    "full": "ours, full grid (`points_per_side` given)",
    "ref": "reference (`mobile_sam`)",
}


def write_report(
    photos: List[Dict[str, Any]],
    big: List[Dict[str, Any]],
    params: Dict[str, Any],
    out: Path,
    big_params: Dict[str, Any] | None = None,
) -> None:
    """``photos``: per photo ``{"photo", "size", "runs": {impl: result}, "ref_reused": bool}``."""
    first = next(iter(photos[0]["runs"].values()))
    pps = params.get("points_per_side", 32)
    settings = ", ".join(f"{k}={v}" for k, v in params.items())
    loads = [r["load_avg"] for p in photos for r in p["runs"].values() if "load_avg" in r]
    lines = [
        "# Segment everything: ours (fast mode, full grid) vs the official generator (MobileSAM, CPU)",
        "",
        f"Generated by `benchmarks/bench_amg.py` on {_dt.date.today().isoformat()}"
        f" (`{' '.join(sys.argv[1:])}`).",
        "",
        f"* Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {first['torch']} ({first['threads']} threads).",
        f"* Load average during the runs: {min(loads):.1f} to {max(loads):.1f} "
        "(a shared machine: wall times vary with it; CPU times less so).",
        "* Parameters: the generators' defaults (points_per_batch=64, pred_iou_thresh=0.88, "
        "stability_score_thresh=0.95, box_nms_thresh=0.7, crop_n_layers=0)"
        + (f" except {settings}" if settings else "")
        + f"; full grid and reference with points_per_side={pps}, the reference with `output_mode=\"coco_rle\"`; "
        "the fast mode with no points_per_side (its lattice is 32 x 32).",
        "* Timed: one `generate(image)` call, image encoding included, model loading excluded; "
        "each generator in its own process. Recall: share of the reference's masks matched by one of ours "
        "(mask IoU >= 0.9); extra: our masks that match none of the reference's.",
        "",
        "| photo | generator | prompts | wall (s) | CPU (s) | masks | recall | extra | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in photos:
        h, w = p["size"]
        for impl in ("fast", "full", "ref"):
            r = p["runs"].get(impl)
            if r is None:
                continue
            reused = impl == "ref" and p.get("ref_reused")
            wall = f"{r['earlier_wall_s']:.1f} (earlier run)" if reused and "earlier_wall_s" in r else (
                "(earlier run)" if reused else f"{r['wall_s']:.1f}"
            )
            cpu = "" if reused else f"{r['cpu_s']:.1f}"
            peak = "" if reused else f"{r['peak_rss_mib']:.0f}"
            m = r.get("match")
            recall = f"{m['recall']:.1%} ({m['matched']}/{m['of']})" if m else ""
            if m and m.get("against") == "full":
                recall += " of the full grid's"
            extra = f"{m['extra']}" if m else ""
            prompts = r.get("prompts") or (pps * pps if impl == "ref" else "")
            lines.append(
                f"| `{p['photo']}` {w} x {h} | {NAMES[impl]} | {prompts} | {wall} | {cpu} | {r['masks']} | "
                f"{recall} | {extra} | {peak} |"
            )
    if any(p.get("ref_reused") for p in photos):
        lines += [
            "",
            "The reference's records were reused from an earlier run (`--ref-records`); its wall time is that "
            "run's, under that run's load, and is not comparable with the rows above.",
        ]
    lines += [
        "",
        "Where the time goes: every prompt is one run of the mask decoder (about 40-45 ms of one core for "
        "MobileSAM, its mask upscaling only for prompts the IoU filter keeps and only on the photo's part of "
        "the padded input: `sam_core/amg_decode.py`), so the full grid's cost is its 1024 prompts; the fast "
        "mode prompts at most 384 points of the same lattice (see `sam_core/amg_fast.py`). The reference then "
        "upsamples all 192 candidates of each batch to full resolution before filtering; ours filters on "
        "the 256 x 256 logits first and upsamples only the survivors (see `sam_core/amg.py`).",
    ]
    if big:
        b = big[0]
        bh, bw = b["size"]
        lines += [
            "",
            f"## Memory on a {bw} x {bh} photo ({bw * bh / 1e6:.0f} MP, ours only)",
            "",
            f"The same photo upscaled to {bw} x {bh} (bicubic), our full grid"
            + (
                f" with {', '.join(f'{k}={v}' for k, v in big_params.items())}"
                if big_params
                else ""
            )
            + ". The reference is not run: it would hold "
            f"192 float masks of {bw * bh * 4 / 2**20:.0f} MiB each per batch (about "
            f"{192 * bw * bh * 4 / 2**30:.1f} GiB).",
            "",
            "| | wall (s) | CPU (s) | masks | RSS before (MiB) | peak RSS (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| ours | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | {b['masks']} | {b['rss_before_mib']:.0f} | "
            f"{b['peak_rss_mib']:.0f} |",
            "",
            f"Load average during the run: {b['load_avg']:.1f}. The peak is the mask decoder's working memory "
            "for one batch (64 prompts, decoded 32 at a time), not the photo size: full-resolution masks are "
            "upsampled a few at a "
            "time and kept only as RLE.",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--photo", nargs="+", default=["coffee"], help="scikit-image photo names (default: coffee, 400 x 600)"
    )
    parser.add_argument("--only", nargs="+", choices=["fast", "full", "ref"], default=["fast", "full", "ref"])
    parser.add_argument("--points-per-side", type=int, default=None, help="full grid and reference (default: 32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every child (default: torch's)")
    parser.add_argument(
        "--ref-records",
        type=Path,
        default=None,
        help="folder of <photo>_official.json from an earlier run (records of the reference): reused, not re-run",
    )
    parser.add_argument(
        "--full-without-ref",
        action="store_true",
        help="for a photo without --ref-records, run our full grid instead of the reference (minutes faster)",
    )
    parser.add_argument("--save-ref", type=Path, default=None, help="folder to save the reference's records in")
    parser.add_argument("--big", action="store_true", help="also run our full grid on a 12 MP upscaled photo")
    parser.add_argument(
        "--big-points-per-side", type=int, default=None, help="points_per_side for the 12 MP run (default: as above)"
    )
    parser.add_argument("--checkpoint", default=None, help="MobileSAM checkpoint (default: the cache)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(
            json.dumps(
                child(
                    spec["impl"],
                    spec["photo"],
                    spec["size"],
                    spec["params"],
                    spec["checkpoint"],
                    spec.get("records_out", ""),
                    spec.get("threads", 0),
                )
            )
        )
        return 0

    params: Dict[str, Any] = {}
    if args.points_per_side is not None:
        params["points_per_side"] = args.points_per_side
    big_params = dict(params)
    if args.big_points_per_side is not None:
        big_params["points_per_side"] = args.big_points_per_side

    sys.path.insert(0, str(ROOT))
    from sam_core import ensure_checkpoint

    checkpoint = str(args.checkpoint or ensure_checkpoint("vit_t"))
    photos = []
    with tempfile.TemporaryDirectory(prefix="bench_amg_") as tmp:
        for photo in args.photo:
            runs: Dict[str, Dict[str, Any]] = {}
            records: Dict[str, List[Dict[str, Any]]] = {}
            ref_reused = False
            saved = args.ref_records / f"{photo}_official.json" if args.ref_records else None
            only = list(args.only)
            if args.full_without_ref and "ref" in only and not (saved is not None and saved.exists()):
                only = [impl for impl in only if impl != "ref"] + ["full"]  # the full grid stands in
            for impl in ("fast", "full", "ref"):
                if impl not in only:
                    continue
                if impl == "ref" and saved is not None and saved.exists():
                    data = json.loads(saved.read_text())
                    records["ref"] = data["records"] if isinstance(data, dict) else data
                    runs["ref"] = {"masks": len(records["ref"])}
                    if isinstance(data, dict) and data.get("seconds"):
                        runs["ref"]["earlier_wall_s"] = float(data["seconds"])
                    ref_reused = True
                    continue
                path = str(Path(tmp) / f"{photo}_{impl}.json")
                runs[impl] = run_child(impl, photo, "native", params, checkpoint, path, args.threads)
                records[impl] = json.loads(Path(path).read_text())
                if impl == "ref" and args.save_ref:
                    args.save_ref.mkdir(parents=True, exist_ok=True)
                    (args.save_ref / f"{photo}_official.json").write_text(json.dumps({"records": records["ref"]}))
            if "ref" in records:
                for impl in ("fast", "full"):
                    if impl in records:
                        runs[impl]["match"] = match(records["ref"], records[impl])
                        print(photo, impl, runs[impl]["match"], flush=True)
            elif "full" in records and "fast" in records:
                # no reference records: the full grid stands in for it (it matched the reference mask for
                # mask on the photos where both ran)
                runs["fast"]["match"] = dict(match(records["full"], records["fast"]), against="full")
                print(photo, "fast vs full", runs["fast"]["match"], flush=True)
            size = next(r["size"] for r in runs.values() if "size" in r)
            photos.append({"photo": photo, "size": size, "runs": runs, "ref_reused": ref_reused})
        big = [run_child("full", args.photo[0], "12mp", big_params, checkpoint, "", args.threads)] if args.big else []
    write_report(photos, big, params, args.out, big_params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
