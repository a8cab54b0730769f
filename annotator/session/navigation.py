"""Image navigation: the folder's images, which one is current, its pixels and embedding, the prefetch, the model.

:class:`ImageNavigator` is the **one owner of "which image is current"**
(:attr:`~ImageNavigator.current_path`): every other part asks it, and a
result computed for an image is applied only while that image is still
current. It drives an :class:`annotator.workers.encoder.EncoderService`:

* the current image is loaded (``imageShown``) and encoded
  (``embeddingArrived``) under a fresh job id; results under another id (an
  image the user has left) are dropped;
* a moment after the current image is ready, the next one in the direction
  of travel is prefetched into the embedding cache;
* each image's row state (unknown, loading, ready, error) for the list;
* the model: loading it (``modelChanged`` / ``modelFailed``), after which
  ready marks are cleared and the current image is encoded again.

It knows nothing of prompts, annotations or the document: the
:class:`annotator.session.session.Session` clears those before calling
:meth:`ImageNavigator.clear` and :meth:`ImageNavigator.show`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import QObject, Signal

from annotator.session.rows import ImageRow, ImageState
from annotator.workers.base import make_timer
from annotator.workers.encoder import EncoderService
from annotator.workers.messages import EmbeddingResult, LoadedImage, ModelFailure, ModelInfo, ModelRequest

log = logging.getLogger(__name__)

#: The next image's prefetch starts this long after the current one is ready (ms), and not while a click is
#: being answered: on a 2-core CPU, loading and encoding a 12 MP photo alongside the decoder made the first
#: mask on a just-opened image 2-3x slower. Users take longer than this to aim their first click.
PREFETCH_DELAY_MS = 300
#: How often the image list looks for embeddings another process (``sam-annotator encode``) wrote meanwhile.
#: The look-up runs on the loader thread, for the images not marked ready only (an SQLite query and a stat
#: each); the GUI thread only starts it. The encoder also checks the disk cache before every encode.
READY_REFRESH_MS = 20_000
#: ...but a user clicking without pause does not hold the prefetch back for more than this many delays.
PREFETCH_MAX_DEFERRALS = 5


class ImageNavigator(QObject):
    """The image list, the current image and its embedding, and the model. See the module notes.

    Parameters
    ----------
    encoder:
        The loading and encoding service (its threads are shut down by the owner).
    clicks_busy:
        ``() -> bool``: a click is being answered (the decoder is busy); the
        prefetch waits for it (at most :data:`PREFETCH_MAX_DEFERRALS` delays).
    annotation_count:
        ``(path) -> int``: the annotations of an image, for its list row.
    progress:
        ``(path) -> str``: the user's state of an image (``"todo"``, ``"done"``, ``"skipped"``), for its list row.
    prefetch_delay_ms:
        Default :data:`PREFETCH_DELAY_MS` (read at construction).
    """

    imageRowChanged = Signal(int)  # a row of the image list changed
    imageListChanged = Signal()  # images joined or left the list of the open folder (currentIndexChanged follows)
    currentIndexChanged = Signal(int)
    imageShown = Signal(object)  # the current image's levels (tuple of QImage, full size first), or None
    embeddingArrived = Signal(object)  # EmbeddingResult of the current image
    encoderStatus = Signal(str, float)  # "" | "model" | "loading" | "encoding", perf_counter() at its start
    statusMessage = Signal(str, int)
    modelChanged = Signal(object)  # ModelInfo (emitted before the current image is encoded again)
    modelFailed = Signal(object)  # ModelFailure
    downloadProgress = Signal(object, object)  # done bytes, total bytes or None

    def __init__(
        self,
        encoder: EncoderService,
        *,
        clicks_busy: Optional[Callable[[], bool]] = None,
        annotation_count: Optional[Callable[[Path], int]] = None,
        progress: Optional[Callable[[Path], str]] = None,
        prefetch_delay_ms: Optional[int] = None,
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self.encoder = encoder
        self._clicks_busy = clicks_busy or (lambda: False)
        self._annotation_count = annotation_count or (lambda path: 0)
        self._progress = progress or (lambda path: "todo")
        self.model_info: Optional[ModelInfo] = None
        self._model_t0: Optional[float] = None  # perf_counter() when a model load began

        self.folder: Optional[Path] = None
        self.paths: List[Path] = []
        self._row_state: Dict[Path, Tuple[str, str]] = {}
        self._scan_id = 0  # of the latest look for images already in the disk cache
        self._scan_out = False  # that look has not answered yet

        self.index = -1
        self.loaded: Optional[LoadedImage] = None
        self.embedding = None  # sam_core.ImageEmbedding of the current image
        self._encode_id = 0
        self._direction = 1

        self._prefetch_deferrals = 0
        delay = PREFETCH_DELAY_MS if prefetch_delay_ms is None else prefetch_delay_ms
        self._prefetch_timer = make_timer(self, delay, single_shot=True)
        self._prefetch_timer.timeout.connect(self._prefetch)
        self._ready_timer = make_timer(self, READY_REFRESH_MS)
        self._ready_timer.timeout.connect(self.refresh_ready)
        self._stopped = False

        encoder.modelLoaded.connect(self._on_model_loaded)
        encoder.modelFailed.connect(self._on_model_failed)
        encoder.downloadProgress.connect(self.downloadProgress)
        encoder.imageLoaded.connect(self._on_image_loaded)
        encoder.cachedFound.connect(self._on_cached_found)
        encoder.encodeStarted.connect(self._on_encode_started)
        encoder.embeddingReady.connect(self._on_embedding_ready)
        encoder.jobFailed.connect(self._on_job_failed)

    # -- the model -----------------------------------------------------------------------

    def load_model(self, request: ModelRequest) -> None:
        """Load a model in the background (``modelChanged`` or ``modelFailed`` follows)."""
        self._model_t0 = time.perf_counter()
        self.encoderStatus.emit("model", self._model_t0)
        self.encoder.load_model(request)

    def use_model(self, info: ModelInfo) -> None:
        """Use a model that is already loaded (tests; a model shared between windows)."""
        self._model_t0 = time.perf_counter()
        self.encoderStatus.emit("model", self._model_t0)
        self.encoder.use_model(info)

    def cancel_download(self) -> None:
        self.encoder.cancel_download()

    def _on_model_loaded(self, info: ModelInfo) -> None:
        torch_version = getattr(sys.modules.get("torch"), "__version__", "?")  # (imported by now, not here)
        log.info("model loaded: %s, checkpoint %s, torch %s%s", info.label, info.checkpoint, torch_version,
                 f" ({info.notice})" if info.notice else "")
        self._model_t0 = None
        self.model_info = info
        self.embedding = None  # embeddings of another model must not be decoded by this one...
        self.encoderStatus.emit("", 0.0)
        self.modelChanged.emit(info)
        if info.notice:
            self.statusMessage.emit(info.notice, 0)
        for path, (state, _) in list(self._row_state.items()):  # ...nor shown as ready
            if state == ImageState.READY:
                del self._row_state[path]
                self.emit_row(path)
        self._scan_cached()
        if self.index >= 0:
            self._request_current()

    def _on_model_failed(self, failure: ModelFailure) -> None:
        log.warning("model not loaded (%s): %s", failure.kind, failure.message)
        self._model_t0 = None
        self.encoderStatus.emit("", 0.0)
        self.modelFailed.emit(failure)

    # -- the folder and the current image --------------------------------------------------

    @property
    def current_path(self) -> Optional[Path]:
        """The image on show (the one owner of this fact), or ``None``."""
        return self.paths[self.index] if 0 <= self.index < len(self.paths) else None

    def set_folder(self, folder: Optional[Path], paths: Sequence[Path]) -> None:
        """A new list of images; none is current yet (call :meth:`show`). Emits nothing."""
        self.folder = folder
        self.paths = list(paths)
        self._row_state = {}
        self.index = -1
        self.encoder.forget_current()
        self._scan_cached()
        if self.paths and not self._stopped:
            self._ready_timer.start()
        else:
            self._ready_timer.stop()

    def add_paths(self, paths: Sequence[Path]) -> List[Path]:
        """Images that appeared in the open folder (an import wrote them): listed in :func:`list_images`'s order.

        The image on show stays current (its index may change). Emits
        ``imageListChanged`` then ``currentIndexChanged`` when any was added;
        returns those added.
        """
        from annotator.data.imageio import natural_key

        root = self.folder
        key = (lambda p: natural_key(p.relative_to(root).as_posix()) if root is not None and p.is_relative_to(root)
               else natural_key(p.as_posix()))
        current = self.current_path
        listed = set(self.paths)
        added = [p for p in dict.fromkeys(Path(p) for p in paths) if p not in listed]
        if added:  # each before the first image that sorts after it (a list in natural order stays so): one merge
            new = sorted(((key(p), i, p) for i, p in enumerate(added)), key=lambda t: (t[0], t[1]))
            merged, j = [], 0
            for p in self.paths:
                k = key(p)
                while j < len(new) and new[j][0] < k:
                    merged.append(new[j][2])
                    j += 1
                merged.append(p)
            merged.extend(t[2] for t in new[j:])
            self.paths[:] = merged
        if added:
            self._list_changed(current)
            if not self._stopped and not self._ready_timer.isActive():
                self._ready_timer.start()
        return added

    def remove_paths(self, paths: Sequence[Path]) -> List[Path]:
        """Images that left the open folder (an undone import removed them); returns those removed.

        The caller moves off the image on show first when it is one of them
        (:class:`annotator.session.image_listing.FolderImages`); if it did not,
        nothing is current afterwards. Emits ``imageListChanged`` then
        ``currentIndexChanged`` when any was removed.
        """
        gone = {Path(p) for p in paths} & set(self.paths)
        if not gone:
            return []
        current = self.current_path
        if current in gone:
            self.clear()
            current = None
        self.paths = [p for p in self.paths if p not in gone]
        for path in gone:
            self._row_state.pop(path, None)
        self._list_changed(current)
        return sorted(gone)

    def _list_changed(self, current: Optional[Path]) -> None:
        self.index = self.paths.index(current) if current is not None else -1
        self.imageListChanged.emit()
        self.currentIndexChanged.emit(self.index)

    def image_count(self) -> int:
        return len(self.paths)

    def unavailable(self) -> str:
        """Why there are no pixels on show to work on ("" when there are): no folder, an image that cannot be
        used (the reason it was refused), or one still loading. For actions to say instead of failing silently."""
        path = self.current_path
        if path is None:
            return "Open a folder of images first"
        if self.loaded is not None and self.loaded.path == path:
            return ""
        return self.current_error() or f"{path.name} is still loading"

    def current_error(self) -> str:
        """``"Cannot use <name>: <reason>"`` when the image on show was refused (empty, truncated...), else ``""``."""
        path = self.current_path
        state, message = self._row_state.get(path, (ImageState.UNKNOWN, "")) if path is not None else ("", "")
        return f"Cannot use {path.name}: {message}" if state == ImageState.ERROR else ""

    def image_row(self, i: int) -> ImageRow:
        path = self.paths[i]
        state, message = self._row_state.get(path, (ImageState.UNKNOWN, ""))
        return ImageRow(path, path.name, self._annotation_count(path), state, message, self._progress(path))

    def can_show(self, index: int) -> bool:
        """``index`` is an image of the list, other than the current one."""
        return 0 <= index < len(self.paths) and index != self.index

    def clear(self) -> None:
        """No image on show (the user is leaving it): results still on their way for it will be dropped."""
        self._prefetch_timer.stop()
        self._encode_id = 0
        self.loaded = None
        self.embedding = None
        self.imageShown.emit(None)
        self.encoderStatus.emit("", 0.0)

    def show(self, index: int) -> None:
        """Make image ``index`` current and ask for its pixels and embedding (call :meth:`clear` first)."""
        if not 0 <= index < len(self.paths):
            raise IndexError(f"no image {index} in a list of {len(self.paths)}")
        if self.index >= 0:
            self._direction = 1 if index > self.index else -1
        self.index = index
        self.currentIndexChanged.emit(index)
        self._request_current()

    def stop(self) -> None:
        """Shutting down: no more prefetches."""
        self._stopped = True
        self._prefetch_timer.stop()
        self._ready_timer.stop()

    @property
    def encoder_idle(self) -> bool:
        """Nothing is being loaded or encoded, and no prefetch is waiting to start."""
        return not self.encoder.busy and not self._prefetch_timer.isActive()

    @property
    def prefetch_pending(self) -> bool:
        """The next image's prefetch is waiting for its delay."""
        return self._prefetch_timer.isActive()

    def _request_current(self) -> None:
        path = self.current_path
        if path is None:
            return
        self._encode_id = self.encoder.new_id()
        self._set_row_state(path, ImageState.LOADING)
        self.encoderStatus.emit("loading", time.perf_counter())
        self.encoder.submit(self._encode_id, path)

    def _schedule_prefetch(self, deferred: bool = False) -> None:
        self._prefetch_deferrals = self._prefetch_deferrals + 1 if deferred else 0
        if not self._stopped:
            self._prefetch_timer.start()

    def _prefetch(self) -> None:
        if self._clicks_busy() and self._prefetch_deferrals < PREFETCH_MAX_DEFERRALS:
            self._schedule_prefetch(deferred=True)  # a click is being answered: it goes first
            return
        i = self.index + self._direction
        if 0 <= i < len(self.paths):
            path = self.paths[i]
            if self._row_state.get(path, ("", ""))[0] != ImageState.ERROR:
                self.encoder.submit(self.encoder.new_id(), path, prefetch=True)

    # -- encoder results ---------------------------------------------------------------------

    def _on_image_loaded(self, job_id: int, loaded: LoadedImage) -> None:
        if job_id != self._encode_id or loaded.path != self.current_path:
            return
        first = self.loaded is None
        self.loaded = loaded
        if first:
            self.imageShown.emit(loaded.levels)
        if self.model_info is None:  # shown; encoding waits for the model
            self._set_row_state(loaded.path, ImageState.UNKNOWN)
            loading = self._model_t0 is not None
            self.encoderStatus.emit("model" if loading else "", self._model_t0 or 0.0)

    def _on_encode_started(self, job_id: int) -> None:
        if job_id == self._encode_id:
            self.encoderStatus.emit("encoding", time.perf_counter())

    def _on_embedding_ready(self, job_id: int, result: EmbeddingResult) -> None:
        self._set_row_state(result.path, ImageState.READY)
        if job_id != self._encode_id or result.path != self.current_path:
            return  # a prefetch, or an image the user has left
        self.embedding = result.embedding
        self.encoderStatus.emit("", 0.0)
        if result.source == "encoded":
            self.statusMessage.emit(f"Encoded in {result.seconds:.2f} s", 3000)
        self.embeddingArrived.emit(result)
        self._schedule_prefetch()

    def _on_job_failed(self, job_id: int, path: Path, message: str) -> None:
        self._set_row_state(path, ImageState.ERROR, message)
        if job_id == self._encode_id and path == self.current_path:
            self.encoderStatus.emit("", 0.0)
            self.statusMessage.emit(f"Cannot use {path.name}: {message}", 0)
            self._schedule_prefetch()

    # -- rows --------------------------------------------------------------------------------

    def _scan_cached(self, paths: Optional[Sequence[Path]] = None) -> None:
        """Look (in the background) for this folder's images (or ``paths``) whose embedding is already on disk.

        Each call supersedes the looks before it: their answers are dropped.
        """
        self._scan_id += 1
        self._scan_out = False
        if self.model_info is not None:
            wanted = self.paths if paths is None else list(paths)
            self._scan_out = self.encoder.scan_cached(self._scan_id, wanted)

    def refresh_ready(self) -> None:
        """Look again for embeddings of the images not marked ready (written by a parallel ``sam-annotator encode``).

        Nothing is started while the last look has not answered: on a slow
        disk a look may take longer than the refresh period, and superseding
        it every time would drop every answer.
        """
        if self._scan_out or self._stopped:
            return
        waiting = [p for p in self.paths if self._row_state.get(p, ("",))[0] in ("", ImageState.UNKNOWN)]
        if waiting:
            self._scan_cached(waiting)

    def _on_cached_found(self, scan_id: int, paths: List[Path]) -> None:
        if scan_id != self._scan_id:
            return  # another folder or model since
        self._scan_out = False
        for path in paths:
            if self._row_state.get(path, ("",))[0] in ("", ImageState.UNKNOWN):
                self._set_row_state(path, ImageState.READY)

    def _set_row_state(self, path: Path, state: str, message: str = "") -> None:
        if self._row_state.get(path) == (state, message):
            return
        if state == ImageState.LOADING and self._row_state.get(path, ("",))[0] == ImageState.READY:
            return  # still ready: the embedding is in the cache
        self._row_state[path] = (state, message)
        self.emit_row(path)

    def emit_row(self, path: Optional[Path]) -> None:
        """The row of ``path`` changed (e.g. its annotation count); ``None``: every row."""
        if path is None:
            for i in range(len(self.paths)):
                self.imageRowChanged.emit(i)
            return
        try:
            self.imageRowChanged.emit(self.paths.index(path))
        except ValueError:
            pass
