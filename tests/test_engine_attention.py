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
