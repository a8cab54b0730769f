"""Embedding cache: encode an image once, reuse the embedding everywhere.

Two tiers, both keyed by :meth:`EmbeddingCache.key_for`:

* **memory**: a least-recently-used map of :class:`~sam_core.types.ImageEmbedding`
  values, bounded by their :attr:`~sam_core.types.ImageEmbedding.nbytes`
  (default :data:`DEFAULT_MEMORY_BYTES`, 512 MiB: 128 SAM embeddings of 4 MiB,
  i.e. a long walk back through a folder without a re-encode, and small
  next to the models themselves).
* **disk**: one file per entry, float16, under
  ``<directory>/<model_type>/<key[:2]>/<key>.samemb``. Optional bound in bytes,
  oldest (by modification time, refreshed on every hit) evicted first.

Keys
----
A key is a BLAKE2b digest of the image pixels (shape, dtype and bytes, see
:func:`image_digest`), the model type, the checkpoint id (see
:func:`checkpoint_fingerprint`) and :data:`FORMAT_VERSION`. Another image,
another model type, other weights or a newer format therefore never hit.
Bump :data:`FORMAT_VERSION` when the file layout *or the numbers the encoder
produces* (preprocessing, model code) change: old entries then miss and are
recomputed.

Disk format
-----------
No pickle anywhere; a file is::

    MAGIC (8 bytes) | checksum (16 bytes) | header length (uint32 LE) | header | payload

``header`` is UTF-8 JSON: ``format_version``, ``key``, ``model_type``,
``checkpoint_id``, ``original_size`` ``[H, W]``, ``input_size`` ``[h, w]``,
``region`` ``[x0, y0, x1, y1]`` and ``image_size`` ``[H, W]`` of a region
embedding (null, or absent in files written before regions existed, for the
whole image; see :meth:`EmbeddingCache.key_for_region`),
``dtype`` (the encoder's output dtype) and ``tensors`` (name and shape of each
array in the payload: ``features`` then ``high_res_0``, ``high_res_1``, ...).
``payload`` is those arrays as little-endian float16, C order, concatenated.
``checksum`` is BLAKE2b-128 of everything after it (header length, header and
payload). A file is written to a temporary name in the same folder and moved
into place with :func:`os.replace`, so readers never see half a file. There is
no fsync: a file torn by a power cut fails its checksum and is recomputed.

On load, a file that cannot be read or parsed, has another format version,
key, model type or checkpoint id, shapes that disagree with the payload or
with ``(1, 256, 64, 64)`` features, a region that does not fit its sizes, or a
wrong checksum, is deleted and
reported as a miss, so the caller encodes the image again. Shapes are checked
with Python integers against the payload's size *before* anything is
allocated (a crafted header cannot make numpy overflow or allocate), and only
a regular file of at most :data:`MAX_ENTRY_BYTES` is read (a FIFO or device
planted in the cache folder is dropped, never read).

Non-finite values
-----------------
No embedding holding NaN or infinity is ever stored: :meth:`EmbeddingCache.put`
and :meth:`EmbeddingCache.get_or_compute` raise :class:`NonFiniteEmbeddingError`
instead, and a disk entry holding one is treated as corrupt.
:func:`check_model_output` encodes a small test image and raises the same
error for a model whose weights give non-finite features (a damaged or
all-NaN checkpoint loads without complaint otherwise); the loaders call it
once after loading a model. (It lives here, beside the cache that must never
hold such values, because it needs nothing but an encoder.)

Precision
---------
Disk entries are float16. A memory hit returns the very object that was
stored, so its masks are identical. So that a disk hit (in this or a later
session) gives masks identical to the ones the user first saw,
:meth:`EmbeddingCache.get_or_compute` rounds a freshly computed embedding to
float16 precision (:func:`round_to_storage`) before returning and storing it
when the disk tier is on; float16 -> float32 is exact, so the disk copy is
then bit-for-bit the in-memory one. With the real MobileSAM weights the masks
of a rounded embedding agree with the unrounded ones at IoU > 0.99 (see the
tests).

Memory
------
The memory tier is bounded by :attr:`EmbeddingCache.memory_bytes`; the encoder's
temporaries are not held by anything once an encode returns. But glibc's
allocator keeps freed memory in per-thread arenas, and the window encodes each
image on a fresh thread (``annotator.workers.encoder.in_fresh_thread``), whose
OpenMP workers are fresh too: each new thread's arena keeps the encoder's
freed activations, and resident memory grew by hundreds of MB (measured:
about 880 MB against 530 MB for 80 to 150 images, MobileSAM on a CPU, 64 MB
memory tier; growing about 1 MB per image with 16 OpenMP threads; see
``benchmarks/bench_memory.py``). :meth:`EmbeddingCache.get_or_compute`
therefore calls :func:`release_free_memory` (``malloc_trim(0)``, which also
returns free pages inside every arena) after each encode: 10 to 25 ms after a
MobileSAM encode on a CPU, nothing where the C library has no such call.

Threads
-------
All methods may be called from any thread: a lock guards the memory map and
the counters; disk reads and writes happen outside it. When two threads ask
:meth:`~EmbeddingCache.get_or_compute` for the same image, one encodes and the
other waits for its result.

Why so long: the cache's file format, its validation against hostile entries, the memory and disk tiers and the keys must agree byte for byte; one module keeps the format and its checks side by side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch

from .allocator import release_free_memory
from .types import ImageEmbedding

__all__ = [
    "FORMAT_VERSION",
    "DEFAULT_MEMORY_BYTES",
    "FEATURES_SHAPE",
    "CacheStats",
    "EmbeddingCache",
    "checkpoint_fingerprint",
    "image_digest",
    "round_to_storage",
    "MAX_ENTRY_BYTES",
    "NonFiniteEmbeddingError",
    "check_finite",
    "check_model_output",
    "check_model",
    "release_free_memory",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the key derivation, the file layout and the encoder numerics."""

