"""Decoding a batch of single-point prompts for the automatic generator.

One batch of ``B`` points, each its own foreground prompt, against one image
embedding; the result is the same as the model protocol's
``predict_low_res(embedding, coords (B, 1, 2), labels (B, 1), None, None, True)``
restricted to what the generator reads. For SAM 1 models (:class:`Sam`, MobileSAM
included) two parts of the work are skipped, both exactly:

* **Rejected prompts.** The predicted IoU needs only the transformer and the
  IoU head; the mask upscaling (about 40 % of a click's arithmetic) runs only
  for prompts with at least one candidate above the generator's
  ``pred_iou_thresh``. The others' logits are ``-inf`` (the generator drops
  those candidates on their IoU before it reads any logit).
* **Padding.** A photo that is not square fills only part of the padded
  1024 x 1024 model input. The upscaling acts on each cell of the 64 x 64
  feature grid alone, so it is computed on the top-left ``window`` of cells
  that cover the photo (plus one: the bilinear upsampling of the last rows
  reads one low-res row beyond them), and the logits returned cover only
  that window.

A model whose ``predict_low_res`` is replaced (a wrapper, a test double) or
that is not a SAM 1 model is decoded through its ``predict_low_res``, and its
logits are cut to the same window.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from .modeling.sam import Sam
from .types import ImageEmbedding

__all__ = ["decode_points", "logit_window"]


def logit_window(input_size: Tuple[int, int], grid: int = 64, image_size: int = 1024) -> Tuple[int, int]:
    """``(rows, cols)`` of feature cells whose logits the generator reads for an image of ``input_size``.

    ``input_size`` ``(h, w)``: the resized image inside the padded
    ``image_size`` square. The generator upsamples the low-res logits
    (4 per cell) by ``image_size / (4 * grid)`` (bilinear, half-pixel
    centres) and crops to ``input_size``; output row ``y`` reads low-res rows
    ``floor((y + 0.5) / s - 0.5)`` and the next, so one cell more than the
    photo covers keeps every row read inside the window and away from its edge.
    """
    cell = image_size / grid
    rows = min(grid, math.ceil(input_size[0] / cell) + 1)
    cols = min(grid, math.ceil(input_size[1] / cell) + 1)
    return int(rows), int(cols)


def decode_points(
    model: object,
    embedding: ImageEmbedding,
    points: np.ndarray,
    iou_thresh: float,
    window: Optional[Tuple[int, int]],
    max_batch: int,
    between: Optional[Callable[[], None]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode single-point prompts, at most ``max_batch`` at once.

    Parameters
    ----------
    model:
        The model protocol (``transform_coords``, ``predict_low_res``, ``device``).
    embedding:
        The image embedding; ``points`` are in pixels of its ``original_size``.
    points:
        ``(B, 2)`` float64, x then y; each is its own foreground prompt.
    iou_thresh:
        Candidates with predicted IoU ``<=`` this are not needed (0: all are).
    window:
        ``(rows, cols)`` feature cells of logits needed (see :func:`logit_window`),
        or ``None`` for all ``256 x 256`` logits.
    between:
        Called between two decodes of ``max_batch`` prompts (e.g. to raise on
        a cancel request, so that a cancel waits for one decode, not all).

    Returns
    -------
    low_res, iou
        ``(B, 3, 4 rows, 4 cols)`` logits (top-left part of the padded model
        input; ``-inf`` for a prompt none of whose candidates passes
        ``iou_thresh`` on the SAM 1 path) and ``(B, 3)`` predicted IoU
        (multimask output, token order).
    """
    device = model.device  # type: ignore[attr-defined]
    if embedding.features.device != device:
        embedding = embedding.to(device)
    coords = model.transform_coords(points, tuple(embedding.original_size))  # type: ignore[attr-defined]
    coords_t = torch.as_tensor(np.asarray(coords, dtype=np.float32), device=device).reshape(-1, 1, 2)
    labels_t = torch.ones((coords_t.shape[0], 1), dtype=torch.int32, device=device)
    decode = _split_decode if _is_plain_sam(model) else _protocol_decode
    parts = []
    for s in range(0, coords_t.shape[0], max_batch):
        if s and between is not None:
            between()
        parts.append(
            decode(model, embedding, coords_t[s : s + max_batch], labels_t[s : s + max_batch], iou_thresh, window)
        )
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _is_plain_sam(model: object) -> bool:
    """A SAM 1 model whose ``predict_low_res`` is :class:`Sam`'s own (not replaced on the class or object)."""
    return (
        isinstance(model, Sam)
        and type(model).predict_low_res is Sam.predict_low_res
        and "predict_low_res" not in vars(model)
    )


def _protocol_decode(
    model: object,
    embedding: ImageEmbedding,
    coords: torch.Tensor,
    labels: torch.Tensor,
    iou_thresh: float,
    window: Optional[Tuple[int, int]],
) -> Tuple[torch.Tensor, torch.Tensor]:
    low_res, iou = model.predict_low_res(embedding, coords, labels, None, None, True)  # type: ignore[attr-defined]
    if window is not None:
        scale = low_res.shape[-1] // embedding.features.shape[-1]
        low_res = low_res[..., : window[0] * scale, : window[1] * scale]
    return low_res, iou


def _split_decode(
    model: Sam,
    embedding: ImageEmbedding,
    coords: torch.Tensor,
    labels: torch.Tensor,
    iou_thresh: float,
    window: Optional[Tuple[int, int]],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``Sam.predict_low_res`` in its steps, upscaling only the masks needed."""
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    features = embedding.features
    if features.dtype != torch.float32:
        features = features.float()
    decoder = model.mask_decoder
    tokens, keys, hw = decoder.run_transformer(features, model.prompt_encoder.get_dense_pe(), sparse, dense)
    multimask = slice(1, decoder.num_mask_tokens)
    iou = decoder.iou_from_tokens(tokens, multimask)
    if iou_thresh <= 0.0:
        return decoder.masks_from_tokens(tokens, keys, hw, multimask, window), iou
    needed = torch.nonzero((iou > iou_thresh).any(dim=1)).flatten()
    if needed.numel() == iou.shape[0]:
        return decoder.masks_from_tokens(tokens, keys, hw, multimask, window), iou
    rows, cols = window if window is not None else hw
    rows, cols = min(rows, hw[0]), min(cols, hw[1])
    side = decoder.output_upscaling[0].stride[0] * decoder.output_upscaling[3].stride[0]  # 4
    low_res = torch.full(
        (iou.shape[0], iou.shape[1], side * rows, side * cols), float("-inf"), dtype=iou.dtype, device=iou.device
    )
    if needed.numel():
        low_res[needed] = decoder.masks_from_tokens(tokens[needed], keys[needed], hw, multimask, window)
    return low_res, iou
