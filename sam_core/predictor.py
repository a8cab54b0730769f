"""Encode an image once, decode prompts per click.

:class:`Predictor` holds no per-image state: :meth:`Predictor.encode` returns
an immutable :class:`~sam_core.types.ImageEmbedding` and
:meth:`Predictor.decode` takes one back, so embeddings can be cached, passed
between threads and decoded in any order.

Coordinates are original-image pixels, **x then y**:

* ``points``: ``(N, 2)`` float;
* ``labels``: ``(N,)`` int, 1 = foreground, 0 = background;
* ``box``: ``(4,)`` ``x0, y0, x1, y1``;
* ``mask_input``: ``(256, 256)`` low-res logits of an earlier candidate.

A region embedding (``encode(image, region=...)``) takes its prompts in
full-image pixels too: :meth:`Predictor.decode` checks that they lie in the
region (else :class:`~sam_core.types.PromptOutsideRegion`) and translates
them into the crop; its candidates give full-image masks.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .build import SamModel
from .types import Candidates, ImageEmbedding, PromptError, PromptOutsideRegion, clip_region

__all__ = ["Predictor", "PromptError", "PromptOutsideRegion"]

LOW_RES = 256

_HALF = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def _encoder_dtype(choice: Union[str, torch.dtype, None], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of the encoder on ``device``, or None for plain fp32.

    ``"auto"``: fp16 on CUDA, fp32 elsewhere. fp16 rather than bf16 because
    the masks must match fp32 (IoU >= 0.99): with MobileSAM on real photos
    bf16 features are ~2 % off fp32 and single masks drop to IoU 0.98 (some
    candidates 0.96), fp16 features ~0.2 % off with IoU >= 0.994 (measured
    with CPU autocast; the number formats are the same on CUDA). An fp16
    overflow is caught: see :meth:`Predictor.encode`.
    """
    if choice is None or choice == torch.float32 or choice in ("fp32", "float32"):
        return None
    if choice == "auto":
        return torch.float16 if device.type == "cuda" else None
    dtype = _HALF.get(choice, choice) if isinstance(choice, str) else choice
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"encoder_dtype must be 'auto', 'fp32', 'fp16' or 'bf16', got {choice!r}")
    return dtype


