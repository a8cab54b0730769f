"""The SAM 2 image-mode model and its candidate masks.

:class:`Sam2ImageModel` implements the :class:`sam_core.modeling.sam.SamModel`
protocol, so :class:`sam_core.predictor.Predictor` drives it like SAM 1:

* ``preprocess(image)``: ``(H, W, 3)`` uint8 RGB -> ``(1, 3, 1024, 1024)``
  normalised tensor and ``input_size``. SAM 2 **stretches** the image to
  1024 x 1024 (aspect ratio not kept, no padding), so the valid input region
  is the whole square: ``input_size`` is always ``(1024, 1024)``.
* ``embed(x)``: -> ``features (1, 256, 64, 64)`` with ``no_mem_embed`` added,
  and ``(feat_s0 (1, 32, 256, 256), feat_s1 (1, 64, 128, 128))``, the stride-4
  and stride-8 neck levels already projected by the decoder's ``conv_s0`` /
  ``conv_s1`` (as the official ``forward_image`` does once per image).
* ``transform_coords(coords, original_size)``: x, y original pixels ->
  ``(x / W * 1024, y / H * 1024)``, in float32 as the official predictor.
* ``predict_low_res(...)``: prompt encoder + mask decoder with the
  high-resolution features; boxes go in as two points labelled 2 and 3,
  placed before the clicks, as in the official ``SAM2ImagePredictor``.

Two hooks go beyond the SAM 1 protocol:

* ``candidates_type``: :class:`Sam2Candidates`, whose full-resolution masks use
  SAM 2's postprocessing (bilinear 256 -> ``(H, W)`` in one step);
* ``prepare_state_dict(sd)``: drops the video-only checkpoint entries before
  the strict load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.sam import SamModel
from ..types import Candidates, ImageEmbedding
from .mask_decoder import MaskDecoder
from .neck import ImageEncoder
from .prompt_encoder import PromptEncoder

PIXEL_MEAN = (0.485, 0.456, 0.406)  # of RGB in [0, 1]
PIXEL_STD = (0.229, 0.224, 0.225)
LOGIT_CLAMP = 32.0  # the official predictor clamps the low-res logits it hands out to +-32

IGNORED_PREFIXES: Tuple[str, ...] = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "mask_downsample.",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
)
"""Entries of the official (video) checkpoints that image mode does not use."""


@dataclass(frozen=True, eq=False)
class Sam2Candidates(Candidates):
    """:class:`~sam_core.types.Candidates` with SAM 2's mask postprocessing.

    ``input_size`` is ``(1024, 1024)`` for SAM 2 (the whole low-resolution map
    is valid), so the inherited :meth:`preview` already resamples the full
    ``(256, 256)`` map; only the upsampling of :meth:`mask` differs from SAM 1
    (for a region too: the region's mask is placed in the full image as there).
    """

    def _upscale(self, i: int, size: Tuple[int, int]) -> np.ndarray:
        """Candidate ``i`` as ``(h, w)`` bool: bilinear 256 -> ``size`` in one step, threshold."""
        logits = torch.from_numpy(self.low_res_logits[i : i + 1]).unsqueeze(0)
        full = F.interpolate(logits.float(), tuple(size), mode="bilinear", align_corners=False)
        return full[0, 0].gt(self.mask_threshold).numpy()


class Sam2ImageModel(SamModel):
    """SAM 2 in image mode: image encoder, ``no_mem_embed``, prompt encoder, mask decoder.

    Submodule and parameter names equal the official ``SAM2Base`` ones, so an
    official state dict loads strictly once :data:`IGNORED_PREFIXES` entries
    are set aside (:meth:`prepare_state_dict`). ``pixel_mean`` / ``pixel_std``
    are non-persistent buffers (RGB in [0, 1] scale).
    """

    image_size = 1024
    mask_threshold = 0.0
    candidates_type = Sam2Candidates

    def __init__(
        self,
        image_encoder: ImageEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        model_type: str = "",
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, image_encoder.neck.d_model))
        self.model_type = model_type
        self.register_buffer("pixel_mean", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.empty(1, 3, 1, 1), persistent=False)
        self.reset_pixel_stats()

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    def reset_pixel_stats(self) -> None:
        """Fill ``pixel_mean`` / ``pixel_std`` (again after ``to_empty`` from the meta device)."""
        with torch.no_grad():
            self.pixel_mean.copy_(torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
            self.pixel_std.copy_(torch.tensor(PIXEL_STD).view(1, 3, 1, 1))

    @staticmethod
    def prepare_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The image-mode part of an official state dict (the video-only entries removed)."""
        return {k: v for k, v in state_dict.items() if not k.startswith(IGNORED_PREFIXES)}

    # ------------------------------------------------------------------ encode

    def preprocess(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(H, W, 3)`` uint8 RGB -> ``(1, 3, 1024, 1024)`` float32 on the model's device, ``(1024, 1024)``.

        Scale to [0, 1], resize to 1024 x 1024 (bilinear, antialiased, aspect
        ratio not kept), normalise with the ImageNet mean and std: the
        arithmetic of the official ``SAM2Transforms`` (torchvision's
        ``ToTensor``, ``Resize``, ``Normalize`` on a tensor).
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = type(image).__name__
            if isinstance(image, np.ndarray):
                got = f"{image.dtype} array of shape {image.shape}"
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")
        size = (self.image_size, self.image_size)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        # one pass from HWC uint8 to CHW float32, scaled in place (no uint8 copy, no second float buffer)
        x = x.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format).div_(255)[None]
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std, size

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Encode a preprocessed ``(B, 3, 1024, 1024)`` batch.

        Returns ``features (B, 256, 64, 64)`` (with ``no_mem_embed`` added) and
        ``(feat_s0 (B, 32, 256, 256), feat_s1 (B, 64, 128, 128))``.
        """
        feat_s0, feat_s1, top = self.image_encoder(x, project=self.sam_mask_decoder.high_res_projections())
        # channels-last: the layout in which the decoder adds them to its upscaled rows without a copy
        feat_s0, feat_s1 = (t.contiguous(memory_format=torch.channels_last) for t in (feat_s0, feat_s1))
        # channels-last: the decoder reads the image as token rows (a view then, not a copy per click)
        top = (top + self.no_mem_embed.view(1, -1, 1, 1)).contiguous(memory_format=torch.channels_last)
        return top, (feat_s0, feat_s1)

    # ------------------------------------------------------------------ decode

    def transform_coords(self, coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        """``(..., 2)`` x, y original pixels -> model-input pixels ``(x / W * 1024, y / H * 1024)``.

        Computed in float32, in the official predictor's order, so the
        coordinates are bit-identical to the reference's. Returns float32.
        """
        h, w = original_size
        c = np.array(coords, dtype=np.float32)
        c[..., 0] = c[..., 0] / np.float32(w)
        c[..., 1] = c[..., 1] / np.float32(h)
        return c * np.float32(self.image_size)

    def decode_prompts(
        self,
        features: torch.Tensor,
        high_res_features: Sequence[torch.Tensor],
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor] = None,
        multimask: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode a batch of B prompt sets against one image.

        Parameters
        ----------
        features, high_res_features:
            As returned by :meth:`embed` (batch 1; cast to float32 here).
        coords, labels:
            ``(B, N, 2)`` model-input pixels (x then y) and ``(B, N)`` int
            labels (1 fg, 0 bg, 2/3 box corners), or both ``None``.
        mask_input:
            ``(B, 1, 256, 256)`` logits or ``None``.

        Returns
        -------
        low_res, iou:
            ``(B, K, 256, 256)`` float32 logits and ``(B, K)`` predicted IoU,
            K = 3 (multimask) or 1, in token order.
        """
        features = features.float()
        high_res_features = [t.float() for t in high_res_features]
        points = None if coords is None else (coords, labels)
        sparse, dense = self.sam_prompt_encoder(points=points, masks=mask_input)
        low_res, iou = self.sam_mask_decoder(
            image_embeddings=features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_res_features=high_res_features,
        )
        return low_res.float(), iou.float()

    def predict_low_res(
        self,
        embedding: ImageEmbedding,
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor],
        multimask: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(1, K, 256, 256)`` and IoU ``(1, K)`` for one prompt set.

        Parameters
        ----------
        coords, labels:
            ``(1, N, 2)`` float32 model-input x, y and ``(1, N)`` int labels
            (1 fg, 0 bg), or None.
        boxes:
            ``(1, 4)`` float32 model-input ``x0, y0, x1, y1`` or None; fed as
            two corner points (labels 2, 3) before the clicks.
        mask_input:
            ``(1, 1, 256, 256)`` logits or None; clamped to +-32 first, as the
            official predictor hands its logits out clamped.
        multimask:
            3 candidates in token order; else 1, falling back to the best
            multimask candidate when the single mask is unstable (official
            image-predictor behaviour, whatever the number of prompts).
        """
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=corners.device).expand(corners.shape[0], 2)
            if coords is None:
                coords, labels = corners, corner_labels
            else:
                coords = torch.cat([corners, coords], dim=1)
                labels = torch.cat([corner_labels, labels.to(torch.int)], dim=1)
        if mask_input is not None:
            mask_input = mask_input.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        return self.decode_prompts(
            embedding.features, embedding.high_res_features, coords, labels, mask_input, multimask
        )
