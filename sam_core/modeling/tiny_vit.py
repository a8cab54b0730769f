"""TinyViT-5M, the image encoder of MobileSAM (model type ``"vit_t"``).

Input: ``(B, 3, 1024, 1024)`` float images, already normalised with SAM's pixel
mean and std and zero-padded at the bottom and right to a square.
Output: ``(B, 256, 64, 64)`` features (channels, then rows y, then columns x),
the same contract as SAM's ViT encoders.

The network, stage by stage (sizes for a 1024 x 1024 input):

* ``patch_embed``: two stride-2 3x3 convolutions -> 64 channels at 256 x 256.
* ``layers[0]``: MBConv blocks (inverted residuals), then a patch merging
  down to 128 channels at 128 x 128.
* ``layers[1..3]``: TinyViT blocks (windowed self-attention with a learned
  relative-position bias, a depth-wise convolution, an MLP); patch mergings
  between them go to 160 channels at 64 x 64 and then 320 channels, still at
  64 x 64 (MobileSAM keeps the last merging at stride 1).
* ``neck``: 1x1 and 3x3 convolutions with channel-wise layer norms -> 256
  channels.

Parameter and buffer names follow MobileSAM's ``tiny_vit_sam.py`` so that the
``image_encoder.*`` part of its checkpoint loads with ``strict=True`` and no
renaming (``norm_head`` and ``head``, the unused ImageNet classifier, are kept
for that reason only).

Layouts. Between stages, features travel as ``(B, C, H, W)`` tensors stored
channels-last (the input is converted once). Inside the attention stages they
are ``(B, H, W, C)`` tokens, which is the same memory read another way: the
depth-wise convolution and the patch mergings take a ``permute`` view, with no
copy back and forth.

Inference details that keep the output equal to the reference (within float
rounding) but make it faster on CPU:

* Channels-last memory: the depth-wise convolutions of stage 0 run about 3x
  faster than on contiguous ``(B, C, H, W)`` tensors.
* In eval mode every convolution + batch norm pair runs as one convolution
  whose weights and bias are folded from the current parameters at each call
  (a few small tensor ops; nothing is cached, so nothing can go stale).
* Attention uses :func:`torch.nn.functional.scaled_dot_product_attention`
  (its fused kernel) with the relative-position bias gathered from the
  current ``attention_biases`` at each call and passed as an additive mask.
* GELUs and the MBConv shortcut are applied in place on temporaries when
  autograd is not recording.
* On CPU in float32 inference, the GELU after a convolution (stem, MBConv,
  patch merging) runs inside the convolution (oneDNN's fused post-op,
  ``torch.ops.mkldnn._convolution_pointwise``), and so does the MBConv
  shortcut add: each large stage-0 temporary is written once instead of
  written, read and rewritten. Measured on stem + stage 0 (2-core EPYC, see
  ``docs/benchmarks.md``, "Peers"): 0.83-0.85x the unfused time.

Training-only options of the reference (dropout, stochastic depth, gradient
checkpointing) are not implemented; the constructor refuses them.

Why so long: it is MobileSAM's TinyViT image encoder, module for module as the checkpoint's keys name it (conv stem, MBConv stages, windowed attention blocks), kept in one file so that the key layout can be read against the reference in one place.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, linear, onednn_ops

__all__ = ["TinyViT"]


def _gelu_fresh(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU of a temporary that nothing else holds.

    Without autograd it is applied in place: on large CPU tensors that is about
    3x faster than writing a new tensor (no fresh pages to fault in).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class ConvBN(nn.Sequential):
    """A bias-free ``Conv2d`` (``c``) followed by ``BatchNorm2d`` (``bn``).

    In eval mode the batch norm is folded into the convolution at each call.
    Input and output are ``(B, C, H, W)``; a channels-last input stays
    channels-last.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.bn(self.c(x))
        weight, bias = self._folded()
        conv: nn.Conv2d = self.c
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    def forward_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(self(x))`` (exact GELU); on CPU in inference, one oneDNN call with the GELU fused.

        The fused call writes each output once instead of writing it and then
        reading and rewriting it for the GELU: these outputs are the largest
        tensors of the encoder (up to 64 MiB at 256 x 256), and the stage is
        memory-bound.
        """
        if self.training or not _can_fuse(x, self.c.weight):
            return _gelu_fresh(self(x))
        weight, bias = self._folded()
        conv: nn.Conv2d = self.c
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups, "gelu", [], "none"
        )

    def forward_add(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``self(x) + other`` as a new tensor; on CPU in inference the sum is fused into the convolution."""
        same_shape = other.shape == (x.shape[0], self.c.out_channels, *x.shape[2:])
        if self.training or not same_shape or not _can_fuse(x, self.c.weight):
            return self(x).add_(other)
        weight, bias = self._folded()
        conv: nn.Conv2d = self.c
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups, "add", None, None, [], None
        )

    def _folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias with the (eval-mode) batch norm folded in."""
        bn: nn.BatchNorm2d = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (out,)
        return self.c.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def _can_fuse(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused convolution calls apply: float32 CPU, nothing to differentiate, no autocast.

    The fused operators have no backward, so they are used only when autograd
    would record nothing (inference mode, ``no_grad``, or frozen weights and
    input); otherwise the plain convolution and GELU run.
    """
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()
        and _fused_ops_available()
    )


