"""Pascal VOC segmentation: class-index and instance-index PNGs.

Layout::

    OUT/class_names.txt                   "_background_" then the categories, one per line
    OUT/SegmentationClass/<name>.png      palette PNG: class index per pixel (0 background)
    OUT/SegmentationObject/<name>.png     palette PNG: instance index per pixel (0 none)
    OUT/Annotations/<name>.xml            one <object> per instance, in instance order (:mod:`.voc_xml`)
    OUT/ImageSets/Segmentation/trainval.txt   every <name>, one per line; also train.txt,
    OUT/ImageSets/Main/trainval.txt           and the same two under Main/ (no split is made)
    OUT/JPEGImages/<name>.<ext>           the images, only with copy_images (extension kept;
                                          a warning when it is not .jpg, which torchvision assumes)

* Class index ``i`` is the ``i``-th category in id order, from 1; line ``i``
  of ``class_names.txt`` names it. At most 254 categories (255 is the VOC
  "void" index).
* Instance index ``k`` is the image's ``k``-th annotation in id order; at
  most 254 per image (the rest are left out, with a warning).
* **Overlaps: the smaller mask is on top** (:func:`~annotator.data.formats.common.paint_instances`),
  so a small object on a large one stays visible; the larger loses the covered
  pixels, and a warning names the pairs. Masks that do not overlap are exact:
  nothing is simplified and holes are kept.
* **Crowd regions** (``iscrowd: 1``) are VOC's void: 255 in both PNGs, *under* the instances (only
  pixels no instance has), so a labelled person inside a crowd keeps its pixels and the rest of the
  crowd is ignored by training and scoring, as VOC's own void is. They are not instances: no index
  in ``SegmentationObject`` and no ``<object>`` in the XML (not even ``difficult``: detectron2's
  ``load_voc_instances`` trains on difficult objects, so a crowd box would be taught as one object).
  One warning counts them; they do not come back on import (void is not a region).
* ``border=N`` marks pixels within N pixels of an edge between instances (or
  an instance and the background) as 255 in both PNGs, like VOC's own
  ground truth; the default 0 writes none.
* Palettes are VOC's colour map, so viewers show classes in VOC colours.

The reader takes such a folder back: each instance of ``SegmentationObject``
gets the class its pixels have in ``SegmentationClass`` (the most common one,
reported when there are several), named by ``class_names.txt``, else by
``labelmap.txt`` (CVAT and Datumaro exports, whose class PNGs are RGB in the
labelmap's colours), else by the matching ``<object>`` of
``Annotations/<name>.xml`` (VOC's own folders; used only where its box holds
the instance), else ``class_<index>``; with no class PNG, the XML alone gives the class; an
object marked ``difficult`` keeps ``"difficult": 1`` on its annotation; without ``SegmentationObject`` each class
of an image becomes one mask. 255 is void. PNGs may be palette, grayscale,
16-bit or RGB in VOC colours.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from annotator.data import coco
from annotator.data.formats import plan as P
from annotator.data.formats.common import (
    ProgressFn,
    Snapshot,
    check_cancel,
    output_keys,
    paint_instances,
    png_bytes,
    voc_colormap,
)
from annotator.data.formats.staging import StagedFolder
from annotator.data.formats.voc_xml import VocObject, annotation_xml, read_annotation_xml
from annotator.data.imageio import natural_key

FORMAT = "voc"
#: The image lists written, every exported image in each (there is no split: point val at held-out images).
#: torchvision's VOC datasets read ``<set>/train.txt`` by default, detectron2 ``Main/<split>.txt``.
SPLIT_FILES = (
    "ImageSets/Segmentation/trainval.txt",
    "ImageSets/Segmentation/train.txt",
    "ImageSets/Main/trainval.txt",
    "ImageSets/Main/train.txt",
)
BACKGROUND = "_background_"
VOID = 255
MAX_INDEX = 254


def write_voc(
    data: Mapping[str, Any],
    out: Path,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
    *,
    border: int = 0,
    copy_images: bool = False,
    protected: Tuple[str, ...] = (),
) -> List[str]:
    """Write a COCO snapshot (``file_name`` relative to ``out``) as a VOC segmentation folder.

    Returns the warnings. Raises ``ValueError`` for more than 254 categories
    or a negative border (nothing written).
    """
    snap = Snapshot(data, out)
    if len(snap.categories) > MAX_INDEX:
        raise ValueError(
            f"VOC class PNGs hold {MAX_INDEX} classes (index 255 marks borders); "
            f"the working file has {len(snap.categories)} categories"
        )
    if not isinstance(border, int) or border < 0:
        raise ValueError(f"the VOC border must be a whole number of pixels >= 0, got {border!r}")
    warnings: List[str] = []
    paths = snap.paths
    keys = output_keys(snap.images, paths, snap.base, warnings.append, snap.shown)
    class_of = {cat["id"]: i + 1 for i, cat in enumerate(snap.categories)}
    cmap = voc_colormap()
    total = len(snap.images)
    not_jpg: List[str] = []
    crowds: List[str] = []
    with StagedFolder(out, FORMAT, protected=protected) as stage:
        stage.write_text("class_names.txt", "\n".join([BACKGROUND] + [c["name"] for c in snap.categories]) + "\n")
        for n, img in enumerate(snap.images):
            check_cancel(cancel)
            key = keys.get(img["id"])
            if key is not None:
                obj, cls, kept = _label_images(snap, img, class_of, border, warnings.append, crowds)
                stage.write_bytes(f"SegmentationClass/{key}.png", png_bytes(cls, cmap))
                stage.write_bytes(f"SegmentationObject/{key}.png", png_bytes(obj, cmap))
                source = Path(paths[img["id"]])
                objects = [(snap.names[ann["category_id"]], ann, mask) for ann, mask in kept]
                filename = f"{key.rsplit('/', 1)[-1]}{source.suffix}"
                xml = annotation_xml(filename, int(img["width"]), int(img["height"]), objects)
                stage.write_text(f"Annotations/{key}.xml", xml)
                if copy_images:
                    stage.copy_file(f"JPEGImages/{key}{source.suffix}", source)
                    if source.suffix.lower() != ".jpg":
                        not_jpg.append(snap.shown[img["id"]])
            if progress is not None:
                progress(n + 1, total)
        check_cancel(cancel)
        listed = "".join(f"{k}\n" for k in sorted(keys.values(), key=natural_key))  # by name, as VOC's own lists
        for split in SPLIT_FILES:
            stage.write_text(split, listed)
        if crowds:
            warnings.append(
                f"{len(crowds)} crowd region(s) (iscrowd) written as void (255) in SegmentationClass and "
                f"SegmentationObject, under the instances, and left out of Annotations/*.xml (first: {crowds[0]})"
            )
        if not_jpg:
            warnings.append(
                f"{len(not_jpg)} image(s) copied into JPEGImages/ are not .jpg files (first: {not_jpg[0]}); "
                "torchvision's VOCSegmentation/VOCDetection and detectron2 read JPEGImages/<name>.jpg"
            )
        warnings.extend(stage.commit())
    return warnings


def _label_images(
    snap: Snapshot, img, class_of, border: int, warn, crowds: List[str]
) -> Tuple[np.ndarray, np.ndarray, list]:
    """``(SegmentationObject, SegmentationClass)`` uint8 arrays of one image, and the
    ``(annotation, mask)`` pairs they hold: pair ``k`` (from 0) is instance ``k + 1``.

    Crowd regions are painted void where no instance is; each is named in ``crowds``."""
    h, w = int(img["height"]), int(img["width"])
    entries = []
    anns = []
    void = np.zeros((h, w), bool)
    for ann in snap.by_image[img["id"]]:
        mask = snap.mask(ann, img)
        if not mask.any():
            warn(f"{snap.describe(ann)}: the mask is empty; left out of the export")
            continue
        if ann.get("iscrowd"):
            void |= mask
            crowds.append(snap.describe(ann))
            continue
        anns.append((ann, mask))
        entries.append((len(entries) + 1, mask))
    if len(entries) > MAX_INDEX:
        dropped = ", ".join(str(a["id"]) for a, _ in anns[MAX_INDEX:])
        warn(
            f"{snap.image(img)}: {len(entries)} masks, but a SegmentationObject PNG holds "
            f"{MAX_INDEX}; annotations {dropped} are left out"
        )
        entries, anns = entries[:MAX_INDEX], anns[:MAX_INDEX]
    obj = paint_instances(entries, (h, w), np.uint8, snap.image(img), warn)
    lut = np.zeros(256, np.uint8)
    for value, (ann, _) in zip(range(1, len(anns) + 1), anns):
        lut[value] = class_of[ann["category_id"]]
    cls = lut[obj]
    if border:
        kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)
        edge = cv2.dilate(obj, kernel) != cv2.erode(obj, kernel)
        obj[edge] = VOID
        cls[edge] = VOID
    void &= obj == 0  # under the instances
    obj[void] = VOID
    cls[void] = VOID
    return obj, cls, anns


# ----------------------------------------------------------------------------
# import


def _read_index_png(path: Path, colours: Optional[np.ndarray] = None) -> np.ndarray:
    """Index per pixel of a label PNG (palette, grayscale, 16-bit, or RGB in ``colours``:
    ``(n, 3)``, colour ``i`` for index ``i``; default VOC's colour map).

    Raises ``ValueError`` with a message for anything else.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im).astype(np.int64)
            if im.mode == "1":
                return np.asarray(im).astype(np.int64)
            if im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB")).astype(np.int64)
            else:
                raise ValueError(f"a {im.mode} image, expected palette, grayscale or RGB")
    except UnidentifiedImageError:
        raise ValueError("not a PNG image") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(str(exc) or exc.__class__.__name__) from None
    cmap = (voc_colormap() if colours is None else colours).astype(np.int64)
    codes = (cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2]
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    lookup: Dict[int, int] = {}
    for i, c in enumerate(codes.tolist()):
        lookup.setdefault(int(c), i)
    if colours is not None:
        lookup.setdefault(int(voc_colormap()[VOID].astype(np.int64) @ [1 << 16, 1 << 8, 1]), VOID)
    values = np.unique(packed)
    unknown = [v for v in values.tolist() if v not in lookup]
    if unknown:
        v = unknown[0]
        where = "the VOC colour map" if colours is None else "labelmap.txt's colours"
        raise ValueError(f"colour ({v >> 16}, {(v >> 8) & 255}, {v & 255}) is not in {where}")
    index = np.array([lookup[v] for v in values.tolist()])
    return index[np.searchsorted(values, packed)]


