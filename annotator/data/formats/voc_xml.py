"""Pascal VOC ``Annotations/<name>.xml``: one ``<object>`` per instance, as detection readers expect.

Detection code (detectron2's ``load_voc_instances``, torchvision's
``VOCDetection``, mmdet's ``VOCDataset``) reads only these files and
``ImageSets/Main/<split>.txt``; segmentation code reads the PNGs. In VOC's
own data the ``k``-th ``<object>`` is instance ``k`` of the image's
``SegmentationObject`` PNG; :mod:`.voc` writes them in that order.

Boxes are VOC's: **1-based and inclusive** (``xmin = x0 + 1``, ``xmax`` = the
last column + 1 in 0-based terms), so detectron2's ``xmin -= 1`` gives back the
mask's box ``[x0, x1)``. ``truncated`` is 1 when the mask touches the image's
edge (the object may go on beyond it); ``difficult`` is the annotation's
``difficult`` field (kept when a VOC folder is imported), else 0.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["VocObject", "annotation_xml", "read_annotation_xml"]


@dataclass
class VocObject:
    """One ``<object>``: its class name, flags and box (1-based, inclusive: ``xmin, ymin, xmax, ymax``)."""

    name: str
    difficult: int
    truncated: int
    box: Tuple[float, float, float, float]


def _box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """``(xmin, ymin, xmax, ymax)`` of a non-empty ``(H, W)`` mask, VOC style (1-based, inclusive)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def _flag(value: Any) -> int:
    return 1 if value in (1, True, "1") else 0


#: characters XML 1.0 cannot hold: controls, lone surrogates (a non-UTF-8 file name), U+FFFE/U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def xml_text(text: str) -> str:
    """``text`` as XML can hold it: a character it cannot becomes a backslash escape (``\\xe9`` for the
    byte of a non-UTF-8 file name, ``\\u0007`` otherwise); ElementTree would write it unchanged, which no
    XML reader accepts."""
    return _NOT_XML.sub(_escape, text)


def annotation_xml(
    filename: str,
    width: int,
    height: int,
    objects: Sequence[Tuple[str, Mapping[str, Any], np.ndarray]],
) -> str:
    """The XML text for one image.

    Parameters
    ----------
    filename
        The image's file name (``<filename>``), as VOC lists it under ``JPEGImages``.
    width, height
        The image size in pixels.
    objects
        ``(class name, annotation record, mask)`` per instance, in instance order;
        masks ``(height, width)`` bool, not empty.
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = xml_text(filename)
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "sam-annotator"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(width))
    ET.SubElement(size, "height").text = str(int(height))
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "1"
    for name, ann, mask in objects:
        xmin, ymin, xmax, ymax = _box(mask)
        touches = xmin == 1 or ymin == 1 or xmax == width or ymax == height
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = xml_text(name)
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(touches))
        ET.SubElement(obj, "difficult").text = str(_flag(ann.get("difficult")))
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def read_annotation_xml(data: bytes) -> Tuple[Optional[List[VocObject]], str]:
    """The ``<object>`` entries of an ``Annotations`` XML file, in order; ``(None, why)`` when unreadable.

    Missing ``difficult``/``truncated`` read as 0; a missing or unreadable box as NaNs
    (the box is only informative: masks come from the PNGs).
    """
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return None, "a DOCTYPE or ENTITY declaration (refused)"
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        return None, f"not well-formed XML ({exc})"
    if root.tag != "annotation":
        return None, f"the root element is <{root.tag}>, not <annotation>"
    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        values = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            try:
                values.append(float(obj.findtext(f"bndbox/{tag}") or "nan"))
            except ValueError:
                values.append(float("nan"))
        objects.append(
            VocObject(
                name,
                _flag((obj.findtext("difficult") or "0").strip()),
                _flag((obj.findtext("truncated") or "0").strip()),
                (values[0], values[1], values[2], values[3]),
            )
        )
    return objects, ""
