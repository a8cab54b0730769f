"""Model-free parts of automatic mask generation (sam_core.amg_utils).

Checked against the official implementation's helpers (imported through
tests/refimpl.py) where one exists, and against a plain greedy loop for NMS.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from sam_core import amg_utils as U


@pytest.fixture(scope="module")
def ref_amg():
    from refimpl import mobile_sam

    mobile_sam()
    import mobile_sam.utils.amg as ref

    return ref


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """Blobby random masks (thresholded smoothed noise), some empty and some full."""
    import cv2

    out = []
    for i in range(n):
        noise = rng.standard_normal((h, w)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=rng.uniform(1, 4))
        out.append(noise > rng.uniform(-0.3, 0.3))
    out[0][:] = False
    out[1][:] = True
    out[2][:] = False
    out[2][0, 0] = True
    out[3][:] = False
    out[3][-1, -1] = True
    return torch.from_numpy(np.stack(out))


# --------------------------------------------------------------------------- grids and crops


@pytest.mark.parametrize("n", [1, 2, 16, 32])
def test_point_grid_matches_reference(ref_amg, n):
    grid = U.build_point_grid(n)
    assert grid.shape == (n * n, 2)
    np.testing.assert_array_equal(grid, ref_amg.build_point_grid(n))
    if n > 1:  # x varies fastest
        assert grid[1, 0] > grid[0, 0]
        assert grid[0, 1] == grid[n - 1, 1]
    assert grid.min() > 0 and grid.max() < 1


def test_layer_grids_match_reference(ref_amg):
    ours = U.build_all_layer_point_grids(32, 2, 2)
    ref = ref_amg.build_all_layer_point_grids(32, 2, 2)
    assert [g.shape for g in ours] == [(1024, 2), (256, 2), (64, 2)]
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(341, 512), (512, 512), (3000, 4000), (999, 17)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_match_reference(ref_amg, size, layers):
    boxes, idxs = U.generate_crop_boxes(size, layers, 512 / 1500)
    ref_boxes, ref_idxs = ref_amg.generate_crop_boxes(size, layers, 512 / 1500)
    assert boxes == ref_boxes
    assert idxs == ref_idxs
    assert boxes[0] == [0, 0, size[1], size[0]]
    assert len(boxes) == sum(4**i for i in range(layers + 1))


# --------------------------------------------------------------------------- NMS


def _greedy_nms_loop(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """torchvision's CPU kernel transcribed as a plain loop over float32 scalars."""
    b = boxes.astype(np.float32)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = sorted(range(len(b)), key=lambda k: -float(scores[k]))  # sorted() is stable
    suppressed = [False] * len(b)
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for pos, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            for j in order[pos + 1 :]:
                if suppressed[j]:
                    continue
                w = max(np.float32(0), min(x2[i], x2[j]) - max(x1[i], x1[j]))
                h = max(np.float32(0), min(y2[i], y2[j]) - max(y1[i], y1[j]))
                inter = w * h
                ovr = inter / (areas[i] + areas[j] - inter)
                if float(ovr) > thr:
                    suppressed[j] = True
    return keep


def _random_boxes(rng, n, integer):
    xy = rng.uniform(0, 60, size=(n, 2))
    wh = rng.uniform(0, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if integer:
        boxes = np.round(boxes)
    boxes[: n // 10, 2:] = boxes[: n // 10, :2]  # some degenerate (zero-area) boxes
    boxes[n // 10 : n // 5] = boxes[n // 5 : n // 5 + (n // 5 - n // 10)]  # exact duplicates
    return boxes.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 0.95])
def test_nms_equals_greedy_loop(seed, thr, monkeypatch):
    rng = np.random.default_rng(seed)
    n = 150
    boxes = _random_boxes(rng, n, integer=seed % 2 == 0)
    # few distinct scores: many ties, which must be broken by input order
    scores = rng.choice(np.array([0.1, 0.5, 0.5, 0.9], dtype=np.float32), size=n)
    if seed == 5:
        monkeypatch.setattr(U, "_NMS_BLOCK", 7)  # exercise the blocked IoU rows
    keep = U.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr)
    assert keep.dtype == torch.int64
    assert keep.tolist() == _greedy_nms_loop(boxes, scores, thr)


