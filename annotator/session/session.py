"""The annotation session: everything the window shows, without any widget.

A :class:`Session` owns the document (:class:`annotator.data.document.Dataset`),
the folder's image list, the current image, its prompt and candidates, the
undo stack, the background workers and the autosave. Widgets call its public
methods and listen to its signals; the main window only wires the two.

Flow of one click::

    Canvas.pointClicked(x, y, label) -> Session.add_point
      -> PromptCommand pushed (undoable) -> _apply_prompt -> promptChanged
      -> DecodeJob(id, embedding, prompt snapshot) -> DecoderService (latest wins)
      -> decoded(id, result); a stale id is dropped
      -> candidatesChanged(rows, selected) + candidateOverlayChanged(overlay)

Before the image's embedding exists (still encoding), prompts are kept and
decoded as soon as it arrives. Image switches give every request a new id, so
nothing computed for one image is ever shown on another.

Segment everything and the review of its proposals live in
:class:`annotator.session.everything.EverythingController` (``session.everything``);
while a review is open, clicks, boxes, Enter and Esc go to it instead of
SAM's prompt. File → Export runs on its own thread (:meth:`Session.start_export`).
Preferences reach the session through :meth:`set_autosave` and :meth:`set_opacity`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QUndoStack

from annotator import render
from annotator.session.annotation_layer import AnnotationLayer
from annotator.data.prompts import EMPTY, PromptState, clamp_box, inside
from annotator.session.rows import AnnotationRow, CandidateRow, CategoryRow, Color, ImageRow, ImageState
from annotator.workers.jobs import JobService
from annotator.session.everything import EverythingController
from annotator.session.undo import (
    AcceptCommand,
    AddCategoryCommand,
    DeleteAnnotationCommand,
    DeleteCategoryCommand,
    EditCategoryCommand,
    PromptCommand,
    SetAnnotationCategoryCommand,
)
from annotator.workers.decoder import DecoderService
from annotator.workers.messages import DecodeJob, DecodeResult, EmbeddingResult, LoadedImage, ModelFailure, ModelInfo, ModelRequest
from annotator.workers.encoder import EncoderService, make_timer

log = logging.getLogger(__name__)

#: Autosave delay after a category edit (ms). Accepts, deletions and their undo/redo save at once instead.
AUTOSAVE_MS = 250
#: The next image's prefetch starts this long after the current one is ready (ms), and not while a click is
#: being answered: on a 2-core CPU, loading and encoding a 12 MP photo alongside the decoder made the first
#: mask on a just-opened image 2-3x slower. Users take longer than this to aim their first click.
PREFETCH_DELAY_MS = 300
#: ...but a user clicking without pause does not hold the prefetch back for more than this many delays.
PREFETCH_MAX_DEFERRALS = 5
#: How many user actions Ctrl+Z can go back.
UNDO_LIMIT = 500
ANNOTATIONS_FILENAME = "annotations.json"


def default_categories() -> List[Tuple[str, Optional[Color]]]:
    """``(name, colour)`` pairs from ``resources/default_categories.json`` (``object`` if it is missing)."""
    from annotator.data.appdata import resource_text

    text = resource_text("default_categories.json")
    if text is None:
        return [("object", None)]
    entries = json.loads(text)["categories"]
    return [(e["name"], tuple(e["color"]) if e.get("color") else None) for e in entries]


@dataclass(frozen=True, eq=False)
class _PendingAccept:
    """An accept whose full-resolution mask is being computed (task ``task_id`` on the decoder thread)."""

    task_id: int
    path: Path
    width: int
    height: int
    prompt: PromptState
    score: float
    category_id: int


def _after_accept(method):
    """A user action that waits, in order, while an accept is being finished (a few ms to a few tens)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._pending_accept is not None:
            self._deferred.append((method, args, kwargs))
            return None
        return method(self, *args, **kwargs)

    return wrapper


def make_annotation(dataset, image_id: int, category_id: int, done: render.FinishedMask, **extra):
    """``dataset.make_annotation`` for an accepted mask, with the RLE computed off the GUI thread.

    Passing ``rle=`` saves encoding a 12 MP mask a second time on the GUI thread.
    """
    return dataset.make_annotation(image_id, category_id, rle=done.rle, **extra)


