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

Timings alternate ours / reference run by run so that background load hits
both alike; medians are reported. Writes ``docs/benchmarks/sam2.md``.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_sam2.py [--models sam2.1_hiera_t sam2.1_hiera_b+]
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
from typing import Callable, Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from test_sam2_refimpl import build_reference_model, randomized_state_dict, reference_predictor  # noqa: E402

from sam_core import Predictor, build_model  # noqa: E402
from sam_core.sam2 import load_sam2_state_dict  # noqa: E402


def photo_12mp() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_LINEAR)


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


def bench_model(model_type: str, image: np.ndarray, repeats: int) -> Dict[str, float]:
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
    enc_ours, enc_ref = [], []
    for _ in range(repeats):
        enc_ours.append(timed(lambda: pred.encode(image)))
        with torch.inference_mode():
            enc_ref.append(timed(lambda: ref.set_image(image)))

    h, w = image.shape[:2]
    seq = clicks(h, w)
    click_ours, click_ref = [], []
    for rep in range(repeats + 1):
        prev_ours = prev_ref = None
        for c in seq:
            t0 = time.perf_counter()
            cands = pred.decode(emb, points=c["points"], labels=c["labels"], mask_input=prev_ours,
                                multimask=c["multimask"])
            cands.mask(0)
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.inference_mode():
                _, scores, low_res = ref.predict(point_coords=c["points"], point_labels=c["labels"],
                                                 mask_input=prev_ref, multimask_output=c["multimask"])
            t_ref = time.perf_counter() - t0
            prev_ours = cands.low_res_logits[0]
            prev_ref = low_res[int(np.argmax(scores))][None]
            if rep > 0:  # the first pass is a warm-up
                click_ours.append(t_ours)
                click_ref.append(t_ref)
    return {
        "encode_ours": statistics.median(enc_ours),
        "encode_ref": statistics.median(enc_ref),
        "click_ours": statistics.median(click_ours),
        "click_ref": statistics.median(click_ref),
        "n_encode": len(enc_ours),
        "n_click": len(click_ours),
    }


def write_report(results: Dict[str, Dict[str, float]], out: Path, load_before: str, load_after: str) -> str:
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# SAM 2.1 image mode: ours vs the official `sam2==1.1.0` (CPU)",
        "",
        f"Measured {now} by `benchmarks/bench_sam2.py`.",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, fp32",
        f"- Load average before / after: {load_before} / {load_after} (the machine is shared; ours and the "
        "reference alternate run by run, so both see the same load)",
        "- Photo: 4000 x 3000 (12 MP), random weights (the same state dict in both)",
        "- Encode: `Predictor.encode` vs `SAM2ImagePredictor.set_image`, both including preprocessing",
        "- Click: `Predictor.decode` + `Candidates.mask(0)` at 12 MP vs `SAM2ImagePredictor.predict` "
        "(1 fg point x 3 candidates, then 2-4 points + previous logits as `mask_input` x 1 candidate)",
        "",
        "| model | encode ours (s) | encode reference (s) | ratio | click ours (ms) | click reference (ms) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['encode_ours']:.2f} | {r['encode_ref']:.2f} | {r['encode_ours'] / r['encode_ref']:.2f}x "
            f"| {1000 * r['click_ours']:.0f} | {1000 * r['click_ref']:.0f} | {r['click_ours'] / r['click_ref']:.2f}x |"
        )
    lines += [
        "",
        "Medians over {} encodes and {} clicks per model; ratio = ours / reference (lower is faster).".format(
            next(iter(results.values()))["n_encode"], next(iter(results.values()))["n_click"]
        ),
        "No CUDA GPU was available for this run.",
        "",
    ]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_b+"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "sam2.md")
    args = parser.parse_args(argv)

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    image = photo_12mp()
    results = {}
    for model_type in args.models:
        results[model_type] = bench_model(model_type, image, args.repeats)
        print(model_type, {k: round(v, 4) for k, v in results[model_type].items()}, flush=True)
    load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(write_report(results, args.out, load_before, load_after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
