"""TinyViT (MobileSAM's image encoder) against the reference implementation.

The reference is ``mobile_sam.modeling.tiny_vit_sam`` imported through
``tests/refimpl.py``. Full-size comparisons run the 1024 x 1024 encoder once
per model; everything else uses small inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refimpl import mobile_sam
from sam_core.modeling import tiny_vit
from sam_core.modeling.tiny_vit import TinyViT

#: the arguments of MobileSAM's ``build_sam_vit_t``
VIT_T_ARGS = dict(
    img_size=1024,
    in_chans=3,
    num_classes=1000,
    embed_dims=[64, 128, 160, 320],
    depths=[2, 2, 6, 2],
    num_heads=[2, 4, 5, 10],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=4.0,
    drop_rate=0.0,
    drop_path_rate=0.0,
    use_checkpoint=False,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    layer_lr_decay=0.8,
)
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
ATOL = 1e-4


def _ref_module():
    return mobile_sam().modeling.tiny_vit_sam


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter and batch-norm statistic a random, well-scaled value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.1 * noise)
            elif t.ndim == 1:  # norm scales
                t.copy_(1.0 + 0.2 * noise)
            elif name.endswith("attention_biases"):
                t.copy_(noise)
            else:  # conv / linear weights: unit gain
                t.copy_(noise / t[0].numel() ** 0.5)


def _preprocess(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, 1024, 1024) the reference way.

    Longest side resized to 1024 with the reference's ``ResizeLongestSide``
    (PIL bilinear), normalised with SAM's pixel mean/std, zero-padded at the
    bottom and right.
    """
    resize = mobile_sam().utils.transforms.ResizeLongestSide(1024)
    resized = resize.apply_image(image).astype(np.float32)
    normed = (resized - PIXEL_MEAN) / PIXEL_STD
    h, w = normed.shape[:2]
    padded = np.zeros((1024, 1024, 3), dtype=np.float32)
    padded[:h, :w] = normed
    return torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def encoder_weights(mobilesam_checkpoint):
    """The ``image_encoder.*`` entries of the real checkpoint, prefix removed."""
    sd = torch.load(mobilesam_checkpoint, map_location="cpu", weights_only=True)
    prefix = "image_encoder."
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def real_pair(encoder_weights):
    """(reference, ours), both with the real weights, in eval mode."""
    ref = _ref_module().TinyViT(**VIT_T_ARGS)
    ref.load_state_dict(encoder_weights)
    # The reference gathers its attention bias when eval() is called, so it must
    # come after loading the weights (MobileSAM's own builder calls it before).
    ref.eval()
    ours = TinyViT(**VIT_T_ARGS)
    ours.load_state_dict(encoder_weights, strict=True)
    return ref, ours.eval()


def test_state_dict_matches_reference():
    ref = _ref_module().TinyViT(**VIT_T_ARGS)
    ours = TinyViT(**VIT_T_ARGS)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    assert {k: v.dtype for k, v in our_sd.items()} == {k: v.dtype for k, v in ref_sd.items()}
    # The offset index is a non-persistent buffer in both, and equal.
    ref_idx = {k: v for k, v in ref.named_buffers() if k.endswith("attention_bias_idxs")}
    our_idx = {k: v for k, v in ours.named_buffers() if k.endswith("attention_bias_idxs")}
    assert len(our_idx) == 10 and our_idx.keys() == ref_idx.keys()
    assert not any(k.endswith("attention_bias_idxs") for k in our_sd)
    for k in ref_idx:
        assert torch.equal(our_idx[k], ref_idx[k]), k


@pytest.mark.parametrize("resolution", [(7, 7), (3, 5), (14, 14)])
def test_relative_offset_index_matches_reference(resolution):
    ref = _ref_module().Attention(10, 5, num_heads=2, attn_ratio=1, resolution=resolution)
    ours = tiny_vit.Attention(10, 5, num_heads=2, attn_ratio=1, resolution=resolution)
    assert ours.attention_biases.shape == ref.attention_biases.shape
    assert torch.equal(ours.attention_bias_idxs, ref.attention_bias_idxs)


@pytest.mark.parametrize("hw", [(7, 7), (14, 21), (9, 11), (16, 5)])
def test_block_matches_reference_with_padding(hw):
    """One TinyViT block on sizes that are / are not whole windows (window 7)."""
    h, w = hw
    dim, heads = 32, 4
    ref = _ref_module().TinyViTBlock(dim, (h, w), heads, window_size=7)
    _randomise(ref, seed=h * 100 + w)
    ref.eval()  # the reference gathers its bias here: after randomising
    ours = tiny_vit.TinyViTBlock(dim, (h, w), heads, window_size=7)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, h, w, dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = ref(x.reshape(2, h * w, dim)).reshape(2, h, w, dim)
        got = ours(x)
    assert got.shape == (2, h, w, dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.weights
def test_checkpoint_image_encoder_loads_strictly(real_pair, encoder_weights):
    _, ours = real_pair
    assert len(encoder_weights) == 302
    result = ours.load_state_dict(encoder_weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.weights
@pytest.mark.slow
def test_matches_reference_on_photo_with_real_weights(real_pair, photos):
    ref, ours = real_pair
    image = photos["coffee"]  # 400 x 600: the resized image leaves a padded band
    assert image.shape[0] != image.shape[1]
    x = _preprocess(image)
    with torch.inference_mode():
        expected = ref(x)
        got = ours(x)
    assert got.shape == (1, 256, 64, 64) and got.is_contiguous()
    assert expected.abs().max() > 0.1  # real, non-trivial features
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_matches_reference_with_random_weights_non_square_input():
    ref = _ref_module().TinyViT(**VIT_T_ARGS)
    _randomise(ref, seed=1)
    ref.eval()
    ours = TinyViT(**VIT_T_ARGS)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    # A tall image, (H, W) = (1024, 600), zero-padded on the right to 1024 x 1024.
    x = torch.zeros(1, 3, 1024, 1024)
    x[:, :, :, :600] = torch.randn(1, 3, 1024, 600, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = ref(x)
        got = ours(x)
    assert got.shape == (1, 256, 64, 64)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


#: a narrow, shallow TinyViT for tests of mechanics rather than of MobileSAM's numbers
SMALL_ARGS = dict(
    VIT_T_ARGS, num_classes=10, embed_dims=[16, 32, 40, 80], depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4]
)


def _small_model(seed: int = 3) -> TinyViT:
    model = TinyViT(**SMALL_ARGS)
    _randomise(model, seed=seed)
    return model


def test_other_input_sizes_give_one_feature_per_16_pixels():
    model = TinyViT(**VIT_T_ARGS).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 160, 96))
    assert out.shape == (2, 256, 10, 6)
    assert torch.isfinite(out).all()