class Predictor:
    """Runs a :class:`~sam_core.build.SamModel`: ``encode`` per image, ``decode`` per prompt.

    Parameters
    ----------
    model:
        A loaded model (see :func:`sam_core.load_model`). It is only read.
    encoder_dtype:
        Precision of the image encoder: ``"auto"`` (fp16 autocast on CUDA,
        fp32 elsewhere), ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast on the
        model's device). The prompt decoder always runs in fp32.
    """

    def __init__(self, model: SamModel, encoder_dtype: Union[str, torch.dtype] = "auto") -> None:
        self.model = model
        self.encoder_dtype = encoder_dtype
        _encoder_dtype(encoder_dtype, torch.device("cpu"))  # validate early

    @property
    def device(self) -> torch.device:
        """The model's device."""
        return self.model.device

    @property
    def model_type(self) -> str:
        """The model's type, e.g. ``"vit_t"``."""
        return self.model.model_type

    # -- encode ---------------------------------------------------------------------------------

    def encode(self, image: np.ndarray, region: Any = None) -> ImageEmbedding:
        """Run the image encoder on the image, or on a region of it.

        Parameters
        ----------
        image:
            ``(H, W, 3)`` uint8 RGB array, any size (1 x 1 included).
        region:
            ``(x0, y0, x1, y1)`` full-image pixels to encode instead of the
            whole image, e.g. the part a zoomed-in user is looking at: the
            rectangle is clipped to the image (see
            :func:`~sam_core.types.clip_region`), cropped at full resolution
            and resized to the model's input like an image: SAM sees it
            ``max(H, W) / max(region side)`` times finer than in the
            whole-image embedding (native pixels at a 1024 px region). None,
            or a region that covers the whole image, encodes the whole image
            exactly as without it.

        Returns
        -------
        ImageEmbedding
            ``features`` ``(1, 256, 64, 64)`` on the model's device,
            ``original_size = (H, W)`` (of the crop for a region, which also
            sets ``region`` and ``image_size``), ``input_size = (h, w)`` after
            resizing the longest side to 1024. On CUDA the encoder runs under fp16
            autocast by default (see ``encoder_dtype``), falling back to fp32
            for an image whose half-precision features are not finite;
            elsewhere in fp32.

        Raises
        ------
        ValueError
            ``image`` is not an ``(H, W, 3)`` uint8 array, or ``region`` is
            not 4 finite numbers overlapping it.
        """
        (embedding,) = self.encode_batch([image], None if region is None else [region])
        return embedding

    def encode_batch(
        self, images: Sequence[np.ndarray], regions: Optional[Sequence[Any]] = None
    ) -> List[ImageEmbedding]:
        """Run the image encoder on several images in one forward pass.

        Each result is what :meth:`encode` gives for that image (the same
        arithmetic, up to the last bits of batched kernels), and owns its
        memory: keeping one embedding does not keep the batch alive. Worth it
        on a GPU, where one pass over ``B`` images is faster than ``B`` passes;
        on a CPU it only raises peak memory (about 64 MB per image of input and
        activations for ViT-B at a time). The images may differ in size.
        ``regions``, if given, has one entry per image: None or the
        ``region`` of :meth:`encode` (several regions of one image are
        several entries with the same image).

        Raises
        ------
        ValueError
            One of ``images`` is not an ``(H, W, 3)`` uint8 array or one of
            ``regions`` is invalid (the message says which); nothing is
            encoded then.
        """
        images = list(images)
        regions = [None] * len(images) if regions is None else list(regions)
        if len(regions) != len(images):
            raise ValueError(f"{len(regions)} regions for {len(images)} images: give one (or None) per image")
        clipped = []
        for i, (image, region) in enumerate(zip(images, regions)):
            try:
                _check_image(image)
                clipped.append(clip_region(region, image.shape[:2]))
            except ValueError as exc:
                raise ValueError(f"image {i} of the batch: {exc}" if len(images) > 1 else str(exc)) from None
        if not images:
            return []
        full_sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
        images = [image if r is None else image[r[1] : r[3], r[0] : r[2]] for image, r in zip(images, clipped)]
        model = self.model
        dtype = _encoder_dtype(self.encoder_dtype, model.device)
        with torch.inference_mode():
            inputs = [model.preprocess(image) for image in images]
            x = inputs[0][0] if len(inputs) == 1 else torch.cat([t for t, _ in inputs])
            if dtype is None:
                features, high_res = model.embed(x)
            else:
                with torch.autocast(device_type=model.device.type, dtype=dtype):
                    features, high_res = model.embed(x)
                # half precision can overflow on some image: redo just those exactly
                bad = [i for i in range(len(images)) if not _finite(i, features, *high_res)]
                if bad:
                    features, high_res = features.float(), tuple(t.float() for t in high_res)
                for i in bad:
                    exact, exact_high_res = model.embed(x[i : i + 1])
                    features[i : i + 1] = exact
                    for t, e in zip(high_res, exact_high_res):
                        t[i : i + 1] = e
            del x
            out = []
            for i, (image, (_, input_size)) in enumerate(zip(images, inputs)):
                out.append(
                    ImageEmbedding(
                        features=_own(features, i, len(images)),
                        original_size=(int(image.shape[0]), int(image.shape[1])),
                        input_size=(int(input_size[0]), int(input_size[1])),
                        model_type=model.model_type,
                        high_res_features=tuple(_own(t, i, len(images)) for t in high_res),
                        region=clipped[i],
                        image_size=None if clipped[i] is None else full_sizes[i],
                    )
                )
        return out

    # -- decode ---------------------------------------------------------------------------------

    def decode(
        self,
        embedding: ImageEmbedding,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
    ) -> Candidates:
        """Predict candidate masks for one prompt.

        Parameters
        ----------
        embedding:
            From :meth:`encode` with a model of the same type; of the whole
            image or of a region (then the prompt must lie in the region:
            see :meth:`ImageEmbedding.covers`).
        points:
            ``(N, 2)`` float, x then y, original-image pixels (of the full
            image, also for a region). Points outside the image are clamped
            onto it (``[0, W-1] x [0, H-1]``).
        labels:
            ``(N,)`` int, 1 = foreground, 0 = background; required with points.
        box:
            ``(4,)`` ``x0, y0, x1, y1`` in original pixels; corners are reordered
            if inverted and clamped to ``[0, W] x [0, H]``; zero-size boxes are
            allowed.
        mask_input:
            ``(256, 256)`` (or ``(1, 256, 256)``) float logits, numpy or torch,
            in this embedding's frame: e.g. ``candidates.low_res_logits[0]``
            of an earlier decode of the same embedding, or
            ``candidates.logits_for(0, embedding)`` of another one.
        multimask:
            Three candidates (True) or SAM's single-mask output (False).

        Returns
        -------
        Candidates
            ``scores`` ``(K,)`` predicted IoU in descending order and
            ``low_res_logits`` ``(K, 256, 256)`` float32 in the same order;
            K = 3 with ``multimask``, else 1. Full-resolution masks are computed
            lazily by :meth:`Candidates.mask`; they and the previews are of the
            full image also for a region (False outside it).

        Raises
        ------
        PromptError
            Empty prompt, NaN/inf values, wrong shapes, labels other than 0/1,
            or labels that do not match the points.
        PromptOutsideRegion
            (a PromptError) ``embedding`` is of a region that does not
            contain every point and the box: decode on the whole image.
        ValueError
            ``embedding`` comes from another model type.
        """
        model = self.model
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError(f"embedding must be an ImageEmbedding, not {type(embedding).__name__}")
        if embedding.model_type != model.model_type:
            raise ValueError(
                f"embedding was computed by a {embedding.model_type!r} model; this predictor runs "
                f"{model.model_type!r}. Re-encode the image with this model."
            )
        full_size = tuple(embedding.full_size)
        pts, lbl = _check_points(points, labels, full_size)
        bx = _check_box(box, full_size)
        mask = _check_mask(mask_input)
        if pts is None and bx is None and mask is None:
            raise PromptError("empty prompt: give at least one point, a box or a mask_input")
        H, W = embedding.original_size
        if embedding.region is not None:
            pts, bx = _into_region(embedding, pts, bx)

        device = model.device
        coords_t = labels_t = box_t = mask_t = None
        if pts is not None:
            coords = model.transform_coords(pts, (H, W))
            coords_t = torch.from_numpy(coords.astype(np.float32)).to(device).unsqueeze(0)
            labels_t = torch.from_numpy(lbl).to(device).unsqueeze(0)
        if bx is not None:
            corners = model.transform_coords(bx.reshape(2, 2), (H, W))
            box_t = torch.from_numpy(corners.reshape(1, 4).astype(np.float32)).to(device)
        if mask is not None:
            mask_t = mask.to(device=device, dtype=torch.float32).reshape(1, 1, LOW_RES, LOW_RES)

        if embedding.features.device != device:
            embedding = embedding.to(device)
        with torch.inference_mode():
            logits, iou = model.predict_low_res(embedding, coords_t, labels_t, box_t, mask_t, bool(multimask))
            logits = logits[0].float().cpu().numpy()
            iou = iou[0].float().cpu().numpy()
        order = np.argsort(-iou, kind="stable")
        return getattr(model, "candidates_type", Candidates)(
            scores=np.ascontiguousarray(iou[order], dtype=np.float32),
            low_res_logits=np.ascontiguousarray(logits[order], dtype=np.float32),
            original_size=full_size,
            input_size=tuple(embedding.input_size),
            model_type=model.model_type,
            mask_threshold=float(model.mask_threshold),
            region=embedding.region,
        )


