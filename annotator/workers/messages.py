"""The values that cross threads: requests, results and the model in use (immutable).

Every job carries the id its requester chose and a snapshot of what it
needs, so a result can be matched to its request and dropped when stale.
Image sizes are ``(H, W)`` as numpy shapes; coordinates x then y (see
:mod:`annotator.data.prompts`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import numpy as np
from PySide6.QtGui import QImage

from annotator import render
from annotator.data.prompts import PromptState


@dataclass(frozen=True)
class ModelRequest:
    """What model to load.

    ``model_type`` ``None`` means automatic: ``vit_h`` on a CUDA device when
    its weights are present or can be fetched, else ``vit_t`` (MobileSAM).
    ``checkpoint`` ``None`` fetches the registry's weights into the cache.
    ``cache_root``: the cache folder (checkpoints and embeddings), ``None``
    for :func:`sam_core.cache_dir`'s default.
    """

    model_type: Optional[str] = None
    checkpoint: Optional[Path] = None
    device: str = "auto"
    cache_root: Optional[Path] = None
    memory_bytes: Optional[int] = None  # embedding memory bound; None: the cache's default
    disk_cache: bool = True
    disk_bytes: Optional[int] = None  # embedding disk bound; None: unbounded


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model and the cache that goes with it."""

    model: Any  # sam_core.SamModel
    model_type: str
    device: str
    checkpoint: Optional[Path]
    cache: Any  # sam_core.EmbeddingCache
    notice: str = ""  # e.g. why the automatic choice fell back to MobileSAM

    @property
    def label(self) -> str:
        return f"{self.model_type} on {self.device}"


@dataclass(frozen=True)
class ModelFailure:
    """Why a model could not be loaded.

    ``kind``: ``"checkpoint"`` (a file of the wrong kind or damaged),
    ``"download"`` (no source could provide the weights), ``"cancelled"`` or
    ``"error"``.
    """

    kind: str
    message: str
    model_type: str = ""
    checkpoint: Optional[Path] = None
    detected_type: Optional[str] = None


@dataclass(frozen=True)
class LoadJob:
    """Read the image at ``path`` (EXIF applied) and prepare it for display."""

    job_id: int
    path: Path
    prefetch: bool = False
    digests: Any = None  # annotator.data.digests.DigestIndex where the image's content digest is recorded, or None
    max_bytes: Optional[int] = None  # memory budget: an image over it (header estimate) is refused, never decoded


@dataclass(frozen=True, eq=False)
class EncodeJob:
    """Embed the image ``known`` (from the cache, else by encoding ``pixels``, read again if ``None``)."""

    job_id: int
    path: Path
    prefetch: bool
    known: "LoadedImage"
    pixels: Optional[np.ndarray] = None


