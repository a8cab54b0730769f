"""labelme JSON: one file per image, polygons, as labelme 5.x writes them.

Export: ``OUT/<name>.json`` per image (sub-folders kept), with ``version``,
``flags``, ``shapes``, ``imagePath`` (relative to the JSON file's folder),
``imageData: null`` (no embedded image) and ``imageHeight``/``imageWidth``
(after EXIF orientation, as labelme checks them). Exporting into the image
folder puts each JSON next to its image, where labelme looks first.

* Each part of a mask is one ``polygon`` shape labelled with the category
  name; the parts of one mask share a ``group_id`` (1, 2, ... for the image's
  multi-part masks in annotation order: the same file however the working
  file numbers its annotations), which is how labelme groups shapes into one
  instance. A one-part mask has ``group_id: null``.
* Points are in pycocotools' convention: labelme's own rasteriser
  (``labelme.utils.shape_to_mask``, PIL polygon with outline) fills exactly
  the traced mask at tolerance 0 and 0.25.
* Holes cannot be written: they are filled, with a warning, as for COCO
  polygons. Empty masks are left out, with a warning. An image with no masks
  gets a file with no shapes.

Import finds each image at ``imagePath`` (relative to the JSON file; Windows
separators accepted), else by its file name in the ``images`` folder or next
to the JSON file (an absolute path from the labeller's machine), else takes
the image embedded in the file (``imageData``) and writes it next to the
JSON file on import (never over a file); each fallback is reported.
labelme 3 and 4 files (no ``shape_type``: a polygon; no image size) are read
too, though labelme 6 itself refuses them.

Import reads every ``*.json`` under a folder (or one file): ``polygon``,
``rectangle`` (2 corners, or the 4 X-AnyLabeling writes), ``circle``,
``oriented_rectangle`` (X-AnyLabeling: ``rotation``) and ``mask`` shapes,
rasterised the way labelme does (PIL, outline included); shapes with the
same label and ``group_id`` become one mask; ``line``, ``linestrip`` and
``point`` have no area and are reported.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import threading
from pathlib import Path, PureWindowsPath
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from annotator.data import coco
from annotator.data.formats import plan as P
from annotator.data.formats.common import (
    ProgressFn,
    Snapshot,
    check_cancel,
    output_keys,
    traced_polygons,
)
from annotator.data.formats.staging import StagedFolder
from annotator.data.imageio import IMAGE_EXTENSIONS, list_images

FORMAT = "labelme"
#: The ``version`` written: the labelme 5 file layout.
LABELME_VERSION = "5.5.0"


def write_labelme(
    data: Mapping[str, Any],
    out: Path,
    tolerance: float,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
    *,
    protected: Tuple[str, ...] = (),
) -> List[str]:
    """Write a COCO snapshot (``file_name`` relative to ``out``) as labelme JSON files; returns the warnings."""
    snap = Snapshot(data, out)
    warnings: List[str] = []
    paths = snap.paths
    keys = output_keys(snap.images, paths, snap.base, warnings.append, snap.shown)
    out_abs = os.path.abspath(out)
    total = len(snap.images)
    with StagedFolder(out, FORMAT, protected=protected) as stage:
        for n, img in enumerate(snap.images):
            check_cancel(cancel)
            key = keys.get(img["id"])
            if key is not None:
                shapes = []
                groups = 0
                for ann in snap.by_image[img["id"]]:
                    polygons = traced_polygons(snap.mask(ann, img), tolerance, snap.describe(ann), warnings.append)
                    group = None
                    if len(polygons) > 1:
                        groups += 1
                        group = groups
                    for poly in polygons:
                        shapes.append(
                            {
                                "label": snap.names[ann["category_id"]],
                                "points": [[float(x), float(y)] for x, y in zip(poly[0::2], poly[1::2])],
                                "group_id": group,
                                "description": "",
                                "shape_type": "polygon",
                                "flags": {},
                                "mask": None,
                            }
                        )
                json_dir = os.path.dirname(os.path.join(out_abs, *key.split("/")))
                doc = {
                    "version": LABELME_VERSION,
                    "flags": {},
                    "shapes": shapes,
                    "imagePath": Path(os.path.relpath(paths[img["id"]], json_dir)).as_posix(),
                    "imageData": None,
                    "imageHeight": int(img["height"]),
                    "imageWidth": int(img["width"]),
                }
                stage.write_json(f"{key}.json", json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
            if progress is not None:
                progress(n + 1, total)
        check_cancel(cancel)
        warnings.extend(stage.commit())
    return warnings


# ----------------------------------------------------------------------------
# import


def _rasterise(kind: str, points: np.ndarray, w: int, h: int) -> np.ndarray:
    """The mask labelme draws for a shape (``labelme.utils.shape_to_mask``: PIL, outline and fill)."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(float(x), float(y)) for x, y in points]
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse([(cx - d, cy - d), (cx + d, cy + d)], outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle([(min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))], outline=1, fill=1)
    else:  # polygon, oriented_rectangle
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _mask_shape(points: np.ndarray, encoded: Any, w: int, h: int) -> np.ndarray:
    """A ``mask`` shape: a base64 PNG covering the box ``points`` (two corners, inclusive)."""
    if not isinstance(encoded, str):
        raise ValueError("'mask' must be a base64-encoded PNG")
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as im:
            crop = np.asarray(im.convert("L")) > 0
    except (ValueError, OSError) as exc:
        raise ValueError(f"'mask' is not a base64-encoded PNG ({exc.__class__.__name__})") from None
    (x1, y1), (x2, y2) = points.astype(int)
    if (y2 - y1 + 1, x2 - x1 + 1) != crop.shape:
        raise ValueError(f"the mask is {crop.shape[1]} x {crop.shape[0]} but its box is {x2 - x1 + 1} x {y2 - y1 + 1}")
    full = np.zeros((h, w), bool)
    ys, xs = slice(max(y1, 0), min(y2 + 1, h)), slice(max(x1, 0), min(x2 + 1, w))
    full[ys, xs] = crop[ys.start - y1 : ys.stop - y1, xs.start - x1 : xs.stop - x1]
    return full


