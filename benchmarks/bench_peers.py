"""Peer benchmark: sam_core against the official PyTorch code and ONNX Runtime, and the arithmetic floor.

One process, one machine, the real MobileSAM (``vit_t``) weights and a real
photo (scikit-image ``coffee``). Three runtimes compute the same two steps:

* **decoder, one click**: one foreground point, three low-resolution
  (256 x 256) candidates and their predicted IoU, from the same image
  embedding. Ours = ``Predictor.decode`` (the app's call: prompt checks,
  coordinate transform, prompt encoder, mask decoder, candidates ranked);
  official = ``mobile_sam``'s ``prompt_encoder`` + ``mask_decoder``
  (``multimask_output=True``); ONNX Runtime = the reference package's
  ``SamOnnxModel`` (``segment_anything.utils.onnx``) around the same weights,
  exported with its prompt inputs (click + padding point, as the official
  ONNX example feeds it) and with the full-resolution upsampling left out, so
  that all three stop at the low-resolution candidates.
* **encoder**: TinyViT on the same ``(1, 3, 1024, 1024)`` preprocessed input.
  Ours = ``model.image_encoder``; official = ``mobile_sam``'s
  ``image_encoder``; ONNX Runtime = that official module exported with
  ``torch.onnx.export`` (TorchScript exporter, opset 17).

ONNX Runtime runs on its CPU provider with ``intra_op_num_threads`` equal to
torch's thread count, sequential execution, all graph optimisations (the
settings X-AnyLabeling and labelme/osam use, with the thread count pinned).

Timing. Both torch (OpenMP) and ONNX Runtime keep worker threads spinning for
a moment after a call, which taxes whatever runs next; so each runtime is
timed in its own **block** (one untimed warm-up call, then ``N`` timed calls),
and the blocks are alternated over ``--rounds`` rounds (order reversed every
other round). The report gives min / median / max over all timed calls, and
the ratios of block medians *within each round* (min / median / max over the
rounds): on a shared machine the within-round ratio is the stable figure.

The floor: an sgemm (``torch.mm``, 2048 x 2048 x 2048, fp32) is timed in its
own blocks in the same rounds; floor = FLOP count / its median rate. FLOP
counts (multiply-add = 2 FLOP) are taken with
:class:`torch.utils.flop_counter.FlopCounterMode` on the *official* modules,
whose attention is plain matrix products: 77.5 GFLOP per encode, 3.6 GFLOP per
click. Ours skips part of that arithmetic in the decoder (see
``docs/benchmarks.md``), so its time may be compared with, and even fall
under, that floor.

The outputs are checked to agree before timing (the table lists the largest
differences), so the three runtimes are known to compute the same thing.

Writes ``docs/benchmarks/peers.md``. Run from the repository root::

    python benchmarks/bench_peers.py                     # torch's thread count
    python benchmarks/bench_peers.py --threads 2 --rounds 7
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # refimpl: the references with torchvision/timm stand-ins
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import refimpl  # noqa: E402
from bench_engine import _loadavg, machine_info, write_report  # noqa: E402
from sam_core import Predictor, ensure_checkpoint, load_model  # noqa: E402

SGEMM_N = 2048
RUNTIMES = ("ours", "official", "onnxruntime")


# -- ONNX export ----------------------------------------------------------------------------


def _quiet_export(*args, **kwargs) -> None:
    """``torch.onnx.export`` with the TorchScript exporter, its tracer warnings silenced."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(*args, dynamo=False, opset_version=17, do_constant_folding=True, **kwargs)


