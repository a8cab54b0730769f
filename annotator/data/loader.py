"""Parsing a working file's bytes into records, with a message for everything it cannot keep.

:func:`parse_working_file` is the loading half of
:meth:`annotator.data.document.Dataset.open`: bytes -> UTF-8 (or UTF-16/32
with a byte-order mark, as Windows PowerShell's ``Out-File`` writes JSON;
noted, and saved back as UTF-8) -> JSON
(:mod:`annotator.data.jsonsafe`) -> schema checks
(:func:`annotator.data.coco.inspect_coco`) -> records. Extra fields are kept,
with non-finite numbers read as ``null`` (noted) and absurd nesting refused;
a ``file_name`` holding NUL is refused (no file can be called that, and the
operating system raises ``ValueError``, not ``OSError``, for such a path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from annotator.data import coco, jsonsafe
from annotator.data.records import (
    _ANNOTATION_KEYS,
    _CATEGORY_KEYS,
    _IMAGE_KEYS,
    _TOP_KEYS,
    DEFAULT_PALETTE,
    Annotation,
    Category,
    DatasetError,
    ImageRecord,
    _color,
)

__all__ = ["ParsedDocument", "parse_working_file"]


@dataclass
class ParsedDocument:
    """The records of a working file, checked; ``notes`` are sentences about what was changed on reading."""

    info: Any = field(default_factory=dict)
    licenses: Any = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)
    images: List[ImageRecord] = field(default_factory=list)
    categories: List[Category] = field(default_factory=list)
    annotations: List[Annotation] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def parse_working_file(path: Path, raw: bytes) -> ParsedDocument:
    """The records in ``raw`` (the bytes of the working file ``path``).

    Raises
    ------
    DatasetError
        Naming every problem found.
    """
    if not raw.strip():
        raise DatasetError(path, "the file is empty; expected COCO JSON")
    notes: List[str] = []
    encoding = _bom_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise DatasetError(path, f"not {shown} text (bad byte at offset {exc.start}); expected COCO JSON") from None
    if encoding != "utf-8-sig":
        notes.append(f"{path.name} was {encoding.upper()} text (as Windows PowerShell writes it); "
                     "it is saved as UTF-8, as JSON files are")
    try:
        data = jsonsafe.loads(text)
    except jsonsafe.JsonError as exc:
        raise DatasetError(path, str(exc)) from None
    problems, rles = coco.inspect_coco(data, check_geometry=False, require_all=False)
    if problems:
        raise DatasetError(path, problems)
    try:
        parsed = _build(path, data, rles)
    except jsonsafe.JsonError as exc:
        raise DatasetError(path, str(exc)) from None
    parsed.notes[:0] = notes
    return parsed


_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
)


def _bom_encoding(raw: bytes) -> str:
    """``"utf-16"``/``"utf-32"`` for a file that starts with their byte-order mark, else ``"utf-8-sig"``."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    return "utf-8-sig"


def _build(path: Path, data: Dict[str, Any], rles: Dict[int, Dict[str, Any]]) -> ParsedDocument:
    out = ParsedDocument()
    notes: List[str] = []

    def extra(item: Mapping[str, Any], known: Tuple[str, ...], kind: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in item.items():
            if k in known:
                continue
            t = type(v)
            if t is str or t is int or t is bool or v is None or (t is float and math.isfinite(v)):
                out[k] = v  # nothing to clean (most extra fields: a score, a model name)
            else:
                out[k] = jsonsafe.clean_extra(v, f"{kind} id {item['id']}[{k!r}]", notes)
        return out

    for key, value in data.items():
        if key == "info":
            out.info = jsonsafe.clean_extra(value, "info", notes)
        elif key == "licenses":
            out.licenses = jsonsafe.clean_extra(value, "licenses", notes)
        elif key not in _TOP_KEYS:
            out.extra[key] = jsonsafe.clean_extra(value, f"top level[{key!r}]", notes)

    bad_names = []
    for img in data["images"]:
        if "\x00" in img["file_name"]:
            bad_names.append(f"image id {img['id']}: its file_name {img['file_name']!r} holds a NUL character, "
                             "which no file name can")
        out.images.append(
            ImageRecord(
                id=img["id"],
                file_name=img["file_name"],
                width=img["width"],
                height=img["height"],
                extra=extra(img, _IMAGE_KEYS, "image"),
            )
        )
    if bad_names:
        raise DatasetError(path, bad_names)

    for cat in data.get("categories", []):
        color = _color(cat.get("color"))
        if color is None:
            color = DEFAULT_PALETTE[len(out.categories) % len(DEFAULT_PALETTE)]
        out.categories.append(
            Category(
                id=cat["id"],
                name=cat["name"],
                color=color,
                supercategory=cat.get("supercategory", "") or "",
                extra=extra(cat, _CATEGORY_KEYS, "category"),
            )
        )

    anns = data.get("annotations", [])
    areas, boxes = coco.rle_areas_and_bboxes([rles[i] for i in range(len(anns))])  # one pycocotools call each
    for i, ann in enumerate(anns):
        out.annotations.append(
            Annotation(
                id=ann["id"],
                image_id=ann["image_id"],
                category_id=ann["category_id"],
                segmentation=rles[i],
                area=areas[i],
                bbox=boxes[i],
                iscrowd=int(ann.get("iscrowd", 0)),
                extra=extra(ann, _ANNOTATION_KEYS, "annotation"),
            )
        )
    if notes:
        more = f" (and {len(notes) - 3} more)" if len(notes) > 3 else ""
        out.notes.append(f"{len(notes)} number(s) out of JSON's range were read as null: " + "; ".join(notes[:3]) + more)
    return out
