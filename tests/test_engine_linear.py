"""``sam_core.modeling.common.linear``: the encoders' matmuls (oneDNN on a CPU in inference, else ``F.linear``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_core.modeling import common


def _case(rows: int = 300, width: int = 48, out: int = 80):
    g = torch.Generator().manual_seed(rows)
    lin = nn.Linear(width, out)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out, width, generator=g) * 0.2)
        lin.bias.copy_(torch.randn(out, generator=g))
    return lin, torch.randn(2, rows // 2, width, generator=g), torch.randn(2, rows // 2, out, generator=g)


@pytest.mark.parametrize("gelu, add", [(False, False), (True, False), (False, True)])
def test_linear_matches_f_linear_then_gelu_then_add(gelu, add):
    lin, x, other = _case()
    with torch.inference_mode():
        got = common.linear(x, lin, gelu=gelu, add=other if add else None)
        want = F.linear(x, lin.weight, lin.bias)
        want = F.gelu(want) if gelu else want
        want = want + other if add else want
        assert common._onednn_linear(x, lin) == common.onednn_ops("_linear_pointwise", "_linear_pointwise.binary")
    assert got.shape == want.shape == (2, 150, 80)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_linear_takes_the_plain_path_under_autograd_and_without_a_bias():
    """The oneDNN call has no backward: with gradients recorded, plain ``F.linear`` runs and differentiates."""
    lin, x, other = _case()
    assert not common._onednn_linear(x, lin)  # grad mode, parameters requiring grad
    out = common.linear(x, lin, add=other)
    out.square().sum().backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    no_bias = nn.Linear(48, 80, bias=False)
    with torch.inference_mode():
        assert not common._onednn_linear(x, no_bias)
        torch.testing.assert_close(common.linear(x, no_bias), F.linear(x, no_bias.weight), atol=0, rtol=0)


def test_a_build_without_onednn_linear_runs_the_plain_path(monkeypatch):
    lin, x, other = _case(rows=64)
    with torch.inference_mode():
        want = common.linear(x, lin, add=other)
        monkeypatch.setattr(common, "_ONEDNN_LINEAR", False)
        assert not common._onednn_linear(x, lin)
        got = common.linear(x, lin, add=other)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
