"""Small layers shared by the SAM 2 modules.

Attribute names follow the official ``sam2`` package so that state-dict keys
match its checkpoints (``layers.0.weight``, ``weight``/``bias``).
"""

from __future__ import annotations

from typing import Type

import torch
from torch import nn

# SAM 1's channel LayerNorm is the same layer (keys ``weight``/``bias``); it also normalises
# half-precision input in float32 under CUDA autocast.
from ..modeling.common import LayerNorm2d

__all__ = ["MLP", "LayerNorm2d"]


class MLP(nn.Module):
    """A stack of ``num_layers`` linear layers with an activation between them.

    Parameters
    ----------
    input_dim, hidden_dim, output_dim:
        Feature sizes of the first input, the hidden layers and the output.
    num_layers:
        Number of ``nn.Linear`` layers (keys ``layers.0`` ... ``layers.{n-1}``).
    activation:
        Module class applied after every layer but the last.
    sigmoid_output:
        Apply a sigmoid to the output (SAM 2's IoU head).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: Type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., input_dim)`` -> ``(..., output_dim)``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
