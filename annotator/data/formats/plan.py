"""What an importer reads, before it touches a working file; and helpers the readers share.

A reader (``read_yolo``, ``read_voc``, ``read_labelme``, ``read_coco``) turns a
folder or file of labels into an :class:`ImportPlan`: images found on disk
with their size, the masks for each (already rasterised to compressed RLE at
the image's size), category names in order, and a report line for everything
it could not use. A plan holds no :class:`~annotator.data.document.Dataset`,
so reading may run on a worker thread; :func:`annotator.data.formats.importing.apply_plan`
then adds it to a dataset where the dataset lives.

Report lines name the place first, relative to the source folder
(``labels/a.txt line 3``, ``a.json shape 2 ('cat')``), then the problem, then
what was done (``line skipped``, ``not imported``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from annotator.data.identity import file_sha256
from annotator.data.imageio import ImageLoadError, image_size, list_images, natural_key

ProgressFn = Callable[[int, int], object]


class ImportFailed(ValueError):
    """Nothing can be imported: the source is missing or is not in the format asked for."""


class ImportCancelled(Exception):
    """The import stopped because its ``cancel`` flag was set (nothing was changed)."""


def check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise ImportCancelled("the import was cancelled")


@dataclass
class ImportedAnnotation:
    """One mask to add: ``rle`` is compressed RLE at its image's size."""

    category: str
    rle: Dict[str, Any]
    where: str  # the report's name for it: "labels/a.txt line 3"
    iscrowd: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)


class EmbeddedChanged(ValueError):
    """A label file no longer holds the image it held when it was read (edited, moved or deleted meanwhile)."""


@dataclass(frozen=True)
class EmbeddedImage:
    """An image file held inside a JSON label file as base64 (labelme ``imageData``), by reference.

    A plan of 1,000 labelme files holds 1,000 of these (a path and a digest),
    not ~3 GB of image bytes: :meth:`read` reads the JSON file again when the
    image is written, and checks that it still holds the same bytes.
    """

    source: Path  # the JSON file, absolute
    digest: str  # SHA-256 (hex) of the decoded image bytes
    size: int  # their length
    key: str = "imageData"  # the JSON field holding them (base64)

    @classmethod
    def of(cls, source: Path, data: bytes, key: str = "imageData") -> "EmbeddedImage":
        return cls(Path(source), hashlib.sha256(data).hexdigest(), len(data), key)

    def read(self) -> bytes:
        """The image's bytes, decoded from the JSON file again.

        Raises
        ------
        EmbeddedChanged
            The file cannot be read or parsed any more, or its ``key`` no longer
            decodes to the bytes it held (message names the file).
        """
        try:
            doc = json.loads(self.source.read_bytes().decode("utf-8-sig"))
        except OSError as exc:
            raise EmbeddedChanged(f"{self.source} cannot be read again ({exc.strerror or exc})") from None
        except ValueError as exc:  # not UTF-8, malformed JSON
            raise EmbeddedChanged(f"{self.source} is no longer valid JSON ({exc.__class__.__name__})") from None
        raw = doc.get(self.key) if isinstance(doc, dict) else None
        try:
            data = base64.b64decode(raw, validate=False) if isinstance(raw, str) else b""
        except (binascii.Error, ValueError):
            data = b""
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.digest:
            raise EmbeddedChanged(f"{self.source} changed since it was read: its '{self.key}' is another image now")
        return data

    def matches(self, path: Path) -> bool:
        """Whether ``path`` is a file holding exactly these bytes (hashed in chunks; False when unreadable)."""
        try:
            return os.path.isfile(path) and os.stat(path).st_size == self.size and file_sha256(path) == self.digest
        except OSError:
            return False


@dataclass
class ImportedImage:
    """An image file and its masks.

    ``negative`` is True when its label file exists and lists nothing (an
    image checked and found empty): it is then added with no annotations.
    An image whose every entry was rejected is not added at all.
    """

    path: Path  # absolute
    width: int
    height: int
    where: str  # the label file, relative to the source
    annotations: List[ImportedAnnotation] = field(default_factory=list)
    negative: bool = False
    #: Where the image file's bytes are when ``path`` does not exist yet (a labelme file's
    #: embedded ``imageData``): :func:`~annotator.data.formats.importing.write_embedded`
    #: writes them there. A reference, not the bytes (see :class:`EmbeddedImage`).
    data: Optional[EmbeddedImage] = None


@dataclass
class ImportPlan:
    """Everything one source holds, ready to add to a working file."""

    fmt: str
    source: Path
    categories: List[str] = field(default_factory=list)  # in class-id order
    images: List[ImportedImage] = field(default_factory=list)
    report: List[str] = field(default_factory=list)

    @property
    def annotation_count(self) -> int:
        return sum(len(img.annotations) for img in self.images)


# ----------------------------------------------------------------------------
# helpers for the readers


def shown(path: Path, root: Path) -> str:
    """``path`` as report lines show it: POSIX, relative to ``root`` when inside it."""
    try:
        return Path(os.path.relpath(path, root)).as_posix() if _inside(path, root) else str(path)
    except ValueError:
        return str(path)


