"""Predictor behaviour: shapes, prompt validation, statelessness, transforms, imports.

Uses a tiny randomly initialised SAM (32-wide, 2-block ViT) so each encode
costs a fraction of a second; the numbers are meaningless but the code paths
are the real ones.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from sam_core.build import _heads
from sam_core.modeling.image_encoder import ImageEncoderViT
from sam_core.modeling.sam import Sam
from sam_core.predictor import Predictor, PromptError
from sam_core.types import Candidates, ImageEmbedding
from sam_core import transforms


def tiny_sam(model_type: str = "tiny", seed: int = 0) -> Sam:
    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        embed_dim=32,
        depth=2,
        num_heads=2,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=14,
        global_attn_indexes=(1,),
    )
    model = Sam(encoder, *_heads(), model_type=model_type).eval()
    with torch.no_grad():  # make positions matter (zero in a fresh model)
        for name, p in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_(0.0, 0.2)
    return model.requires_grad_(False)


class OverflowingEncoder(nn.Module):
    """Stands in for an encoder whose activations overflow in half precision (on ``items`` of a batch, or all)."""

    img_size = 1024

    def __init__(self, encoder, items=None):
        super().__init__()
        self.encoder = encoder
        self.items = items

    def forward(self, x):
        out = self.encoder(x)
        if not torch.is_autocast_enabled("cpu"):
            return out
        out = out.clone()
        for i in range(len(out)) if self.items is None else [i for i in self.items if i < len(out)]:
            out[i] = float("inf")
        return out


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(tiny_sam())


@pytest.fixture(scope="module")
def embeddings(predictor, photos):
    return {name: predictor.encode(img) for name, img in photos.items() if name in ("coffee", "chelsea")}


# -- encode ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, input_size",
    [((1, 1), (1024, 1024)), ((5, 3), (1024, 614)), ((3, 5), (614, 1024)), ((300, 451), (681, 1024))],
)
def test_encode_any_size(predictor, shape, input_size):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    emb = predictor.encode(image)
    assert isinstance(emb, ImageEmbedding)
    assert emb.features.shape == (1, 256, 64, 64) and emb.features.dtype == torch.float32
    assert emb.original_size == shape
    assert emb.input_size == input_size
    assert emb.model_type == "tiny" and emb.high_res_features == ()
    cands = predictor.decode(emb, points=[[0, 0]], labels=[1])
    assert cands.mask(0).shape == shape


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 1), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["gray", "rgba", "one-channel", "float", "empty", "list"],
)
def test_encode_rejects_wrong_images(predictor, bad):
    with pytest.raises(ValueError, match="image"):
        predictor.encode(bad)


def test_encode_matches_model_pipeline(predictor, photos, embeddings):
    """encode = resize (Pillow bilinear) + normalise + pad + encoder, nothing else."""
    image = photos["coffee"]
    model = predictor.model
    resized = transforms.resize_longest_side(image)
    x = (torch.from_numpy(resized).permute(2, 0, 1)[None].float() - model.pixel_mean) / model.pixel_std
    x = torch.nn.functional.pad(x, (0, 1024 - resized.shape[1], 0, 1024 - resized.shape[0]))
    with torch.no_grad():
        expected = model.image_encoder(x)
    torch.testing.assert_close(embeddings["coffee"].features, expected, atol=0, rtol=0)


def test_encoder_dtype_choices():
    from sam_core.predictor import _encoder_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _encoder_dtype("auto", cpu) is None
    assert _encoder_dtype("auto", cuda) == torch.float16
    assert _encoder_dtype("bf16", cuda) == torch.bfloat16
    assert _encoder_dtype(torch.float16, cpu) == torch.float16
    assert _encoder_dtype("fp32", cuda) is None
    with pytest.raises(ValueError, match="encoder_dtype"):
        Predictor(tiny_sam(), encoder_dtype="int8")


def test_half_precision_encoder_on_cpu_and_overflow_fallback(predictor, photos, embeddings):
    image = photos["coffee"]
    exact = embeddings["coffee"].features
    half = Predictor(predictor.model, encoder_dtype="bf16").encode(image).features
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    rel = float((half - exact).norm() / exact.norm())
    assert 0 < rel < 0.05  # really ran in bf16, and stayed close

    model = tiny_sam()
    model.image_encoder = OverflowingEncoder(model.image_encoder)
    emb = Predictor(model, encoder_dtype="fp16").encode(image)
    torch.testing.assert_close(emb.features, exact, atol=0, rtol=0)


def test_encode_batch_equals_encoding_each_image_alone(predictor, photos, embeddings):
    tiny = np.full((1, 1, 3), 200, np.uint8)
    images = [photos["coffee"], photos["chelsea"], tiny]
    batch = predictor.encode_batch(images)
    alone = [embeddings["coffee"], embeddings["chelsea"], predictor.encode(tiny)]
    assert len(batch) == 3
    storages = set()
    for got, want in zip(batch, alone):
        assert (got.original_size, got.input_size, got.model_type) == (want.original_size, want.input_size, "tiny")
        assert got.features.shape == (1, 256, 64, 64)
        assert got.features.is_contiguous(memory_format=torch.channels_last)
        # its own storage: keeping one embedding does not keep the whole batch alive
        assert got.features.untyped_storage().nbytes() == got.features.nbytes
        storages.add(got.features.untyped_storage().data_ptr())
        torch.testing.assert_close(got.features, want.features, atol=1e-5, rtol=1e-4)
        a, b = predictor.decode(got, points=[[2, 0]], labels=[1]), predictor.decode(want, points=[[2, 0]], labels=[1])
        np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-3)
    assert len(storages) == 3
    assert predictor.encode_batch([]) == []


def test_encode_batch_names_the_bad_image_and_encodes_nothing(predictor, photos):
    with pytest.raises(ValueError, match=r"image 1 of the batch: image must be uint8"):
        predictor.encode_batch([photos["coffee"], photos["coffee"].astype(np.float32)])


def test_encode_batch_redoes_only_the_overflowing_image_in_fp32(predictor, photos, embeddings):
    model = tiny_sam()
    model.image_encoder = OverflowingEncoder(model.image_encoder, items=[1])
    first, second = Predictor(model, encoder_dtype="bf16").encode_batch([photos["coffee"], photos["chelsea"]])
    torch.testing.assert_close(second.features, embeddings["chelsea"].features, atol=1e-5, rtol=1e-4)  # exact redo
    exact = embeddings["coffee"].features
    rel = float((first.features.float() - exact).norm() / exact.norm())
    assert 0 < rel < 0.05  # the first stayed in bf16


# -- decode ---------------------------------------------------------------------------------------


def test_decode_shapes_and_order(predictor, embeddings):
    emb = embeddings["coffee"]
    cands = predictor.decode(emb, points=np.array([[300.0, 200.0]]), labels=np.array([1]))
    assert isinstance(cands, Candidates)
    assert cands.scores.shape == (3,) and cands.scores.dtype == np.float32
    assert np.all(np.diff(cands.scores) <= 0), "scores must be sorted in descending order"
    assert cands.low_res_logits.shape == (3, 256, 256) and cands.low_res_logits.dtype == np.float32
    assert cands.original_size == (400, 600) and cands.input_size == (683, 1024)
    assert cands.mask(0).shape == (400, 600) and cands.mask(0).dtype == bool
    assert cands.masks().shape == (3, 400, 600)

    single = predictor.decode(emb, points=[[300.0, 200.0]], labels=[1], multimask=False)
    assert single.scores.shape == (1,) and single.low_res_logits.shape == (1, 256, 256)


def test_decode_candidates_are_the_models_outputs_sorted(predictor, embeddings):
    """The three candidates are the decoder's multimask outputs, sorted by predicted IoU."""
    emb = embeddings["chelsea"]
    model = predictor.model
    cands = predictor.decode(emb, points=[[200.0, 120.0], [20.0, 30.0]], labels=[1, 0])
    coords = torch.tensor(model.transform_coords(np.array([[200.0, 120.0], [20.0, 30.0]]), emb.original_size))
    with torch.inference_mode():
        logits, iou = model.predict_low_res(
            emb, coords.float()[None], torch.tensor([[1, 0]], dtype=torch.int32), None, None, True
        )
    order = np.argsort(-iou[0].numpy(), kind="stable")
    np.testing.assert_array_equal(cands.scores, iou[0].numpy()[order])
    np.testing.assert_array_equal(cands.low_res_logits, logits[0].numpy()[order])


