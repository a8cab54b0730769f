"""Content digests of image files already read, so that a folder's cached images can be told without reading them.

The embedding cache is keyed by an image's *content* (see
:func:`sam_core.cache.image_digest`), which takes decoding the file to know.
The window and ``sam-annotator encode`` both decode every image they touch,
and record here the file's ``(size, mtime_ns)`` and its digest. When a folder
is opened, a file whose size and modification time are unchanged has the
recorded digest, hence a known cache key: the image list can mark it ready
(its embedding is on disk) before the user gets there, and a folder filled by
``sam-annotator encode`` on another machine shows as ready at once.

The record is a hint, never trusted for content: the encoder still checks the
embedding it loads, and a stale or broken record only means an image is shown
as not yet encoded. It lives in ``<cache root>/embeddings/image-digests.sqlite3``
(SQLite: safe for several processes at once); any error reading or writing it
is logged and ignored, and an unreadable file is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple


log = logging.getLogger(__name__)

FILENAME = "image-digests.sqlite3"

def file_stamp(path: Path) -> Tuple[int, int]:
    """``(size, mtime_ns)`` of ``path``, or ``(-1, -1)`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


_SCHEMA = "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT)"


class DigestIndex:
    """``path -> (size, mtime_ns, digest)`` in an SQLite file; usable from any thread (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, cache) -> Optional["DigestIndex"]:
        """The index of an :class:`sam_core.EmbeddingCache`'s disk tier, or ``None`` for a memory-only cache."""
        directory = getattr(cache, "directory", None)
        if directory is None or not getattr(cache, "disk", False):
            return None
        return cls(Path(directory) / FILENAME)

    def _once(self, fn):
        """``fn(connection)`` in one transaction on a fresh connection (closed after)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path, timeout=5.0)) as con, con:
            con.execute("PRAGMA synchronous=OFF")  # a hint: losing the last writes to a crash costs nothing
            con.execute(_SCHEMA)
            return fn(con)

    def _run(self, fn, default):
        """``fn(connection)``; an unreadable file is replaced once; other errors are logged and give ``default``."""
        with self._lock:
            try:
                return self._once(fn)
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    log.warning("image digest record %s: %s", self.path, exc)
                    return default
                log.warning("image digest record %s is unreadable (%s); starting a new one", self.path, exc)
                try:
                    self.path.unlink()
                    return self._once(fn)
                except (sqlite3.Error, OSError) as again:
                    log.warning("image digest record %s: %s", self.path, again)
                    return default
            except (sqlite3.Error, OSError) as exc:
                log.warning("image digest record %s: %s", self.path, exc)
                return default

    def record(self, path: Path, stamp: Tuple[int, int], digest: str) -> None:
        """Remember that the file at ``path``, with ``stamp`` ``(size, mtime_ns)``, has content ``digest``."""
        if stamp[0] < 0:
            return
        key = str(Path(path).resolve())
        self._run(lambda con: con.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)",
                                          (key, int(stamp[0]), int(stamp[1]), str(digest))), None)

    def lookup(self, paths: Iterable[Path]) -> Dict[Path, str]:
        """Digests of those ``paths`` whose file still has the recorded size and modification time."""
        paths = list(paths)
        keys = {str(Path(p).resolve()): Path(p) for p in paths}

        def query(con: sqlite3.Connection) -> Dict[str, Tuple[int, int, str]]:
            rows: Dict[str, Tuple[int, int, str]] = {}
            names = list(keys)
            for start in range(0, len(names), 500):  # SQLite's limit on bound parameters
                chunk = names[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for p, size, mtime, digest in con.execute(
                    f"SELECT path, size, mtime_ns, digest FROM digests WHERE path IN ({marks})", chunk
                ):
                    rows[p] = (size, mtime, digest)
            return rows

        found = self._run(query, {})
        out: Dict[Path, str] = {}
        for key, (size, mtime, digest) in found.items():
            path = keys[key]
            if file_stamp(path) == (size, mtime):
                out[path] = digest
        return out