def _inside(path: Path, root: Path) -> bool:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return not (rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel))


def key_of(path: Path, root: Path, suffix: Optional[str] = None) -> str:
    """POSIX path of ``path`` under ``root`` without its extension (the name that pairs files)."""
    rel = Path(os.path.relpath(path, root)).as_posix()
    if suffix is not None and rel.lower().endswith(suffix):
        return rel[: -len(suffix)]
    stem, dot, ext = rel.rpartition(".")
    return stem if dot and "/" not in ext else rel


def files_with_suffix(root: Path, suffix: str) -> List[Path]:
    """Files under ``root`` (recursive, hidden ones skipped) ending in ``suffix`` (any case), natural order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(suffix):
                found.append(Path(folder) / name)
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def index_images(images_root: Path, src: Path, report: List[str], exclude: Sequence[Path] = ()) -> Dict[str, Path]:
    """Key -> image file for every image under ``images_root`` (not under the ``exclude`` folders).

    ``exclude`` keeps label PNGs out when the source sits inside the image folder.

    Two images with the same key (``a.jpg`` and ``a.png``) cannot both pair
    with ``a``'s labels: the second, in natural order, gets
    ``"<image>: same name as <first> (labels pair with images by name without extension); not imported"``.
    """
    found: Dict[str, Path] = {}
    folded: Dict[str, Path] = {}
    for path in list_images(images_root, recursive=True):
        if any(_inside(path, folder) for folder in exclude):
            continue
        key = key_of(path, images_root)
        first = folded.get(key.casefold())
        if first is not None:
            report.append(
                f"{shown(path, src)}: same name as {shown(first, src)} (labels pair with images by "
                "name without extension); not imported"
            )
            continue
        folded[key.casefold()] = path
        found[key] = path
    return found


#: Up to this many images without labels get a line each; more get one line (VOC2012 has ~14,000).
UNLABELLED_LINES = 3


def unlabelled_report(
    images: Sequence[Path], images_root: Path, src: Path, why: str, line: Callable[[Path], str], report: List[str]
) -> None:
    """Report images that no label file pairs with: ``line(image)`` for each of up to
    :data:`UNLABELLED_LINES`, else one line with the count and the first names (natural order),
    ``"<images_root>: <n> image(s) <why>; not imported (first: a.jpg, b.jpg, c.jpg, ...)"``
    (``images_root`` by its name when it is ``src``)."""
    if len(images) <= UNLABELLED_LINES:
        report.extend(line(image) for image in images)
        return
    ordered = sorted(images, key=lambda p: natural_key(shown(p, images_root)))
    first = ", ".join(shown(p, images_root) for p in ordered[:UNLABELLED_LINES])
    place = shown(images_root, src)
    place = images_root.name if place == "." else place
    report.append(f"{place}: {len(images)} image(s) {why}; not imported (first: {first}, ...)")


def measured(path: Path, where: str, src: Path, report: List[str]) -> Optional[Tuple[int, int]]:
    """``(width, height)`` of an image (EXIF orientation applied), or None with a report line."""
    try:
        return image_size(path)
    except ImageLoadError as exc:
        report.append(f"{where}: cannot read the image {shown(path, src)} ({exc.problem}); skipped")
        return None


def class_names_report(names: Sequence[Tuple[int, str]], where: str, report: List[str]) -> Dict[int, str]:
    """Check ``(class id, name)`` pairs: an empty name becomes ``class_<id>``; duplicates are reported.

    Returns class id -> the name to use.
    """
    out: Dict[int, str] = {}
    first: Dict[str, int] = {}
    for i, raw in names:
        name = raw.strip()
        if not name:
            name = f"class_{i}"
            report.append(f"{where}: class {i} has an empty name; imported as '{name}'")
        if name in first:
            report.append(f"{where}: class {i} '{name}' has the same name as class {first[name]}; both import as '{name}'")
        else:
            first[name] = i
        out[i] = name
    return out


def clip_polygon(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of a polygon inside ``[0, width] x [0, height]`` (Sutherland-Hodgman).

    ``xy`` is ``(N, 2)``, x then y. Moving outside vertices onto the edge
    would bend the edges that cross the image; this cuts them where they
    cross. Returns ``(M, 2)``, ``M < 3`` when nothing is inside.
    """
    pts = [(float(x), float(y)) for x, y in xy]
    for axis, bound, below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = cur[axis] <= bound if below else cur[axis] >= bound
            prev_in = prev[axis] <= bound if below else prev[axis] >= bound
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                cut = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])]
                cut[axis] = bound
                out.append((cut[0], cut[1]))
            if cur_in:
                out.append(cur)
        pts = out
        if not pts:
            break
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def polygon_area(xy: np.ndarray) -> float:
    """Area of a polygon ``(N, 2)`` (shoelace; 0 for fewer than 3 points)."""
    if len(xy) < 3:
        return 0.0
    scale = float(np.abs(xy).max())
    if scale > 1e100:  # absurd coordinates (a fuzzed or broken file): products would overflow; inf if the area does
        return polygon_area(xy / scale) * scale * scale  # Python floats overflow to inf quietly
    x, y = xy[:, 0], xy[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0
