"""Region embeddings with the real MobileSAM weights on real photos (scikit-image).

* a region decode of an object agrees with the whole-image decode of it, in
  full-image coordinates, and is empty outside the region;
* a region equal to the whole image gives today's embedding and masks exactly;
* a prompt outside the region is refused and routed to the whole image;
* logits carried from a region decode to the whole image refine the same object.

The quality gain of regions on large images is measured in
``benchmarks/bench_region.py``, not asserted here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sam_core import Candidates, Predictor, PromptOutsideRegion

pytestmark = pytest.mark.weights

# (photo, object box x0, y0, x1, y1, region around it): an embroidered patch on the astronaut's
# suit and the coffee cup, each in a region about twice its size.
OBJECTS = [
    ("astronaut", (132, 346, 212, 426), (60, 280, 300, 500)),
    ("coffee", (170, 18, 410, 290), (150, 3, 430, 300)),
]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def predictor(mobilesam_model):
    return Predictor(mobilesam_model)


@pytest.fixture(scope="module")
def whole(predictor, photos):
    return {name: predictor.encode(photos[name]) for name, _, _ in OBJECTS}


@pytest.fixture(scope="module")
def regions(predictor, photos):
    return {name: predictor.encode(photos[name], region=region) for name, _, region in OBJECTS}


@pytest.mark.parametrize("name, box, region", OBJECTS)
def test_region_decode_matches_the_whole_image_decode_in_full_image_coordinates(
    name, box, region, predictor, photos, whole, regions
):
    image = photos[name]
    H, W = image.shape[:2]
    emb = regions[name]
    x0, y0, x1, y1 = region
    assert emb.region == region and emb.image_size == (H, W) and emb.original_size == (y1 - y0, x1 - x0)
    # the crop, encoded as an image of its own, is exactly what the region encode ran on
    crop = predictor.encode(np.ascontiguousarray(image[y0:y1, x0:x1]))
    assert torch.equal(emb.features, crop.features) and emb.input_size == crop.input_size

    ours = predictor.decode(emb, box=box, multimask=False)
    ref = predictor.decode(whole[name], box=box, multimask=False)
    mask = ours.mask(0)
    assert mask.shape == (H, W) and ours.original_size == (H, W)
    assert iou(mask, ref.mask(0)) > 0.9
    outside = mask.copy()
    outside[y0:y1, x0:x1] = False
    assert mask.sum() > 1000 and not outside.any()
    # the app's accessors: previews and the low-res grid are of the full image too
    previews = ours.previews((H // 2, W // 2))
    assert previews.shape == (1, H // 2, W // 2)
    assert iou(previews[0], mask[1::2, 1::2]) > 0.95
    grid = ours.valid_low_res_logits
    assert grid.shape[1] / grid.shape[2] == pytest.approx(H / W, rel=0.02)
    small = grid[0] > ours.mask_threshold
    ys, xs = np.nonzero(small)
    sy, sx = H / grid.shape[1], W / grid.shape[2]
    assert (ys.min() + 0.5) * sy >= y0 and (ys.max() + 0.5) * sy < y1
    assert (xs.min() + 0.5) * sx >= x0 and (xs.max() + 0.5) * sx < x1


def test_encode_batch_of_regions_matches_single_encodes(predictor, photos, whole, regions):
    image = photos["astronaut"]
    region = OBJECTS[0][2]
    both = predictor.encode_batch([image, image], [None, region])
    single = regions["astronaut"]
    assert both[0].region is None and both[1].region == region
    assert torch.allclose(both[0].features, whole["astronaut"].features, atol=1e-4)
    assert torch.allclose(both[1].features, single.features, atol=1e-4)


@pytest.mark.parametrize("name, region", [("astronaut", None), ("coffee", (-10, -3.5, 1e4, 400.5))])
def test_region_equal_to_the_whole_image_gives_todays_masks_exactly(name, region, predictor, photos, whole):
    image = photos[name]
    H, W = image.shape[:2]
    today = whole[name]
    prompts = [
        dict(points=[[0.5 * W, 0.5 * H], [0.1 * W, 0.1 * H]], labels=[1, 0]),
        dict(box=[0.2 * W, 0.2 * H, 0.8 * W, 0.85 * H]),
    ]
    emb = predictor.encode(image, region=region or (0, 0, W, H))  # exactly the image, or clipped to it
    assert emb.region is None and emb.image_size is None  # the plain whole-image embedding
    assert torch.equal(emb.features, today.features)
    # the region code path itself, with the whole image as its region, changes nothing either
    as_region = dataclasses.replace(today, region=(0, 0, W, H), image_size=(H, W))
    for prompt in prompts:
        got, want = predictor.decode(as_region, **prompt), predictor.decode(today, **prompt)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
        np.testing.assert_array_equal(got.masks(), want.masks())
        assert (got.previews((H // 3, W // 3)) != want.previews((H // 3, W // 3))).mean() < 1e-3


def test_prompt_outside_the_region_is_refused_and_routed_to_the_whole_image(predictor, photos, whole, regions):
    name, box, region = OBJECTS[0]
    image = photos[name]
    emb = regions[name]
    inside, outside = [[170.0, 386.0]], [[170.0, 386.0], [400.0, 100.0]]  # the patch; + the shuttle
    assert emb.covers(inside) and not emb.covers(outside)
    with pytest.raises(PromptOutsideRegion):
        predictor.decode(emb, points=outside, labels=[1, 0])

    def route(points, labels):  # what the window does: the region if it covers the prompt, else the image
        target = emb if emb.covers(points) else whole[name]
        return target, predictor.decode(target, points=points, labels=labels)

    target, cands = route(outside, [1, 0])
    assert target is whole[name] and cands.region is None and cands.mask(0).shape == image.shape[:2]
    target, cands = route(inside, [1])
    assert target is emb and cands.region == region


def test_logits_carried_to_the_whole_image_refine_the_same_object(predictor, whole, regions):
    name, box, region = OBJECTS[0]
    emb = regions[name]
    first = predictor.decode(emb, box=box, multimask=False)
    carried = first.logits_for(0, whole[name])
    assert carried.shape == (256, 256)
    np.testing.assert_array_equal(first.logits_for(0, emb), first.low_res_logits[0])
    # the carried logits alone, upsampled over the whole image, are the region's mask
    as_mask = Candidates(first.scores, carried[None], first.original_size, whole[name].input_size)
    assert iou(as_mask.mask(0), first.mask(0)) > 0.9
    # and, with a click, the whole image decodes the same object from them
    refined = predictor.decode(whole[name], points=[[170.0, 386.0]], labels=[1], mask_input=carried, multimask=False)
    assert iou(refined.mask(0), first.mask(0)) > 0.85
