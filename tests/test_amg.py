"""AutomaticMaskGenerator driven by a scripted model (no weights, fast).

The fake model answers every point prompt with three concentric discs around
the point (radii 6, 14 and 30 low-res pixels, steep logits so that they are
stable) with predicted IoUs 0.97, 0.93 and 0.80. That is enough to check the
pipeline's bookkeeping: filtering, NMS, RLE, crops, progress, cancel,
embedding reuse and bounded memory. Quality against real weights is in
tests/test_amg_weights.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_core import amg as amg_mod
from sam_core import transforms
from sam_core.amg import AutomaticMaskGenerator, Cancelled
from sam_core.amg_utils import coco_to_mask
from sam_core.types import Candidates, ImageEmbedding, upscale_logits

RADII = (6.0, 14.0, 30.0)
IOUS = (0.97, 0.93, 0.80)


class FakeModel:
    """The model protocol the generator uses, answering with discs."""

    model_type = "fake"
    mask_threshold = 0.0
    image_size = 1024
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.decode_calls = 0
        self.prompts = 0

    def transform_coords(self, coords, original_size):
        return transforms.apply_coords(coords, original_size)

    def predict_low_res(self, embedding, coords, labels, boxes, mask_input, multimask):
        assert boxes is None and mask_input is None and multimask
        assert coords.shape[1:] == (1, 2) and labels.shape == coords.shape[:2]
        assert bool((labels == 1).all())
        self.decode_calls += 1
        self.prompts += coords.shape[0]
        c = coords[:, 0, :] / 4.0  # low-res frame (256 over the padded 1024 input)
        ys, xs = torch.meshgrid(torch.arange(256.0) + 0.5, torch.arange(256.0) + 0.5, indexing="ij")
        d = torch.sqrt((xs[None] - c[:, 0, None, None]) ** 2 + (ys[None] - c[:, 1, None, None]) ** 2)
        logits = torch.stack([(r - d) * 20.0 for r in RADII], dim=1)  # (B, 3, 256, 256)
        iou = torch.tensor(IOUS).expand(coords.shape[0], 3).clone()
        return logits, iou


class FakePredictor:
    def __init__(self, model=None) -> None:
        self.model = model or FakeModel()
        self.encode_calls = 0

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        self.encode_calls += 1
        h, w = image.shape[:2]
        return ImageEmbedding(
            features=torch.zeros(1, 256, 64, 64),
            original_size=(h, w),
            input_size=transforms.preprocess_shape(h, w),
            model_type="fake",
        )


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(150, 200, 3), dtype=np.uint8)


def _xyxy(rec):
    x, y, w, h = rec["bbox"]
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def _box_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_records(records, image_hw, pred_iou_thresh=0.88, stability_thresh=0.95, nms_thresh=0.7):
    H, W = image_hw
    assert records
    for r in records:
        assert set(r) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "stability_score",
            "point_coords",
            "crop_box",
        }
        seg = r["segmentation"]
        assert seg["size"] == [H, W] and isinstance(seg["counts"], str)
        mask = coco_to_mask(seg)
        assert isinstance(r["area"], int) and r["area"] == int(mask.sum()) > 0
        ys, xs = np.nonzero(mask)
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert all(isinstance(v, int) for v in r["bbox"] + r["crop_box"])
        assert r["predicted_iou"] > pred_iou_thresh
        assert r["stability_score"] >= stability_thresh
        (px, py), = r["point_coords"]
        assert 0 <= px < W and 0 <= py < H
    boxes = [_xyxy(r) for r in records]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert _box_iou(boxes[i], boxes[j]) <= nms_thresh


def test_records_meet_thresholds_and_nms(image):
    pred = FakePredictor()
    records = AutomaticMaskGenerator(pred, points_per_side=8, points_per_batch=16).generate(image)
    _check_records(records, image.shape[:2])
    assert pred.encode_calls == 1
    assert pred.model.decode_calls == 4 and pred.model.prompts == 64
    # the third disc (predicted IoU 0.80) never passes; sorted by predicted IoU
    assert {round(r["predicted_iou"], 2) for r in records} <= {0.97, 0.93}
    ious = [r["predicted_iou"] for r in records]
    assert ious == sorted(ious, reverse=True)
    assert all(r["crop_box"] == [0, 0, 200, 150] for r in records)


def test_masks_are_the_official_upsampling_of_the_logits(image):
    """Each proposal is exactly its low-res candidate upsampled by SAM 1's postprocessing."""
    pred = FakePredictor()
    records = AutomaticMaskGenerator(pred, points_per_side=3).generate(image)
    assert len(records) >= 3
    emb = pred.encode(image)
    for r in records:
        coords = pred.model.transform_coords(np.array(r["point_coords"]), (150, 200))
        logits, iou = pred.model.predict_low_res(
            emb, torch.tensor(coords, dtype=torch.float32)[None], torch.ones(1, 1), None, None, True
        )
        k = IOUS.index(min(IOUS, key=lambda v: abs(v - r["predicted_iou"])))
        full = upscale_logits(logits[:, k : k + 1], emb.input_size, emb.original_size)[0, 0] > 0
        np.testing.assert_array_equal(coco_to_mask(r["segmentation"]), full.numpy())


