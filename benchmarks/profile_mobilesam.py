"""Where the MobileSAM encoder's time goes: ours vs ONNX Runtime, part by part (issue 18).

Both run the same weights on the same preprocessed ``coffee`` photo. The
encoder is cut into the same parts on both sides:

* ours: wall time of each part's module, from forward pre/post hooks
  (``patch_embed``, ``layers.0`` MBConv blocks, each patch merging, and per
  attention stage the attention module, the MLP, the depth-wise
  ``local_conv``, and "window" = the rest of the block: padding, window
  partition and the residual adds; then the neck);
* ONNX Runtime: its per-node profile (``SessionOptions.enable_profiling``) on
  the official module exported as in ``bench_peers.py``; each node's kernel
  time goes to the part its name (the exporter's module path) belongs to.

Both are summed over ``--repeats`` encodes after a warm-up, alternating
runtimes, and the table gives the median per encode of each part.

Run from the repository root::

    python benchmarks/profile_mobilesam.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import refimpl  # noqa: E402
from bench_engine import _loadavg  # noqa: E402
from bench_peers import export_encoder  # noqa: E402
from sam_core import ensure_checkpoint, load_model  # noqa: E402


def part_of(path: str) -> str:
    """The part a module path (``layers.2.blocks.3.attn.qkv`` or ``/layers.2/blocks.3/attn/qkv/MatMul``) is in."""
    names = [p for p in re.split(r"[/.]", path) if p]
    if not names:
        return "other"
    if names[0] in ("patch_embed", "neck"):
        return names[0]
    if names[0] == "layers" and len(names) > 1:
        stage = f"L{names[1]}"
        if len(names) > 2 and names[2] == "downsample":
            return f"{stage}.merge"
        if stage == "L0":
            return "L0.mbconv"
        if len(names) > 4 and names[2] == "blocks" and names[4] in ("attn", "mlp", "local_conv"):
            return f"{stage}.{names[4]}"
        return f"{stage}.window"
    return "other"


def hook_parts(encoder: torch.nn.Module, totals: Dict[str, float]) -> None:
    """Add each part's own wall time (ms) to ``totals`` at every forward."""
    starts: Dict[int, float] = {}

    def pre(mod, _inp):
        starts[id(mod)] = time.perf_counter()

    def make_post(key: str, parent: Optional[str]):
        def post(mod, _inp, _out):
            ms = (time.perf_counter() - starts.pop(id(mod))) * 1000.0
            totals[key] += ms
            if parent is not None:  # the block's remainder is its own time less its children's
                totals[parent] -= ms

        return post

    for name, mod in encoder.named_modules():
        names = name.split(".")
        key = None
        parent = None
        if name in ("patch_embed", "neck") or (len(names) == 3 and names[2] == "downsample"):
            key = part_of(name)
        elif len(names) == 4 and name.startswith("layers.0.blocks."):
            key = "L0.mbconv"
        elif len(names) == 4 and names[0] == "layers" and names[2] == "blocks" and names[1] != "0":
            key = part_of(name + ".x")  # the block itself -> "window"
        elif len(names) == 5 and names[0] == "layers" and names[4] in ("attn", "mlp", "local_conv"):
            key = part_of(name)
            parent = f"L{names[1]}.window"
        if key is not None:
            mod.register_forward_pre_hook(pre)
            mod.register_forward_hook(make_post(key, parent))


def ort_parts(profile_file: str):
    """Sums of node kernel times (ms) by part and by operator type, from an ONNX Runtime profile."""
    totals: Dict[str, float] = defaultdict(float)
    op_types: Dict[str, float] = defaultdict(float)
    unplaced: Dict[str, float] = defaultdict(float)
    with open(profile_file) as f:
        events = json.load(f)
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            node = ev["name"][: -len("_kernel_time")]
            totals[part_of(node)] += ev["dur"] / 1000.0
            if part_of(node) == "other":
                unplaced[node] += ev["dur"] / 1000.0
            op_types[ev.get("args", {}).get("op_name", "?")] += ev["dur"] / 1000.0
    top = sorted(unplaced.items(), key=lambda kv: -kv[1])[:15]
    print("ONNX Runtime nodes not placed by name (ms, all runs): " + ", ".join(f"{k} {v:.0f}" for k, v in top))
    return totals, op_types


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    print(f"load average before: {_loadavg()}", flush=True)
    from skimage import data

    checkpoint = str(ensure_checkpoint("vit_t"))
    ours = load_model("vit_t", checkpoint=checkpoint, device="cpu")
    official = refimpl.mobile_sam().sam_model_registry["vit_t"](checkpoint=checkpoint).eval()
    tmp = tempfile.TemporaryDirectory(prefix="profile_mobilesam_")
    path = Path(tmp.name) / "encoder.onnx"
    export_encoder(official, path)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tmp.name) / "ort")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    with torch.inference_mode():
        x, _ = ours.preprocess(data.coffee())
        x = x.contiguous()
        x_np = x.numpy()
        ours_runs: List[Dict[str, float]] = []
        ours_walls, ort_walls = [], []
        sess.run(None, {"image": x_np})
        ours.image_encoder(x)
        totals: Dict[str, float] = defaultdict(float)
        hook_parts(ours.image_encoder, totals)
        for _ in range(args.repeats):
            totals.clear()
            t0 = time.perf_counter()
            ours.image_encoder(x)
            ours_walls.append((time.perf_counter() - t0) * 1000.0)
            ours_runs.append(dict(totals))
            t0 = time.perf_counter()
            sess.run(None, {"image": x_np})
            ort_walls.append((time.perf_counter() - t0) * 1000.0)
    prof, op_types = ort_parts(sess.end_profiling())
    ort_runs = {k: v / (args.repeats + 1) for k, v in prof.items()}  # the warm-up run is profiled too

    parts = sorted(set(ort_runs) | set(ours_runs[0]), key=lambda p: (p[:2], p))
    print(f"\nload average after: {_loadavg()}")
    print(
        f"wall per encode: ours {statistics.median(ours_walls):.0f} ms, "
        f"ONNX Runtime {statistics.median(ort_walls):.0f} ms"
    )
    print("| part | ours (ms) | ONNX Runtime (ms) | ours / ORT |")
    print("|---|---:|---:|---:|")
    for p in parts:
        o = statistics.median(r.get(p, 0.0) for r in ours_runs)
        r = ort_runs.get(p, 0.0)
        print(f"| {p} | {o:.1f} | {r:.1f} | {o / r if r else float('nan'):.2f} |")
    o_sum = statistics.median(sum(r.values()) for r in ours_runs)
    print(f"| sum | {o_sum:.1f} | {sum(ort_runs.values()):.1f} | {o_sum / sum(ort_runs.values()):.2f} |")
    print("\nONNX Runtime by operator type (ms per encode): " + ", ".join(
        f"{k} {v / (args.repeats + 1):.1f}" for k, v in sorted(op_types.items(), key=lambda kv: -kv[1])))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
