"""Helpers shared by the format writers: output names, polygons, painting, PNGs.

Conventions (as everywhere in :mod:`annotator.data`): masks are ``(H, W)``
bool, row ``y`` then column ``x``; polygons are flat ``[x0, y0, x1, y1, ...]``
lists in pycocotools' pixel convention (pixel ``(x, y)`` covers
``[x, x+1) x [y, y+1)``), as :func:`annotator.data.coco.mask_to_polygons`
traces them.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from annotator.data import coco

ProgressFn = Callable[[int, int], object]
WarnFn = Callable[[str], None]


class ExportCancelled(Exception):
    """An export stopped because its ``cancel`` flag was set (nothing was written)."""


def check_cancel(cancel: Optional[threading.Event]) -> None:
    """Raise :class:`ExportCancelled` once ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise ExportCancelled("the export was cancelled")


# ----------------------------------------------------------------------------
# the COCO snapshot


class Snapshot:
    """Indexes over a COCO snapshot (``Dataset.to_coco``) for the writers.

    Attributes
    ----------
    images : list of dict
        By increasing id.
    categories : list of dict
        By increasing id: the order that gives YOLO class ids (from 0) and VOC
        class indices (from 1).
    by_image : dict
        Image id -> its annotations, by increasing id.
    names : dict
        Category id -> name.
    """

    def __init__(self, data: Mapping[str, Any], out: Path):
        self.images = sorted(data["images"], key=lambda img: img["id"])
        #: image id -> absolute path (``file_name`` is relative to the output folder ``out``)
        self.paths = absolute_image_paths(self.images, out)
        #: the deepest folder holding every image (None: none, or several drives)
        self.base = common_folder(self.paths.values())
        #: image id -> how warnings name it: its path under :attr:`base`
        self.shown = {
            iid: (Path(os.path.relpath(p, self.base)).as_posix() if self.base else os.path.basename(p))
            for iid, p in self.paths.items()
        }
        self.categories = sorted(data["categories"], key=lambda cat: cat["id"])
        self.names = {cat["id"]: cat["name"] for cat in self.categories}
        self.by_image: Dict[int, List[Dict[str, Any]]] = {img["id"]: [] for img in self.images}
        for ann in sorted(data["annotations"], key=lambda a: a["id"]):
            self.by_image.setdefault(ann["image_id"], []).append(ann)

    def describe(self, ann: Mapping[str, Any]) -> str:
        """``annotation 3 (image 'a.png', category 'cat')``: how warnings name an annotation."""
        name = self.names.get(ann["category_id"], ann["category_id"])
        return f"annotation {ann['id']} (image '{self.shown.get(ann['image_id'])}', category '{name}')"

    def image(self, img: Mapping[str, Any]) -> str:
        """``image 'a.png'``: how warnings name an image."""
        return f"image '{self.shown[img['id']]}'"

    def mask(self, ann: Mapping[str, Any], img: Mapping[str, Any]) -> np.ndarray:
        """The annotation's mask, ``(height, width)`` bool of its image."""
        return coco.decode_rle(ann["segmentation"], int(img["height"]), int(img["width"]))


def traced_polygons(mask: np.ndarray, tolerance: float, where: str, warn: WarnFn) -> List[List[float]]:
    """Outer outlines of ``mask`` (one per part), with the warnings every polygon format gives.

    An empty mask gives ``[]`` and ``"<where>: the mask is empty; left out of
    the export"``; a mask with holes gives its outlines (holes filled) and
    ``"<where>: the mask has holes; polygons cannot carry holes, so they are
    filled in the export"``.
    """
    polygons, has_holes = coco.mask_to_polygons(mask, tolerance)
    if not polygons:
        warn(f"{where}: the mask is empty; left out of the export")
        return []
    if has_holes:
        warn(f"{where}: the mask has holes; polygons cannot carry holes, so they are filled in the export")
    return polygons


