"""sam_core: Segment Anything inference in plain PyTorch + NumPy.

Public API (stable; the application imports nothing else)::

    model = load_model("vit_t", checkpoint=None, device="auto")   # -> SamModel
    predictor = Predictor(model)
    emb = predictor.encode(image)            # image: (H, W, 3) uint8 RGB -> ImageEmbedding
    cands = predictor.decode(emb, points=pts, labels=lbl, box=None, mask_input=None)
    cands.scores          # (3,) predicted IoU, descending
    cands.low_res_logits  # (3, 256, 256), same order
    cands.mask(0)         # (H, W) bool at the original resolution

    # a region (x0, y0, x1, y1) of a large image, seen at full resolution:
    part = predictor.encode(image, region=(2000, 1500, 3024, 2524))
    if part.covers(pts):                     # prompts stay in full-image pixels
        cands = predictor.decode(part, points=pts, labels=lbl)   # masks: (H, W), False outside

Coordinates: points are (N, 2) float, x then y, in original-image pixels;
boxes are (4,) x0, y0, x1, y1. See :mod:`sam_core.types`.

This package never imports Qt, torchvision or the ``annotator`` package.
Names are resolved lazily so that importing one part does not pull in all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    # values
    "ImageEmbedding": "sam_core.types",
    "Candidates": "sam_core.types",
    "CheckpointError": "sam_core.types",
    "clip_region": "sam_core.types",
    # models and prediction
    "MODEL_TYPES": "sam_core.build",
    "SamModel": "sam_core.build",
    "load_model": "sam_core.build",
    "build_model": "sam_core.build",
    "load_checkpoint": "sam_core.build",
    "detect_model_type": "sam_core.build",
    "resolve_device": "sam_core.build",
    "Predictor": "sam_core.predictor",
    "PromptError": "sam_core.predictor",
    "PromptOutsideRegion": "sam_core.predictor",
    # checkpoint registry, download and cache
    "CHECKPOINTS": "sam_core.checkpoints",
    "CheckpointDownloadError": "sam_core.checkpoints",
    "cache_dir": "sam_core.checkpoints",
    "checkpoint_path": "sam_core.checkpoints",
    "ensure_checkpoint": "sam_core.checkpoints",
    "list_models": "sam_core.checkpoints",
    "verify_checkpoint": "sam_core.checkpoints",
    "DownloadCancelled": "sam_core.checkpoints",
    # embedding cache
    "EmbeddingCache": "sam_core.cache",
    # segment everything
    "AutomaticMaskGenerator": "sam_core.amg",
    "Cancelled": "sam_core.amg",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sam_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .amg import AutomaticMaskGenerator, Cancelled
    from .build import MODEL_TYPES, SamModel, build_model, detect_model_type, load_checkpoint, load_model, resolve_device
    from .cache import EmbeddingCache
    from .checkpoints import (
        CHECKPOINTS,
        CheckpointDownloadError,
        DownloadCancelled,
        cache_dir,
        checkpoint_path,
        ensure_checkpoint,
        list_models,
        verify_checkpoint,
    )
    from .predictor import Predictor, PromptError, PromptOutsideRegion
    from .types import Candidates, CheckpointError, ImageEmbedding, clip_region
