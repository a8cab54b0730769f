"""Region embeddings on the encoder thread: crop the pixels already in memory, encode, cache.

A :class:`~annotator.workers.messages.RegionJob` asks for the embedding of a
rectangle of the image on show (the part the user is looking at, see
:mod:`annotator.session.regions`). :func:`embed_region` answers it from the
:class:`sam_core.EmbeddingCache` (memory, then disk) under
:meth:`~sam_core.EmbeddingCache.key_for_region`, else encodes the region:

* the pixels come from the display image the loader decoded once
  (:attr:`LoadedImage.qimage`, RGB32 at full resolution): only the region is
  copied out (:func:`crop_rgb`), the file is never read again, and nothing
  is kept beyond the job (memory stays at one image's pixels, however many
  regions are encoded);
* the crop is encoded as an image of its own and the embedding records where
  it lies (``region``, ``image_size``): this is exactly
  ``Predictor.encode(image, region=region)``, which crops the full-resolution
  image the same way and encodes the crop (tests/test_region_weights.py
  checks the features are equal); cropping here spares building a full
  ``(H, W, 3)`` array of a large image for each region.

Runs on the encoder thread only (it calls the predictor).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Optional, Tuple

import numpy as np
from PySide6.QtGui import QImage

from annotator.workers.messages import EmbeddingResult, RegionJob

Region = Tuple[int, int, int, int]


def crop_rgb(image: QImage, region: Region) -> np.ndarray:
    """``region`` ``(x0, y0, x1, y1)`` of an RGB32 ``image``: a C-contiguous ``(y1 - y0, x1 - x0, 3)`` uint8 RGB array.

    Reads the QImage's pixels in place (``constBits``: no copy of the image,
    no detach); only the region is copied. Raises ``ValueError`` for an
    image of another format or a region that is empty or not inside it.
    """
    if image.format() not in (QImage.Format.Format_RGB32, QImage.Format.Format_ARGB32):
        raise ValueError(f"expected an RGB32 image, got {image.format()}")
    w, h = image.width(), image.height()
    x0, y0, x1, y1 = (int(v) for v in region)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"region {tuple(region)} is not inside the {w} x {h} image")
    stride = image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    px = buf[y0:y1, 4 * x0 : 4 * x1].reshape(y1 - y0, x1 - x0, 4)
    # RGB32 is 0xffRRGGBB in native byte order: B, G, R, A in memory on little-endian machines
    rgb = px[..., 2::-1] if sys.byteorder == "little" else px[..., 1:]
    return np.ascontiguousarray(rgb)


def region_key(cache: Any, digest: str, region: Region) -> str:
    """The cache key of ``region`` of the image whose content digest is ``digest``."""
    return cache.key_for_region(cache.key_for_digest(digest), region)


def embed_region(
    job: RegionJob, predictor: Any, cache: Any, device: Any, started: Optional[Callable[[], None]] = None
) -> EmbeddingResult:
    """The embedding of ``job.region``: from ``cache``, else encoded by ``predictor`` (and stored in ``cache``).

    ``started()`` is called when a real encode begins (not on a cache hit).
    The result's ``source`` is ``"memory"``, ``"disk"`` or ``"encoded"``.
    """
    from sam_core.cache import round_to_storage

    t0 = time.perf_counter()
    key = region_key(cache, job.known.digest, job.region)
    if cache.contains(key):
        source = "memory" if key in cache.memory_keys() else "disk"
        emb = cache.get(key, device=device)
        if emb is not None and emb.region == tuple(job.region):
            return EmbeddingResult(job.path, emb, source, time.perf_counter() - t0)
    if job.pixels.width() != job.known.width or job.pixels.height() != job.known.height:
        raise ValueError(f"the pixels of {job.path} are {job.pixels.width()} x {job.pixels.height()}, "
                         f"expected {job.known.width} x {job.known.height}")
    if started is not None:
        started()
    t0 = time.perf_counter()
    crop = crop_rgb(job.pixels, job.region)
    emb = predictor.encode(crop)
    emb = dataclasses.replace(emb, region=tuple(job.region), image_size=(job.known.height, job.known.width))
    del crop
    if cache.disk:
        emb = round_to_storage(emb)  # what a later disk hit gives back, bit for bit (see sam_core.cache)
    cache.put(key, emb)
    return EmbeddingResult(job.path, emb, "encoded", time.perf_counter() - t0)