def rle_ious(rle: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """IoU of one compressed RLE with each of ``others`` (same size), without decoding them.

    pycocotools is otherwise reached only through :mod:`annotator.data.coco`;
    this is the one call it lacks (``mask.iou`` on RLEs, ``iscrowd`` off).
    """
    if not others:
        return np.zeros(0)
    from pycocotools import mask as mask_utils

    return np.asarray(mask_utils.iou([dict(rle)], [dict(o) for o in others], [0] * len(others)))[0]


# ----------------------------------------------------------------------------
# output names


def absolute_image_paths(images: Sequence[Mapping[str, Any]], folder: Path) -> Dict[int, str]:
    """Image id -> normalised absolute path (``file_name`` is relative to ``folder``)."""
    base = os.path.abspath(folder)
    return {img["id"]: os.path.normpath(os.path.join(base, img["file_name"])) for img in images}


def common_folder(paths: Iterable[str]) -> Optional[str]:
    """The deepest folder holding every path, or None (no paths, or several drives)."""
    folders = [os.path.dirname(p) for p in paths]
    if not folders:
        return None
    try:
        return os.path.commonpath(folders)
    except ValueError:  # Windows: several drives
        return None


def output_keys(
    images: Sequence[Mapping[str, Any]],
    paths: Mapping[int, str],
    base: Optional[str],
    warn: WarnFn,
    shown: Optional[Mapping[int, str]] = None,
) -> Dict[int, str]:
    """Image id -> output name: the image's POSIX path under ``base`` without its extension.

    Every format names its files after the image (``labels/<key>.txt``,
    ``SegmentationClass/<key>.png``, ``<key>.json``), keeping sub-folders so
    that ``train/a.jpg`` and ``val/a.jpg`` do not collide. ``base`` is
    normally the deepest folder holding all images (:func:`common_folder`).

    Two images with the same name but another extension (``a.jpg``,
    ``a.png``) would share outputs: the later one (by id) is left out, with a
    warning. Names are compared case-insensitively (Windows and macOS file
    systems). An image outside ``base`` is named by its file name alone.
    """
    keys: Dict[int, str] = {}
    taken: Dict[str, str] = {}
    shown = shown if shown is not None else {img["id"]: img["file_name"] for img in images}
    for img in images:
        path = paths[img["id"]]
        rel = os.path.relpath(path, base) if base is not None else os.path.basename(path)
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
            rel = os.path.basename(path)
        pure = PurePosixPath(Path(rel).as_posix())
        key = str(pure.with_suffix("")) if pure.suffix else str(pure)
        folded = key.casefold()
        if folded in taken:
            warn(
                f"image '{shown[img['id']]}': its output name '{key}' is already used by image "
                f"'{taken[folded]}' (outputs are named after the image without its extension); "
                "left out of the export"
            )
            continue
        taken[folded] = shown[img["id"]]
        keys[img["id"]] = key
    return keys


# ----------------------------------------------------------------------------
# one polygon per mask


def _closest_pair(a: np.ndarray, b: np.ndarray) -> Tuple[int, int]:
    """Indices ``(i, j)`` of the closest vertices ``a[i]``, ``b[j]`` (chunked to bound memory)."""
    best, pair = np.inf, (0, 0)
    step = max(1, 4_000_000 // max(1, len(b)))
    for start in range(0, len(a), step):
        d = ((a[start : start + step, None, :] - b[None, :, :]) ** 2).sum(-1)
        k = int(np.argmin(d))
        i, j = divmod(k, d.shape[1])
        if d[i, j] < best:
            best, pair = float(d[i, j]), (start + i, j)
    return pair


def join_parts(polygons: Sequence[Sequence[float]]) -> List[float]:
    """One closed polygon covering several: the parts joined by zero-width bridges.

    Parts are linked along a minimum spanning tree of their centroids; each
    link runs between the closest vertices of the two parts and is walked
    out and back, so it encloses no area (pycocotools and OpenCV fill the
    result as the union of the parts). This is what Ultralytics' own COCO
    converter does for multi-part masks (``merge_multi_segment``): a YOLO
    label line is one instance, so an instance in several pieces must stay
    one line.

    Parameters
    ----------
    polygons
        Flat ``[x0, y0, ...]`` lists, at least one, each of 3 points or more.

    Returns
    -------
    list of float
        A flat ``[x0, y0, ...]`` list.
    """
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    if len(rings) == 1:
        return [float(v) for v in rings[0].ravel()]
    n = len(rings)
    centroids = np.array([r.mean(axis=0) for r in rings])
    # Prim's algorithm on the centroids: O(n^2) with numpy, fine for thousands of parts
    in_tree = np.zeros(n, bool)
    in_tree[0] = True
    dist = ((centroids - centroids[0]) ** 2).sum(1)
    parent = np.zeros(n, int)
    children: List[Dict[int, List[Tuple[int, int]]]] = [{} for _ in range(n)]
    for _ in range(n - 1):
        d = np.where(in_tree, np.inf, dist)
        q = int(np.argmin(d))
        p = int(parent[q])
        in_tree[q] = True
        i, j = _closest_pair(rings[p], rings[q])
        children[p].setdefault(i, []).append((q, j))
        closer = ((centroids - centroids[q]) ** 2).sum(1)
        update = (~in_tree) & (closer < dist)
        dist[update] = closer[update]
        parent[update] = q

    # walk every ring from its entry vertex round to it again, detouring into
    # the children attached at each vertex (iteratively: trees can be deep)
    out: List[np.ndarray] = []
    frames = [[0, 0, -1, []]]  # part, entry vertex, step, children still to visit here
    while frames:
        frame = frames[-1]
        part, entry, step, pending = frame
        if pending:
            child, child_entry = pending.pop()
            frames.append([child, child_entry, -1, []])
            continue
        ring = rings[part]
        step += 1
        frame[2] = step
        if step > len(ring):
            frames.pop()
            if frames:  # back across the bridge to the parent's vertex
                p_part, p_entry, p_step, _ = frames[-1]
                out.append(rings[p_part][(p_entry + p_step) % len(rings[p_part])])
            continue
        v = (entry + step) % len(ring)
        out.append(ring[v])
        frame[3] = list(children[part].get(v, ())) if step < len(ring) else []
    out.pop()  # the root ring's closing vertex repeats its first
    return [float(v) for v in np.asarray(out).ravel()]


# ----------------------------------------------------------------------------
# label images


def paint_instances(
    entries: Sequence[Tuple[int, np.ndarray]],
    shape: Tuple[int, int],
    dtype: Any,
    where: str,
    warn: WarnFn,
) -> np.ndarray:
    """An index image of possibly overlapping masks: **the smaller mask on top**.

    Parameters
    ----------
    entries
        ``(value, mask)`` pairs; ``value`` is written where ``mask`` is set
        (masks ``(H, W)`` bool, values non-zero and unique).
    shape, dtype
        Of the result; 0 is background.
    where
        How the image is named in the warning.

    Returns
    -------
    numpy.ndarray
        Masks are painted from the largest to the smallest (equal areas: the
        higher value last), so a small object lying on a large one stays
        visible, as Ultralytics orders overlapping masks. When masks overlap,
        one warning names the pairs and the pixels the larger mask lost.
    """
    out = np.zeros(shape, dtype=dtype)
    order = sorted(entries, key=lambda e: (-int(np.count_nonzero(e[1])), e[0]))
    overlaps: List[str] = []
    for value, mask in order:
        under = out[mask]
        covered = under[under != 0]
        if covered.size:
            for other, count in zip(*np.unique(covered, return_counts=True)):
                overlaps.append(f"{int(other)} under {int(value)}: {int(count)} px")
        out[mask] = value
    if overlaps:
        listed = ", ".join(overlaps[:5]) + (f", ... ({len(overlaps)} pairs)" if len(overlaps) > 5 else "")
        warn(
            f"{where}: masks overlap ({listed}); the smaller mask is on top, the larger one "
            "loses the covered pixels"
        )
    return out


def voc_colormap(n: int = 256) -> np.ndarray:
    """The Pascal VOC palette: ``(n, 3)`` uint8, colour of index ``i`` from its bits."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def png_bytes(array: np.ndarray, palette: Optional[np.ndarray] = None) -> bytes:
    """PNG file bytes of a ``(H, W)`` uint8 (with an optional ``(256, 3)`` palette) or uint16 image."""
    im = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        im.putpalette(palette.astype(np.uint8).tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