def test_filters_can_be_disabled(image):
    pred = FakePredictor()
    strict = AutomaticMaskGenerator(pred, points_per_side=4).generate(image)
    loose = AutomaticMaskGenerator(pred, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0).generate(
        image
    )
    assert len(loose) > len(strict)
    assert any(round(r["predicted_iou"], 2) == 0.80 for r in loose)


def test_chunking_does_not_change_the_output(image, monkeypatch):
    pred = FakePredictor()
    ref = AutomaticMaskGenerator(pred, points_per_side=6, points_per_batch=40).generate(image)
    monkeypatch.setattr(amg_mod, "FULL_RES_BUDGET", 1)  # one mask at a time
    one = AutomaticMaskGenerator(pred, points_per_side=6, points_per_batch=7).generate(image)
    assert one == ref


def test_decoder_parts_do_not_change_the_output(image, monkeypatch):
    """A batch larger than DECODER_BATCH is decoded in parts; the proposals are the same."""
    pred = FakePredictor()
    ref = AutomaticMaskGenerator(pred, points_per_side=6, points_per_batch=36).generate(image)
    calls = pred.model.decode_calls
    monkeypatch.setattr(amg_mod, "DECODER_BATCH", 5)
    parts = AutomaticMaskGenerator(pred, points_per_side=6, points_per_batch=36).generate(image)
    assert parts == ref
    assert pred.model.decode_calls - calls == 8  # ceil(36 / 5)


def test_progress_reports_every_step(image):
    calls = []
    pred = FakePredictor()
    AutomaticMaskGenerator(pred, points_per_side=8, points_per_batch=20).generate(
        image, progress=lambda done, total: calls.append((done, total))
    )
    # 1 encoding + ceil(64 / 20) = 4 batches
    assert calls == [(i, 5) for i in range(6)]


def test_progress_with_crops_counts_every_crop(image):
    calls = []
    gen = AutomaticMaskGenerator(FakePredictor(), points_per_side=4, points_per_batch=16, crop_n_layers=1)
    records = gen.generate(image, progress=lambda d, t: calls.append((d, t)))
    total = 5 + 5  # five crops, each one encoding and one batch of 16 points
    assert calls == [(i, total) for i in range(total + 1)]
    assert records
    crop_boxes = {tuple(r["crop_box"]) for r in records}
    assert len(crop_boxes) >= 2  # proposals from the whole image and from crops
    for r in records:  # every proposal lies inside the crop it came from
        x, y, w, h = r["bbox"]
        cx, cy, cw, ch = r["crop_box"]
        assert cx <= x and cy <= y and x + w < cx + cw and y + h < cy + ch


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_between_batches(image, kind):
    pred = FakePredictor()
    event = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 2:  # after the encoding and the first batch
            event.set()

    flag = event if kind == "event" else event.is_set
    with pytest.raises(Cancelled):
        AutomaticMaskGenerator(pred, points_per_side=8, points_per_batch=8).generate(
            image, progress=progress, cancel=flag
        )
    assert seen == [0, 1, 2]
    assert pred.model.decode_calls == 1  # 7 of the 8 batches never ran