class Session(QObject):
    """State and behaviour of one annotation window. See the module notes."""

    folderChanged = Signal()  # a new folder (image list, document) is open
    imageRowChanged = Signal(int)  # a row of the image list changed
    currentIndexChanged = Signal(int)
    imageShown = Signal(object)  # the current image's levels (tuple of QImage, full size first), or None
    promptChanged = Signal(object)  # PromptState
    candidatesChanged = Signal(object, int)  # list[CandidateRow] (empty: none), selected index
    candidateOverlayChanged = Signal(object)  # QImage or None
    annotationsChanged = Signal()  # rows or overlays of the current image changed
    categoriesChanged = Signal()
    currentCategoryChanged = Signal(int)
    statusMessage = Signal(str, int)  # text, timeout in ms (0: until replaced)
    encoderStatus = Signal(str, float)  # "" | "model" | "loading" | "encoding", perf_counter() at its start
    modelChanged = Signal(object)  # ModelInfo
    modelFailed = Signal(object)  # ModelFailure
    downloadProgress = Signal(object, object)  # done bytes, total bytes or None
    dirtyChanged = Signal(bool)
    saveFailed = Signal(str)
    exportProgress = Signal(int, int, str)  # done, total (0: unknown), text
    exportRunning = Signal(bool)
    exportFinished = Signal(object, object)  # Path written, list of warnings
    exportFailed = Signal(str)  # message for the user

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self.encoder = EncoderService(self)
        self.decoder = DecoderService(self)
        self.model_info: Optional[ModelInfo] = None
        self._model_t0: Optional[float] = None  # perf_counter() when a model load began

        self.dataset = None  # annotator.data.document.Dataset
        self.folder: Optional[Path] = None
        self.paths: List[Path] = []
        self._row_state: Dict[Path, Tuple[str, str]] = {}
        self._scan_id = 0  # of the latest look for images already in the disk cache

        self.index = -1
        self.loaded: Optional[LoadedImage] = None
        self.embedding = None
        self._encode_id = 0
        self._direction = 1

        self.prompt: PromptState = EMPTY
        self.result: Optional[DecodeResult] = None
        self.selected = 0
        self._decode_id = 0
        self._selection_memo: "weakref.WeakKeyDictionary[PromptState, int]" = weakref.WeakKeyDictionary()
        self._accept_when_ready = False
        self.view_scale = 1.0
        self.last_click_latency: Optional[float] = None  # seconds, user action -> overlay ready
        self._t_action: Optional[float] = None  # perf_counter() of the user action being answered

        self.category_id: Optional[int] = None
        self.layer = AnnotationLayer(self.decoder, self)
        self.layer.changed.connect(self.annotationsChanged)
        self._pending_accept: Optional[_PendingAccept] = None
        self._deferred: List[tuple] = []  # user actions made while an accept was being finished

        self._prefetch_deferrals = 0
        self._prefetch_timer = make_timer(self, PREFETCH_DELAY_MS, single_shot=True)
        self._prefetch_timer.timeout.connect(self._prefetch)
        self._save_timer = make_timer(self, AUTOSAVE_MS, single_shot=True)
        self._save_timer.timeout.connect(self.save)
        self._closed = False
        #: Save after every change (else on Ctrl+S, image or folder change and quit).
        self.autosave = True
        #: Fill opacity of candidate, annotation and selected-proposal overlays (0..1).
        self.opacity = render.DEFAULT_OPACITY

        #: Segment everything and its review (``everything.options`` sets the generator's parameters).
        self.everything = EverythingController(self)
        self.exporter = JobService("sam-export", self)
        self.exporter.progress.connect(lambda _id, done, total, text: self.exportProgress.emit(done, total, text))
        self.exporter.finished.connect(self._on_export_finished)
        self.exporter.failed.connect(self._on_export_failed)
        self.exporter.cancelled.connect(self._on_export_cancelled)
        self._export_path: Optional[Path] = None

        enc = self.encoder
        enc.modelLoaded.connect(self._on_model_loaded)
        enc.modelFailed.connect(self._on_model_failed)
        enc.downloadProgress.connect(self.downloadProgress)
        enc.imageLoaded.connect(self._on_image_loaded)
        enc.cachedFound.connect(self._on_cached_found)
        enc.encodeStarted.connect(self._on_encode_started)
        enc.embeddingReady.connect(self._on_embedding_ready)
        enc.jobFailed.connect(self._on_job_failed)
        self.decoder.decoded.connect(self._on_decoded)
        self.decoder.failed.connect(self._on_decode_failed)
        self.decoder.taskDone.connect(self._on_task_done)
        self.decoder.taskFailed.connect(self._on_task_failed)

    # =====================================================================================
    # model
    # =====================================================================================

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
        self._model_t0 = None
        self.everything.stop()
        self.model_info = info
        self.decoder.set_model(info.model)
        self.encoderStatus.emit("", 0.0)
        self.modelChanged.emit(info)
        if info.notice:
            self.statusMessage.emit(info.notice, 0)
        # Embeddings of another model must not be decoded by this one, nor shown as ready.
        for path, (state, _) in list(self._row_state.items()):
            if state == ImageState.READY:
                del self._row_state[path]
                self._emit_row(path)
        self._scan_cached()
        self.embedding = None
        self._decode_id += 1
        if self.result is not None:
            self._show_result(None)
        if self.index >= 0:
            self._request_current()

    def _on_model_failed(self, failure: ModelFailure) -> None:
        self._model_t0 = None
        self.encoderStatus.emit("", 0.0)
        self.modelFailed.emit(failure)

    # =====================================================================================
    # folders and images
    # =====================================================================================

    def open_folder(self, folder: Path, output: Optional[Path] = None, *, replace_bad_file: bool = False) -> None:
        """Open ``folder``'s images with the working file ``output`` (default ``folder/annotations.json``).

        Raises
        ------
        annotator.data.document.DatasetError
            The working file exists but cannot be used. Nothing changes (the
            current folder stays open) and the file is not touched. Call again
            with ``replace_bad_file=True`` to start an empty document there
            (its first save keeps a backup of the bad file), or with another
            ``output``.
        annotator.data.imageio.ImageLoadError, OSError
            The folder cannot be listed.
        """
        from annotator.data.document import Dataset
        from annotator.data.imageio import list_images

        folder = Path(folder)
        output = Path(output) if output is not None else folder / ANNOTATIONS_FILENAME
        paths = list_images(folder)
        dataset = Dataset(output, image_dir=folder) if replace_bad_file else Dataset.open(output, image_dir=folder)
        self.flush()
        if not dataset.categories:
            dataset.add_categories(default_categories())
            dataset.saved_revision = dataset.revision  # defaults alone are not worth writing a file for
        self.undo_stack.clear()
        self.dataset = dataset
        self.folder = folder
        self.paths = paths
        self._row_state = {}
        self.layer.hidden.clear()
        self.layer.show_image(None)
        self.category_id = min(dataset.categories) if dataset.categories else None
        self.index = -1
        self.encoder.forget_current()
        self.folderChanged.emit()
        self.categoriesChanged.emit()
        if self.category_id is not None:
            self.currentCategoryChanged.emit(self.category_id)
        self._emit_dirty()
        problems = dataset.check_image_sizes() if dataset.images else []
        if problems:
            self.statusMessage.emit(f"{len(problems)} recorded image(s) differ from their files: {problems[0]}", 0)
        self._scan_cached()
        if paths:
            self.go_to(0)
        else:
            self._clear_image()
            self.statusMessage.emit(f"No images in {folder}", 0)

    def image_count(self) -> int:
        return len(self.paths)

    def _scan_cached(self) -> None:
        """Look (in the background) for this folder's images whose embedding is already on disk."""
        self._scan_id += 1
        if self.model_info is not None:
            self.encoder.scan_cached(self._scan_id, self.paths)

    def _on_cached_found(self, scan_id: int, paths: List[Path]) -> None:
        if scan_id != self._scan_id:
            return  # another folder or model since
        for path in paths:
            if path not in self._row_state:
                self._set_row_state(path, ImageState.READY)

    def image_row(self, i: int) -> ImageRow:
        path = self.paths[i]
        state, message = self._row_state.get(path, (ImageState.UNKNOWN, ""))
        return ImageRow(path, path.name, self._annotation_count(path), state, message)

    @_after_accept
    def next_image(self) -> None:
        if self.index + 1 < len(self.paths):
            self._direction = 1
            self.go_to(self.index + 1)

    @_after_accept
    def previous_image(self) -> None:
        if self.index > 0:
            self._direction = -1
            self.go_to(self.index - 1)

    @_after_accept
    def go_to(self, index: int) -> None:
        """Show image ``index``: prompts are cleared, the work is saved, the image is loaded and encoded."""
        if not 0 <= index < len(self.paths) or index == self.index:
            return
        if self.index >= 0:
            self._direction = 1 if index > self.index else -1
        self.flush()
        self._clear_image()
        self.index = index
        self.layer.show_image(self.current_path)
        self.currentIndexChanged.emit(index)
        self._request_current()

    @property
    def current_path(self) -> Optional[Path]:
        return self.paths[self.index] if 0 <= self.index < len(self.paths) else None

    def _clear_image(self) -> None:
        self._prefetch_timer.stop()
        self.everything.stop()
        self._encode_id = 0
        self._decode_id += 1
        self.decoder.cancel()
        self.loaded = None
        self.embedding = None
        self.prompt = EMPTY
        self.result = None
        self._accept_when_ready = False
        self._selection_memo = weakref.WeakKeyDictionary()
        self.imageShown.emit(None)
        self.promptChanged.emit(EMPTY)
        self._emit_candidates()
        self.annotationsChanged.emit()
        self.encoderStatus.emit("", 0.0)

    def _request_current(self) -> None:
        path = self.current_path
        if path is None:
            return
        self._encode_id = self.encoder.new_id()
        self._set_row_state(path, ImageState.LOADING)
        self.encoderStatus.emit("loading", time.perf_counter())
        self.encoder.submit(self._encode_id, path)

    @property
    def encoder_idle(self) -> bool:
        """Nothing is being loaded or encoded, and no prefetch is waiting to start."""
        return not self.encoder.busy and not self._prefetch_timer.isActive()

    def _schedule_prefetch(self, deferred: bool = False) -> None:
        self._prefetch_deferrals = self._prefetch_deferrals + 1 if deferred else 0
        if not self._closed:
            self._prefetch_timer.start()

    def _prefetch(self) -> None:
        if self.decoder.busy and self._prefetch_deferrals < PREFETCH_MAX_DEFERRALS:
            self._schedule_prefetch(deferred=True)  # a click is being answered: it goes first
            return
        i = self.index + self._direction
        if 0 <= i < len(self.paths):
            path = self.paths[i]
            if self._row_state.get(path, ("", ""))[0] != ImageState.ERROR:
                self.encoder.submit(self.encoder.new_id(), path, prefetch=True)

    def _on_image_loaded(self, job_id: int, loaded: LoadedImage) -> None:
        if job_id != self._encode_id or loaded.path != self.current_path:
            return
        first = self.loaded is None
        self.loaded = loaded
        if first:
            self.imageShown.emit(loaded.levels)
            self.annotationsChanged.emit()
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
        if not self.prompt.empty and (self.result is None or self.result.prompt is not self.prompt):
            self._request_decode(time.perf_counter())
        self._schedule_prefetch()

    def _on_job_failed(self, job_id: int, path: Path, message: str) -> None:
        self._set_row_state(path, ImageState.ERROR, message)
        if job_id == self._encode_id and path == self.current_path:
            self.encoderStatus.emit("", 0.0)
            self.statusMessage.emit(f"Cannot use {path.name}: {message}", 0)
            self._schedule_prefetch()

    def _set_row_state(self, path: Path, state: str, message: str = "") -> None:
        if self._row_state.get(path) == (state, message):
            return
        if state == ImageState.LOADING and self._row_state.get(path, ("",))[0] == ImageState.READY:
            return  # still ready: the embedding is in the cache
        self._row_state[path] = (state, message)
        self._emit_row(path)

    def _emit_row(self, path: Optional[Path]) -> None:
        if path is None:
            return
        try:
            self.imageRowChanged.emit(self.paths.index(path))
        except ValueError:
            pass

    # =====================================================================================
    # prompts and candidates
    # =====================================================================================

    @_after_accept
    def add_point(self, x: float, y: float, label: int) -> None:
        """Add a point (image coordinates, x then y; label 1 foreground / 0 background).

        While proposals are being reviewed a click does not prompt SAM: label 1
        toggles the proposal under the point, label 0 unselects it.
        """
        if self.current_path is None or self.loaded is None:
            return
        if not inside(x, y, self.loaded.width, self.loaded.height):
            return
        if self.everything.reviewing:
            self.everything.toggle_at(x, y, None if label == 1 else False)
            return
        t0 = time.perf_counter()
        after = self.prompt.with_point(x, y, label, self._refine_from())
        kind = "foreground" if label == 1 else "background"
        self._push_prompt(after, f"Add {kind} point", t0)

    @_after_accept
    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Set the box (any corner order; clamped to the image; too thin a box is ignored)."""
        if self.loaded is None:
            return
        box = clamp_box((x0, y0, x1, y1), self.loaded.width, self.loaded.height)
        if box is None:
            return
        if self.everything.reviewing:  # select the proposals inside
            self.everything.select_inside(box)
            return
        t0 = time.perf_counter()
        self._push_prompt(self.prompt.with_box(box, self._refine_from()), "Draw box", t0)

    @_after_accept
    def clear_prompts(self) -> None:
        """Esc: forget the current points and box (undoable); cancels segment everything, or leaves its review."""
        if self.everything.running:
            self.everything.cancel()
            return
        if self.everything.reviewing:
            self.everything.reject_all()
            return
        if not self.prompt.empty:
            self._push_prompt(EMPTY, "Clear prompts", time.perf_counter())

    def _refine_from(self):
        """Low-res logits of the candidate on display, if it belongs to the current prompt."""
        if self.result is not None and self.result.prompt is self.prompt and not self.prompt.empty:
            return self.result.candidates.low_res_logits[self.selected]
        return None

    def _push_prompt(self, after: PromptState, text: str, t0: float) -> None:
        self._accept_when_ready = False
        self._t_action = t0
        self.undo_stack.push(PromptCommand(self, self.current_path, self.prompt, after, text))

    def _apply_prompt(self, state: PromptState) -> None:
        """Make ``state`` the prompt (undo commands call this) and decode it.

        Going back to a prompt (undo) ends a review of proposals.
        """
        if not state.empty:
            self.everything.leave()
        self.prompt = state
        self.promptChanged.emit(state)
        if state.empty:
            self._decode_id += 1
            self.decoder.cancel()
            self._show_result(None)
            return
        t0 = self._t_action or time.perf_counter()
        self._t_action = None
        self._request_decode(t0)

    def _request_decode(self, t0: float) -> None:
        if self.embedding is None or self.loaded is None or self.prompt.empty or self.model_info is None:
            if not self.prompt.empty and self.loaded is not None:
                self.statusMessage.emit("The mask will appear when the image is encoded…", 2000)
            return
        self._decode_id += 1
        size = render.overlay_size(self.loaded.height, self.loaded.width, self.view_scale)
        self.decoder.submit(
            DecodeJob(self._decode_id, self.embedding, self.prompt, size, self.loaded.small, self.category_color(), t0,
                      self.opacity)
        )

    def _on_decoded(self, job_id: int, result: DecodeResult) -> None:
        if job_id != self._decode_id or result.prompt is not self.prompt:
            return
        selected = self._selection_memo.get(result.prompt, 0)
        self._show_result(result, min(selected, len(result.overlays) - 1))
        self.last_click_latency = time.perf_counter() - result.t0
        if self._accept_when_ready:
            self._accept_when_ready = False
            self.accept()

    def _on_decode_failed(self, job_id: int, message: str) -> None:
        if job_id == self._decode_id:
            self._accept_when_ready = False
            self.statusMessage.emit(f"SAM could not use this prompt: {message}", 5000)

    def _show_result(self, result: Optional[DecodeResult], selected: int = 0) -> None:
        self.result = result
        self.selected = selected
        self._emit_candidates()

    def _emit_candidates(self) -> None:
        r = self.result
        if r is None:
            self.candidatesChanged.emit([], -1)
            self.candidateOverlayChanged.emit(None)
            return
        self.candidatesChanged.emit(self.candidate_rows(), self.selected)
        self.candidateOverlayChanged.emit(r.overlays[self.selected])

    def candidate_rows(self) -> List[CandidateRow]:
        r = self.result
        if r is None:
            return []
        scores = r.candidates.scores
        return [CandidateRow(i + 1, float(scores[i]), r.areas[i], r.thumbs[i]) for i in range(len(r.overlays))]

    @_after_accept
    def select_candidate(self, index: int) -> None:
        """Show candidate ``index`` (0-based); the next prompt change refines from it."""
        r = self.result
        if r is None or not 0 <= index < len(r.overlays) or index == self.selected:
            return
        self.selected = index
        self._selection_memo[r.prompt] = index
        self.candidatesChanged.emit(self.candidate_rows(), index)
        self.candidateOverlayChanged.emit(r.overlays[index])

    @_after_accept
    def cycle_candidate(self, step: int) -> None:
        r = self.result
        if r is not None and len(r.overlays):
            self.select_candidate((self.selected + step) % len(r.overlays))

    def set_view_scale(self, scale: float) -> None:
        """The canvas zoomed: render the candidates again when the overlay would look soft."""
        self.view_scale = scale
        r = self.result
        if r is None or self.loaded is None:
            return
        want = render.overlay_size(self.loaded.height, self.loaded.width, scale)
        have = r.previews[0].shape
        if want[0] > have[0] * 1.3:
            self._request_decode(time.perf_counter())

    # =====================================================================================
    # accepting and annotations
    # =====================================================================================

    @_after_accept
    def accept(self) -> None:
        """Accept the candidate on display as an annotation in the current category; prompts clear.

        The full-resolution mask is computed on the decoder thread (tens of ms
        for a 12 MP photo). Until the annotation is in the document and saved,
        further user actions wait in order (see :func:`_after_accept`).
        """
        if self.dataset is None or self.loaded is None:
            return
        if self.everything.reviewing:
            self.everything.accept_selected()
            return
        if self.prompt.empty:
            self.statusMessage.emit("Nothing to accept: click on an object first", 3000)
            return
        if self.result is None or self.result.prompt is not self.prompt:
            self._accept_when_ready = True
            self.statusMessage.emit("Accepting as soon as the mask is ready…", 2000)
            return
        category = self.dataset.categories.get(self.category_id) if self.category_id is not None else None
        if category is None:
            self.statusMessage.emit("Add a category first (Categories panel)", 5000)
            return
        r, i = self.result, self.selected
        task = self.decoder.run_task(render.finish_candidate, r.candidates, i, category.color, self.opacity,
                                     urgent=True)
        self._pending_accept = _PendingAccept(
            task, self.loaded.path, self.loaded.width, self.loaded.height, self.prompt,
            float(r.candidates.scores[i]), category.id,
        )

    def _finish_accept(self, pending: "_PendingAccept", done: render.FinishedMask) -> None:
        from annotator.data.document import DatasetError

        category = self.dataset.categories.get(pending.category_id)
        if category is None or done.empty:
            self.statusMessage.emit("This candidate is empty; nothing accepted", 3000)
            return
        try:
            record = self.dataset.ensure_image(self.dataset.relative_name(pending.path), pending.width, pending.height)
        except DatasetError as exc:
            self.statusMessage.emit(str(exc), 0)
            return
        model = self.model_info.model_type if self.model_info else ""
        ann = make_annotation(self.dataset, record.id, category.id, done, predicted_iou=round(pending.score, 4),
                              model=model)
        if pending.path == self.current_path:
            self.layer.put(ann.id, done.patch, category.color, done.overlay)
        self.undo_stack.push(AcceptCommand(self, pending.path, ann, pending.prompt, category.name))
        if not self.dirty:  # else the save failure stays on show
            self.statusMessage.emit(f"Accepted {category.name} #{ann.id} ({int(ann.area)} px), saved", 3000)

    def _on_task_done(self, task_id: int, result) -> None:
        pending = self._pending_accept
        if pending is None or task_id != pending.task_id:
            return
        try:
            self._finish_accept(pending, result)
        finally:
            self._pending_accept = None
            self._replay()

    def _on_task_failed(self, task_id: int, message: str) -> None:
        pending = self._pending_accept
        if pending is not None and task_id == pending.task_id:
            self._pending_accept = None
            self.statusMessage.emit(f"Could not accept this mask: {message}", 0)
            self._replay()

    def _replay(self) -> None:
        """Run the user actions that waited for an accept, in order (until one starts another accept)."""
        while self._deferred and self._pending_accept is None:
            method, args, kwargs = self._deferred.pop(0)
            method(self, *args, **kwargs)

    @property
    def accepting(self) -> bool:
        """An accept is being finished (its full-resolution mask is being computed)."""
        return self._pending_accept is not None

    def wait_for_accept(self, timeout_s: float = 30.0) -> bool:
        """Finish an accept in flight now (before saving on close, or opening another folder)."""
        from PySide6.QtCore import QCoreApplication, QEventLoop

        deadline = time.monotonic() + timeout_s
        while self._pending_accept is not None and time.monotonic() < deadline:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.002)
        return self._pending_accept is None

    def _apply_add_annotation(self, ann) -> None:
        self.dataset.add_annotation(ann)
        self._annotations_edited(ann.image_id)

    def _apply_remove_annotation(self, annotation_id: int) -> None:
        ann = self.dataset.remove_annotation(annotation_id)
        self.layer.forget(annotation_id)
        self._annotations_edited(ann.image_id)

    def _apply_add_annotations(self, anns) -> None:
        """Add several annotations (one user step): one save, one refresh."""
        for ann in anns:
            self.dataset.add_annotation(ann)
        for image_id in dict.fromkeys(a.image_id for a in anns):
            self._annotations_edited(image_id)

    def _apply_remove_annotations(self, annotation_ids) -> None:
        removed = [self.dataset.remove_annotation(i) for i in annotation_ids]
        for ann in removed:
            self.layer.forget(ann.id)
        for image_id in dict.fromkeys(a.image_id for a in removed):
            self._annotations_edited(image_id)

    def _apply_annotation_category(self, annotation_id: int, category_id: int) -> None:
        ann = self.dataset.annotations[annotation_id]
        self.dataset.set_annotation_category(annotation_id, category_id)
        self._annotations_edited(ann.image_id)
        self.categoriesChanged.emit()

    def _annotations_edited(self, image_id: int) -> None:
        # Saved at once, not debounced: once an accept (or delete) shows, it is on disk, so a crash or
        # kill at any moment after it loses nothing (a save costs a few ms for a typical file).
        self._save_now()
        rec = self.dataset.images.get(image_id)
        if rec is not None:
            self._emit_row(self.dataset.image_path(rec))
        self.annotationsChanged.emit()
        self.categoriesChanged.emit()

    @property
    def selected_annotation(self) -> Optional[int]:
        """The annotation selected in the panel (drawn highlighted; Delete removes it)."""
        return self.layer.selected

    def select_annotation(self, annotation_id: Optional[int]) -> None:
        if annotation_id == self.layer.selected:
            return
        self.layer.selected = annotation_id
        self.annotationsChanged.emit()

    def set_annotation_visible(self, annotation_id: int, visible: bool) -> None:
        (self.layer.hidden.discard if visible else self.layer.hidden.add)(annotation_id)
        self.annotationsChanged.emit()

    @_after_accept
    def delete_annotation(self, annotation_id: Optional[int] = None) -> None:
        """Delete ``annotation_id`` (default: the selected one)."""
        aid = self.selected_annotation if annotation_id is None else annotation_id
        if self.dataset is None or aid is None or aid not in self.dataset.annotations:
            if annotation_id is None:
                self.statusMessage.emit("Select an annotation in the Annotations panel to delete it", 3000)
            return
        self.undo_stack.push(DeleteAnnotationCommand(self, self.dataset.annotations[aid]))

    @_after_accept
    def set_annotation_category(self, annotation_id: int, category_id: int) -> None:
        ann = self.dataset.annotations.get(annotation_id) if self.dataset else None
        if ann is None or category_id not in self.dataset.categories or ann.category_id == category_id:
            return
        self.undo_stack.push(SetAnnotationCategoryCommand(self, annotation_id, category_id, ann.category_id))

    def current_annotations(self) -> list:
        rec = self._current_record()
        return [] if rec is None else self.dataset.annotations_for(rec.id)

    def annotation_rows(self) -> List[AnnotationRow]:
        return self.layer.rows(self.current_annotations(), self.dataset.categories) if self.dataset else []

    def annotation_overlays(self) -> List[Tuple[int, QImage]]:
        """``(id, overlay)`` for the visible annotations of the current image (masks decoded in the background)."""
        if self.loaded is None or self.dataset is None:
            return []
        return self.layer.overlays(self.current_annotations(), self.dataset.categories)

    def _current_record(self):
        if self.dataset is None or self.current_path is None:
            return None
        return self.dataset.image_by_name(self.dataset.relative_name(self.current_path))

    def _annotation_count(self, path: Path) -> int:
        if self.dataset is None:
            return 0
        rec = self.dataset.image_by_name(self.dataset.relative_name(path))
        return 0 if rec is None else len(self.dataset.annotations_for(rec.id))

    # =====================================================================================
    # categories
    # =====================================================================================

    def category_rows(self) -> List[CategoryRow]:
        if self.dataset is None:
            return []
        counts: Dict[int, int] = {}
        for ann in self.dataset.annotations.values():
            counts[ann.category_id] = counts.get(ann.category_id, 0) + 1
        rows = []
        for i, cat in enumerate(sorted(self.dataset.categories.values(), key=lambda c: c.id)):
            quick = f"Ctrl+{i + 1}" if i < 9 else None
            rows.append(CategoryRow(cat.id, cat.name, cat.color, counts.get(cat.id, 0), quick))
        return rows

    def category_color(self) -> Color:
        if self.dataset is not None and self.category_id in self.dataset.categories:
            return self.dataset.categories[self.category_id].color
        return (255, 196, 0)

    @_after_accept
    def set_current_category(self, category_id: int) -> None:
        if self.dataset is None or category_id not in self.dataset.categories or category_id == self.category_id:
            return
        self.category_id = category_id
        self.currentCategoryChanged.emit(category_id)
        name = self.dataset.categories[category_id].name
        self.statusMessage.emit(f"Category: {name}", 2000)
        self._recolor_candidates()

    @_after_accept
    def quick_category(self, n: int) -> None:
        """Ctrl+``n``: make the ``n``-th category (1-based, panel order) current."""
        rows = self.category_rows()
        if 1 <= n <= len(rows):
            self.set_current_category(rows[n - 1].id)

    @_after_accept
    def add_category(self, name: str, color: Optional[Color] = None) -> bool:
        if self.dataset is None:
            return False
        name = name.strip()
        if not name or self.dataset.category_by_name(name) is not None:
            self.statusMessage.emit(f"A category called “{name}” exists already" if name else "Empty name", 4000)
            return False
        cmd = AddCategoryCommand(self, name, color)
        self.undo_stack.push(cmd)
        self.set_current_category(cmd.category_id)
        return True

    @_after_accept
    def rename_category(self, category_id: int, name: str) -> bool:
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        name = name.strip()
        if cat is None or not name:
            return False
        other = self.dataset.category_by_name(name)
        if other is not None and other.id != category_id:
            self.statusMessage.emit(f"A category called “{name}” exists already", 4000)
            return False
        self.undo_stack.push(EditCategoryCommand(self, category_id, "name", name, cat.name))
        return True

    @_after_accept
    def recolor_category(self, category_id: int, color: Color) -> None:
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        if cat is not None and tuple(color) != tuple(cat.color):
            self.undo_stack.push(EditCategoryCommand(self, category_id, "color", tuple(color), cat.color))

    @_after_accept
    def delete_category(self, category_id: int, reassign_to: Optional[int]) -> None:
        """Delete a category; its annotations move to ``reassign_to`` or, with ``None``, are deleted (undoable)."""
        cat = self.dataset.categories.get(category_id) if self.dataset else None
        if cat is None:
            return
        self.undo_stack.push(DeleteCategoryCommand(self, category_id, cat.name, reassign_to))

    def _apply_add_category(self, name: str, color: Optional[Color]) -> int:
        cat = self.dataset.add_category(name, color)
        self._categories_edited()
        return cat.id

    def _apply_category_field(self, category_id: int, field: str, value: Any) -> None:
        if field == "name":
            self.dataset.rename_category(category_id, value)
        else:
            self.dataset.recolor_category(category_id, value)
        self._categories_edited()

    def _apply_remove_category(self, category_id: int, reassign_to: Optional[int]):
        removed = self.dataset.remove_category(category_id, reassign_to)
        for ann in removed.removed_annotations:
            self.layer.forget(ann.id)
        if self.category_id == category_id:
            self.category_id = reassign_to if reassign_to is not None else min(self.dataset.categories, default=None)
            if self.category_id is not None:
                self.currentCategoryChanged.emit(self.category_id)
        self._categories_edited()
        return removed

    def _apply_restore_category(self, removed) -> None:
        self.dataset.restore_category(removed)
        self._categories_edited()

    def _categories_edited(self) -> None:
        self._schedule_save()
        self.categoriesChanged.emit()
        self.annotationsChanged.emit()
        self._emit_all_rows()
        self._recolor_candidates()

    def _emit_all_rows(self) -> None:
        for i in range(len(self.paths)):
            self.imageRowChanged.emit(i)

    def _recolor_candidates(self) -> None:
        self.everything.restyle()
        if self.result is not None and self.result.prompt is self.prompt:
            self._request_decode(time.perf_counter())

    # =====================================================================================
    # undo
    # =====================================================================================

    @_after_accept
    def undo(self) -> None:
        """Undo the last action on this image or the document (prompt steps of other images are skipped)."""
        self._step(self.undo_stack.undo, lambda s: s.canUndo(), lambda s: s.command(s.index() - 1))

    @_after_accept
    def redo(self) -> None:
        self._step(self.undo_stack.redo, lambda s: s.canRedo(), lambda s: s.command(s.index()))

    def _step(self, do, can, peek) -> None:
        stack = self.undo_stack
        while can(stack):
            cmd = peek(stack)
            stale = isinstance(cmd, PromptCommand) and cmd.stale()
            do()
            if not stale:
                return

    # =====================================================================================
    # saving
    # =====================================================================================

    @property
    def dirty(self) -> bool:
        return self.dataset is not None and self.dataset.dirty

    def _save_now(self) -> None:
        if self._closed or not self.autosave:
            self._emit_dirty()
            return
        self.save()

    def _schedule_save(self) -> None:
        self._emit_dirty()
        if not self._closed and self.autosave:
            self._save_timer.start()

    def set_autosave(self, on: bool) -> None:
        """Save after every change (``True``), or only on Ctrl+S, image or folder change and quit."""
        self.autosave = bool(on)
        if self.autosave and self.dirty:
            self._schedule_save()
        elif not self.autosave:
            self._save_timer.stop()

    def set_opacity(self, opacity: float) -> None:
        """Fill opacity (0..1) of the overlays; what is on show is drawn again."""
        opacity = min(1.0, max(0.0, float(opacity)))
        if opacity == self.opacity:
            return
        self.opacity = opacity
        self.layer.set_opacity(opacity)
        self.annotationsChanged.emit()
        self._recolor_candidates()

    def _emit_dirty(self) -> None:
        self.dirtyChanged.emit(self.dirty)

    def save(self) -> bool:
        """Write the working file now (atomically). On failure the user is told and the state stays unsaved."""
        self._save_timer.stop()
        if self.dataset is None:
            return True
        try:
            self.dataset.save()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = f"Could not save {self.dataset.path}: {reason}. Your work is kept in memory; fix the problem and press Ctrl+S."
            log.warning("save failed: %s", exc)
            self.saveFailed.emit(message)
            self._emit_dirty()
            return False
        self._emit_dirty()
        return True

    def flush(self) -> bool:
        """Save if there is anything unsaved worth a file (called on image switch and close)."""
        self.wait_for_accept()
        if self.dataset is None or not self.dataset.dirty:
            return True
        if not self.dataset.annotations and not self.dataset.path.exists():
            return True  # nothing but categories: no need to create a file yet
        return self.save()

    def export_coco(self, path: Path, fmt: str = "coco-rle", tolerance: float = 1.0) -> List[str]:
        """Write a COCO copy now, on this thread (``"coco-rle"`` or ``"coco-polygon"``); returns warnings.

        The document as it is in memory is exported, saved or not. Raises
        OSError or ValueError with a message for the user. The window uses
        :meth:`start_export` (a worker thread, with progress) instead.
        """
        from annotator.data import export

        if self.dataset is None:
            raise ValueError("no folder is open")
        return list(export.export_dataset(self.dataset, Path(path), fmt, tolerance))

    @property
    def exporting(self) -> bool:
        return self.exporter.running

    def start_export(self, path: Path, fmt: str = "coco-rle", tolerance: float = 1.0) -> bool:
        """Export in the background: ``exportProgress``, then ``exportFinished(path, warnings)`` or ``exportFailed``.

        The document is copied now (on this thread); the conversion, validation
        and writing happen on the export thread. Returns ``False`` (with
        ``exportFailed``) when the export cannot start.
        """
        from annotator.data import export

        if self.dataset is None:
            self.exportFailed.emit("no folder is open")
            return False
        path = Path(path)
        try:
            data = export.snapshot(self.dataset, path, fmt)
        except ValueError as exc:
            self.exportFailed.emit(str(exc))
            return False
        self._export_path = path
        self.exporter.submit(_export_job, data, path, fmt, tolerance)
        self.exportRunning.emit(True)
        self.exportProgress.emit(0, 0, f"Exporting {path.name}…")
        return True

    def cancel_export(self) -> None:
        if self.exporter.cancel():
            self.statusMessage.emit("Export cancelled", 3000)

    def _end_export(self) -> None:
        self._export_path = None
        self.exportRunning.emit(False)

    def _on_export_finished(self, _job_id: int, warnings: List[str]) -> None:
        path = self._export_path
        self._end_export()
        self.exportFinished.emit(path, list(warnings))

    def _on_export_failed(self, _job_id: int, message: str) -> None:
        self._end_export()
        self.exportFailed.emit(message)

    def _on_export_cancelled(self, _job_id: int) -> None:
        self._end_export()

    def title(self) -> str:
        if self.dataset is None:
            return "sam-annotator"
        star = "*" if self.dirty else ""
        return f"{star}{self.dataset.path.name} — {self.folder} — sam-annotator"

    # =====================================================================================
    # shutdown
    # =====================================================================================

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Stop the workers (joining their threads) and the timers. Call :meth:`flush` first. Idempotent."""
        self._closed = True
        self._prefetch_timer.stop()
        self._save_timer.stop()
        c = self.everything.shutdown(timeout_ms)
        d = self.exporter.shutdown(timeout_ms)
        a = self.encoder.shutdown(timeout_ms)
        b = self.decoder.shutdown(timeout_ms)
        return a and b and c and d


def _export_job(data: dict, path: Path, fmt: str, tolerance: float, *, report, cancel) -> List[str]:
    """The export's job (export thread): convert, validate and write a COCO snapshot."""
    from annotator.data import export

    report(0, 0, f"Exporting {path.name}…")
    return export.export_data(
        data, path, fmt, tolerance, progress=lambda done, total: report(done, total, f"Exporting {path.name}…"),
        cancel=cancel,
    )