DEFAULT_MEMORY_BYTES = 512 * 2**20
"""Default bound of the in-memory tier: 512 MiB, 128 SAM embeddings (4 MiB each)."""

FEATURES_SHAPE = (1, 256, 64, 64)
"""Shape every cached ``features`` tensor must have (SAM 1, MobileSAM, SAM 2)."""

MAX_ENTRY_BYTES = 64 * 2**20
"""Largest disk entry read (SAM 2's three levels in float16 take 8 MiB)."""

_MAX_TENSORS = 8
_MAX_DIMS = 8
_MAX_SIDE = 2**31  # original/input sizes beyond this are not images

SUFFIX = ".samemb"
_MAGIC = b"\x89SAMEMB\n"
_CHECKSUM_BYTES = 16
_LEN = struct.Struct("<I")
_PREFIX_BYTES = len(_MAGIC) + _CHECKSUM_BYTES + _LEN.size
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0

# Image hashing: fixed-size chunks, each hashed on its own, then the list of
# chunk digests hashed again. The chunk size is part of the definition (the
# digest does not depend on how many threads did the work); hashlib releases
# the GIL on large buffers, so chunks are hashed in parallel.
_HASH_CHUNK = 4 * 2**20
_HASH_THREADS = max(1, min(8, os.cpu_count() or 1))
_DIGEST_BYTES = 16
_FINGERPRINT_SPAN = 2**20


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------