def test_cancel_stops_inside_a_batch_between_its_decodes(image):
    """A batch of 64 prompts is decoded 32 at a time: a cancel waits for one decode, not the batch."""
    pred = FakePredictor()
    event = threading.Event()
    decode = pred.model.predict_low_res

    def decode_then_cancel(*args, **kwargs):
        event.set()
        return decode(*args, **kwargs)

    pred.model.predict_low_res = decode_then_cancel
    assert amg_mod.DECODER_BATCH == 32
    with pytest.raises(Cancelled):
        AutomaticMaskGenerator(pred, points_per_side=8, points_per_batch=64).generate(image, cancel=event)
    assert pred.model.decode_calls == 1  # the batch's second half never ran


def test_cancel_before_start_skips_encoding(image):
    pred = FakePredictor()
    with pytest.raises(Cancelled):
        AutomaticMaskGenerator(pred, points_per_side=4).generate(image, cancel=lambda: True)
    assert pred.encode_calls == 0 and pred.model.decode_calls == 0


def test_cancel_from_another_thread(image):
    """The GUI's pattern: generate() in a worker, Cancel pressed on the main thread."""
    pred = FakePredictor()
    event = threading.Event()
    started = threading.Event()
    outcome = {}

    def progress(done, total):
        started.set()
        if done >= 1:
            assert event.wait(10)  # keep the worker busy until Cancel arrives

    def work():
        try:
            AutomaticMaskGenerator(pred, points_per_side=8, points_per_batch=4).generate(
                image, progress=progress, cancel=event
            )
        except Cancelled:
            outcome["cancelled"] = True

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(10)
    event.set()
    worker.join(10)
    assert not worker.is_alive()
    assert outcome == {"cancelled": True}
    assert pred.model.decode_calls <= 1


def test_bad_cancel_flag(image):
    with pytest.raises(TypeError):
        AutomaticMaskGenerator(FakePredictor(), points_per_side=2).generate(image, cancel=True)


def test_embedding_reuse_gives_the_same_output(image):
    pred = FakePredictor()
    gen = AutomaticMaskGenerator(pred, points_per_side=5)
    fresh = gen.generate(image)
    emb = pred.encode(image)
    calls = pred.encode_calls
    reused = gen.generate(image, embedding=emb)
    assert pred.encode_calls == calls  # not encoded again
    assert reused == fresh


def test_embedding_reuse_is_refused_when_unusable(image):
    pred = FakePredictor()
    emb = pred.encode(image)
    with pytest.raises(ValueError, match="crop_n_layers"):
        AutomaticMaskGenerator(pred, points_per_side=2, crop_n_layers=1).generate(image, embedding=emb)
    other = pred.encode(image[:100])
    with pytest.raises(ValueError, match="size"):
        AutomaticMaskGenerator(pred, points_per_side=2).generate(image, embedding=other)


def test_invalid_arguments(image):
    pred = FakePredictor()
    for kwargs in ({"points_per_side": 0}, {"points_per_batch": 0}, {"crop_n_layers": -1}):
        with pytest.raises(ValueError):
            AutomaticMaskGenerator(pred, **kwargs)
    with pytest.raises(ValueError):
        AutomaticMaskGenerator(pred, points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2)
    with pytest.raises(ValueError):
        AutomaticMaskGenerator(pred).generate(image[..., 0])
    with pytest.raises(ValueError):
        AutomaticMaskGenerator(pred).generate(image.astype(np.float32))