def _labelmap(path: Path, report: List[str]) -> Tuple[Dict[int, str], Optional[np.ndarray]]:
    """CVAT's and Datumaro's ``labelmap.txt`` (``name:r,g,b:parts:actions``, background first): class
    index -> name (line order, background left out), and the colours their RGB class PNGs use."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise P.ImportFailed(f"{path}: cannot be read ({exc})") from None
    entries, colours = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        rgb = rest.partition(":")[0].split(",")
        try:
            colour = [int(v) for v in rgb] if rgb != [""] else None
        except ValueError:
            colour = None
        if colour is not None and (len(colour) != 3 or not all(0 <= v <= 255 for v in colour)):
            report.append(f"labelmap.txt line {n}: colour '{rest.partition(':')[0]}' is not r,g,b; ignored")
            colour = None
        entries.append(name)
        colours.append(colour)
    names = P.class_names_report(list(enumerate(entries))[1:], "labelmap.txt", report)
    usable = colours and all(c is not None for c in colours)
    return names, np.array(colours, np.int64) if usable else None


def _names(root: Path, report: List[str]) -> Tuple[Optional[Dict[int, str]], Optional[np.ndarray]]:
    """Class index -> name (``class_names.txt``, else ``labelmap.txt``), and a labelmap's colours."""
    path = root / "class_names.txt"
    if not path.is_file() and (root / "labelmap.txt").is_file():
        return _labelmap(root / "labelmap.txt", report)
    if not path.is_file():
        named = "the <object> names of Annotations/*.xml, else " if (root / "Annotations").is_dir() else ""
        report.append(f"class_names.txt: not found; classes are named {named}class_<index> (class_1, class_2, ...)")
        return None, None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise P.ImportFailed(f"{path}: cannot be read ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return P.class_names_report(list(enumerate(lines))[1:], "class_names.txt", report), None


def read_voc(
    src: Path,
    images: Optional[Path] = None,
    progress: Optional[P.ProgressFn] = None,
    cancel: Optional[threading.Event] = None,
) -> P.ImportPlan:
    """Read a VOC segmentation folder into an :class:`~annotator.data.formats.plan.ImportPlan`.

    ``images`` is the images' folder (default ``<src>/JPEGImages``); PNGs pair
    with images by their path without extension.

    Raises
    ------
    ImportFailed
        No ``SegmentationObject/`` or ``SegmentationClass/`` folder, or no image folder.
    """
    root = Path(src)
    if not root.is_dir():
        raise P.ImportFailed(f"{root}: no such folder (a VOC folder holds SegmentationObject/ and SegmentationClass/)")
    obj_root, cls_root = root / "SegmentationObject", root / "SegmentationClass"
    if not obj_root.is_dir() and not cls_root.is_dir():
        raise P.ImportFailed(f"{root}: neither SegmentationObject/ nor SegmentationClass/ is there")
    images_root = Path(images) if images is not None else root / "JPEGImages"
    if not images_root.is_dir():
        raise P.ImportFailed(f"{images_root}: no such image folder (give the images' folder)")
    plan = P.ImportPlan(FORMAT, root)
    report = plan.report
    names, colours = _names(root, report)
    if names is not None:
        plan.categories = list(dict.fromkeys(names.values()))
    image_index = P.index_images(images_root, root, report, exclude=(obj_root, cls_root))
    objs = {P.key_of(p, obj_root, ".png"): p for p in P.files_with_suffix(obj_root, ".png")} if obj_root.is_dir() else {}
    clss = {P.key_of(p, cls_root, ".png"): p for p in P.files_with_suffix(cls_root, ".png")} if cls_root.is_dir() else {}
    keys = sorted(set(objs) | set(clss), key=natural_key)
    used = set()
    seen_classes: Dict[int, str] = {}
    for n, key in enumerate(keys):
        P.check_cancel(cancel)
        if progress is not None:
            progress(n, len(keys))
        obj_path, cls_path = objs.get(key), clss.get(key)
        where = P.shown(obj_path or cls_path, root)
        image = image_index.get(key)
        if image is None:
            report.append(f"{where}: no image named '{key}' in {P.shown(images_root, root)}; skipped")
            continue
        used.add(key)
        size = P.measured(image, where, root, report)
        if size is None:
            continue
        objects = _xml_objects(root / "Annotations" / f"{key}.xml", root, report)
        item = _read_pair(obj_path, cls_path, key, image, size, names, root, report, seen_classes, objects, colours)
        if item is not None:
            plan.images.append(item)
    if names is None:
        plan.categories = [seen_classes[i] for i in sorted(seen_classes)]
    P.unlabelled_report(
        [image for key, image in image_index.items() if key not in used],
        images_root,
        root,
        "have no label PNG in SegmentationObject/ or SegmentationClass/",
        lambda image: f"{P.shown(image, root)}: no label PNG (SegmentationObject/"
        f"{P.key_of(image, images_root)}.png); not imported",
        report,
    )
    if progress is not None:
        progress(len(keys), len(keys))
    return plan


def _same_box(box, mask: np.ndarray) -> bool:
    """Whether a VOC box (1-based, inclusive) can be the instance's: its pixels lie inside it (1 px slack).

    In VOC's own data object ``k`` is instance ``k``; other writers (Datumaro) list boxes and masks
    apart. An instance's pixels may show less than its box (void borders, objects on top of it),
    never more. A box that is not given (NaN) is taken as matching.
    """
    if not all(np.isfinite(box)):
        return True
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0, x1, y1 = box[0] - 1, box[1] - 1, box[2], box[3]
    return cols[0] >= x0 - 1 and rows[0] >= y0 - 1 and cols[-1] + 1 <= x1 + 1 and rows[-1] + 1 <= y1 + 1


def _xml_objects(path: Path, root: Path, report: List[str]) -> Optional[List[VocObject]]:
    """The ``<object>`` list of ``Annotations/<key>.xml`` (None when missing, or unreadable: reported)."""
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.append(f"{P.shown(path, root)}: cannot be read ({exc.strerror or exc}); not used")
        return None
    objects, why = read_annotation_xml(data)
    if objects is None:
        report.append(f"{P.shown(path, root)}: {why}; not used")
    return objects


def _read_pair(obj_path, cls_path, key, image, size, names, root, report, seen_classes, objects=None,
               colours=None) -> Optional[P.ImportedImage]:
    """One image's annotations from its PNGs; ``objects`` (its ``Annotations`` XML) name the classes
    where ``class_names.txt`` does not, give instances a class when there is no class PNG, and carry
    ``difficult`` (kept as the annotation's ``difficult`` field)."""
    w, h = size
    arrays = []
    for path in (obj_path, cls_path):
        if path is None:
            arrays.append(None)
            continue
        shown = P.shown(path, root)
        try:
            a = _read_index_png(path, colours if path is cls_path else None)
        except ValueError as exc:
            report.append(f"{shown}: cannot be read as a label PNG ({exc}); skipped")
            return None
        if a.shape != (h, w):
            report.append(
                f"{shown}: {a.shape[1]} x {a.shape[0]} pixels but the image {P.shown(image, root)} is "
                f"{w} x {h} (width x height); skipped"
            )
            return None
        arrays.append(a)
    obj, cls = arrays
    where = P.shown(obj_path or cls_path, root)
    item = P.ImportedImage(image, w, h, where)

    def class_name(index: int, at: str) -> Optional[str]:
        if names is None:
            seen_classes.setdefault(index, f"class_{index}")
            return seen_classes[index]
        if index not in names:
            top = max(names) if names else 0
            report.append(f"{at}: class index {index} is not in class_names.txt (1..{top}); skipped")
            return None
        return names[index]

    if obj is None:
        report.append(f"{where}: no SegmentationObject/{key}.png; each class is imported as one mask")
        values = [v for v in np.unique(cls).tolist() if v not in (0, VOID)]
        for v in values:
            name = class_name(v, f"{where} class {v}")
            if name is not None:
                item.annotations.append(P.ImportedAnnotation(name, coco.encode_mask(cls == v), f"{where} class {v}"))
        item.negative = not values
        return item
    if cls is None and not objects:
        report.append(f"{where}: no SegmentationClass/{key}.png, so its instances have no class; skipped")
        return None
    if cls is None:
        report.append(f"{where}: no SegmentationClass/{key}.png; instances take their class from Annotations/{key}.xml")
    values = [v for v in np.unique(obj).tolist() if v not in (0, VOID)]
    for v in values:
        at = f"{where} instance {v}"
        mask = obj == v
        xml = objects[v - 1] if objects is not None and v <= len(objects) and objects[v - 1].name else None
        if xml is not None and not _same_box(xml.box, mask):
            report.append(f"{at}: <object> {v} of Annotations/{key}.xml has another box; its name and flags not used")
            xml = None
        extra = {"difficult": 1} if xml is not None and xml.difficult else {}
        if cls is None:
            if xml is None:
                report.append(f"{at}: no SegmentationClass PNG and no <object> {v} in Annotations/{key}.xml; skipped")
                continue
            item.annotations.append(P.ImportedAnnotation(xml.name, coco.encode_mask(mask), at, 0, extra))
            continue
        under = cls[mask]
        found, counts = np.unique(under[(under != 0) & (under != VOID)], return_counts=True)
        if found.size == 0:
            report.append(f"{at}: lies on background or void in SegmentationClass; skipped")
            continue
        best = int(found[np.argmax(counts)])
        if names is None and xml is not None and best not in seen_classes:
            seen_classes[best] = xml.name  # VOC's own folders have no class_names.txt: the XML names them
        name = class_name(best, at)
        if name is None:
            continue
        if found.size > 1:
            listed = " and ".join(str(int(c)) for c in found)
            report.append(f"{at}: covers classes {listed}; imported as '{name}' (the most pixels)")
        item.annotations.append(P.ImportedAnnotation(name, coco.encode_mask(mask), at, 0, extra))
    item.negative = not values
    return item
