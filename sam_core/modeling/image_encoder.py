"""ViT image encoder of SAM (ViT-B, ViT-L, ViT-H).

Shapes: the encoder takes a normalised, padded ``(B, 3, 1024, 1024)`` image
and returns ``(B, 256, 64, 64)`` features. Inside the blocks tokens are kept
as ``(B, H, W, C)`` with ``H = W = 64`` (one token per 16 x 16 patch).

Most blocks attend within 14 x 14 windows (the 64 x 64 grid is zero-padded to
70 x 70 first); the blocks listed in ``global_attn_indexes`` attend over the
whole grid. Every block adds a decomposed relative-position bias to its
attention logits. Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` with that bias as
an additive mask.

Parameter names match Meta's ``segment_anything.modeling.image_encoder`` so
the official checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock, linear


class ImageEncoderViT(nn.Module):
    """Vision transformer with windowed and global attention, plus a conv neck.

    Parameters
    ----------
    img_size:
        Side of the square input image (1024).
    patch_size:
        Side of a patch (16); the token grid is ``img_size // patch_size``.
    in_chans:
        Input channels (3).
    embed_dim, depth, num_heads:
        Transformer width, number of blocks and attention heads.
    mlp_ratio:
        Hidden width of each block's MLP relative to ``embed_dim``.
    out_chans:
        Channels of the output features (256).
    qkv_bias:
        Whether the fused q/k/v projection has a bias.
    norm_layer, act_layer:
        Normalisation and activation classes of the blocks.
    use_abs_pos:
        Add a learned absolute position embedding ``(1, 64, 64, embed_dim)``.
    use_rel_pos:
        Add decomposed relative-position biases to the attention logits.
    window_size:
        Side of the attention windows (14); 0 means global attention everywhere.
    global_attn_indexes:
        Indexes of the blocks that use global attention.
    """

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: Type[nn.Module] = nn.LayerNorm,
        act_layer: Type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        window_size: int = 0,
        global_attn_indexes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size

        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed: Optional[nn.Parameter] = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))

        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )

        # indexes 0..3 match the official keys neck.0 .. neck.3
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 3, img_size, img_size)`` -> ``(B, out_chans, 64, 64)``."""
        x = self.patch_embed(x)  # (B, H, W, C)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution; ``(B, 3, H, W)`` -> ``(B, H/p, W/p, C)``."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous channels-last: every later elementwise op, LayerNorm and
        # linear layer then works on contiguous rows instead of copying
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class Block(nn.Module):
    """Pre-norm transformer block: (windowed) attention, then MLP, both residual.

    ``window_size == 0`` means global attention over the whole token grid.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: Type[nn.Module] = nn.LayerNorm,
        act_layer: Type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos, input_size=attn_size
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        h = self.norm1(x)
        if self.window_size > 0:
            H, W = h.shape[1], h.shape[2]
            windows, padded_hw = _to_windows(h, self.window_size)
            h = _from_windows(self.attn(windows), self.window_size, padded_hw, (H, W))
        else:
            h = self.attn(h)
        x = x + h
        return self.mlp(self.norm2(x), residual=x)


class Attention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` token grid.

    With ``use_rel_pos`` the logits get ``q . R_h[dy] + q . R_w[dx]`` added,
    where ``R_h`` and ``R_w`` (``(2 * size - 1, head_dim)`` each) are indexed by
    the row and column offsets between query and key.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required for relative position embeddings")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        B, H, W, C = x.shape
        n = self.num_heads
        # (B, H*W, 3, heads, hd) -> 3 x (B, heads, H*W, hd)
        q, k, v = linear(x, self.qkv).reshape(B, H * W, 3, n, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2)
        else:
            out = _attention_with_rel_pos(q, k, v, self.rel_pos_h, self.rel_pos_w, (H, W), self.scale)
        return linear(out.reshape(B, H, W, C), self.proj)


# Upper bound on the additive-mask buffer of one attention call. Global
# attention over the 64 x 64 grid needs 4096^2 floats (64 MiB) per head; the
# heads are processed in groups that fit, reusing one buffer, instead of
# materialising all heads at once (805 MB for ViT-B, 1 GB for ViT-H).
_MASK_BUDGET_BYTES = 1 << 26


def _attention_with_rel_pos(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    hw: Tuple[int, int],
    scale: float,
) -> torch.Tensor:
    """Attention with the decomposed relative-position bias as an additive mask.

    ``q``, ``k``, ``v``: ``(B, heads, H*W, hd)``. Returns ``(B, H*W, heads, hd)``.
    """
    H, W = hw
    B, n, N, hd = q.shape
    rel_h, rel_w = _rel_pos_terms(q, rel_pos_h, rel_pos_w, hw)
    per_head = B * N * N * q.element_size()
    group = max(1, min(n, _MASK_BUDGET_BYTES // per_head))
    out = q.new_empty((B, N, n, hd))
    bias = q.new_empty((B, group, H, W, H, W))
    for start in range(0, n, group):
        stop = min(n, start + group)
        buf = bias[:, : stop - start]
        # bias[.., (y, x), (y', x')] = rel_h[.., y, x, y'] + rel_w[.., y, x, x']
        torch.add(rel_h[:, start:stop, ..., None], rel_w[:, start:stop, ..., None, :], out=buf)
        out[:, :, start:stop] = F.scaled_dot_product_attention(
            q[:, start:stop], k[:, start:stop], v[:, start:stop], attn_mask=buf.view(B, -1, N, N), scale=scale
        ).transpose(1, 2)
    return out


def _offset_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """``(size, size, hd)`` table ``T[i, j] = rel_pos[i - j + size - 1]``."""
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative position table has {rel_pos.shape[0]} rows, expected {2 * size - 1} for size {size}"
        )
    pos = torch.arange(size, device=rel_pos.device)
    return rel_pos[pos[:, None] - pos[None, :] + (size - 1)]


def _rel_pos_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: Tuple[int, int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed relative-position bias (MViTv2).

    ``q``: ``(B, heads, H*W, hd)`` queries (unscaled). Returns
    ``rel_h`` ``(B, heads, H, W, H)`` with ``rel_h[.., y, x, y'] = q[y, x] . Rh[y - y']``
    and ``rel_w`` ``(B, heads, H, W, W)`` with ``rel_w[.., y, x, x'] = q[y, x] . Rw[x - x']``.
    """
    H, W = hw
    B, n, _, hd = q.shape
    table_h = _offset_table(H, rel_pos_h).to(q.dtype)  # (H, H, hd)
    table_w = _offset_table(W, rel_pos_w).to(q.dtype)  # (W, W, hd)
    grid_q = q.reshape(B, n, H, W, hd)
    rel_h = torch.einsum("bnywc,ykc->bnywk", grid_q, table_h)
    rel_w = torch.einsum("bnywc,wkc->bnywk", grid_q, table_w)
    return rel_h, rel_w


def _to_windows(x: torch.Tensor, size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B * nW, size, size, C)`` windows.

    The grid is zero-padded at the bottom and right to a multiple of ``size``;
    the padded tokens take part in attention (as in the reference). Returns
    the windows and the padded ``(Hp, Wp)``.
    """
    B, H, W, C = x.shape
    pad_h = -H % size
    pad_w = -W % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // size, size, Wp // size, size, C).transpose(2, 3)
    return x.reshape(-1, size, size, C), (Hp, Wp)


def _from_windows(
    windows: torch.Tensor, size: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``(B * nW, size, size, C)`` -> ``(B, H, W, C)``."""
    Hp, Wp = padded_hw
    H, W = hw
    C = windows.shape[-1]
    B = windows.shape[0] // ((Hp // size) * (Wp // size))
    x = windows.view(B, Hp // size, Wp // size, size, size, C).transpose(2, 3).reshape(B, Hp, Wp, C)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :]
    return x