def _has_hole(mask: np.ndarray) -> bool:
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    solid = np.zeros(mask.shape, dtype=np.uint8)
    cv2.drawContours(solid, contours, -1, 1, thickness=-1)
    return bool((solid.astype(bool) != mask).any())


def test_small_region_removal(image):
    """Candidates with a small hole: filled when min_mask_region_area exceeds the hole."""

    class HoleModel(FakeModel):
        def predict_low_res(self, embedding, coords, labels, boxes, mask_input, multimask):
            logits, iou = super().predict_low_res(embedding, coords, labels, boxes, mask_input, multimask)
            c = coords[:, 0, :] / 4.0
            for b in range(logits.shape[0]):  # a 4x4 low-res hole inside the middle disc
                x, y = int(c[b, 0]) + 6, int(c[b, 1])
                logits[b, 1, y - 2 : y + 2, x - 2 : x + 2] = -100.0
            return logits, iou

    pred = FakePredictor(HoleModel())
    kwargs = dict(points_per_side=2, stability_score_thresh=0.5)
    plain = AutomaticMaskGenerator(pred, **kwargs).generate(image)
    assert any(_has_hole(coco_to_mask(r["segmentation"])) for r in plain)
    cleaned = AutomaticMaskGenerator(pred, min_mask_region_area=50, **kwargs).generate(image)
    assert cleaned
    for r in cleaned:
        m = coco_to_mask(r["segmentation"])
        assert not _has_hole(m)
        assert r["area"] == int(m.sum())
        ys, xs = np.nonzero(m)
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]


def test_memory_is_bounded_on_a_12_megapixel_photo(monkeypatch):
    """No full-resolution float tensor larger than FULL_RES_BUDGET elements is ever made."""
    big = np.zeros((3000, 4000, 3), dtype=np.uint8)
    biggest = []
    real_interpolate = F.interpolate

    def spy(x, *args, **kwargs):
        out = real_interpolate(x, *args, **kwargs)
        biggest.append(out.numel())
        return out

    monkeypatch.setattr(amg_mod.F, "interpolate", spy)
    trims = []
    monkeypatch.setattr(amg_mod, "release_free_memory", lambda: trims.append(1))
    records = AutomaticMaskGenerator(FakePredictor(), points_per_side=2, points_per_batch=2).generate(big)
    assert records and records[0]["segmentation"]["size"] == [3000, 4000]
    assert max(biggest) <= amg_mod.FULL_RES_BUDGET
    assert max(biggest) >= 3000 * 4000  # it did work at full resolution
    assert len(trims) == 3  # free heap memory handed back after each batch (large photo) and at the end


def test_small_photo_trims_once_at_the_end(image, monkeypatch):
    """On a photo no larger than the model input the batches reuse the heap's blocks: one trim, at the end."""
    trims = []
    monkeypatch.setattr(amg_mod, "release_free_memory", lambda: trims.append(1))
    AutomaticMaskGenerator(FakePredictor(), points_per_side=4, points_per_batch=4).generate(image)
    assert len(trims) == 1


def test_release_free_memory_uses_glibc_malloc_trim():
    import platform
    import sys

    from sam_core import allocator, amg_utils

    assert amg_utils.release_free_memory is allocator.release_free_memory
    amg_utils.release_free_memory()
    amg_utils.release_free_memory()  # the libc handle is cached
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert allocator._glibc() and hasattr(allocator._glibc(), "malloc_trim")
    else:  # pragma: no cover - other C libraries: a no-op
        assert allocator._glibc() is False


