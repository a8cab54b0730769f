"""Importing a COCO instance-segmentation file into a working file.

Unlike :meth:`annotator.data.document.Dataset.open`, which refuses a file with
any problem, this takes what it can and reports the rest, entry by entry:
images with a bad record, a missing file or another size than recorded are
skipped with their annotations; annotations with an unknown image or
category, or a malformed segmentation, are skipped; polygons with fewer than
3 points are left out of their mask; coordinates outside the image are
clipped to it; an annotation with no segmentation but a box (CVAT's
rectangles) becomes a rectangle mask. ``file_name`` is resolved against
``images``, else the JSON file's folder, else (reported) ``../images/`` or
``../<split>/`` beside an ``annotations/`` folder (CVAT, COCO's own layout).
Images with no annotations are imported as checked and empty.

A category that other categories name as their ``supercategory`` and that no
annotation uses is a grouping, not a class (Roboflow puts the dataset's name
so as category 0): it is not imported, one report line. Images recorded at
their stored size though their EXIF orientation turns them by 90 degrees (the
size they are annotated at here) are skipped in one report line that says what
to do: the file cannot tell which pixels its coordinates are on (see
:func:`_turned_line`); a 180-degree turn (orientation 3) keeps the size and
cannot be seen at all.
Extra annotation fields (``score``, ``predicted_iou``...) are kept.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path, PureWindowsPath
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from PIL import Image

from annotator.data import coco
from annotator.data.formats import plan as P

FORMAT = "coco"
_ORIENTATION = 0x0112  # the EXIF Orientation tag
_KNOWN = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")


def _valid_id(value: Any) -> bool:
    return coco._is_int(value) and 0 <= value < (1 << 53)


def _images(data, base: Path, name: str, src: Path, report: List[str]) -> Tuple[Dict[int, Any], set]:
    """id -> (record, path, (w, h)) of the usable images; and the ids skipped (already reported)."""
    usable: Dict[int, Any] = {}
    skipped: set = set()
    names: Dict[str, int] = {}
    elsewhere: List[str] = []  # file_names written on another machine, found by their name here
    located: Dict[Path, int] = {}
    turned: List[Tuple[str, int, int, int]] = []  # recorded at the stored size of a photo shown turned 90 degrees
    for i, img in enumerate(data):
        at = f"{name} images[{i}]"
        if not isinstance(img, Mapping):
            report.append(f"{at}: not an object; skipped")
            continue
        iid, fn, w, h = img.get("id"), img.get("file_name"), img.get("width"), img.get("height")
        if not _valid_id(iid):
            report.append(f"{at}: 'id' must be a whole number >= 0, got {iid!r}; skipped")
            continue
        at = f"{at} (id {iid})"
        if iid in usable or iid in skipped:
            report.append(f"{at}: duplicate image id {iid}; skipped")
            continue
        skipped.add(iid)
        if not isinstance(fn, str) or not fn:
            report.append(f"{at}: 'file_name' must be a non-empty string, got {fn!r}; skipped with its annotations")
            continue
        if fn in names:
            report.append(f"{at}: duplicate file_name '{fn}' (also images[{names[fn]}]); skipped with its annotations")
            continue
        names[fn] = i
        if not (coco._is_int(w) and coco._is_int(h) and w >= 1 and h >= 1):
            report.append(f"{at}: 'width' and 'height' must be positive whole numbers; skipped with its annotations")
            continue
        path, moved = _locate(base, fn)
        if path is None:
            report.append(f"{at}: image file '{fn}' not found; skipped with its annotations")
            continue
        if path in located:
            report.append(f"{at}: '{fn}' is the file of images[{located[path]}] too; skipped with its annotations")
            continue
        located[path] = i
        if moved:
            elsewhere.append(fn)
        size = P.measured(path, at, src, report)
        if size is None:
            continue
        turn = _orientation(path) if size != (w, h) and size == (h, w) else 1
        if turn in (5, 6, 7, 8):
            turned.append((fn, w, h, turn))
            continue
        if size != (w, h):
            report.append(
                f"{at}: '{fn}' is {w} x {h} in the JSON but the image file is {size[0]} x {size[1]} "
                "(width x height, EXIF orientation applied); skipped with its annotations"
            )
            continue
        skipped.discard(iid)
        usable[iid] = (img, path, size)
    if turned:
        report.append(_turned_line(name, turned))
    if elsewhere:
        report.append(
            f"{name}: {len(elsewhere)} file_name(s) are paths from another machine (first: '{elsewhere[0]}'); "
            f"found by their file name in {base}"
        )
    return usable, skipped


def _orientation(path: Path) -> int:
    """The image's EXIF orientation, 1..8 (1 when it has none or it cannot be read)."""
    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # it only makes a report line more precise; never fails the import
        return 1
    return value if 1 <= value <= 8 else 1


