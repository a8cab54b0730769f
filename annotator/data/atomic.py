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
extension, so folder listings skip them. A backup is written through a
temporary file of the *original* file's name, so every temporary file that
writes to ``NAME`` matches :func:`temp_pattern` and a kill at any moment leaves
nothing that :func:`remove_stale_temps` will not recognise on the next open.

Names: temporary, backup names (and the lock and conflict names of
:mod:`annotator.data.document`) are built with
:func:`annotator.data.files.fit_name`, so they fit the folder's ``NAME_MAX``
whatever ``NAME`` is: a working file whose name already takes 250 of the 255
bytes still gets ``.<shortened NAME>~<hash>.<random>.tmp`` and its backups.

Only writable files are written over: a destination the user made read-only
(``chmod a-w``) raises :class:`WriteProtectedError` (a ``PermissionError``),
although renaming over it would succeed. Only regular files are written over: a destination (after symlinks are
followed) that is a FIFO, a device, a socket or a folder raises
:class:`annotator.data.files.NotRegularFileError` (an ``OSError``) before
anything is created, so ``export -o /dev/null`` can never replace a device.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import List, Optional, Union

from annotator.data.files import NotRegularFileError, check_regular, fit_name, name_max, read_regular

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "backup_once",
    "KEEP_BACKUPS",
    "MAX_BACKUP_BYTES",
    "temp_pattern",
    "remove_stale_temps",
    "backup_name",
    "NotRegularFileError",
    "WriteProtectedError",
    "write_protected",
]

PathLike = Union[str, "os.PathLike[str]"]

#: How many ``NAME.*.bak`` copies :func:`backup_once` keeps per file.
KEEP_BACKUPS = 10
#: Largest file :func:`backup_once` copies (a bigger one is an error: the caller must not write then).
MAX_BACKUP_BYTES = 4 * 2**30

# bytes a temporary name adds to the (fitted) name: "." + "." + 12 hex + ".tmp"
_TMP_RESERVE = 1 + 1 + 12 + 4
# bytes a backup name adds: "." + "YYYYmmdd-HHMMSS" + "-NNNN" + ".bak"
_BAK_RESERVE = 1 + 15 + 5 + 4

_backed_up: set[str] = set()
_backup_lock = threading.Lock()
_backup_done = threading.Condition(_backup_lock)  # a copy aside finished
_backing_up: set[str] = set()  # files being copied aside now (outside the lock)

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


def _temp_name(name: str, folder: Path) -> str:
    return f".{fit_name(name, _TMP_RESERVE, name_max(folder))}.{secrets.token_hex(6)}.tmp"


def temp_pattern(path: PathLike) -> "re.Pattern[str]":
    """The names of the temporary files :func:`atomic_write_bytes` uses for ``path`` (and its backups)."""
    p = Path(path)
    stem = fit_name(p.name, _TMP_RESERVE, name_max(p.parent if str(p.parent) else "."))
    return re.compile(r"\." + re.escape(stem) + r"\.[0-9a-f]{12}\.tmp")


def remove_stale_temps(path: PathLike, min_age_s: float = 300.0) -> List[Path]:
    """Delete the temporary files of ``path`` left by a killed writer; returns those deleted.

    Only names matching :func:`temp_pattern` (ours, for this very file), only
    regular files, and only those not modified for ``min_age_s`` seconds (a
    writer in another process may be using a younger one). Errors are ignored:
    a leftover that cannot be deleted now is tried again next time.
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    pattern = temp_pattern(p)
    removed = []
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        candidate = folder / name
        try:
            st = os.lstat(candidate)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age_s:
                continue
            os.unlink(candidate)
            removed.append(candidate)
        except OSError:
            continue
    return removed


class WriteProtectedError(PermissionError):
    """The file to replace is write-protected (no write permission), though its folder may be writable."""

    def __init__(self, path: PathLike):
        super().__init__(errno.EACCES, "the file is write-protected (its permissions are read-only); "
                         "make it writable to save over it", os.fspath(path))


def write_protected(st: os.stat_result, path: PathLike) -> bool:
    """Whether the file of ``st`` must not be written: no write bit at all, or none for this user.

    A rename over a file needs only the folder's permission, so without this
    check an atomic save would replace a file the user made read-only
    (``chmod a-w``, the read-only attribute on Windows) to protect it. Root
    passes :func:`os.access` for any file, so for it only the mode bits count.
    """
    if not st.st_mode & 0o222:
        return True
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return False
    return not os.access(path, os.W_OK)


def _check_replaceable(target: Path) -> None:
    """Refuse to replace anything but a regular, writable file (a missing file is fine)."""
    try:
        st = check_regular(target, "replace")
    except FileNotFoundError:
        return
    if write_protected(st, target):
        raise WriteProtectedError(target)


def atomic_write_bytes(path: PathLike, data: bytes, *, temp_for: Optional[PathLike] = None) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically and durably.

    Parameters
    ----------
    path
        Destination file. Its folder must exist. If it is a symlink, the file it
        points to is replaced. An existing file's permission bits are kept; a
        new file gets ``0o666`` minus the umask.
    data
        The complete new contents.
    temp_for
        Name the temporary file after this file instead of ``path`` (a backup
        of ``NAME`` is written through ``NAME``'s temporary names).

    Returns
    -------
    os.stat_result
        Of the file written, right after the rename.

    Raises
    ------
    NotRegularFileError
        ``path`` (after symlinks) is a FIFO, device, socket or folder; nothing
        was written.
    WriteProtectedError
        ``path`` is write-protected; nothing was written.
    OSError
        Whatever the operating system reported (``errno`` intact). The old
        file is then unchanged and no temporary file is left behind.
    """
    target = _resolve_target(path)
    _check_replaceable(target)
    folder = target.parent if str(target.parent) else Path(".")
    tmp = folder / _temp_name(Path(temp_for).name if temp_for is not None else target.name, folder)
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
    return os.stat(target)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> os.stat_result:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``.

    Newlines are written as given (no platform translation).
    """
    return atomic_write_bytes(path, text.encode(encoding))


def backup_name(path: PathLike, stamp: str, n: int = 0) -> Path:
    """``NAME.<stamp>[-n].bak`` beside ``path``, ``NAME`` shortened to fit the folder's name limit."""
    p = Path(path)
    prefix = fit_name(p.name, _BAK_RESERVE, name_max(p.parent if str(p.parent) else "."))
    return p.parent / (f"{prefix}.{stamp}-{n}.bak" if n else f"{prefix}.{stamp}.bak")