def image_digest(image: np.ndarray) -> str:
    """Hex digest of an image's content: its shape, dtype and pixel bytes.

    Parameters
    ----------
    image:
        Any array, normally ``(H, W, 3)`` ``uint8`` RGB. Non-contiguous arrays
        are copied first (same content, same digest).

    Returns
    -------
    str
        32 hex characters (BLAKE2b-128 over the BLAKE2b-128 digests of 4 MiB
        chunks; the chunks are hashed in parallel threads).
    """
    arr = np.ascontiguousarray(image)
    head = f"{arr.dtype.str}|{arr.shape}".encode()
    data = memoryview(arr).cast("B") if arr.size else memoryview(b"")
    chunks = [data[i : i + _HASH_CHUNK] for i in range(0, len(data), _HASH_CHUNK)]

    def one(chunk: memoryview) -> bytes:
        return hashlib.blake2b(chunk, digest_size=_DIGEST_BYTES).digest()

    if len(chunks) > 1 and _HASH_THREADS > 1:
        with ThreadPoolExecutor(min(_HASH_THREADS, len(chunks)), thread_name_prefix="sam-hash") as pool:
            digests = list(pool.map(one, chunks))
    else:
        digests = [one(c) for c in chunks]
    outer = hashlib.blake2b(head, digest_size=_DIGEST_BYTES)
    for d in digests:
        outer.update(d)
    return outer.hexdigest()


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a checkpoint file, for cache keys.

    Hashing a 2.5 GB ``vit_h`` file on every launch would take seconds, so:

    * if the file has a valid SHA-256 sidecar (``<file>.sha256``, JSON with
      ``sha256``, ``size`` and ``mtime_ns``, written by
      :mod:`sam_core.checkpoints` after it hashed and verified the file) whose
      size and mtime match the file, the id is ``"sha256-<hex>"``. It survives
      a copy or a fresh download of the same weights (the checkpoints module
      re-verifies those and writes a new sidecar with the same hash);
    * otherwise (a user's own weights) it is ``"fp1-<hex>"``: BLAKE2b of the
      file's size, its modification time (ns) and its first and last MiB. For
      ``torch.save`` files the last MiB holds the zip central directory with
      the CRC-32 of every tensor, so other weights of the same size still get
      another id. A copy (new mtime) gets a new id: the cache then misses and
      recomputes, never the reverse.

    The id depends on the files alone, not on what the caller knows, so the
    ``encode`` command and the window agree on it and share entries.

    Parameters
    ----------
    path:
        The checkpoint file.

    Returns
    -------
    str
        ``"sha256-"`` + 64 hex characters, or ``"fp1-"`` + 32 hex characters.
    """
    path = Path(path)
    st = path.stat()
    sha = _sidecar_sha256(path, st)
    if sha is not None:
        return "sha256-" + sha
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    h.update(f"{st.st_size}|{st.st_mtime_ns}|".encode())
    with open(path, "rb") as f:
        h.update(f.read(_FINGERPRINT_SPAN))
        if st.st_size > _FINGERPRINT_SPAN:
            f.seek(max(_FINGERPRINT_SPAN, st.st_size - _FINGERPRINT_SPAN))
            h.update(f.read(_FINGERPRINT_SPAN))
    return "fp1-" + h.hexdigest()


def _sidecar_sha256(path: Path, st: os.stat_result) -> Optional[str]:
    """The SHA-256 recorded next to ``path`` for exactly this file, if any."""
    try:
        record = json.loads(path.with_name(path.name + ".sha256").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    sha = record.get("sha256")
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return None
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        return None
    return sha.lower()


def round_to_storage(embedding: ImageEmbedding) -> ImageEmbedding:
    """``embedding`` with every tensor rounded to float16 precision.

    Same device and dtype as before; the values are exactly what a disk hit of
    this embedding returns (float16 -> float32/bfloat16 is exact for these
    values), so masks decoded from either are identical.
    """

    def rnd(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float16).to(t.dtype)

    return ImageEmbedding(
        features=rnd(embedding.features),
        original_size=tuple(embedding.original_size),
        input_size=tuple(embedding.input_size),
        model_type=embedding.model_type,
        high_res_features=tuple(rnd(t) for t in embedding.high_res_features),
        region=embedding.region,
        image_size=embedding.image_size,
    )


class NonFiniteEmbeddingError(ValueError):
    """An embedding holds NaN or infinite values (damaged weights, or a numerical failure)."""


def check_finite(embedding: ImageEmbedding, what: str = "the embedding") -> None:
    """Raise :class:`NonFiniteEmbeddingError` if any tensor of ``embedding`` holds NaN or infinity."""
    for i, t in enumerate((embedding.features, *embedding.high_res_features)):
        if not bool(torch.isfinite(t).all()):
            name = "features" if i == 0 else f"high-resolution features {i - 1}"
            raise NonFiniteEmbeddingError(f"{what} holds non-finite values (NaN or infinity) in its {name}")


def _test_image() -> np.ndarray:
    """A small deterministic RGB image with structure (gradients and a disc)."""
    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 2, y * 2, ((x - 64) ** 2 + (y - 48) ** 2 < 900) * 200], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def check_model_output(predictor: "_Encoder") -> None:
    """Encode a small test image and refuse a model whose features are not finite.

    Call once after loading a model (the first real encode would otherwise
    fill the cache with garbage). Costs one encoder pass.

    Raises
    ------
    NonFiniteEmbeddingError
        With a message that blames the weights.
    """
    try:
        check_finite(predictor.encode(_test_image()), "the model's output for a test image")
    except NonFiniteEmbeddingError as exc:
        raise NonFiniteEmbeddingError(
            f"{exc}: the weights are damaged or not SAM weights; download or choose the checkpoint again"
        ) from None


#: Folder (under the embeddings cache) where :func:`check_model` records the checkpoints whose test encode passed.
CHECKED_MODELS_DIR = "checked-models"


def check_model(predictor: "_Encoder", checkpoint: str | os.PathLike, memo: str | os.PathLike | None = None) -> None:
    """Refuse a model whose weights or whose output for a test image are not finite (damaged or NaN weights).

    The weights are scanned on every call (milliseconds for MobileSAM, well
    under a second for ViT-H). The test encode (:func:`check_model_output`)
    costs one encoder pass (about 1.4 s for MobileSAM on a CPU, tens of
    seconds for ViT-H), so with ``memo`` (a folder) it runs once per
    checkpoint file, model type and device: a marker named after them is
    written there when it passes. A changed file has another
    :func:`checkpoint_fingerprint` and is tested again.

    Raises
    ------
    NonFiniteEmbeddingError
        With a message that blames the weights.
    """
    model = predictor.model
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteEmbeddingError(
                f"the weights hold non-finite values (NaN or infinity) in {name}: the file is damaged or not SAM "
                "weights; download or choose the checkpoint again")
    marker = None
    if memo is not None:
        device = next(model.parameters()).device.type
        marker = Path(memo) / f"{model.model_type}-{device}-{checkpoint_fingerprint(checkpoint)}"
        if marker.is_file():
            return
    check_model_output(predictor)
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError as exc:  # a read-only cache: the test runs again next time, nothing worse
            log.info("cannot record the model check in %s: %s", marker.parent, exc)


# ---------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of an :class:`EmbeddingCache`'s counters.

    Attributes
    ----------
    memory_hits, disk_hits, misses:
        Outcomes of :meth:`EmbeddingCache.get` (and so of ``get_or_compute``).
    stores:
        Calls to :meth:`EmbeddingCache.put`.
    memory_evictions:
        Entries dropped from memory to respect its bound.
    disk_evictions:
        Files deleted to respect the disk bound.
    dropped:
        Disk entries found stale or corrupt, deleted and counted as misses.
    memory_entries, memory_bytes:
        What the memory tier holds now.
    """

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    stores: int = 0
    memory_evictions: int = 0
    disk_evictions: int = 0
    dropped: int = 0
    memory_entries: int = 0
    memory_bytes: int = 0

    @property
    def hits(self) -> int:
        """Memory plus disk hits."""
        return self.memory_hits + self.disk_hits


class _Encoder(Protocol):  # what get_or_compute needs from a Predictor
    def encode(self, image: np.ndarray) -> ImageEmbedding: ...


class _CorruptEntry(Exception):
    """A disk entry failed a check (internal: it is deleted and reported as a miss)."""


class EmbeddingCache:
    """Memory + disk cache of image embeddings for one model and checkpoint.

    Parameters
    ----------
    directory:
        Root of the disk cache; ``None`` keeps the cache in memory only.
        Entries live in ``directory / model_type``. Created on first write.
    model_type:
        e.g. ``"vit_t"``; part of every key, checked on load and on store.
    checkpoint_id:
        Identity of the weights, normally :func:`checkpoint_fingerprint` of the
        checkpoint file; part of every key and checked on load.
    memory_bytes:
        Bound of the in-memory tier in bytes (:data:`DEFAULT_MEMORY_BYTES`);
        0 disables it. An embedding larger than the bound is not kept.
        Entries stay where their tensors are: with a CUDA predictor this is
        GPU memory.
    disk:
        Whether to read and write the disk tier (ignored when ``directory`` is
        ``None``).
    disk_bytes:
        Optional bound of the files under ``directory`` (all model types) in
        bytes. When a write takes the total over it, the oldest files (by
        modification time; a hit refreshes it) are deleted until the total is
        at most 90% of the bound. Other processes writing to the same folder
        are counted at the next such scan.
    """

    def __init__(
        self,
        directory: Optional[Path | str],
        *,
        model_type: str,
        checkpoint_id: str,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk: bool = True,
        disk_bytes: Optional[int] = None,
    ) -> None:
        if not model_type or not checkpoint_id:
            raise ValueError("EmbeddingCache needs a model_type and a checkpoint_id")
        if memory_bytes < 0 or (disk_bytes is not None and disk_bytes < 0):
            raise ValueError("cache bounds must be >= 0 bytes")
        self.directory = Path(directory) if directory is not None else None
        self.model_type = str(model_type)
        self.checkpoint_id = str(checkpoint_id)
        self.memory_bytes = int(memory_bytes)
        self.disk = bool(disk) and self.directory is not None
        self.disk_bytes = None if disk_bytes is None else int(disk_bytes)

        self._lock = threading.Lock()
        self._mem: "OrderedDict[str, ImageEmbedding]" = OrderedDict()
        self._mem_used = 0
        self._inflight: dict[str, threading.Event] = {}
        self._disk_total: Optional[int] = None  # bytes under directory, once scanned
        self._counts = dict(
            memory_hits=0, disk_hits=0, misses=0, stores=0, memory_evictions=0, disk_evictions=0, dropped=0
        )
        # JSON, so that no pair of (model type, checkpoint id) strings can run into another
        self._key_prefix = json.dumps(
            ["sam-annotator-embedding", FORMAT_VERSION, self.model_type, self.checkpoint_id]
        )

    def __repr__(self) -> str:
        where = str(self.directory) if self.disk else "memory only"
        return f"EmbeddingCache({where!r}, model_type={self.model_type!r}, checkpoint_id={self.checkpoint_id!r})"

    # -- keys ----------------------------------------------------------------

    def key_for(self, image: np.ndarray) -> str:
        """Key of ``image`` (``(H, W, 3)`` uint8 RGB) for this model and checkpoint.

        Costs one pass over the pixels (tens of milliseconds for a 12 MP
        image, see :func:`image_digest`); compute it off the GUI thread, e.g.
        right after loading the image.
        """
        return self.key_for_digest(image_digest(image))

    def key_for_digest(self, digest: str) -> str:
        """Key from an :func:`image_digest` already computed (no pixel pass)."""
        h = hashlib.blake2b((self._key_prefix + digest).encode(), digest_size=_DIGEST_BYTES)
        return h.hexdigest()

    @staticmethod
    def key_for_region(key: str, region: Optional[tuple]) -> str:
        """Key of the embedding of ``region`` of the image whose key is ``key`` (:meth:`key_for`).

        ``region`` is ``ImageEmbedding.region``, i.e. what
        :func:`sam_core.types.clip_region` makes of the requested rectangle
        (compute it before encoding to look the embedding up). ``None`` (the
        whole image) gives ``key`` itself; every region another key.
        """
        _check_key(key)
        if region is None:
            return key
        text = json.dumps([key, "region", *(int(v) for v in region)])
        return hashlib.blake2b(text.encode(), digest_size=_DIGEST_BYTES).hexdigest()

    def path_for(self, key: str) -> Path:
        """Where the disk entry of ``key`` lives (whether or not it exists)."""
        if self.directory is None:
            raise ValueError("this cache has no directory")
        _check_key(key)
        return self.directory / self.model_type / key[:2] / (key + SUFFIX)

    # -- reading -------------------------------------------------------------

    def contains(self, key: str) -> bool:
        """Whether ``key`` is in memory or has a disk file (not validated, not loaded)."""
        with self._lock:
            if key in self._mem:
                return True
        return self.disk and self.path_for(key).is_file()

    def get(
        self,
        key: str,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> Optional[ImageEmbedding]:
        """The embedding stored under ``key``, or ``None`` on a miss.

        Parameters
        ----------
        key:
            From :meth:`key_for`.
        device:
            Where the caller's model lives. A memory entry on another device is
            returned copied there (the cached one stays); a disk entry is
            loaded there. Default: the memory entry as it is; disk entries on
            the CPU.
        dtype:
            Floating dtype for tensors loaded from disk. Default: the encoder's
            dtype recorded in the file, except that half types become float32
            on the CPU. Memory entries keep their dtype.

        A disk hit is also kept in memory. A stale or corrupt disk entry is
        deleted and reported as a miss.
        """
        with self._lock:
            emb = self._mem.get(key)
            if emb is not None:
                self._mem.move_to_end(key)
                self._counts["memory_hits"] += 1
        if emb is not None:
            if device is not None and not _on_device(emb.features, device):
                emb = emb.to(device)
            return emb

        emb = self._load(key, device, dtype) if self.disk else None
        with self._lock:
            if emb is None:
                self._counts["misses"] += 1
                return None
            self._counts["disk_hits"] += 1
            self._remember(key, emb)
        return emb

    def get_or_compute(
        self, image: np.ndarray, predictor: _Encoder, *, key: Optional[str] = None
    ) -> ImageEmbedding:
        """The embedding of ``image``: from the cache, else ``predictor.encode(image)``.

        Parameters
        ----------
        image:
            ``(H, W, 3)`` uint8 RGB.
        predictor:
            A :class:`~sam_core.predictor.Predictor` of this cache's model type
            and checkpoint. Hits are returned on its model's device.
        key:
            :meth:`key_for` of ``image`` if the caller has it already.

        On a miss the new embedding is stored (rounded to float16 precision
        first when the disk tier is on, see the module notes) and returned;
        one holding NaN or infinity raises :class:`NonFiniteEmbeddingError`
        and is not stored.
        If another thread is already encoding the same image, this waits for
        its result instead of encoding twice.
        """
        if key is None:
            key = self.key_for(image)
        device = _predictor_device(predictor)
        while True:
            emb = self.get(key, device=device)
            if emb is not None:
                return emb
            with self._lock:
                event = self._inflight.get(key)
                owner = event is None
                if owner:
                    event = self._inflight[key] = threading.Event()
            if not owner:
                event.wait()
                continue  # the owner stored it (or failed: then encode here)
            try:
                emb = predictor.encode(image)
                if emb.model_type != self.model_type:
                    raise ValueError(
                        f"predictor encodes for model type {emb.model_type!r} but this cache is for {self.model_type!r}"
                    )
                check_finite(emb, "the encoder's output")
                if self.disk:
                    emb = round_to_storage(emb)
                    check_finite(emb, "the encoder's output in float16")  # beyond float16's range
                self.put(key, emb)
                release_free_memory()  # the encoder's freed temporaries, kept by this thread's arena otherwise
                return emb
            finally:
                with self._lock:
                    del self._inflight[key]
                event.set()

    # -- writing -------------------------------------------------------------

    def put(self, key: str, embedding: ImageEmbedding) -> bool:
        """Store ``embedding`` under ``key`` in memory (as is) and on disk (float16).

        Returns
        -------
        bool
            Whether a disk entry was written: ``False`` when the disk tier is
            off or the write failed (logged as a warning; a full or read-only
            disk must not stop annotation).

        Raises
        ------
        ValueError
            If the embedding is of another model type or its features are not
            ``(1, 256, 64, 64)``.
        NonFiniteEmbeddingError
            If it holds NaN or infinity (a ``ValueError``); nothing is stored.
        """
        _check_key(key)
        if embedding.model_type != self.model_type:
            raise ValueError(
                f"embedding of model type {embedding.model_type!r} cannot go into a cache for {self.model_type!r}"
            )
        if tuple(embedding.features.shape) != FEATURES_SHAPE:
            raise ValueError(f"features must be {FEATURES_SHAPE}, got {tuple(embedding.features.shape)}")
        check_finite(embedding)
        with self._lock:
            self._counts["stores"] += 1
            self._remember(key, embedding)
        if not self.disk:
            return False
        try:
            self._write(key, embedding)
        except OSError as exc:
            log.warning("embedding cache: could not write %s: %s", self.path_for(key), exc)
            return False
        return True

    def discard(self, key: str) -> None:
        """Forget ``key`` in memory and delete its disk file, if any."""
        with self._lock:
            emb = self._mem.pop(key, None)
            if emb is not None:
                self._mem_used -= emb.nbytes
        if self.disk:
            self._unlink(self.path_for(key))

    def clear_memory(self) -> None:
        """Drop every in-memory entry (disk entries stay)."""
        with self._lock:
            self._mem.clear()
            self._mem_used = 0

    # -- introspection -------------------------------------------------------

    @property
    def stats(self) -> CacheStats:
        """Counters and memory use, as a snapshot."""
        with self._lock:
            return CacheStats(**self._counts, memory_entries=len(self._mem), memory_bytes=self._mem_used)

    def memory_keys(self) -> list[str]:
        """Keys held in memory, least recently used first."""
        with self._lock:
            return list(self._mem)

    # -- internals -----------------------------------------------------------

    def _remember(self, key: str, emb: ImageEmbedding) -> None:
        """Insert into the LRU and evict down to the bound (lock held)."""
        old = self._mem.pop(key, None)
        if old is not None:
            self._mem_used -= old.nbytes
        size = emb.nbytes
        if size > self.memory_bytes:
            return
        self._mem[key] = emb
        self._mem_used += size
        while self._mem_used > self.memory_bytes:
            _, dropped = self._mem.popitem(last=False)
            self._mem_used -= dropped.nbytes
            self._counts["memory_evictions"] += 1

    def _load(
        self, key: str, device: Optional[torch.device | str], dtype: Optional[torch.dtype]
    ) -> Optional[ImageEmbedding]:
        path = self.path_for(key)
        try:
            buf = _read_entry(path)
        except FileNotFoundError:
            return None
        except _CorruptEntry as exc:  # not a regular file, or too large: never read
            log.info("embedding cache: dropping %s (%s)", path, exc)
            with self._lock:
                self._counts["dropped"] += 1
            self._unlink(path)
            return None
        except OSError as exc:
            log.warning("embedding cache: cannot read %s: %s", path, exc)
            return None
        try:
            emb = self._decode(key, buf, device, dtype)
        except _CorruptEntry as exc:
            log.info("embedding cache: dropping %s (%s)", path, exc)
            with self._lock:
                self._counts["dropped"] += 1
            self._unlink(path)
            return None
        try:
            os.utime(path)  # the disk bound evicts the least recently *used*
        except OSError:
            pass
        return emb

    def _decode(
        self, key: str, buf: bytearray, device: Optional[torch.device | str], dtype: Optional[torch.dtype]
    ) -> ImageEmbedding:
        view = memoryview(buf)
        if len(buf) < _PREFIX_BYTES or bytes(view[: len(_MAGIC)]) != _MAGIC:
            raise _CorruptEntry("not an embedding file")
        stored_sum = bytes(view[len(_MAGIC) : len(_MAGIC) + _CHECKSUM_BYTES])
        body = view[len(_MAGIC) + _CHECKSUM_BYTES :]
        if hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES).digest() != stored_sum:
            raise _CorruptEntry("checksum mismatch")
        (hlen,) = _LEN.unpack_from(body, 0)
        start = _LEN.size + hlen
        if start > len(body):
            raise _CorruptEntry("header runs past the end")
        try:
            header = json.loads(bytes(body[_LEN.size : start]).decode("utf-8"))
            version = header["format_version"]
            tensors = [(str(t["name"]), _dims(t["shape"], 1, 2**20)) for t in header["tensors"][: _MAX_TENSORS + 1]]
            original_size = _dims(header["original_size"], 1, _MAX_SIDE)
            input_size = _dims(header["input_size"], 1, _MAX_SIDE)
            src_dtype = getattr(torch, str(header["dtype"]))
            # a region embedding's place in its image (absent, or null, for a whole-image one)
            region = _optional_ints(header.get("region"), 4)
            image_size = _optional_ints(header.get("image_size"), 2)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise _CorruptEntry(f"bad header: {exc!r}") from None
        if len(tensors) > _MAX_TENSORS:
            raise _CorruptEntry(f"more than {_MAX_TENSORS} tensors")
        expect = {
            "format_version": (version, FORMAT_VERSION),
            "key": (header.get("key"), key),
            "model_type": (header.get("model_type"), self.model_type),
            "checkpoint_id": (header.get("checkpoint_id"), self.checkpoint_id),
        }
        for field, (got, want) in expect.items():
            if got != want:
                raise _CorruptEntry(f"{field} is {got!r}, expected {want!r}")
        if not isinstance(src_dtype, torch.dtype) or not src_dtype.is_floating_point:
            raise _CorruptEntry(f"bad dtype {header['dtype']!r}")
        if len(original_size) != 2 or len(input_size) != 2 or min(original_size + input_size) <= 0:
            raise _CorruptEntry(f"bad sizes {original_size}, {input_size}")
        if not tensors or tensors[0] != ("features", FEATURES_SHAPE):
            raise _CorruptEntry(f"features must come first with shape {FEATURES_SHAPE}, got {tensors[:1]}")
        counts = [math.prod(shape) for _, shape in tensors]  # Python ints: no overflow, nothing allocated
        if any(c <= 0 for c in counts) or start + 2 * sum(counts) != len(body):
            raise _CorruptEntry("tensor shapes do not match the payload size")

        if device is None:
            device = torch.device("cpu")
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float32 if device.type == "cpu" and src_dtype.itemsize < 4 else src_dtype
        arrays = []
        offset = len(_MAGIC) + _CHECKSUM_BYTES + start
        for count, (name, shape) in zip(counts, tensors):
            arr = np.frombuffer(buf, dtype="<f2", count=count, offset=offset).reshape(shape)
            offset += 2 * count
            if not np.isfinite(arr).all():
                raise _CorruptEntry(f"{name} holds non-finite values")
            arrays.append(torch.from_numpy(arr).to(device=device, dtype=dtype))
        try:
            return ImageEmbedding(
                features=arrays[0],
                original_size=original_size,
                input_size=input_size,
                model_type=self.model_type,
                high_res_features=tuple(arrays[1:]),
                region=region,
                image_size=image_size,
            )
        except ValueError as exc:  # region and sizes that disagree
            raise _CorruptEntry(f"bad region: {exc}") from None

    def _encode(self, key: str, emb: ImageEmbedding) -> bytes:
        tensors = [("features", emb.features)] + [(f"high_res_{i}", t) for i, t in enumerate(emb.high_res_features)]
        header = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "model_type": self.model_type,
            "checkpoint_id": self.checkpoint_id,
            "original_size": [int(s) for s in emb.original_size],
            "input_size": [int(s) for s in emb.input_size],
            "region": None if emb.region is None else [int(v) for v in emb.region],
            "image_size": None if emb.image_size is None else [int(s) for s in emb.image_size],
            "dtype": str(emb.features.dtype).removeprefix("torch."),
            "tensors": [{"name": n, "shape": list(t.shape)} for n, t in tensors],
            "created": time.time(),
        }
        hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
        parts = [_LEN.pack(len(hbytes)), hbytes]
        for _, t in tensors:
            arr = t.detach().to(device="cpu", dtype=torch.float16).contiguous().numpy()
            parts.append(arr.astype("<f2", copy=False).tobytes())
        body = b"".join(parts)
        return _MAGIC + hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES).digest() + body

    def _write(self, key: str, emb: ImageEmbedding) -> None:
        data = self._encode(key, emb)
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            self._unlink(Path(tmp))
            raise
        if self.disk_bytes is not None:
            self._account_disk(len(data), keep=path)

    def _account_disk(self, added: int, keep: Path) -> None:
        with self._lock:
            if self._disk_total is not None:
                self._disk_total += added
                if self._disk_total <= self.disk_bytes:
                    return
        files = self._scan_disk()  # (mtime, size, path), the new file included
        total = sum(size for _, size, _ in files)
        if total > self.disk_bytes:
            target = int(self.disk_bytes * 0.9)
            for _, size, p in sorted(files, key=lambda f: f[0]):
                if total <= target:
                    break
                if p == keep:
                    continue
                if self._unlink(p):
                    total -= size
                    with self._lock:
                        self._counts["disk_evictions"] += 1
        with self._lock:
            self._disk_total = total

    def _scan_disk(self) -> list[tuple[float, int, Path]]:
        out = []
        now = time.time()
        assert self.directory is not None
        for root, _, names in os.walk(self.directory):
            for name in names:
                p = Path(root) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                if name.startswith(_TMP_PREFIX):
                    if now - st.st_mtime > _STALE_TMP_SECONDS:  # left by a crash
                        self._unlink(p)
                elif name.endswith(SUFFIX):
                    out.append((st.st_mtime, st.st_size, p))
        return out

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:  # e.g. open elsewhere on Windows
            log.warning("embedding cache: cannot delete %s: %s", path, exc)
            return False


