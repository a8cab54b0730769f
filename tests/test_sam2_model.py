"""Unit tests of the SAM 2.1 image-mode engine that need no image encoding.

Decoding runs on synthetic embeddings (random features of the right shapes)
with an untrained Hiera-T model; structure checks use the meta device.
Parity with the official package is in ``test_sam2_parity.py``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_core.types import Candidates, CheckpointError, ImageEmbedding

SAM2_TYPES = ["sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"]


@pytest.fixture(scope="module")
def tiny():
    from sam_core import build_model

    torch.manual_seed(0)
    return build_model("sam2.1_hiera_t")


@pytest.fixture(scope="module")
def embedding(tiny):
    gen = torch.Generator().manual_seed(1)
    return ImageEmbedding(
        features=torch.randn(1, 256, 64, 64, generator=gen),
        original_size=(300, 451),
        input_size=(1024, 1024),
        model_type="sam2.1_hiera_t",
        high_res_features=(torch.randn(1, 32, 256, 256, generator=gen), torch.randn(1, 64, 128, 128, generator=gen)),
    )


def _meta_state_dict(model_type: str):
    from sam_core import build_model

    return build_model(model_type, device="meta").state_dict()


# --------------------------------------------------------------------------- registry and structure


def test_types_are_registered_and_detected():
    from sam_core import build_model, detect_model_type
    from sam_core.build import available_model_types
    from sam_core.sam2 import Sam2ImageModel

    assert set(SAM2_TYPES) <= set(available_model_types())
    for t in SAM2_TYPES:
        model = build_model(t, device="meta")
        assert isinstance(model, Sam2ImageModel) and model.model_type == t
        assert detect_model_type(model.state_dict()) == t
    assert detect_model_type(_meta_state_dict("vit_b")) == "vit_b"  # SAM 1 still told apart


@pytest.mark.parametrize(
    "model_type, widths, depth, globals_",
    [
        ("sam2.1_hiera_t", [96, 192, 384, 768], 12, (5, 7, 9)),
        ("sam2.1_hiera_b+", [112, 224, 448, 896], 24, (12, 16, 20)),
        ("sam2.1_hiera_l", [144, 288, 576, 1152], 48, (23, 33, 43)),
    ],
)
def test_trunk_layout(model_type, widths, depth, globals_):
    from sam_core import build_model

    trunk = build_model(model_type, device="meta").image_encoder.trunk
    assert len(trunk.blocks) == depth
    assert trunk.channel_list == widths[::-1]
    assert [i for i, b in enumerate(trunk.blocks) if b.window_size == 0] == list(globals_)
    pooled = [i for i, b in enumerate(trunk.blocks) if b.q_stride is not None]
    assert pooled == [end + 1 for end in trunk.stage_ends[:-1]]
    for i in pooled:  # a stage's first block still uses the previous stage's window
        assert trunk.blocks[i].window_size in (0, trunk.window_spec[trunk.stage_ends.index(i - 1)])


def test_importing_sam2_pulls_in_no_gui_torchvision_or_hydra():
    code = (
        "import sys, sam_core.sam2, sam_core.build; sam_core.build.build_model('sam2.1_hiera_t', device='meta');"
        "bad = [m for m in ('torchvision', 'hydra', 'omegaconf', 'iopath', 'PySide6', 'annotator')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- checkpoint loading


def _full_state_dict(model_type: str):
    """A meta state dict in the official layout: image-mode keys plus video-only ones."""
    sd = dict(_meta_state_dict(model_type))
    for k in ("memory_attention.layers.0.norm1.weight", "memory_encoder.out_proj.bias", "maskmem_tpos_enc",
              "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial", "mask_downsample.weight",
              "obj_ptr_proj.layers.0.weight", "obj_ptr_tpos_proj.weight"):
        sd[k] = torch.zeros(1, device="meta")
    return sd


def test_video_only_keys_are_set_aside():
    from sam_core import build_model
    from sam_core.sam2 import IGNORED_PREFIXES, load_sam2_state_dict

    full = {k: torch.zeros(v.shape) for k, v in _full_state_dict("sam2.1_hiera_t").items()}
    full["no_mem_embed"] = torch.full((1, 1, 256), 0.5)
    model = build_model("sam2.1_hiera_t")
    ignored = load_sam2_state_dict(model, {"model": full})
    assert len(ignored) == len(IGNORED_PREFIXES) == 9
    assert all(k.startswith(IGNORED_PREFIXES) for k in ignored)
    assert torch.equal(model.no_mem_embed, full["no_mem_embed"])
    assert not any(model.image_encoder.trunk.pos_embed.flatten())


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda sd: sd.pop("sam_mask_decoder.conv_s0.weight"), "missing keys: sam_mask_decoder.conv_s0.weight"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(1, device="meta")), "unexpected keys: extra.weight"),
        (lambda sd: sd.__setitem__("no_mem_embed", torch.zeros(1, 1, 64, device="meta")), "no_mem_embed (1, 1, 64)"),
    ],
)
def test_bad_state_dicts_fail_loudly(edit, expect):
    from sam_core import build_model
    from sam_core.sam2 import load_sam2_state_dict

    sd = _full_state_dict("sam2.1_hiera_t")
    edit(sd)
    with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_t") as info:
        load_sam2_state_dict(build_model("sam2.1_hiera_t", device="meta"), sd)
    assert expect in str(info.value)


def test_wrong_size_is_named():
    from sam_core import build_model
    from sam_core.sam2 import load_sam2_state_dict

    with pytest.raises(CheckpointError, match=r"looks like a sam2\.1_hiera_b\+ checkpoint") as info:
        load_sam2_state_dict(build_model("sam2.1_hiera_t", device="meta"), _full_state_dict("sam2.1_hiera_b+"))
    assert info.value.detected_type == "sam2.1_hiera_b+"


# --------------------------------------------------------------------------- transforms and candidates


def test_coordinates_stretch_each_axis_independently(tiny):
    out = tiny.transform_coords(np.array([[451.0, 300.0], [0.0, 150.0], [225.5, 0.0]]), (300, 451))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[1024, 1024], [0, 512], [512, 0]], dtype=np.float32))


def test_preprocess_stretches_to_the_model_input(tiny):
    img = np.zeros((30, 60, 3), np.uint8)
    img[:, :30] = 255  # left half white
    x, input_size = tiny.preprocess(img)
    assert x.shape == (1, 3, 1024, 1024) and input_size == (1024, 1024)
    white = (1 - tiny.pixel_mean[0, :, 0, 0]) / tiny.pixel_std[0, :, 0, 0]
    black = -tiny.pixel_mean[0, :, 0, 0] / tiny.pixel_std[0, :, 0, 0]
    torch.testing.assert_close(x[0, :, 500, 100], white)
    torch.testing.assert_close(x[0, :, 500, 900], black)
    with pytest.raises(ValueError, match="uint8"):
        tiny.preprocess(img.astype(np.float32))


def test_sam2_candidates_resample_in_one_step():
    from sam_core.sam2 import Sam2Candidates

    logits = np.random.default_rng(0).normal(size=(2, 256, 256)).astype(np.float32)
    c = Sam2Candidates(np.array([0.9, 0.5], np.float32), logits, (97, 203), (1024, 1024))
    ref = F.interpolate(torch.from_numpy(logits)[None], (97, 203), mode="bilinear", align_corners=False)[0] > 0
    np.testing.assert_array_equal(c.masks(), ref.numpy())
    # SAM 1's two-step postprocessing gives a different mask on noisy logits
    sam1 = Candidates(c.scores, logits, (97, 203), (1024, 1024))
    assert (sam1.mask(0) != c.mask(0)).any()
    preview = F.interpolate(torch.from_numpy(logits)[None], (40, 80), mode="bilinear", align_corners=False)[0, 1] > 0
    np.testing.assert_array_equal(c.preview(1, (40, 80)), preview.numpy())


# --------------------------------------------------------------------------- decoding


def test_dynamic_multimask_falls_back_only_when_unstable(tiny):
    dec = tiny.sam_mask_decoder
    stable = torch.full((1, 1, 8, 8), -5.0)
    stable[..., :4, :] = 5.0  # crisp: stability 1
    unstable = torch.full((1, 1, 8, 8), -5.0)
    unstable[..., :4, :] = 0.01  # between -delta and +delta: stability 0
    multi = torch.stack([torch.full((8, 8), float(i)) for i in (1, 2, 3)])[None]
    iou = torch.tensor([[0.1, 0.3, 0.9, 0.2]])
    calls = []

    def token_masks(tokens):  # the decoder computes a multimask candidate only when asked
        calls.append(tokens.tolist())
        return multi[:, tokens - 1]

    masks, scores = dec._dynamic_multimask(stable, iou, token_masks)
    assert torch.equal(masks, stable) and scores.item() == pytest.approx(0.1) and calls == []
    masks, scores = dec._dynamic_multimask(unstable, iou, token_masks)
    assert torch.equal(masks, multi[:, 1:2]) and scores.item() == pytest.approx(0.9)  # best multimask
    assert calls == [[2]]
    assert dec.stability_scores(stable).item() == 1.0 and dec.stability_scores(unstable).item() == 0.0


def test_predict_low_res_shapes_and_token_order(tiny, embedding):
    coords = torch.tensor([[[500.0, 400.0]]])
    labels = torch.tensor([[1]], dtype=torch.int32)
    with torch.inference_mode():
        multi, iou3 = tiny.predict_low_res(embedding, coords, labels, None, None, True)
        single, iou1 = tiny.predict_low_res(embedding, coords, labels, None, None, False)
    assert multi.shape == (1, 3, 256, 256) and iou3.shape == (1, 3)
    assert single.shape == (1, 1, 256, 256) and iou1.shape == (1, 1)
    assert multi.dtype == iou3.dtype == torch.float32
    assert ((iou3 > 0) & (iou3 < 1)).all()  # the IoU head ends in a sigmoid


def test_box_is_two_labelled_corners_before_the_clicks(tiny, embedding):
    box = torch.tensor([[100.0, 200.0, 700.0, 900.0]])
    click = torch.tensor([[[400.0, 500.0]]])
    with torch.inference_mode():
        got = tiny.predict_low_res(embedding, click, torch.tensor([[0]], dtype=torch.int32), box, None, True)
        coords = torch.tensor([[[100.0, 200.0], [700.0, 900.0], [400.0, 500.0]]])
        labels = torch.tensor([[2, 3, 0]], dtype=torch.int32)
        want = tiny.decode_prompts(embedding.features, embedding.high_res_features, coords, labels, None, True)
        other = tiny.decode_prompts(
            embedding.features, embedding.high_res_features, coords[:, [2, 0, 1]], labels[:, [2, 0, 1]], None, True
        )
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(got[0], other[0])  # order matters, so the check above means something


def test_mask_input_is_clamped_like_the_official_logits(tiny, embedding):
    gen = torch.Generator().manual_seed(3)
    mask = 100 * torch.randn(1, 1, 256, 256, generator=gen)
    with torch.inference_mode():
        raw = tiny.predict_low_res(embedding, None, None, None, mask, True)
        clamped = tiny.predict_low_res(embedding, None, None, None, mask.clamp(-32, 32), True)
        unclamped = tiny.decode_prompts(embedding.features, embedding.high_res_features, None, None, mask, True)
    torch.testing.assert_close(raw, clamped, rtol=0, atol=0)
    assert not torch.allclose(raw[0], unclamped[0])


def test_low_precision_embeddings_decode_in_float32(tiny, embedding):
    half = embedding.to("cpu", torch.bfloat16)
    rounded = half.to("cpu", torch.float32)  # the same values, held in float32
    coords = torch.tensor([[[500.0, 400.0]]])
    labels = torch.tensor([[1]], dtype=torch.int32)
    with torch.inference_mode():
        a, ia = tiny.predict_low_res(half, coords, labels, None, None, True)
        b, ib = tiny.predict_low_res(rounded, coords, labels, None, None, True)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ia, ib)


def test_a_batch_of_prompts_decodes_like_each_alone(tiny, embedding):
    """Automatic mask generation decodes many single-point prompts against one embedding."""
    coords = torch.tensor([[[100.0, 200.0]], [[700.0, 300.0]], [[512.0, 900.0]]])
    labels = torch.ones((3, 1), dtype=torch.int32)
    with torch.inference_mode():
        batch, iou = tiny.predict_low_res(embedding, coords, labels, None, None, True)
        for i in range(3):
            one, one_iou = tiny.predict_low_res(embedding, coords[i : i + 1], labels[i : i + 1], None, None, True)
            torch.testing.assert_close(batch[i : i + 1], one, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou[i : i + 1], one_iou, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_encode_batch_splits_the_high_resolution_features_per_image(tiny):
    from sam_core import Predictor

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (120, 90, 3), np.uint8), rng.integers(0, 256, (64, 200, 3), np.uint8)]
    pred = Predictor(tiny)
    batch = pred.encode_batch(images)
    for got, image in zip(batch, images):
        want = pred.encode(image)
        assert got.original_size == image.shape[:2] and got.input_size == (1024, 1024)
        assert [t.shape for t in got.high_res_features] == [(1, 32, 256, 256), (1, 64, 128, 128)]
        for a, b in zip((got.features, *got.high_res_features), (want.features, *want.high_res_features)):
            assert a.untyped_storage().nbytes() == a.nbytes
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- fast paths


def test_trunk_inference_path_matches_the_plain_arithmetic():
    """Fused oneDNN linears, one-pass window merges and the cached position embedding change no result."""
    from sam_core import build_model

    torch.manual_seed(5)
    trunk = build_model("sam2.1_hiera_t").image_encoder.trunk
    with torch.no_grad():  # untrained tables are zeros: make the position embedding matter
        trunk.pos_embed.normal_()
        trunk.pos_embed_window.normal_()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(6))  # windows padded in stages 3-4

    def plain():
        with torch.enable_grad():  # autograd: F.linear, unfused, nothing cached
            return [t.detach() for t in trunk(x)]

    want = plain()
    with torch.inference_mode():
        got = trunk(x)
        again = trunk(x)  # from the cached position embedding
    for a, b, c in zip(got, again, want):
        torch.testing.assert_close(a, c, atol=2e-4, rtol=1e-4)
        assert torch.equal(a, b)
    with torch.no_grad():  # a weight load after the cache was filled
        trunk.pos_embed.mul_(-1.0)
    want = plain()
    with torch.inference_mode():
        got = trunk(x)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, atol=2e-4, rtol=1e-4)


def test_window_unpartition_add_is_shortcut_plus_unpartition():
    from sam_core.sam2.hiera import window_partition, window_unpartition, window_unpartition_add

    gen = torch.Generator().manual_seed(7)
    for hw, window in (((16, 24), 8), ((14, 9), 4)):  # without and with padding
        shortcut = torch.randn(2, *hw, 5, generator=gen)
        windows, padded = window_partition(torch.randn(2, *hw, 5, generator=gen), window)
        want = shortcut + window_unpartition(windows, window, padded, hw)
        assert torch.equal(window_unpartition_add(shortcut, windows, window, padded), want)


def test_decoding_does_not_depend_on_the_feature_layout(tiny, embedding):
    """The encoder hands out channels-last features (fast path); a contiguous copy (e.g. from disk) decodes the same."""
    cl = ImageEmbedding(
        features=embedding.features.contiguous(memory_format=torch.channels_last),
        original_size=embedding.original_size,
        input_size=embedding.input_size,
        model_type=embedding.model_type,
        high_res_features=tuple(t.contiguous(memory_format=torch.channels_last) for t in embedding.high_res_features),
    )
    coords = torch.tensor([[[500.0, 400.0], [100.0, 900.0]]])
    labels = torch.tensor([[1, 0]], dtype=torch.int32)
    with torch.inference_mode():
        for multimask in (True, False):
            a = tiny.predict_low_res(embedding, coords, labels, None, None, multimask)
            b = tiny.predict_low_res(cl, coords, labels, None, None, multimask)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dense_position_encoding_is_cached_until_the_checkpoint_changes():
    from sam_core import build_model

    enc = build_model("sam2.1_hiera_t").sam_prompt_encoder
    plain = enc.get_dense_pe()  # outside inference mode: computed every time
    with torch.inference_mode():
        first, second = enc.get_dense_pe(), enc.get_dense_pe()
    assert second is first and torch.equal(first, plain)
    with torch.no_grad():  # a checkpoint load writes the Gaussian matrix in place
        enc.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)
    with torch.inference_mode():
        third = enc.get_dense_pe()
    assert not torch.equal(third, first) and torch.equal(third, enc.get_dense_pe())
    torch.testing.assert_close(third, enc.pe_layer((64, 64)).unsqueeze(0))


def test_tensor_key_changes_with_the_tensor_its_storage_or_an_in_place_write():
    from sam_core.sam2.common import tensor_key

    a = torch.zeros(3)
    key = tensor_key(a)
    assert key == tensor_key(a)
    assert key != tensor_key(a.clone())  # another tensor with the same values
    a.add_(1.0)
    assert key != tensor_key(a)
    with torch.inference_mode():
        frozen = torch.zeros(2)
    assert tensor_key(frozen) != tensor_key(frozen)  # no version counter: never reused
