"""Crash-safe file writes and once-per-session backups.

:func:`atomic_write_bytes` writes to a temporary file in the destination's own
folder, flushes and fsyncs it, renames it over the destination with
:func:`os.replace` and then fsyncs the folder. A crash or kill at any moment
therefore leaves either the old file or the new one, never a truncated mix.
On any failure the temporary file is removed, the old file is untouched and
the error propagates unchanged (an :class:`OSError` keeps its ``errno``, e.g.
``ENOSPC``, ``EROFS`` or ``EACCES``), so callers can tell the user and keep
their state marked unsaved.

:func:`backup_once` copies an existing file aside before the first write to it
in this process, as ``NAME.YYYYmmdd-HHMMSS.bak`` next to it; the newest
:data:`KEEP_BACKUPS` such copies are kept. Timestamped names (rather than one
``NAME.bak``) mean that a file the user chose to overwrite in one session is
still there after the next session.

Temporary files are named ``.NAME.<random>.tmp``: hidden, and without an image
extension, so folder listings skip them.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Optional, Union

__all__ = ["atomic_write_bytes", "atomic_write_text", "backup_once", "KEEP_BACKUPS"]

PathLike = Union[str, "os.PathLike[str]"]

#: How many ``NAME.*.bak`` copies :func:`backup_once` keeps per file.
KEEP_BACKUPS = 10

_backed_up: set[str] = set()
_backup_lock = threading.Lock()

# errnos meaning "this file system cannot fsync a directory", not a failed write
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EISDIR, errno.EACCES}


def _resolve_target(path: PathLike) -> Path:
    """The file to replace: a symlink is followed so the link itself survives."""
    p = Path(path)
    if p.is_symlink():
        return Path(os.path.realpath(p))
    return p


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - Windows cannot open a directory
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Parameters
    ----------
    path
        Destination file. Its folder must exist. If it is a symlink, the file it
        points to is replaced. An existing file's permission bits are kept; a
        new file gets ``0o666`` minus the umask.
    data
        The complete new contents.

    Raises
    ------
    OSError
        Whatever the operating system reported (``errno`` intact). The old
        file is then unchanged and no temporary file is left behind.
    """
    target = _resolve_target(path)
    folder = target.parent if str(target.parent) else Path(".")
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
    try:
        try:
            try:
                mode = os.stat(target).st_mode & 0o7777
            except FileNotFoundError:
                mode = None
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written <= 0:  # pragma: no cover - os.write raises instead
                    raise OSError(errno.EIO, "write returned 0 bytes", str(tmp))
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``.

    Newlines are written as given (no platform translation).
    """
    atomic_write_bytes(path, text.encode(encoding))


def _prune_backups(target: Path) -> None:
    pattern = re.compile(re.escape(target.name) + r"\.(\d{8}-\d{6})(?:-(\d+))?\.bak")
    found = []
    for p in target.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m:
            found.append(((m.group(1), int(m.group(2) or 0)), p))
    found.sort(key=lambda item: item[0])
    for _, old in found[:-KEEP_BACKUPS]:
        try:
            old.unlink()
        except OSError:  # a backup we cannot remove is not worth failing a save
            pass


def backup_once(path: PathLike) -> Optional[Path]:
    """Copy ``path`` aside the first time this process is about to write it.

    Parameters
    ----------
    path
        The file about to be written.

    Returns
    -------
    Path or None
        The backup written now (``NAME.YYYYmmdd-HHMMSS.bak`` in the same
        folder), or ``None`` when this path was already seen in this process
        or did not exist yet. Only the newest :data:`KEEP_BACKUPS` backups of
        a file are kept.

    Raises
    ------
    OSError
        When the existing file cannot be read or the copy cannot be written;
        the caller should then not write the file either. The path is then not
        marked as backed up, so the next attempt tries again.
    """
    target = _resolve_target(path)
    key = os.path.normcase(os.path.abspath(target))
    with _backup_lock:
        if key in _backed_up:
            return None
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            _backed_up.add(key)
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = target.with_name(f"{target.name}.{stamp}.bak")
        n = 1
        while backup.exists():
            backup = target.with_name(f"{target.name}.{stamp}-{n}.bak")
            n += 1
        atomic_write_bytes(backup, data)
        try:
            st = os.stat(target)
            os.utime(backup, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError:  # pragma: no cover - cosmetic only
            pass
        _backed_up.add(key)
        _prune_backups(target)
        return backup
