"""One writer per working file: a lock file beside it, naming its holder.

``annotations.json`` is locked by ``.annotations.json.lock`` in the same
folder (the name shortened with :func:`annotator.data.files.fit_name` when the
working file's name is long). The lock file holds JSON naming its holder:
``pid``, ``host``, ``user``, ``since`` (seconds since the epoch) and
``program``, so a second window can say "opened read-only: process 4711 on
host *lab-3* (user *ana*) has it open since 10:22".

How a lock is taken
-------------------
* **Fresh**: the holder's record is written to a temporary file, which is
  locked with ``flock`` and then hard-linked to the lock name. ``link``
  fails when the name exists, so exactly one process creates the lock, and
  the file is complete and locked from the moment it is visible. (Where a
  file system cannot ``link``, the lock file is created with ``O_EXCL``.)
* **Held**: the existing lock file is opened and ``flock(LOCK_EX | LOCK_NB)``
  tried on it. Failing means a live process holds it:
  :class:`LockBusy` is raised with the holder read from the file.
* **Stale**: succeeding means its holder is gone (the kernel drops a
  process's ``flock`` when it dies, even by ``kill -9``, and a network file
  system when its lease expires). If the name still refers to the file we
  locked, we take it over: the record is rewritten with ours. (Otherwise its
  holder removed it while we were opening it, and we start again.)
* **Without flock** (Windows, or a file system that answers ``ENOLCK``): a
  lock whose holder is on this host and whose pid no longer runs is stale and
  is removed and created afresh; one on another host is taken as held (the
  user can :func:`break_lock` it after confirming). Two processes breaking the
  same stale lock at the same moment can then both succeed; with ``flock``
  they cannot.

:meth:`WorkingFileLock.release` removes the lock file (only while it is still
ours) and closes it. A lock object that is garbage-collected without being
released closes its descriptor, which drops the ``flock``: the file left
behind is then stale and the next opener takes it over.

The same process opening the working file twice (two windows) gets
:class:`LockBusy` the second time too: ``flock`` locks belong to an open file,
not to a process.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import secrets
import socket
import stat
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from annotator.data.files import fit_name, name_max

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockHolder", "LockBusy", "WorkingFileLock", "lock_path", "read_holder", "break_lock"]

PathLike = Union[str, "os.PathLike[str]"]

_LOCK_SUFFIX = ".lock"
_MAX_RECORD = 64 * 1024
_ATTEMPTS = 8
# flock answers these where the file system has no locks; the pid fallback is used then
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def lock_path(target: PathLike) -> Path:
    """The lock file of the working file ``target`` (``.NAME.lock`` beside it)."""
    p = Path(target)
    folder = p.parent if str(p.parent) else Path(".")
    return folder / f".{fit_name(p.name, 1 + len(_LOCK_SUFFIX), name_max(folder))}{_LOCK_SUFFIX}"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a working file: read from its lock file."""

    pid: int
    host: str
    user: str = ""
    since: float = 0.0
    program: str = ""

    @property
    def this_host(self) -> bool:
        return self.host == socket.gethostname()

    def describe(self) -> str:
        """``process 4711 on host 'lab-3' (user ana) since 2024-05-01 10:22:03``."""
        who = f"process {self.pid} on host '{self.host}'"
        if self.user:
            who += f" (user {self.user})"
        if self.since > 0:
            who += " since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return who

    def to_json(self) -> bytes:
        record = {"pid": self.pid, "host": self.host, "user": self.user, "since": self.since, "program": self.program}
        return (json.dumps(record) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, raw: bytes) -> Optional["LockHolder"]:
        """The holder in a lock file's bytes; ``None`` when they are not a record of ours."""
        try:
            d = json.loads(raw.decode("utf-8"))
            pid = d["pid"]
            if not (type(pid) is int and pid > 0):
                return None
            since = d.get("since", 0.0)
            since = float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else 0.0
            return cls(pid=pid, host=str(d.get("host", "")), user=str(d.get("user", "")), since=since,
                       program=str(d.get("program", "")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError):
            return None

    @classmethod
    def me(cls) -> "LockHolder":
        try:
            user = getpass.getuser()
        except Exception:  # no user name in this environment
            user = ""
        return cls(pid=os.getpid(), host=socket.gethostname(), user=user, since=time.time(),
                   program=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python")


class LockBusy(Exception):
    """Another process (or another window of this one) holds the working file.

    Attributes
    ----------
    target : Path
        The working file.
    holder : LockHolder or None
        Who holds it (``None`` when its lock file cannot be read).
    message : str
        A sentence for the user.
    """

    def __init__(self, target: PathLike, holder: Optional[LockHolder], why: str = ""):
        self.target = Path(target)
        self.holder = holder
        who = holder.describe() if holder is not None else "another program (its lock file cannot be read)"
        self.message = why or f"{self.target} is open in another window or program: {who}"
        super().__init__(self.message)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while len(data) <= _MAX_RECORD:
        chunk = os.read(fd, _MAX_RECORD + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_holder(target: PathLike) -> Optional[LockHolder]:
    """Who holds ``target`` according to its lock file (``None``: no lock file, or unreadable)."""
    lp = lock_path(target)
    try:
        st = os.lstat(lp)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECORD:
            return None
        with open(lp, "rb") as f:
            return LockHolder.parse(f.read(_MAX_RECORD))
    except OSError:
        return None


def break_lock(target: PathLike) -> bool:
    """Remove ``target``'s lock file whoever holds it (after the user confirmed); ``True`` if one was removed.

    A process still holding it keeps writing as before: use this only for a
    holder the user knows is gone (e.g. on a network share, a crashed machine).
    """
    try:
        os.unlink(lock_path(target))
        return True
    except FileNotFoundError:
        return False


def _flock(fd: int) -> Optional[bool]:
    """Try ``flock(LOCK_EX | LOCK_NB)``: True got it, False held elsewhere, None no flock here."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in _NO_FLOCK:
            return None
        raise


#: How long a busy lock's unreadable or stale record is read again (a holder taking over a stale lock
#: rewrites it within milliseconds, unless the machine is very busy). Only that race waits, never a plain open.
_REREAD_SECONDS = 2.0


def _holder_once_written(fd: int, read: Optional[LockHolder]) -> Optional[LockHolder]:
    """The holder of a busy lock: ``read`` (its record as read), or the record read again for a moment.

    A process that has just taken over a stale lock holds the ``flock``
    before it replaces the dead holder's record with its own
    (:func:`_write_record`: truncate, then write). A reader in between sees
    the dead process's record, or an empty or half-written one, and would
    name a process that no longer runs or none at all; it reads again until
    the record names a live holder. If :data:`_REREAD_SECONDS` pass first,
    the holder is unknown (``None``) rather than a process known to be dead.
    """
    deadline = time.monotonic() + _REREAD_SECONDS
    holder = read
    while not _plausible(holder) and time.monotonic() < deadline:
        time.sleep(0.005)
        try:
            holder = LockHolder.parse(_read_fd(fd))
        except OSError:
            break
    return holder if _plausible(holder) else None


def _plausible(holder: Optional[LockHolder]) -> bool:
    """Whether ``holder`` can be the live holder of a busy lock (not a dead process of this host)."""
    return holder is not None and not (holder.this_host and not _pid_alive(holder.pid))


def _write_record(fd: int, holder: LockHolder) -> None:
    data = holder.to_json()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


class WorkingFileLock:
    """The lock of one working file, held by this process until :meth:`release`.

    Use :meth:`acquire`; ``with WorkingFileLock.acquire(path): ...`` releases on exit.

    Attributes
    ----------
    target, path : Path
        The working file and its lock file.
    holder : LockHolder
        Our record, as written in the lock file.
    took_over : LockHolder or None
        The previous holder whose stale lock we took over, if any (a crashed session).
    """

    def __init__(self, target: Path, path: Path, fd: int, holder: LockHolder, took_over: Optional[LockHolder]):
        self.target, self.path, self.holder, self.took_over = target, path, holder, took_over
        self._fd: Optional[int] = fd
        self._ino = os.fstat(fd).st_ino
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, target: PathLike) -> "WorkingFileLock":
        """Lock ``target`` for this process.

        Raises
        ------
        LockBusy
            A live process (this one included, through another lock object)
            holds it.
        OSError
            The folder is not writable, or the lock name is taken by something
            that is not a regular file.
        """
        target = Path(target)
        lp = lock_path(target)
        me = LockHolder.me()
        for _ in range(_ATTEMPTS):
            fd = _create(lp, me)
            if fd is not None:
                return cls(target, lp, fd, me, None)
            got = _take_existing(target, lp, me)
            if got is not None:
                fd, previous = got
                return cls(target, lp, fd, me, previous)
        raise LockBusy(target, read_holder(target), f"{target}: its lock file {lp.name} keeps changing; try again")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and close it. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            st = os.stat(self.path)
            if st.st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass
        self._finalizer()  # closes fd, dropping the flock

    def __enter__(self) -> "WorkingFileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"WorkingFileLock({str(self.target)!r}, held={self.held})"


def _create(lp: Path, me: LockHolder) -> Optional[int]:
    """Create the lock file with our record, locked; ``None`` when it exists already."""
    folder = lp.parent
    tmp = folder / f".{fit_name(lp.name, 18, name_max(folder))}.{secrets.token_hex(6)}.tmp"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o644)
    linked = no_links = False
    try:
        _flock(fd)  # a name nobody else knows: never busy
        _write_record(fd, me)
        try:
            os.link(tmp, lp)
            linked = True
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            no_links = True  # FAT, some network shares: O_EXCL instead
    finally:
        if not linked:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
    if no_links:
        return _create_excl(lp, me)
    return fd if linked else None


def _create_excl(lp: Path, me: LockHolder) -> Optional[int]:
    try:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        return None
    _flock(fd)
    _write_record(fd, me)
    return fd


def _take_existing(target: Path, lp: Path, me: LockHolder):
    """``(fd, previous holder)`` after taking over a stale lock, ``None`` to try again; raises LockBusy."""
    flags = os.O_RDWR | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        st = os.lstat(lp)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EEXIST, f"the lock name {lp.name} is taken by something that is not a regular file; "
                          "remove it", str(lp))
        try:
            fd = os.open(lp, flags)
        except PermissionError:  # another user's lock file: read it, and lock it read-only
            fd = os.open(lp, flags & ~os.O_RDWR | os.O_RDONLY)
            try:
                if _flock(fd) is not True:
                    raise LockBusy(target, LockHolder.parse(_read_fd(fd)))
            finally:
                os.close(fd)
            os.unlink(lp)  # its holder is gone; the folder is ours to write: start afresh
            return None
    except FileNotFoundError:
        return None  # released meanwhile: create it
    try:
        got = _flock(fd)
        previous = LockHolder.parse(_read_fd(fd))
        if got is False:
            raise LockBusy(target, _holder_once_written(fd, previous))
        if got is None:  # no flock: judge by the pid
            if previous is None or not previous.this_host or _pid_alive(previous.pid):
                raise LockBusy(target, previous)
            os.close(fd)
            fd = -1
            try:
                os.unlink(lp)
            except FileNotFoundError:
                pass
            return None
        try:
            still = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            still = False
        if not still:  # its holder removed it while we opened it
            os.close(fd)
            fd = -1
            return None
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        _write_record(fd, me)
        return fd, previous
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