def _turned_line(name: str, turned: List[Tuple[str, int, int, int]]) -> str:
    """One report line for the images recorded at their stored size though their EXIF orientation
    turns them by 90 degrees for display (the size they have here: :mod:`annotator.data.imageio`).

    They are not imported by turning their masks: writers of such files mean different pixels.
    labelImg and VoTT show and annotate the stored pixels (turning would be right); scripts that
    size images with PIL's ``Image.size`` (stored) but draw on ``cv2.imread`` (upright) write
    upright coordinates (only the size is wrong); Label Studio shows the photo upright but its
    COCO export writes the stored size and scales its upright percentages by it
    (HumanSignal/label-studio #6608; ``x = x% * original_width``). Turning would be right for
    some and silently wrong for the others.
    """
    fn, w, h, _ = turned[0]
    orientations = " or ".join(str(o) for o in sorted({t[3] for t in turned}))
    return (
        f"{name}: {len(turned)} image(s) are recorded at their stored size, but their EXIF orientation "
        f"({orientations}) turns them by 90 degrees for display, and they are annotated here as shown "
        f"(first: '{fn}', {w} x {h} in the JSON, shown {h} x {w}); the file cannot tell which pixels its "
        "coordinates are on, so they are skipped with their annotations. If the tool drew on the stored "
        "pixels (labelImg, VoTT), remove the orientation tag from the images (exiftool -Orientation= FILE); "
        "if it drew on the upright photo, set each width and height to the shown size (Label Studio's export "
        "also scales x and y by the stored width and height: rescale them to the shown size); then import again"
    )


def _locate(base: Path, fn: str) -> Tuple[Optional[Path], bool]:
    """The image ``file_name`` names, and whether it was found by its file name alone.

    Under ``base``; else, for a Windows path (``images\\a.jpg``, ``C:\\data\\a.jpg``) or an
    absolute path that is not here, ``base`` / its file name. ``(None, False)`` when neither is a file.
    """
    path = base / fn
    if path.is_file():
        return path, False
    windows = PureWindowsPath(fn)
    if "\\" in fn and not windows.anchor and (base / windows.as_posix()).is_file():
        return base / windows.as_posix(), False
    if ("\\" in fn or Path(fn).is_absolute()) and windows.name and (base / windows.name).is_file():
        return base / windows.name, True
    return None, False


def _groupings(categories: Any, annotations: Any) -> Dict[int, int]:
    """Category id -> how many other categories name it as their ``supercategory``, for the categories
    that group others and that no annotation uses.

    Roboflow's COCO exports list the dataset's name first this way (``{"id": 0, "name": "workers",
    "supercategory": "none"}``, then ``{"id": 1, "name": "head", "supercategory": "workers"}``...):
    a label nothing has, which as a category would shift every YOLO class id by one. roboflow/rf-detr
    drops it by the same rule. A grouping that annotations use is a class and stays.
    """
    if not isinstance(categories, list) or not isinstance(annotations, list):
        return {}
    used = {ann.get("category_id") for ann in annotations if isinstance(ann, Mapping)}
    cats = [c for c in categories if isinstance(c, Mapping)]
    out: Dict[int, int] = {}
    for cat in cats:
        cid, label = cat.get("id"), cat.get("name")
        if not _valid_id(cid) or not isinstance(label, str) or not label or cid in used:
            continue
        grouped = sum(1 for c in cats if c is not cat and c.get("supercategory") == label)
        if grouped:
            out[cid] = grouped
    return out