def test_nms_threshold_is_strict_and_compared_in_double():
    # two boxes with IoU exactly 0.5: kept at threshold 0.5, suppressed below it
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = torch.tensor([1.0, 0.5])
    assert U.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert U.nms(boxes, scores, 0.4999).tolist() == [0]
    # IoU = float32(1/3) = 0.3333333432674408... is above the double 1/3 but not above float32(1/3)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]])
    assert U.nms(boxes, scores, 1 / 3).tolist() == [0]


def test_nms_empty_and_shapes():
    assert U.nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError):
        U.nms(torch.zeros((3, 3)), torch.zeros(3), 0.5)
    with pytest.raises(ValueError):
        U.nms(torch.zeros((3, 4)), torch.zeros(2), 0.5)
    # integer boxes are accepted (as float32)
    keep = U.nms(torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9]]), torch.tensor([0.2, 0.9]), 0.5)
    assert keep.tolist() == [1]


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_is_nms_per_category(seed):
    rng = np.random.default_rng(100 + seed)
    n = 120
    boxes = torch.from_numpy(_random_boxes(rng, n, integer=True))
    scores = torch.from_numpy(rng.choice(np.array([0.2, 0.4, 0.8], dtype=np.float32), size=n))
    cats = torch.from_numpy(rng.integers(0, 3, size=n))
    keep = U.batched_nms(boxes, scores, cats, 0.5)
    expected = []
    for c in range(3):
        where = np.flatnonzero(cats.numpy() == c)
        expected += [int(where[k]) for k in _greedy_nms_loop(boxes.numpy()[where], scores.numpy()[where], 0.5)]
    assert sorted(keep.tolist()) == sorted(expected)
    # descending score, ties in input order
    pairs = [(-float(scores[k]), k) for k in keep.tolist()]
    assert pairs == sorted(pairs)
    # a single category is plain NMS
    single = U.batched_nms(boxes, scores, torch.zeros(n), 0.5)
    assert single.tolist() == U.nms(boxes, scores, 0.5).tolist()


# --------------------------------------------------------------------------- scores, boxes


def test_stability_score_matches_reference(ref_amg):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0, 3, size=(6, 40, 50)).astype(np.float32))
    ours = U.stability_score(logits, 0.0, 1.0)
    ref = ref_amg.calculate_stability_score(logits, 0.0, 1.0)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    # a step edge (|logit| > offset everywhere) is perfectly stable
    step = torch.full((1, 8, 8), -5.0)
    step[:, 2:6, 2:6] = 5.0
    assert U.stability_score(step, 0.0, 1.0).item() == 1.0


def test_masks_to_boxes_matches_reference(ref_amg):
    masks = _random_masks(np.random.default_rng(2), 12, 37, 53)
    ours = U.masks_to_boxes(masks)
    assert ours.dtype == torch.int64
    assert ours.tolist() == ref_amg.batched_mask_to_box(masks).tolist()
    assert ours[0].tolist() == [0, 0, 0, 0]  # empty
    assert ours[1].tolist() == [0, 0, 52, 36]  # full: inclusive ends
    assert ours[3].tolist() == [52, 36, 52, 36]
    assert U.masks_to_boxes(torch.zeros((0, 5, 5), dtype=torch.bool)).shape == (0, 4)


def test_box_near_crop_edge_matches_reference(ref_amg):
    boxes = torch.tensor([[0, 0, 50, 50], [5, 30, 60, 80], [100, 100, 180, 190], [30, 30, 40, 40]])
    crop, orig = [100, 50, 300, 250], [0, 0, 300, 400]
    ours = U.is_box_near_crop_edge(boxes, crop, orig)
    assert ours.tolist() == ref_amg.is_box_near_crop_edge(boxes, crop, orig).tolist()
    assert ours.tolist() == [True, True, True, False]
    whole = [0, 0, 300, 400]
    assert not U.is_box_near_crop_edge(torch.tensor([[0, 0, 299, 399]]), whole, whole).any()


def test_box_xyxy_to_xywh():
    assert U.box_xyxy_to_xywh(torch.tensor([3, 4, 10, 20])) == [3, 4, 7, 16]
    assert U.box_xyxy_to_xywh([1.5, 2.0, 4.0, 3.0]) == [1.5, 2.0, 2.5, 1.0]


# --------------------------------------------------------------------------- RLE


