"""Ultralytics YOLO segmentation: ``labels/<name>.txt`` polygons and ``data.yaml``.

Layout (what Ultralytics reads)::

    OUT/data.yaml          names in class-id order, train/val image folders
    OUT/images/<name>.jpg  the images (only when they are there or copied there)
    OUT/labels/<name>.txt  one line per instance: "class x1 y1 x2 y2 ..."

Ultralytics finds an image's labels by replacing the last ``/images/`` in its
path by ``/labels/`` and the extension by ``.txt``
(``ultralytics.data.utils.img2label_paths``), so the images must sit in
``OUT/images/``: when they already do, labels mirror their sub-folders;
otherwise ``copy_images`` copies them there, or a warning says to.

* Class ids are the categories' positions in id order, from 0; ``names`` in
  ``data.yaml`` lists them in that order (written by hand: no YAML library).
* Coordinates are normalised to ``[0, 1]`` by the image's width and height
  (after EXIF orientation, as Ultralytics' ``exif_size``), 6 decimals, in
  pycocotools' pixel convention, as Ultralytics' ``convert_coco`` writes them.
* **One line per instance.** A mask in several parts becomes one polygon, the
  parts joined by zero-width bridges (:func:`~annotator.data.formats.common.join_parts`),
  as Ultralytics' ``convert_coco`` does with ``merge_multi_segment``: several
  lines would be several instances, each with its own box. Ultralytics
  rasterises with ``cv2.fillPoly``, which draws each bridge as a 1-pixel line.
* Holes cannot be written (a polygon has one outline): they are filled, with
  a warning, as for COCO polygons. Empty masks are left out, with a warning.
* Crowd regions (``iscrowd: 1``, from an imported COCO file) are left out,
  with a warning, as Ultralytics' ``convert_coco`` skips them: a YOLO line is
  one instance and has no "ignore" flag.
* Warnings name what Ultralytics' ``verify_image_label`` would quietly drop:
  images under 10 pixels a side, and a second instance with the same class
  and box as another (it removes duplicate rows of class and box).
* Every image exported gets a label file; a negative (marked done, no masks:
  :mod:`annotator.data.formats.negatives`) gets an empty file (a background
  image for Ultralytics).

The reader takes such a folder back (or ``data.yaml`` itself): labels pair
with images by their path under ``labels/`` and ``images/`` without
extension (or under each split's ``<split>/labels`` and ``<split>/images``,
as Roboflow exports); ``data.yaml`` is read by :mod:`.datayaml`; lines may end in spaces or CRLF; a detection line
``class cx cy w h`` (5 columns, alone or among polygons) becomes a rectangle
mask, reported; names come from ``data.yaml`` (``names`` as a list or a mapping,
or ``nc``), else ``classes.txt``, else ``class_<id>``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from annotator.data import coco
from annotator.data.formats import plan as P
from annotator.data.formats.common import (
    ProgressFn,
    Snapshot,
    check_cancel,
    join_parts,
    output_keys,
    traced_polygons,
)
from annotator.data.formats.datayaml import parse_data_yaml
from annotator.data.formats.staging import StagedFolder
from annotator.data.imageio import natural_key

FORMAT = "yolo-seg"


# ----------------------------------------------------------------------------
# export


def write_yolo(
    data: Mapping[str, Any],
    out: Path,
    tolerance: float,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
    *,
    copy_images: bool = False,
    protected: Tuple[str, ...] = (),
) -> List[str]:
    """Write a COCO snapshot (``file_name`` relative to ``out``) as a YOLO segmentation folder.

    Returns the warnings. See the module docstring for the layout and limits.
    """
    snap = Snapshot(data, out)
    warnings: List[str] = []
    paths = snap.paths
    images_dir = os.path.join(os.path.abspath(out), "images")
    in_place = bool(paths) and all(_under(p, images_dir) for p in paths.values())
    base = images_dir if in_place else snap.base
    keys = output_keys(snap.images, paths, base, warnings.append, snap.shown)
    classes = {cat["id"]: i for i, cat in enumerate(snap.categories)}
    total = len(snap.images)
    labels_dir = os.path.join(os.path.abspath(out), "labels")
    lost: List[Tuple[str, str]] = []  # (image as Ultralytics will see it, the label path it will read)
    with StagedFolder(out, FORMAT, protected=protected) as stage:
        for n, img in enumerate(snap.images):
            check_cancel(cancel)
            key = keys.get(img["id"])
            if key is not None:
                h, w = int(img["height"]), int(img["width"])
                lines = []
                boxes: Dict[Tuple[int, bytes], int] = {}  # (class, box) -> annotation id: what Ultralytics dedups on
                if w < 10 or h < 10:
                    warnings.append(
                        f"{snap.image(img)}: {w} x {h} pixels; Ultralytics skips images under 10 pixels a side "
                        "('image size ... <10 pixels')"
                    )
                for ann in snap.by_image[img["id"]]:
                    if ann.get("iscrowd"):
                        warnings.append(
                            f"{snap.describe(ann)}: a crowd region (iscrowd) is not one instance and YOLO labels "
                            "cannot mark it; left out of the export, as Ultralytics' convert_coco does"
                        )
                        continue
                    polygons = traced_polygons(snap.mask(ann, img), tolerance, snap.describe(ann), warnings.append)
                    if not polygons:
                        continue
                    xy = np.asarray(join_parts(polygons)).reshape(-1, 2) / (w, h)
                    coords = " ".join(f"{v:.6f}" for v in np.clip(xy, 0.0, 1.0).ravel())
                    lines.append(f"{classes[ann['category_id']]} {coords}\n")
                    written = np.array(coords.split(), np.float32).reshape(-1, 2)
                    box = (classes[ann["category_id"]], np.concatenate([written.min(0), written.max(0)]).tobytes())
                    if box in boxes:
                        warnings.append(
                            f"{snap.describe(ann)}: same class and box as annotation {boxes[box]}; Ultralytics "
                            "drops one of them as a duplicate label ('duplicate labels removed')"
                        )
                    boxes.setdefault(box, ann["id"])
                stage.write_text(f"labels/{key}.txt", "".join(lines))
                image = paths[img["id"]]
                if copy_images and not in_place:
                    image = os.path.join(images_dir, *f"{key}{Path(image).suffix}".split("/"))
                    stage.copy_file(f"images/{key}{Path(image).suffix}", Path(paths[img["id"]]))
                expected = ultralytics_label_path(image)
                if os.path.normcase(expected) != os.path.normcase(os.path.join(labels_dir, *f"{key}.txt".split("/"))):
                    lost.append((image, expected))
            if progress is not None:
                progress(n + 1, total)
        check_cancel(cancel)
        found = in_place or (copy_images and bool(paths))
        train = "images" if found else (base or images_dir)
        stage.write_text("data.yaml", data_yaml(out, train, [c["name"] for c in snap.categories]))
        if lost:
            hint = (
                "the images are copied under a folder that is itself called 'images'; rename it"
                if copy_images
                else f"copy the images into {images_dir} (export with copy_images, --copy-images) before training"
            )
            warnings.append(
                f"Ultralytics will not find the labels of {len(lost)} image(s): it reads an image's labels "
                f"where the last '/images/' in its path becomes '/labels/' (for {lost[0][0]} it reads "
                f"{lost[0][1]}); {hint}"
            )
        warnings.extend(stage.commit())
    return warnings


def ultralytics_label_path(image: str) -> str:
    """Where Ultralytics reads an image's labels (``img2label_paths``): the last
    ``/images/`` of the path becomes ``/labels/`` and the extension ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def _under(path: str, folder: str) -> bool:
    rel = os.path.relpath(path, folder)
    return not (rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel))


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def data_yaml(out: Path, train: str, names: List[str]) -> str:
    """The ``data.yaml`` text: ``path``, ``train``/``val`` and ``names`` as an id -> name mapping."""
    lines = [
        "# Ultralytics YOLO segmentation dataset, written by sam-annotator.",
        "# There is no train/val split: 'val' is the training set. Point it at held-out images.",
        f"path: {_quoted(os.path.abspath(out))}",
        f"train: {_quoted(Path(train).as_posix() if not os.path.isabs(train) else train)}",
        f"val: {_quoted(Path(train).as_posix() if not os.path.isabs(train) else train)}",
        f"nc: {len(names)}",
        "names:" if names else "names: {}",
    ]
    lines += [f"  {i}: {_quoted(name)}" for i, name in enumerate(names)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# import


def _class_names(root: Path, labels_root: Path, yaml_path: Optional[Path], report: List[str]) -> Tuple[Optional[Dict[int, str]], str]:
    """Class id -> name and where they came from; ``None`` when no file names them."""
    if yaml_path is not None:
        where = P.shown(yaml_path, root)
        try:
            doc = parse_data_yaml(yaml_path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as exc:
            raise P.ImportFailed(f"{yaml_path}: cannot be read ({exc})") from None
        names = doc.get("names")
        if isinstance(names, list):
            listed = {i: str(n) for i, n in enumerate(names)}
        elif isinstance(names, dict) and all(isinstance(k, int) and k >= 0 for k in names):
            listed = {k: str(v) for k, v in sorted(names.items())}
        elif isinstance(doc.get("nc"), int) and doc["nc"] >= 0:
            listed = {i: f"class_{i}" for i in range(doc["nc"])}
            report.append(f"{where}: no 'names'; classes named class_0 .. class_{doc['nc'] - 1}")
        else:
            raise P.ImportFailed(f"{yaml_path}: no 'names' list or mapping and no 'nc'; cannot tell the classes")
        return P.class_names_report(list(listed.items()), where, report), where
    for candidate in (root / "classes.txt", labels_root / "classes.txt"):
        if candidate.is_file():
            where = P.shown(candidate, root)
            names = [n for n in candidate.read_text(encoding="utf-8-sig").splitlines()]
            while names and not names[-1].strip():
                names.pop()
            return P.class_names_report(list(enumerate(names)), where, report), where
    report.append("data.yaml: not found; classes are named class_<id> (class_0, class_1, ...)")
    return None, ""


def _parse_line(tokens: List[str], where: str, names: Optional[Dict[int, str]], source: str, report: List[str]):
    """``(class id, (N, 2) coordinates)`` of one label line, or None with a report line."""
    head = tokens[0]
    try:
        value = float(head)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value == int(value) and value >= 0):
        report.append(f"{where}: class id {head!r} is not a whole number >= 0; line skipped")
        return None
    cls = int(value)
    if names is not None and cls not in names:
        ids = f"ids 0..{max(names)}" if names else "no classes"
        report.append(f"{where}: class id {cls} is not in {source} ({ids}); line skipped")
        return None
    numbers = []
    for tok in tokens[1:]:
        try:
            v = float(tok)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            report.append(f"{where}: coordinate {tok!r} is not a finite number; line skipped")
            return None
        numbers.append(v)
    if len(numbers) == 4:
        return _box(cls, numbers, where, report)
    if len(numbers) % 2:
        report.append(f"{where}: odd number of coordinates ({len(numbers)}); line skipped")
        return None
    if len(numbers) < 6:
        report.append(f"{where}: {len(numbers) // 2} points; a polygon needs at least 3; line skipped")
        return None
    xy = np.asarray(numbers).reshape(-1, 2)
    if xy.min() < 0 or xy.max() > 1:
        inside = P.clip_polygon(xy, 1.0, 1.0)
        if P.polygon_area(inside) == 0:
            report.append(f"{where}: the polygon lies outside the image (coordinates outside 0..1); line skipped")
            return None
        report.append(
            f"{where}: coordinates outside 0..1 (from {xy.min():g} to {xy.max():g}); clipped to the image"
        )
        xy = inside
    return cls, xy


def _box(cls: int, numbers: List[float], where: str, report: List[str]):
    """A detection line ``class cx cy w h`` (normalised): ``(class id, its four corners)``, or None.

    Ultralytics reads such a line as a box; in a file that also holds
    polygons it takes it for a two-point polygon, whose box is wrong. It is
    imported as a rectangle mask (reported), so that nothing is lost.
    """
    cx, cy, bw, bh = numbers
    if bw <= 0 or bh <= 0:
        report.append(f"{where}: a box (class cx cy w h) of width {bw:g} and height {bh:g} has no area; line skipped")
        return None
    x0, x1, y0, y1 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
    xy = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    inside = P.clip_polygon(xy, 1.0, 1.0)
    if len(inside) < 3 or P.polygon_area(inside) == 0:
        report.append(f"{where}: the box lies outside the image (coordinates outside 0..1); line skipped")
        return None
    clipped = "" if len(inside) == 4 and np.allclose(inside, xy) else ", clipped to the image"
    report.append(f"{where}: a box (class cx cy w h), not a polygon; imported as a rectangle mask{clipped}")
    return cls, inside


def _splits(root: Path, images: Optional[Path]) -> List[Tuple[Path, Path]]:
    """``(images folder, labels folder)`` pairs of a dataset: ``images/`` + ``labels/`` (sub-folders
    such as ``train/`` inside both), else one pair per split folder holding both (``train/images`` +
    ``train/labels``, ``valid/...``: Roboflow's export; Ultralytics pairs them by its ``/images/`` ->
    ``/labels/`` rule either way)."""
    labels_root = root / "labels"
    if labels_root.is_dir():
        images_root = Path(images) if images is not None else root / "images"
        if not images_root.is_dir():
            raise P.ImportFailed(f"{images_root}: no such image folder (give the images' folder)")
        return [(images_root, labels_root)]
    splits = [
        (d / "images", d / "labels")
        for d in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: natural_key(d.name))
        if (d / "labels").is_dir() and (d / "images").is_dir()
    ]
    if not splits:
        raise P.ImportFailed(
            f"{root}: no labels/ folder (a YOLO dataset has images/ and labels/ side by side, or "
            "train/images and train/labels for each split)"
        )
    if images is not None:
        raise P.ImportFailed(
            f"{root}: the images are in each split's images/ folder ({', '.join(P.shown(i, root) for i, _ in splits)}); "
            "do not give an images folder"
        )
    return splits