# -- validation -----------------------------------------------------------------------------------


def _into_region(
    embedding: ImageEmbedding, pts: Optional[np.ndarray], bx: Optional[np.ndarray]
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Validated full-image points and box -> the crop's pixels of a region embedding.

    Raises :class:`PromptOutsideRegion` unless the region covers them. Points
    are clamped onto the crop's pixel grid as onto an image's.
    """
    if not embedding.covers(pts, bx):
        x0, y0, x1, y1 = embedding.region
        H, W = embedding.full_size
        raise PromptOutsideRegion(
            f"the prompt reaches outside the region x {x0}..{x1}, y {y0}..{y1} of the {W} x {H} image "
            "that this embedding covers; decode it on the whole-image embedding",
            region=embedding.region,
            image_size=(H, W),
        )
    x0, y0 = embedding.region[:2]
    h, w = embedding.original_size
    if pts is not None:
        pts = pts - np.array([x0, y0], dtype=np.float64)
        np.clip(pts[:, 0], 0, w - 1, out=pts[:, 0])
        np.clip(pts[:, 1], 0, h - 1, out=pts[:, 1])
    if bx is not None:
        bx = np.clip(bx - np.array([x0, y0, x0, y0], dtype=np.float64), 0, [w, h, w, h])
    return pts, bx


def _finite(i: int, *batches: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t[i]).all()) for t in batches)


def _own(batch: torch.Tensor, i: int, n: int) -> torch.Tensor:
    """Item ``i`` of a batch of ``n`` as a ``(1, ...)`` tensor with its own storage, in the batch's layout."""
    if n == 1:
        return batch
    return batch[i : i + 1].clone()  # preserve_format keeps channels-last


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array of shape (H, W, 3), not {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255 RGB), got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name} must be numeric: {exc}") from None


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        raise PromptError(f"{name} contains NaN or infinite values: {arr.tolist() if arr.size <= 16 else '...'}")


