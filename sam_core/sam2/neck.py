"""SAM 2's FPN neck and the image encoder (Hiera trunk + neck).

The neck projects every trunk level to ``d_model`` (256) channels with a 1 x 1
convolution and adds a nearest-neighbour top-down path on the levels listed in
``fpn_top_down_levels`` (the two coarsest in all SAM 2.1 configs). With
``scalp=1`` the coarsest level (stride 32) is dropped after it has fed the
top-down path, so for a 1024 x 1024 input the encoder returns::

    [(B, 256, 256, 256), (B, 256, 128, 128), (B, 256, 64, 64)]   # strides 4, 8, 16

Attribute names follow ``sam2.modeling.backbones.image_encoder``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera
from .position_encoding import sine_position_encoding


class FpnNeck(nn.Module):
    """Feature-pyramid neck without output convolutions.

    Parameters
    ----------
    d_model:
        Output channels of every level.
    backbone_channel_list:
        Trunk widths, coarsest level first (``convs[0]`` projects the coarsest).
    fpn_top_down_levels:
        Levels (0 = finest) that receive the upsampled coarser level.
    fpn_interp_model:
        ``F.interpolate`` mode of the top-down path.
    """

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: Sequence[int],
        fpn_top_down_levels: Optional[Sequence[int]] = None,
        fpn_interp_model: str = "nearest",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(dim, d_model, kernel_size=1)))
            for dim in backbone_channel_list
        )
        levels = range(len(self.convs)) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = list(levels)
        self.fpn_interp_model = fpn_interp_model

    def forward(self, xs: List[torch.Tensor], project: Optional[Dict[int, nn.Conv2d]] = None) -> List[torch.Tensor]:
        """Trunk levels (finest first) -> ``d_model``-channel levels, finest first.

        ``project`` maps a level to a 1 x 1 convolution applied to its output
        (image mode: the decoder's ``conv_s0`` / ``conv_s1``). Where no other
        level needs that level's ``d_model``-channel map, the two 1 x 1
        convolutions are folded into one (``W = W_p W_l``, ``b = W_p b_l +
        b_p``): for the stride-4 level of Hiera-T, 96 -> 32 channels at
        256 x 256 instead of 96 -> 256 -> 32, about 4 % of an encode.
        """
        if len(xs) != len(self.convs):
            raise ValueError(f"expected {len(self.convs)} trunk levels, got {len(xs)}")
        project = project or {}
        n = len(self.convs) - 1
        out: List[torch.Tensor] = [None] * len(xs)  # type: ignore[list-item]
        prev: Optional[torch.Tensor] = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral_conv = self.convs[n - i].conv
            needed = i in self.fpn_top_down_levels or (i - 1) in self.fpn_top_down_levels
            if i in project and not needed:
                weight, bias = _fold_1x1(project[i], lateral_conv)
                out[i], prev = F.conv2d(xs[i], weight, bias), None
                continue
            lateral = lateral_conv(xs[i])
            if prev is not None and i in self.fpn_top_down_levels:
                top_down = F.interpolate(
                    prev.to(dtype=torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False,
                )
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = project[i](prev) if i in project else prev
        return out


def _fold_1x1(outer: nn.Conv2d, inner: nn.Conv2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the 1 x 1 convolution ``outer(inner(x))``."""
    w_outer = outer.weight.flatten(1)  # (C_out, C_mid)
    weight = (w_outer @ inner.weight.flatten(1)).view(outer.out_channels, inner.in_channels, 1, 1)
    return weight, torch.addmv(outer.bias, w_outer, inner.bias)


class ImageEncoder(nn.Module):
    """Hiera trunk followed by the FPN neck, dropping the ``scalp`` coarsest levels.

    ``forward``: ``(B, 3, 1024, 1024)`` normalised image -> list of
    ``(B, 256, h, w)`` levels, finest first (see the module docstring).
    """

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"trunk widths {trunk.channel_list} do not match the neck's {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, x: torch.Tensor, project: Optional[Dict[int, nn.Conv2d]] = None) -> List[torch.Tensor]:
        """See the class docstring; ``project`` as in :meth:`FpnNeck.forward`."""
        features = self.neck(self.trunk(x), project)
        return features[: len(features) - self.scalp] if self.scalp > 0 else features

    @staticmethod
    def position_encodings(features: List[torch.Tensor]) -> List[torch.Tensor]:
        """The neck's sine encodings for ``features`` (unused in image mode; for parity checks)."""
        return [
            sine_position_encoding(f.shape[0], (f.shape[-2], f.shape[-1]), f.shape[1], device=f.device).to(f.dtype)
            for f in features
        ]