def read_yolo(
    src: Path,
    images: Optional[Path] = None,
    progress: Optional[P.ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> P.ImportPlan:
    """Read a YOLO segmentation folder (or its ``data.yaml``) into an :class:`~annotator.data.formats.plan.ImportPlan`.

    Parameters
    ----------
    src
        The dataset folder (with ``labels/``), or its YAML file.
    images
        The images' folder; default ``<dataset>/images``.

    Raises
    ------
    ImportFailed
        No ``labels/`` or image folder, or an unreadable ``data.yaml``.
    """
    src = Path(src)
    if src.is_file():
        root, yaml_path = src.parent, src
    elif src.is_dir():
        root = src
        yaml_path = root / "data.yaml" if (root / "data.yaml").is_file() else None
        if yaml_path is None:
            others = sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml"))
            yaml_path = others[0] if len(others) == 1 else None
    else:
        raise P.ImportFailed(f"{src}: no such file or folder")
    splits = _splits(root, images)
    plan = P.ImportPlan(FORMAT, src)
    report = plan.report
    names, source = _class_names(root, splits[0][1], yaml_path, report)
    if names is not None:
        plan.categories = list(dict.fromkeys(names.values()))
    work = []  # (label file, its labels root, the image index of its split, its images root)
    indexes = []
    for images_root, labels_root in splits:
        image_index = P.index_images(images_root, root, report, exclude=(labels_root,))
        indexes.append((images_root, labels_root, image_index, set()))
        work += [
            (p, indexes[-1])
            for p in P.files_with_suffix(labels_root, ".txt")
            if not (p.parent == labels_root and p.name == "classes.txt")
        ]
    seen_ids = set()
    for n, (label, (images_root, labels_root, image_index, seen)) in enumerate(work):
        P.check_cancel(cancel)
        if progress is not None:
            progress(n, len(work))
        key = P.key_of(label, labels_root, ".txt")
        shown = P.shown(label, root)
        image = image_index.get(key)
        if image is None:
            report.append(f"{shown}: no image named '{key}' in {P.shown(images_root, root)}; skipped")
            continue
        seen.add(key)
        try:
            text = label.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            report.append(f"{shown}: cannot be read as UTF-8 text ({exc.__class__.__name__}); skipped")
            continue
        size = P.measured(image, shown, root, report)
        if size is None:
            continue
        w, h = size
        item = P.ImportedImage(image, w, h, shown)
        lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        for lineno, tokens in lines:
            where = f"{shown} line {lineno}"
            parsed = _parse_line(tokens, where, names, source, report)
            if parsed is None:
                continue
            cls, xy = parsed
            rle = coco.polygons_to_rle([list((xy * (w, h)).ravel())], h, w)
            if coco.rle_area(rle) == 0:
                report.append(f"{where}: the polygon has no area; line skipped")
                continue
            name = names[cls] if names is not None else f"class_{cls}"
            seen_ids.add(cls)
            item.annotations.append(P.ImportedAnnotation(name, rle, where))
        item.negative = not lines
        plan.images.append(item)
    if names is None:
        plan.categories = [f"class_{i}" for i in sorted(seen_ids)]
    for images_root, labels_root, image_index, seen in indexes:
        labels = P.shown(labels_root, root)
        P.unlabelled_report(
            [image for key, image in image_index.items() if key not in seen],
            images_root,
            root,
            f"have no label file in {labels}/",
            lambda image: f"{P.shown(image, root)}: no label file {labels}/{P.key_of(image, images_root)}.txt; "
            "not imported",
            report,
        )
    if progress is not None:
        progress(len(work), len(work))
    return plan