def _check_points(points: Any, labels: Any, size: Tuple[int, int]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Validated ``(N, 2)`` float64 points clamped to the pixel grid ``[0, W-1] x [0, H-1]``,
    and ``(N,)`` int32 labels."""
    if points is None:
        if labels is not None and np.asarray(labels).size:
            raise PromptError("labels were given without points")
        return None, None
    pts = _as_array(points, "points")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points must have shape (N, 2) (x, y), got {pts.shape}")
    if labels is None:
        raise PromptError("points need labels: (N,) with 1 = foreground, 0 = background")
    lbl = _as_array(labels, "labels")
    if lbl.ndim != 1 or lbl.shape[0] != pts.shape[0]:
        raise PromptError(f"labels must have shape ({pts.shape[0]},) to match the points, got {lbl.shape}")
    _check_finite(pts, "points")
    if not np.isin(lbl, (0.0, 1.0)).all():
        raise PromptError(f"labels must be 0 (background) or 1 (foreground), got {np.unique(lbl).tolist()}")
    if pts.shape[0] == 0:
        return None, None
    H, W = size
    pts = pts.copy()
    np.clip(pts[:, 0], 0, W - 1, out=pts[:, 0])
    np.clip(pts[:, 1], 0, H - 1, out=pts[:, 1])
    return pts, lbl.astype(np.int32)


def _check_box(box: Any, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """Validated ``(4,)`` float64 box with ordered corners, clamped to ``[0, W] x [0, H]``."""
    if box is None:
        return None
    b = _as_array(box, "box")
    if b.size != 4 or b.ndim > 2:
        raise PromptError(f"box must have shape (4,) (x0, y0, x1, y1), got {b.shape}")
    b = b.reshape(4)
    _check_finite(b, "box")
    H, W = size
    x0, x1 = sorted((float(np.clip(b[0], 0, W)), float(np.clip(b[2], 0, W))))
    y0, y1 = sorted((float(np.clip(b[1], 0, H)), float(np.clip(b[3], 0, H))))
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def _check_mask(mask_input: Any) -> Optional[torch.Tensor]:
    """Validated mask logits as a float32 ``(256, 256)`` CPU or device tensor."""
    if mask_input is None:
        return None
    if isinstance(mask_input, torch.Tensor):
        m = mask_input.detach()
    else:
        try:
            m = torch.from_numpy(np.asarray(mask_input, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise PromptError(f"mask_input must be numeric: {exc}") from None
    if tuple(m.shape) not in ((LOW_RES, LOW_RES), (1, LOW_RES, LOW_RES), (1, 1, LOW_RES, LOW_RES)):
        raise PromptError(f"mask_input must be (256, 256) low-res logits, got shape {tuple(m.shape)}")
    if not m.is_floating_point():
        m = m.float()
    if not bool(torch.isfinite(m).all()):
        raise PromptError("mask_input contains NaN or infinite values")
    return m.reshape(LOW_RES, LOW_RES)