def test_alternating_embeddings_equal_decoding_each_alone(photos):
    """No hidden per-image state: A, B, A, B gives what A alone and B alone give."""
    prompts = [
        dict(points=[[100.0, 120.0]], labels=[1]),
        dict(points=[[100.0, 120.0], [250.0, 40.0]], labels=[1, 0]),
        dict(box=[30.0, 40.0, 280.0, 260.0]),
    ]
    alone = {}
    for name in ("coffee", "chelsea"):
        fresh = Predictor(tiny_sam())
        emb = fresh.encode(photos[name])
        alone[name] = [fresh.decode(emb, **p) for p in prompts]

    shared = Predictor(tiny_sam())
    embs = {name: shared.encode(photos[name]) for name in ("coffee", "chelsea")}
    for k, prompt in enumerate(prompts):
        for name in ("coffee", "chelsea", "coffee"):
            got = shared.decode(embs[name], **prompt)
            np.testing.assert_array_equal(got.scores, alone[name][k].scores)
            np.testing.assert_array_equal(got.low_res_logits, alone[name][k].low_res_logits)
            np.testing.assert_array_equal(got.mask(0), alone[name][k].mask(0))


def test_mask_input_numpy_torch_and_batched_forms_agree(predictor, embeddings):
    emb = embeddings["coffee"]
    first = predictor.decode(emb, points=[[300.0, 200.0]], labels=[1])
    prev = first.low_res_logits[0]
    a = predictor.decode(emb, points=[[310.0, 210.0]], labels=[1], mask_input=prev)
    b = predictor.decode(emb, points=[[310.0, 210.0]], labels=[1], mask_input=torch.from_numpy(prev))
    c = predictor.decode(emb, points=[[310.0, 210.0]], labels=[1], mask_input=prev[None])
    without = predictor.decode(emb, points=[[310.0, 210.0]], labels=[1])
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    np.testing.assert_array_equal(a.low_res_logits, c.low_res_logits)
    assert not np.array_equal(a.low_res_logits, without.low_res_logits)
    only_mask = predictor.decode(emb, mask_input=prev)  # a mask alone is a valid prompt
    assert only_mask.scores.shape == (3,)