def _categories(data, name: str, report: List[str], groupings: Optional[Mapping[int, int]] = None) -> Dict[int, str]:
    pairs = []
    seen = set()
    groupings = groupings or {}
    for i, cat in enumerate(data):
        at = f"{name} categories[{i}]"
        if not isinstance(cat, Mapping):
            report.append(f"{at}: not an object; skipped")
            continue
        cid, label = cat.get("id"), cat.get("name")
        if not _valid_id(cid) or cid in seen:
            report.append(f"{at}: 'id' must be a unique whole number >= 0, got {cid!r}; skipped")
            continue
        seen.add(cid)
        if not isinstance(label, str):
            report.append(f"{at} (id {cid}): 'name' must be a string, got {label!r}; skipped")
            continue
        if cid in groupings:
            report.append(
                f"{at} (id {cid}): '{label}' is the supercategory of {groupings[cid]} other categor"
                f"{'y' if groupings[cid] == 1 else 'ies'} and no annotation uses it (Roboflow writes the "
                "dataset's name so); not imported as a category"
            )
            continue
        pairs.append((cid, label))
    return P.class_names_report(pairs, f"{name} categories", report)


def _segmentation(seg: Any, w: int, h: int, at: str, report: List[str]) -> Any:
    """Polygons with fewer than 3 points dropped and coordinates clipped (reported); RLE unchanged."""
    if not isinstance(seg, list):
        return seg
    polys = [seg] if seg and all(coco._is_number(v) for v in seg) else seg
    kept = []
    for k, poly in enumerate(polys):
        if isinstance(poly, list) and all(coco._is_number(v) for v in poly) and len(poly) < 6:
            report.append(f"{at}: polygon {k} has fewer than 3 points; left out of the mask")
            continue
        kept.append(poly)
    clipped = False
    out = []
    for poly in kept:
        if isinstance(poly, list) and len(poly) % 2 == 0 and all(coco._is_number(v) and math.isfinite(v) for v in poly):
            xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if xy.min() < 0 or xy[:, 0].max() > w or xy[:, 1].max() > h:
                clipped = True
                xy = P.clip_polygon(xy, w, h)
                if len(xy) < 3:
                    continue  # wholly outside
                poly = [float(v) for v in xy.ravel()]
        out.append(poly)
    if clipped:
        report.append(f"{at}: coordinates outside the {w} x {h} image; clipped to it")
    return out


