"""Small layers shared by the SAM 2 modules.

Attribute names follow the official ``sam2`` package so that state-dict keys
match its checkpoints (``layers.0.weight``, ``weight``/``bias``).
"""

from __future__ import annotations

# SAM 1's layers are the same (keys ``layers.*``, ``weight``/``bias``); its channel LayerNorm also
# normalises half-precision input in float32 under CUDA autocast.
from ..modeling.common import MLP, LayerNorm2d

__all__ = ["MLP", "LayerNorm2d"]
