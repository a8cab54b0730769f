"""What a working file was when we last read or wrote it (:class:`FileStamp`): the external-change check's memory.

Split from :mod:`annotator.data.workfile`, which compares the file on disk with it before every write.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["FileStamp", "KEEP_BYTES", "RACY_SECONDS"]

#: A stamp taken this soon after the file's mtime may miss a second write in the same tick.
RACY_SECONDS = 2.0

@dataclass(frozen=True)
class FileStamp:
    """What a file was when we last read or wrote it; ``content``: its bytes (already in memory: no copy),
    or, for a file over :data:`KEEP_BYTES`, empty and ``digest`` its SHA-256 instead.

    Comparing bytes is a ``memcmp``; a SHA-256 of both sides took 45 ms per save of 100,000 annotations.
    Keeping the bytes costs the file's size in memory for the session, so a very large file keeps its
    digest instead (and pays the hashing).
    """

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    content: bytes = field(repr=False)
    taken: float  # time.time() when recorded
    digest: Optional[bytes] = None

    @classmethod
    def of(cls, st: os.stat_result, data: bytes) -> "FileStamp":
        if len(data) > KEEP_BYTES:
            return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, b"", time.time(),
                       hashlib.sha256(data).digest())
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, bytes(data), time.time())

    def holds(self, data: bytes) -> bool:
        """Whether ``data`` is the content recorded."""
        if self.digest is None:
            return data == self.content
        return hashlib.sha256(data).digest() == self.digest

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == (self.size, self.mtime_ns, self.ino, self.ctime_ns)

    @property
    def racy(self) -> bool:
        return self.taken - self.mtime_ns / 1e9 < RACY_SECONDS


#: Files up to this size keep their bytes in their :class:`FileStamp` (compared with a memcmp); larger
#: ones their SHA-256.
KEEP_BYTES = 64 << 20
