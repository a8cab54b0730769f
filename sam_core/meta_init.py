"""Building a model without memory, then giving it memory without initialising it.

Loading a checkpoint overwrites every parameter, so random initialisation
(slow for ViT-H) and a host copy are wasted work. :class:`MetaBuild` builds the
structure on the meta device; :func:`materialize_uninitialised` allocates it
on the target device and refills the buffers a checkpoint does not hold.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

__all__ = ["MetaBuild", "materialize_uninitialised"]


class MetaBuild(torch.overrides.TorchFunctionMode):
    """``with torch.device("meta")`` that skips in-place operations on meta tensors.

    Weight initialisers (``normal_``, ``uniform_``, ``trunc_normal_``...) have
    nothing to compute on a tensor without data, but on the meta device they
    run PyTorch's Python reference kernels, whose first use imports
    ``torch._dynamo`` and sympy: about 1.5 s at every launch (``-X importtime``).
    Constructors get ``device="meta"`` as under ``torch.device("meta")``.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _META_CONSTRUCTORS and kwargs.get("device") is None:
            kwargs["device"] = torch.device("meta")
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__"):
            # the tensor changed in place: first positional argument, or passed by name (nn.init's form)
            target = args[0] if args else kwargs.get("tensor", kwargs.get("input", kwargs.get("self")))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _meta_constructors() -> set:
    try:
        from torch.utils._device import _device_constructors

        return set(_device_constructors())
    except ImportError:  # pragma: no cover - a torch without it: the same list by hand
        return {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.randn, torch.rand, torch.tensor}


_META_CONSTRUCTORS = _meta_constructors()


def _non_persistent_buffers(model: nn.Module) -> List[str]:
    names = []
    for prefix, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            names.append(f"{prefix}.{name}" if prefix else name)
    return names


def materialize_uninitialised(meta: nn.Module, device: torch.device) -> Optional[nn.Module]:
    """``meta`` allocated on ``device`` without initialisation, or None if it cannot be.

    Works for models whose non-persistent buffers are all refilled by their
    own methods: the pixel statistics (``reset_pixel_stats``) and, for
    TinyViT, the attention-offset indexes (each module's
    ``reset_non_persistent_buffers``). Parameters hold garbage until a
    checkpoint is loaded.
    """
    if not hasattr(meta, "reset_pixel_stats"):
        return None
    resets = {
        prefix: module for prefix, module in meta.named_modules() if hasattr(module, "reset_non_persistent_buffers")
    }
    covered = {"pixel_mean", "pixel_std"}
    for prefix, module in resets.items():
        covered.update(f"{prefix}.{n}" if prefix else n for n in module._non_persistent_buffers_set)
    if not set(_non_persistent_buffers(meta)) <= covered:
        return None
    # as Module.to_empty, with torch.empty rather than empty_like: empty_like of a meta tensor runs a
    # Python reference kernel whose first use imports sympy (about 0.6 s at launch)
    model = meta._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device))
    model.reset_pixel_stats()
    for module in model.modules():
        if hasattr(module, "reset_non_persistent_buffers"):
            module.reset_non_persistent_buffers()
    return model
