"""The working file on disk: reading it safely, and saving so that nothing is ever lost.

:class:`WorkingFile` is the disk side of a :class:`annotator.data.document.Dataset`:

* **Reading** (:meth:`WorkingFile.read`): only a regular file (symlinks
  followed; a FIFO, a device or a symlink loop is refused with a message, never
  read), at most :data:`MAX_WORKING_FILE_BYTES`.
* **One writer** (:meth:`WorkingFile.lock`): the lock of
  :mod:`annotator.data.lock`; when another process holds it the file is
  *read-only* here (:attr:`WorkingFile.read_only` says why) and every save
  raises :class:`ReadOnlyError` (a copy elsewhere still works). Our own stale
  temporary files are removed once the lock is ours.
* **External changes** (:meth:`WorkingFile.write`): the file's
  ``(size, mtime_ns, ino, ctime_ns)`` and its bytes are remembered whenever
  it is read or written. Before each write the file on disk is compared with
  them (the file is only read again when the ``stat`` fields differ, or when
  they were taken within :data:`RACY_SECONDS` of the file's modification,
  where a second write could hide behind an unchanged mtime: git's "racy
  clean" problem). If another program changed, created or replaced the file,
  it is never overwritten: our text goes to a conflict copy beside it
  (``NAME.conflict-YYYYmmdd-HHMMSS.json``, within the name limit) and
  :class:`ConflictError` names both files. Later saves in the same conflict
  rewrite that same copy. ``force=True`` (the user chose "keep mine")
  overwrites. A file deleted by another program is simply written again.
* **Every failure is one typed error**: :class:`SaveError`, an ``OSError``
  whose ``strerror`` is a sentence for the user, whatever went wrong
  underneath (``OSError``, a value that cannot be encoded, ``MemoryError``...).

Merging by annotation id is deliberately not attempted: two sessions both
number new annotations from the same maximum id, so equal ids do not mean the
same annotation, and a category edited on one side changes the meaning of
every annotation on the other. Keeping both files whole is the only choice
that cannot lose or corrupt anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
from pathlib import Path
from typing import Iterator, Optional, Union

from annotator.data.atomic import WriteProtectedError, atomic_write_bytes, backup_once, remove_stale_temps
from annotator.data.filestamp import RACY_SECONDS, FileStamp
from annotator.data.files import NotRegularFileError, fit_name, name_max, open_regular, read_open
from annotator.data.lock import LockBusy, LockHolder, WorkingFileLock

__all__ = [
    "MAX_WORKING_FILE_BYTES",
    "RACY_SECONDS",
    "SaveError",
    "ConflictError",
    "ReadOnlyError",
    "FileStamp",
    "WorkingFile",
    "conflict_path",
    "set_aside",
]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Largest working file read (1 GiB: parsing it takes several times that in memory).
MAX_WORKING_FILE_BYTES = 2**30

class SaveError(OSError):
    """The working file (or a copy) could not be written; nothing on disk changed and the document stays dirty.

    An ``OSError`` (``errno`` kept when there was one), so code that reports
    ``exc.strerror`` of an ``OSError`` shows :attr:`reason`.

    Attributes
    ----------
    path : Path
        The file that was being written.
    reason : str
        Why, in words for the user.
    """

    def __init__(self, path: PathLike, reason: str, err: Optional[int] = None):
        self.path = Path(path)
        self.reason = reason
        super().__init__(err if err is not None else errno.EIO, reason, os.fspath(path))

    @property
    def message(self) -> str:
        return f"Could not save {self.path}: {self.reason}"

    def __str__(self) -> str:
        return self.message


class ReadOnlyError(SaveError):
    """The working file is held by another window or program (see :attr:`holder`)."""

    def __init__(self, path: PathLike, reason: str, holder: Optional[LockHolder]):
        self.holder = holder
        super().__init__(path, reason, errno.EBUSY)


class ConflictError(SaveError):
    """Another program changed the working file since we read or wrote it: it was not overwritten.

    Attributes
    ----------
    ours : Path or None
        Where our version was written instead (``None`` if even that failed).
    """

    def __init__(self, path: PathLike, ours: Optional[Path], detail: str = ""):
        self.ours = ours
        kept = (
            f"this window's version was saved beside it as {ours.name}"
            if ours is not None
            else f"this window's version could not be written beside it either{detail}; it is kept in memory"
        )
        reason = (
            f"the file was changed by another program since this window read it, so it was not overwritten; {kept}. "
            "Compare the two files, or save again choosing whose version to keep."
        )
        super().__init__(path, reason, errno.EEXIST)


def conflict_path(path: PathLike, when: Optional[float] = None, tag: str = "conflict") -> Path:
    """``NAME.<tag>-YYYYmmdd-HHMMSS.SUFFIX`` beside ``path`` (not yet existing, within the name limit)."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    suffix = p.suffix if 0 < len(p.suffix) <= 16 else ""
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    limit = name_max(folder)
    reserve = len(f".{tag}-") + len(stamp) + len("-999") + len(os.fsencode(suffix))
    base = fit_name(stem, reserve, limit)
    candidate = folder / f"{base}.{tag}-{stamp}{suffix}"
    n = 1
    while os.path.lexists(candidate) and n < 1000:
        candidate = folder / f"{base}.{tag}-{stamp}-{n}{suffix}"
        n += 1
    return candidate