def test_rle_counts_match_reference_and_roundtrip(ref_amg):
    masks = _random_masks(np.random.default_rng(3), 10, 29, 41)
    counts = U.masks_to_rle_counts(masks)
    ref = ref_amg.mask_to_rle_pytorch(masks)
    assert counts == [r["counts"] for r in ref]
    assert counts[1][0] == 0  # a full mask starts with an empty run of zeros
    for m, c in zip(masks.numpy(), counts):
        assert sum(c) == 29 * 41
        rle = U.counts_to_coco(c, (29, 41))
        assert isinstance(rle["counts"], str)
        assert rle["size"] == [29, 41]
        assert rle == U.mask_to_coco(m)  # same as pycocotools' own encoder
        assert rle == ref_amg.coco_encode_rle({"size": [29, 41], "counts": c})
        np.testing.assert_array_equal(U.coco_to_mask(rle), m)
        assert U.coco_area(rle) == int(m.sum())
        assert int(mask_utils.area({"size": [29, 41], "counts": rle["counts"].encode()})) == int(m.sum())


def test_rle_counts_empty_batch():
    assert U.masks_to_rle_counts(torch.zeros((0, 3, 3), dtype=torch.bool)) == []


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (7, 5)])
def test_rle_counts_on_thin_masks(ref_amg, shape):
    rng = np.random.default_rng(sum(shape))
    masks = torch.from_numpy(rng.random((12, *shape)) > 0.5)
    masks[0] = False
    masks[1] = True
    counts = U.masks_to_rle_counts(masks)
    assert counts == [r["counts"] for r in ref_amg.mask_to_rle_pytorch(masks)]


def test_box_from_rle_counts_equals_box_from_mask():
    rng = np.random.default_rng(5)
    masks = _random_masks(rng, 12, 31, 23)
    # runs that cross from one column into the next, and single pixels
    extra = torch.zeros((4, 31, 23), dtype=torch.bool)
    extra[0, 25:, 3] = True
    extra[0, :4, 4] = True
    extra[1, 30, 22] = True
    extra[2, 0, 0] = True
    extra[3, 10:, 5] = True
    extra[3, :, 6:9] = True
    extra[3, :2, 9] = True
    masks = torch.cat([masks, extra])
    expected = U.masks_to_boxes(masks).tolist()
    for m, c, box in zip(masks, U.masks_to_rle_counts(masks), expected):
        assert U.rle_counts_to_box(c, (31, 23)) == box


# --------------------------------------------------------------------------- small regions


@pytest.mark.parametrize("mode", ["holes", "islands"])
@pytest.mark.parametrize("area", [1, 10, 60, 10_000])
def test_remove_small_regions_matches_reference(ref_amg, mode, area):
    masks = _random_masks(np.random.default_rng(4), 8, 48, 64).numpy()
    for m in masks:
        ours, changed = U.remove_small_regions(m, area, mode)
        ref, ref_changed = ref_amg.remove_small_regions(m, area, mode)
        assert changed == ref_changed
        np.testing.assert_array_equal(ours, ref)
        if not changed:
            np.testing.assert_array_equal(ours, m)


def test_remove_small_regions_semantics():
    m = np.zeros((20, 20), dtype=bool)
    m[2:12, 2:12] = True
    m[5, 5] = False  # a one-pixel hole
    m[16:18, 16:18] = True  # a 4-pixel island
    filled, changed = U.remove_small_regions(m, 2, "holes")
    assert changed and filled[5, 5] and filled[16, 16]
    cleaned, changed = U.remove_small_regions(m, 5, "islands")
    assert changed and not cleaned[16:18, 16:18].any() and cleaned[2, 2] and not cleaned[5, 5]
    # every island small: the largest one stays
    only_small, changed = U.remove_small_regions(m, 1000, "islands")
    assert changed and only_small[2, 2] and not only_small[16, 16]
    with pytest.raises(ValueError):
        U.remove_small_regions(m, 5, "both")


def test_threshold_masks_equals_torch_comparison():
    x = torch.tensor([[[-1.0, 0.0, 1e-45, 0.3, np.float32(0.3)]]], dtype=torch.float32)
    for thr in (0.0, 0.3, -1.0):
        assert torch.equal(U.threshold_masks(x, thr), x > thr)
    assert U.threshold_masks(x, 0.0).dtype == torch.bool
