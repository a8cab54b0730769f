"""Reading only regular files, with a size bound, and names that fit the file system.

Everything the application reads as a working file, an image or a cache entry,
and everything it replaces on disk, is first checked here:

* **Only regular files.** A path is resolved (symlinks followed) and refused
  unless it is a regular file: a FIFO would block the reader forever, a device
  such as ``/dev/zero`` never ends, and replacing ``/dev/null`` (as root) with a
  regular file breaks the system. The check runs before the file is opened
  (opening some devices has side effects), and again on the open descriptor
  (``O_NONBLOCK``, so that a FIFO swapped in between cannot block), so a file
  replaced in the meantime is caught too. A symlink loop gives the operating
  system's ``ELOOP`` error, never a hang.
* **A size bound.** :func:`read_regular` reads at most ``max_bytes`` and
  refuses a larger file before reading it (and a file that grows while it is
  read).
* **Names within the limit.** :func:`fit_name` shortens a name (keeping its
  start readable and appending a hash of the whole name) so that the name
  plus a suffix of ``reserve`` bytes fits the folder's ``NAME_MAX``
  (``os.pathconf``; 255 bytes where it cannot be asked). Temporary files,
  backups, lock files and conflict copies are all named through it, so a long
  working-file name never makes a later save fail.

The errors are :class:`OSError` subclasses with ``strerror`` set to a sentence
for the user, so code that already reports ``OSError`` reports these too.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "path_arg",
    "NotRegularFileError",
    "FileTooLargeError",
    "DEFAULT_NAME_MAX",
    "check_regular",
    "open_regular",
    "read_regular",
    "kind_of",
    "name_max",
    "fit_name",
]

PathLike = Union[str, "os.PathLike[str]"]

#: ``NAME_MAX`` assumed where the file system cannot be asked (ext4, APFS, NTFS: 255).
DEFAULT_NAME_MAX = 255

_HASH_CHARS = 8  # hex characters of the name hash appended by fit_name


class NotRegularFileError(OSError):
    """The path is a FIFO, device, socket or folder where a regular file was expected."""

    def __init__(self, path: PathLike, kind: str, action: str = "read"):
        self.kind = kind
        super().__init__(errno.EINVAL, f"{_article(kind)} {kind}, not a regular file; refusing to {action} it", os.fspath(path))


class FileTooLargeError(OSError):
    """The file is larger than the bound given for it."""

    def __init__(self, path: PathLike, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(
            errno.EFBIG, f"the file is {_mb(size)}, over the limit of {_mb(limit)} for this kind of file", os.fspath(path)
        )


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _mb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def kind_of(mode: int) -> str:
    """Words for the file type in ``st_mode`` (``"FIFO (named pipe)"``, ``"character device"``...)."""
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def check_regular(path: PathLike, action: str = "read") -> os.stat_result:
    """``os.stat(path)`` (symlinks followed), refusing anything but a regular file.

    Raises
    ------
    NotRegularFileError
        A FIFO, device, socket or folder.
    OSError
        As ``os.stat`` raises it: missing (``FileNotFoundError``), symlink loop
        (``ELOOP``), permission denied...
    ValueError
        Never: a path with a NUL character gives an ``OSError`` (``EINVAL``) here.
    """
    try:
        st = os.stat(path)
    except ValueError as exc:  # embedded NUL byte
        raise OSError(errno.EINVAL, f"invalid file name ({exc})", os.fspath(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, kind_of(st.st_mode), action)
    return st


def open_regular(path: PathLike, max_bytes: Optional[int] = None) -> int:
    """Open a regular file for reading; returns the descriptor (close it with ``os.close``).

    The file is checked before it is opened and again on the descriptor,
    which is opened with ``O_NONBLOCK`` (cleared again for a regular file) so
    that a FIFO put there in between cannot block.

    Raises
    ------
    NotRegularFileError, FileTooLargeError, OSError
    """
    st = check_regular(path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise FileTooLargeError(path, st.st_size, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, kind_of(st.st_mode))
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLargeError(path, st.st_size, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`).

    Raises
    ------
    NotRegularFileError, FileTooLargeError
        Also when the file grows past the bound while it is read.
    OSError
    """
    fd = open_regular(path, max_bytes)
    try:
        return read_open(fd, path, max_bytes)
    finally:
        os.close(fd)


def read_open(fd: int, path: PathLike, max_bytes: int) -> bytes:
    """The rest of the open file ``fd`` (of ``path``, for messages), in 16 MiB reads, at most ``max_bytes``.

    Raises
    ------
    FileTooLargeError
        The file grew past the bound while it was read.
    OSError
    """
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, min(16 * 2**20, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLargeError(path, total, max_bytes)
    return b"".join(chunks)


def path_arg(text: str) -> Path:
    """``argparse`` ``type=`` for a path on the command line: a NUL character (no system takes one) is a usage error."""
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL character")
    return Path(text)


def name_max(folder: PathLike) -> int:
    """Longest file name (bytes) in ``folder``: ``os.pathconf(folder, "PC_NAME_MAX")``, else 255."""
    try:
        n = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAME_MAX
    return n if isinstance(n, int) and 14 <= n <= 4096 else DEFAULT_NAME_MAX


def _encoded(name: str) -> bytes:
    try:
        return os.fsencode(name)
    except UnicodeError:  # a lone surrogate the file-system encoding cannot write
        return name.encode("utf-8", "surrogatepass")


def fit_name(name: str, reserve: int, limit: int = DEFAULT_NAME_MAX) -> str:
    """``name``, or a shortened form of it, such that it plus ``reserve`` bytes fits ``limit`` bytes.

    Lengths are counted in bytes of the file-system encoding
    (:func:`os.fsencode`), as ``NAME_MAX`` is. A shortened name is the
    longest prefix of ``name`` that fits (cut at a character boundary),
    ``"~"`` and 8 hex characters of the SHA-256 of the whole name: two long
    names that share their start still get different short names, and the
    same name always gets the same one.

    Raises
    ------
    ValueError
        ``limit - reserve`` leaves no room for even the hash.
    """
    raw = _encoded(name)
    if len(raw) + reserve <= limit:
        return name
    room = limit - reserve - 1 - _HASH_CHARS
    if room < 1:
        raise ValueError(f"a name limit of {limit} bytes leaves no room for a suffix of {reserve} bytes")
    tag = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    prefix = name
    while len(_encoded(prefix)) > room:  # characters, not bytes, so multi-byte characters stay whole
        prefix = prefix[: max(0, min(len(prefix) - 1, room))]
    return f"{prefix}~{tag}"