def _radius(points: np.ndarray) -> float:
    return float(np.hypot(*(points[1] - points[0])))


_NEEDS = {"rectangle": 2, "circle": 2, "oriented_rectangle": 4, "mask": 2}
#: Other tools' names for labelme's shapes: X-AnyLabeling's rotated box is a 4-point "rotation"
_ALIASES = {"rotation": "oriented_rectangle"}
_NO_AREA = ("line", "linestrip", "point", "points")


def _shape_mask(shape: Any, i: int, where: str, w: int, h: int, report: List[str]) -> Optional[Tuple[str, Any, np.ndarray, str]]:
    """``(label, group key, mask, where)`` of one shape, or None with a report line."""
    if not isinstance(shape, Mapping):
        report.append(f"{where} shape {i}: not an object; shape skipped")
        return None
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        report.append(f"{where} shape {i}: empty or missing label; shape skipped")
        return None
    at = f"{where} shape {i} ('{label}')"
    kind = shape.get("shape_type") or "polygon"
    kind = _ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    raw = shape.get("points")
    if not (
        isinstance(raw, list)
        and all(isinstance(p, list) and len(p) == 2 and all(coco._is_number(v) for v in p) for p in raw)
    ):
        report.append(f"{at}: 'points' must be a list of [x, y] numbers; shape skipped")
        return None
    points = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        report.append(f"{at}: a coordinate is NaN or infinite; shape skipped")
        return None
    if kind in _NO_AREA:
        report.append(f"{at}: a {kind} has no area; shape skipped")
        return None
    if kind == "polygon" and len(points) < 3:
        report.append(f"{at}: polygon with {len(points)} points (at least 3 needed); shape skipped")
        return None
    if kind == "rectangle" and len(points) == 4:
        # X-AnyLabeling writes a rectangle as its 4 corners: the box they span
        points = np.array([points.min(axis=0), points.max(axis=0)])
    if kind in _NEEDS and len(points) != _NEEDS[kind]:
        report.append(f"{at}: a {kind} needs {_NEEDS[kind]} points, got {len(points)}; shape skipped")
        return None
    if kind not in ("polygon",) and kind not in _NEEDS:
        report.append(f"{at}: unknown shape type '{kind}'; shape skipped")
        return None
    if kind in ("polygon", "oriented_rectangle") and P.polygon_area(points) < 1e-9:
        report.append(f"{at}: the polygon has no area; shape skipped")
        return None
    reach = points if kind != "circle" else np.vstack([points[0] - _radius(points), points[0] + _radius(points)])
    if (reach[:, 0] < -w).any() or (reach[:, 0] > 2 * w).any() or (reach[:, 1] < -h).any() or (reach[:, 1] > 2 * h).any():
        # PIL would take minutes to draw a circle a million pixels wide: such points are garbage
        report.append(f"{at}: points far outside the {w} x {h} image (more than its size beyond an edge); shape skipped")
        return None
    if points.min() < 0 or (points[:, 0] > w).any() or (points[:, 1] > h).any():
        report.append(f"{at}: points outside the {w} x {h} image; clipped to it")
    if kind == "mask":
        try:
            mask = _mask_shape(points, shape.get("mask"), w, h)
        except ValueError as exc:
            report.append(f"{at}: {exc}; shape skipped")
            return None
    else:
        mask = _rasterise(kind, points, w, h)
    if not mask.any():
        report.append(f"{at}: the shape covers no pixel; shape skipped")
        return None
    group = shape.get("group_id")
    key = (label, group) if isinstance(group, int) and not isinstance(group, bool) else (label, ("shape", i))
    return label.strip(), key, mask, at


