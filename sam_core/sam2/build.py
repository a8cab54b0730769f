"""Build SAM 2.1 image-mode models and load the official checkpoints.

Model types and their trunk settings (copied from the official
``configs/sam2.1/sam2.1_hiera_*.yaml``; everything else is shared):

==================  =========  =====  ===============  ==============  ===========  ============
model type          embed_dim  heads  stages           global blocks   window_spec  bkg pos size
==================  =========  =====  ===============  ==============  ===========  ============
sam2.1_hiera_t      96         1      1, 2, 7, 2       5, 7, 9         8, 4, 14, 7  7 x 7
sam2.1_hiera_s      96         1      1, 2, 11, 2      7, 10, 13       8, 4, 14, 7  7 x 7
sam2.1_hiera_b+     112        2      2, 3, 16, 3      12, 16, 20      8, 4, 14, 7  14 x 14
sam2.1_hiera_l      144        2      2, 6, 36, 4      23, 33, 43      8, 4, 16, 8  7 x 7
==================  =========  =====  ===============  ==============  ===========  ============

Checkpoints (``sam2.1_hiera_*.pt``) are ``{"model": state_dict}`` for the full
video model. :data:`IGNORED_PREFIXES` lists the entries image mode does not
use; they are set aside, and everything else must match the image-mode model
exactly, or :class:`sam_core.types.CheckpointError` names the differences.
SAM 2.0 checkpoints (``sam2_hiera_*.pt``) have the same image-mode weights and
load too.

Importing this module registers the four types with
:func:`sam_core.build.register_model_type` (builder and checkpoint detector),
so :func:`sam_core.load_model` accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..types import CheckpointError
from .hiera import Hiera
from .mask_decoder import MaskDecoder
from .model import IGNORED_PREFIXES, Sam2ImageModel
from .neck import FpnNeck, ImageEncoder
from .prompt_encoder import PromptEncoder


@dataclass(frozen=True)
class HieraConfig:
    """Trunk settings of one SAM 2.1 size (the fields of the YAML ``trunk`` node)."""

    embed_dim: int
    num_heads: int
    stages: Tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: Tuple[int, ...] = (12, 16, 20)
    window_pos_embed_bkg_spatial_size: Tuple[int, int] = (14, 14)
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)

    @property
    def backbone_channel_list(self) -> Tuple[int, ...]:
        """Trunk widths, coarsest first (the YAML ``neck.backbone_channel_list``)."""
        return tuple(self.embed_dim * 2**i for i in reversed(range(len(self.stages))))


CONFIGS: Dict[str, HieraConfig] = {
    "sam2.1_hiera_t": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7)),
    "sam2.1_hiera_s": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7)),
    "sam2.1_hiera_b+": HieraConfig(112, 2),
    "sam2.1_hiera_l": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), (8, 4, 16, 8)),
}
MODEL_TYPES: Tuple[str, ...] = tuple(CONFIGS)

# Shared settings of all four YAML files (image-mode part).
D_MODEL = 256
SCALP = 1
FPN_TOP_DOWN_LEVELS = (2, 3)
FPN_INTERP_MODEL = "nearest"
IMAGE_SIZE = 1024
BACKBONE_STRIDE = 16
# ``build_sam2(apply_postprocessing=True)`` adds these decoder settings.
DYNAMIC_MULTIMASK = dict(
    dynamic_multimask_via_stability=True,
    dynamic_multimask_stability_delta=0.05,
    dynamic_multimask_stability_thresh=0.98,
)


def build_sam2(model_type: str) -> Sam2ImageModel:
    """An image-mode model of ``model_type`` with untrained weights, in eval mode on the CPU."""
    try:
        cfg = CONFIGS[model_type]
    except KeyError:
        raise ValueError(f"unknown SAM 2 model type {model_type!r}; known: {', '.join(MODEL_TYPES)}") from None
    trunk = Hiera(
        embed_dim=cfg.embed_dim,
        num_heads=cfg.num_heads,
        stages=cfg.stages,
        global_att_blocks=cfg.global_att_blocks,
        window_pos_embed_bkg_spatial_size=cfg.window_pos_embed_bkg_spatial_size,
        window_spec=cfg.window_spec,
    )
    neck = FpnNeck(D_MODEL, cfg.backbone_channel_list, FPN_TOP_DOWN_LEVELS, FPN_INTERP_MODEL)
    grid = IMAGE_SIZE // BACKBONE_STRIDE
    model = Sam2ImageModel(
        image_encoder=ImageEncoder(trunk, neck, scalp=SCALP),
        sam_prompt_encoder=PromptEncoder(D_MODEL, (grid, grid), (IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16),
        sam_mask_decoder=MaskDecoder(D_MODEL, num_multimask_outputs=3, **DYNAMIC_MULTIMASK),
        model_type=model_type,
    )
    return model.eval()


def detect_sam2_type(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The SAM 2.1 size of a state dict, from its trunk width and depth; ``None`` if not SAM 2.

    Detection for :func:`sam_core.build.detect_model_type`. SAM 2.0 files
    have the same image-mode layout and are reported as the 2.1 size.
    """
    w = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        return None
    prefix = "image_encoder.trunk.blocks."
    depth = len({k[len(prefix):].split(".", 1)[0] for k in state_dict if k.startswith(prefix)})
    for name, cfg in CONFIGS.items():
        if cfg.embed_dim == w.shape[0] and sum(cfg.stages) == depth:
            return name
    return None


def _examples(keys: List[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_sam2_state_dict(model: Sam2ImageModel, state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Load an official state dict (or ``{"model": state_dict}``) strictly into ``model``.

    The :data:`IGNORED_PREFIXES` entries are set aside; every other key and
    shape must match. Files go through :func:`sam_core.build.load_checkpoint`
    (which reads them safely and calls :meth:`Sam2ImageModel.prepare_state_dict`);
    this is the in-memory equivalent. Returns the ignored keys, sorted.

    Raises
    ------
    CheckpointError
        Naming the model type expected, the size the state dict looks like,
        and the missing / unexpected / mis-shaped keys.
    """
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    kept = model.prepare_state_dict(state_dict)
    ignored = sorted(set(state_dict) - set(kept))
    own = model.state_dict()
    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    shapes = sorted(
        f"{k} {tuple(kept[k].shape)} (expected {tuple(own[k].shape)})"
        for k in set(own) & set(kept)
        if kept[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        detected = detect_sam2_type(kept)
        looks = f"it looks like a {detected} checkpoint" if detected else "it is not a SAM 2.1 checkpoint"
        parts = [f"state dict does not fit model type {model.model_type}: {looks}"]
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label}: {_examples(keys)}")
        raise CheckpointError("; ".join(parts), detected_type=detected)
    model.load_state_dict(kept, strict=True)
    return ignored


def _register() -> None:
    """Make the SAM 2.1 types known to :mod:`sam_core.build` (it imports this module for "sam2*" names)."""
    from .. import build as core_build

    for name in MODEL_TYPES:
        core_build.register_model_type(name, partial(build_sam2, name), detect_sam2_type)


_register()