def _box_only(bbox: Any, w: int, h: int, at: str, report: List[str]) -> Any:
    """The rectangle of an annotation with no segmentation but a box (CVAT writes its rectangles
    so: ``"segmentation": []``), as a polygon; None with a report line when there is no usable box."""
    if not (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(coco._is_number(v) and math.isfinite(v) for v in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    ):
        report.append(f"{at}: no segmentation and no box with an area; skipped")
        return None
    x, y, bw, bh = (float(v) for v in bbox)
    report.append(f"{at}: no segmentation, only a box; imported as a rectangle mask")
    return [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]


def _image_folder(images: Any, src: Path, report: List[str]) -> Path:
    """The folder ``file_name`` is relative to, when none is given: the JSON file's folder, unless
    the images are in the usual places beside an ``annotations/`` folder (reported):
    ``../images/`` (CVAT, Datumaro) or ``../<split>/`` for ``instances_<split>.json`` (COCO itself)."""
    root = src.parent
    names = [img["file_name"] for img in images if isinstance(img, Mapping) and isinstance(img.get("file_name"), str)]
    names = [n for n in names if n][:200]  # enough to tell, without a stat per image of a huge file
    if not names:
        return root
    candidates = [root, root.parent / "images", root / "images"]
    split = re.fullmatch(r"(?:instances|person_keypoints|panoptic)_(.+)", src.stem)
    if split:
        candidates.insert(1, root.parent / split.group(1))
    found = [sum((folder / n).is_file() for n in names) if folder.is_dir() else 0 for folder in candidates]
    best = max(range(len(candidates)), key=lambda i: (found[i], -i))
    if found[best] == 0 or found[best] == found[0]:
        return root
    folder = candidates[best]
    report.append(
        f"{src.name}: the images are not beside it; file_name is read relative to "
        f"{os.path.relpath(folder, root)}/ (where {found[best]} of the first {len(names)} are)"
    )
    return folder


def read_coco(
    src: Path,
    images: Optional[Path] = None,
    progress: Optional[P.ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> P.ImportPlan:
    """Read a COCO JSON file into an :class:`~annotator.data.formats.plan.ImportPlan` (see the module docstring).

    Raises
    ------
    ImportFailed
        The file is missing, is not JSON, or has no ``images`` list.
    """
    src = Path(src)
    if not src.is_file():
        raise P.ImportFailed(f"{src}: no such file (give the COCO JSON file)")
    try:
        data = json.loads(src.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise P.ImportFailed(f"{src}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise P.ImportFailed(f"{src}: not UTF-8 text; expected COCO JSON") from None
    except json.JSONDecodeError as exc:
        raise P.ImportFailed(f"{src}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise P.ImportFailed(f"{src}: not a COCO file (no 'images' list)")
    name = src.name
    plan = P.ImportPlan(FORMAT, src)
    report = plan.report
    root = src.parent
    base = Path(images) if images is not None else _image_folder(data["images"], src, report)
    usable, skipped = _images(data["images"], base, name, root, report)
    categories, annotations = data.get("categories") or [], data.get("annotations") or []
    names = _categories(categories, name, report, _groupings(categories, annotations))
    plan.categories = list(dict.fromkeys(names.values()))
    items = {iid: P.ImportedImage(path, size[0], size[1], name) for iid, (_, path, size) in usable.items()}
    referenced = set()
    for i, ann in enumerate(annotations):
        P.check_cancel(cancel)
        if progress is not None and i % 256 == 0:
            progress(i, len(annotations))
        at = f"{name} annotations[{i}]"
        if not isinstance(ann, Mapping):
            report.append(f"{at}: not an object; skipped")
            continue
        if _valid_id(ann.get("id")):
            at = f"{at} (id {ann['id']})"
        iid, cid = ann.get("image_id"), ann.get("category_id")
        if iid in skipped:
            continue  # its image was reported
        if iid not in usable:
            report.append(f"{at}: image_id {iid!r} is not in 'images'; skipped")
            continue
        referenced.add(iid)
        if cid not in names:
            report.append(f"{at}: category_id {cid!r} is not in 'categories'; skipped")
            continue
        w, h = usable[iid][2]
        seg = ann.get("segmentation")
        if seg in (None, []):
            seg = _box_only(ann.get("bbox"), w, h, at, report)
            if seg is None:
                continue
        try:
            rle = coco.to_compressed_rle(_segmentation(seg, w, h, at, report), h, w)
        except coco.SegmentationError as exc:
            report.append(f"{at}: {exc}; skipped")
            continue
        if coco.rle_area(rle) == 0:
            report.append(f"{at}: the mask is empty; skipped")
            continue
        extra = {k: v for k, v in ann.items() if k not in _KNOWN}
        crowd = 1 if ann.get("iscrowd") == 1 else 0
        items[iid].annotations.append(P.ImportedAnnotation(names[cid], rle, at, crowd, extra))
    for iid, item in items.items():
        item.negative = iid not in referenced
        plan.images.append(item)
    if progress is not None:
        progress(len(annotations), len(annotations))
    return plan