def test_points_outside_the_image_are_clamped(predictor, embeddings):
    emb = embeddings["coffee"]  # 400 x 600
    outside = predictor.decode(emb, points=[[-50.0, 1e6], [700.0, -3.0]], labels=[1, 0])
    clamped = predictor.decode(emb, points=[[0.0, 399.0], [599.0, 0.0]], labels=[1, 0])
    np.testing.assert_array_equal(outside.low_res_logits, clamped.low_res_logits)


def test_boxes_are_reordered_clamped_and_may_be_degenerate(predictor, embeddings):
    emb = embeddings["coffee"]
    ordered = predictor.decode(emb, box=[100.0, 50.0, 400.0, 300.0])
    inverted = predictor.decode(emb, box=[400.0, 300.0, 100.0, 50.0])
    np.testing.assert_array_equal(ordered.low_res_logits, inverted.low_res_logits)
    beyond = predictor.decode(emb, box=[-20.0, -5.0, 900.0, 1000.0])
    edges = predictor.decode(emb, box=np.array([[0.0, 0.0, 600.0, 400.0]]))
    np.testing.assert_array_equal(beyond.low_res_logits, edges.low_res_logits)
    point_box = predictor.decode(emb, box=[200.0, 100.0, 200.0, 100.0])
    assert np.isfinite(point_box.low_res_logits).all()