def test_sam2_models_upsample_in_one_step(image):
    """Models whose candidates_type is not plain Candidates get 256 -> original directly."""

    class Sam2LikeCandidates(Candidates):
        pass

    class Sam2Like(FakeModel):
        candidates_type = Sam2LikeCandidates

    pred = FakePredictor(Sam2Like())
    records = AutomaticMaskGenerator(pred, points_per_side=2).generate(image)
    assert records
    emb = pred.encode(image)
    for r in records:
        coords = pred.model.transform_coords(np.array(r["point_coords"]), (150, 200))
        logits, _ = pred.model.predict_low_res(
            emb, torch.tensor(coords, dtype=torch.float32)[None], torch.ones(1, 1), None, None, True
        )
        k = IOUS.index(min(IOUS, key=lambda v: abs(v - r["predicted_iou"])))
        full = F.interpolate(logits[:, k : k + 1], (150, 200), mode="bilinear", align_corners=False)[0, 0] > 0
        np.testing.assert_array_equal(coco_to_mask(r["segmentation"]), full.numpy())


# ---------------------------------------------------------------------------- the fast mode (default)


def _lattice(n, h, w):
    from sam_core.amg_utils import build_point_grid

    return build_point_grid(n) * np.array([[w, h]])


def test_default_is_the_fast_mode_on_the_32_lattice(image):
    pred = FakePredictor()
    calls = []
    records = AutomaticMaskGenerator(pred).generate(image, progress=lambda d, t: calls.append((d, t)))
    assert records
    _check_records(records, image.shape[:2])
    # fewer prompts than the full 32 x 32 grid, never more than the cap
    assert 64 <= pred.model.prompts <= amg_mod.FAST_MAX_PROMPTS < 1024
    lattice = {tuple(p) for p in _lattice(32, 150, 200).round(6).tolist()}
    assert all(tuple(np.round(r["point_coords"][0], 6)) in lattice for r in records)
    # progress: from 0 to its total, one step at a time
    total = calls[0][1]
    assert calls == [(i, total) for i in range(total + 1)]


def test_explicit_points_per_side_prompts_the_whole_grid(image):
    pred = FakePredictor()
    gen = AutomaticMaskGenerator(pred, points_per_side=32)
    assert not gen.fast
    gen.generate(image)
    assert pred.model.prompts == 1024


def test_fast_mode_prompts_the_coarse_grid_first(image):
    pred = FakePredictor()
    seen = []
    real = pred.model.predict_low_res

    def spy(embedding, coords, *args):
        seen.append(coords[:, 0, :].clone())
        return real(embedding, coords, *args)

    pred.model.predict_low_res = spy
    AutomaticMaskGenerator(pred, points_per_batch=256).generate(image)
    first = torch.cat(seen).numpy()[:128]  # the first round: 64 coarse points and at most 2 x 32 cue points
    lattice = pred.model.transform_coords(_lattice(32, 150, 200), (150, 200))
    coarse = lattice.reshape(32, 32, 2)[1::4, 1::4].reshape(-1, 2)
    for p in coarse:  # every coarse point is in the first round
        assert np.abs(first - p).sum(axis=1).min() < 1e-3


def test_fast_mode_cancel(image):
    pred = FakePredictor()
    with pytest.raises(Cancelled):
        AutomaticMaskGenerator(pred, points_per_batch=16).generate(image, cancel=lambda: pred.model.decode_calls >= 2)
    assert pred.model.decode_calls == 2


