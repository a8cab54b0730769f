"""Files of the embedding cache on disk: where they are, how much they take, deleting them.

The cache itself (:class:`sam_core.EmbeddingCache`) keeps its entries under
``<cache root>/embeddings/<model type>/<xx>/<key>.samemb``; weights live in
``<cache root>/checkpoints`` and are never touched here. Deleting an entry
while the encoder runs is safe: a missing file is a miss, and an entry being
written appears whole (the cache writes a temporary file and renames it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional, Tuple

log = logging.getLogger(__name__)

SUFFIX = ".samemb"
TMP_PREFIX = ".tmp-"
#: Temporary files younger than this may be an entry being written now: they are left alone.
STALE_TMP_SECONDS = 3600.0


def embeddings_dir(cache_root: Optional[Path] = None) -> Path:
    """``<cache root>/embeddings`` (``None``: ``$SAM_ANNOTATOR_CACHE`` or the user cache folder)."""
    from sam_core.checkpoints import cache_dir

    return cache_dir(cache_root) / "embeddings"


def disk_usage(directory: Path) -> Tuple[int, int]:
    """``(entries, bytes)`` of the embedding files under ``directory``."""
    files = size = 0
    for root, _, names in os.walk(directory):
        for name in names:
            if name.endswith(SUFFIX) and not name.startswith(TMP_PREFIX):
                try:
                    size += (Path(root) / name).stat().st_size
                    files += 1
                except OSError:
                    pass
    return files, size


def clear_embeddings(directory: Path) -> Tuple[int, int]:
    """Delete every embedding file under ``directory`` (all model types); returns ``(entries, bytes)`` deleted.

    Only ``*.samemb`` files (and temporary files a crash left behind, older
    than :data:`STALE_TMP_SECONDS`) go;
    empty sub-folders are removed; anything else is left alone. Raises
    ``OSError`` when a file cannot be deleted (after trying all of them).
    """
    directory = Path(directory)
    files = size = 0
    failures = []
    if not directory.is_dir():
        return 0, 0
    for root, dirs, names in os.walk(directory, topdown=False):
        for name in names:
            if not (name.endswith(SUFFIX) or name.startswith(TMP_PREFIX)):
                continue
            p = Path(root) / name
            try:
                st = p.stat()
                n = st.st_size
                if name.startswith(TMP_PREFIX) and time.time() - st.st_mtime < STALE_TMP_SECONDS:
                    continue  # maybe being written right now
                p.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                failures.append(f"{p}: {exc.strerror or exc}")
                continue
            if name.endswith(SUFFIX) and not name.startswith(TMP_PREFIX):
                files += 1
                size += n
        if Path(root) != directory:
            try:
                Path(root).rmdir()  # only when empty
            except OSError:
                pass
    if failures:
        raise OSError(f"{len(failures)} file(s) could not be deleted, e.g. {failures[0]}")
    log.info("embedding cache cleared: %d entries, %d bytes under %s", files, size, directory)
    return files, size