def export_decoder(sam: torch.nn.Module, path: Path) -> None:
    """The reference ``SamOnnxModel`` stopping at the three low-res candidates (no full-res upsampling)."""
    from segment_anything.utils.onnx import SamOnnxModel

    class LowResOnnxModel(SamOnnxModel):
        @torch.no_grad()
        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
            sparse = self._embed_points(point_coords, point_labels)
            dense = self._embed_masks(mask_input, has_mask_input)
            masks, scores = self.model.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            return scores[:, 1:], masks[:, 1:]  # the three multimask candidates, as multimask_output=True

    # eval(): a new wrapper is in training mode, and the exporter restores the mode it found on the
    # whole tree afterwards, which would leave the wrapped model's batch norms in training mode
    model = LowResOnnxModel(sam, return_single_mask=False).eval()
    dummy = (
        torch.randn(1, 256, 64, 64),
        torch.randint(0, 1024, (1, 2, 2)).float(),
        torch.tensor([[1.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.zeros(1),
    )
    _quiet_export(
        model,
        dummy,
        str(path),
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
        output_names=["iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
    )


def export_encoder(sam: torch.nn.Module, path: Path) -> None:
    _quiet_export(sam.image_encoder, (torch.randn(1, 3, 1024, 1024),), str(path), input_names=["image"],
                  output_names=["image_embeddings"])


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# -- FLOP counts ----------------------------------------------------------------------------


def count_flops(fn: Callable[[], object]) -> Tuple[float, Dict[str, float]]:
    """Total FLOP (multiply-add = 2) of ``fn()`` and the split by operator, in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    by_op = {str(k).replace("aten.", ""): v / 1e9 for k, v in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops() / 1e9, by_op


# -- timing -----------------------------------------------------------------------------------


def timed_blocks(
    fns: Dict[str, Callable[[], object]],
    rounds: int,
    per_block: int,
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = True,
) -> Dict[str, List[List[float]]]:
    """``{name: [block times (ms) per round]}``: each name its own block (warm-up + ``per_block`` calls),
    blocks alternated, the order reversed every other round.

    ``clock`` is wall time by default; ``time.process_time`` (CPU time of the process) with one thread
    measures the work done, which on a machine shared with other jobs moves much less than wall time
    (a descheduled thread stops its CPU clock). ``warmup=False`` skips each block's warm-up call
    (then warm every function up once before)."""
    out: Dict[str, List[List[float]]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            gc.collect()
            if warmup:
                fn()  # warm-up: wakes this runtime's threads after the previous block's
            block = []
            for _ in range(per_block):
                t0 = clock()
                fn()
                block.append((clock() - t0) * 1000.0)
            out[name].append(block)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {statistics.median(out[n][-1]):.1f} ms" for n in names), flush=True)
    return out


def _flat(blocks: List[List[float]]) -> List[float]:
    return [t for b in blocks for t in b]


def _spread(values: List[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def _round_ratios(a: List[List[float]], b: List[List[float]]) -> List[float]:
    return [statistics.median(x) / statistics.median(y) for x, y in zip(a, b)]


def bf16_mask_iou(model, image: np.ndarray, clicks: int = 8) -> List[float]:
    """IoU of the best candidate's full-resolution mask, bf16-autocast encoder vs fp32, over a grid of clicks."""
    fp32 = Predictor(model, encoder_dtype="fp32").encode(image)
    bf16 = Predictor(model, encoder_dtype="bf16").encode(image)
    decoder = Predictor(model)
    h, w = image.shape[:2]
    out = []
    for i in range(clicks):
        point = np.array([[(i % 4 + 0.5) * w / 4, (i // 4 + 0.5) * h / 2]])
        a = decoder.decode(fp32, points=point, labels=np.array([1])).mask(0)
        b = decoder.decode(bf16, points=point, labels=np.array([1])).mask(0)
        union = np.logical_or(a, b).sum()
        out.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    return out


# -- the benchmark ----------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds of blocks")
    parser.add_argument("--clicks", type=int, default=20, help="timed decoder calls per block")
    parser.add_argument("--encodes", type=int, default=2, help="timed encoder calls per block")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the process's CPU time instead of wall time (with --threads 1: robust to other jobs "
        "on a shared machine)",
    )
    parser.add_argument("--onnx-dir", type=Path, default=None, help="keep the exported models here (default: temp)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "peers.md"))
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    load_before = _loadavg()
    machine = machine_info()
    import onnxruntime

    machine["onnxruntime"] = f"{onnxruntime.__version__} (CPUExecutionProvider, {threads} intra-op threads)"

    from skimage import data

    image = data.coffee()
    checkpoint = str(ensure_checkpoint("vit_t"))
    ours = load_model("vit_t", checkpoint=checkpoint, device="cpu")
    ms = refimpl.mobile_sam()
    refimpl.segment_anything()  # SamOnnxModel lives in the segment_anything package
    official = ms.sam_model_registry["vit_t"](checkpoint=checkpoint).eval()
    predictor = Predictor(ours)

    tmp = None
    onnx_dir = args.onnx_dir
    if onnx_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_peers_")
        onnx_dir = Path(tmp.name)
    onnx_dir.mkdir(parents=True, exist_ok=True)
    enc_path, dec_path = onnx_dir / "mobilesam_encoder.onnx", onnx_dir / "mobilesam_decoder_lowres.onnx"
    print("exporting to ONNX ...", flush=True)
    if not enc_path.exists():
        export_encoder(official, enc_path)
    if not dec_path.exists():
        export_decoder(official, dec_path)
    enc_sess, dec_sess = ort_session(enc_path, threads), ort_session(dec_path, threads)
    if official.training or ours.training:
        raise RuntimeError("a model was left in training mode")

    checks: List[str] = []
    with torch.inference_mode():
        x, input_size = ours.preprocess(image)
        x = x.contiguous()
        x_np = x.numpy()

        # ---------------- encoder: agreement, FLOPs, timing
        f_ours = ours.image_encoder(x)
        f_off = official.image_encoder(x)
        f_ort = torch.from_numpy(enc_sess.run(None, {"image": x_np})[0])
        scale = float(f_off.abs().max())
        checks.append(
            f"| encoder features, max abs difference / max abs value | ours {float((f_ours - f_off).abs().max()) / scale:.1e} "
            f"| ONNX Runtime {float((f_ort - f_off).abs().max()) / scale:.1e} |"
        )
        enc_gflop, enc_ops = count_flops(lambda: official.image_encoder(x))
        ours_enc_gflop, _ = count_flops(lambda: ours.image_encoder(x))

        # ---------------- decoder inputs
        embedding = predictor.encode(image)
        h, w = image.shape[:2]
        click = np.array([[0.5 * w, 0.45 * h]])
        coords = ours.transform_coords(click, (h, w)).astype(np.float32)  # (1, 2) input frame
        feats = embedding.features.contiguous()
        coords_t, labels_t = torch.from_numpy(coords)[None], torch.ones(1, 1, dtype=torch.int32)
        ort_inputs = {
            "image_embeddings": feats.numpy(),
            "point_coords": np.concatenate([coords, [[0.0, 0.0]]])[None].astype(np.float32),
            "point_labels": np.array([[1.0, -1.0]], dtype=np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, dtype=np.float32),
        }

        def ours_click():
            return predictor.decode(embedding, points=click, labels=np.array([1]))

        def official_click():
            sparse, dense = official.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
            return official.mask_decoder(
                image_embeddings=feats,
                image_pe=official.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )

        def ort_click():
            return dec_sess.run(None, ort_inputs)

        cands = ours_click()
        off_logits, off_iou = official_click()
        ort_iou, ort_logits = ort_click()
        order = np.argsort(-off_iou[0].numpy(), kind="stable")
        ref_l = off_logits[0].numpy()[order]
        lscale = float(np.abs(ref_l).max())
        checks.append(
            f"| decoder low-res logits (ranked), max abs difference / max abs value | "
            f"ours {np.abs(cands.low_res_logits - ref_l).max() / lscale:.1e} | "
            f"ONNX Runtime {np.abs(ort_logits[0][order] - ref_l).max() / lscale:.1e} |"
        )
        dec_gflop, dec_ops = count_flops(official_click)
        ours_dec_gflop, _ = count_flops(ours_click)

        a = torch.randn(SGEMM_N, SGEMM_N)
        b = torch.randn(SGEMM_N, SGEMM_N)
        c = torch.empty(SGEMM_N, SGEMM_N)
        sgemm_gflop = 2 * SGEMM_N**3 / 1e9

        def sgemm():
            return torch.mm(a, b, out=c)

        clock = {"clock": time.process_time} if args.cpu_time else {}
        print("decoder ...", flush=True)
        dec = timed_blocks(
            {"ours": ours_click, "official": official_click, "onnxruntime": ort_click, "sgemm": sgemm},
            args.rounds,
            args.clicks,
            **clock,
        )
        def ours_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return ours.image_encoder(x)

        print("encoder ...", flush=True)
        enc = timed_blocks(
            {
                "ours": lambda: ours.image_encoder(x),
                "official": lambda: official.image_encoder(x),
                "onnxruntime": lambda: enc_sess.run(None, {"image": x_np}),
                "sgemm": sgemm,
                "ours_bf16": ours_bf16,
            },
            args.rounds,
            args.encodes,
            **clock,
        )
        bf16_iou = bf16_mask_iou(ours, image)

    sgemm_times = _flat(dec["sgemm"]) + _flat(enc["sgemm"])
    rate = sgemm_gflop / (statistics.median(sgemm_times) / 1000.0)  # GFLOP/s
    rates = [sgemm_gflop / (t / 1000.0) for t in sgemm_times]
    machine["load average (1/5/15 min) before / after"] = f"{load_before} / {_loadavg()}"

    def table(label: str, blocks: Dict[str, List[List[float]]], gflop: float, ours_gflop: float) -> List[str]:
        floor = gflop / rate * 1000.0
        lines = [f"| {label} | " + " | ".join(_spread(_flat(blocks[n])) for n in RUNTIMES) + f" | {floor:.1f} |"]
        rows_r = [
            ("ours / ONNX Runtime", _round_ratios(blocks["ours"], blocks["onnxruntime"])),
            ("ours / official", _round_ratios(blocks["ours"], blocks["official"])),
            ("ONNX Runtime / official", _round_ratios(blocks["onnxruntime"], blocks["official"])),
        ]
        floors = [gflop / sgemm_gflop * statistics.median(s) for s in blocks["sgemm"]]  # ms, per round
        rows_r.append(("ours / floor", [statistics.median(o) / f for o, f in zip(blocks["ours"], floors)]))
        return lines, rows_r, floor

    dec_line, dec_ratios, dec_floor = table("decoder, one click (3 low-res candidates)", dec, dec_gflop, ours_dec_gflop)
    enc_line, enc_ratios, enc_floor = table("encoder (TinyViT, 1024² input)", enc, enc_gflop, ours_enc_gflop)

    def ops(d: Dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))

    out = [
        "# Peers: sam_core vs the official PyTorch code vs ONNX Runtime (MobileSAM, CPU)",
        "",
        "Generated by `" + " ".join(["python", "benchmarks/bench_peers.py", *sys.argv[1:]]) + "`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "",
        f"Photo: scikit-image `coffee` ({w} x {h}); real MobileSAM weights. {args.rounds} rounds; each "
        f"runtime in its own block per round (1 warm-up + {args.clicks} clicks or {args.encodes} encodes), "
        "blocks alternated, order reversed every other round."
        + (" Times are CPU time of the process (`time.process_time`), not wall time." if args.cpu_time else ""),
        "",
        "## Times (ms): min / median / max over all timed calls",
        "",
        "| step | ours | official PyTorch | ONNX Runtime | floor (median sgemm rate) |",
        "|---|---:|---:|---:|---:|",
        *dec_line,
        *enc_line,
        "",
        "## Ratios of block medians within each round: min / median / max over the rounds",
        "",
        "| ratio | decoder, one click | encoder |",
        "|---|---:|---:|",
        *[
            f"| {name} | {_spread(d, '{:.2f}')} | {_spread(e, '{:.2f}')} |"
            for (name, d), (_, e) in zip(dec_ratios, enc_ratios)
        ],
        "",
        "## The floor",
        "",
        f"sgemm ({SGEMM_N}³ fp32 `torch.mm`, {sgemm_gflop:.1f} GFLOP, {threads} threads), in the same rounds: "
        f"{_spread(rates, '{:.0f}')} GFLOP/s (min / median / max); the floor uses the median, {rate:.0f} GFLOP/s.",
        "",
        f"* encoder: {enc_gflop:.1f} GFLOP counted on the official module ({ops(enc_ops)}) -> {enc_floor:.0f} ms. "
        f"Ours executes {ours_enc_gflop:.1f} GFLOP of counted products plus the attention inside "
        "`scaled_dot_product_attention`, which the counter does not see (the official `bmm` share).",
        f"* decoder: {dec_gflop:.2f} GFLOP counted on the official prompt encoder + mask decoder ({ops(dec_ops)}) "
        f"-> {dec_floor:.1f} ms. Ours counts {ours_dec_gflop:.2f} GFLOP (same results): the attentions between "
        "the 4096 image tokens and the 7 prompt tokens are computed with their projections folded into "
        "the prompt side, and only the 3 selected candidates' masks are made, so it can run under the "
        "official arithmetic's floor.",
        "",
        "## Agreement (checked before timing)",
        "",
        "| output | | |",
        "|---|---|---|",
        *checks,
        "",
        "## Opt-in: bf16 encoder (`Predictor(model, encoder_dtype=\"bf16\")`)",
        "",
        f"Timed in the same rounds: {_spread(_flat(enc['ours_bf16']))} ms (min / median / max); "
        f"ours bf16 / ours fp32 within a round: {_spread(_round_ratios(enc['ours_bf16'], enc['ours']), '{:.2f}')}; "
        f"/ ONNX Runtime: {_spread(_round_ratios(enc['ours_bf16'], enc['onnxruntime']), '{:.2f}')}. "
        f"Mask IoU against fp32 (best candidate, full resolution, {len(bf16_iou)} clicks on a 4 x 2 grid): "
        f"min {min(bf16_iou):.4f}, median {statistics.median(bf16_iou):.4f}. Fast only where the CPU has bf16 "
        "arithmetic (AVX512-BF16 or AMX); not the default because of that IoU cost.",
        "",
        "The machine may be shared: the ratios within a round are the figures to compare; absolute times "
        "move with the load average above.",
        "",
    ]
    write_report("\n".join(out), args.out)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
