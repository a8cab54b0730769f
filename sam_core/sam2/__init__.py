"""SAM 2.1 in image mode: Hiera trunk, FPN neck, SAM 2 prompt encoder and mask decoder.

Model types: ``sam2.1_hiera_t``, ``sam2.1_hiera_s``, ``sam2.1_hiera_b+``,
``sam2.1_hiera_l``. Use them through the public API
(``sam_core.load_model("sam2.1_hiera_t", checkpoint)``, ``Predictor``); the
model, :class:`Sam2ImageModel`, implements the same protocol as SAM 1
(``preprocess`` / ``embed`` / ``transform_coords`` / ``predict_low_res``).

Torch and NumPy only: no torchvision, hydra or omegaconf; configs are the
Python values in :mod:`sam_core.sam2.build`.
"""

from .build import (
    CONFIGS,
    IGNORED_PREFIXES,
    MODEL_TYPES,
    build_sam2,
    detect_sam2_type,
    load_sam2_state_dict,
)
from .model import Sam2Candidates, Sam2ImageModel

__all__ = [
    "CONFIGS",
    "IGNORED_PREFIXES",
    "MODEL_TYPES",
    "Sam2Candidates",
    "Sam2ImageModel",
    "build_sam2",
    "detect_sam2_type",
    "load_sam2_state_dict",
]