def test_labels_may_be_bool_or_float_zero_one(predictor, embeddings):
    emb = embeddings["coffee"]
    ints = predictor.decode(emb, points=[[10.0, 20.0], [30.0, 40.0]], labels=np.array([1, 0]))
    bools = predictor.decode(emb, points=[[10.0, 20.0], [30.0, 40.0]], labels=np.array([True, False]))
    floats = predictor.decode(emb, points=[[10.0, 20.0], [30.0, 40.0]], labels=[1.0, 0.0])
    np.testing.assert_array_equal(ints.low_res_logits, bools.low_res_logits)
    np.testing.assert_array_equal(ints.low_res_logits, floats.low_res_logits)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "empty prompt"),
        (dict(points=np.zeros((0, 2)), labels=np.zeros(0)), "empty prompt"),
        (dict(points=[[np.nan, 3.0]], labels=[1]), "NaN or infinite"),
        (dict(points=[[1.0, np.inf]], labels=[1]), "NaN or infinite"),
        (dict(box=[0.0, 0.0, np.nan, 5.0]), "NaN or infinite"),
        (dict(box=[0.0, -np.inf, 4.0, 5.0]), "NaN or infinite"),
        (dict(mask_input=np.full((256, 256), np.nan, np.float32)), "NaN or infinite"),
        (dict(points=[[1.0, 2.0]]), "need labels"),
        (dict(points=[[1.0, 2.0]], labels=[1, 0]), r"shape \(1,\)"),
        (dict(points=[[1.0, 2.0]], labels=[[1]]), r"shape \(1,\)"),
        (dict(points=[[1.0, 2.0]], labels=[2]), "0 \\(background\\) or 1"),
        (dict(points=[[1.0, 2.0]], labels=[-1]), "0 \\(background\\) or 1"),
        (dict(points=[1.0, 2.0], labels=[1]), r"\(N, 2\)"),
        (dict(points=[[1.0, 2.0, 3.0]], labels=[1]), r"\(N, 2\)"),
        (dict(labels=[1]), "without points"),
        (dict(box=[1.0, 2.0, 3.0]), r"shape \(4,\)"),
        (dict(mask_input=np.zeros((64, 64), np.float32)), r"\(256, 256\)"),
        (dict(points=[["a", "b"]], labels=[1]), "numeric"),
    ],
)
def test_invalid_prompts_raise_prompt_error(predictor, embeddings, kwargs, message):
    with pytest.raises(PromptError, match=message):
        predictor.decode(embeddings["coffee"], **kwargs)


def test_prompt_error_is_a_value_error():
    assert issubclass(PromptError, ValueError)


def test_embedding_from_another_model_type_is_rejected(predictor, embeddings):
    emb = embeddings["coffee"]
    other = ImageEmbedding(emb.features, emb.original_size, emb.input_size, model_type="vit_b")
    with pytest.raises(ValueError, match="vit_b"):
        predictor.decode(other, points=[[1.0, 1.0]], labels=[1])


def test_dense_positional_encoding_is_cached_and_follows_the_weights():
    model = tiny_sam()
    pe_layer = model.prompt_encoder
    first = pe_layer.get_dense_pe()
    assert first.shape == (1, 256, 64, 64)
    assert pe_layer.get_dense_pe() is first  # cached, not recomputed per click
    # loading other weights (as load_checkpoint does) invalidates the cache
    state = model.state_dict()
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    model.load_state_dict(state)
    second = pe_layer.get_dense_pe()
    assert second is not first and not torch.equal(second, first)
    torch.testing.assert_close(second, pe_layer.pe_layer((64, 64)).unsqueeze(0), atol=0, rtol=0)


