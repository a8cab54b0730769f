"""SAM's mask decoder: prompt tokens + image features -> low-res mask logits and IoU.

Shapes: image features ``(1 or B, 256, 64, 64)``, positional encoding
``(1, 256, 64, 64)``, sparse prompt embeddings ``(B, N, 256)``, dense prompt
embeddings ``(B or 1, 256, 64 or 1, 64 or 1)``. Output: mask logits
``(B, K, 256, 256)`` over the padded 1024 x 1024 input and predicted IoU
``(B, K)``; ``K = 3`` (multimask) or 1.

Parameter names match Meta's ``segment_anything.modeling.mask_decoder``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """Two-way transformer, four mask tokens with hypernetwork MLPs, and an IoU head.

    Token 0 is the single-mask output; tokens 1..3 are the three multimask
    outputs.

    Parameters
    ----------
    transformer_dim:
        Token and feature width (256).
    transformer:
        The :class:`~.transformer.TwoWayTransformer`.
    num_multimask_outputs:
        Number of multimask outputs (3).
    activation:
        Activation of the upscaling network.
    iou_head_depth, iou_head_hidden_dim:
        Shape of the IoU prediction MLP.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        # indexes match the official keys output_upscaling.0 / .1 / .3
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict masks; see the module docstring for shapes.

        Returns ``(masks, iou_pred)``: ``(B, K, 256, 256)`` logits and ``(B, K)``
        predicted IoU, with ``K = num_multimask_outputs`` if
        ``multimask_output`` else 1. Only the selected outputs' masks are
        computed.
        """
        selected = slice(1, self.num_mask_tokens) if multimask_output else slice(0, 1)
        return self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, selected
        )

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        selected: slice = slice(None),
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Masks and IoU for the mask tokens in ``selected`` (all four by default)."""
        tokens, keys, hw = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        return self.masks_from_tokens(tokens, keys, hw, selected), self.iou_from_tokens(tokens, selected)

    # The three steps of predict_masks, public so that a caller can skip the
    # mask upscaling (about 40 % of a click's work) for prompts whose predicted
    # IoU already rejects them, or compute it on part of the grid only.

    def run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """The two-way transformer: ``(tokens (B, T, C), keys (B, h*w, C), (h, w))``.

        ``tokens[:, 0]`` is the IoU token, ``tokens[:, 1:5]`` the mask tokens.
        """
        B = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(B, -1, -1), sparse_prompt_embeddings], dim=1)

        src = image_embeddings + dense_prompt_embeddings
        if src.shape[0] != B:
            if src.shape[0] != 1:
                raise ValueError(f"image batch {src.shape[0]} does not match prompt batch {B}")
            src = src.expand(B, -1, -1, -1)
        h, w = src.shape[-2:]
        hs, keys = self.transformer(src, image_pe, tokens)
        return hs, keys, (int(h), int(w))

    def iou_from_tokens(self, tokens: torch.Tensor, selected: slice = slice(None)) -> torch.Tensor:
        """``(B, K)`` predicted IoU of the mask tokens in ``selected``, from :meth:`run_transformer`'s tokens."""
        return self.iou_prediction_head(tokens[:, 0, :])[:, selected]

    def masks_from_tokens(
        self,
        tokens: torch.Tensor,
        keys: torch.Tensor,
        hw: Tuple[int, int],
        selected: slice = slice(None),
        window: Optional[Tuple[int, int]] = None,
    ) -> torch.Tensor:
        """``(B, K, 4 rows, 4 cols)`` mask logits of the mask tokens in ``selected``.

        ``window = (rows, cols)``: only the top-left ``rows x cols`` cells of
        the ``h x w`` feature grid are upscaled (default: all of it). The
        upscaling acts on each cell alone (2x2 transposed convolutions, a
        per-pixel LayerNorm and GELUs), so the result is the same part of
        the full logits; used when the image fills only part of the padded input.
        """
        mask_tokens_out = tokens[:, 1 : 1 + self.num_mask_tokens, :]
        indexes = range(self.num_mask_tokens)[selected]
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in indexes], dim=1
        )  # (B, K, C / 8)
        if window is not None:
            rows, cols = min(int(window[0]), hw[0]), min(int(window[1]), hw[1])
            if (rows, cols) != tuple(hw):
                c = keys.shape[-1]
                keys = keys.view(keys.shape[0], hw[0], hw[1], c)[:, :rows, :cols].reshape(keys.shape[0], -1, c)
                hw = (rows, cols)
        return self._upscaled_masks(keys, hyper_in, hw)

    def _upscaled_masks(self, keys: torch.Tensor, hyper_in: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """Mask logits from image tokens and hypernetwork outputs.

        ``keys`` ``(B, h*w, C)`` image tokens, ``hyper_in`` ``(B, K, C / 8)``.
        Returns ``(B, K, 4h, 4w)``: ``hyper_in[k] . upscaled[:, y, x]`` where
        ``upscaled = output_upscaling(keys as (B, C, h, w))``.

        Same arithmetic as running the ``output_upscaling`` ``nn.Sequential``,
        but laid out for the CPU: a 2x2/stride-2 transposed convolution maps
        each input pixel to its own 2x2 output block, i.e. one matrix product
        ``(pixels, C_in) @ (C_in, 4 C_out)``; the LayerNorm and GELUs act per
        pixel, so the blocks stay in "input pixel, sub-pixel" order through
        both upscaling steps and only the K final logit maps are rearranged into
        image order (3 x 65536 values instead of 32 x 65536 and 64 x 16384).
        """
        deconv1, norm, act1, deconv2, act2 = self.output_upscaling
        B, _, c = keys.shape
        h, w = hw
        x = _deconv2x2_rows(keys.reshape(-1, c), deconv1)  # (B*h*w*4, C/4), rows (i, j, di, dj)
        x = act1(F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
        x = act2(_deconv2x2_rows(x, deconv2))  # (B*h*w*16, C/8), rows (i, j, di, dj, ei, ej)
        K = hyper_in.shape[1]
        logits = torch.bmm(x.view(B, -1, x.shape[-1]), hyper_in.transpose(1, 2))  # (B, h*w*16, K)
        # (i, j, di, dj, ei, ej) -> image row 4i + 2di + ei, column 4j + 2dj + ej
        logits = logits.view(B, h, w, 2, 2, 2, 2, K).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(B, K, 4 * h, 4 * w)


def _deconv2x2_rows(x: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """``ConvTranspose2d(kernel_size=2, stride=2)`` applied to pixel rows.

    ``x`` ``(P, C_in)``: one row per input pixel. Returns ``(P * 4, C_out)``:
    rows ``(p, di, dj)`` hold output pixel ``(2 i + di, 2 j + dj)`` of input
    pixel ``p = (i, j)``, i.e. ``x[p] @ weight[:, :, di, dj] + bias``.
    """
    weight = deconv.weight  # (C_in, C_out, 2, 2)
    c_in, c_out = weight.shape[0], weight.shape[1]
    w = weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)  # columns (di, dj, o)
    out = torch.addmm(deconv.bias.repeat(4), x, w)
    return out.view(-1, c_out)
