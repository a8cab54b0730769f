"""Immutable values that cross the boundaries of :mod:`sam_core`.

Coordinate conventions (used everywhere in this package):

* Images are ``(H, W, 3)`` ``uint8`` RGB arrays; ``original_size`` is ``(H, W)``.
* Points are ``(N, 2)`` float arrays, **x then y**, in original-image pixels.
* Boxes are ``(4,)`` float arrays ``x0, y0, x1, y1`` in original-image pixels.
* ``input_size`` is ``(h, w)`` of the image after its longest side was resized
  to the model's input size (1024), before padding.
* Low-resolution logits are ``(256, 256)`` float32 maps over the padded
  1024 x 1024 model input.
* A region is ``(x0, y0, x1, y1)`` int pixels of the full image, half-open:
  columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1`` (see :func:`clip_region`).

Regions
-------
An embedding of a region (``Predictor.encode(image, region=...)``) is an
ordinary embedding of the cropped pixels (``original_size`` is the crop's
size, so code that knows nothing of regions and checks ``original_size``
against the image refuses it rather than misplacing its masks) that also
records where the crop lies (``region``, ``image_size``). Its prompts are
still given in full-image pixels and its :class:`Candidates` give
full-image-size results, zero outside the region: the translation happens in
:meth:`sam_core.predictor.Predictor.decode` and in :class:`Candidates` only.

Nothing here holds per-image state on a predictor: an :class:`ImageEmbedding`
is a frozen value that may be handed between threads and cached.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

LOW_RES = 256  # side of the decoder's low-resolution mask logits

Region = Tuple[int, int, int, int]

#: Logit given to cells outside a region (relative to the mask threshold): well below it, and within
#: the range of SAM's own background logits, so it also works as a ``mask_input``.
OUTSIDE_LOGIT = -20.0

#: Longest side of :attr:`Candidates.valid_low_res_logits` of a region decode (see there).
MAX_GRID_SIDE = 1024


class PromptError(ValueError):
    """A prompt passed to :meth:`Predictor.decode` is invalid (the message says why)."""


class PromptOutsideRegion(PromptError):
    """A prompt reaches outside the region its embedding covers.

    Decode it on the whole-image embedding instead (test first with
    :meth:`ImageEmbedding.covers`). ``region`` and ``image_size`` say which
    part of which image the refusing embedding covers.
    """

    def __init__(self, message: str, *, region: Region, image_size: Tuple[int, int]):
        super().__init__(message)
        self.region = region
        self.image_size = image_size


def clip_region(region: Any, image_size: Tuple[int, int]) -> Optional[Region]:
    """The region an encode of ``region`` covers in an image of ``image_size`` ``(H, W)``.

    ``region`` is ``(x0, y0, x1, y1)`` in full-image pixels (numbers; corners
    in either order) or None. The result is in whole pixels, outward
    (``floor`` of the low corner, ``ceil`` of the high one), clipped to the
    image, as a tuple of 4 ints; None when ``region`` is None or covers the
    whole image (whose embedding is then the plain whole-image one). Use it
    to make a cache key before encoding
    (:meth:`sam_core.cache.EmbeddingCache.key_for_region`).

    Raises
    ------
    ValueError
        ``region`` is not 4 finite numbers, or does not overlap the image.
    """
    if region is None:
        return None
    try:
        values = [float(v) for v in np.asarray(region, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise ValueError(f"region must be 4 numbers (x0, y0, x1, y1), got {region!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"region must be 4 finite numbers (x0, y0, x1, y1), got {region!r}")
    H, W = int(image_size[0]), int(image_size[1])
    xa, xb = sorted((values[0], values[2]))
    ya, yb = sorted((values[1], values[3]))
    x0, y0 = max(0, math.floor(xa)), max(0, math.floor(ya))
    x1, y1 = min(W, math.ceil(xb)), min(H, math.ceil(yb))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"region {tuple(values)} does not overlap the {W} x {H} image (or is empty)")
    if (x0, y0, x1, y1) == (0, 0, W, H):
        return None
    return (x0, y0, x1, y1)


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """The image encoder's output for one image, or for one region of it.

    Attributes
    ----------
    features:
        ``(1, C, 64, 64)`` tensor on the model's device (C = 256), in the
        encoder's output dtype.
    original_size:
        ``(H, W)`` of the pixels that were encoded: the image, or the crop
        of a region embedding.
    input_size:
        ``(h, w)`` after resizing the longest side to 1024 (before padding).
    model_type:
        Model type that produced it, e.g. ``"vit_t"``. Decoding with a model of
        another type is an error.
    high_res_features:
        Extra, finer feature levels (SAM 2 only); empty for SAM 1 models.
    region:
        ``(x0, y0, x1, y1)`` of the full image that was encoded (half-open,
        see :func:`clip_region`), or None for the whole image.
    image_size:
        ``(H, W)`` of the full image for a region embedding, else None.
    """

    features: torch.Tensor
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    model_type: str
    high_res_features: Tuple[torch.Tensor, ...] = ()
    region: Optional[Region] = None
    image_size: Optional[Tuple[int, int]] = None

    def __post_init__(self) -> None:
        if self.region is None and self.image_size is None:
            return
        if self.region is None or self.image_size is None:
            raise ValueError("a region embedding needs both region and image_size")
        x0, y0, x1, y1 = (int(v) for v in self.region)
        H, W = (int(v) for v in self.image_size)
        if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
            raise ValueError(f"region {self.region} is not inside the {W} x {H} image")
        if (y1 - y0, x1 - x0) != tuple(int(v) for v in self.original_size):
            raise ValueError(
                f"region {self.region} is {x1 - x0} x {y1 - y0} pixels but original_size is {self.original_size}"
            )
        object.__setattr__(self, "region", (x0, y0, x1, y1))
        object.__setattr__(self, "image_size", (H, W))

    @property
    def full_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the full image: the frame of prompts and of the masks decoded from it."""
        return self.image_size if self.image_size is not None else tuple(self.original_size)

    def covers(self, points: Any = None, box: Any = None) -> bool:
        """Whether this embedding can decode a prompt: always for the whole image.

        For a region embedding: every point (``(N, 2)`` x, y full-image
        pixels, clamped onto the image first as :meth:`Predictor.decode`
        does) lies in ``[x0, x1) x [y0, y1)`` and the box (``x0, y0, x1, y1``,
        clamped onto the image) lies within the region's edges. Costs a few
        comparisons; a prompt for which it is False is refused by
        :meth:`Predictor.decode` with :class:`PromptOutsideRegion`. Malformed
        or non-finite prompts give False (decoding them elsewhere reports why).
        """
        if self.region is None:
            return True
        H, W = self.full_size
        x0, y0, x1, y1 = self.region
        try:
            if points is not None:
                p = _numbers(points).reshape(-1, 2)
                px = np.clip(p[:, 0], 0, W - 1)
                py = np.clip(p[:, 1], 0, H - 1)
                if not bool(((px >= x0) & (px < x1) & (py >= y0) & (py < y1)).all()):
                    return False
            if box is not None:
                b = _numbers(box).reshape(4)
                bx0, bx1 = sorted((float(np.clip(b[0], 0, W)), float(np.clip(b[2], 0, W))))
                by0, by1 = sorted((float(np.clip(b[1], 0, H)), float(np.clip(b[3], 0, H))))
                if not (bx0 >= x0 and by0 >= y0 and bx1 <= x1 and by1 <= y1):
                    return False
        except (TypeError, ValueError):
            return False
        return True

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ImageEmbedding":
        """Return a copy whose tensors live on ``device`` (and ``dtype`` if given)."""
        conv = (lambda t: t.to(device=device, dtype=dtype)) if dtype else (lambda t: t.to(device))
        return dataclasses.replace(
            self, features=conv(self.features), high_res_features=tuple(conv(t) for t in self.high_res_features)
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (used to bound in-memory caches)."""
        tensors = (self.features, *self.high_res_features)
        return sum(t.numel() * t.element_size() for t in tensors)


def _numbers(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("not finite")
    return arr


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate masks for one prompt, ranked by predicted IoU.

    Attributes
    ----------
    scores:
        ``(K,)`` float32 predicted IoU, sorted in descending order.
    low_res_logits:
        ``(K, 256, 256)`` float32 logits in the same order, in the frame of
        the embedding that was decoded (for a region embedding: over the
        region); any one of them can be passed back to
        :meth:`Predictor.decode` of that embedding as ``mask_input``. For
        another embedding of the same image use :meth:`logits_for`.
    original_size:
        ``(H, W)`` of the full image: the size of :meth:`mask`.
    input_size:
        As in the decoded :class:`ImageEmbedding`.
    region:
        ``(x0, y0, x1, y1)`` of a region embedding, or None. Every accessor
        but :attr:`low_res_logits` gives full-image results, below the
        threshold outside the region.

    K is 3 for multimask output, 1 otherwise. Full-resolution masks are
    computed lazily, one candidate at a time.
    """

    scores: np.ndarray
    low_res_logits: np.ndarray
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    model_type: str = ""
    mask_threshold: float = 0.0
    region: Optional[Region] = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def region_size(self) -> Tuple[int, int]:
        """``(h, w)`` of the region (the full image's ``original_size`` without one)."""
        if self.region is None:
            return tuple(self.original_size)
        x0, y0, x1, y1 = self.region
        return (y1 - y0, x1 - x0)

    def mask(self, i: int) -> np.ndarray:
        """Candidate ``i`` as an ``(H, W)`` bool mask at the original resolution.

        Uses the official upsampling: bilinear 256 -> 1024, crop to
        ``input_size``, bilinear to ``original_size``, threshold at 0. A
        region's candidate is upsampled to the region's size and placed in an
        all-False full-image mask.
        """
        key = ("full", i)
        if key not in self._cache:
            if self.region is None:
                self._cache[key] = self._upscale(i, tuple(self.original_size))
            else:
                x0, y0, x1, y1 = self.region
                full = np.zeros(tuple(self.original_size), dtype=bool)
                full[y0:y1, x0:x1] = self._upscale(i, self.region_size)
                self._cache[key] = full
        return self._cache[key]

    def _upscale(self, i: int, size: Tuple[int, int]) -> np.ndarray:
        """Candidate ``i`` upsampled over the decoded frame to ``size`` ``(h, w)``, thresholded (bool)."""
        logits = torch.from_numpy(self.low_res_logits[i : i + 1]).unsqueeze(0)
        return upscale_logits(logits, self.input_size, size)[0, 0].gt(self.mask_threshold).numpy()

    def masks(self) -> np.ndarray:
        """All candidates, ``(K, H, W)`` bool, at the original resolution."""
        return np.stack([self.mask(i) for i in range(len(self))])

    def preview(self, i: int, size: Tuple[int, int]) -> np.ndarray:
        """Candidate ``i`` as an ``(h, w)`` bool mask at a display size ``(h, w)``.

        Costs the same whatever the image size: the valid region of the
        low-resolution logits is resampled straight to ``size``. Use
        :meth:`mask` for the exact full-resolution mask (e.g. on accept).
        ``size`` is a display size of the full image, also for a region
        (whose logits are resampled onto the display pixels that fall in it).
        """
        return self._resample(slice(i, i + 1), size)[0]

    def previews(self, size: Tuple[int, int]) -> np.ndarray:
        """All candidates as ``(K, h, w)`` bool masks at a display size: :meth:`preview` of each, in one pass."""
        return self._resample(slice(None), size)

    @property
    def valid_low_res_logits(self) -> np.ndarray:
        """``(K, h, w)`` logits covering the full image, to be resampled to any display size.

        Without a region: a view of :attr:`low_res_logits` without its
        padding; ``(h, w)`` is ``input_size / 4``, rounded: the part of the
        256 x 256 grid that :meth:`preview` resamples to the image's shape.

        With a region: a full-image grid with the region's cell size (so its
        detail survives a resize to display size), at most
        :data:`MAX_GRID_SIDE` on its longest side; the region's logits
        resampled onto it, :data:`OUTSIDE_LOGIT` below the threshold
        elsewhere. Computed once, on first use.
        """
        if self.region is None:
            return self._region_logits
        key = ("grid",)
        if key not in self._cache:
            self._cache[key] = self._paste(slice(None), self._grid_size())
        return self._cache[key]

    def logits_for(self, i: int, embedding: "ImageEmbedding") -> np.ndarray:
        """Candidate ``i``'s ``(256, 256)`` logits in the frame of ``embedding``, as its ``mask_input``.

        ``embedding`` is of the same image (``full_size`` equal to
        :attr:`original_size`): the whole-image one, this region's or another
        region's. The logits are resampled bilinearly through full-image
        pixels; cells of ``embedding`` outside the region decoded here (and
        its padding) get :data:`OUTSIDE_LOGIT` below the threshold. For the
        embedding that produced them this is ``low_res_logits[i]`` itself.
        """
        if self.model_type and embedding.model_type != self.model_type:
            raise ValueError(f"these logits come from a {self.model_type!r} model, not {embedding.model_type!r}")
        if tuple(embedding.full_size) != tuple(self.original_size):
            raise ValueError(f"embedding is of a {embedding.full_size} image, these logits of {self.original_size}")
        if embedding.region == self.region and tuple(embedding.input_size) == tuple(self.input_size):
            return self.low_res_logits[i]
        H, W = self.original_size
        sx0, sy0, sx1, sy1 = self.region if self.region is not None else (0, 0, W, H)
        tx0, ty0, tx1, ty1 = embedding.region if embedding.region is not None else (0, 0, W, H)
        t_in, s_in = tuple(embedding.input_size), tuple(self.input_size)
        # a cell of a frame spans 4 model-input pixels; input_size spans the frame's region
        centres = np.arange(LOW_RES) + 0.5
        out = np.full((LOW_RES, LOW_RES), self.mask_threshold + OUTSIDE_LOGIT, dtype=np.float32)
        axes = []
        for c, (t0, t1), (s0, s1), t_n, s_n in (
            (0, (ty0, ty1), (sy0, sy1), t_in[0], s_in[0]),
            (1, (tx0, tx1), (sx0, sx1), t_in[1], s_in[1]),
        ):
            pix = t0 + centres * 4.0 * (t1 - t0) / t_n  # full-image coordinate of each target cell centre
            inside = np.flatnonzero((pix >= max(t0, s0)) & (pix < min(t1, s1)))
            if inside.size == 0:
                return out
            src = (pix[inside] - s0) * s_n / (4.0 * (s1 - s0)) - 0.5
            axes.append((slice(int(inside[0]), int(inside[-1]) + 1), src))
        (rows, ys), (cols, xs) = axes
        out[rows, cols] = _bilinear(self.low_res_logits[i : i + 1], ys, xs)[0]
        return out

    # -- resampling ---------------------------------------------------------------------------------

    @property
    def _region_logits(self) -> np.ndarray:
        """``(K, h, w)`` view of the part of :attr:`low_res_logits` that covers the decoded frame."""
        h_in, w_in = self.input_size
        hh = max(1, round(LOW_RES * h_in / 1024))
        ww = max(1, round(LOW_RES * w_in / 1024))
        return self.low_res_logits[:, :hh, :ww]

    def _resample(self, which: slice, size: Tuple[int, int]) -> np.ndarray:
        if self.region is not None:
            return self._paste(which, size) > self.mask_threshold
        # a contiguous copy of the valid region: resampling a strided view is slower
        logits = torch.from_numpy(np.ascontiguousarray(self.valid_low_res_logits[which]))
        out = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        return out.numpy() > self.mask_threshold  # numpy's comparison: 5x faster than torch's here

    def _grid_size(self) -> Tuple[int, int]:
        """Full-image grid with the region's cell size, capped at :data:`MAX_GRID_SIDE`."""
        H, W = self.original_size
        hr, wr = self.region_size
        hh, ww = self._region_logits.shape[1:]
        gh, gw = H * hh / hr, W * ww / wr
        f = min(1.0, MAX_GRID_SIDE / max(gh, gw))
        return max(1, round(gh * f)), max(1, round(gw * f))

    def _paste(self, which: slice, size: Tuple[int, int]) -> np.ndarray:
        """``(k, h, w)`` float32 logits of a region decode on an ``(h, w)`` grid over the full image.

        A grid cell takes the region's logits at its centre when the centre
        lies in the region (the valid logits span the region, pixel centres
        at half-integers, as :meth:`preview` without a region), else
        :data:`OUTSIDE_LOGIT` below the threshold.
        """
        h, w = int(size[0]), int(size[1])
        H, W = self.original_size
        x0, y0, x1, y1 = self.region
        src = self._region_logits[which]
        out = np.full((src.shape[0], h, w), self.mask_threshold + OUTSIDE_LOGIT, dtype=np.float32)
        axes = []
        for n, N, a0, a1, m in ((h, H, y0, y1, src.shape[1]), (w, W, x0, x1, src.shape[2])):
            centres = (np.arange(n) + 0.5) * (N / n)  # full-image coordinate of each cell's centre
            inside = np.flatnonzero((centres >= a0) & (centres < a1))
            if inside.size == 0:
                return out
            axes.append((slice(int(inside[0]), int(inside[-1]) + 1), (centres[inside] - a0) * (m / (a1 - a0)) - 0.5))
        (rows, ys), (cols, xs) = axes
        out[:, rows, cols] = _bilinear(src, ys, xs)
        return out


def _bilinear(src: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``src`` ``(k, h, w)`` sampled at rows ``ys`` x columns ``xs`` (pixel-centre coordinates).

    Bilinear, coordinates clamped to the grid (edge cells repeat): the
    arithmetic of ``F.interpolate(mode="bilinear", align_corners=False)``
    at arbitrary positions. Returns ``(k, len(ys), len(xs))`` float32.
    """
    k, h, w = src.shape

    def taps(coords: np.ndarray, n: int):
        c = np.clip(coords, 0, n - 1)
        lo = np.floor(c).astype(np.intp)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (c - lo).astype(np.float32)

    ylo, yhi, fy = taps(ys, h)
    xlo, xhi, fx = taps(xs, w)
    top, bottom = src[:, ylo, :], src[:, yhi, :]
    top = top[:, :, xlo] * (1 - fx) + top[:, :, xhi] * fx
    bottom = bottom[:, :, xlo] * (1 - fx) + bottom[:, :, xhi] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32, copy=False)


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