# -- transforms -----------------------------------------------------------------------------------


def test_transforms_match_reference_resize_longest_side(photos):
    from refimpl import segment_anything

    ResizeLongestSide = segment_anything().utils.transforms.ResizeLongestSide
    ref = ResizeLongestSide(1024)
    rng = np.random.default_rng(3)
    images = [photos["coffee"], photos["chelsea"], rng.integers(0, 256, (7, 3, 3), dtype=np.uint8)]
    images.append(rng.integers(0, 256, (333, 1001, 3), dtype=np.uint8))
    for image in images:
        H, W = image.shape[:2]
        np.testing.assert_array_equal(transforms.resize_longest_side(image), ref.apply_image(image))
        assert transforms.preprocess_shape(H, W) == ref.get_preprocess_shape(H, W, 1024)
        pts = rng.uniform(0, max(H, W), (6, 2))
        np.testing.assert_array_equal(transforms.apply_coords(pts, (H, W)), ref.apply_coords(pts, (H, W)))
        boxes = rng.uniform(0, max(H, W), (2, 4))
        np.testing.assert_array_equal(transforms.apply_boxes(boxes, (H, W)), ref.apply_boxes(boxes, (H, W)))
    for H, W in [(1, 1), (4000, 3000), (3000, 4000), (1023, 1025), (20000, 15000), (15, 2049)]:
        assert transforms.preprocess_shape(H, W) == ref.get_preprocess_shape(H, W, 1024)


def test_preprocess_of_a_large_photo_makes_no_full_size_copies(predictor):
    """A 12 MP photo: Python-side allocations stay below the photo's own size.

    (A float32 copy at full resolution would be 4x the photo, float64 8x.)
    """
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[::7, ::5] = 200
    tracemalloc.start()
    try:
        x, input_size = predictor.model.preprocess(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert input_size == (768, 1024) and x.shape == (1, 3, 1024, 1024)
    assert peak < image.nbytes / 2


# -- imports --------------------------------------------------------------------------------------


def test_sam_core_imports_no_gui_or_torchvision():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import sam_core
        from sam_core import Predictor, load_model, build_model, MODEL_TYPES, PromptError, CheckpointError
        from sam_core import detect_model_type, resolve_device, SamModel, load_checkpoint
        from sam_core.build import _heads
        from sam_core.modeling.image_encoder import ImageEncoderViT
        from sam_core.modeling.sam import Sam
        model = Sam(ImageEncoderViT(embed_dim=16, depth=1, num_heads=1), *_heads(), model_type="tiny").eval()
        p = Predictor(model)
        emb = p.encode(np.zeros((20, 30, 3), np.uint8))
        p.decode(emb, points=[[3.0, 4.0]], labels=[1]).mask(0)
        build_model("vit_h", device="meta")
        banned = ("PySide6", "shiboken6", "torchvision", "timm", "annotator")
        bad = sorted(m for m in sys.modules if m.split(".")[0] in banned)
        print("BAD", bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout


@pytest.mark.weights
def test_load_model_default_checkpoint_imports_no_gui(mobilesam_checkpoint):
    """load_model("vit_t") with the default checkpoint location, in a clean interpreter."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from sam_core import load_model, Predictor
        model = load_model("vit_t", device="cpu")
        assert model.model_type == "vit_t" and not model.training
        assert not any(p.requires_grad for p in model.parameters())
        p = Predictor(model)
        emb = p.encode(np.zeros((8, 8, 3), np.uint8))
        p.decode(emb, box=[1, 1, 5, 5]).mask(0)
        banned = ("PySide6", "shiboken6", "torchvision", "timm", "annotator")
        bad = sorted(m for m in sys.modules if m.split(".")[0] in banned)
        print("BAD", bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout
