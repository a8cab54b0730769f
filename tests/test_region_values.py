"""Region embeddings without trained weights: clipping, ``covers``, the geometry of
:class:`~sam_core.types.Candidates` of a region, prompt translation in ``decode``
(SAM 1 and SAM 2.1 heads with random weights) and region cache keys.

The masks of real photos are checked in ``test_region_weights.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from sam_core import Predictor, PromptError, PromptOutsideRegion, build_model, clip_region
from sam_core.cache import EmbeddingCache, image_digest
from sam_core.types import MAX_GRID_SIDE, OUTSIDE_LOGIT, Candidates, ImageEmbedding

# --------------------------------------------------------------------------- clip_region


def test_clip_region_whole_image_and_none_give_none():
    assert clip_region(None, (300, 400)) is None
    assert clip_region((0, 0, 400, 300), (300, 400)) is None
    assert clip_region((-50, -1.5, 1e6, 300.2), (300, 400)) is None  # clipped to the whole image


def test_clip_region_rounds_outward_orders_corners_and_clips():
    assert clip_region((10.7, 20.2, 100.1, 50.9), (300, 400)) == (10, 20, 101, 51)
    assert clip_region((100, 50, 10, 20), (300, 400)) == (10, 20, 100, 50)
    assert clip_region((-30, 250, 120, 900), (300, 400)) == (0, 250, 120, 300)
    assert clip_region(np.array([1, 2, 3, 4]), (300, 400)) == (1, 2, 3, 4)
    assert all(type(v) is int for v in clip_region((1.5, 2, 3, 4), (300, 400)))


@pytest.mark.parametrize(
    "region, match",
    [
        ((0, 0, 10), "4 finite numbers"),
        ((0, 0, 10, float("nan")), "4 finite numbers"),
        ("abcd", "4 numbers"),
        ((500, 0, 600, 10), "does not overlap"),
        ((5, 5, 5, 50), "does not overlap"),
        ((-20, -20, -1, -1), "does not overlap"),
    ],
)
def test_clip_region_refuses_bad_regions(region, match):
    with pytest.raises(ValueError, match=match):
        clip_region(region, (300, 400))


# --------------------------------------------------------------------------- ImageEmbedding


def region_embedding(region=(100, 50, 300, 200), image_size=(300, 400), seed=0, **kw) -> ImageEmbedding:
    """A region embedding of random features (a whole-image one with ``region=None, image_size=None``)."""
    x0, y0, x1, y1 = region if region is not None else (0, 0, 400, 300)
    g = torch.Generator().manual_seed(seed)
    defaults = dict(
        features=torch.randn(1, 256, 64, 64, generator=g),
        original_size=(y1 - y0, x1 - x0),
        input_size=(768, 1024),
        model_type="vit_t",
        region=region,
        image_size=image_size,
    )
    defaults.update(kw)
    return ImageEmbedding(**defaults)


def test_region_embedding_is_checked_and_survives_to():
    emb = region_embedding()
    assert emb.full_size == (300, 400) and emb.original_size == (150, 200)
    moved = emb.to("cpu", torch.float16)
    assert moved.region == emb.region and moved.image_size == emb.image_size and moved.features.dtype == torch.float16
    with pytest.raises(ValueError, match="both region and image_size"):
        region_embedding(image_size=None)
    with pytest.raises(ValueError, match="original_size"):
        region_embedding(original_size=(150, 201))
    with pytest.raises(ValueError, match="not inside"):
        region_embedding(region=(300, 50, 500, 200))
    plain = dataclasses.replace(emb, region=None, image_size=None, original_size=(300, 400))
    assert plain.full_size == (300, 400)


def test_covers():
    emb = region_embedding(region=(100, 50, 300, 200), image_size=(300, 400))
    plain = region_embedding(region=None, image_size=None, original_size=(300, 400))
    assert plain.covers([[-5, 900]], [0, 0, 1e4, 1e4])  # the whole image covers anything
    assert emb.covers() and emb.covers([[100, 50], [299.9, 199.9]])
    assert not emb.covers([[150, 100], [300, 100]])  # x1 is outside (half-open)
    assert not emb.covers([[99.9, 100]])
    assert emb.covers(box=[100, 50, 300, 200]) and emb.covers(box=[300, 200, 120, 60])  # corners in any order
    assert not emb.covers(box=[100, 50, 300.5, 200])
    assert not emb.covers([[150, 100]], box=[0, 0, 200, 100])
    assert not emb.covers([[float("nan"), 100]]) and not emb.covers(box="x")
    # points beyond the image are clamped onto it first, as decode does
    edge = region_embedding(region=(300, 200, 400, 300), image_size=(300, 400))
    assert edge.covers([[450, 350]]) and edge.covers(box=[350, 250, 500, 500])
    assert edge.covers(torch.tensor([[350.0, 250.0]]))


# --------------------------------------------------------------------------- Candidates of a region


def linear_field(a, b, c):
    """f(x, y) = a x + b y + c over full-image pixels: bilinear resampling of it is exact."""
    return lambda x, y: a * x + b * y + c


def frame_logits(f, region, input_size, full=(300, 400)) -> np.ndarray:
    """(1, 256, 256) logits of ``f`` sampled at the cell centres of a decode frame."""
    H, W = full
    x0, y0, x1, y1 = region if region is not None else (0, 0, W, H)
    centres = np.arange(256) + 0.5
    xs = x0 + centres * 4 * (x1 - x0) / input_size[1]
    ys = y0 + centres * 4 * (y1 - y0) / input_size[0]
    return f(xs[None, :], ys[:, None]).astype(np.float32)[None]


def test_region_mask_is_the_crop_mask_placed_in_the_full_image():
    logits = np.random.default_rng(0).normal(size=(3, 256, 256)).astype(np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    plain = Candidates(scores, logits, (150, 200), (768, 1024))
    region = Candidates(scores, logits, (300, 400), (768, 1024), region=(100, 50, 300, 200))
    for i in range(3):
        m = region.mask(i)
        assert m.shape == (300, 400) and m.dtype == bool
        np.testing.assert_array_equal(m[50:200, 100:300], plain.mask(i))
        m2 = m.copy()
        m2[50:200, 100:300] = False
        assert not m2.any()
    assert region.region_size == (150, 200) and plain.region_size == (150, 200)


def test_sam2_region_mask_keeps_its_one_step_upsampling():
    from sam_core.sam2 import Sam2Candidates

    logits = np.random.default_rng(1).normal(size=(1, 256, 256)).astype(np.float32)
    plain = Sam2Candidates(np.ones(1, np.float32), logits, (97, 203), (1024, 1024))
    region = Sam2Candidates(np.ones(1, np.float32), logits, (300, 400), (1024, 1024), region=(150, 3, 353, 100))
    full = region.mask(0)
    np.testing.assert_array_equal(full[3:100, 150:353], plain.mask(0))
    assert full.sum() == plain.mask(0).sum()


def test_region_equal_to_the_image_reproduces_the_plain_candidates():
    logits = np.random.default_rng(2).normal(size=(3, 256, 256)).astype(np.float32) * 4
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    plain = Candidates(scores, logits, (300, 400), (768, 1024))
    same = Candidates(scores, logits, (300, 400), (768, 1024), region=(0, 0, 400, 300))
    np.testing.assert_array_equal(same.masks(), plain.masks())
    assert same.valid_low_res_logits.shape == plain.valid_low_res_logits.shape == (3, 192, 256)
    np.testing.assert_allclose(same.valid_low_res_logits, plain.valid_low_res_logits, atol=1e-4)
    for size in [(300, 400), (123, 77), (1000, 1500)]:
        a, b = same.previews(size), plain.previews(size)
        assert a.shape == b.shape == (3, *size)
        assert (a != b).mean() < 1e-3  # float rounding of the resampling positions only


def test_region_previews_and_grid_follow_the_region():
    f = linear_field(0.05, -0.03, -4.0123)  # no preview pixel centre exactly on the zero line
    region = (100, 48, 300, 198)  # 200 x 150 -> input (768, 1024): exactly 192 x 256 valid cells
    logits = frame_logits(f, region, (768, 1024))
    c = Candidates(np.ones(1, np.float32), logits, (300, 400), (768, 1024), region=region)
    # the grid over the full image keeps the region's cell size: 200 px -> 256 cells, so 400 px -> 512
    grid = c.valid_low_res_logits
    assert grid.shape == (1, 384, 512)
    H, W = 300, 400
    cx = (np.arange(512) + 0.5) * W / 512
    cy = (np.arange(384) + 0.5) * H / 384
    inside_x = (cx >= 100) & (cx < 300)
    inside_y = (cy >= 48) & (cy < 198)
    inner = np.ix_(inside_y, inside_x)
    expected = f(cx[None, :], cy[:, None])
    # exact (a linear field) away from the region's edge cells, where the edge value repeats
    core = np.ix_(inside_y & (cy > 50) & (cy < 196), inside_x & (cx > 102) & (cx < 298))
    np.testing.assert_allclose(grid[0][core], expected[core], atol=1e-3)
    assert np.isfinite(grid[0][inner]).all()
    outside = np.ones((384, 512), bool)
    outside[inner] = False
    assert (grid[0][outside] == OUTSIDE_LOGIT).all()
    # previews: below the threshold outside the region, the thresholded field inside
    p = c.preview(0, (150, 200))
    assert p.shape == (150, 200)
    px = (np.arange(200) + 0.5) * 2
    py = (np.arange(150) + 0.5) * 2
    want = f(px[None, :], py[:, None]) > 0
    want &= ((px >= 100) & (px < 300))[None, :] & ((py >= 48) & (py < 198))[:, None]
    assert (p != want).sum() <= 2  # pixels on the zero line may round either way
    # the mask agrees with its previews
    m = c.mask(0)
    assert (m[::2, ::2] != p).mean() < 0.01


def test_region_grid_is_capped():
    logits = np.zeros((3, 256, 256), np.float32)
    c = Candidates(np.ones(3, np.float32), logits, (15000, 20000), (1024, 1024), region=(5000, 5000, 6024, 6024))
    grid = c.valid_low_res_logits
    assert max(grid.shape[1:]) == MAX_GRID_SIDE and grid.shape[1:] == (768, 1024)
    assert grid is c.valid_low_res_logits  # computed once


@pytest.mark.parametrize(
    "src_region, src_input, dst_region, dst_input",
    [
        ((100, 48, 300, 198), (768, 1024), None, (768, 1024)),  # region -> whole image (SAM 1 frames)
        (None, (768, 1024), (100, 48, 300, 198), (768, 1024)),  # whole image -> region
        ((100, 48, 300, 198), (768, 1024), (0, 150, 280, 300), (549, 1024)),  # region -> another region
        ((120, 0, 400, 300), (1024, 1024), (0, 0, 200, 300), (1024, 1024)),  # SAM 2's stretched frames
    ],
)
def test_logits_for_reprojects_through_full_image_pixels(src_region, src_input, dst_region, dst_input):
    f = linear_field(0.05, -0.03, -4.0)
    src = Candidates(np.ones(1, np.float32), frame_logits(f, src_region, src_input), (300, 400), src_input,
                     model_type="vit_t", region=src_region)
    dst_size = (300, 400) if dst_region is None else (dst_region[3] - dst_region[1], dst_region[2] - dst_region[0])
    dst = region_embedding(dst_region, (300, 400) if dst_region else None, original_size=dst_size, input_size=dst_input)
    out = src.logits_for(0, dst)
    assert out.shape == (256, 256) and out.dtype == np.float32
    want = frame_logits(f, dst_region, dst_input)[0]
    # which destination cells lie in the source's region (and in the destination's valid frame)
    H, W = 300, 400
    sx0, sy0, sx1, sy1 = src_region or (0, 0, W, H)
    dx0, dy0, dx1, dy1 = dst_region or (0, 0, W, H)
    centres = np.arange(256) + 0.5
    xs = dx0 + centres * 4 * (dx1 - dx0) / dst_input[1]
    ys = dy0 + centres * 4 * (dy1 - dy0) / dst_input[0]
    inx = (xs >= max(sx0, dx0)) & (xs < min(sx1, dx1))
    iny = (ys >= max(sy0, dy0)) & (ys < min(sy1, dy1))
    # away from the source's edge cells the field is reproduced exactly
    sx_cell = (sx1 - sx0) * 4 / src_input[1]
    sy_cell = (sy1 - sy0) * 4 / src_input[0]
    corex = inx & (xs > sx0 + sx_cell) & (xs < sx1 - sx_cell)
    corey = iny & (ys > sy0 + sy_cell) & (ys < sy1 - sy_cell)
    assert corex.sum() > 20 and corey.sum() > 20
    np.testing.assert_allclose(out[np.ix_(corey, corex)], want[np.ix_(corey, corex)], atol=1e-3)
    outside = np.ones((256, 256), bool)
    outside[np.ix_(iny, inx)] = False
    assert (out[outside] == OUTSIDE_LOGIT).all()


def test_logits_for_its_own_embedding_is_the_logits_and_other_images_are_refused():
    logits = np.random.default_rng(3).normal(size=(2, 256, 256)).astype(np.float32)
    emb = region_embedding()
    c = Candidates(np.ones(2, np.float32), logits, (300, 400), (768, 1024), model_type="vit_t", region=emb.region)
    assert c.logits_for(1, emb) is not None and np.shares_memory(c.logits_for(1, emb), logits)
    np.testing.assert_array_equal(c.logits_for(1, emb), logits[1])
    with pytest.raises(ValueError, match="image"):
        c.logits_for(0, region_embedding(image_size=(301, 400)))
    with pytest.raises(ValueError, match="model"):
        c.logits_for(0, region_embedding(model_type="vit_b"))


# --------------------------------------------------------------------------- decode with random weights


@pytest.fixture(scope="module")
def sam1():
    torch.manual_seed(0)
    return build_model("vit_t")


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_t")


def crop_pair(model_type: str, region=(120, 40, 420, 240), full=(300, 500)):
    """A region embedding and the same features as a plain embedding of the crop."""
    x0, y0, x1, y1 = region
    g = torch.Generator().manual_seed(5)
    hr = ()
    if model_type.startswith("sam2"):
        hr = (torch.randn(1, 32, 256, 256, generator=g), torch.randn(1, 64, 128, 128, generator=g))
        input_size = (1024, 1024)
    else:
        input_size = (683, 1024)
    crop = ImageEmbedding(torch.randn(1, 256, 64, 64, generator=g), (y1 - y0, x1 - x0), input_size, model_type, hr)
    return dataclasses.replace(crop, region=region, image_size=full), crop


@pytest.mark.parametrize("which", ["sam1", "sam2"])
def test_decode_translates_full_image_prompts_into_the_region(which, request):
    model = request.getfixturevalue(which)
    predictor = Predictor(model)
    emb, crop = crop_pair(model.model_type)
    x0, y0 = emb.region[:2]
    prompts = [
        dict(points=[[200.5, 100.25], [400, 230]], labels=[1, 0]),
        dict(box=[150, 60, 380, 220]),
        dict(points=[[300, 150]], labels=[1], box=[130, 50, 419, 239]),
    ]
    for prompt in prompts:
        got = predictor.decode(emb, **prompt)
        shifted = dict(prompt)
        if "points" in prompt:
            shifted["points"] = np.asarray(prompt["points"], float) - [x0, y0]
        if "box" in prompt:
            shifted["box"] = np.asarray(prompt["box"], float) - [x0, y0, x0, y0]
        want = predictor.decode(crop, **shifted)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
        assert got.original_size == (300, 500) and got.region == emb.region
        assert type(got) is type(want)
        full = got.mask(0)
        assert full.shape == (300, 500)
        np.testing.assert_array_equal(full[40:240, 120:420], want.mask(0))
        assert full.sum() == want.mask(0).sum()
    # mask_input in the region's frame goes through as is
    again = predictor.decode(emb, points=[[200, 100]], labels=[1], mask_input=got.low_res_logits[0])
    want = predictor.decode(crop, points=[[80, 60]], labels=[1], mask_input=want.low_res_logits[0])
    np.testing.assert_array_equal(again.low_res_logits, want.low_res_logits)


def test_decode_refuses_prompts_outside_the_region(sam1):
    predictor = Predictor(sam1)
    emb, _ = crop_pair("vit_t")
    for prompt in (dict(points=[[200, 100], [119, 100]], labels=[1, 0]), dict(box=[100, 60, 300, 200])):
        assert not emb.covers(prompt.get("points"), prompt.get("box"))
        with pytest.raises(PromptOutsideRegion, match="whole-image embedding") as info:
            predictor.decode(emb, **prompt)
        assert isinstance(info.value, PromptError)
        assert info.value.region == (120, 40, 420, 240) and info.value.image_size == (300, 500)
    # invalid prompts are still reported as such, not as outside the region
    with pytest.raises(PromptError, match="NaN") as info:
        predictor.decode(emb, points=[[float("nan"), 1]], labels=[1])
    assert not isinstance(info.value, PromptOutsideRegion)


def test_encode_batch_checks_regions_before_encoding(sam1):
    predictor = Predictor(sam1)
    image = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="2 regions for 1 images"):
        predictor.encode_batch([image], [None, None])
    with pytest.raises(ValueError, match="image 1 of the batch: region .* does not overlap"):
        predictor.encode_batch([image, image], [None, (50, 0, 60, 10)])
    with pytest.raises(ValueError, match="4 finite numbers"):
        predictor.encode(image, region=(0, 0, 1))


@pytest.mark.slow
def test_sam2_encode_of_a_region_is_the_encode_of_the_crop(sam2):
    predictor = Predictor(sam2)
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    emb = predictor.encode(image, region=(50, 20, 250, 180))
    crop = predictor.encode(np.ascontiguousarray(image[20:180, 50:250]))
    assert emb.region == (50, 20, 250, 180) and emb.image_size == (200, 300) and emb.original_size == (160, 200)
    assert torch.equal(emb.features, crop.features)
    assert all(torch.equal(a, b) for a, b in zip(emb.high_res_features, crop.high_res_features))
    c = predictor.decode(emb, points=[[100, 100]], labels=[1])
    assert c.mask(0).shape == (200, 300) and not c.mask(0)[:20].any() and not c.mask(0)[:, 250:].any()


# --------------------------------------------------------------------------- cache keys


def test_region_cache_keys():
    cache = EmbeddingCache(None, model_type="vit_t", checkpoint_id="ckpt-a")
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    key = cache.key_for(image)
    assert EmbeddingCache.key_for_region(key, None) == key  # the whole-image key is unchanged
    # ... and still what it was before regions existed (blake2b of the prefix and the image digest)
    prefix = json.dumps(["sam-annotator-embedding", 1, "vit_t", "ckpt-a"])
    assert key == hashlib.blake2b((prefix + image_digest(image)).encode(), digest_size=16).hexdigest()

    regions = [(0, 0, 20, 20), (0, 0, 20, 21), (1, 0, 20, 20), (10, 5, 30, 25)]
    keys = [cache.key_for_region(key, r) for r in regions]
    assert len(set(keys + [key])) == len(regions) + 1
    assert cache.key_for_region(key, (10, 5, 30, 25)) == keys[3]  # deterministic
    assert cache.key_for_region(key, np.array([10, 5, 30, 25])) == keys[3]
    other = EmbeddingCache(None, model_type="vit_b", checkpoint_id="ckpt-a").key_for(image)
    assert cache.key_for_region(other, regions[0]) != keys[0]  # other model, other region key
    assert all(len(k) == len(key) and set(k) <= set("0123456789abcdef") for k in keys)
    with pytest.raises(ValueError, match="not a cache key"):
        cache.key_for_region("nope", regions[0])


def test_region_embeddings_in_the_memory_tier_keep_their_region():
    cache = EmbeddingCache(None, model_type="vit_t", checkpoint_id="ckpt-a")
    emb = region_embedding()
    key = cache.key_for_region("ab" * 16, emb.region)
    cache.put(key, emb)
    assert cache.get(key) is emb
    assert cache.get("ab" * 16) is None


def test_region_embeddings_survive_the_disk_tier(tmp_path):
    from sam_core.cache import round_to_storage

    emb = region_embedding()
    assert round_to_storage(emb).region == emb.region
    cache = EmbeddingCache(tmp_path, model_type="vit_t", checkpoint_id="ckpt-a")
    key = cache.key_for_region("ab" * 16, emb.region)
    assert cache.put(key, emb)
    cache.clear_memory()
    loaded = cache.get(key)
    assert loaded is not None and loaded.region == emb.region and loaded.image_size == emb.image_size
