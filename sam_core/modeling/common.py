"""Small building blocks shared by the SAM modules.

Attribute names match Meta's ``segment_anything`` modules so that the official
checkpoints load without key remapping.
"""

from __future__ import annotations

from typing import Optional, Type

import torch
import torch.nn.functional as F
from torch import nn


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them: ``dim -> mlp_dim -> dim``.

    Parameters
    ----------
    embedding_dim:
        Input and output width.
    mlp_dim:
        Hidden width.
    act:
        Activation class (instantiated once).
    """

    def __init__(self, embedding_dim: int, mlp_dim: int, act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: ``(..., embedding_dim)`` -> ``(..., embedding_dim)``; plus ``residual`` (same shape) when given.

        The matmuls go through :func:`linear` (oneDNN on a CPU in inference), which also adds ``residual``.
        """
        return linear(self.act(linear(x, self.lin1)), self.lin2, add=residual)


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of a ``(B, C, H, W)`` tensor.

    Each pixel's ``C`` values are normalised to zero mean and unit (biased)
    variance, then scaled by ``weight`` and shifted by ``bias`` (both ``(C,)``).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, H, W)`` -> ``(B, C, H, W)``.

        Half-precision input (under CUDA autocast) is normalised in float32,
        as ``nn.LayerNorm`` is under autocast; the result is then float32.
        """
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.square().mean(1, keepdim=True)
        out = centred / torch.sqrt(var + self.eps)
        return out * self.weight[:, None, None] + self.bias[:, None, None]


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation (ReLU) between them: the decoders' heads, SAM 2's MLPs.

    Widths: ``input_dim -> hidden_dim -> ... -> hidden_dim -> output_dim``
    (keys ``layers.0`` ... ``layers.{n-1}``). With ``sigmoid_output`` the
    result goes through a sigmoid.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
        activation: Type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        widths_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        widths_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths_in, widths_out))
        self.act = activation()  # no parameters: the state-dict keys stay layers.*
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., input_dim)`` -> ``(..., output_dim)``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


def onednn_ops(*names: str) -> bool:
    """Whether this PyTorch build has oneDNN and its (private) operators ``torch.ops.mkldnn.<name>`` (``a.b``: an
    overload), for the fused CPU inference paths; checked, not assumed, with a plain path beside each use."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        for name in names:
            op = torch.ops.mkldnn
            for part in name.split("."):
                op = getattr(op, part)
    except (AttributeError, RuntimeError):
        return False
    return True


_ONEDNN_LINEAR: Optional[bool] = None


def _onednn_linear(x: torch.Tensor, lin: nn.Linear) -> bool:
    """Whether :func:`linear` may run ``lin`` through oneDNN: fp32 CPU inference, no autocast, not compiling."""
    global _ONEDNN_LINEAR
    if not (
        x.device.type == "cpu"
        and x.dtype == lin.weight.dtype == torch.float32
        and lin.bias is not None
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()
    ):
        return False
    if _ONEDNN_LINEAR is None:
        _ONEDNN_LINEAR = onednn_ops("_linear_pointwise", "_linear_pointwise.binary")
    return _ONEDNN_LINEAR


def linear(x: torch.Tensor, lin: nn.Linear, gelu: bool = False, add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``lin(x)``, then exact GELU if ``gelu``, then ``+ add`` (same shape as the result) if given.

    For fp32 inference on a CPU this is one oneDNN matmul, with the GELU or the
    addition fused into it (the kernel PyTorch's own compiler uses). oneDNN's
    matmul is faster than ``addmm`` (MKL) on the encoders' shapes, e.g. on
    TinyViT's twelve (1 thread, CPU time): 0.66x to 0.92x, 0.80x summed over
    an encode; on Hiera's (2 threads) 0.5x to 0.95x. The results agree with
    ``F.linear`` to rounding (the matmul's summation order). Elsewhere (CUDA,
    autocast, autograd, ``torch.compile``): plain ``F.linear`` and the same
    arithmetic unfused.
    """
    if not _onednn_linear(x, lin):
        out = lin(x)
        if gelu:
            out = F.gelu(out)
        return out if add is None else add + out
    shape = x.shape[:-1] + (lin.out_features,)
    rows = x.reshape(-1, x.shape[-1])
    if add is not None:
        other = add.reshape(-1, lin.out_features)
        out = torch.ops.mkldnn._linear_pointwise.binary(rows, other, lin.weight, lin.bias, "add")
    else:
        out = torch.ops.mkldnn._linear_pointwise(rows, lin.weight, lin.bias, "gelu" if gelu else "none", [], "none")
    return out.view(shape)
