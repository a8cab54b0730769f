"""Hiera, the hierarchical vision transformer that is SAM 2's image trunk.

Shapes (1024 x 1024 input, Hiera-T): the patch embedding gives a
``(B, 256, 256, 96)`` channels-last map; each of the four stages halves the
spatial size with query pooling (max-pool 2 x 2 of the queries in the first
block of the stage) and doubles the width, so the trunk returns
``[(B, 96, 256, 256), (B, 192, 128, 128), (B, 384, 64, 64), (B, 768, 32, 32)]``
(channels-first, finest first).

Attention is windowed (per-stage window sizes, zero-padded to a multiple of
the window; padded tokens take part as keys, as in the official model) except
in the listed global blocks. The position embedding is the "windowed" one of
SAM 2: a small background table resized bicubically to the token grid plus a
window-sized table tiled over it.

For fp32 inference on a CPU the linear layers run through oneDNN with the
MLP's GELU and the residual additions fused in (:func:`linear`), the window
merge is fused into the residual addition, and the position embedding is kept
per grid size (about 25 MB for Hiera-T at 1024 x 1024): the same arithmetic up
to summation order, 0.78x-0.84x the official code's time (docs/benchmarks/sam2.md).

Attribute names follow ``sam2.modeling.backbones.hieradet`` so the state-dict
keys match the official checkpoints.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.common import linear
from .common import MLP, tensor_key


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B * nW, window, window, C)`` windows.

    The map is zero-padded at the bottom/right to a multiple of ``window``;
    returns the windows and the padded size ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, win, win, C)`` -> ``(B, H, W, C)``."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _max_pool_hw(x: torch.Tensor, stride: Tuple[int, int]) -> torch.Tensor:
    """Max-pool a channels-last ``(B, H, W, C)`` map by ``stride`` (floor mode)."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


def window_unpartition_add(
    shortcut: torch.Tensor, windows: torch.Tensor, window: int, padded_hw: Tuple[int, int]
) -> torch.Tensor:
    """``shortcut + window_unpartition(windows, ...)``: ``(B, H, W, C)``, in one pass when there is no padding.

    The addition reads the windows in place and writes image order, instead
    of copying them into image order first (not under autograd, which has no
    ``out=`` form).
    """
    b, h, w, c = shortcut.shape
    hp, wp = padded_hw
    if (hp, wp) != (h, w) or (torch.is_grad_enabled() and (shortcut.requires_grad or windows.requires_grad)):
        return shortcut + window_unpartition(windows, window, padded_hw, (h, w))
    nh, nw = h // window, w // window
    tiles = windows.view(b, nh, nw, window, window, c).permute(0, 1, 3, 2, 4, 5)
    out = torch.empty((b, h, w, c), dtype=torch.result_type(shortcut, windows), device=shortcut.device)
    torch.add(shortcut.reshape(b, nh, window, nw, window, c), tiles, out=out.view(b, nh, window, nw, window, c))
    return out


class PatchEmbed(nn.Module):
    """7 x 7 stride-4 convolution: ``(B, 3, H, W)`` -> ``(B, H/4, W/4, C)``."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled.

    Input ``(B, H, W, dim)``; output ``(B, H', W', dim_out)`` where ``H' = H``
    or ``H / q_stride`` when query pooling is on (keys and values keep the
    full resolution).
    """

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: Optional[Tuple[int, int]] = None
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``, plus ``residual`` (of the output's shape) if given."""
        b, h, w, _ = x.shape
        qkv = linear(x, self.qkv).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)  # each (B, N, heads, d)
        if self.q_stride is not None:
            q = _max_pool_hw(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return linear(out, self.proj, add=residual)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with optional windowing and query pooling.

    ``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``. When ``dim != dim_out`` the
    shortcut is ``pool(proj(norm1(x)))``; ``window_size == 0`` means global
    attention.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: Optional[Tuple[int, int]] = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads=num_heads, q_stride=q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = linear(x, self.proj)
            if self.q_stride is not None:
                shortcut = _max_pool_hw(shortcut, self.q_stride)

        window = self.window_size
        if window > 0:
            x, padded = window_partition(x, window)
            x = self.attn(x)
            if self.q_stride is not None:
                # the queries were pooled inside each window: smaller windows now
                window = window // self.q_stride[0]
                h, w = shortcut.shape[1:3]
                padded = (h + (-h) % window, w + (-w) % window)
            x = window_unpartition_add(shortcut, x, window, padded)
        else:
            x = self.attn(x, residual=shortcut)

        fc1, fc2 = self.mlp.layers
        return linear(linear(self.norm2(x), fc1, gelu=True), fc2, add=x)


class Hiera(nn.Module):
    """The Hiera trunk (https://arxiv.org/abs/2306.00989) as configured by SAM 2.

    Parameters
    ----------
    embed_dim, num_heads:
        Width and heads of the first stage; both are multiplied by 2 at each
        stage change.
    stages:
        Blocks per stage.
    global_att_blocks:
        Indices of the blocks with global (unwindowed) attention.
    window_pos_embed_bkg_spatial_size:
        ``(h, w)`` of the background position-embedding table.
    window_spec:
        Window size per stage. The first block of a stage still uses the
        previous stage's window (it pools its queries by 2 inside it).
    q_pool, q_stride:
        Number of stage changes with query pooling and the pooling stride.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: Sequence[int] = (2, 3, 16, 3),
        global_att_blocks: Sequence[int] = (12, 16, 20),
        window_pos_embed_bkg_spatial_size: Tuple[int, int] = (14, 14),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        q_pool: int = 3,
        q_stride: Tuple[int, int] = (2, 2),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
    ) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"stages {tuple(stages)} and window_spec {tuple(window_spec)} differ in length")
        self.window_spec = tuple(window_spec)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.global_att_blocks = tuple(global_att_blocks)

        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, self.window_spec[0], self.window_spec[0]))

        self.blocks = nn.ModuleList()
        stage = 0
        dim = embed_dim
        for i in range(sum(stages)):
            window = 0 if i in self.global_att_blocks else self.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    num_heads,
                    q_stride=tuple(q_stride) if i in self.q_pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out
        # widths of the returned levels, coarsest first (the neck's order)
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def _pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        """``(1, h, w, C)`` position embedding for an ``h x w`` token grid.

        Under ``torch.inference_mode`` the result is kept for the next forward
        at the same grid size (a bicubic resize of the table to, e.g.,
        256 x 256 x 96 and a tiled addition, about 5 % of a Hiera-T encode),
        until either table changes (their version counters, devices and
        dtypes are part of the key, and whether autocast is on).
        """
        if not torch.is_inference_mode_enabled():
            return self._compute_pos_embed(hw)
        autocast = torch.is_autocast_enabled(self.pos_embed.device.type)
        key = (tuple(hw), autocast, tensor_key(self.pos_embed), tensor_key(self.pos_embed_window))
        cached = self.__dict__.get("_pos_embed_cache")
        if cached is None or cached[0] != key:
            cached = (key, self._compute_pos_embed(hw))
            self.__dict__["_pos_embed_cache"] = cached
        return cached[1]

    def _compute_pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        win = self.pos_embed_window
        reps = [a // b for a, b in zip(pos.shape, win.shape)]
        return (pos + win.tile(reps)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``(B, 3, H, W)`` normalised image -> one ``(B, C_i, H_i, W_i)`` map per stage, finest first."""
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
