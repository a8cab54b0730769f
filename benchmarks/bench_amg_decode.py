"""Benchmark: cost of one prompt of "segment everything", split decode vs the plain ``predict_low_res``.

One batch of ``--batch`` lattice points (a random sample of the 32 x 32
lattice) is decoded and post-processed by ``AutomaticMaskGenerator._process_batch``
with the real MobileSAM weights on a real photo, two ways, in alternating
blocks (``--rounds``):

* ``plain``: every prompt through the model's ``predict_low_res`` (all
  256 x 256 logits, every prompt's masks upscaled), as before the split;
* ``split``: :func:`sam_core.amg_decode.decode_points` (upscaling only for
  prompts the IoU filter keeps, only on the photo's cells).

Reports CPU time (all threads) and wall time per prompt, and the load
average before and after. Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_amg_decode.py --photo stereo_motorcycle --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="stereo_motorcycle")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from skimage import data

    import sam_core.amg as amg
    import sam_core.amg_decode as amg_decode
    from sam_core import Predictor, ensure_checkpoint, load_model
    from sam_core.amg_records import Found
    from sam_core.amg_utils import build_point_grid

    torch.set_num_threads(args.threads)
    image = getattr(data, args.photo)()
    if isinstance(image, tuple):
        image = image[0]
    h, w = image.shape[:2]
    predictor = Predictor(load_model("vit_t", checkpoint=str(ensure_checkpoint("vit_t")), device="cpu"))
    embedding = predictor.encode(image)
    gen = amg.AutomaticMaskGenerator(predictor)
    points = build_point_grid(32) * np.array([[w, h]])
    points = points[np.random.default_rng(0).permutation(len(points))[: args.batch]]
    split_path, window = amg_decode._is_plain_sam, amg.logit_window

    def use(kind: str) -> None:
        amg_decode._is_plain_sam = split_path if kind == "split" else (lambda model: False)
        amg.logit_window = window if kind == "split" else (lambda *a: (64, 64))

    def once() -> int:
        found = Found()
        gen._process_batch(points, embedding, [0, 0, w, h], [0, 0, w, h], found, lambda: False)
        return len(found.rles)

    times = {"plain": [], "split": []}
    kept = {}
    print(f"load before: {os.getloadavg()[0]:.1f}", flush=True)
    with torch.inference_mode():
        for kind in times:  # warm-up
            use(kind)
            kept[kind] = once()
        for _ in range(args.rounds):
            for kind in times:
                use(kind)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                once()
                times[kind].append(((time.process_time() - cpu0), (time.perf_counter() - wall0)))
    use("split")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    n = len(points)
    for kind, runs in times.items():
        cpu = sorted(c for c, _ in runs)
        wall = sorted(x for _, x in runs)
        print(
            f"{kind}: CPU per prompt median {1000 * cpu[len(cpu) // 2] / n:.1f} ms "
            f"(min {1000 * cpu[0] / n:.1f}), wall median {1000 * wall[len(wall) // 2] / n:.1f} ms; "
            f"kept candidates {kept[kind]}"
        )
    ratio = sorted(s[0] / p[0] for s, p in zip(times["split"], times["plain"]))
    print(f"split / plain CPU time per round: {', '.join(f'{r:.2f}' for r in ratio)}")
    floor(gen, embedding, points, args.threads)
    return 0


def floor(gen, embedding, points, threads: int) -> None:
    """The arithmetic floor: the split decode's FLOPs per prompt over a measured matrix-product rate."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # the math backend spells attention out in matrix products, which the counter sees
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        gen._decode_points(embedding, points)
    flops = counter.get_total_flops() / len(points)
    a, b = torch.randn(32768, 256), torch.randn(256, 256)
    torch.mm(a, b)
    n, t0 = 20, time.perf_counter()
    for _ in range(n):
        torch.mm(a, b)
    rate = 2 * a.shape[0] * 256 * 256 * n / (time.perf_counter() - t0)
    print(
        f"decoder: {flops / 1e9:.2f} GFLOP per prompt (split); matrix product (32768 x 256 @ 256 x 256) "
        f"at {threads} thread(s): {rate / 1e9:.1f} GFLOP/s -> floor {1000 * flops / rate:.1f} ms per prompt"
    )


if __name__ == "__main__":
    sys.exit(main())
