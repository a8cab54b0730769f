"""Import the reference implementations (segment-anything, MobileSAM) for parity tests.

They import torchvision and timm for a handful of helpers only. Neither is
installed (there is no CPU torchvision build here), so minimal stand-ins with
the same arithmetic are registered in ``sys.modules`` before importing them.
The stand-ins live in the tests only; nothing we ship uses them.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import torch
from PIL import Image


def _resize(img, size, *args, **kwargs):
    """torchvision.transforms.functional.resize on a PIL image: (h, w) bilinear."""
    if not isinstance(img, Image.Image):  # pragma: no cover - the references only pass PIL
        raise TypeError("stand-in resize handles PIL images only")
    h, w = size
    return img.resize((w, h), Image.BILINEAR)


def _to_pil_image(arr):
    return Image.fromarray(np.asarray(arr))


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].float()
    area = _box_area(boxes)
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            suppress = iou[i] > iou_threshold
            suppress[: i + 1] = False
            keep &= ~suppress
    return order[keep]


def _batched_nms(boxes, scores, idxs, iou_threshold):
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _nms(boxes + offsets[:, None], scores, iou_threshold)


class _DropPath(torch.nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return x


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)


def install_stand_ins() -> None:
    """Register torchvision/timm stand-ins in ``sys.modules`` (idempotent)."""
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        tv_transforms = types.ModuleType("torchvision.transforms")
        tv_f = types.ModuleType("torchvision.transforms.functional")
        tv_f.resize = _resize
        tv_f.to_pil_image = _to_pil_image
        tv_ops = types.ModuleType("torchvision.ops")
        tv_boxes = types.ModuleType("torchvision.ops.boxes")
        tv_boxes.batched_nms = _batched_nms
        tv_boxes.box_area = _box_area
        tv_boxes.nms = _nms
        tv.transforms, tv_transforms.functional = tv_transforms, tv_f
        tv.ops, tv_ops.boxes = tv_ops, tv_boxes
        sys.modules.update(
            {
                "torchvision": tv,
                "torchvision.transforms": tv_transforms,
                "torchvision.transforms.functional": tv_f,
                "torchvision.ops": tv_ops,
                "torchvision.ops.boxes": tv_boxes,
            }
        )
    if "timm" not in sys.modules:
        timm = types.ModuleType("timm")
        models = types.ModuleType("timm.models")
        layers = types.ModuleType("timm.models.layers")
        registry = types.ModuleType("timm.models.registry")
        layers.DropPath = _DropPath
        layers.to_2tuple = _to_2tuple
        layers.trunc_normal_ = _trunc_normal_
        registry.register_model = lambda fn: fn
        timm.models, models.layers, models.registry = models, layers, registry
        sys.modules.update(
            {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}
        )


def segment_anything():
    """The ``segment_anything`` reference package (SAM 1, ViT-B/L/H)."""
    install_stand_ins()
    return importlib.import_module("segment_anything")


def mobile_sam():
    """The ``mobile_sam`` reference package (MobileSAM, TinyViT)."""
    install_stand_ins()
    return importlib.import_module("mobile_sam")


__all__ = ["install_stand_ins", "segment_anything", "mobile_sam"]
