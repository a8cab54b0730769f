"""Immutable values that cross the boundaries of :mod:`sam_core`.

Coordinate conventions (used everywhere in this package):

* Images are ``(H, W, 3)`` ``uint8`` RGB arrays; ``original_size`` is ``(H, W)``.
* Points are ``(N, 2)`` float arrays, **x then y**, in original-image pixels.
* Boxes are ``(4,)`` float arrays ``x0, y0, x1, y1`` in original-image pixels.
* ``input_size`` is ``(h, w)`` of the image after its longest side was resized
  to the model's input size (1024), before padding.
* Low-resolution logits are ``(256, 256)`` float32 maps over the padded
  1024 x 1024 model input.

Nothing here holds per-image state on a predictor: an :class:`ImageEmbedding`
is a frozen value that may be handed between threads and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

LOW_RES = 256  # side of the decoder's low-resolution mask logits


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """The image encoder's output for one image.

    Attributes
    ----------
    features:
        ``(1, C, 64, 64)`` tensor on the model's device (C = 256), in the
        encoder's output dtype.
    original_size:
        ``(H, W)`` of the image that was encoded.
    input_size:
        ``(h, w)`` after resizing the longest side to 1024 (before padding).
    model_type:
        Model type that produced it, e.g. ``"vit_t"``. Decoding with a model of
        another type is an error.
    high_res_features:
        Extra, finer feature levels (SAM 2 only); empty for SAM 1 models.
    """

    features: torch.Tensor
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    model_type: str
    high_res_features: Tuple[torch.Tensor, ...] = ()

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ImageEmbedding":
        """Return a copy whose tensors live on ``device`` (and ``dtype`` if given)."""
        conv = (lambda t: t.to(device=device, dtype=dtype)) if dtype else (lambda t: t.to(device))
        return ImageEmbedding(
            features=conv(self.features),
            original_size=self.original_size,
            input_size=self.input_size,
            model_type=self.model_type,
            high_res_features=tuple(conv(t) for t in self.high_res_features),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (used to bound in-memory caches)."""
        tensors = (self.features, *self.high_res_features)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate masks for one prompt, ranked by predicted IoU.

    Attributes
    ----------
    scores:
        ``(K,)`` float32 predicted IoU, sorted in descending order.
    low_res_logits:
        ``(K, 256, 256)`` float32 logits in the same order; any one of them can
        be passed back to :meth:`Predictor.decode` as ``mask_input``.
    original_size, input_size:
        As in :class:`ImageEmbedding`.

    K is 3 for multimask output, 1 otherwise. Full-resolution masks are
    computed lazily, one candidate at a time.
    """

    scores: np.ndarray
    low_res_logits: np.ndarray
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    model_type: str = ""
    mask_threshold: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def mask(self, i: int) -> np.ndarray:
        """Candidate ``i`` as an ``(H, W)`` bool mask at the original resolution.

        Uses the official upsampling: bilinear 256 -> 1024, crop to
        ``input_size``, bilinear to ``original_size``, threshold at 0.
        """
        key = ("full", i)
        if key not in self._cache:
            logits = torch.from_numpy(self.low_res_logits[i : i + 1]).unsqueeze(0)
            self._cache[key] = upscale_logits(logits, self.input_size, self.original_size)[0, 0].gt(
                self.mask_threshold
            ).numpy()
        return self._cache[key]

    def masks(self) -> np.ndarray:
        """All candidates, ``(K, H, W)`` bool, at the original resolution."""
        return np.stack([self.mask(i) for i in range(len(self))])

    def preview(self, i: int, size: Tuple[int, int]) -> np.ndarray:
        """Candidate ``i`` as an ``(h, w)`` bool mask at a display size ``(h, w)``.

        Costs the same whatever the image size: the valid region of the
        low-resolution logits is resampled straight to ``size``. Use
        :meth:`mask` for the exact full-resolution mask (e.g. on accept).
        """
        return self._resample(slice(i, i + 1), size)[0]

    def previews(self, size: Tuple[int, int]) -> np.ndarray:
        """All candidates as ``(K, h, w)`` bool masks at a display size: :meth:`preview` of each, in one pass."""
        return self._resample(slice(None), size)

    @property
    def valid_low_res_logits(self) -> np.ndarray:
        """``(K, h, w)`` view of :attr:`low_res_logits` covering the image (the rest is padding).

        ``(h, w)`` is ``input_size / 4``, rounded: the part of the 256 x 256
        grid that :meth:`preview` resamples to the image's shape.
        """
        h_in, w_in = self.input_size
        hh = max(1, round(LOW_RES * h_in / 1024))
        ww = max(1, round(LOW_RES * w_in / 1024))
        return self.low_res_logits[:, :hh, :ww]

    def _resample(self, which: slice, size: Tuple[int, int]) -> np.ndarray:
        # a contiguous copy of the valid region: resampling a strided view is slower
        logits = torch.from_numpy(np.ascontiguousarray(self.valid_low_res_logits[which]))
        out = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        return out.numpy() > self.mask_threshold  # numpy's comparison: 5x faster than torch's here


def upscale_logits(
    low_res: torch.Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int], img_size: int = 1024
) -> torch.Tensor:
    """The official mask postprocessing.

    ``low_res``: ``(B, K, 256, 256)`` logits. Returns ``(B, K, H, W)`` logits:
    bilinear to ``img_size``, crop to ``input_size``, bilinear to ``original_size``.
    """
    x = F.interpolate(low_res.float(), (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded into the requested model.

    The message names the model type expected, what the file looks like
    instead (when that can be told), and the differing keys.
    """

    def __init__(self, message: str, *, detected_type: Optional[str] = None):
        super().__init__(message)
        self.detected_type = detected_type
