"""The pixel helpers every picture of :mod:`annotator.render` shares (Qt: :class:`QImage` only).

Colours are ``(r, g, b)`` 0-255; masks ``(h, w)`` bool.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from PySide6.QtGui import QImage

Color = Tuple[int, int, int]


def _premultiplied(color: Color, alpha: float) -> np.uint32:
    a = int(round(255 * alpha))
    r, g, b = (int(round(c * a / 255)) for c in color)
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner band of ``mask`` ``(h, w)`` bool, ``width`` pixels wide (4-neighbourhood).

    A pixel of the mask is in the band when a path of at most ``width``
    steps (up, down, left, right) leads from it out of the mask or out of
    the image. Computed by OpenCV's erosion with a cross.
    """
    import cv2

    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.size == 0:
        return mask.copy()
    inner = cv2.erode(mask.view(np.uint8), _CROSS, iterations=max(1, width),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~inner.view(bool)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def _argb_image(argb: np.ndarray) -> QImage:
    h, w = argb.shape
    image = QImage(argb.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()  # own the pixels: the numpy buffer goes away


def rgb_image(rgb: np.ndarray) -> QImage:
    """``(H, W, 3)`` uint8 RGB -> an RGB32 QImage that owns its pixels (cheap to turn into a pixmap)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.convertToFormat(QImage.Format.Format_RGB32)