def test_eval_output_follows_weights_loaded_after_eval():
    """Nothing derived from the weights is cached: loading after eval() takes effect."""
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    model = _small_model().eval()
    other = _small_model(seed=5)
    with torch.inference_mode():
        before = model(x)
        model.load_state_dict(other.state_dict())
        after = model(x)
        fresh = other.eval()(x)
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, fresh, atol=0, rtol=0)


def test_train_mode_uses_batch_statistics_and_backpropagates():
    model = _small_model()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        eval_out = model.eval()(x)
    model.train()
    out = model(x)
    assert out.shape == eval_out.shape
    assert not torch.allclose(out, eval_out, atol=1e-3)  # batch-norm batch statistics
    out.square().mean().backward()
    attn = model.layers[2].blocks[0].attn
    for p in (attn.attention_biases, model.patch_embed.seq[0].c.weight, model.layers[0].blocks[0].conv3.bn.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"drop_path_rate": 0.1}, {"drop_rate": 0.1}, {"use_checkpoint": True}])
def test_training_only_options_are_refused(kwargs):
    with pytest.raises(ValueError, match="inference"):
        TinyViT(**{**VIT_T_ARGS, **kwargs})


def test_mobilesam_encode_batch_equals_one_at_a_time():
    from sam_core import Predictor, build_model

    torch.manual_seed(0)
    pred = Predictor(build_model("vit_t"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 451, 3), np.uint8), rng.integers(0, 256, (500, 200, 3), np.uint8)]
    for got, image in zip(pred.encode_batch(images), images):
        want = pred.encode(image)
        assert got.input_size == want.input_size
        assert got.features.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.features, want.features, atol=1e-5, rtol=1e-4)


def test_fused_convolutions_match_the_plain_path_and_keep_gradients_in_eval_mode():
    """The oneDNN-fused conv + GELU / conv + add (inference only) agree with conv, then GELU / add;
    with autograd recording, eval mode still differentiates (the fused operators have no backward)."""
    model = _small_model().eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(8))
    mb = model.layers[0].blocks[0]
    saved = tiny_vit.ConvBN.forward_gelu, tiny_vit.ConvBN.forward_add
    with torch.inference_mode():
        h = model.patch_embed(x.contiguous(memory_format=torch.channels_last))
        assert tiny_vit._can_fuse(h, mb.conv1.c.weight) == torch.backends.mkldnn.is_available()
        fused = (mb.conv1.forward_gelu(h), mb.conv3.forward_add(mb.conv1.forward_gelu(h), h), model(x))
        tiny_vit.ConvBN.forward_gelu = lambda self, t: torch.nn.functional.gelu(self(t))
        tiny_vit.ConvBN.forward_add = lambda self, t, other: self(t) + other
        try:
            plain = (mb.conv1.forward_gelu(h), mb.conv3.forward_add(mb.conv1.forward_gelu(h), h), model(x))
        finally:
            tiny_vit.ConvBN.forward_gelu, tiny_vit.ConvBN.forward_add = saved
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    out = model(x)
    assert out.requires_grad
    out.square().mean().backward()
    for p in (model.patch_embed.seq[0].c.weight, mb.conv1.c.weight, mb.conv3.c.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), plain[2], atol=1e-5, rtol=1e-5)


def test_a_build_without_the_fused_operators_runs_the_plain_path(monkeypatch):
    """The fused calls are a private oneDNN API: a PyTorch build without them must still encode, unchanged."""
    model = _small_model().eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model(x)
        monkeypatch.setattr(tiny_vit, "_FUSED_OPS", False)
        assert not tiny_vit._can_fuse(x, model.patch_embed.seq[0].c.weight)
        got = model(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.skipif(not _cxx_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")
def test_torch_compile_traces_the_plain_path(tmp_path, monkeypatch):
    """Under ``torch.compile`` the encoder runs the plain convolutions and GELUs and lets the compiler fuse them:
    the private fused operators' layout is not what the compiler's shape checks expect (it failed on the
    first patch merging), and the compiler does its own fusion."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    model = _small_model().eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend="inductor", dynamic=False)
        with torch.inference_mode():
            want = model(x)
            got = compiled(x)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
