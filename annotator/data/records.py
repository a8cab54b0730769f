"""The records of a working file: images, categories, annotations, and their JSON form (no Qt).

:class:`~annotator.data.document.Dataset` holds these by id; see its module
for the file format. Everything here is plain data: ``to_json`` gives the
COCO dict of one record, with its unknown fields (``extra``) written back.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from annotator.data import coco
from annotator.data.palette import CATEGORY_PALETTE

__all__ = [
    "Category",
    "ImageRecord",
    "Annotation",
    "RemovedCategory",
    "DatasetError",
    "DEFAULT_PALETTE",
    "ANNOTATIONS_FILENAME",
    "dumps_coco",
]

PathLike = Union[str, "os.PathLike[str]"]
Color = Tuple[int, int, int]

#: Default working-file name inside the image folder.
ANNOTATIONS_FILENAME = "annotations.json"

#: Colours given to new categories, in order (see :mod:`annotator.data.palette`).
DEFAULT_PALETTE: Tuple[Color, ...] = CATEGORY_PALETTE

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_CATEGORY_KEYS = ("id", "name", "supercategory", "color")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")
_TOP_KEYS = ("info", "licenses", "images", "annotations", "categories")


def dumps_coco(data: Dict[str, Any]) -> str:
    """Strict JSON text of a COCO dict (no NaN), one list item per line."""

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))

    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            body = "[\n" + ",\n".join("  " + dumps(v) for v in value) + "\n ]"
        else:
            body = dumps(value)
        parts.append(f" {dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


class DatasetError(Exception):
    """An annotation file cannot be used as it is.

    Attributes
    ----------
    path : Path
        The file concerned.
    problems : list of str
        Every problem found, each naming the entry and what is wrong.
    """

    MAX_LISTED = 10

    def __init__(self, path: PathLike, problems: Union[str, Sequence[str]]):
        self.path = Path(path)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = f"{self.path}: {self.problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems[: self.MAX_LISTED])
            more = len(self.problems) - self.MAX_LISTED
            tail = f"\n  ... and {more} more" if more > 0 else ""
            text = f"{self.path}: {len(self.problems)} problems:\n{listed}{tail}"
        super().__init__(text)


def _plain(value: Any, where: str = "value") -> Any:
    """A JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be written to JSON")


def _color(value: Any) -> Optional[Color]:
    """``[r, g, b]`` 0..255 integers (or ``"#rrggbb"``) -> tuple; None if invalid."""
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            return None
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(coco._is_int(v) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    return None


@dataclass
class Category:
    """A label. ``color`` is the display colour, RGB 0..255."""

    id: int
    name: str
    color: Color
    supercategory: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        out = {
            "id": int(self.id),
            "name": self.name,
            "supercategory": self.supercategory,
            "color": [int(c) for c in self.color],
        }
        out.update({k: v for k, v in _plain(self.extra, f"category {self.id}").items() if k not in _CATEGORY_KEYS})
        return out


@dataclass
class ImageRecord:
    """One image: ``width`` x ``height`` pixels after EXIF orientation.

    ``file_name`` is a POSIX path relative to the folder of the JSON file.
    """

    id: int
    file_name: str
    width: int
    height: int
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        out = {"id": int(self.id), "file_name": self.file_name, "width": int(self.width), "height": int(self.height)}
        out.update({k: v for k, v in _plain(self.extra, f"image {self.id}").items() if k not in _IMAGE_KEYS})
        return out


@dataclass
class Annotation:
    """One instance mask.

    ``segmentation`` is compressed RLE ``{"size": [height, width], "counts":
    str}``; ``area`` (pixels) and ``bbox`` (``[x, y, w, h]``) agree with it.
    ``extra`` holds everything else (``predicted_iou``, ``model``, fields
    from other tools), written back unchanged.
    """

    id: int
    image_id: int
    category_id: int
    segmentation: Dict[str, Any]
    area: float
    bbox: List[float]
    iscrowd: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> Tuple[int, int]:
        """``(height, width)`` of the mask."""
        h, w = self.segmentation["size"]
        return int(h), int(w)

    def mask(self) -> np.ndarray:
        """The mask, ``(height, width)`` bool (decoded on every call)."""
        h, w = self.size
        return coco.decode_rle(self.segmentation, h, w)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "id": int(self.id),
            "image_id": int(self.image_id),
            "category_id": int(self.category_id),
            "segmentation": {
                "size": [int(v) for v in self.segmentation["size"]],
                "counts": self.segmentation["counts"],
            },
            "area": float(self.area),
            "bbox": [float(v) for v in self.bbox],
            "iscrowd": int(self.iscrowd),
        }
        out.update(
            {k: v for k, v in _plain(self.extra, f"annotation {self.id}").items() if k not in _ANNOTATION_KEYS}
        )
        return out


@dataclass
class RemovedCategory:
    """What :meth:`Dataset.remove_category` took away, for undo."""

    category: Category
    removed_annotations: List[Annotation]
    reassigned: List[int]  # annotation ids moved to reassigned_to
    reassigned_to: Optional[int]
