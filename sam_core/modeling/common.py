"""Small building blocks shared by the SAM modules.

Attribute names match Meta's ``segment_anything`` modules so that the official
checkpoints load without key remapping.
"""

from __future__ import annotations

from typing import Type

import torch
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., embedding_dim)`` -> ``(..., embedding_dim)``."""
        return self.lin2(self.act(self.lin1(x)))


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