_FUSED_OPS: Optional[bool] = None


def _fused_ops_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused convolution operators (private API: checked once, not assumed)."""
    global _FUSED_OPS
    if _FUSED_OPS is None:
        _FUSED_OPS = onednn_ops("_convolution_pointwise", "_convolution_pointwise.binary")
    return _FUSED_OPS


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 ``ConvBN`` with a GELU between: ``(B, in_chans, H, W)`` -> ``(B, embed_dim, H/4, W/4)``."""

    def __init__(self, in_chans: int, embed_dim: int, resolution: int) -> None:
        super().__init__()
        self.patches_resolution = (resolution // 4, resolution // 4)
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        # Index 1 is the (parameter-free) activation; indices 0 and 2 name the checkpoint keys.
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](self.seq[0].forward_gelu(x))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depth-wise, 1x1 project, + shortcut, GELU.

    ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.hidden_chans = int(in_chans * expand_ratio)
        self.out_chans = out_chans
        hidden = self.hidden_chans
        self.conv1 = ConvBN(in_chans, hidden, ks=1)
        self.conv2 = ConvBN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.conv3 = ConvBN(hidden, out_chans, ks=1, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2.forward_gelu(self.conv1.forward_gelu(x))
        # In place is safe even under autograd: neither conv nor batch norm keeps its output.
        return _gelu_fresh(self.conv3.forward_add(y, x))


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depth-wise conv (stride 2), 1x1 conv, GELUs between.

    ``(B, dim, H, W)`` -> ``(B, out_dim, ceil(H/2), ceil(W/2))``. As in
    MobileSAM, the stride is 1 when ``out_dim`` is one of TinyViT's last-stage
    widths (320, 448, 576), which keeps the output at 64 x 64.
    """

    def __init__(self, input_resolution: Tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.dim = dim
        self.out_dim = out_dim
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = ConvBN(dim, out_dim, 1, 1, 0)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2.forward_gelu(self.conv1.forward_gelu(x)))


class ConvLayer(nn.Module):
    """Stage 0: ``depth`` MBConv blocks, then an optional ``PatchMerging``.

    ``(B, dim, H, W)`` -> ``(B, out_dim, H', W')``.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        depth: int,
        out_dim: Optional[int] = None,
        downsample: bool = False,
        conv_expand_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.blocks = nn.ModuleList([MBConv(dim, dim, conv_expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim or dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class Mlp(nn.Module):
    """LayerNorm, Linear, GELU, Linear over the last axis: ``(..., C)`` -> ``(..., C)``."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The MLP of ``x``; plus ``residual`` (same shape), added by the last matmul, when given."""
        return linear(_gelu_fresh(linear(self.norm(x), self.fc1)), self.fc2, add=residual)


def _relative_offset_index(rows: int, cols: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, N)`` int64 index of the offset between every pair of a window's N = rows*cols cells.

    Cells are numbered row-major (y, then x). The offset between cells
    ``(y1, x1)`` and ``(y2, x2)`` is ``(|y1-y2|, |x1-x2|)``, numbered
    ``|y1-y2| * cols + |x1-x2|``: the order in which MobileSAM meets the
    offsets, so the index matches its ``attention_biases`` columns.

    Made on ``device`` (CPU by default) even inside a ``torch.device("meta")``
    block: ``arange`` on the meta device goes through PyTorch's reference
    implementations, whose first use imports ``torch._dynamo`` and sympy
    (about 1.5 s at every launch, measured with ``-X importtime``).
    """
    ys, xs = torch.meshgrid(
        torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij"
    )
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return (ys[:, None] - ys[None, :]).abs() * cols + (xs[:, None] - xs[None, :]).abs()


class Attention(nn.Module):
    """Multi-head self-attention within one window, with a learned relative-position bias.

    Input and output ``(B, N, dim)`` where ``N = resolution[0] * resolution[1]``
    tokens of a window, row-major. The layer norm is part of this module.

    ``attention_biases`` is ``(num_heads, number of distinct offsets)``, that is
    ``(num_heads, rows * cols)``;
    ``attention_bias_idxs`` (a non-persistent buffer, as in MobileSAM, so it is
    not in checkpoints) maps each token pair to its offset.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int = 8,
        attn_ratio: float = 4,
        resolution: Tuple[int, int] = (14, 14),
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.attn_ratio = attn_ratio
        self.norm = nn.LayerNorm(dim)
        # Per head, the output features are [q (key_dim), k (key_dim), v (d)].
        self.qkv = nn.Linear(dim, self.dh + 2 * self.nh_kd)
        self.proj = nn.Linear(self.dh, dim)
        rows, cols = resolution
        self.resolution = (int(rows), int(cols))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, rows * cols))
        self.register_buffer("attention_bias_idxs", _relative_offset_index(rows, cols), persistent=False)

    def reset_non_persistent_buffers(self) -> None:
        """Recompute ``attention_bias_idxs`` on the parameters' device (after ``to_empty``)."""
        rows, cols = self.resolution
        self.attention_bias_idxs = _relative_offset_index(rows, cols, self.attention_biases.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = linear(self.norm(x), self.qkv).view(b, n, self.num_heads, -1).transpose(1, 2)  # (B, heads, N, 2kd+d)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=-1)
        # A 4-D mask lets PyTorch pick its fused (flash) CPU kernel; with a 3-D one
        # it falls back to the unfused path, about 3x slower.
        bias = self.attention_bias().unsqueeze(0).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, heads, N, d)
        # The fused kernel's output is (B, N, heads, d) in memory, so this reshape is a view.
        return linear(out.transpose(1, 2).reshape(b, n, self.dh), self.proj)

    def attention_bias(self) -> torch.Tensor:
        """``(num_heads, N, N)`` additive bias for every (query, key) token pair of a window.

        Gathered from the current ``attention_biases`` at each call (well under a
        millisecond per block on CPU), so it never goes stale after loading weights.
        """
        n = self.attention_bias_idxs.shape[0]
        flat = self.attention_biases.index_select(1, self.attention_bias_idxs.view(-1))
        return flat.view(self.num_heads, n, n)


class TinyViTBlock(nn.Module):
    """Windowed attention + residual, depth-wise conv, MLP + residual.

    Input and output ``(B, H, W, C)`` tokens. For attention the
    map is zero-padded at the bottom and right to a multiple of
    ``window_size`` and cut into ``window_size x window_size`` windows; the
    padded tokens go through the attention's layer norm and are attended to,
    like MobileSAM does, and are dropped afterwards.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.attn = Attention(dim, dim // num_heads, num_heads, attn_ratio=1, resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> attention output, ``(B, H, W, C)`` (possibly a strided view)."""
        b, h, w, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x.reshape(b, h * w, c)).view(b, h, w, c)
        pad_b, pad_r = -h % ws, -w % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
        windows = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        out = self.attn(windows)
        out = out.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)
        return out[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._window_attention(x)
        # A (B, H, W, C) tensor read as (B, C, H, W) is channels-last: no copy.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.mlp(x, residual=x)


class BasicLayer(nn.Module):
    """An attention stage: ``depth`` TinyViT blocks, then an optional ``PatchMerging``.

    ``(B, dim, H, W)`` -> ``(B, out_dim, H', W')`` (the output is channels-last
    in memory when there is no downsampling).
    """

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        out_dim: Optional[int] = None,
        downsample: bool = False,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.blocks = nn.ModuleList(
            [
                TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
                for _ in range(depth)
            ]
        )
        self.downsample = PatchMerging(input_resolution, dim, out_dim or dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
        for blk in self.blocks:
            x = blk(x)
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W), channels-last in memory
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """TinyViT image encoder with MobileSAM's 256-channel neck.

    The defaults are those of MobileSAM's ``build_sam_vit_t`` (TinyViT-5M).

    Parameters
    ----------
    img_size:
        Side of the square input the stage resolutions are computed for (1024).
        The forward pass derives sizes from its input, but SAM always feeds
        ``img_size x img_size``.
    in_chans:
        Input channels (3).
    num_classes:
        Width of the unused ImageNet classifier ``head`` (kept so that
        checkpoints load strictly); 0 for none.
    embed_dims, depths, num_heads, window_sizes:
        Per stage: channels, number of blocks, attention heads (ignored for
        stage 0, which is convolutional), window side.
    mlp_ratio:
        Hidden width of the MLPs relative to the stage width.
    drop_rate, drop_path_rate, use_checkpoint:
        Training-only options of the reference; must be 0, 0 and False.
    mbconv_expand_ratio:
        Hidden width of the MBConv blocks relative to their input.
    local_conv_size:
        Kernel side of the depth-wise convolution in each TinyViT block.
    layer_lr_decay:
        Layer-wise learning-rate decay of the reference's training recipe;
        stored, not used.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        layer_lr_decay: float = 0.8,
    ) -> None:
        super().__init__()
        if drop_rate or drop_path_rate or use_checkpoint:
            raise ValueError(
                "this TinyViT is for inference: drop_rate, drop_path_rate and use_checkpoint "
                f"must be 0, 0 and False (got {drop_rate}, {drop_path_rate}, {use_checkpoint})"
            )
        lengths = {len(embed_dims), len(depths), len(num_heads), len(window_sizes)}
        if len(lengths) != 1:
            raise ValueError("embed_dims, depths, num_heads and window_sizes must have the same length")
        self.img_size = img_size
        self.num_classes = num_classes
        self.depths = list(depths)
        self.num_layers = len(depths)
        self.mlp_ratio = mlp_ratio
        self.layer_lr_decay = layer_lr_decay

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size)
        res = self.patch_embed.patches_resolution
        self.patches_resolution = res

        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            # Every merging halves the side except the last (stride 1, see PatchMerging).
            shift = min(i, self.num_layers - 2)
            stage_res = (res[0] // 2**shift, res[1] // 2**shift)
            out_dim = embed_dims[min(i + 1, self.num_layers - 1)]
            downsample = i < self.num_layers - 1
            if i == 0:
                layer: nn.Module = ConvLayer(
                    embed_dims[0], stage_res, depths[0], out_dim, downsample, mbconv_expand_ratio
                )
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    stage_res,
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    out_dim,
                    downsample,
                    local_conv_size,
                )
            self.layers.append(layer)

        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], 256, kernel_size=1, bias=False),
            LayerNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(256),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Parameters
        ----------
        x:
            ``(B, 3, H, W)`` normalised, padded images; ``H = W = 1024`` for SAM.

        Returns
        -------
        torch.Tensor
            ``(B, 256, H/16, W/16)`` contiguous features; ``(B, 256, 64, 64)`` for SAM.
        """
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        # Channels-last all the way: the depth-wise convolutions of stage 0 run
        # about 3x faster on CPU, and the attention stages read it as tokens for free.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return self.neck(x).contiguous()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