def _square_rle(h, w, x0, y0, x1, y1):
    from sam_core.amg_utils import mask_to_coco

    m = np.zeros((h, w), dtype=bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask_to_coco(m)


def _planner(n=8, h=80, w=80, max_prompts=64):
    from sam_core.amg_fast import PromptPlanner

    points = _lattice(n, h, w)
    cells = np.zeros((n * n, 2), dtype=np.int64)
    return PromptPlanner(n, points, cells, np.zeros((h, w, 3), np.uint8), torch.zeros(1, 8, 64, 64), 0.7, max_prompts)


def test_planner_prompts_inside_conflicting_different_masks():
    """Box NMS removes a different mask: the next round prompts unprompted lattice points inside the pair."""
    planner = _planner(n=16, max_prompts=256)
    first = planner.first_round()
    assert planner.prompted[first].all()
    # two masks with overlapping boxes (box IoU > 0.7) but different shapes: a square and its upper-left L
    a = _square_rle(80, 80, 10, 10, 49, 49)
    m = np.zeros((80, 80), dtype=bool)
    m[10:50, 10:20] = True
    m[10:20, 10:50] = True
    from sam_core.amg_utils import mask_to_coco

    b = mask_to_coco(m)
    pts = planner.points
    inside_a = (pts[:, 0] >= 10) & (pts[:, 0] < 50) & (pts[:, 1] >= 10) & (pts[:, 1] < 50)
    inside_b = m[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    boxes = torch.tensor([[10, 10, 49, 49], [10, 10, 49, 49]])
    planner.add_kept([a, b], boxes, torch.tensor([0.95, 0.9]), np.stack([inside_a, inside_b]))
    nxt = planner.next_round()
    assert 0 < nxt.size <= 4  # CONFLICT_POINTS per pair
    assert inside_a[nxt].all() and not (set(nxt.tolist()) & set(first.tolist()))
    # the same pair is not settled twice: the next round fills uncovered area instead, far from prompts first
    fill = planner.next_round()
    assert 0 < fill.size <= 32 and not inside_a[fill].any()
    assert not (set(fill.tolist()) & (set(first.tolist()) | set(nxt.tolist())))
    while planner.next_round().size:  # until every lattice point is covered or prompted
        pass
    assert (planner.prompted | inside_a).all()


def test_planner_ignores_duplicates_and_respects_the_cap():
    planner = _planner(max_prompts=70)
    first = planner.first_round()
    assert first.size == 64  # on an 8 x 8 lattice the coarse grid is the whole lattice
    a = _square_rle(80, 80, 10, 10, 49, 49)
    b = _square_rle(80, 80, 10, 10, 49, 48)  # the same mask, one row less: IoU 0.975
    inside = np.ones((2, 64), dtype=bool)
    planner.add_kept([a, b], torch.tensor([[10, 10, 49, 49], [10, 10, 49, 48]]), torch.tensor([0.95, 0.9]), inside)
    assert planner.next_round().size == 0
    capped = _planner(n=16, max_prompts=40)
    assert capped.first_round().size == 40 and capped.prompted.sum() == 40


def test_planner_prompts_inside_kept_masks_once_everything_is_covered():
    """A mask covering the whole photo hides its parts: covered points are prompted until every other one is."""
    from sam_core.amg_fast import COVERED_SPACING, FILL_POINTS

    n = 32
    planner = _planner(n=n, h=160, w=160, max_prompts=n * n)
    first = planner.first_round()
    planner.add_kept(
        [_square_rle(160, 160, 0, 0, 159, 159)],
        torch.tensor([[0, 0, 159, 159]]),
        torch.tensor([0.95]),
        np.ones((1, n * n), dtype=bool),
    )
    rows, cols = np.divmod(np.arange(n * n), n)

    def steps(idx, to):  # Chebyshev distance in lattice steps from each of idx to the nearest of to
        return np.maximum(np.abs(rows[idx, None] - rows[None, to]), np.abs(cols[idx, None] - cols[None, to])).min(1)

    rounds = []
    while True:
        before = np.flatnonzero(planner.prompted)
        nxt = planner.next_round()
        if nxt.size == 0:
            break
        assert nxt.size <= FILL_POINTS
        assert (steps(nxt, before) >= COVERED_SPACING).all()  # away from earlier prompts
        assert all(steps(nxt[i : i + 1], np.delete(nxt, i)) >= COVERED_SPACING for i in range(nxt.size))  # and each other
        rounds.append(nxt)
    assert rounds, "a covered photo still gets prompts inside its masks"
    # it stops once every lattice point is prompted or next to a prompted one, well before the whole lattice
    rest = np.flatnonzero(~planner.prompted)
    assert (steps(rest, np.flatnonzero(planner.prompted)) < COVERED_SPACING).all()
    assert first.size < planner.prompted.sum() < n * n / 2
