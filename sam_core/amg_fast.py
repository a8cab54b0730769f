"""Which points to prompt in the automatic generator's fast mode.

The full grid prompts every point of an ``n x n`` lattice (1024 points for
``n = 32``), and the mask decoder's cost grows with the number of prompts.
Most of those prompts are redundant: a large region is found again from every
lattice point inside it. :class:`PromptPlanner` picks a subset of the *same*
lattice, in rounds, so that the proposals it finds are, mask for mask, the
ones the full grid finds (the prompt of each is a lattice point, and so is
its ``point_coords``):

1. **A coarse grid**: every ``stride``-th lattice point (8 x 8 points for any
   ``n >= 8``). Large and medium regions contain several of them.
2. **Points the image embedding singles out**: a small object holds one or
   two lattice points at most, and a coarse grid misses it. Two cheap cues
   rank the lattice points, and the top ``n`` of each are prompted too:

   * *feature distinctiveness*: one minus the cosine similarity between the
     encoder's feature vector at the point and the mean of its 5 x 5 feature
     neighbourhood (the embedding differs where a small thing sits);
   * *colour blob contrast*: the difference of Gaussians (sigma 4 and 16 at
     the model's 1024-pixel scale) of the image in CIE Lab at the point.

3. **Conflicts**: box NMS keeps the higher-scored of two overlapping
   candidates. When the two are *different* masks (mask IoU < 0.9), the
   outcome depends on which other candidates exist: the full grid may hold a
   third, better-scored candidate from a point not prompted yet that removes
   the winner and lets the loser through. So a few unprompted lattice points
   inside each such pair are prompted in the next round (at most
   ``CONFLICT_POINTS`` per pair).
4. **Uncovered area**: when no conflict is left, up to ``FILL_POINTS``
   lattice points that no kept mask covers, farthest from the points
   prompted so far first (then by feature distinctiveness); then conflicts
   again, and so on until every lattice point is covered or prompted. Each
   round's points are picked one by one, each the farthest from all points
   prompted or picked before it.
5. **Parts inside kept masks**: then covered lattice points two or more
   steps from every prompted one (a small part inside a large kept mask is
   found only from a point inside it), until the prompts are that dense or
   ``max_prompts`` points are prompted.

A photo whose kept masks cover it stops early (coffee: 293 prompts); a
cluttered one uses the whole budget.

Measured on real photos against the official generator's full grid (see
``docs/benchmarks.md``). The planner holds no model; it only sees lattice
coordinates, the image, the embedding and the kept candidates.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .amg_utils import _as_pycoco, box_area, pairwise_box_iou

__all__ = ["PromptPlanner", "CONFLICT_POINTS", "COVERED_SPACING", "FILL_POINTS", "MASK_SAME_IOU", "COARSE_SIDE"]

#: Points per side of the first round's coarse grid (at most; fewer on a smaller lattice).
COARSE_SIDE = 8

#: Unprompted lattice points added per conflicting pair of candidates and round (2 found more of
#: the full grid's masks than 4 for the same number of prompts on stereo_motorcycle, and as many elsewhere).
CONFLICT_POINTS = 2

#: Uncovered lattice points prompted per filling round.
FILL_POINTS = 32

#: Covered lattice points are prompted only this many lattice steps or more from every prompted point.
COVERED_SPACING = 2

#: Two candidates whose masks overlap by at least this IoU are the same proposal.
MASK_SAME_IOU = 0.9

#: Cue scales: sigmas of the difference of Gaussians, in pixels at the model's 1024-pixel input scale.
DOG_SIGMAS = (4.0, 16.0)


class PromptPlanner:
    """Chooses the lattice points of one crop to prompt, round by round.

    Parameters
    ----------
    n:
        Lattice points per side; the lattice is ``build_point_grid(n)``
        (row-major, x fastest), index ``row * n + col``.
    points:
        ``(n * n, 2)`` float64 lattice points, x then y, in crop pixels.
    feature_xy:
        ``(n * n, 2)`` int64 column and row of each point's cell in the
        embedding's ``64 x 64`` feature grid.
    image:
        ``(h, w, 3)`` uint8 RGB crop.
    features:
        ``(1, C, 64, 64)`` image embedding of the crop.
    box_nms_thresh:
        The generator's box NMS threshold (conflicts are judged with it).
    max_prompts:
        Most lattice points prompted in all rounds.
    """

    def __init__(
        self,
        n: int,
        points: np.ndarray,
        feature_xy: np.ndarray,
        image: np.ndarray,
        features: torch.Tensor,
        box_nms_thresh: float,
        max_prompts: int,
    ) -> None:
        self.n = int(n)
        self.points = np.asarray(points, dtype=np.float64)
        self.box_nms_thresh = float(box_nms_thresh)
        self.max_prompts = int(max_prompts)
        self.prompted = np.zeros(self.n * self.n, dtype=bool)
        self.rounds = 0
        self._image = image
        self._features = features
        self._feature_xy = np.asarray(feature_xy, dtype=np.int64)
        # kept candidates so far (crop frame)
        self._rles: List[Dict[str, Any]] = []
        self._boxes: List[torch.Tensor] = []
        self._iou: List[torch.Tensor] = []
        self._inside: List[np.ndarray] = []
        self._seen_pairs: set = set()
        self._cue: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ rounds

    def first_round(self) -> np.ndarray:
        """Lattice indices of the coarse grid and of the cue points (sorted, int64)."""
        n = self.n
        stride = max(1, n // COARSE_SIDE)
        offset = max(0, stride // 2 - 1)
        rows = np.arange(offset, n, stride)
        coarse = (rows[:, None] * n + rows[None, :]).ravel()
        chosen = np.zeros(n * n, dtype=bool)
        chosen[coarse] = True
        k = min(n, n * n)
        self._cue = self._feature_cue()
        for score in (self._cue, self._colour_cue()):
            # descending score, ties by lattice index: deterministic
            top = np.lexsort((np.arange(n * n), -score))[:k]
            chosen[top] = True
        return self._take(np.flatnonzero(chosen))

    def add_kept(self, rles: Sequence[Dict[str, Any]], boxes: torch.Tensor, iou: torch.Tensor, inside: np.ndarray) -> None:
        """Record kept candidates of a batch.

        ``rles``: COCO RLEs; ``boxes``: ``(k, 4)`` int64 inclusive x0, y0,
        x1, y1 (crop pixels); ``iou``: ``(k,)`` predicted IoU; ``inside``:
        ``(k, n * n)`` bool, whether each lattice point lies in each mask.
        """
        self._rles.extend(rles)
        self._boxes.append(boxes.cpu())
        self._iou.append(iou.float().cpu())
        self._inside.extend(np.asarray(inside, dtype=bool))

    def next_round(self) -> np.ndarray:
        """Lattice indices for the next round (empty when done): conflict points, else uncovered points."""
        if self.prompted.sum() >= self.max_prompts:
            return np.empty(0, dtype=np.int64)
        self.rounds += 1
        idx = self._conflict_points() if self._rles else np.empty(0, dtype=np.int64)
        if idx.size == 0:
            idx = self._uncovered_points()
        return self._take(idx)

    def _conflict_points(self) -> np.ndarray:
        """Unprompted lattice points inside pairs of different masks that box NMS set against each other."""
        chosen: List[int] = []
        for winner, loser in self._conflicts():
            union = self._inside[winner] | self._inside[loser]
            free = np.flatnonzero(union & ~self.prompted)
            free = free[~np.isin(free, chosen)]
            if free.size:
                # spread over the pair's region: evenly spaced picks in lattice order
                picks = free[np.linspace(0, free.size - 1, min(CONFLICT_POINTS, free.size)).round().astype(int)]
                chosen.extend(int(i) for i in np.unique(picks))
        return np.asarray(sorted(set(chosen)), dtype=np.int64)

    def _uncovered_points(self) -> np.ndarray:
        """Up to ``FILL_POINTS`` unprompted lattice points, spread out: outside every kept mask first.

        When every lattice point is covered or prompted, covered points at
        least ``COVERED_SPACING`` lattice steps from every prompted point
        (parts inside a kept mask); none once the prompts are that dense.
        """
        covered = np.any(self._inside, axis=0) if self._inside else np.zeros(self.n * self.n, dtype=bool)
        free = np.flatnonzero(~covered & ~self.prompted)
        spacing = 1
        if free.size == 0:
            free = np.flatnonzero(~self.prompted)
            spacing = COVERED_SPACING
        if free.size == 0:
            return free.astype(np.int64)
        rows, cols = np.divmod(np.arange(self.n * self.n), self.n)
        done = np.flatnonzero(self.prompted)
        # Chebyshev distance in lattice steps to the nearest prompted point
        dist = np.maximum(
            np.abs(rows[free, None] - rows[None, done]), np.abs(cols[free, None] - cols[None, done])
        ).min(axis=1)
        if self._cue is None:
            self._cue = self._feature_cue()
        # greedy farthest point: each pick is the point farthest from every prompt and earlier pick
        # (ties: most distinctive feature, then lattice order), so one round's picks do not bunch up
        chosen: List[int] = []
        while len(chosen) < FILL_POINTS:
            ok = np.flatnonzero(dist >= spacing)
            if ok.size == 0:
                break
            best = ok[np.lexsort((free[ok], -self._cue[free[ok]], -dist[ok]))[0]]
            pick = int(free[best])
            chosen.append(pick)
            dist = np.minimum(dist, np.maximum(np.abs(rows[free] - rows[pick]), np.abs(cols[free] - cols[pick])))
        return np.asarray(sorted(chosen), dtype=np.int64)

    # ------------------------------------------------------------------ internals

    def _take(self, idx: np.ndarray) -> np.ndarray:
        room = self.max_prompts - int(self.prompted.sum())
        idx = idx[~self.prompted[idx]][: max(0, room)]
        self.prompted[idx] = True
        return idx.astype(np.int64)

    def _conflicts(self) -> List[tuple]:
        """Pairs ``(winner, loser)`` of kept candidates where box NMS removes a different mask.

        Only pairs not seen in an earlier round, in NMS order.
        """
        from pycocotools import mask as mask_utils

        boxes = torch.cat(self._boxes).float()
        iou = torch.cat(self._iou)
        order = torch.sort(iou, descending=True, stable=True).indices.tolist()
        b = boxes[order]
        over = (pairwise_box_iou(b, b, box_area(b), box_area(b)).double() > self.box_nms_thresh).numpy()
        kept: List[int] = []
        pairs = []
        for pos, i in enumerate(order):
            hit = next((kp for kp in kept if over[kp, pos]), None)
            if hit is None:
                kept.append(pos)
                continue
            winner = order[hit]
            if (winner, i) in self._seen_pairs:
                continue
            self._seen_pairs.add((winner, i))
            same = mask_utils.iou([_as_pycoco(self._rles[winner])], [_as_pycoco(self._rles[i])], [0])[0][0]
            if same < MASK_SAME_IOU:
                pairs.append((winner, i))
        return pairs

    def _feature_cue(self) -> np.ndarray:
        """``(n * n,)`` one minus the cosine similarity of each point's feature with its 5 x 5 neighbourhood mean."""
        f = self._features.detach()[0].float().cpu()  # (C, 64, 64)
        f = f / f.norm(dim=0, keepdim=True).clamp_min(1e-12)
        mean = torch.nn.functional.avg_pool2d(f[None], 5, 1, 2, count_include_pad=False)[0]
        cos = (f * mean).sum(0) / mean.norm(dim=0).clamp_min(1e-12)
        fx, fy = self._feature_xy[:, 0], self._feature_xy[:, 1]
        return (1.0 - cos).numpy()[fy, fx].astype(np.float64)

    def _colour_cue(self) -> np.ndarray:
        """``(n * n,)`` colour contrast of a small blob at each point (difference of Gaussians in Lab)."""
        import cv2

        image = self._image
        h, w = image.shape[:2]
        scale = max(h, w) / 1024.0
        lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB).astype(np.float32)
        fine = cv2.GaussianBlur(lab, (0, 0), DOG_SIGMAS[0] * scale)
        coarse = cv2.GaussianBlur(lab, (0, 0), DOG_SIGMAS[1] * scale)
        dog = np.linalg.norm(fine - coarse, axis=2)
        px, py = lattice_pixels(self.points, (h, w)).T
        return dog[py, px].astype(np.float64)


def lattice_pixels(points: np.ndarray, size: Optional[Sequence[int]]) -> np.ndarray:
    """``(P, 2)`` int64 pixel column and row holding each point, clipped to ``size = (h, w)``."""
    h, w = int(size[0]), int(size[1])
    px = np.clip(np.floor(points[:, 0]).astype(np.int64), 0, w - 1)
    py = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, h - 1)
    return np.stack([px, py], axis=1)