@dataclass(frozen=True, eq=False)
class RegionJob:
    """Embed ``region`` ``(x0, y0, x1, y1)`` (full-image pixels, half-open, inside the image) of the image ``known``.

    From the cache (under :meth:`sam_core.EmbeddingCache.key_for_region`),
    else by encoding the region's pixels, read from ``pixels``: a shallow
    copy of ``known.qimage`` (the full-resolution pixels the loader decoded
    once and the window keeps for display; the copy shares them, made on the
    GUI thread so that the encoder thread reads its own QImage). No file is
    read again and no second copy of the image is kept.
    """

    job_id: int
    path: Path
    known: "LoadedImage"
    region: Tuple[int, int, int, int]
    pixels: QImage
    prefetch: bool = False  # never: region jobs are for the image on show


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready to show: display pixels, a small copy for thumbnails, its content digest.

    ``qimage`` is RGB32 ``width`` x ``height`` (the full image, EXIF applied);
    ``smaller`` are the lower levels of its pyramid for drawing it zoomed
    out (each half the size of the one before; see
    :func:`annotator.render.pyramid`); ``small`` is ``(h, w, 3)`` uint8 RGB
    with a longest side of at most :data:`render.THUMB_SOURCE_SIDE`;
    ``stamp`` is ``(size, mtime_ns)`` of the file when it was read.
    """

    path: Path
    width: int
    height: int
    qimage: QImage
    small: np.ndarray
    digest: str
    stamp: Tuple[int, int]
    smaller: Tuple[QImage, ...] = ()

    @property
    def levels(self) -> Tuple[QImage, ...]:
        """The full image, then each smaller level."""
        return (self.qimage, *self.smaller)

    @property
    def nbytes(self) -> int:
        return sum(int(q.sizeInBytes()) for q in self.levels) + int(self.small.nbytes)


@dataclass(frozen=True, eq=False)
class EmbeddingResult:
    """An embedding for ``path``. ``source``: ``"memory"``, ``"disk"`` or ``"encoded"``; ``seconds`` it took.

    Also the result of a :class:`RegionJob`: ``embedding.region`` says which region.
    """

    path: Path
    embedding: Any  # sam_core.ImageEmbedding
    source: str
    seconds: float


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """Decode ``prompt`` on ``embedding`` and render the candidates at ``preview_size`` ``(h, w)``.

    ``thumb_source`` is the image's small copy (:attr:`LoadedImage.small`);
    ``color`` the current category's colour; ``t0`` the
    :func:`time.perf_counter` of the user action that caused the request;
    ``opacity`` the fill opacity of the overlays (0..1); ``show`` the
    candidate that will be shown first (its overlay is drawn before the
    others: see :class:`DecodeResult`).
    """

    job_id: int
    embedding: Any
    prompt: PromptState
    preview_size: Tuple[int, int]
    thumb_source: np.ndarray
    color: render.Color
    t0: float = field(default_factory=time.perf_counter)
    opacity: float = render.DEFAULT_OPACITY
    show: int = 0


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """Three (K) candidates, best first, ready to draw.

    ``previews``: ``(h, w)`` bool masks at the job's ``preview_size``;
    ``overlays``: their ARGB QImages; ``thumbs``: strip thumbnails; ``areas``:
    estimated areas in original pixels; ``decode_s``: the decoder alone;
    ``total_s``: from the user action to this result.

    A decode is delivered in two steps (:mod:`annotator.workers.decoder`):
    first a result that is not :attr:`complete` (the preview and overlay of
    the job's ``show`` candidate only, the others ``None``; no areas, no
    thumbnails), so that the mask is drawn without waiting for the rest;
    then the complete one, for the same job.
    """

    job_id: int
    prompt: PromptState
    candidates: Any  # sam_core.Candidates
    previews: Tuple[np.ndarray, ...]
    overlays: Tuple[QImage, ...]
    thumbs: Tuple[QImage, ...]
    areas: Tuple[int, ...]
    decode_s: float
    total_s: float
    t0: float = 0.0  # the job's t0: perf_counter() of the user action

    @property
    def complete(self) -> bool:
        """Every candidate's preview, overlay, area and thumbnail is there (else only :attr:`shown`'s preview and
        overlay)."""
        k = len(self.overlays)
        return len(self.thumbs) == k == len(self.areas) and all(o is not None for o in self.overlays)

    @property
    def shown(self) -> int:
        """The first candidate whose overlay is there (the job's ``show``)."""
        return next(i for i, o in enumerate(self.overlays) if o is not None)


@dataclass(frozen=True, eq=False)
class Task:
    """A pure function to run on the decoder thread: ``fn(*args)``; ``urgent`` tasks go before decodes."""

    task_id: int
    fn: Callable[..., Any]
    args: Tuple[Any, ...] = ()
    urgent: bool = False


@dataclass(frozen=True, eq=False)
class BackgroundJob:
    """``fn(*args, report=..., cancel=...)`` under ``job_id`` (:mod:`annotator.workers.jobs`); ``cancel`` stops it."""

    job_id: int
    fn: Callable[..., Any]
    args: Tuple[Any, ...] = ()
    cancel: threading.Event = field(default_factory=threading.Event)
