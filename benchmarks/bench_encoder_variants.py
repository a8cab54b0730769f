"""A/B timing of MobileSAM encoder changes, in one process (issue 18).

Each variant is a way of running our ``image_encoder`` (a patch applied
around the call, see ``VARIANTS``); ONNX Runtime on the exported official
encoder and a 2048³ sgemm are timed beside them. Every runtime is timed in its
own block (1 warm-up + N calls), blocks alternated and reversed every other
round (``bench_peers.timed_blocks``); the report is the within-round ratio of
block medians to the first variant and to ONNX Runtime. Outputs are checked
against the unpatched encoder before timing.

Run from the repository root::

    python benchmarks/bench_encoder_variants.py --threads 2 --rounds 4
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import refimpl  # noqa: E402
from bench_engine import _loadavg  # noqa: E402
from bench_peers import SGEMM_N, _flat, _round_ratios, _spread, export_encoder, ort_session, timed_blocks  # noqa: E402
from sam_core import ensure_checkpoint, load_model  # noqa: E402
from sam_core.modeling import tiny_vit  # noqa: E402


@contextlib.contextmanager
def unfused_gelu():
    """Convolution, then a separate in-place GELU (before the oneDNN fusion)."""
    saved = tiny_vit.ConvBN.forward_gelu
    tiny_vit.ConvBN.forward_gelu = lambda self, x: tiny_vit._gelu_fresh(self(x))
    try:
        yield
    finally:
        tiny_vit.ConvBN.forward_gelu = saved


@contextlib.contextmanager
def unfused_add():
    """MBConv's last convolution, then a separate in-place shortcut add (before the oneDNN sum fusion)."""
    saved = tiny_vit.ConvBN.forward_add
    tiny_vit.ConvBN.forward_add = lambda self, x, other: self(x).add_(other)
    try:
        yield
    finally:
        tiny_vit.ConvBN.forward_add = saved


@contextlib.contextmanager
def unfused_all():
    with unfused_gelu(), unfused_add():
        yield


#: name -> context manager factory applied around each call; the first is the baseline
VARIANTS: Dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "unfused": unfused_all,
    "convs_fused_no_add": unfused_add,
    "current": contextlib.nullcontext,
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--encodes", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the process's CPU time (with --threads 1: robust to other jobs on the machine)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average before: {_loadavg()}", flush=True)
    from skimage import data

    checkpoint = str(ensure_checkpoint("vit_t"))
    ours = load_model("vit_t", checkpoint=checkpoint, device="cpu")
    official = refimpl.mobile_sam().sam_model_registry["vit_t"](checkpoint=checkpoint).eval()
    tmp = tempfile.TemporaryDirectory(prefix="bench_variants_")
    path = Path(tmp.name) / "encoder.onnx"
    export_encoder(official, path)
    sess = ort_session(path, args.threads)
    a, b, c = torch.randn(SGEMM_N, SGEMM_N), torch.randn(SGEMM_N, SGEMM_N), torch.empty(SGEMM_N, SGEMM_N)

    with torch.inference_mode():
        x, _ = ours.preprocess(data.coffee())
        x = x.contiguous()
        x_np = x.numpy()
        ref = official.image_encoder(x)
        scale = float(ref.abs().max())
        fns: Dict[str, Callable[[], object]] = {}
        for name in args.variants:
            make = VARIANTS[name]

            def run(make=make):
                with make():
                    return ours.image_encoder(x)

            print(f"{name}: max abs difference / max abs value vs official "
                  f"{float((run() - ref).abs().max()) / scale:.1e}", flush=True)
            fns[name] = run
        fns["onnxruntime"] = lambda: sess.run(None, {"image": x_np})
        fns["sgemm"] = lambda: torch.mm(a, b, out=c)
        clock = {"clock": time.process_time} if args.cpu_time else {}
        blocks = timed_blocks(fns, args.rounds, args.encodes, **clock)
    print(f"load average after: {_loadavg()}")
    base = args.variants[0]
    for name in args.variants:
        print(f"{name}: {_spread(_flat(blocks[name]))} ms; / {base} "
              f"{_spread(_round_ratios(blocks[name], blocks[base]), '{:.3f}')}; / ONNX Runtime "
              f"{_spread(_round_ratios(blocks[name], blocks['onnxruntime']), '{:.3f}')}")
    print(f"onnxruntime: {_spread(_flat(blocks['onnxruntime']))} ms; sgemm median "
          f"{2 * SGEMM_N**3 / 1e9 / (statistics.median(_flat(blocks['sgemm'])) / 1000):.0f} GFLOP/s")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
