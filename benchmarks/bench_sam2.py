"""Benchmark: SAM 2.1 image mode, ours vs the official ``sam2==1.1.0``, in one process.

For each model size (default Hiera-T and Hiera-B+; random weights, the same
state dict in both), on a 12-megapixel photo (4000 x 3000, an upscaled
scikit-image photo):

* encode: ours ``Predictor.encode`` vs the reference ``SAM2ImagePredictor.set_image``
  (both include preprocessing the full-size photo);
* per click: ours ``Predictor.decode`` plus one full-resolution mask
  (``Candidates.mask(0)``, what the app shows) vs the reference
  ``SAM2ImagePredictor.predict`` (which returns every candidate at full
  resolution). A click sequence: one foreground point with three
  candidates, then more points with the previous best logits as
  ``mask_input`` and a single candidate.

Timings alternate ours / reference in blocks (encode: one block of each per
round, the order swapped every round; clicks: ours then the reference, click
by click) so that background load hits both alike; medians are reported.
Both run in one process, so under the same allocator settings (``build_model``
applies :func:`sam_core.allocator.tune_allocator`, which is process-wide).

The floor: the reference encoder's and decoder's FLOPs
(``torch.utils.flop_counter.FlopCounterMode`` for the matrix products and
convolutions, plus the attention products counted from the shapes of every
``scaled_dot_product_attention`` call, which the counter does not see on the
CPU) divided by a 2048 x 2048 x 2048 fp32 ``matmul`` rate measured in the same
run (before and after; the better of the two). Writes ``docs/benchmarks/sam2.md``.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_sam2.py [--models sam2.1_hiera_t sam2.1_hiera_b+] [--size 4000x3000]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from test_sam2_refimpl import build_reference_model, randomized_state_dict, reference_predictor  # noqa: E402

from sam_core import Predictor, build_model  # noqa: E402
from sam_core.sam2 import load_sam2_state_dict  # noqa: E402


def photo_12mp(size: Tuple[int, int] = (4000, 3000)) -> np.ndarray:
    """scikit-image's astronaut resized to ``size`` ``(width, height)`` (default 12 MP)."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), tuple(size), interpolation=cv2.INTER_LINEAR)


def sgemm_rate(n: int = 2048, runs: int = 5) -> float:
    """Best fp32 ``n x n x n`` matmul rate of this process, FLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(runs))
    return 2 * n**3 / best


class _AttentionFlops(TorchDispatchMode):
    """Counts the FLOPs of the CPU attention kernels, which ``FlopCounterMode`` does not see."""

    OPS = ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math")

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.OPS:
            q, k, v = args[:3]
            batch = int(np.prod(q.shape[:-2]))
            self.flops += 2 * batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **(kwargs or {}))


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of ``fn()``: matrix products and convolutions, plus attention."""
    from torch.utils.flop_counter import FlopCounterMode

    counter, attention = FlopCounterMode(display=False), _AttentionFlops()
    with torch.inference_mode(), counter, attention:
        fn()
    return float(counter.get_total_flops() + attention.flops)


def clicks(h: int, w: int) -> List[Dict]:
    pts = [(0.45 * w, 0.35 * h, 1), (0.5 * w, 0.7 * h, 1), (0.15 * w, 0.2 * h, 0), (0.8 * w, 0.5 * h, 0)]
    return [
        dict(points=np.array([p[:2] for p in pts[: i + 1]]), labels=np.array([p[2] for p in pts[: i + 1]]),
             multimask=i == 0)
        for i in range(len(pts))
    ]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_model(
    model_type: str, image: np.ndarray, repeats: int, rounds: int, click_passes: int
) -> Dict[str, float]:
    torch.manual_seed(0)
    ref_model = build_reference_model(model_type)
    sd = randomized_state_dict(ref_model, seed=1)
    ref_model.load_state_dict(sd)
    ours = build_model(model_type)
    load_sam2_state_dict(ours, sd)
    ref = reference_predictor(ref_model)
    pred = Predictor(ours)

    # warm up both paths once
    emb = pred.encode(image)
    with torch.inference_mode():
        ref.set_image(image)

    def ref_encode() -> None:
        with torch.inference_mode():
            ref.set_image(image)

    enc_ours, enc_ref = [], []
    for r in range(rounds):  # blocks of `repeats`, the order swapped every round
        blocks = [(enc_ours, lambda: pred.encode(image)), (enc_ref, ref_encode)]
        for into, fn in blocks if r % 2 == 0 else blocks[::-1]:
            into.extend(timed(fn) for _ in range(repeats))

    h, w = image.shape[:2]
    seq = clicks(h, w)
    state = {"ours": None, "ref": None}  # each side's previous best logits, fed back as mask_input

    def click_ours(c: Dict) -> None:
        cands = pred.decode(emb, points=c["points"], labels=c["labels"], mask_input=state["ours"],
                            multimask=c["multimask"])
        cands.mask(0)
        state["ours"] = cands.low_res_logits[0]

    def click_ref(c: Dict) -> None:
        with torch.inference_mode():
            _, scores, low_res = ref.predict(point_coords=c["points"], point_labels=c["labels"],
                                             mask_input=state["ref"], multimask_output=c["multimask"])
        state["ref"] = low_res[int(np.argmax(scores))][None]

    clicks_ours, clicks_ref = [], []
    for rep in range(click_passes + 1):
        state["ours"] = state["ref"] = None
        for c in seq:  # the same click on both sides back to back, which side first alternating by pass
            pair = [(clicks_ours, click_ours), (clicks_ref, click_ref)]
            for into, fn in pair if rep % 2 == 0 else pair[::-1]:
                t = timed(lambda: fn(c))
                if rep > 0:  # the first pass is a warm-up
                    into.append(t)

    x = torch.zeros(1, 3, 1024, 1024)
    c = seq[1]
    encode_flops = count_flops(lambda: ref_model.forward_image(x))
    click_flops = count_flops(
        lambda: ref.predict(point_coords=c["points"], point_labels=c["labels"], multimask_output=False)
    )
    return {
        "encode_ours": statistics.median(enc_ours),
        "encode_ref": statistics.median(enc_ref),
        "click_ours": statistics.median(clicks_ours),
        "click_ref": statistics.median(clicks_ref),
        # the two sides' times of one click are taken back to back: the median of the pairs' ratios is the
        # least sensitive to a load that changes over the run
        "click_pair_ratio": statistics.median(a / b for a, b in zip(clicks_ours, clicks_ref)),
        "encode_ours_best": min(enc_ours),
        "encode_ref_best": min(enc_ref),
        "click_ours_best": min(clicks_ours),
        "click_ref_best": min(clicks_ref),
        "n_encode": len(enc_ours),
        "n_click": len(clicks_ours),
        "encode_gflop": encode_flops / 1e9,
        "click_gflop": click_flops / 1e9,
    }


