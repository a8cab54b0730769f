"""Automatic mask generation with the real MobileSAM weights, against the reference.

The fast mode (the default) is checked against our own full 32 x 32 grid on
the coffee photo (1024 prompts, the most expensive test here: about a minute
of CPU), which matches the official generator's output there mask for mask
(see docs/benchmarks.md).

Cost choice: the mask decoder dominates (about 13 CPU-seconds per batch of 64
points for MobileSAM, whatever the image size), and the parity test runs both
generators on two photos. To keep this file around two minutes on a 2-core CI
machine, the parity runs use ``points_per_side=12`` (144 points, 3 batches)
instead of 32 on scikit-image's astronaut (512 x 512) and coffee (400 x 600)
photos at their own, already small, size. All other parameters are the
defaults, identical on both sides; the reference runs with
``output_mode="coco_rle"``.
"""

from __future__ import annotations

import pytest
from pycocotools import mask as mask_utils

from sam_core import Predictor
from sam_core import amg as amg_mod
from sam_core.amg import AutomaticMaskGenerator
from test_amg import _check_records

pytestmark = [pytest.mark.weights, pytest.mark.slow]

PARITY_POINTS_PER_SIDE = 12
PARITY_PHOTOS = ("astronaut", "coffee")


@pytest.fixture(scope="module")
def reference_generator_cls(mobilesam_checkpoint):
    from refimpl import mobile_sam

    ms = mobile_sam()
    model = ms.sam_model_registry["vit_t"](checkpoint=str(mobilesam_checkpoint)).eval()
    return lambda **kw: ms.SamAutomaticMaskGenerator(model, output_mode="coco_rle", **kw)


@pytest.fixture(scope="module")
def runs(mobilesam_model, reference_generator_cls, photos):
    """Per photo: (image, our records, reference records), same parameters."""
    ours_gen = AutomaticMaskGenerator(Predictor(mobilesam_model), points_per_side=PARITY_POINTS_PER_SIDE)
    ref_gen = reference_generator_cls(points_per_side=PARITY_POINTS_PER_SIDE)
    out = {}
    for name in PARITY_PHOTOS:
        image = photos[name]
        out[name] = (image, ours_gen.generate(image), ref_gen.generate(image))
    return out


def _pycoco(records):
    return [{"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()} for r in records]


@pytest.mark.parametrize("name", PARITY_PHOTOS)
def test_proposals_on_real_photos(runs, name):
    image, ours, _ = runs[name]
    assert len(ours) >= 5
    _check_records(ours, image.shape[:2], pred_iou_thresh=0.88, stability_thresh=0.95, nms_thresh=0.7)
    for r in ours:
        assert r["crop_box"] == [0, 0, image.shape[1], image.shape[0]]


@pytest.mark.parametrize("name", PARITY_PHOTOS)
def test_parity_with_reference_generator(runs, name):
    """>= 95% of the reference's masks have a match with IoU >= 0.9 in ours, and the other way round."""
    _, ours, ref = runs[name]
    assert len(ref) >= 5
    iou = mask_utils.iou(_pycoco(ref), _pycoco(ours), [0] * len(ours))  # (n_ref, n_ours)
    ref_matched = (iou.max(axis=1) >= 0.9).mean()
    ours_matched = (iou.max(axis=0) >= 0.9).mean()
    assert ref_matched >= 0.95, f"{name}: {ref_matched:.1%} of {len(ref)} reference masks matched"
    assert ours_matched >= 0.95, f"{name}: {ours_matched:.1%} of {len(ours)} of our masks matched"
    # matched pairs mean the same thing: scores and prompt agree
    for i, j in enumerate(iou.argmax(axis=1)):
        if iou[i, j] >= 0.9:
            assert abs(ref[i]["predicted_iou"] - ours[j]["predicted_iou"]) < 0.02
            assert abs(ref[i]["stability_score"] - ours[j]["stability_score"]) < 0.02


def test_embedding_reuse_with_real_weights(mobilesam_model, photos):
    image = photos["chelsea"]
    predictor = Predictor(mobilesam_model)
    gen = AutomaticMaskGenerator(predictor, points_per_side=4, pred_iou_thresh=0.8, stability_score_thresh=0.9)
    fresh = gen.generate(image)
    assert fresh
    reused = gen.generate(image, embedding=predictor.encode(image))
    assert reused == fresh


def test_crop_layers_and_small_region_removal_match_reference(mobilesam_model, reference_generator_cls, photos):
    """crop_n_layers=1 (5 crops, each encoded) and min_mask_region_area, against the reference.

    A 3 x 3 grid per crop and lowered thresholds keep this cheap (the five
    encodings dominate) while still exercising uncropping, the crop-edge
    filter, the NMS between crops and the small-region post-processing.
    """
    image = photos["chelsea"]  # 300 x 451
    kw = dict(
        points_per_side=3, crop_n_layers=1, pred_iou_thresh=0.8, stability_score_thresh=0.9, min_mask_region_area=100
    )
    ours = AutomaticMaskGenerator(Predictor(mobilesam_model), **kw).generate(image)
    ref = reference_generator_cls(**kw).generate(image)
    assert len(ref) >= 3
    assert len({tuple(r["crop_box"]) for r in ours}) >= 2  # proposals from the crops survive
    iou = mask_utils.iou(_pycoco(ref), _pycoco(ours), [0] * len(ours))
    assert (iou.max(axis=1) >= 0.9).mean() >= 0.95
    assert (iou.max(axis=0) >= 0.9).mean() >= 0.95
    for i, j in enumerate(iou.argmax(axis=1)):
        if iou[i, j] >= 0.9:
            assert ours[j]["crop_box"] == ref[i]["crop_box"]
            assert ours[j]["point_coords"] == ref[i]["point_coords"]


def test_fast_mode_finds_the_full_grids_masks(mobilesam_model, photos):
    """The default (fast) mode: >= 90% of the full grid's masks (IoU >= 0.9), <= 10% extra, far fewer prompts."""
    image = photos["coffee"]
    predictor = Predictor(mobilesam_model)
    embedding = predictor.encode(image)
    full = AutomaticMaskGenerator(predictor, points_per_side=32).generate(image, embedding=embedding)
    prompts = []

    def counting(module, args, kwargs):  # a hook: a wrapped predict_low_res would turn off the split decode
        prompts.append(kwargs["points"][0].shape[0])

    hook = mobilesam_model.prompt_encoder.register_forward_pre_hook(counting, with_kwargs=True)
    try:
        fast = AutomaticMaskGenerator(predictor).generate(image, embedding=embedding)
    finally:
        hook.remove()
    assert len(full) >= 10
    _check_records(fast, image.shape[:2])
    iou = mask_utils.iou(_pycoco(full), _pycoco(fast), [0] * len(fast))
    recall = (iou.max(axis=1) >= 0.9).mean()
    extra = int((iou.max(axis=0) < 0.9).sum())
    assert recall >= 0.9, f"{recall:.1%} of the full grid's {len(full)} masks found"
    assert extra <= 0.1 * len(full), f"{extra} of {len(fast)} masks match none of the full grid's"
    assert sum(prompts) <= amg_mod.FAST_MAX_PROMPTS < 1024 / 2  # 293 measured
