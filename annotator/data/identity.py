"""Image identity: the content digest recorded per image, and finding pictures that changed under the same name.

The working file records, in each image entry, ``file_sha256``: the SHA-256
of the image *file's bytes* when its masks were made (an extra field; other
COCO readers ignore it). Why the file bytes, not
:func:`sam_core.cache.image_digest` of the decoded pixels:

* checking it needs no decoding: a folder of thousands of images is checked at
  disk speed (hundreds of MB/s) instead of decoding speed (about 10 images a
  second for 12-megapixel JPEGs), and unchanged files whose
  ``(size, mtime_ns, inode, ctime_ns)`` were seen in this process are not even
  read again;
* it is a standard anyone can recompute (``sha256sum``), independent of our
  decoder, EXIF handling and numpy layout;
* the price is a false alarm when only metadata changed (a photo manager
  rewrote the EXIF, a lossless recompression): the image is then flagged for
  review although its pixels are the same, which costs a look, never a mask.

:func:`find_changed` reports, for every recorded digest, whether the file is
missing or has other content; the window flags those images and marks their
annotations for review instead of silently showing the old masks on a new
picture.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

from annotator.data.files import open_regular

__all__ = ["DIGEST_FIELD", "MAX_IMAGE_FILE_BYTES", "ImageChange", "file_sha256", "find_changed", "is_sha256"]

PathLike = Union[str, "os.PathLike[str]"]

#: The image entry's field holding the SHA-256 (hex) of the image file.
DIGEST_FIELD = "file_sha256"
#: Largest image file read to hash it (or decode it): 4 GiB.
MAX_IMAGE_FILE_BYTES = 4 * 2**30

_MEMO_SIZE = 100_000
_memo: "OrderedDict[Tuple[str, int, int, int, int], str]" = OrderedDict()
_memo_lock = threading.Lock()


def is_sha256(value: object) -> bool:
    """Whether ``value`` is 64 lowercase hex characters."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def file_sha256(path: PathLike) -> str:
    """SHA-256 (hex) of a regular file's bytes; remembered per ``(size, mtime_ns, inode, ctime_ns)`` in this process.

    Raises
    ------
    OSError
        Missing, not a regular file (:class:`~annotator.data.files.NotRegularFileError`),
        over :data:`MAX_IMAGE_FILE_BYTES`, unreadable.
    """
    fd = open_regular(path, MAX_IMAGE_FILE_BYTES)
    try:
        st = os.fstat(fd)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        with _memo_lock:
            known = _memo.get(key)
        if known is not None:
            return known
        h = hashlib.sha256()
        while True:
            chunk = os.read(fd, 8 * 2**20)
            if not chunk:
                break
            h.update(chunk)
    finally:
        os.close(fd)
    digest = h.hexdigest()
    with _memo_lock:
        _memo[key] = digest
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return digest


@dataclass(frozen=True)
class ImageChange:
    """An image whose file is not the one its annotations were made on.

    Attributes
    ----------
    image_id, file_name
        The record.
    path
        Its file.
    recorded
        The SHA-256 in the working file.
    current
        The file's SHA-256 now; ``None`` when it cannot be read (see ``problem``).
    problem
        ``"changed"`` (other content), ``"missing"`` or ``"unreadable: ..."``.
    annotation_ids
        The annotations made on the recorded picture (to mark for review).
    """

    image_id: int
    file_name: str
    path: Path
    recorded: str
    current: Optional[str]
    problem: str
    annotation_ids: Tuple[int, ...] = field(default=())

    def describe(self) -> str:
        n = len(self.annotation_ids)
        masks = f"; its {n} annotation(s) were made on the old picture and need review" if n else ""
        if self.problem == "changed":
            return f"'{self.file_name}' is another picture than the one annotated (its content changed){masks}"
        return f"'{self.file_name}': {self.problem}{masks}"


def find_changed(
    records: Iterable[Tuple[int, str, Path, str, Tuple[int, ...]]],
    hasher: Callable[[Path], str] = file_sha256,
    cancel: Optional[threading.Event] = None,
) -> List[ImageChange]:
    """The records whose file no longer has the recorded digest.

    Parameters
    ----------
    records
        ``(image_id, file_name, path, recorded sha256, annotation ids)``.
    hasher
        Digest of a file (default :func:`file_sha256`).
    cancel
        Stop early when set (returns what was found so far).
    """
    out = []
    for image_id, file_name, path, recorded, ann_ids in records:
        if cancel is not None and cancel.is_set():
            break
        try:
            current: Optional[str] = hasher(path)
            problem = "changed"
        except FileNotFoundError:
            current, problem = None, "missing (deleted or moved)"
        except (OSError, ValueError) as exc:
            current, problem = None, f"unreadable: {getattr(exc, 'strerror', None) or exc}"
        if current != recorded:
            out.append(ImageChange(image_id, file_name, Path(path), recorded, current, problem, tuple(ann_ids)))
    return out
