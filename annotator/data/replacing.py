"""Writing over a file that may be someone's working file: respect its lock, and keep the old one.

``sam-annotator export -o OUT.json`` (and any other writer of a whole COCO
file that is not the working file's own :class:`~annotator.data.document.Dataset`)
may be pointed at a working file: its own input, or the ``annotations.json``
of a folder open in a window. Without care the write lands under that window
(which then meets a "changed on disk" conflict) and the old file is gone.
:func:`replacing` wraps such a write:

* the file's lock (:mod:`annotator.data.lock`, symlinks followed) is taken
  for the duration, so a window holding it makes the write fail with
  :class:`~annotator.data.lock.LockBusy` (naming the process) before anything
  is written, and no window can open it half-way;
* an existing file is copied aside first (:func:`annotator.data.atomic.backup_once`:
  ``NAME.<time>.bak``, once per process, the newest ten kept).

A lock file that cannot be created (a read-only folder) is not an error here:
the write itself then fails with the operating system's reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from annotator.data.atomic import backup_once
from annotator.data.lock import LockBusy, WorkingFileLock

__all__ = ["replacing", "LockBusy"]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def replacing(path: PathLike) -> Iterator[Optional[Path]]:
    """Hold ``path``'s lock and back up the file there while the caller replaces it.

    Yields
    ------
    Path or None
        The backup of the file that was at ``path`` (``None``: there was none).
        Made at every call, even when this process wrote or backed up that
        file before (as its working file, or by an earlier export).

    Raises
    ------
    LockBusy
        Another window or process holds the file; nothing was written.
    OSError
        The existing file cannot be backed up (then it must not be replaced
        either): a FIFO or device, unreadable, a full disk...
    """
    target = Path(os.path.realpath(path))
    try:
        lock: Optional[WorkingFileLock] = WorkingFileLock.acquire(target)
    except LockBusy:
        raise
    except OSError as exc:  # no lock file possible here (read-only folder, missing folder): the write will say
        log.info("cannot lock %s before replacing it: %s", target, exc)
        lock = None
    try:
        yield backup_once(target, every_time=True) if target.exists() else None
    finally:
        if lock is not None:
            lock.release()
