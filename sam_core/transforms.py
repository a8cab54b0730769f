"""Image and prompt transforms of SAM 1: resize the longest side, normalise, pad.

The arithmetic is the official ``ResizeLongestSide``'s, without torchvision:

* target size: ``scale = L / max(H, W)``, ``h = int(H * scale + 0.5)``,
  ``w = int(W * scale + 0.5)`` (``L = 1024``);
* the image is resized with Pillow's bilinear filter (what the reference
  calls through torchvision on a PIL image), so the pixels are identical;
* point x coordinates are scaled by ``w / W`` and y by ``h / H`` (float64,
  as in the reference, then float32 for the model).

Images are ``(H, W, 3)`` uint8 RGB; points ``(..., 2)`` x then y in
original-image pixels; boxes ``(..., 4)`` ``x0, y0, x1, y1``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "preprocess_shape",
    "resize_longest_side",
    "normalize_and_pad",
    "apply_coords",
    "apply_boxes",
]


def preprocess_shape(height: int, width: int, long_side: int = 1024) -> Tuple[int, int]:
    """``(h, w)`` of an ``height x width`` image resized so its longest side is ``long_side``.

    Same float arithmetic as the reference's ``get_preprocess_shape``; a side
    never rounds below 1 pixel (the reference would fail there).
    """
    scale = long_side * 1.0 / max(height, width)
    new_h = int(height * scale + 0.5)
    new_w = int(width * scale + 0.5)
    return max(1, new_h), max(1, new_w)


def resize_longest_side(image: np.ndarray, long_side: int = 1024) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image so that its longest side is ``long_side``.

    Returns an ``(h, w, 3)`` uint8 array (see :func:`preprocess_shape`),
    pixel-identical to the reference. Each channel is resized on its own as
    an 8-bit Pillow image (the same fixed-point filter as an RGB image), so a
    huge photo costs one extra single-channel copy at full resolution, never
    a float or 4-byte-per-pixel copy.
    """
    H, W = image.shape[:2]
    h, w = preprocess_shape(H, W, long_side)
    out = np.empty((h, w, image.shape[2]), dtype=np.uint8)
    for c in range(image.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(image[:, :, c]))
        out[:, :, c] = np.asarray(band.resize((w, h), Image.BILINEAR))
        del band
    return out


def normalize_and_pad(
    resized: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, size: int = 1024
) -> torch.Tensor:
    """``(h, w, 3)`` uint8 tensor -> normalised ``(1, 3, size, size)`` float32, zero-padded.

    ``pixel_mean`` and ``pixel_std`` are ``(3, 1, 1)``; the image is
    normalised first and then padded at the bottom and right, as in the
    reference (so the padding is 0 after normalisation).
    """
    h, w = resized.shape[:2]
    x = (resized.permute(2, 0, 1).unsqueeze(0) - pixel_mean) / pixel_std
    return F.pad(x, (0, size - w, 0, size - h))


def apply_coords(coords: np.ndarray, original_size: Tuple[int, int], long_side: int = 1024) -> np.ndarray:
    """Map ``(..., 2)`` points (x, y) from original pixels to the resized-image frame.

    ``original_size`` is ``(H, W)``. Returns float64, like the reference.
    """
    H, W = original_size
    h, w = preprocess_shape(H, W, long_side)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (w / W)
    out[..., 1] = out[..., 1] * (h / H)
    return out


def apply_boxes(boxes: np.ndarray, original_size: Tuple[int, int], long_side: int = 1024) -> np.ndarray:
    """Map ``(..., 4)`` boxes ``x0, y0, x1, y1`` to the resized-image frame (float64)."""
    boxes = np.asarray(boxes)
    return apply_coords(boxes.reshape(-1, 2, 2), original_size, long_side).reshape(boxes.shape)
