"""Listing and loading images, robust to the files people actually have.

Everything the annotator shows, encodes and annotates comes through
:func:`load_image`, so the choices below hold everywhere:

* **EXIF orientation is applied.** Pixels are returned as the user sees the
  photo in a viewer: the EXIF ``Orientation`` tag (1-8) is applied with the
  same mapping as Pillow's :func:`PIL.ImageOps.exif_transpose`, and
  :func:`image_size` reports the size *after* orientation. Masks, COCO
  ``width``/``height`` and RLE sizes all refer to this oriented image.
  (The tag is read from the file's header; a PNG whose ``eXIf`` chunk comes
  after the image data, which the PNG specification forbids, is not rotated.)
* **Output is always (H, W, 3) uint8 RGB**, C-contiguous and writable.
* **16-bit and other high-depth single-channel images** (``I;16``, ``I``,
  ``F``: 16-bit grayscale PNG and TIFF, 32-bit TIFF) are stretched linearly
  from their actual minimum..maximum to 0..255, so that 10- and 12-bit sensor
  data stays visible (a plain ``>> 8`` would make it nearly black). A constant
  image becomes black; NaN becomes 0. Pillow itself reduces 16-bit *RGB* files
  to 8 bits by keeping the high byte (``>> 8``); those are used as Pillow
  returns them.
* **Transparency** (RGBA, LA, palette images with a transparent colour) is
  composited over **black**: fully transparent pixels become black, whatever
  colour they happen to store.
* **Grayscale, bilevel, palette, CMYK** (including Adobe's inverted CMYK
  JPEGs), YCbCr and LAB are converted to RGB by Pillow.
* **Animated GIF / WebP / multi-page TIFF**: the first frame is used.
* **Truncated files are an error**, never a half-grey image: this relies on
  Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False``, which this
  module does not change.
* **Size limit**: Pillow's decompression-bomb guard (about 89 megapixels by
  default) would reject legitimate scans and panoramas, so importing this
  module deliberately raises ``PIL.Image.MAX_IMAGE_PIXELS`` to
  :data:`MAX_PIXELS` (one gigapixel). Larger images are refused with an
  :class:`ImageLoadError` that says so.
* **Memory**: pixels are converted strip by strip straight into one
  preallocated, already oriented output array (no float copy, no second
  full-size copy for rotation). Peak memory for an RGB image is Pillow's
  decoded copy (4 bytes per pixel) plus the output (3 bytes per pixel):
  about 2.1 GB for 20000 x 15000, rotated or not. :func:`estimate_memory`
  gives that figure from the header alone (no decoding), and
  ``load_image(path, max_bytes=...)`` refuses, before decoding, an image
  whose estimate is over ``max_bytes``: a 1 MB PNG can declare 31622 x 31622
  pixels (a "decompression bomb" under the one-gigapixel limit).
* **Only regular files** are opened (symlinks followed), of at most
  :data:`annotator.data.identity.MAX_IMAGE_FILE_BYTES`: a FIFO, a device or a
  symlink loop gives an :class:`ImageLoadError`, never a hang.

Every failure raises :class:`ImageLoadError`, whose message names the file and
the problem in words a user can act on.

Why so long: every way an image file reaches the application goes through here (listing, header probing and the memory estimate, decoding with EXIF orientation, bit depths, alpha, animation, the size bound), so that the choices above hold everywhere; splitting it would put the same checks in two places.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from annotator.data.files import FileTooLargeError, NotRegularFileError, open_regular
from annotator.data.identity import MAX_IMAGE_FILE_BYTES

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageLoadError",
    "list_images",
    "load_image",
    "image_size",
    "natural_key",
    "MemoryEstimate",
    "estimate_memory",
    "WINDOW_BYTES_PER_PIXEL",
]

PathLike = Union[str, "os.PathLike[str]"]

#: File name extensions treated as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Largest image accepted, in pixels (width * height).
MAX_PIXELS = 1_000_000_000

# Deliberate: a legitimate 300-megapixel scan must not be refused as a
# "decompression bomb". Never lower a limit someone else raised or disabled.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Bytes of Pillow-side pixels converted per strip.
_STRIP_BYTES = 16 * 1024 * 1024

_ORIENTATION_TAG = 0x0112
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I", "I;32", "F")


class ImageLoadError(Exception):
    """An image file could not be listed, measured or decoded.

    Attributes
    ----------
    path : Path
        The file concerned.
    problem : str
        What is wrong, in words for the user (no file name).
    """

    def __init__(self, path: PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"Cannot load image '{self.path}': {problem}")


# ----------------------------------------------------------------------------
# listing


def natural_key(text: str) -> tuple:
    """Sort key ordering embedded numbers by value: ``img2`` < ``img10``.

    Case-insensitive; ties are broken by the exact text so the order is total.
    """
    parts = re.split(r"([0-9]+)", text.casefold())
    key = tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
    return (key, text)


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(folder: Path, recursive: bool, seen: set) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        if not seen:  # the folder asked for: let the caller hear about it
            raise
        return  # an unreadable sub-folder is skipped
    real = os.path.realpath(folder)
    seen.add(real)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_file():  # follows symlinks; broken links are skipped
                if _is_image_name(entry.name):
                    yield Path(entry.path)
            elif recursive and entry.is_dir():
                if os.path.realpath(entry.path) not in seen:  # symlink loops
                    yield from _walk(Path(entry.path), recursive, seen)
        except OSError:
            continue


def list_images(folder: PathLike, *, recursive: bool = False) -> List[Path]:
    """The image files in ``folder``, in natural order.

    Parameters
    ----------
    folder
        Folder to list.
    recursive
        Also list sub-folders (hidden ones skipped, symlink loops cut).

    Returns
    -------
    list of Path
        ``folder / relative name`` for every regular file (or symlink to one)
        whose extension is in :data:`IMAGE_EXTENSIONS`, in any letter case.
        Hidden files (name starting with ``.``) are skipped. Sorted by
        :func:`natural_key` of the path relative to ``folder``, so ``img2``
        comes before ``img10``.

    Raises
    ------
    OSError
        If ``folder`` itself cannot be listed (missing, not a folder,
        permission denied).
    """
    root = Path(folder)
    found = list(_walk(root, recursive, set()))
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


# ----------------------------------------------------------------------------
# opening


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow (header only), mapping every failure to words; closes the file on exit.

    Only a regular file (symlinks followed) of at most
    :data:`annotator.data.identity.MAX_IMAGE_FILE_BYTES` is opened: a FIFO would
    block, a device never ends.
    """
    try:
        fd = open_regular(path, MAX_IMAGE_FILE_BYTES)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageLoadError(path, "broken symbolic link (its target is missing)") from None
        raise ImageLoadError(path, "file not found (was it deleted or moved?)") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied (the file cannot be read)") from None
    except NotRegularFileError as exc:
        if exc.kind == "folder":
            raise ImageLoadError(path, "this is a folder, not an image file") from None
        raise ImageLoadError(path, f"this is {exc.strerror}") from None
    except FileTooLargeError as exc:
        raise ImageLoadError(path, f"too large: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageLoadError(path, "symbolic link loop (the link points back to itself)") from None
        raise ImageLoadError(path, f"cannot access the file ({exc.strerror or exc})") from None
    f = os.fdopen(fd, "rb")
    try:
        if os.fstat(fd).st_size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        im = _pillow_open(f, path)
        try:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(path, f"invalid image size {w} x {h}")
            if w * h > MAX_PIXELS:
                raise ImageLoadError(path, _too_large_message((w, h)))
            yield im
        finally:
            im.close()
    finally:
        f.close()


def _pillow_open(f: BinaryIO, path: Path) -> Image.Image:
    try:
        return Image.open(f)
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found (was it deleted or moved?)") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied (the file cannot be read)") from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            path, "not an image, or an image format that cannot be read (the content does not match the extension)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(path, _too_large_message(None)) from None
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to open the file") from None
    except Exception as exc:  # Pillow plugins raise SyntaxError, ValueError, struct.error...
        raise ImageLoadError(path, f"unreadable or corrupt image header ({_brief(exc)})") from None


