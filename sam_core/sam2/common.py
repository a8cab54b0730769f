"""Small layers shared by the SAM 2 modules.

Attribute names follow the official ``sam2`` package so that state-dict keys
match its checkpoints (``layers.0.weight``, ``weight``/``bias``).
"""

from __future__ import annotations

import torch

# SAM 1's layers are the same (keys ``layers.*``, ``weight``/``bias``); its channel LayerNorm also
# normalises half-precision input in float32 under CUDA autocast.
from ..modeling.common import MLP, LayerNorm2d

__all__ = ["MLP", "LayerNorm2d", "tensor_key"]


class _Same:
    """Compares equal only to a wrapper of the very same object (identity, not value)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    __hash__ = None  # type: ignore[assignment]


def tensor_key(t: torch.Tensor) -> tuple:
    """What a value derived from ``t`` depends on: the tensor object, its storage, version, device and dtype.

    Equal keys mean ``t`` was neither replaced (``load_state_dict(assign=True)``),
    moved (``module.to``), nor written in place (``load_state_dict``,
    ``copy_``) since: a cache of a function of ``t`` keyed by it stays valid.
    An inference tensor (no version counter) gets a key equal to no other.
    """
    # an inference tensor has no version counter: a key that never matches (nothing cached)
    version = _Same(object()) if t.is_inference() else t._version
    return (_Same(t), t.data_ptr(), version, t.device, t.dtype)