def set_aside(path: PathLike, tag: str = "theirs") -> Optional[Path]:
    """Copy the file now at ``path`` to ``NAME.<tag>-YYYYmmdd-HHMMSS.SUFFIX`` beside it (before overwriting it).

    Returns the copy, or ``None`` when there is no file at ``path``.

    Raises
    ------
    SaveError
        It cannot be read (not a regular file, too large...) or the copy cannot be written.
    """
    p = Path(path)
    try:
        fd = open_regular(p, MAX_WORKING_FILE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SaveError(p, f"it cannot be read to keep a copy ({_os_reason(exc)})", exc.errno) from exc
    try:
        data = read_open(fd, p, MAX_WORKING_FILE_BYTES)
    except OSError as exc:
        raise SaveError(p, f"it cannot be read to keep a copy ({_os_reason(exc)})", exc.errno) from exc
    finally:
        os.close(fd)
    copy = conflict_path(p, tag=tag)
    try:
        atomic_write_bytes(copy, data)
    except OSError as exc:
        raise SaveError(copy, _os_reason(exc), exc.errno) from exc
    return copy


_UNCHECKED = "unchecked"  # a document built to replace whatever is there (the user chose so)
_ABSENT = "absent"  # no file there when we looked


class WorkingFile:
    """One working file: read, lock, check for external changes, write.

    Not thread-safe: use it from the thread that owns its document.

    Parameters
    ----------
    path
        The working file.
    check_external
        ``False`` for a document meant to replace whatever file is there (its
        first write backs that file up instead of comparing it).
    """

    def __init__(self, path: PathLike, *, check_external: bool = False):
        self.path = Path(path)
        self._known: Union[FileStamp, str] = _ABSENT if check_external else _UNCHECKED
        self._lock: Optional[WorkingFileLock] = None
        self._busy: Optional[LockBusy] = None
        self._conflict: Optional[Path] = None
        self._wants_lock = False

    # -- lock -----------------------------------------------------------------

    def lock(self) -> Optional[LockBusy]:
        """Take the file's lock; on success, remove our stale temporary files.

        Returns
        -------
        LockBusy or None
            ``None`` when we hold the lock now; otherwise why not: the file is
            then read-only here (:attr:`read_only`).

        Raises
        ------
        OSError
            The lock file cannot be created (read-only folder...): the caller
            may still open the file, read-only.
        """
        self._wants_lock = True
        if self._lock is not None and self._lock.held:
            return None
        try:
            self._lock = WorkingFileLock.acquire(self._target())  # a link locks the file it points to
        except LockBusy as busy:
            self._busy = busy
            return busy
        self._busy = None
        removed = remove_stale_temps(self._target())
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted save: %s", len(removed),
                     ", ".join(p.name for p in removed))
        return None

    @property
    def read_only(self) -> Optional[str]:
        """Why this file must not be written from here (``None``: it may be)."""
        if self._busy is None:
            return None
        return f"opened read-only: {self._busy.message}"

    @property
    def holder(self) -> Optional[LockHolder]:
        """Who holds the file when it is read-only here."""
        return self._busy.holder if self._busy is not None else None

    @property
    def locked(self) -> bool:
        """Whether this process holds the file's lock through this object."""
        return self._lock is not None and self._lock.held

    def unlock(self) -> None:
        """Release the lock (if held). The file is not read-only afterwards either."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._busy = None

    # -- reading --------------------------------------------------------------

    def read(self) -> Optional[bytes]:
        """The file's bytes (``None`` when there is none), remembered for the external-change check.

        Raises
        ------
        OSError
            :class:`~annotator.data.files.NotRegularFileError`,
            :class:`~annotator.data.files.FileTooLargeError`, a symlink loop,
            permission denied... (a folder is a ``NotRegularFileError`` too).
        """
        try:
            fd = open_regular(self.path, MAX_WORKING_FILE_BYTES)
        except FileNotFoundError:
            if os.path.islink(self.path):
                raise
            self._known = _ABSENT
            return None
        try:
            st = os.fstat(fd)
            data = read_open(fd, self.path, MAX_WORKING_FILE_BYTES)
        finally:
            os.close(fd)
        self._known = FileStamp.of(st, data)
        return data

    # -- external changes ------------------------------------------------------

    def changed_on_disk(self) -> bool:
        """Whether the file on disk is no longer the one we last read or wrote.

        A file deleted since is not "changed" (writing it again loses
        nothing); one created where there was none is.
        """
        known = self._known
        if known == _UNCHECKED:
            return False
        target = self._target()
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return False
        if known == _ABSENT:
            return True
        assert isinstance(known, FileStamp)
        if known.same_stat(st) and not known.racy:
            return False
        try:
            fd = open_regular(target, MAX_WORKING_FILE_BYTES)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # replaced by something we cannot read: do not write over it
        try:
            on_disk = read_open(fd, target, MAX_WORKING_FILE_BYTES)
            st = os.fstat(fd)
        except OSError:
            return True  # grew past the bound or cannot be read: do not write over it
        finally:
            os.close(fd)
        if not known.holds(on_disk):
            return True
        self._known = dataclasses.replace(
            known, size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino, ctime_ns=st.st_ctime_ns, taken=time.time()
        )
        return False

    @property
    def conflict_copy(self) -> Optional[Path]:
        """Our version written beside the file by the last conflict, if the conflict is still on."""
        return self._conflict

    # -- writing --------------------------------------------------------------

    def write(self, data: bytes, *, force: bool = False) -> Path:
        """Back the file up once per session, then replace it atomically with ``data``.

        Parameters
        ----------
        force
            Overwrite even when another program changed the file (the user
            chose to keep this version; the other is in the session's backup
            only if it was there when the session first wrote).

        Raises
        ------
        ReadOnlyError
            Another window or program holds the file.
        ConflictError
            It changed on disk since we read or wrote it; ``data`` went to
            :attr:`ConflictError.ours` instead.
        SaveError
            Anything else; the file on disk is then unchanged.
        """
        if self._busy is not None:
            raise ReadOnlyError(self.path, f"{self.read_only}. Use File > Save a Copy to keep this work.",
                                self._busy.holder)
        target = self._target()
        try:
            if not force and self.changed_on_disk():
                self._write_conflict_copy(data)  # raises ConflictError
            backup_once(target)
            st = atomic_write_bytes(target, data)
        except SaveError:
            raise
        except NotRegularFileError as exc:
            raise SaveError(self.path, f"it is {exc.strerror}", exc.errno) from exc
        except OSError as exc:
            raise SaveError(self.path, _os_reason(exc), exc.errno) from exc
        except Exception as exc:  # anything else must not escape as a crash: the document stays dirty
            raise SaveError(self.path, f"unexpected error ({type(exc).__name__}: {exc})") from exc
        self._known = FileStamp.of(st, data)
        self._conflict = None
        return target

    def write_copy(self, path: PathLike, data: bytes, *, backup: bool = False) -> os.stat_result:
        """Write ``data`` to another file atomically (this file's state is unchanged); returns its stat.

        ``backup``: copy an existing file there aside first (once per session).
        ``path``'s lock is held while it is written: the working file of a
        window (here or in another process) is never written over.

        Raises
        ------
        SaveError
            Also (``errno.EBUSY``) when another window or program holds ``path``.
        """
        path = Path(path)
        try:
            with _held_for_writing(path):
                if backup:
                    backup_once(path)
                return atomic_write_bytes(path, data)
        except SaveError:
            raise
        except NotRegularFileError as exc:
            raise SaveError(path, f"it is {exc.strerror}", exc.errno) from exc
        except OSError as exc:
            raise SaveError(path, _os_reason(exc), exc.errno) from exc
        except Exception as exc:
            raise SaveError(path, f"unexpected error ({type(exc).__name__}: {exc})") from exc

    def moved_to(self, path: PathLike, data: bytes, st: os.stat_result) -> None:
        """Record that the document now lives in ``path`` (after a "save as" wrote ``data`` there).

        A document that was opened with a lock (held or busy) locks its new file.
        """
        wanted = self._wants_lock
        self.unlock()
        self.path = Path(path)
        self._known = FileStamp.of(st, data)
        self._conflict = None
        if wanted:
            try:
                self.lock()
            except OSError as exc:
                log.warning("cannot lock %s: %s", self.path, exc)

    def _target(self) -> Path:
        p = self.path
        return Path(os.path.realpath(p)) if os.path.islink(p) else p

    def _write_conflict_copy(self, data: bytes) -> None:
        ours = self._conflict if self._conflict is not None and self._conflict.exists() else conflict_path(self.path)
        try:
            atomic_write_bytes(ours, data)
        except OSError as exc:
            raise ConflictError(self.path, None, f" ({_os_reason(exc)})") from exc
        self._conflict = ours
        log.warning("%s changed on disk; this session's version was written to %s", self.path, ours)
        raise ConflictError(self.path, ours)


@contextlib.contextmanager
def _held_for_writing(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock while another document's file is written there; SaveError when someone holds it.

    A lock file that cannot be created (a read-only or missing folder) is
    not an error here: the write then fails with the operating system's reason.
    """
    target = Path(os.path.realpath(path))
    try:
        lock: Optional[WorkingFileLock] = WorkingFileLock.acquire(target)
    except LockBusy as busy:
        raise SaveError(path, f"{busy.message}; it was not written over, choose another file", errno.EBUSY) from None
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _os_reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, WriteProtectedError):
        return text
    if exc.errno == errno.ENOENT and exc.filename:
        folder = os.path.dirname(os.path.abspath(os.fspath(exc.filename)))
        if not os.path.isdir(folder):
            return (f"its folder {folder} no longer exists (renamed, moved or deleted since it was opened, "
                    "or on a drive that is no longer mounted)")
    names = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENAMETOOLONG: "a file name is too long for this file system",
    }
    reason = names.get(exc.errno or 0, text)
    if exc.filename and os.path.basename(os.fspath(exc.filename)).startswith("."):
        reason += f" (writing {os.path.basename(os.fspath(exc.filename))})"
    return reason
