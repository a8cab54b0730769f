"""SAM's prompt encoder: points, box corners and a low-res mask to embeddings.

Coordinates entering this module are in the **model input frame**: pixels of
the resized (longest side 1024), unpadded image, **x then y**. Shapes:

* points ``(B, N, 2)`` float32 with labels ``(B, N)`` int: 1 foreground,
  0 background, -1 padding ("not a point");
* boxes ``(B, 4)`` float32 ``x0, y0, x1, y1``;
* masks ``(B, 1, 256, 256)`` float32 logits.

Outputs: sparse embeddings ``(B, N', 256)`` (one per point or box corner)
and dense embeddings ``(B, 256, 64, 64)`` (or ``(1, 256, 1, 1)`` when there
is no mask: it broadcasts over the grid).

Parameter names match Meta's ``segment_anything.modeling.prompt_encoder``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Type

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2-D positions.

    A point ``(x, y)`` normalised to ``[0, 1]`` maps to
    ``[sin(2 pi p G), cos(2 pi p G)]`` with ``p = 2 (x, y) - 1`` and ``G`` the
    fixed ``(2, num_pos_feats)`` Gaussian matrix loaded from the checkpoint.
    """

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        gaussian = torch.empty((2, num_pos_feats))
        # Only off the meta device: randn and arithmetic on meta tensors run PyTorch's Python reference
        # kernels, whose first use imports torch._dynamo and sympy (about 1.5 s at launch).
        if gaussian.device.type != "meta":
            gaussian = scale * torch.randn((2, num_pos_feats))
        self.register_buffer("positional_encoding_gaussian_matrix", gaussian)

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords``: ``(..., 2)`` in ``[0, 1]``, x then y -> ``(..., 2 * num_pos_feats)``."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an ``(h, w)`` grid: ``(C, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(
            [xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=-1
        )  # (h, w, 2): x then y
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates ``(B, N, 2)`` (x, y) in an image of ``image_size = (h, w)``."""
        scale = coords_input.new_tensor([image_size[1], image_size[0]])
        return self._pe_encoding((coords_input / scale).to(torch.float32))


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Parameters
    ----------
    embed_dim:
        Embedding width (256).
    image_embedding_size:
        ``(h, w)`` of the image features (64, 64).
    input_image_size:
        ``(h, w)`` of the padded model input (1024, 1024).
    mask_in_chans:
        Hidden channels of the mask downscaling network (16).
    activation:
        Activation class of the mask downscaling network.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache: Optional[Tuple[tuple, torch.Tensor]] = None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the feature grid, ``(1, embed_dim, 64, 64)`` (channels-last memory).

        Computed once and cached; the cache is keyed on the Gaussian matrix's
        storage, version counter, device and dtype, so loading a checkpoint
        or moving the model recomputes it. The result is a normal (not
        inference-mode) tensor with no grad, safe to reuse in any mode.
        """
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (g.data_ptr(), g._version, g.device, g.dtype)
        cached = self._dense_pe_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad():
            # channels-last memory: the decoder reads it as (h*w, C) token rows without a copy
            pe = self.pe_layer(self.image_embedding_size).unsqueeze(0).contiguous(memory_format=torch.channels_last)
        self._dense_pe_cache = (key, pe)
        return pe

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points`` ``(B, N, 2)``, ``labels`` ``(B, N)`` -> ``(B, N (+1 if pad), C)``."""
        points = points + 0.5  # pixel centres
        if pad:
            B = points.shape[0]
            points = torch.cat([points, points.new_zeros(B, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((B, 1), -1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = torch.where(labels == 0, emb + self.point_embeddings[0].weight, emb)
        emb = torch.where(labels == 1, emb + self.point_embeddings[1].weight, emb)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes`` ``(B, 4)`` -> corner embeddings ``(B, 2, C)``."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return emb + corner_types

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``masks`` ``(B, 1, 256, 256)`` -> ``(B, C, 64, 64)``."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts (see the module docstring for shapes).

        Returns sparse ``(B, N', C)`` and dense embeddings; the dense ones are
        ``(1, C, 1, 1)`` without a mask (broadcastable onto the feature grid).
        A padding point is appended when there are points but no box.
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        parts = []
        if points is not None:
            parts.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        weight = self.no_mask_embed.weight
        if parts:
            sparse = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        else:
            sparse = weight.new_empty((bs, 0, self.embed_dim))
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1)
        return sparse, dense
