"""Replay the fast mode's prompt planner on saved decoder outputs: recall against prompts, no model in the loop.

The full grid's kept candidates of every point of the 32 x 32 lattice are
computed once per photo with the real MobileSAM weights (the generator's own
decode and filters, about a minute of CPU) and cached in ``--cache``. Then
:class:`sam_core.amg_fast.PromptPlanner` is replayed on them for each
``--budget``: the proposals of a set of prompted points are the box NMS of
their kept candidates, exactly what the generator would output for those
prompts. Recall and extra masks are counted against the official
generator's records (``<ref-records>/<photo>_official.json``, as written by
``bench_amg.py --save-ref``) or, without them, against our full grid.

    PYTHONPATH=. python benchmarks/replay_amg_planner.py --photo stereo_motorcycle astronaut \\
        --budget 224 320 384 --cache /tmp/amg_lattice --ref-records /tmp/perf/dump
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]


class _Recorder:
    """Stands in for the planner in ``_process_batch``: records which lattice points each kept mask holds."""

    def __init__(self) -> None:
        self.inside: List[Any] = []

    def add_kept(self, rles, boxes, iou, inside) -> None:
        self.inside.extend(inside)


def lattice_candidates(photo: str, cache: Path) -> Dict[str, Any]:
    """Kept candidates (after the generator's filters) of every lattice point, cached per photo."""
    path = cache / f"{photo}_lattice.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    import numpy as np
    import torch

    from sam_core import Predictor, ensure_checkpoint, load_model
    from sam_core.amg import AutomaticMaskGenerator
    from sam_core.amg_fast import lattice_pixels
    from sam_core.amg_records import Found
    from sam_core.amg_utils import build_point_grid

    image = _photo(photo)
    h, w = image.shape[:2]
    predictor = Predictor(load_model("vit_t", checkpoint=str(ensure_checkpoint("vit_t")), device="cpu"))
    embedding = predictor.encode(image)
    gen = AutomaticMaskGenerator(predictor)
    points = build_point_grid(32) * np.array([[w, h]], dtype=np.float64)
    found, recorder = Found(), _Recorder()
    pixels = lattice_pixels(points, (h, w))
    with torch.inference_mode():
        for start in range(0, len(points), 64):
            batch = points[start : start + 64]
            gen._process_batch(batch, embedding, [0, 0, w, h], [0, 0, w, h], found, lambda: False, (recorder, pixels))
    pts = torch.cat(found.points).numpy()
    index = [int(np.flatnonzero((points == p).all(axis=1))[0]) for p in pts]
    data = {
        "size": (h, w),
        "points": points,
        "point": index,
        "rles": found.rles,
        "boxes": torch.cat(found.boxes),
        "iou": torch.cat(found.iou),
        "inside": np.stack(recorder.inside),
        "features": embedding.features,
        "input_size": tuple(embedding.input_size),
    }
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


def _photo(name: str):
    from skimage import data

    image = getattr(data, name)()
    return image[0] if isinstance(image, tuple) else image


def proposals(c: Dict[str, Any], prompted) -> List[int]:
    """Indexes of the candidates the generator outputs when exactly ``prompted`` lattice points are prompted."""
    from sam_core.amg_utils import nms

    chosen = set(int(i) for i in prompted)
    idx = [k for k, p in enumerate(c["point"]) if p in chosen]
    if not idx:
        return []
    keep = nms(c["boxes"][idx].float(), c["iou"][idx], 0.7)
    return [idx[i] for i in keep.tolist()]


def replay(c: Dict[str, Any], image, budget: int) -> List[int]:
    """The lattice points the planner prompts with a cap of ``budget``, rounds and batches as in the generator."""
    import numpy as np

    from sam_core.amg_fast import PromptPlanner

    h, w = c["size"]
    h_in, w_in = c["input_size"]
    coords = c["points"] * np.array([[w_in / w, h_in / h]])
    cells = np.clip(np.floor(coords * 64 / 1024).astype(np.int64), 0, 63)
    planner = PromptPlanner(32, c["points"], cells, image, c["features"], 0.7, budget)
    by_point: Dict[int, List[int]] = {}
    for k, p in enumerate(c["point"]):
        by_point.setdefault(p, []).append(k)
    prompted: List[int] = []
    idx = planner.first_round()
    while idx.size:
        for start in range(0, idx.size, 64):
            batch = idx[start : start + 64].tolist()
            prompted.extend(batch)
            ks = [k for p in batch for k in by_point.get(p, [])]
            if ks:
                planner.add_kept([c["rles"][k] for k in ks], c["boxes"][ks], c["iou"][ks], c["inside"][ks])
        idx = planner.next_round()
    return prompted


def match(ref: List[Dict[str, Any]], ours: List[Dict[str, Any]], thr: float = 0.9):
    import numpy as np
    from pycocotools import mask as mask_utils

    def coco(rles):
        return [{"size": r["size"], "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]} for r in rles]

    if not ours:
        return 0, len(ref), 0
    iou = np.asarray(mask_utils.iou(coco(ref), coco(ours), [0] * len(ours))).reshape(len(ref), len(ours))
    return int((iou.max(axis=1) >= thr).sum()), len(ref), int((iou.max(axis=0) < thr).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", nargs="+", default=["stereo_motorcycle"])
    parser.add_argument("--budget", nargs="+", type=int, default=[384])
    parser.add_argument("--cache", type=Path, required=True, help="folder for the per-photo lattice candidates")
    parser.add_argument("--ref-records", type=Path, default=None, help="folder of <photo>_official.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    for photo in args.photo:
        c = lattice_candidates(photo, args.cache)
        saved = args.ref_records / f"{photo}_official.json" if args.ref_records else None
        if saved is not None and saved.exists():
            data = json.loads(saved.read_text())
            ref = [r["segmentation"] for r in (data["records"] if isinstance(data, dict) else data)]
            against = "the official generator"
        else:
            ref = [c["rles"][k] for k in proposals(c, range(len(c["points"])))]
            against = "our full grid"
        image = _photo(photo)
        for budget in args.budget:
            prompted = replay(c, image, budget)
            found, of, extra = match(ref, [c["rles"][k] for k in proposals(c, prompted)])
            print(f"{photo} cap {budget}: {len(prompted)} prompts, {found}/{of} of {against}'s masks, {extra} extra")
    return 0


if __name__ == "__main__":
    sys.exit(main())