def write_report(results: Dict[str, Dict[str, float]], out: Path, env: Dict[str, str]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rate = float(env["rate"])
    lines = [
        "# SAM 2.1 image mode: ours vs the official `sam2==1.1.0` (CPU)",
        "",
        f"Measured {now} by `benchmarks/bench_sam2.py`.",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, fp32; both in one process, so under the same (tuned) allocator",
        f"- Load average before / after: {env['load_before']} / {env['load_after']} (the machine is shared; "
        "ours and the reference alternate in blocks, so both see the same load)",
        f"- fp32 2048^3 matmul rate in this run: {rate / 1e9:.0f} GFLOP/s (best of before/after: "
        f"{env['rates']})",
        f"- Photo: {env['size']}, random weights (the same state dict in both)",
        "- Encode: `Predictor.encode` vs `SAM2ImagePredictor.set_image`, both including preprocessing",
        f"- Click: `Predictor.decode` + `Candidates.mask(0)` at {env['size']} vs `SAM2ImagePredictor.predict` "
        "(1 fg point x 3 candidates, then 2-4 points + previous logits as `mask_input` x 1 candidate)",
        "- Floor: the reference's FLOPs (matmuls, convolutions, attention) / the matmul rate above; "
        "the click's floor leaves out the full-resolution resize (memory-bound, no FLOPs counted)",
        "",
        "| model | encode ours (s) | encode reference (s) | ratio | encode floor (s) | "
        "click ours (ms) | click reference (ms) | ratio | click floor (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        enc_floor = r["encode_gflop"] * 1e9 / rate
        click_floor = r["click_gflop"] * 1e9 / rate
        lines.append(
            f"| {name} | {r['encode_ours']:.2f} | {r['encode_ref']:.2f} | {r['encode_ours'] / r['encode_ref']:.2f}x "
            f"| {enc_floor:.2f} ({r['encode_gflop']:.0f} GFLOP) "
            f"| {1000 * r['click_ours']:.0f} | {1000 * r['click_ref']:.0f} | {r['click_ours'] / r['click_ref']:.2f}x "
            f"| {1000 * click_floor:.0f} ({r['click_gflop']:.1f} GFLOP) |"
        )
    lines += [
        "",
        "Fastest single run of each side (the least disturbed by the other processes):",
        "",
        "| model | encode ours (s) | encode reference (s) | ratio | click ours (ms) | click reference (ms) | ratio "
        "| median ratio of the click pairs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['encode_ours_best']:.2f} | {r['encode_ref_best']:.2f} "
            f"| {r['encode_ours_best'] / r['encode_ref_best']:.2f}x "
            f"| {1000 * r['click_ours_best']:.0f} | {1000 * r['click_ref_best']:.0f} "
            f"| {r['click_ours_best'] / r['click_ref_best']:.2f}x | {r['click_pair_ratio']:.2f}x |"
        )
    first = next(iter(results.values()))
    lines += [
        "",
        f"Medians over {first['n_encode']} encodes and {first['n_click']} clicks per model; "
        "ratio = ours / reference (lower is faster).",
        "No CUDA GPU was used for this run.",
        "",
    ]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_b+"])
    parser.add_argument("--repeats", type=int, default=1, help="encodes per block (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated blocks of each side (default 2)")
    parser.add_argument("--click-passes", type=int, default=6, help="passes over the 4-click sequence (default 6)")
    parser.add_argument("--size", default="4000x3000", help="photo WIDTHxHEIGHT (default 4000x3000, 12 MP)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "sam2.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rates = [sgemm_rate()]
    image = photo_12mp((width, height))
    results = {}
    for model_type in args.models:
        results[model_type] = bench_model(model_type, image, args.repeats, args.rounds, args.click_passes)
        print(model_type, {k: round(v, 4) for k, v in results[model_type].items()}, flush=True)
    rates.append(sgemm_rate())
    env = {
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "rate": str(max(rates)),
        "rates": " / ".join(f"{r / 1e9:.0f}" for r in rates),
        "size": f"{width} x {height} ({width * height / 1e6:.1f} MP)",
    }
    print(write_report(results, args.out, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
