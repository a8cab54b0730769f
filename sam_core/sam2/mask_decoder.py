"""SAM 2's mask decoder: two-way transformer, high-resolution skip features,
IoU head with a sigmoid, object-score token, and the dynamic multimask
fallback.

Token order fed to the transformer (as in the official model, since the
object-score token attends like the others it must stay even though image
mode ignores its head): ``[obj_score, iou, mask_0..mask_3, prompts...]``.

All maps are channels-first. For a 1024 x 1024 input: image embedding
``(B, 256, 64, 64)``, high-resolution features ``feat_s0 (B, 32, 256, 256)``
and ``feat_s1 (B, 64, 128, 128)`` (already projected by ``conv_s0`` /
``conv_s1`` at encode time), output logits ``(B, K, 256, 256)``.

Attribute names follow ``sam2.modeling.sam``.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# SAM 1's attention layer: the same parameters (q/k/v/out_proj) and arithmetic, with the image-side
# projections folded into the few prompt tokens (see its _few_queries / _few_keys)
from ..modeling.transformer import Attention
from .common import MLP, LayerNorm2d


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token (each followed by a LayerNorm)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token->image attention.

    ``image (B, C, h, w)``, ``image_pe (B, C, h, w)``, ``tokens (B, N, C)`` ->
    ``(tokens (B, N, C), image tokens (B, h*w, C))``.
    """

    def __init__(
        self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim, num_heads, mlp_dim, attention_downsample_rate, skip_first_layer_pe=i == 0
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        # token-major rows: a view for channels-last maps (the encoder's and the dense PE's layout)
        keys = image.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class MaskDecoder(nn.Module):
    """Predicts mask logits and IoU scores from image and prompt embeddings.

    Parameters
    ----------
    transformer_dim:
        Token / embedding width (256).
    num_multimask_outputs:
        Candidates in multimask mode (3); one more token gives the single mask.
    dynamic_multimask_via_stability, dynamic_multimask_stability_delta, dynamic_multimask_stability_thresh:
        In single-mask mode, fall back to the best multimask candidate when
        the single mask's stability score (IoU of the mask thresholded at
        +delta and -delta) is below the threshold. The official image
        predictor builds the model with ``True, 0.05, 0.98``.
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=transformer_dim, num_heads=8, mlp_dim=2048)
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth, sigmoid_output=True
        )
        # object-score head: in the checkpoints, unused by image mode
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def high_res_projections(self) -> Dict[int, nn.Conv2d]:
        """The 1 x 1 convolutions of the stride-4 / stride-8 neck levels (256 -> 32 / 64 channels), by level.

        Applied once per image, inside the encoder's neck
        (:meth:`sam_core.sam2.neck.FpnNeck.forward`), which folds each into
        its level's own 1 x 1 convolution.
        """
        return {0: self.conv_s0, 1: self.conv_s1}

    def _transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """Tokens ``(B, 6 + N, C)`` and image tokens ``(B, h*w, C)`` after the two-way transformer, and ``(h, w)``."""
        b = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((out_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings), dim=1)
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(f"image batch {image_embeddings.shape[0]} does not match prompt batch {b}")
        src = image_embeddings + dense_prompt_embeddings
        if src.shape[0] != b:
            src = src.expand(b, -1, -1, -1)
        hs, keys = self.transformer(src, image_pe, tokens)
        return hs, keys, (src.shape[-2], src.shape[-1])

    def _upscaled(
        self, keys: torch.Tensor, hw: Tuple[int, int], high_res_features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The upscaled image tokens, ``(B, 16 h w, C / 8)`` rows in image order (row ``y * 4w + x``).

        The arithmetic of ``act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)``
        laid out for the CPU: a 2 x 2 / stride-2 transposed convolution maps
        each input pixel to its own 2 x 2 output block, i.e. one matrix product
        ``(pixels, C_in) @ (C_in, 4 C_out)``; its blocks are put in image order
        by the addition of the (channels-last) skip features, which writes
        image-ordered rows in the same pass; the LayerNorm and GELUs act per row.
        """
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        b = keys.shape[0]
        h, w = hw
        feat_s0, feat_s1 = high_res_features
        # (b, i, j, di, dj, c) blocks -> image order (b, i, di, j, dj, c); feat_s1 as (b, 2h, 2w, c)
        x = _deconv2x2_rows(keys.reshape(b * h * w, -1), dc1).view(b, h, w, 2, 2, -1).permute(0, 1, 3, 2, 4, 5)
        c1 = x.shape[-1]
        up = _add_into(x, feat_s1.permute(0, 2, 3, 1).reshape(-1, h, 2, w, 2, c1), (b, 2 * h, 2 * w, c1))
        up = act1(F.layer_norm(up, (c1,), ln1.weight, ln1.bias, ln1.eps))
        x = _deconv2x2_rows(up.view(-1, c1), dc2).view(b, 2 * h, 2 * w, 2, 2, -1).permute(0, 1, 3, 2, 4, 5)
        c0 = x.shape[-1]
        out = _add_into(x, feat_s0.permute(0, 2, 3, 1).reshape(-1, 2 * h, 2, 2 * w, 2, c0), (b, 4 * h, 4 * w, c0))
        return act2(out).view(b, 16 * h * w, c0)

    @staticmethod
    def _masks(up: torch.Tensor, hyper_in: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """``hyper_in (B, K, C/8)`` . upscaled rows ``(B, 16hw, C/8)`` -> logits ``(B, K, 4h, 4w)``."""
        h, w = hw
        return torch.bmm(hyper_in, up.transpose(1, 2)).view(up.shape[0], -1, 4 * h, 4 * w)

    def _hyper_in(self, mask_tokens_out: torch.Tensor, indexes: Sequence[int]) -> torch.Tensor:
        """Hypernetwork outputs ``(B, len(indexes), C/8)`` of the mask tokens ``indexes``."""
        return torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in indexes], dim=1)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: Sequence[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks ``(B, 4, 256, 256)`` and IoU scores ``(B, 4)``.

        ``image_embeddings`` has batch 1 or the prompts' batch size.
        """
        hs, keys, hw = self._transformer(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        up = self._upscaled(keys, hw, high_res_features)
        hyper_in = self._hyper_in(hs[:, 2 : 2 + self.num_mask_tokens, :], range(self.num_mask_tokens))
        return self._masks(up, hyper_in, hw), self.iou_prediction_head(hs[:, 1, :])

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: Sequence[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``(B, K, 256, 256)`` and IoU ``(B, K)``; K = 3 (multimask) or 1.

        Multimask candidates come in token order (not sorted). Only the masks
        returned are computed (in single-mask mode with the dynamic fallback:
        the single mask, and the best multimask one where that is unstable).
        """
        hs, keys, hw = self._transformer(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        up = self._upscaled(keys, hw, high_res_features)
        iou = self.iou_prediction_head(hs[:, 1, :])
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens, :]
        if multimask_output:
            return self._masks(up, self._hyper_in(mask_tokens_out, range(1, self.num_mask_tokens)), hw), iou[:, 1:]
        single = self._masks(up, self._hyper_in(mask_tokens_out, [0]), hw)
        if not (self.dynamic_multimask_via_stability and not self.training):
            return single, iou[:, :1]

        def token_masks(tokens: torch.Tensor) -> torch.Tensor:  # mask of token tokens[r] for each prompt set r
            hyper = torch.cat([self._hyper_in(mask_tokens_out[r : r + 1], [int(t)]) for r, t in enumerate(tokens)])
            return self._masks(up, hyper, hw)

        return self._dynamic_multimask(single, iou, token_masks)

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of the masks thresholded at ``+delta`` and ``-delta``: ``(B, K, H, W)`` -> ``(B, K)``."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inter = torch.sum(flat > delta, dim=-1).float()
        union = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(union > 0, inter / union, 1.0)

    def _dynamic_multimask(
        self, single_masks: torch.Tensor, iou: torch.Tensor, token_masks: Callable[[torch.Tensor], torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The single mask ``(B, 1, H, W)`` where stable, else the multimask candidate with the best predicted IoU.

        ``iou`` ``(B, 4)`` of all mask tokens; ``token_masks(tokens)`` gives the
        ``(B, 1, H, W)`` masks of mask token ``tokens[b]`` (1..3) for each row
        ``b``; it is called only when some single mask is unstable.
        """
        single_iou = iou[:, :1]
        stable = self.stability_scores(single_masks) >= self.dynamic_multimask_stability_thresh  # (B, 1)
        if bool(stable.all()):
            return single_masks, single_iou
        best = torch.argmax(iou[:, 1:], dim=-1) + 1
        rows = torch.arange(iou.shape[0], device=iou.device)
        out_masks = torch.where(stable[..., None, None], single_masks, token_masks(best))
        return out_masks, torch.where(stable, single_iou, iou[rows, best].unsqueeze(1))


def _deconv2x2_rows(x: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """``ConvTranspose2d(kernel_size=2, stride=2)`` applied to pixel rows.

    ``x`` ``(P, C_in)``: one row per input pixel. Returns ``(P, 4 * C_out)``:
    columns ``(di, dj, o)`` hold output pixel ``(2 i + di, 2 j + dj)`` of input
    pixel ``p = (i, j)``, i.e. ``x[p] @ weight[:, :, di, dj] + bias``.
    """
    weight = deconv.weight  # (C_in, C_out, 2, 2)
    c_in, c_out = weight.shape[0], weight.shape[1]
    return torch.addmm(deconv.bias.repeat(4), x, weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out))


def _add_into(a: torch.Tensor, b: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """``(a + b)`` (broadcast) as a new contiguous tensor of ``shape``, written in one pass.

    The sum is computed straight into the contiguous result whatever the
    operands' strides (under autograd, which has no ``out=`` form: add, then
    reshape).
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return (a + b).reshape(shape)
    out = torch.empty(shape, dtype=torch.result_type(a, b), device=a.device)
    torch.add(a, b, out=out.view(torch.broadcast_shapes(a.shape, b.shape)))
    return out
