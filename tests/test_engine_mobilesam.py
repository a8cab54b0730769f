"""Parity with MobileSAM (``mobilesam-mirror``) using the real ``vit_t`` weights.

Three real photos, a click sequence of five prompts each (foreground point,
foreground + background points, a box, a box with a point, and points with
``mask_input`` from the previous best candidate). Every candidate mask has
IoU >= 0.999 with the reference and the scores agree within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refimpl import mobile_sam
from sam_core.predictor import Predictor

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def reference_predictor(mobilesam_checkpoint):
    ms = mobile_sam()
    model = ms.sam_model_registry["vit_t"](checkpoint=str(mobilesam_checkpoint)).eval()
    return ms.SamPredictor(model)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _clicks(h: int, w: int):
    return [
        dict(points=[[0.5 * w, 0.5 * h]], labels=[1]),
        dict(points=[[0.5 * w, 0.5 * h], [0.12 * w, 0.1 * h]], labels=[1, 0]),
        dict(box=[0.2 * w, 0.2 * h, 0.8 * w, 0.85 * h]),
        dict(points=[[0.5 * w, 0.4 * h]], labels=[1], box=[0.2 * w, 0.2 * h, 0.8 * w, 0.85 * h]),
        dict(points=[[0.5 * w, 0.5 * h], [0.35 * w, 0.7 * h]], labels=[1, 0], previous_mask=True),
        dict(points=[[0.6 * w, 0.3 * h]], labels=[1], previous_mask=True, multimask=False),
    ]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_click_sequence_matches_mobilesam(name, photos, mobilesam_model, reference_predictor):
    image = photos[name]
    h, w = image.shape[:2]
    predictor = Predictor(mobilesam_model)
    embedding = predictor.encode(image)
    reference_predictor.set_image(image)
    assert torch.allclose(embedding.features, reference_predictor.features, atol=1e-4, rtol=0)

    ours_prev = theirs_prev = None
    for click in _clicks(h, w):
        multimask = click.get("multimask", True)
        use_prev = click.get("previous_mask", False)
        pts = np.asarray(click["points"], dtype=np.float64) if "points" in click else None
        lbl = np.asarray(click["labels"]) if "labels" in click else None
        box = np.asarray(click["box"], dtype=np.float64) if "box" in click else None

        cands = predictor.decode(
            embedding, points=pts, labels=lbl, box=box, mask_input=ours_prev if use_prev else None, multimask=multimask
        )
        masks, scores, low_res = reference_predictor.predict(
            point_coords=pts,
            point_labels=lbl,
            box=box,
            mask_input=theirs_prev[None] if use_prev else None,
            multimask_output=multimask,
        )
        order = np.argsort(-scores, kind="stable")
        assert len(cands) == len(order) == (3 if multimask else 1)
        np.testing.assert_allclose(cands.scores, scores[order], atol=1e-3, rtol=0)
        for i, j in enumerate(order):
            iou = _iou(cands.mask(i), masks[j])
            assert iou >= 0.999, f"{name} {click}: candidate {i} IoU {iou:.5f}"
        ours_prev = cands.low_res_logits[0]
        theirs_prev = low_res[order[0]]
