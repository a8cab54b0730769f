"""Position encodings used by SAM 2.

* :class:`PositionEmbeddingRandom`: random Fourier features of (x, y), used by
  the prompt encoder for point/box coordinates and for the dense 64 x 64 grid
  the mask decoder attends over. Its Gaussian matrix is a checkpoint buffer.
* :func:`sine_position_encoding`: the fixed 2-D sine encoding that SAM 2's FPN
  neck attaches to every feature level. Image mode never reads it (the
  official image predictor discards ``vision_pos_enc``); it is kept so the
  neck can reproduce the reference's full output when asked.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

# the same layer as SAM 1's (its grid and coordinate arithmetic give the same values bit for bit)
from ..modeling.prompt_encoder import PositionEmbeddingRandom

__all__ = ["PositionEmbeddingRandom", "sine_position_encoding"]


def sine_position_encoding(
    batch: int,
    size: Tuple[int, int],
    dim: int = 256,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """SAM 2's normalised 2-D sine encoding of an ``(h, w)`` map: ``(batch, dim, h, w)``.

    The first ``dim / 2`` channels encode y, the rest x; each half interleaves
    sin and cos of the position (1-based, normalised to ``(0, 2 pi]``) over
    geometric frequencies.
    """
    h, w = size
    half = dim // 2
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(1, -1, 1).repeat(batch, 1, w)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, 1, -1).repeat(batch, h, 1)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    freq = torch.arange(half, dtype=torch.float32, device=device)
    freq = temperature ** (2 * (freq // 2) / half)
    pos_x = x[..., None] / freq
    pos_y = y[..., None] / freq
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