def _check_key(key: str) -> None:
    if not (isinstance(key, str) and len(key) >= 8 and all(c in "0123456789abcdef" for c in key)):
        raise ValueError(f"not a cache key: {key!r}")


def _optional_ints(value: object, n: int) -> Optional[tuple]:
    """A header's list of ``n`` ints as a tuple, or None for null/absent; ValueError otherwise."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n or not all(type(v) is int for v in value):
        raise ValueError(f"expected null or {n} integers, got {value!r}")
    return tuple(value)


def _on_device(t: torch.Tensor, device: torch.device | str) -> bool:
    want = torch.device(device)
    return t.device.type == want.type and (want.index is None or t.device.index == want.index)


def _predictor_device(predictor: object) -> Optional[torch.device]:
    """The device of a predictor's model (``None`` if it cannot be told)."""
    for obj in (predictor, getattr(predictor, "model", None)):
        dev = getattr(obj, "device", None)
        if isinstance(dev, (torch.device, str)):
            return torch.device(dev)
    model = getattr(predictor, "model", None)
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _dims(value: object, lo: int, hi: int) -> tuple[int, ...]:
    """A shape from a header: a list of at most 8 plain integers in ``lo..hi`` (raises ValueError)."""
    if not isinstance(value, list) or len(value) > _MAX_DIMS:
        raise ValueError(f"not a shape: {value!r:.80}")
    for v in value:
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError(f"bad dimension {v!r:.40}")
    return tuple(value)


def _read_entry(path: Path) -> bytearray:
    """A disk entry's bytes: only a regular file (symlinks followed) of at most :data:`MAX_ENTRY_BYTES`.

    Raises FileNotFoundError, _CorruptEntry (a FIFO, device, folder or too
    large: never opened for reading) or another OSError.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _CorruptEntry("not a regular file")
    if st.st_size > MAX_ENTRY_BYTES:
        raise _CorruptEntry(f"{st.st_size} bytes, over the {MAX_ENTRY_BYTES} bytes an entry can take")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
            raise _CorruptEntry("not a regular file of a possible size")
        buf = bytearray(st.st_size)  # writable, so torch.from_numpy neither copies nor warns
        with os.fdopen(fd, "rb", closefd=False) as f:
            got = f.readinto(buf) or 0
        del buf[got:]  # a short read fails the checks that follow
        return buf
    finally:
        os.close(fd)