def _load(path: Path, where: str, report: List[str]) -> Optional[Dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.append(f"{where}: cannot be read ({exc.strerror or exc}); skipped")
        return None
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        report.append(f"{where}: not UTF-8 text; skipped")
        return None
    except json.JSONDecodeError as exc:
        report.append(f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); skipped")
        return None
    if isinstance(doc, dict) and isinstance(doc.get("images"), list) and "shapes" not in doc:
        report.append(f"{where}: a COCO file, not labelme; skipped (import it with the coco format)")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        report.append(f"{where}: not a labelme file (no 'shapes' list); skipped")
        return None
    if not isinstance(doc.get("imagePath"), str) or not doc["imagePath"]:
        if not (isinstance(doc.get("imageData"), str) and doc["imageData"]):
            report.append(f"{where}: no 'imagePath'; skipped")
            return None
        doc["imagePath"] = ""  # the embedded image is the only one: named after the JSON file
    return doc


_IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}


def _embedded(
    path: Path, doc: Mapping[str, Any], where: str, report: List[str]
) -> Optional[Tuple[P.EmbeddedImage, Tuple[int, int], str]]:
    """The image a labelme file (``path``) embeds (``imageData``): ``(reference, (width, height), suffix)``, or None.

    labelme embeds the image file's bytes (re-encoded when it applied an
    EXIF orientation); the size is taken as labelme shows it, orientation
    applied. The bytes are not kept: the reference reads them again when the
    image is written (a folder of labelme files would otherwise hold every image).
    """
    raw = doc.get("imageData")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        data = base64.b64decode(raw, validate=False)
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = im.format or ""
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation: transposed
                w, h = h, w
    except (ValueError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        report.append(f"{where}: 'imageData' is not a base64-encoded image ({exc.__class__.__name__}); not used")
        return None
    return P.EmbeddedImage.of(Path(os.path.abspath(path)), data), (w, h), _IMAGE_SUFFIXES.get(fmt, ".png")


def _find_image(
    path: Path, doc: Mapping[str, Any], where: str, images: Optional[Path], root: Path, report: List[str]
) -> Tuple[Optional[Path], Optional[Tuple[P.EmbeddedImage, Tuple[int, int]]]]:
    """Where the labelled image is: ``(path, None)``; ``(where to write it, (embedded, size))`` when only
    the JSON holds it; ``(None, None)`` with a report line when it is nowhere.

    Tried in order: ``imagePath`` against the JSON file's folder (labelme's
    own rule; Windows separators accepted); ``images / <its file name>``; the
    file name next to the JSON file (an absolute path from another machine,
    or a JSON moved with its image: reported); the embedded ``imageData``,
    to be written next to the JSON file under ``imagePath``'s file name
    (reported; never over an existing file).
    """
    raw = doc["imagePath"]
    rel = PureWindowsPath(raw).as_posix()
    name = PureWindowsPath(raw).name
    image = Path(os.path.normpath(path.parent / rel)) if not PureWindowsPath(raw).anchor else None
    if image is not None and image.is_file():
        return image, None
    if images is not None and name and (Path(images) / name).is_file():
        return Path(images) / name, None
    beside = path.parent / name if name else None
    if beside is not None and beside.is_file():
        report.append(f"{where}: image '{raw}' not found; using {P.shown(beside, root)} next to the JSON file")
        return beside, None
    embedded = _embedded(path, doc, where, report)
    if embedded is not None:
        data, size, suffix = embedded
        stem = Path(name).stem if name and Path(name).stem else path.stem
        target = path.parent / (stem + (Path(name).suffix if name.lower().endswith(IMAGE_EXTENSIONS) else suffix))
        if target.exists():
            report.append(f"{where}: image '{raw}' not found, and {P.shown(target, root)} is another file; skipped")
            return None, None
        if not target.name.lower().endswith(IMAGE_EXTENSIONS) or target.name.startswith("."):
            report.append(  # (a GIF, a hidden name: written, it would be gone from the image list at the next open)
                f"{where}: image '{raw}' not found, and its embedded image would be written as {target.name}, "
                f"which the image list does not show ({', '.join(IMAGE_EXTENSIONS)}, not hidden); skipped"
            )
            return None, None
        missing = f"image '{raw}' not found" if raw else "no 'imagePath'"
        report.append(
            f"{where}: {missing}; the image embedded in the file ('imageData') is written to "
            f"{P.shown(target, root)} on import"
        )
        return target, (data, size)
    report.append(f"{where}: image '{raw}' not found; skipped")
    return None, None


def read_labelme(
    src: Path,
    images: Optional[Path] = None,
    progress: Optional[P.ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> P.ImportPlan:
    """Read labelme JSON files (a folder, searched recursively, or one file) into an :class:`~annotator.data.formats.plan.ImportPlan`.

    ``imagePath`` is resolved against each JSON file's folder; when that file
    is missing and ``images`` is given, ``images / <its file name>`` is tried.
    Images under a source folder that no JSON refers to are reported.
    """
    src = Path(src)
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root, files = src, P.files_with_suffix(src, ".json")
    else:
        raise P.ImportFailed(f"{src}: no such file or folder")
    plan = P.ImportPlan(FORMAT, src)
    report = plan.report
    claimed: Dict[str, str] = {}
    names: Dict[str, None] = {}
    for n, path in enumerate(files):
        P.check_cancel(cancel)
        if progress is not None:
            progress(n, len(files))
        where = P.shown(path, root)
        doc = _load(path, where, report)
        if doc is None:
            continue
        image, embedded = _find_image(path, doc, where, images, root, report)
        if image is None:
            continue
        first = claimed.get(os.path.normcase(os.path.abspath(image)))
        if first is not None:
            report.append(f"{where}: its image '{doc['imagePath']}' is already labelled by {first}; skipped")
            continue
        claimed[os.path.normcase(os.path.abspath(image))] = where
        size = P.measured(image, where, root, report) if embedded is None else embedded[1]
        if size is None:
            continue
        w, h = size
        dw, dh = doc.get("imageWidth"), doc.get("imageHeight")
        if coco._is_int(dw) and coco._is_int(dh) and (dw, dh) != (w, h):
            report.append(
                f"{where}: imageWidth x imageHeight {dw} x {dh} disagree with the image, {w} x {h} "
                "(EXIF orientation applied); skipped"
            )
            continue
        item = P.ImportedImage(image, w, h, where, negative=not doc["shapes"], data=embedded and embedded[0])
        groups: Dict[Any, List[Any]] = {}
        for i, shape in enumerate(doc["shapes"], 1):
            got = _shape_mask(shape, i, where, w, h, report)
            if got is None:
                continue
            label, key, mask, at = got
            if key in groups:
                groups[key][1] |= mask
            else:
                groups[key] = [label, mask, at]
        for label, mask, at in groups.values():
            names[label] = None
            item.annotations.append(P.ImportedAnnotation(label, coco.encode_mask(mask), at))
        if item.annotations or item.negative:
            plan.images.append(item)
    plan.categories = list(names)
    if src.is_dir():
        P.unlabelled_report(
            [i for i in list_images(root, recursive=True) if os.path.normcase(os.path.abspath(i)) not in claimed],
            root,
            root,
            "are not referred to by any labelme file",
            lambda image: f"{P.shown(image, root)}: no labelme file refers to this image; not imported",
            report,
        )
    if progress is not None:
        progress(len(files), len(files))
    return plan
