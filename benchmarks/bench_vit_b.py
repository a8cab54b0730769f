"""ViT-B encoder against the reference and the arithmetic floor, in one process (issue 18, goal 2).

The goal reads "ViT-B encode <= 0.5x the reference (segment-anything==1.0)".
This measures, in the same run and on the same ``(1, 3, 1024, 1024)`` input:

* ours = ``model.image_encoder`` (``sam_core``), the reference =
  ``segment_anything``'s ``image_encoder``, the same random state dict in both
  (speed does not depend on the weights' values);
* the FLOP count of the reference module (:class:`FlopCounterMode`,
  multiply-add = 2 FLOP); its attention is plain ``matmul``, so all of it is
  counted;
* 2048³ fp32 sgemms (``torch.mm``, 8 per timed call), timed in their own blocks in the same
  rounds: the floor is the FLOP count at its median rate.

If half the reference's time is below the floor, the goal cannot be met in
fp32 on this machine by any implementation that performs the model's
arithmetic at sgemm rate. Each runtime is timed in its own block (1 warm-up
+ N timed calls), the blocks alternated and reversed every other round, as in
``bench_peers.py``; ratios are of block medians within a round.

``--profile`` prints the top operators of one encode of ours and of the
reference (``torch.profiler``, self CPU time) before timing.

Writes ``docs/benchmarks/vit_b.md``. Run from the repository root::

    python benchmarks/bench_vit_b.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import refimpl  # noqa: E402
from bench_engine import _loadavg, machine_info, write_report  # noqa: E402
from bench_peers import SGEMM_N, _flat, _round_ratios, _spread, count_flops, timed_blocks  # noqa: E402
from sam_core import build_model  # noqa: E402
from sam_core.allocator import tune_allocator  # noqa: E402


def profile(label: str, fn) -> str:
    """Top 12 operators of one call of ``fn`` by self CPU time, as text."""
    from torch.profiler import ProfilerActivity, profile as _profile

    with _profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(f"--- {label}\n{table}", flush=True)
    return table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of blocks")
    parser.add_argument("--encodes", type=int, default=1, help="timed encodes per block")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time CPU time of the process (use with --threads 1: robust to other jobs on the machine); "
        "each function is warmed up once, not per block",
    )
    parser.add_argument("--profile", action="store_true", help="print per-operator profiles first")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "vit_b.md"))
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tune_allocator()  # as load_model does; both implementations share it
    torch.manual_seed(0)
    load_before = _loadavg()
    machine = machine_info()

    sa = refimpl.segment_anything()
    ref = sa.sam_model_registry["vit_b"]().eval()
    ours = build_model("vit_b")
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours = ours.eval().requires_grad_(False)
    ref.requires_grad_(False)

    x = torch.randn(1, 3, 1024, 1024)
    a, b, c = torch.randn(SGEMM_N, SGEMM_N), torch.randn(SGEMM_N, SGEMM_N), torch.empty(SGEMM_N, SGEMM_N)
    sgemm_reps = 8  # per timed call: the encodes take seconds, so one product alone is too short a sample
    sgemm_gflop = sgemm_reps * 2 * SGEMM_N**3 / 1e9

    def sgemm():
        for _ in range(sgemm_reps):
            torch.mm(a, b, out=c)

    with torch.inference_mode():
        f_ours, f_ref = ours.image_encoder(x), ref.image_encoder(x)
        rel = float((f_ours - f_ref).abs().max() / f_ref.abs().max())
        gflop, by_op = count_flops(lambda: ref.image_encoder(x))
        profiles = []
        if args.profile:
            profiles = [profile("ours", lambda: ours.image_encoder(x)),
                        profile("reference", lambda: ref.image_encoder(x))]
        cpu_clock = {}
        if args.cpu_time:
            cpu_clock = {"clock": time.process_time, "warmup": False}
            ours.image_encoder(x), ref.image_encoder(x), sgemm()  # warm-up, once
        blocks = timed_blocks(
            {
                "ours": lambda: ours.image_encoder(x),
                "reference": lambda: ref.image_encoder(x),
                "sgemm": sgemm,
            },
            args.rounds,
            args.encodes,
            **cpu_clock,
        )
    machine["load average (1/5/15 min) before / after"] = f"{load_before} / {_loadavg()}"

    sg = _flat(blocks["sgemm"])
    rate = sgemm_gflop / (statistics.median(sg) / 1000.0)
    floor = gflop / rate * 1000.0
    floors = [gflop / sgemm_gflop * statistics.median(s) for s in blocks["sgemm"]]
    half_ref_over_floor = [0.5 * statistics.median(r) / f for r, f in zip(blocks["reference"], floors)]
    ours_over_floor = [statistics.median(o) / f for o, f in zip(blocks["ours"], floors)]
    ops = ", ".join(f"{k.replace('.default', '')} {v:.1f}" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]))

    warm_note = "1 warm-up + "
    if args.cpu_time:
        warm_note = "CPU time of the process, one warm-up call per function before all rounds, "
    out = [
        "# ViT-B encoder: ours vs segment-anything 1.0 vs the fp32 floor",
        "",
        "Generated by `" + " ".join(["python", "benchmarks/bench_vit_b.py", *sys.argv[1:]]) + "`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "",
        f"Input `(1, 3, 1024, 1024)`, random weights (same state dict in both); {args.rounds} rounds, each in "
        f"its own block ({warm_note}"
        f"{args.encodes} timed), alternated. Tuned allocator for both "
        "(`sam_core.allocator`). Outputs agree to "
        f"{rel:.1e} of the largest value.",
        "",
        "| | ms, min / median / max |",
        "|---|---:|",
        f"| ours | {_spread(_flat(blocks['ours']))} |",
        f"| reference | {_spread(_flat(blocks['reference']))} |",
        f"| floor ({gflop:.0f} GFLOP at the median sgemm rate, {rate:.0f} GFLOP/s) | {floor:.0f} |",
        "",
        "Within each round (min / median / max over the rounds):",
        "",
        "| ratio | |",
        "|---|---:|",
        f"| ours / reference | {_spread(_round_ratios(blocks['ours'], blocks['reference']), '{:.2f}')} |",
        f"| ours / floor | {_spread(ours_over_floor, '{:.2f}')} |",
        f"| 0.5 x reference / floor (< 1: the goal is below the floor) | {_spread(half_ref_over_floor, '{:.2f}')} |",
        "",
        f"FLOPs of the reference, GFLOP by operator: {ops}. sgemm {SGEMM_N}³ fp32 ({sgemm_reps} per timed "
        f"call), {threads} threads: "
        f"{_spread([sgemm_gflop / (t / 1000.0) for t in sg], '{:.0f}')} GFLOP/s (min / median / max).",
        "",
    ]
    for label, table in zip(("ours", "reference"), profiles):
        out += [f"Profile of one encode, {label} (self CPU time):", "", "```", table.rstrip(), "```", ""]
    write_report("\n".join(out), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