def _too_large_message(size) -> str:
    what = f"{size[0]} x {size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels" if size else "the image"
    return f"too large: {what} is over the limit of {MAX_PIXELS / 1e6:.0f} megapixels"


def _brief(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 from the header (1 when absent or unreadable)."""
    try:
        if im.format == "PNG":
            # PngImageFile.getexif would decode the whole image to look for a
            # late eXIf chunk; the base class reads what the header gave us.
            exif = Image.Image.getexif(im)
        else:
            exif = im.getexif()
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # corrupt EXIF must not make the image unusable
        return 1
    return value if 1 <= value <= 8 else 1


def _oriented_size(size: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    w, h = size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _source_view(out: np.ndarray, orientation: int) -> np.ndarray:
    """A view of the oriented output ``out`` laid out like the stored image.

    ``_source_view(out, o)[y, x]`` is the output pixel where the stored pixel
    ``(y, x)`` belongs, for the EXIF orientation ``o``: writing the stored
    pixels through this view applies the same transposition as Pillow's
    ``ImageOps.exif_transpose`` without a second full-size copy.
    """
    if orientation == 2:  # shown = FLIP_LEFT_RIGHT(stored)
        return out[:, ::-1]
    if orientation == 3:  # ROTATE_180
        return out[::-1, ::-1]
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return out[::-1]
    if orientation == 5:  # TRANSPOSE
        return out.transpose(1, 0, 2)
    if orientation == 6:  # ROTATE_270: stored turned 90 degrees clockwise
        return np.rot90(out, 1)
    if orientation == 7:  # TRANSVERSE
        return out.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:  # ROTATE_90: stored turned 90 degrees counter-clockwise
        return np.rot90(out, -1)
    return out


def image_size(path: PathLike) -> Tuple[int, int]:
    """``(width, height)`` of the image as displayed, read from the header only.

    The EXIF orientation is applied (a portrait photo stored landscape with
    orientation 6 reports its portrait size), matching :func:`load_image`.

    Raises
    ------
    ImageLoadError
        The file is missing, unreadable, empty, not an image or too large.
    """
    p = Path(path)
    with _open(p) as im:
        return _oriented_size(im.size, _orientation(im))


# ----------------------------------------------------------------------------
# decoding


def _decode(im: Image.Image, path: Path) -> None:
    """Decode the pixels of the current frame, turning failures into words."""
    try:
        im.load()
    except MemoryError:
        w, h = im.size
        raise ImageLoadError(path, f"not enough memory to decode a {w} x {h} image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(path, _too_large_message(im.size)) from None
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found (was it deleted or moved?)") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied (the file cannot be read)") from None
    except EOFError:
        raise ImageLoadError(path, _TRUNCATED) from None
    except Exception as exc:
        text = str(exc).lower()
        if "truncated" in text or "premature end" in text or "incomplete" in text:
            raise ImageLoadError(path, _TRUNCATED) from None
        raise ImageLoadError(path, f"corrupt image data ({_brief(exc)})") from None


_TRUNCATED = "truncated: the file ends before the image data does (an interrupted download or copy?)"


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return im.mode in ("P", "L", "RGB") and "transparency" in im.info


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """(h, W, 4) uint8 -> (h, W, 3) uint8, colour * alpha / 255 rounded."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _value_range(im: Image.Image, rows: int) -> Tuple[float, float]:
    lo, hi = np.inf, -np.inf
    w, h = im.size
    for y0 in range(0, h, rows):
        a = np.asarray(im.crop((0, y0, w, min(h, y0 + rows))))
        if a.dtype.kind == "f":
            finite = a[np.isfinite(a)]
            if finite.size == 0:
                continue
            a = finite
        lo = min(lo, float(a.min()))
        hi = max(hi, float(a.max()))
    if not np.isfinite(lo):
        return 0.0, 0.0
    return lo, hi


def _strip_to_rgb(strip: Image.Image, mode_range) -> np.ndarray:
    """One horizontal strip of any Pillow mode -> (h, W, 3) uint8."""
    mode = strip.mode
    if _has_alpha(strip):
        return _composite_on_black(np.asarray(strip.convert("RGBA")))
    if mode == "RGB":
        return np.asarray(strip)
    if mode == "L":
        return np.repeat(np.asarray(strip)[..., None], 3, axis=2)
    if mode in _HIGH_DEPTH_MODES:
        lo, hi = mode_range
        a = np.asarray(strip).astype(np.float64)
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        if hi > lo:
            a = (a - lo) * (255.0 / (hi - lo)) + 0.5
        else:
            a = np.zeros_like(a)
        g = np.clip(a, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return np.asarray(strip.convert("RGB"))  # 1, P, CMYK, YCbCr, LAB, HSV, ...


def _to_rgb_array(im: Image.Image, orientation: int = 1) -> np.ndarray:
    """Convert a decoded Pillow image into a new oriented (H, W, 3) uint8 array.

    Strips of rows are converted one at a time and written straight to their
    oriented place, in blocks that fit in cache (a transposing copy of a whole
    300-megapixel image would thrash it).
    """
    w, h = im.size
    ow, oh = _oriented_size((w, h), orientation)
    out = np.empty((oh, ow, 3), dtype=np.uint8)
    target = _source_view(out, orientation)  # shaped (h, w, 3)
    rows = max(1, _STRIP_BYTES // (4 * w))
    block = w if orientation in (1, 2, 3, 4) else 256
    mode_range = _value_range(im, rows) if im.mode in _HIGH_DEPTH_MODES else None
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        rgb = _strip_to_rgb(im.crop((0, y0, w, y1)), mode_range)
        for x0 in range(0, w, block):
            target[y0:y1, x0 : x0 + block] = rgb[:, x0 : x0 + block]
    return out


#: Pillow's bytes per pixel in memory by mode (its storage, not the file's); other modes take 4.
_PILLOW_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I;16S": 2}

#: What the window adds per pixel to open an image, beyond decoding it: its display copy and the mask
#: candidates. Issue 15 measured 9.2 GB for an RGB PNG of 31622 x 31622 (1.0 gigapixel); decoding
#: accounts for 7 bytes per pixel of it (below), the window for the remaining 2.2.
WINDOW_BYTES_PER_PIXEL = 2.2

# strips being converted, Pillow's tile buffers: a constant on top of the per-pixel figures
_FIXED_OVERHEAD = 4 * _STRIP_BYTES


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory an image takes to load, from its header.

    Attributes
    ----------
    width, height
        As stored (before EXIF orientation: the same pixel count).
    mode
        Pillow's mode (``"RGB"``, ``"1"``, ``"I;16"``...).
    decode_bytes
        Peak of :func:`load_image`: Pillow's decoded copy plus the
        ``(H, W, 3)`` output, plus a constant for the strips being converted.
    open_bytes
        ``decode_bytes`` plus what the window adds
        (:data:`WINDOW_BYTES_PER_PIXEL`) to show and annotate it.
    """

    width: int
    height: int
    mode: str
    decode_bytes: int
    open_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def describe(self) -> str:
        """``31622 x 31622 pixels, about 9.3 GB to open``."""
        return f"{self.width} x {self.height} pixels, about {self.open_bytes / 1e9:.1f} GB to open"


def _estimate(im: Image.Image) -> MemoryEstimate:
    w, h = im.size
    pixels = w * h
    pillow = _PILLOW_BYTES_PER_PIXEL.get(im.mode, 4)
    decode = pixels * (pillow + 3) + _FIXED_OVERHEAD
    return MemoryEstimate(w, h, im.mode, decode, decode + int(pixels * WINDOW_BYTES_PER_PIXEL))


def estimate_memory(path: PathLike) -> MemoryEstimate:
    """How much memory ``path`` takes to load and to open in the window, read from its header only.

    Pillow's ``Image.open`` reads the size and mode without decoding, so this
    costs the same for a 1-gigapixel bomb as for a thumbnail.

    Raises
    ------
    ImageLoadError
        As :func:`image_size`.
    """
    p = Path(path)
    with _open(p) as im:
        return _estimate(im)


def load_image(path: PathLike, *, max_bytes: Optional[int] = None) -> np.ndarray:
    """Decode an image file into an RGB array, as the user sees it.

    Parameters
    ----------
    path
        Image file (any name, symlinks followed).
    max_bytes
        Refuse, before decoding anything, an image whose
        :attr:`MemoryEstimate.decode_bytes` is over this many bytes (see
        :mod:`annotator.data.memory` for a budget).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB, C-contiguous, with the EXIF orientation
        applied; ``(W, H) == image_size(path)``. See the module docstring for
        how 16-bit, transparent, palette, CMYK and animated files are handled.

    Raises
    ------
    ImageLoadError
        For a missing, deleted, unreadable, empty, truncated, corrupt, non-image
        or too-large file, or one over ``max_bytes``; the message names the
        file and the problem.
    """
    p = Path(path)
    with _open(p) as im:
        if max_bytes is not None:
            estimate = _estimate(im)
            if estimate.decode_bytes > max_bytes:
                raise ImageLoadError(
                    p,
                    f"too large for the memory budget: {estimate.width} x {estimate.height} pixels need about "
                    f"{estimate.decode_bytes / 1e9:.1f} GB to decode, over the {max_bytes / 1e9:.1f} GB allowed",
                )
        orientation = _orientation(im)
        _decode(im, p)
        try:
            return _to_rgb_array(im, orientation)
        except ImageLoadError:
            raise
        except MemoryError:
            w, h = im.size
            raise ImageLoadError(p, f"not enough memory to convert a {w} x {h} image") from None
        except Exception as exc:
            raise ImageLoadError(p, f"corrupt or unsupported image data ({_brief(exc)})") from None
