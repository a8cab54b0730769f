"""SAM 2's prompt encoder.

Inputs are in the coordinates of the 1024 x 1024 model input (x then y);
the mapping from original-image pixels is done once, in
:meth:`sam_core.sam2.model.Sam2ImageModel.predict`.

Point labels: ``1`` foreground, ``0`` background, ``2`` / ``3`` the top-left /
bottom-right box corners (SAM 2 feeds boxes as two labelled points), ``-1``
padding ("not a point").
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm2d, tensor_key
from .position_encoding import PositionEmbeddingRandom


class PromptEncoder(nn.Module):
    """Embeds points and masks for the mask decoder.

    Parameters
    ----------
    embed_dim:
        Embedding width (256).
    image_embedding_size:
        ``(h, w)`` of the image embedding (64, 64).
    input_image_size:
        ``(h, w)`` of the model input (1024, 1024).
    mask_in_chans:
        Hidden channels of the mask downscaling convolutions (16).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: Tuple[int, int] = (64, 64),
        input_image_size: Tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Position encoding of the image-embedding grid: ``(1, C, 64, 64)`` (channels-last in memory).

        The same for every click: under ``torch.inference_mode`` it is computed
        once and kept until the Gaussian matrix changes (a checkpoint load:
        its version counter, device and dtype are the key). Per click it was
        a 4096 x 2 x 128 product, a sine and a cosine of 4096 x 128 values
        and a concatenation: about 5 % of a click on a loaded 2-core machine.
        """
        if not torch.is_inference_mode_enabled():
            return self.pe_layer(self.image_embedding_size).unsqueeze(0)
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (tensor_key(g), self.image_embedding_size)
        cached = self.__dict__.get("_dense_pe_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.pe_layer(self.image_embedding_size).unsqueeze(0))
            self.__dict__["_dense_pe_cache"] = cached
        return cached[1]

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, N, 2)`` input-pixel coords + ``(B, N)`` labels -> ``(B, N + 1, C)`` (a pad point is appended)."""
        coords = coords + 0.5  # pixel centres
        pad_point = torch.zeros((coords.shape[0], 1, 2), device=coords.device, dtype=coords.dtype)
        pad_label = -torch.ones((labels.shape[0], 1), device=labels.device, dtype=labels.dtype)
        coords = torch.cat([coords, pad_point], dim=1)
        labels = torch.cat([labels, pad_label], dim=1)
        pe = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        table = torch.cat([e.weight for e in self.point_embeddings], dim=0)  # (4, C), row = label
        labelled = pe + table[labels.clamp(min=0).long()]
        return torch.where((labels == -1).unsqueeze(-1), self.not_a_point_embed.weight.expand_as(pe), labelled)

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts of one batch.

        Parameters
        ----------
        points:
            ``(coords (B, N, 2), labels (B, N))`` in model-input pixels, x then
            y, box corners included as labels 2/3; or ``None``.
        masks:
            ``(B, 1, 256, 256)`` low-resolution mask logits, or ``None``.

        Returns
        -------
        sparse:
            ``(B, N + 1, C)`` (``(B, 0, C)`` without points).
        dense:
            ``(B, C, 64, 64)``.
        """
        if points is not None:
            batch = points[0].shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        weight = self.point_embeddings[0].weight
        if points is not None:
            sparse = self._embed_points(*points)
        else:
            sparse = torch.empty((batch, 0, self.embed_dim), device=weight.device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense
