"""The annotation document: images, categories and masks, without Qt.

The working file is COCO JSON (see :mod:`annotator.data.coco` for conventions):

* ``images``: ``id``, ``file_name`` (POSIX path relative to the JSON file's
  folder), ``width``, ``height`` (after EXIF orientation, as
  :func:`annotator.data.imageio.image_size` reports).
* ``categories``: ``id`` (from 1), ``name``, ``supercategory`` and our display
  colour in an extra ``color`` field, ``[r, g, b]`` 0..255.
* ``annotations``: ``id`` (unique, from 1), ``image_id``, ``category_id``,
  ``segmentation`` as compressed RLE ``{"size": [h, w], "counts": str}``,
  ``area`` from ``pycocotools.mask.area``, ``bbox`` ``[x, y, w, h]`` from
  ``toBbox``, ``iscrowd``, and extra fields (``predicted_iou``, ``model``...).

Loading accepts compressed RLE (``counts`` as ``str`` or ``bytes``),
uncompressed RLE and polygons, and turns them all into compressed RLE in
memory; ``area`` and ``bbox`` are recomputed from the mask. Ids stay as they
were, and every field we do not know (top level, image, category,
annotation) is kept and written back. A bad file raises :class:`DatasetError`
and is never written on load.

Changes bump :attr:`Dataset.revision`; :meth:`Dataset.save` writes atomically
(after a once-per-session backup of an existing file) and records the revision
it saved in :attr:`Dataset.saved_revision`, only on success.

A :class:`Dataset` is not thread-safe: mutate and serialise it on one thread
(:meth:`Dataset.to_json` gives a snapshot string another thread may write).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from annotator.data import coco
from annotator.data.atomic import atomic_write_text, backup_once

__all__ = [
    "Category",
    "ImageRecord",
    "Annotation",
    "RemovedCategory",
    "DatasetError",
    "Dataset",
    "DEFAULT_PALETTE",
    "ANNOTATIONS_FILENAME",
    "write_working_file",
    "dumps_coco",
]

PathLike = Union[str, "os.PathLike[str]"]
Color = Tuple[int, int, int]

#: Default working-file name inside the image folder.
ANNOTATIONS_FILENAME = "annotations.json"

#: Colours given to new categories, in order (20 distinct colours, Trubetskoy).
DEFAULT_PALETTE: Tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip

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


class Dataset:
    """Images, categories and annotations of one working file.

    Attributes
    ----------
    path : Path
        The JSON file.
    root : Path
        Its folder; ``ImageRecord.file_name`` is relative to it.
    image_dir : Path
        The folder of images being annotated (defaults to ``root``).
    images, categories, annotations : dict
        By id.
    info : dict
    licenses : list
    extra : dict
        Unknown top-level keys, written back unchanged.
    revision : int
        Incremented on every change.
    saved_revision : int
        The revision last written (or loaded); :attr:`dirty` compares them.

    ``Dataset(path)`` is an empty document for ``path`` that ignores any file
    there (use it only once the user chose to replace a bad file; the first
    save backs that file up). :meth:`open` loads the file.
    """

    def __init__(self, path: PathLike, image_dir: Optional[PathLike] = None):
        self.path = Path(path)
        self.root = self.path.parent
        self.image_dir = Path(image_dir) if image_dir is not None else self.root
        self.images: Dict[int, ImageRecord] = {}
        self.categories: Dict[int, Category] = {}
        self.annotations: Dict[int, Annotation] = {}
        self.info: Dict[str, Any] = {"description": "sam-annotator annotations"}
        self.licenses: List[Any] = []
        self.extra: Dict[str, Any] = {}
        self.revision = 0
        self.saved_revision = 0
        self._next_annotation_id = 1
        self._next_category_id = 1
        self._by_image: Dict[int, Dict[int, None]] = {}
        self._by_file: Dict[str, int] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def open(cls, path: PathLike, image_dir: Optional[PathLike] = None) -> "Dataset":
        """Load ``path`` if it exists, else return an empty dataset for it.

        Raises
        ------
        DatasetError
            The file cannot be read, is not UTF-8 JSON (the message gives line
            and column), or is not a valid COCO segmentation file: wrong
            schema, non-integer or duplicate ids, annotations for missing
            images or categories, RLE whose size disagrees with its image,
            malformed RLE or polygons. The file is never modified.
        """
        ds = cls(path, image_dir)
        p = ds.path
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return ds
        except IsADirectoryError:
            raise DatasetError(p, "this is a folder, not an annotation file") from None
        except OSError as exc:
            raise DatasetError(p, f"cannot be read ({exc.strerror or exc})") from None
        ds._load(raw)
        return ds

    def _load(self, raw: bytes) -> None:
        p = self.path
        if not raw.strip():
            raise DatasetError(p, "the file is empty; expected COCO JSON")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetError(p, f"not UTF-8 text (bad byte at offset {exc.start}); expected COCO JSON") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(p, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise DatasetError(p, "malformed JSON: nested too deeply") from None
        problems, rles = coco.inspect_coco(data, check_geometry=False, require_all=False)
        if problems:
            raise DatasetError(p, problems)

        for key, value in data.items():
            if key == "info":
                self.info = value
            elif key == "licenses":
                self.licenses = value
            elif key not in _TOP_KEYS:
                self.extra[key] = value

        for img in data["images"]:
            rec = ImageRecord(
                id=img["id"],
                file_name=img["file_name"],
                width=img["width"],
                height=img["height"],
                extra={k: v for k, v in img.items() if k not in _IMAGE_KEYS},
            )
            self.images[rec.id] = rec
            self._by_file[rec.file_name] = rec.id
            self._by_image[rec.id] = {}

        for cat in data.get("categories", []):
            color = _color(cat.get("color"))
            if color is None:
                color = DEFAULT_PALETTE[(len(self.categories)) % len(DEFAULT_PALETTE)]
            self.categories[cat["id"]] = Category(
                id=cat["id"],
                name=cat["name"],
                color=color,
                supercategory=cat.get("supercategory", "") or "",
                extra={k: v for k, v in cat.items() if k not in _CATEGORY_KEYS},
            )

        for i, ann in enumerate(data.get("annotations", [])):
            rle = rles[i]
            a = Annotation(
                id=ann["id"],
                image_id=ann["image_id"],
                category_id=ann["category_id"],
                segmentation=rle,
                area=coco.rle_area(rle),
                bbox=coco.rle_bbox(rle),
                iscrowd=int(ann.get("iscrowd", 0)),
                extra={k: v for k, v in ann.items() if k not in _ANNOTATION_KEYS},
            )
            self.annotations[a.id] = a
            self._by_image[a.image_id][a.id] = None

        self._next_annotation_id = max(self.annotations, default=0) + 1
        self._next_category_id = max(self.categories, default=0) + 1

    # ------------------------------------------------------------------ state

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return self.revision != self.saved_revision

    def _changed(self) -> None:
        self.revision += 1

    # ------------------------------------------------------------------ images

    def relative_name(self, image_path: PathLike) -> str:
        """``file_name`` for an image file: POSIX path relative to :attr:`root`."""
        try:
            rel = os.path.relpath(os.path.abspath(image_path), os.path.abspath(self.root))
        except ValueError:  # another drive on Windows: no relative path exists
            rel = os.path.abspath(image_path)
        return Path(rel).as_posix()

    def image_path(self, image: Union[int, ImageRecord]) -> Path:
        """The file of an image record (``root / file_name``)."""
        rec = self.images[image] if isinstance(image, int) else image
        return self.root / rec.file_name

    def image_by_name(self, file_name: str) -> Optional[ImageRecord]:
        """The record whose ``file_name`` is exactly ``file_name``, or None."""
        iid = self._by_file.get(file_name)
        return None if iid is None else self.images[iid]

    def ensure_image(self, file_name: str, width: int, height: int) -> ImageRecord:
        """The record for ``file_name``, created (new id = max + 1) if needed.

        Parameters
        ----------
        file_name
            POSIX path relative to :attr:`root` (see :meth:`relative_name`).
        width, height
            Size of the image as displayed (EXIF orientation applied).

        Raises
        ------
        DatasetError
            The image is already recorded with another size (the file changed,
            or was rotated): its masks would no longer line up.
        """
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"file_name must be a non-empty string, got {file_name!r}")
        if not (coco._is_int(width) and coco._is_int(height) and width >= 1 and height >= 1):
            raise ValueError(f"width and height must be positive integers, got {width!r} x {height!r}")
        rec = self.image_by_name(file_name)
        if rec is not None:
            if (rec.width, rec.height) != (width, height):
                raise DatasetError(
                    self.path,
                    f"image '{file_name}' is {width} x {height} pixels now, but the annotation file "
                    f"records {rec.width} x {rec.height} (width x height): its masks would not line up",
                )
            return rec
        rec = ImageRecord(id=max(self.images, default=0) + 1, file_name=file_name, width=int(width), height=int(height))
        self.images[rec.id] = rec
        self._by_file[file_name] = rec.id
        self._by_image[rec.id] = {}
        self._changed()
        return rec

    def check_image_sizes(self) -> List[str]:
        """Compare every record with its image file (header only).

        Returns
        -------
        list of str
            One sentence per image whose file is missing, unreadable or of
            another size than recorded.
        """
        from annotator.data.imageio import ImageLoadError, image_size

        problems = []
        for rec in self.images.values():
            try:
                w, h = image_size(self.image_path(rec))
            except ImageLoadError as exc:
                problems.append(f"image id {rec.id} '{rec.file_name}': {exc.problem}")
                continue
            if (w, h) != (rec.width, rec.height):
                problems.append(
                    f"image id {rec.id} '{rec.file_name}': the file is {w} x {h} but the annotation "
                    f"file records {rec.width} x {rec.height} (width x height)"
                )
        return problems

    # ------------------------------------------------------------------ categories

    def category_by_name(self, name: str) -> Optional[Category]:
        """The first category called ``name``, or None."""
        for cat in self.categories.values():
            if cat.name == name:
                return cat
        return None

    def add_category(self, name: str, color: Optional[Sequence[int]] = None, supercategory: str = "") -> Category:
        """Create a category (new id: one more than any id used so far, from 1).

        ``color`` defaults to the next :data:`DEFAULT_PALETTE` entry.

        Raises
        ------
        ValueError
            Empty name, a name already used, or an invalid colour.
        """
        name = self._check_name(name)
        if color is None:
            rgb = DEFAULT_PALETTE[(self._next_category_id - 1) % len(DEFAULT_PALETTE)]
        else:
            rgb = self._check_color(color)
        cat = Category(id=self._next_category_id, name=name, color=rgb, supercategory=supercategory)
        self._next_category_id += 1
        self.categories[cat.id] = cat
        self._changed()
        return cat

    def add_categories(self, entries: Iterable[Tuple[str, Optional[Sequence[int]]]]) -> List[Category]:
        """Add ``(name, color)`` pairs whose name is not present yet (e.g. defaults)."""
        added = []
        for name, color in entries:
            if self.category_by_name(name) is None:
                added.append(self.add_category(name, color))
        return added

    def rename_category(self, category_id: int, name: str) -> str:
        """Rename; returns the old name. Raises ValueError on an empty or used name."""
        cat = self.categories[category_id]
        name = self._check_name(name, allow_id=category_id)
        old, cat.name = cat.name, name
        self._changed()
        return old

    def recolor_category(self, category_id: int, color: Sequence[int]) -> Color:
        """Change the display colour; returns the old one."""
        cat = self.categories[category_id]
        old, cat.color = cat.color, self._check_color(color)
        self._changed()
        return old

    def remove_category(self, category_id: int, reassign_to: Optional[int] = None) -> RemovedCategory:
        """Remove a category and deal with its annotations.

        Parameters
        ----------
        category_id
            The category to remove.
        reassign_to
            Move its annotations to this category; ``None`` removes them.

        Returns
        -------
        RemovedCategory
            Everything needed by :meth:`restore_category` to undo this.
        """
        cat = self.categories[category_id]
        if reassign_to is not None and (reassign_to == category_id or reassign_to not in self.categories):
            raise ValueError(f"cannot reassign annotations to category {reassign_to!r}")
        affected = [a for a in self.annotations.values() if a.category_id == category_id]
        removed: List[Annotation] = []
        moved: List[int] = []
        for a in affected:
            if reassign_to is None:
                removed.append(self._remove(a.id))
            else:
                a.category_id = reassign_to
                moved.append(a.id)
        del self.categories[category_id]
        self._changed()
        return RemovedCategory(cat, removed, moved, reassign_to)

    def restore_category(self, removed: RemovedCategory) -> None:
        """Undo :meth:`remove_category`: same ids, same annotations."""
        cat = removed.category
        if cat.id in self.categories:
            raise ValueError(f"category id {cat.id} is in use")
        self.categories[cat.id] = cat
        self._next_category_id = max(self._next_category_id, cat.id + 1)
        for a in removed.removed_annotations:
            self._insert(a)
        for aid in removed.reassigned:
            if aid in self.annotations:
                self.annotations[aid].category_id = cat.id
        self._changed()

    def _check_name(self, name: str, allow_id: Optional[int] = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a category name cannot be empty")
        name = name.strip()
        other = self.category_by_name(name)
        if other is not None and other.id != allow_id:
            raise ValueError(f"a category called {name!r} already exists")
        return name

    @staticmethod
    def _check_color(color: Sequence[int]) -> Color:
        rgb = _color(list(color) if not isinstance(color, str) else color)
        if rgb is None:
            raise ValueError(f"colour must be three integers 0..255, got {color!r}")
        return rgb

    # ------------------------------------------------------------------ annotations

    def make_annotation(
        self,
        image_id: int,
        category_id: int,
        mask: Optional[np.ndarray] = None,
        *,
        rle: Optional[Mapping[str, Any]] = None,
        **extra: Any,
    ) -> Annotation:
        """Build (not add) an annotation with a fresh id.

        Parameters
        ----------
        image_id, category_id
            Existing ids.
        mask
            ``(height, width)`` of the image, bool (non-zero = inside).
        rle
            Instead of ``mask``: the mask already encoded, as compressed COCO
            RLE ``{"size": [height, width], "counts": str or bytes}`` (e.g.
            computed off the GUI thread, so a 12 MP mask is not encoded twice).
            It is checked to decode to the image's size; ``counts`` is stored as str.
            When both are given, ``rle`` is used and must describe ``mask``.
        **extra
            Extra fields (``predicted_iou=0.93, model="vit_t"``); numpy
            scalars and arrays are converted to plain Python.

        Returns
        -------
        Annotation
            Id = one more than any id used so far in this session (never
            reused, even after deletion); area and bbox from pycocotools.

        Raises
        ------
        KeyError
            Unknown image or category id.
        ValueError
            Neither or a malformed ``mask``/``rle``, or one whose size is not the image's.
        """
        rec = self.images[image_id]
        if category_id not in self.categories:
            raise KeyError(f"unknown category id {category_id}")
        if rle is not None:
            segmentation = coco.to_compressed_rle(dict(rle), rec.height, rec.width)
        elif mask is not None:
            m = np.asarray(mask)
            if m.shape != (rec.height, rec.width):
                raise ValueError(
                    f"mask shape {m.shape} does not match image '{rec.file_name}' "
                    f"(height {rec.height}, width {rec.width})"
                )
            segmentation = coco.encode_mask(m)
        else:
            raise ValueError("make_annotation needs a mask or an rle")
        plain_extra = _plain(dict(extra), "extra")
        ann = Annotation(
            id=self._next_annotation_id,
            image_id=image_id,
            category_id=category_id,
            segmentation=segmentation,
            area=coco.rle_area(segmentation),
            bbox=coco.rle_bbox(segmentation),
            iscrowd=0,
            extra=plain_extra,
        )
        self._next_annotation_id += 1
        return ann

    def add_annotation(self, ann: Annotation) -> None:
        """Add an annotation, keeping its id (so undoing a removal restores it)."""
        self._insert(ann)
        self._changed()

    def remove_annotation(self, annotation_id: int) -> Annotation:
        """Remove and return an annotation (KeyError if absent)."""
        ann = self._remove(annotation_id)
        self._changed()
        return ann

    def replace_annotation(self, ann: Annotation) -> Annotation:
        """Put ``ann`` in place of the annotation with the same id; returns the old one."""
        old = self.annotations[ann.id]
        self._remove(ann.id)
        try:
            self._insert(ann)
        except Exception:
            self._insert(old)
            raise
        self._changed()
        return old

    def set_annotation_category(self, annotation_id: int, category_id: int) -> int:
        """Change an annotation's category; returns the old category id."""
        ann = self.annotations[annotation_id]
        if category_id not in self.categories:
            raise KeyError(f"unknown category id {category_id}")
        old, ann.category_id = ann.category_id, category_id
        self._changed()
        return old

    def annotations_for(self, image_id: int) -> List[Annotation]:
        """Annotations of one image, by increasing id."""
        return [self.annotations[aid] for aid in sorted(self._by_image.get(image_id, ()))]

    def _insert(self, ann: Annotation) -> None:
        if ann.id in self.annotations:
            raise ValueError(f"annotation id {ann.id} is already in use")
        if not coco._is_int(ann.id) or ann.id < 1:
            raise ValueError(f"annotation id must be an integer >= 1, got {ann.id!r}")
        rec = self.images.get(ann.image_id)
        if rec is None:
            raise KeyError(f"unknown image id {ann.image_id}")
        if ann.category_id not in self.categories:
            raise KeyError(f"unknown category id {ann.category_id}")
        if ann.size != (rec.height, rec.width):
            raise ValueError(
                f"annotation {ann.id}: mask size {ann.size} does not match image "
                f"'{rec.file_name}' (height {rec.height}, width {rec.width})"
            )
        self.annotations[ann.id] = ann
        self._by_image.setdefault(ann.image_id, {})[ann.id] = None
        self._next_annotation_id = max(self._next_annotation_id, ann.id + 1)

    def _remove(self, annotation_id: int) -> Annotation:
        ann = self.annotations.pop(annotation_id)
        self._by_image.get(ann.image_id, {}).pop(annotation_id, None)
        return ann

    # ------------------------------------------------------------------ saving

    def to_coco(self, root: Optional[PathLike] = None) -> Dict[str, Any]:
        """The dataset as a COCO dict of plain Python types (``json.dumps``-safe).

        Parameters
        ----------
        root
            Folder the ``file_name`` values should be relative to (the folder
            of the file being written); default :attr:`root`.
        """
        rebase = root is not None and os.path.abspath(root) != os.path.abspath(self.root)
        images = []
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            item = rec.to_json()
            if rebase:
                item["file_name"] = Path(
                    os.path.relpath(os.path.abspath(self.root / rec.file_name), os.path.abspath(root))
                ).as_posix()
            images.append(item)
        out: Dict[str, Any] = {"info": _plain(self.info, "info"), "licenses": _plain(self.licenses, "licenses")}
        out.update({k: v for k, v in _plain(self.extra, "top level").items() if k not in _TOP_KEYS})
        out["images"] = images
        out["annotations"] = [a.to_json() for a in sorted(self.annotations.values(), key=lambda a: a.id)]
        out["categories"] = [c.to_json() for c in sorted(self.categories.values(), key=lambda c: c.id)]
        return out

    def to_json(self, root: Optional[PathLike] = None) -> str:
        """:meth:`to_coco` as strict JSON text (no NaN), one list item per line.

        One image, category or annotation per line keeps the file diffable
        and lets :mod:`json` use its fast C encoder (it has none for
        indented output).
        """
        return dumps_coco(self.to_coco(root))

    def snapshot(self) -> Tuple[int, str]:
        """``(revision, JSON text)`` now: serialise on the owning thread, then
        :func:`write_working_file` it anywhere and :meth:`mark_saved` the
        revision once that succeeded."""
        return self.revision, self.to_json()

    def mark_saved(self, revision: int) -> None:
        """Record that the state of ``revision`` is on disk."""
        self.saved_revision = revision

    def save(self, path: Optional[PathLike] = None) -> Path:
        """Write the working file atomically.

        Parameters
        ----------
        path
            Where to write; default :attr:`path`. Another path is a "save as":
            ``file_name`` values are rewritten relative to its folder and
            :attr:`path`/:attr:`root` move there once the write succeeded.

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        OSError
            Disk full, read-only folder, permission denied... The previous
            file is intact and :attr:`dirty` stays True.
        """
        target = Path(path) if path is not None else self.path
        revision = self.revision
        write_working_file(target, self.to_json(root=target.parent))
        if os.path.abspath(target) != os.path.abspath(self.path):
            self._move_to(target)
        self.mark_saved(revision)
        return target

    def _move_to(self, target: Path) -> None:
        new_root = target.parent
        renamed = {}
        for rec in self.images.values():
            absolute = os.path.abspath(self.root / rec.file_name)
            rec.file_name = Path(os.path.relpath(absolute, os.path.abspath(new_root))).as_posix()
            renamed[rec.file_name] = rec.id
        self._by_file = renamed
        self.path, self.root = target, new_root


def write_working_file(path: PathLike, text: str) -> None:
    """Back the file up once per session, then replace it atomically with ``text``.

    Safe to call from a worker thread with a :meth:`Dataset.snapshot`.

    Raises
    ------
    OSError
        The old file is then intact (see :mod:`annotator.data.atomic`).
    """
    backup_once(path)
    atomic_write_text(path, text)
