"""Benchmark: "segment everything", ours vs the official MobileSAM generator.

Runs :class:`sam_core.AutomaticMaskGenerator` and the reference
``mobile_sam.SamAutomaticMaskGenerator`` (``output_mode="coco_rle"``) with the
same parameters (the defaults unless told otherwise), on CPU with the real
MobileSAM (``vit_t``) weights, on a real photo. Each generator runs in its
own child process so that its peak RSS is its own. The timed call is the
whole ``generate(image)``, image encoding included; model loading is not
timed. Wall time depends on what else runs on the machine, so process CPU
time (all threads) is reported too.

Optionally (``--big``) our generator also runs on a 12-megapixel photo
(4000 x 3000, the photo upscaled) to show that memory stays bounded; the
reference is not run there (it holds 192 full-resolution float masks per
batch, about 9 GB).

Writes ``docs/benchmarks/amg.md``. Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_amg.py [--photo coffee] [--points-per-side 32] [--big]
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
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "amg.md"


def _photo(name: str, size: str) -> "Any":
    import cv2
    from skimage import data

    image = getattr(data, name)()
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


def child(impl: str, photo: str, size: str, params: Dict[str, Any], checkpoint: str) -> Dict[str, Any]:
    """Run one generator once in this process; return its measurements."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    import torch

    image = _photo(photo, size)
    if impl == "ours":
        from sam_core import Predictor, load_model
        from sam_core.amg import AutomaticMaskGenerator

        model = load_model("vit_t", checkpoint=checkpoint, device="cpu")
        generator = AutomaticMaskGenerator(Predictor(model), **params)
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
    return {
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


def run_child(impl: str, photo: str, size: str, params: Dict[str, Any], checkpoint: str) -> Dict[str, Any]:
    arg = json.dumps({"impl": impl, "photo": photo, "size": size, "params": params, "checkpoint": checkpoint})
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


def write_report(
    results: List[Dict[str, Any]],
    big: List[Dict[str, Any]],
    params: Dict[str, Any],
    out: Path,
    big_params: Dict[str, Any] | None = None,
) -> None:
    by = {r["impl"]: r for r in results}
    ours, ref = by["ours"], by["ref"]
    h, w = ours["size"]
    n_batches = -(-params.get("points_per_side", 32) ** 2 // 64)
    settings = ", ".join(f"{k}={v}" for k, v in params.items())
    lines = [
        "# Segment everything: ours vs the official generator (MobileSAM, CPU)",
        "",
        f"Generated by `benchmarks/bench_amg.py` on {_dt.date.today().isoformat()}.",
        "",
        f"* Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {ours['torch']} ({ours['threads']} threads).",
        f"* Load average during the runs: ours {ours['load_avg']:.1f}, reference {ref['load_avg']:.1f} "
        "(a shared machine: wall times vary with it; CPU times less so).",
        f"* Photo: scikit-image `{ours['photo']}`, {w} x {h}.",
        "* Parameters, the same for both: the defaults (points_per_side=32, points_per_batch=64, "
        "pred_iou_thresh=0.88, stability_score_thresh=0.95, box_nms_thresh=0.7, crop_n_layers=0)"
        + (f" except {settings}" if settings else "")
        + "; the reference with `output_mode=\"coco_rle\"`.",
        "* Timed: one `generate(image)` call, image encoding included, model loading excluded; "
        "each generator in its own process.",
        "",
        "| | wall (s) | CPU (s) | masks | RSS before (MiB) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("ours (`sam_core.AutomaticMaskGenerator`)", ours), ("reference (`mobile_sam`)", ref)):
        lines.append(
            f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['masks']} | "
            f"{r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        f"Ratio reference / ours: wall {ref['wall_s'] / ours['wall_s']:.2f}x, CPU {ref['cpu_s'] / ours['cpu_s']:.2f}x.",
        "",
        f"Where the time goes: both run the mask decoder on {n_batches} batches of up to 64 single-point "
        "prompts, which dominates on a photo this small (the decoders differ: ours is `sam_core`'s, the "
        "reference's is `mobile_sam`'s). The reference then upsamples all 192 candidates of each batch "
        "to full resolution before filtering; ours filters on the 256 x 256 logits first and upsamples "
        "only the survivors (see `sam_core/amg.py`).",
    ]
    if big:
        b = big[0]
        bh, bw = b["size"]
        lines += [
            "",
            f"## Memory on a {bw} x {bh} photo ({bw * bh / 1e6:.0f} MP, ours only)",
            "",
            f"The same photo upscaled to {bw} x {bh} (bicubic); parameters as above"
            + (
                f" except {', '.join(f'{k}={v}' for k, v in big_params.items())}"
                if big_params and big_params != params
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
            f"Load average during the run: {b['load_avg']:.1f}.",
            "",
            f"Peak RSS on the {bw * bh / 1e6:.0f} MP photo is {b['peak_rss_mib']:.0f} MiB against "
            f"{ours['peak_rss_mib']:.0f} MiB on the {w} x {h} photo: the peak is the mask decoder's working "
            "memory for one batch of 64 prompts, not the photo size. Full-resolution masks are upsampled a "
            "few at a time and kept only as RLE.",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def report_from_log(log: Path, out: Path, params: Dict[str, Any], big_params: Dict[str, Any]) -> None:
    """Rewrite the report from the JSON lines a previous run printed."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    small = [r for r in rows if r["size"] != [3000, 4000]]
    big = [r for r in rows if r["size"] == [3000, 4000]]
    write_report(small[-2:], big[-1:], params, out, big_params)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--photo", default="coffee", help="scikit-image photo name (default: coffee, 400 x 600)")
    parser.add_argument("--points-per-side", type=int, default=None, help="default: the generators' default (32)")
    parser.add_argument("--big", action="store_true", help="also run ours on a 12 MP upscaled photo")
    parser.add_argument(
        "--big-points-per-side", type=int, default=None, help="points_per_side for the 12 MP run (default: as above)"
    )
    parser.add_argument("--checkpoint", default=None, help="MobileSAM checkpoint (default: the cache)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--from-log", type=Path, help="only rewrite the report from a previous run's output")
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["impl"], spec["photo"], spec["size"], spec["params"], spec["checkpoint"])))
        return 0

    params: Dict[str, Any] = {}
    if args.points_per_side is not None:
        params["points_per_side"] = args.points_per_side
    big_params = dict(params)
    if args.big_points_per_side is not None:
        big_params["points_per_side"] = args.big_points_per_side
    if args.from_log:
        report_from_log(args.from_log, args.out, params, big_params)
        return 0

    sys.path.insert(0, str(ROOT))
    from sam_core import ensure_checkpoint

    checkpoint = str(args.checkpoint or ensure_checkpoint("vit_t"))
    results = [run_child(impl, args.photo, "native", params, checkpoint) for impl in ("ours", "ref")]
    big = [run_child("ours", args.photo, "12mp", big_params, checkpoint)] if args.big else []
    write_report(results, big, params, args.out, big_params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