def _prune_backups(target: Path, keep: Path) -> None:
    """Remove all but the newest :data:`KEEP_BACKUPS` backups of ``target``; ``keep`` (the one just written) stays.

    Names sort by their time stamp, and a clock that was ahead when an older
    backup was made (or that was set back since) gives the new backup a stamp
    older than theirs: ``keep`` is therefore never a candidate, whatever its
    stamp, or the backup this session just made would be deleted at once.
    """
    prefix = fit_name(target.name, _BAK_RESERVE, name_max(target.parent))
    pattern = re.compile(re.escape(prefix) + r"\.(\d{8}-\d{6})(?:-(\d+))?\.bak")
    found = []
    for p in target.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and p.name != keep.name:
            found.append(((m.group(1), int(m.group(2) or 0)), p))
    found.sort(key=lambda item: item[0])
    for _, old in found[: max(0, len(found) - (KEEP_BACKUPS - 1))]:
        try:
            old.unlink()
        except OSError:  # a backup we cannot remove is not worth failing a save
            pass


def backup_once(path: PathLike, *, every_time: bool = False) -> Optional[Path]:
    """Copy ``path`` aside the first time this process is about to write it.

    Parameters
    ----------
    path
        The file about to be written.
    every_time
        Copy it aside now whether or not this process did before (an export
        replacing a file: the process may have written that file as its
        working file earlier, which says nothing about what is there now).

    Returns
    -------
    Path or None
        The backup written now (``NAME.YYYYmmdd-HHMMSS.bak`` in the same
        folder), or ``None`` when this path was already seen in this process
        (not with ``every_time``) or did not exist yet. Only the newest
        :data:`KEEP_BACKUPS` backups of a file are kept.

    The copy is made outside the module's lock (only the bookkeeping is under
    it): a large file being backed up for an export on one thread never holds
    up the saves of another file on the GUI thread; two calls for one file
    wait for each other.

    Raises
    ------
    OSError
        When the existing file cannot be read (including
        :class:`~annotator.data.files.NotRegularFileError` for a FIFO or device,
        and a file over :data:`MAX_BACKUP_BYTES`) or the copy cannot be written;
        the caller should then not write the file either. The path is then not
        marked as backed up, so the next attempt tries again.
    """
    target = _resolve_target(path)
    key = os.path.normcase(os.path.abspath(target))
    with _backup_done:
        while key in _backing_up:
            _backup_done.wait()
        if key in _backed_up and not every_time:
            return None
        _backing_up.add(key)
    try:
        backup = _copy_aside(target)
        if not every_time:
            with _backup_lock:
                _backed_up.add(key)
        return backup
    finally:
        with _backup_done:
            _backing_up.discard(key)
            _backup_done.notify_all()


def _copy_aside(target: Path) -> Optional[Path]:
    """The backup copy of ``target`` (``None``: there is no file there)."""
    try:
        data = read_regular(target, MAX_BACKUP_BYTES)
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = backup_name(target, stamp)
    n = 1
    while os.path.lexists(backup):
        backup = backup_name(target, stamp, n)
        n += 1
    atomic_write_bytes(backup, data, temp_for=target)
    try:
        st = os.stat(target)
        os.utime(backup, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:  # pragma: no cover - cosmetic only
        pass
    _prune_backups(target, backup)
    return backup
