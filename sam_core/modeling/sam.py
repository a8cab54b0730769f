"""The model protocol the :class:`~sam_core.predictor.Predictor` drives, and SAM 1.

:class:`SamModel` is the small interface every model family implements
(SAM 1 here; SAM 2 in :mod:`sam_core.sam2` plugs in the same way). The
predictor only ever calls these members, so it holds no per-image state and
does not reach into model internals:

``model_type``
    e.g. ``"vit_b"``; stamped onto every :class:`~sam_core.types.ImageEmbedding`.
``device``
    Where the parameters live.
``mask_threshold``
    Logit threshold of a mask (0.0).
``preprocess(image) -> (x, input_size)``
    ``(H, W, 3)`` uint8 RGB numpy -> ``(1, 3, S, S)`` float32 model input on
    ``device`` and ``input_size = (h, w)``, the resized image's size before
    padding.
``embed(x) -> (features, high_res_features)``
    ``(1, 256, 64, 64)`` features and a tuple of finer levels (empty for SAM 1).
    The predictor calls it under ``torch.inference_mode`` and, on CUDA, under
    half-precision autocast (fp16 by default).
``transform_coords(coords, original_size) -> coords``
    ``(..., 2)`` float64 x, y in original pixels -> the same points in the
    model's input frame (float64 numpy).
``predict_low_res(embedding, coords, labels, boxes, mask_input, multimask) -> (logits, iou)``
    ``coords`` ``(1, N, 2)`` float32 input-frame x, y or None; ``labels``
    ``(1, N)`` int32 (1 fg, 0 bg) or None; ``boxes`` ``(1, 4)`` float32
    input-frame ``x0, y0, x1, y1`` or None; ``mask_input`` ``(1, 1, 256, 256)``
    float32 logits or None; all on ``device``. Returns float32 ``(1, K, 256, 256)``
    logits over the padded input and ``(1, K)`` predicted IoU in the decoder's
    token order (K = 3 with ``multimask``, else 1).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import transforms
from ..types import ImageEmbedding
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class SamModel(nn.Module):
    """Base class of the models a :class:`~sam_core.predictor.Predictor` drives.

    Subclasses implement :meth:`preprocess`, :meth:`embed`,
    :meth:`transform_coords` and :meth:`predict_low_res` (see the module
    docstring for the contract) and set ``model_type``.
    """

    model_type: str = ""
    mask_threshold: float = 0.0
    image_size: int = 1024

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def preprocess(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:  # pragma: no cover
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:  # pragma: no cover
        raise NotImplementedError

    def transform_coords(self, coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict_low_res(
        self,
        embedding: ImageEmbedding,
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor],
        multimask: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class Sam(SamModel):
    """SAM 1 (ViT-B/L/H, or MobileSAM's TinyViT encoder).

    Parameter names match Meta's ``Sam`` module: ``image_encoder.*``,
    ``prompt_encoder.*``, ``mask_decoder.*``; ``pixel_mean`` and ``pixel_std``
    are non-persistent ``(3, 1, 1)`` buffers (not in the state dict).

    Parameters
    ----------
    image_encoder:
        Maps ``(B, 3, 1024, 1024)`` to ``(B, 256, 64, 64)``; must have ``img_size``.
    prompt_encoder, mask_decoder:
        The prompt encoder and mask decoder.
    pixel_mean, pixel_std:
        Per-channel RGB normalisation (0..255 scale).
    model_type:
        Name stamped onto embeddings, e.g. ``"vit_b"``.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = PIXEL_MEAN,
        pixel_std: Sequence[float] = PIXEL_STD,
        model_type: str = "",
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.model_type = model_type
        self.image_size = int(getattr(image_encoder, "img_size", 1024))
        self._pixel_stats: Tuple[List[float], List[float]] = (list(pixel_mean), list(pixel_std))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def reset_pixel_stats(self) -> None:
        """Refill ``pixel_mean``/``pixel_std`` (after ``to_empty`` from the meta device)."""
        mean, std = self._pixel_stats
        with torch.no_grad():
            self.pixel_mean.copy_(torch.tensor(mean).view(-1, 1, 1))
            self.pixel_std.copy_(torch.tensor(std).view(-1, 1, 1))

    # -- protocol ---------------------------------------------------------------------------

    def preprocess(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(H, W, 3)`` uint8 RGB -> ``(1, 3, 1024, 1024)`` float32 on ``device``, ``(h, w)``.

        Longest side resized to 1024 (Pillow bilinear, as the reference),
        normalised with ``pixel_mean``/``pixel_std``, zero-padded bottom/right.
        """
        resized = transforms.resize_longest_side(image, self.image_size)
        x = torch.from_numpy(resized).to(self.device)
        x = transforms.normalize_and_pad(x, self.pixel_mean, self.pixel_std, self.image_size)
        return x, (resized.shape[0], resized.shape[1])

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """``(B, 3, 1024, 1024)`` -> ``(B, 256, 64, 64)`` features and ``()``.

        The features are stored channels-last (a layout, not a shape): the
        decoder reads them as ``(64*64, 256)`` token rows on every click, so
        the transposition is paid once per image instead of once per click.
        """
        return self.image_encoder(x).contiguous(memory_format=torch.channels_last), ()

    def transform_coords(self, coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        """``(..., 2)`` x, y original pixels -> resized-image pixels (float64)."""
        return transforms.apply_coords(coords, original_size, self.image_size)

    def predict_low_res(
        self,
        embedding: ImageEmbedding,
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor],
        multimask: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(1, K, 256, 256)`` and IoU ``(1, K)``; see the module docstring."""
        points = (coords, labels) if coords is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        features = embedding.features
        if features.dtype != torch.float32:
            features = features.float()
        return self.mask_decoder(
            image_embeddings=features,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
