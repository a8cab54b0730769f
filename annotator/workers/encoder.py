"""Background work off the GUI thread: threads, model loading, image loading, encoding, prefetch.

Each worker is a :class:`QObject` moved to its own :class:`QThread`
(:func:`start_thread`) and driven by a service on the GUI thread that keeps
**one job in flight** per worker:

* :class:`LoaderWorker` reads images (EXIF applied) and prepares them for
  display; :class:`EncoderWorker` loads the model (downloading its weights
  first if needed, with progress and cancel), then embeds images through the
  :class:`sam_core.EmbeddingCache` (memory + disk). :class:`EncoderService`
  drives both: the current image before the prefetch, results of a job the
  user has left delivered under its id (and so dropped by the caller).
* The decoder thread is in :mod:`annotator.workers.decoder`; the values that cross
  threads are in :mod:`annotator.workers.messages`.

Teardown: ``thread.finished`` -> ``worker.deleteLater``; a service's
``shutdown()`` asks its threads to quit and joins them. Threads and timers
made here are registered in :data:`THREADS` and :data:`TIMERS` (weak sets),
which the test suite checks for leaks. Worker threads lower their own
priority (:data:`NICE`), so the window stays smooth during an encode.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from annotator import qtcompat, render
from annotator.workers.messages import (
    EmbeddingResult,
    EncodeJob,
    LoadedImage,
    LoadJob,
    ModelFailure,
    ModelInfo,
    ModelRequest,
)
from annotator.data.digests import file_stamp

qtcompat.apply()  # binding work-arounds, before any signal is emitted

log = logging.getLogger(__name__)

#: Every QThread this module starts (weakly held): tests fail when one is left running.
THREADS: "weakref.WeakSet[QThread]" = weakref.WeakSet()
#: Every QTimer made through :func:`make_timer` (weakly held): tests fail when one is left active.
TIMERS: "weakref.WeakSet[QTimer]" = weakref.WeakSet()

#: Bound of the GUI-side memory of loaded images (display pixels + thumbnail source), in bytes.
IMAGE_MEMORY_BYTES = 256 * 2**20
#: How often download progress reaches the GUI at most (seconds).
_PROGRESS_INTERVAL = 0.1


def make_timer(parent: QObject, interval_ms: int, *, single_shot: bool = False) -> QTimer:
    """A QTimer registered in :data:`TIMERS` (so tests can tell it was stopped)."""
    timer = QTimer(parent)
    timer.setInterval(interval_ms)
    timer.setSingleShot(single_shot)
    TIMERS.add(timer)
    return timer


#: Niceness of the worker threads (Linux, macOS): background work yields the CPU to the GUI thread, and
#: the decoder (on the click path) to the encoder's prefetching. Threads that torch starts from a worker
#: inherit it.
NICE = {"sam-decoder": 2, "sam-loader": 5, "sam-encoder": 10, "sam-everything": 10, "sam-export": 5}


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's niceness by ``nice`` (best effort; no-op where unsupported)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):  # pragma: no cover - e.g. a sandbox that forbids it
        pass


def start_thread(worker: QObject, name: str) -> QThread:
    """Move ``worker`` to a new, started QThread named ``name``; ``finished`` deletes the worker.

    The thread lowers its own priority (:data:`NICE`) before running anything,
    so a long encode never makes the window stutter.
    """
    thread = QThread()
    thread.setObjectName(name)
    nice = NICE.get(name, 5)
    thread.started.connect(lambda: _lower_priority(nice), Qt.ConnectionType.DirectConnection)
    worker.moveToThread(thread)
    thread.finished.connect(worker.deleteLater)
    THREADS.add(thread)
    thread.start()
    return thread


def stop_thread(thread: Optional[QThread], timeout_ms: int = -1) -> bool:
    """Ask ``thread``'s event loop to quit and wait for it (``-1``: for as long as it takes).

    The job in flight, if any, runs to its end first (torch cannot be
    interrupted mid-layer). Returns whether the thread has stopped.
    """
    if thread is None:
        return True
    thread.quit()
    if timeout_ms < 0:
        return thread.wait()
    return thread.wait(timeout_ms)


def in_fresh_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run on a new thread that ends with it; returns its result or raises its exception.

    Why: torch's CPU kernels run on OpenMP, which keeps a pool of threads for
    every thread that ever ran a parallel operation, for as long as that
    thread lives. Once the process holds more such threads than there are
    cores, OpenMP stops spinning between operations and sleeps instead, and
    every small operation then costs two context switches: the decoder, a
    chain of ~170 small operations per click, ran 1.5-2x slower on two cores
    while the encoder thread merely idled with its pool. So the long jobs
    (loading a model, encoding, segment everything, exports) run here, and
    their pools go away with them; the decoder thread, on the click path,
    keeps its pool. Nothing on the GUI thread may run torch. The new thread
    inherits the caller's niceness (Linux).
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"{threading.current_thread().name}-job", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def make_predictor(model: Any):
    """A :class:`sam_core.Predictor` for ``model``; an object that already has ``encode`` and ``decode`` is used as is.

    Each worker makes its own predictor: the model's weights are shared
    (read-only), any per-predictor scratch state is not.
    """
    if hasattr(model, "encode") and hasattr(model, "decode"):
        return model
    import sam_core

    return sam_core.Predictor(model)


# ---------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------


class EncoderWorker(QObject):
    """Runs on the encoder thread. Never call its slots directly from another thread; emit to them."""

    modelLoaded = Signal(object)  # ModelInfo
    modelFailed = Signal(object)  # ModelFailure
    downloadProgress = Signal(object, object)  # done bytes, total bytes or None (Python ints: may exceed 2**31)
    encodeStarted = Signal(int)  # job id: a real encode begins (not a cache hit)
    embeddingReady = Signal(int, object)  # job id, EmbeddingResult
    jobFailed = Signal(int, object, str)  # job id, path, message for the user
    jobDone = Signal(int)  # job id: the worker is free again

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
            info = in_fresh_thread(self._load, request)
        except _Failed as exc:
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

    def _load(self, request: ModelRequest) -> ModelInfo:
        import sam_core

        device = str(sam_core.resolve_device(request.device))
        if request.model_type is not None:
            choices = [request.model_type]
        elif request.checkpoint is not None:
            try:
                detected = sam_core.detect_model_type(request.checkpoint)
            except sam_core.CheckpointError as exc:
                raise _Failed(ModelFailure("checkpoint", str(exc), "", request.checkpoint)) from None
            if detected is None:
                raise _Failed(
                    ModelFailure(
                        "checkpoint",
                        f"{request.checkpoint}: these weights match no known SAM model type. "
                        "Choose the model type with --model, or pick another file.",
                        "",
                        request.checkpoint,
                    )
                )
            choices = [detected]
        elif device.startswith("cuda"):
            choices = ["vit_h", "vit_t"]
        else:
            choices = ["vit_t"]
        notice = ""
        for i, model_type in enumerate(choices):
            last = i == len(choices) - 1
            checkpoint = request.checkpoint
            try:
                if checkpoint is None:
                    checkpoint = sam_core.ensure_checkpoint(
                        model_type, cache=request.cache_root, progress=self._progress, cancel=self._cancel
                    )
                model = sam_core.load_model(model_type, checkpoint=checkpoint, device=device)
            except sam_core.CheckpointError as exc:
                raise _Failed(ModelFailure("checkpoint", str(exc), model_type, checkpoint, exc.detected_type))
            except sam_core.CheckpointDownloadError as exc:
                if last:
                    raise _Failed(ModelFailure("download", str(exc), model_type, getattr(exc, "path", None)))
                notice = f"{model_type} weights are not available ({_first_line(exc)}); using MobileSAM (vit_t)."
                continue
            except Exception:
                if self._cancel.is_set():
                    self._cancel.clear()
                    if last:
                        raise _Failed(ModelFailure("cancelled", "The download was cancelled.", model_type))
                    notice = f"The {model_type} download was cancelled; using MobileSAM (vit_t)."
                    continue
                raise
            cache = self._make_cache(request, model_type, checkpoint)
            return ModelInfo(model, model_type, device, Path(checkpoint), cache, notice)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _make_cache(request: ModelRequest, model_type: str, checkpoint: Path):
        import sam_core
        from sam_core.cache import checkpoint_fingerprint

        kwargs = {} if request.memory_bytes is None else {"memory_bytes": request.memory_bytes}
        directory = sam_core.cache_dir(request.cache_root) / "embeddings"
        return sam_core.EmbeddingCache(
            directory,
            model_type=model_type,
            checkpoint_id=checkpoint_fingerprint(checkpoint),
            disk=request.disk_cache,
            disk_bytes=request.disk_bytes,
            **kwargs,
        )

    # -- images ----------------------------------------------------------------

    @Slot(object)
    def run(self, job: EncodeJob) -> None:
        try:
            in_fresh_thread(self._run, job)
        except Exception as exc:  # never let a bad image or an encoder error kill the thread
            log.exception("encoding %s failed", job.path)
            self.jobFailed.emit(job.job_id, job.path, user_message(exc))
        finally:
            self.jobDone.emit(job.job_id)

    def _run(self, job: EncodeJob) -> None:
        cache = self._cache
        if cache is None or self._predictor is None:
            return  # no model yet: the session asks again once it is loaded
        key = cache.key_for_digest(job.known.digest)
        t0 = time.perf_counter()
        if cache.contains(key):
            emb = cache.get(key, device=self._device)
            if emb is not None:
                self.embeddingReady.emit(job.job_id, EmbeddingResult(job.path, emb, "disk", time.perf_counter() - t0))
                return
        image = job.pixels
        if image is None:
            from annotator.data.imageio import load_image

            image = load_image(job.path)
        self.encodeStarted.emit(job.job_id)
        t0 = time.perf_counter()
        emb = cache.get_or_compute(image, self._predictor, key=key)
        self.embeddingReady.emit(job.job_id, EmbeddingResult(job.path, emb, "encoded", time.perf_counter() - t0))


class LoaderWorker(QObject):
    """Runs on the loader thread: reads images and prepares them for display (no model involved)."""

    loaded = Signal(int, object, object)  # job id, LoadedImage, pixels (H, W, 3) uint8 for the encoder
    jobFailed = Signal(int, object, str)  # job id, path, message for the user
    jobDone = Signal(int)
    cachedFound = Signal(int, object)  # scan id, list of paths whose embedding is in the disk cache

    @Slot(object)
    def run(self, job: LoadJob) -> None:
        from annotator.data.imageio import load_image

        try:
            image = load_image(job.path)  # ImageLoadError carries a message for the user
            loaded = prepare_image(job.path, image)
            self.loaded.emit(job.job_id, loaded, image)
            if job.digests is not None:
                job.digests.record(job.path, loaded.stamp, loaded.digest)
        except Exception as exc:
            if type(exc).__name__ != "ImageLoadError":
                log.exception("loading %s failed", job.path)
            self.jobFailed.emit(job.job_id, job.path, user_message(exc))
        finally:
            self.jobDone.emit(job.job_id)

    @Slot(int, object, object, object)
    def scan(self, scan_id: int, paths: list, digests: Any, cache: Any) -> None:
        """Which of ``paths`` have a recorded digest (:mod:`annotator.data.digests`) whose embedding ``cache`` holds."""
        try:
            found = [p for p, d in digests.lookup(paths).items() if cache.contains(cache.key_for_digest(d))]
        except Exception:  # a hint only: never let it stop the loader
            log.exception("looking for cached images failed")
            found = []
        self.cachedFound.emit(scan_id, found)


def prepare_image(path: Path, image: np.ndarray) -> LoadedImage:
    """Display pixels, thumbnail source and content digest of ``image`` ``(H, W, 3)`` uint8 RGB."""
    from sam_core.cache import image_digest

    h, w = image.shape[:2]
    levels = render.pyramid(image)
    return LoadedImage(
        path=path,
        width=w,
        height=h,
        qimage=render.rgb_image(image),
        small=render.downscale(levels[-1]),
        digest=image_digest(image),
        stamp=file_stamp(path),
        smaller=tuple(render.rgb_image(level) for level in levels[1:]),
    )


class _Failed(Exception):
    def __init__(self, failure: ModelFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def user_message(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory to encode this image"
    text = str(exc).strip()
    if type(exc).__name__ == "ImageLoadError":
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Lane:
    """Scheduling for one worker: one job in flight; the current image's job goes before the prefetch.

    A current job for the path already in flight *adopts* that job instead of
    queueing a second one (moving onto the image being prefetched waits for
    that prefetch, it does not start over).
    """

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        self.busy: Any = None
        self.current: Any = None
        self.current_sent = False  # current is in flight (sent, or adopted)
        self.prefetch: Any = None

    @property
    def idle(self) -> bool:
        return self.busy is None and self.prefetch is None and (self.current is None or self.current_sent)

    def has(self, path: Path) -> bool:
        return any(j is not None and j.path == path for j in (self.busy, self.current, self.prefetch))

    def want(self, job: Any) -> None:
        if job.prefetch:
            if not self.has(job.path):
                self.prefetch = job
        else:
            if self.prefetch is not None and self.prefetch.path == job.path:
                self.prefetch = None
            self.current = job
            self.current_sent = self.busy is not None and self.busy.path == job.path
        self.pump()

    def pump(self) -> None:
        if self.busy is not None:
            return
        if self.current is not None and not self.current_sent:
            job, self.current_sent = self.current, True
        elif self.prefetch is not None:
            job, self.prefetch = self.prefetch, None
        else:
            return
        self.busy = job
        self._send(job)

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

    def done(self, job_id: int) -> None:
        if self.busy is not None and self.busy.job_id == job_id:
            self.busy = None
        self.pump()

    def drop_current(self) -> None:
        self.current, self.current_sent = None, False

    def drop(self) -> None:
        self.current, self.current_sent, self.prefetch = None, False, None


class EncoderService(QObject):
    """GUI-thread side of image loading and encoding.

    Two workers, each with one job in flight: a **loader** (read the file,
    EXIF, display pixels, content digest) and an **encoder** (model loading;
    embeddings through the :class:`sam_core.EmbeddingCache`). Loading is not
    stuck behind an encode, so the next image shows at once even while the
    previous one is still encoding. For each worker the current image's job
    goes before the prefetch (:class:`_Lane`).

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
    idle = Signal()  # nothing in flight and nothing queued
    cachedFound = Signal(int, object)  # scan id, paths whose embedding is in the disk cache (see scan_cached)

    _runLoad = Signal(object)
    _runScan = Signal(int, object, object, object)
    _runEncode = Signal(object)
    _loadModel = Signal(object)
    _useModel = Signal(object)

    def __init__(self, parent: Optional[QObject] = None, image_memory_bytes: int = IMAGE_MEMORY_BYTES) -> None:
        super().__init__(parent)
        self._cancel = threading.Event()
        self._loader_worker = LoaderWorker()
        self._worker = EncoderWorker(self._cancel)
        self._runLoad.connect(self._loader_worker.run)
        self._runScan.connect(self._loader_worker.scan)
        self._loader_worker.cachedFound.connect(self.cachedFound)
        self._runEncode.connect(self._worker.run)
        self._loadModel.connect(self._worker.load_model)
        self._useModel.connect(self._worker.use_model)
        self._loader_worker.loaded.connect(self._on_loaded)
        self._loader_worker.jobFailed.connect(self._on_load_failed)
        self._loader_worker.jobDone.connect(self._on_load_done)
        self._worker.modelLoaded.connect(self._on_model_loaded)
        self._worker.modelFailed.connect(self._on_model_failed)
        self._worker.downloadProgress.connect(self.downloadProgress)
        self._worker.encodeStarted.connect(self._on_encode_started)
        self._worker.embeddingReady.connect(self._on_embedding_ready)
        self._worker.jobFailed.connect(self._on_encode_failed)
        self._worker.jobDone.connect(self._on_encode_done)
        self._threads: list[QThread] = [
            start_thread(self._loader_worker, "sam-loader"),
            start_thread(self._worker, "sam-encoder"),
        ]
        self._loads = _Lane(self._runLoad.emit)
        self._encodes = _Lane(self._runEncode.emit)

        self.info: Optional[ModelInfo] = None
        self._digests: Any = None  # annotator.data.digests.DigestIndex beside the model's disk cache, or None
        self._next_id = 0
        self._loading_model = False
        self._images: "OrderedDict[Path, LoadedImage]" = OrderedDict()
        self._image_bytes = 0
        self._image_memory_bytes = image_memory_bytes

    # -- public ------------------------------------------------------------------

    def new_id(self) -> int:
        """A fresh job id (store it before :meth:`submit`: results may arrive during the call)."""
        self._next_id += 1
        return self._next_id

    @property
    def busy(self) -> bool:
        """Whether anything is loading, encoding or queued."""
        return self._loading_model or not (self._loads.idle and self._encodes.idle)

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
            self._loads.drop_current()
            self._encodes.drop_current()
        loaded = self.loaded_image(path)
        if loaded is None:
            self._loads.want(LoadJob(job_id, path, prefetch, self._digests))
            return
        self._after_load(job_id, prefetch, loaded, None)

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
        self._loads.drop()
        self._encodes.drop()

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Cancel downloads, drop queued jobs, stop the threads and join them. Safe to call twice."""
        self._cancel.set()
        self.forget_current()
        threads, self._threads = self._threads, []
        return all([stop_thread(t, timeout_ms) for t in threads])

    # -- internals ---------------------------------------------------------------

    def _after_load(self, job_id: int, prefetch: bool, loaded: LoadedImage, pixels: Optional[np.ndarray]) -> None:
        if not prefetch:
            self.imageLoaded.emit(job_id, loaded)
        if self.cache is None:
            return  # no model yet
        emb = self.embedding_in_memory(loaded)
        if emb is not None:
            self.embeddingReady.emit(job_id, EmbeddingResult(loaded.path, emb, "memory", 0.0))
            return
        self._encodes.want(EncodeJob(job_id, loaded.path, prefetch, loaded, pixels))

    def _check_idle(self) -> None:
        if not self.busy:
            self.idle.emit()

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
    @Slot(int, object, object)
    def _on_loaded(self, job_id: int, loaded: LoadedImage, pixels: np.ndarray) -> None:
        self._remember(loaded)
        busy = self._loads.busy
        current = self._loads.settle(loaded.path)
        if current is not None:
            self._after_load(current.job_id, False, loaded, pixels)
        elif busy is not None and busy.job_id == job_id and busy.prefetch:
            self._after_load(job_id, True, loaded, pixels)
        # else: a current request the user has since left; the image stays in memory

    @Slot(int, object, str)
    def _on_load_failed(self, job_id: int, path: Path, message: str) -> None:
        self._forget(path)
        current = self._loads.settle(path)
        self.jobFailed.emit(job_id, path, message)
        if current is not None and current.job_id != job_id:
            self.jobFailed.emit(current.job_id, path, message)

    @Slot(int)
    def _on_load_done(self, job_id: int) -> None:
        self._loads.done(job_id)
        self._check_idle()

    # encoder results
    def _encode_targets(self, job_id: int, path: Path) -> list[int]:
        current = self._encodes.waiting_current(path)
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
        for i in self._encode_targets(job_id, busy.path) if busy is not None else [job_id]:
            self.encodeStarted.emit(i)

    @Slot(int, object)
    def _on_embedding_ready(self, job_id: int, result: EmbeddingResult) -> None:
        targets = self._encode_targets(job_id, result.path)
        self._encodes.settle(result.path)
        for i in targets:
            self.embeddingReady.emit(i, result)

    @Slot(int, object, str)
    def _on_encode_failed(self, job_id: int, path: Path, message: str) -> None:
        targets = self._encode_targets(job_id, path)
        self._encodes.settle(path)
        for i in targets:
            self.jobFailed.emit(i, path, message)

    @Slot(int)
    def _on_encode_done(self, job_id: int) -> None:
        self._encodes.done(job_id)
        self._check_idle()


