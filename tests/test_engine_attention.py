"""The decoder's attention, including its two folded forms, against the reference module.

The two-way transformer attends 4096 image tokens to a handful of prompt
tokens and back. :class:`sam_core.modeling.transformer.Attention` folds the
projections into the short side in both directions (see ``_few_keys`` and
``_few_queries``); with the same weights it must give the reference's output.
"""

from __future__ import annotations

import pytest
import torch

from refimpl import segment_anything
from sam_core.modeling.transformer import Attention


@pytest.fixture(scope="module")
def pair():
    ref_mod = segment_anything().modeling.transformer
    torch.manual_seed(0)
    ref = ref_mod.Attention(256, 8, downsample_rate=2).eval()
    ours = Attention(256, 8, downsample_rate=2).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


@pytest.mark.parametrize(
    "batch, nq, nk, form",
    [
        (1, 4096, 7, "_few_keys"),  # image tokens -> prompt tokens
        (3, 4096, 12, "_few_keys"),  # several prompts at once (segment everything), more tokens
        (1, 7, 4096, "_few_queries"),  # prompt tokens -> image tokens
        (2, 9, 4096, "_few_queries"),
        (1, 7, 7, None),  # token self-attention: plain SDPA
        (1, 300, 300, None),
    ],
)
def test_attention_matches_the_reference(pair, batch, nq, nk, form, monkeypatch):
    ours, ref = pair
    used = []
    if form is not None:
        real = getattr(Attention, form)
        monkeypatch.setattr(Attention, form, lambda self, *a: used.append(form) or real(self, *a))
    gen = torch.Generator().manual_seed(nq + nk)
    q = torch.randn(batch, nq, 256, generator=gen) * 2
    k = torch.randn(batch, nk, 256, generator=gen) * 2
    v = torch.randn(batch, nk, 256, generator=gen)
    with torch.inference_mode():
        got, want = ours(q, k, v), ref(q, k, v)
    assert used == ([form] if form else [])
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_few_keys_survives_large_logits(pair):
    """The hand-written softmax subtracts each head's max: huge logits give no inf or NaN."""
    ours, ref = pair
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4096, 256, generator=gen) * 300
    k = torch.randn(1, 7, 256, generator=gen) * 300
    v = torch.randn(1, 7, 256, generator=gen)
    with torch.inference_mode():
        got, want = ours(q, k, v), ref(q, k, v)
    assert torch.isfinite(got).all()
    # logits of ~1e5 differ in their last bits with the order of summation: near-ties may shift a little
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("shared, batch, nq, nk", [("queries", 5, 4096, 7), ("keys", 5, 7, 4096)])
def test_one_side_shared_by_every_prompt_matches_the_reference(pair, shared, batch, nq, nk):
    """Segment everything's first block: the image tokens, the same for every prompt, come with batch 1."""
    ours, ref = pair
    gen = torch.Generator().manual_seed(batch * nq + nk)
    image = torch.randn(1, 4096, 256, generator=gen) * 2
    prompts = torch.randn(batch, 7, 256, generator=gen) * 2
    values = torch.randn(batch, 7, 256, generator=gen)
    with torch.inference_mode():
        if shared == "queries":  # image tokens attend to each prompt's tokens
            got = ours(image, prompts, values)
            want = ref(image.expand(batch, -1, -1), prompts, values)
        else:  # each prompt's tokens attend to the image tokens
            image_values = torch.randn(1, 4096, 256, generator=gen)
            got = ours(prompts, image, image_values)
            want = ref(prompts, image.expand(batch, -1, -1), image_values.expand(batch, -1, -1))
    assert got.shape == want.shape == (batch, nq, 256)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_a_batch_over_one_expanded_image_gives_each_prompts_own_result():
    """The transformer reads an expanded (stride 0) image once for all prompts; each prompt's output is unchanged."""
    from sam_core.modeling.transformer import TwoWayTransformer

    torch.manual_seed(1)
    tr = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048).eval()
    gen = torch.Generator().manual_seed(2)
    image = torch.randn(1, 256, 64, 64, generator=gen)
    pe = torch.randn(1, 256, 64, 64, generator=gen)
    tokens = torch.randn(4, 7, 256, generator=gen)
    with torch.inference_mode():
        queries, keys = tr(image.expand(4, -1, -1, -1), pe, tokens)
        for i in range(4):
            q1, k1 = tr(image, pe, tokens[i : i + 1])
            torch.testing.assert_close(queries[i : i + 1], q1, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(keys[i : i + 1], k1, atol=2e-5, rtol=1e-4)
