"""Image loading and encoding off the GUI thread: :class:`EncoderService` and its encoder thread.

:class:`EncoderService` (GUI thread) drives two worker threads, each with
**one job in flight** (:class:`annotator.workers.base.WorkerThread`):

* the **loader** (:class:`annotator.workers.loader.LoaderWorker`) reads an
  image (EXIF applied) and prepares it for display;
* the **encoder** (:class:`EncoderWorker`) loads the model (downloading its
  weights first if need be, with progress and cancel:
  :func:`annotator.workers.loader.load_model`), then embeds images through
  the :class:`sam_core.EmbeddingCache` (memory + disk).

Loading is not stuck behind an encode. On each thread the current image's
job goes before the prefetch (:class:`_Wanted`); results of a job the user
has left are delivered under its id (and so dropped by the caller).

The encoder also embeds **regions** of the image on show
(:meth:`EncoderService.submit_region`, :mod:`annotator.workers.regions`):
after the current image's whole-image encode and before any prefetch; the
latest region request replaces a waiting one, and a new current image drops
it. Region results have their own signals (``regionReady``,
``regionFailed``), so they never count as the image's embedding nor mark
its row.

The thread plumbing (``start_thread``, ``in_fresh_thread``, ``make_timer``,
``THREADS``/``TIMERS``) is in :mod:`annotator.workers.base`; the values that
cross threads are in :mod:`annotator.workers.messages`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from annotator.data.digests import file_stamp
from annotator.workers.base import ThreadService, Worker, WorkerThread, in_fresh_thread, user_message
from annotator.workers.loader import LoaderWorker, ModelLoadError, load_model, make_predictor
from annotator.workers.messages import (
    EmbeddingResult,
    EncodeJob,
    LoadedImage,
    LoadJob,
    ModelFailure,
    ModelInfo,
    ModelRequest,
    RegionJob,
)
from annotator.workers.regions import embed_region, region_key

log = logging.getLogger(__name__)

#: Bound of the GUI-side memory of loaded images (display pixels + thumbnail source), in bytes.
IMAGE_MEMORY_BYTES = 256 * 2**20
#: How often download progress reaches the GUI at most (seconds).
_PROGRESS_INTERVAL = 0.1


class EncoderWorker(Worker):
    """Runs on the encoder thread: loads the model, then embeds images (:class:`EncodeJob` -> :class:`EmbeddingResult`).

    Each encode runs on a thread that ends with it (``fresh_thread``; see
    :func:`annotator.workers.base.in_fresh_thread`). Without a model yet a
    job returns ``None``: the session asks again once it is loaded.
    """

    modelLoaded = Signal(object)  # ModelInfo
    modelFailed = Signal(object)  # ModelFailure
    downloadProgress = Signal(object, object)  # done bytes, total bytes or None (Python ints: may exceed 2**31)
    encodeStarted = Signal(int)  # job id: a real encode begins (not a cache hit)

    fresh_thread = True

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self._cancel = cancel
        self._predictor = None
        self._cache = None
        self._device = None
        self._last_progress = 0.0

    # -- model -----------------------------------------------------------------

    @Slot(object)
    def load_model(self, request: ModelRequest) -> None:
        try:
            info = in_fresh_thread(load_model, request, progress=self._progress, cancel=self._cancel)
        except ModelLoadError as exc:
            self.modelFailed.emit(exc.failure)
            return
        except Exception as exc:  # anything else: tell the user, keep running
            log.exception("loading the model failed")
            self.modelFailed.emit(ModelFailure("error", f"{type(exc).__name__}: {exc}", request.model_type or ""))
            return
        self._use(info)
        self.modelLoaded.emit(info)

    @Slot(object)
    def use_model(self, info: ModelInfo) -> None:
        """Take a model loaded elsewhere (tests, or a second window)."""
        self._use(info)
        self.modelLoaded.emit(info)

    def _use(self, info: ModelInfo) -> None:
        self._predictor = make_predictor(info.model)
        self._cache = info.cache
        self._device = info.device

    def _progress(self, done: int, total: Optional[int]) -> Optional[bool]:
        now = time.monotonic()
        if now - self._last_progress >= _PROGRESS_INTERVAL or (total is not None and done >= total):
            self._last_progress = now
            self.downloadProgress.emit(int(done), None if total is None else int(total))
        return not self._cancel.is_set()

    # -- images ----------------------------------------------------------------

    def describe(self, job: EncodeJob) -> str:
        if isinstance(job, RegionJob):
            return f"encoding region {job.region} of {job.path}"
        return f"encoding {job.path}"

    def work(self, job: EncodeJob) -> Optional[EmbeddingResult]:
        cache = self._cache
        if cache is None or self._predictor is None:
            return None  # no model yet: the session asks again once it is loaded
        if isinstance(job, RegionJob):
            return embed_region(job, self._predictor, cache, self._device)
        key = cache.key_for_digest(job.known.digest)
        t0 = time.perf_counter()
        if cache.contains(key):
            emb = cache.get(key, device=self._device)
            if emb is not None:
                return EmbeddingResult(job.path, emb, "disk", time.perf_counter() - t0)
        image = job.pixels
        if image is None:
            from annotator.data.imageio import load_image

            image = load_image(job.path)
        self.encodeStarted.emit(job.job_id)
        t0 = time.perf_counter()
        emb = cache.get_or_compute(image, self._predictor, key=key)
        return EmbeddingResult(job.path, emb, "encoded", time.perf_counter() - t0)


class _Wanted:
    """The queue of the loader or the encoder: the current image's job, then a region of it, then the prefetch.

    At most one current job, one region job (:class:`RegionJob`, encoder
    only: a newer one replaces it) and one prefetch wait. A current job for
    the path already in flight *adopts* that job instead of queueing a second
    one (moving onto the image being prefetched waits for that prefetch, it
    does not start over); ``current_sent`` then says it is in flight. A
    region job in flight is never adopted.
    """

    def __init__(self) -> None:
        self.current: Any = None
        self.current_sent = False  # current is in flight (sent, or adopted)
        self.region: Optional[RegionJob] = None
        self.prefetch: Any = None

    def __bool__(self) -> bool:
        return (
            (self.current is not None and not self.current_sent) or self.region is not None
            or self.prefetch is not None
        )

    def take(self) -> Any:
        if self.current is not None and not self.current_sent:
            self.current_sent = True
            return self.current
        if self.region is not None:
            job, self.region = self.region, None
            return job
        job, self.prefetch = self.prefetch, None
        return job

    def clear(self) -> None:
        self.current, self.current_sent, self.region, self.prefetch = None, False, None, None

    def want(self, job: Any, busy: Any) -> None:
        """Queue ``job`` (``busy``: the job in flight, or ``None``)."""
        if isinstance(job, RegionJob):
            self.region = job  # latest view wins
        elif job.prefetch:
            if not any(j is not None and j.path == job.path for j in (busy, self.current, self.prefetch)):
                self.prefetch = job
        else:
            if self.prefetch is not None and self.prefetch.path == job.path:
                self.prefetch = None
            self.current = job
            self.current_sent = busy is not None and busy.path == job.path and not isinstance(busy, RegionJob)

    def waiting_current(self, path: Path) -> Any:
        """The current job if it is waiting on the job in flight for ``path``."""
        cur = self.current
        return cur if cur is not None and cur.path == path and self.current_sent else None

    def settle(self, path: Path) -> Any:
        """A final result for ``path`` arrived: release and return the current job waiting on it, if any."""
        cur = self.waiting_current(path)
        if cur is not None:
            self.current, self.current_sent = None, False
        return cur

    def drop_current(self) -> None:
        """The current image is no longer wanted: neither is a region of it."""
        self.current, self.current_sent, self.region = None, False, None


class EncoderService(ThreadService):
    """GUI-thread side of image loading and encoding.

    Two worker threads, each with one job in flight: a **loader** (read the
    file, EXIF, display pixels, content digest) and an **encoder** (model
    loading; embeddings through the :class:`sam_core.EmbeddingCache`).
    Loading is not stuck behind an encode, so the next image shows at once
    even while the previous one is still encoding. On each thread the
    current image's job goes before the prefetch (:class:`_Wanted`).

    Signals carry the **caller's** job id (from :meth:`new_id`). Loaded images
    are kept in a small LRU (:data:`IMAGE_MEMORY_BYTES`); with the embedding
    in the cache's memory tier, :meth:`submit` answers at once, synchronously.
    """

    modelLoaded = Signal(object)
    modelFailed = Signal(object)
    downloadProgress = Signal(object, object)
    imageLoaded = Signal(int, object)  # job id, LoadedImage
    encodeStarted = Signal(int)
    embeddingReady = Signal(int, object)  # job id, EmbeddingResult
    jobFailed = Signal(int, object, str)  # job id, path, message
    # idle (from ThreadService): nothing in flight and nothing queued
    cachedFound = Signal(int, object)  # scan id, paths whose embedding is in the disk cache (see scan_cached)
    regionReady = Signal(int, object)  # region job id, EmbeddingResult (embedding.region set)
    regionFailed = Signal(int, str)  # region job id, message

    _runScan = Signal(int, object, object, object)
    _loadModel = Signal(object)
    _useModel = Signal(object)

    def __init__(self, parent: Optional[QObject] = None, image_memory_bytes: int = IMAGE_MEMORY_BYTES) -> None:
        super().__init__(parent)
        self._cancel = threading.Event()
        self._loads: WorkerThread = self._add_thread(
            LoaderWorker, "sam-loader", _Wanted(),
            on_returned=self._on_loaded, on_errored=self._on_load_failed, wire=self._wire_loader,
        )
        self._encodes: WorkerThread = self._add_thread(
            lambda: EncoderWorker(self._cancel), "sam-encoder", _Wanted(),
            on_returned=self._on_embedding_ready, on_errored=self._on_encode_failed, wire=self._wire_encoder,
        )
        self.info: Optional[ModelInfo] = None
        self._digests: Any = None  # annotator.data.digests.DigestIndex beside the model's disk cache, or None
        self._loading_model = False
        self._images: "OrderedDict[Path, LoadedImage]" = OrderedDict()
        self._image_bytes = 0
        self._image_memory_bytes = image_memory_bytes
        from annotator.data.memory import default_image_budget

        #: An image whose header says it takes more memory than this to open is refused, never decoded or prefetched.
        self.image_budget: int = default_image_budget()

    def _wire_loader(self, worker: LoaderWorker) -> None:
        self._runScan.connect(worker.scan)
        worker.cachedFound.connect(self.cachedFound)

    def _wire_encoder(self, worker: EncoderWorker) -> None:
        self._loadModel.connect(worker.load_model)
        self._useModel.connect(worker.use_model)
        worker.modelLoaded.connect(self._on_model_loaded)
        worker.modelFailed.connect(self._on_model_failed)
        worker.downloadProgress.connect(self.downloadProgress)
        worker.encodeStarted.connect(self._on_encode_started)

    # -- public ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether anything is loading, encoding or queued."""
        return self._loading_model or super().busy

    @property
    def cache(self):
        return None if self.info is None else self.info.cache

    def load_model(self, request: ModelRequest) -> None:
        """Load a model on the encoder thread (``modelLoaded`` / ``modelFailed``)."""
        self._cancel.clear()
        self._loading_model = True
        self._loadModel.emit(request)

    def use_model(self, info: ModelInfo) -> None:
        """Use an already loaded model (``modelLoaded`` follows)."""
        self._loading_model = True
        self._useModel.emit(info)

    def cancel_download(self) -> None:
        self._cancel.set()

    def loaded_image(self, path: Path) -> Optional[LoadedImage]:
        """The image at ``path`` if it is in memory and the file has not changed since."""
        loaded = self._images.get(path)
        if loaded is None:
            return None
        if file_stamp(path) != loaded.stamp:
            self._forget(path)
            return None
        self._images.move_to_end(path)
        return loaded

    def embedding_in_memory(self, loaded: LoadedImage):
        """The embedding of ``loaded`` if the cache's memory tier has it, else ``None``."""
        cache = self.cache
        if cache is None:
            return None
        key = cache.key_for_digest(loaded.digest)
        if key not in cache.memory_keys():
            return None
        return cache.get(key)

    def submit(self, job_id: int, path: Path, prefetch: bool = False) -> None:
        """Ask for ``path``'s image (``imageLoaded``) and embedding (``embeddingReady``), under ``job_id``.

        A request that is not a prefetch is the *current* one: it replaces
        the previous current request and goes first. Prefetches report
        nothing but failures and ``embeddingReady``; a prefetch of an image
        already in memory, in flight or wanted is a no-op.
        """
        if not prefetch:  # the previous current image is no longer wanted
            self._loads.queue.drop_current()
            self._encodes.queue.drop_current()
        loaded = self.loaded_image(path)
        if loaded is None:
            self._want(self._loads, LoadJob(job_id, path, prefetch, self._digests, self.image_budget))
            return
        self._after_load(job_id, prefetch, loaded, None)

    def submit_region(self, job_id: int, loaded: LoadedImage, region: Tuple[int, int, int, int]) -> bool:
        """Ask for the embedding of ``region`` of ``loaded`` (the image on show) under ``job_id``.

        ``region`` is ``(x0, y0, x1, y1)`` full-image pixels, inside the
        image and not all of it (see :func:`sam_core.clip_region`).
        ``regionReady(job_id, result)`` or ``regionFailed(job_id, message)``
        follows: at once when the cache's memory tier has it, else after the
        current image's encode (never before it) and before any prefetch. A
        region request still waiting is replaced (latest wins); one in flight
        runs to its end. Returns False (and does nothing) without a model.
        """
        cache = self.cache
        if cache is None:
            return False
        key = region_key(cache, loaded.digest, region)
        if key in cache.memory_keys():
            emb = cache.get(key)
            if emb is not None:
                self._encodes.queue.region = None
                self.regionReady.emit(job_id, EmbeddingResult(loaded.path, emb, "memory", 0.0))
                return True
        self._want(self._encodes, RegionJob(job_id, loaded.path, loaded, tuple(region), QImage(loaded.qimage)))
        return True

    @property
    def region_waiting(self) -> bool:
        """A region request is queued (not yet sent to the encoder thread)."""
        return self._encodes.queue.region is not None

    def cancel_region(self) -> None:
        """Drop the waiting region request, if any (one in flight runs to its end and still reports)."""
        self._encodes.queue.region = None

    def scan_cached(self, scan_id: int, paths: Sequence[Path]) -> bool:
        """Find, on the loader thread, which of ``paths`` are in the disk cache already (``cachedFound``).

        Only images read before (by the window or ``sam-annotator encode``)
        and unchanged since can be told; see :mod:`annotator.data.digests`.
        Returns False (and does nothing) without a model or a disk cache.
        """
        if self._digests is None or not paths:
            return False
        self._runScan.emit(scan_id, list(paths), self._digests, self.cache)
        return True

    def forget_current(self) -> None:
        """No image is wanted any more (a folder is closing): drop queued jobs."""
        self._loads.queue.clear()
        self._encodes.queue.clear()

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Cancel downloads, drop queued jobs, stop the threads and join them. Safe to call twice."""
        self._cancel.set()
        return super().shutdown(timeout_ms)

    # -- internals ---------------------------------------------------------------

    @staticmethod
    def _want(worker: WorkerThread, job: Any) -> None:
        worker.queue.want(job, worker.in_flight)  # (a job that already reported cannot be adopted)
        worker.pump()

    def _after_load(self, job_id: int, prefetch: bool, loaded: LoadedImage, pixels: Optional[np.ndarray]) -> None:
        if not prefetch:
            self.imageLoaded.emit(job_id, loaded)
        if self.cache is None:
            return  # no model yet
        emb = self.embedding_in_memory(loaded)
        if emb is not None:
            self.embeddingReady.emit(job_id, EmbeddingResult(loaded.path, emb, "memory", 0.0))
            return
        self._want(self._encodes, EncodeJob(job_id, loaded.path, prefetch, loaded, pixels))

    def _remember(self, loaded: LoadedImage) -> None:
        self._forget(loaded.path)
        self._images[loaded.path] = loaded
        self._image_bytes += loaded.nbytes
        while self._image_bytes > self._image_memory_bytes and len(self._images) > 1:
            _, old = self._images.popitem(last=False)
            self._image_bytes -= old.nbytes

    def _forget(self, path: Path) -> None:
        old = self._images.pop(path, None)
        if old is not None:
            self._image_bytes -= old.nbytes

    # loader results
    def _on_loaded(self, job: LoadJob, value: Any) -> None:
        loaded, pixels = value
        self._remember(loaded)
        current = self._loads.queue.settle(loaded.path)
        if current is not None:
            self._after_load(current.job_id, False, loaded, pixels)
        elif job.prefetch:
            self._after_load(job.job_id, True, loaded, pixels)
        # else: a current request the user has since left; the image stays in memory

    def _on_load_failed(self, job: LoadJob, exc: BaseException) -> None:
        message = user_message(exc)
        self._forget(job.path)
        current = self._loads.queue.settle(job.path)
        self.jobFailed.emit(job.job_id, job.path, message)
        if current is not None and current.job_id != job.job_id:
            self.jobFailed.emit(current.job_id, job.path, message)

    # encoder results
    def _encode_targets(self, job_id: int, path: Path) -> list[int]:
        current = self._encodes.queue.waiting_current(path)
        return [job_id] if current is None or current.job_id == job_id else [job_id, current.job_id]

    @Slot(object)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        from annotator.data.digests import DigestIndex

        self.info = info
        self._digests = DigestIndex.beside(info.cache)
        self._loading_model = False
        self.modelLoaded.emit(info)

    @Slot(object)
    def _on_model_failed(self, failure: ModelFailure) -> None:
        self._loading_model = False
        self.modelFailed.emit(failure)

    @Slot(int)
    def _on_encode_started(self, job_id: int) -> None:
        busy = self._encodes.busy
        if isinstance(busy, RegionJob):
            return
        for i in self._encode_targets(job_id, busy.path) if busy is not None else [job_id]:
            self.encodeStarted.emit(i)

    def _on_embedding_ready(self, job: EncodeJob, result: Optional[EmbeddingResult]) -> None:
        if result is None:
            return  # no model yet
        if isinstance(job, RegionJob):
            self.regionReady.emit(job.job_id, result)
            return
        targets = self._encode_targets(job.job_id, result.path)
        self._encodes.queue.settle(result.path)
        for i in targets:
            self.embeddingReady.emit(i, result)

    def _on_encode_failed(self, job: EncodeJob, exc: BaseException) -> None:
        message = user_message(exc)
        if isinstance(job, RegionJob):
            self.regionFailed.emit(job.job_id, message)
            return
        targets = self._encode_targets(job.job_id, job.path)
        self._encodes.queue.settle(job.path)
        for i in targets:
            self.jobFailed.emit(i, job.path, message)
