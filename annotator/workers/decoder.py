"""The decoder thread: prompt -> three ranked candidates with their overlays; and small background tasks.

:class:`DecoderWorker` lives on its own :class:`QThread` (it shares the model
with the encoder, read-only, through its own predictor). :class:`DecoderService`
on the GUI thread keeps one job in flight: the latest decode request wins
(older waiting ones are dropped, and results of superseded ones are not
delivered), while tasks (finishing an accepted mask, decoding annotation
overlays) are never dropped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QThread, Signal, Slot

from annotator import render
from annotator.workers.messages import DecodeJob, DecodeResult, Task
from annotator.workers.encoder import make_predictor, start_thread, stop_thread, user_message

log = logging.getLogger(__name__)


class DecoderWorker(QObject):
    """Runs on the decoder thread: prompt -> candidates -> overlays and thumbnails."""

    decoded = Signal(int, object)  # job id, DecodeResult
    failed = Signal(int, str)  # job id, message
    taskDone = Signal(int, object)  # task id, result
    taskFailed = Signal(int, str)  # task id, message
    jobDone = Signal()  # a decode or a task finished: the worker is free

    def __init__(self) -> None:
        super().__init__()
        self._predictor = None

    @Slot(object)
    def set_model(self, model: Any) -> None:
        self._predictor = make_predictor(model)

    @Slot(object)
    def run(self, job: DecodeJob) -> None:
        try:
            self.decoded.emit(job.job_id, self._run(job))
        except Exception as exc:
            if type(exc).__name__ != "PromptError":
                log.exception("decoding failed")
            self.failed.emit(job.job_id, user_message(exc))
        finally:
            self.jobDone.emit()

    @Slot(object)
    def run_task(self, task: "Task") -> None:
        try:
            self.taskDone.emit(task.task_id, task.fn(*task.args))
        except Exception as exc:
            log.exception("background task %s failed", getattr(task.fn, "__name__", task.fn))
            self.taskFailed.emit(task.task_id, user_message(exc))
        finally:
            self.jobDone.emit()

    def _run(self, job: DecodeJob) -> DecodeResult:
        if self._predictor is None:
            raise RuntimeError("no model is loaded yet")
        t = time.perf_counter()
        cands = self._predictor.decode(job.embedding, multimask=True, **job.prompt.decode_args())
        decode_s = time.perf_counter() - t
        previews = tuple(render.previews(cands, job.preview_size))
        rendered = tuple(render.candidate_overlay(p, job.color, job.opacity) for p in previews)
        # 72-pixel thumbnails need no more than the low-resolution masks (10x fewer pixels to crop and shrink)
        low_res = cands.valid_low_res_logits > cands.mask_threshold
        thumbs = tuple(render.thumbnail(job.thumb_source, m, job.color) for m in low_res)
        h, w = cands.original_size
        scale = (h * w) / float(job.preview_size[0] * job.preview_size[1])
        return DecodeResult(
            job_id=job.job_id,
            prompt=job.prompt,
            candidates=cands,
            previews=previews,
            overlays=rendered,
            thumbs=thumbs,
            areas=tuple(render.areas(previews, scale)),
            decode_s=decode_s,
            total_s=time.perf_counter() - job.t0,
            t0=job.t0,
        )


class DecoderService(QObject):
    """GUI-thread side of the decoder thread.

    Decodes: one in flight, the latest request waits, older waiting ones are
    dropped (latest wins). Tasks (:meth:`run_task`: finishing an accepted
    mask, rendering annotation overlays) are never dropped and run in order;
    urgent ones before the waiting decode, the others after it.
    """

    decoded = Signal(int, object)
    failed = Signal(int, str)
    taskDone = Signal(int, object)  # task id, fn's return value
    taskFailed = Signal(int, str)  # task id, message

    _runJob = Signal(object)
    _runTask = Signal(object)
    _setModel = Signal(object)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._worker = DecoderWorker()
        self._runJob.connect(self._worker.run)
        self._runTask.connect(self._worker.run_task)
        self._setModel.connect(self._worker.set_model)
        self._worker.decoded.connect(self._on_decoded)
        self._worker.failed.connect(self._on_failed)
        self._worker.taskDone.connect(self.taskDone)
        self._worker.taskFailed.connect(self.taskFailed)
        self._worker.jobDone.connect(self._on_done)
        self._thread: Optional[QThread] = start_thread(self._worker, "sam-decoder")
        self._busy: Any = None  # the DecodeJob or Task in flight
        self._pending: Optional[DecodeJob] = None
        self._urgent: "deque[Task]" = deque()
        self._later: "deque[Task]" = deque()
        self._next_task = 0

    @property
    def busy(self) -> bool:
        return self._busy is not None or self._pending is not None or bool(self._urgent or self._later)

    def set_model(self, model: Any) -> None:
        self._setModel.emit(model)

    def submit(self, job: DecodeJob) -> None:
        """Decode ``job`` now, or after the job in flight (replacing any decode already waiting)."""
        self._pending = job
        self._pump()

    def run_task(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> int:
        """Run ``fn(*args)`` on the decoder thread; ``taskDone(id, result)`` or ``taskFailed(id, message)``."""
        self._next_task += 1
        task = Task(self._next_task, fn, tuple(args), urgent)
        (self._urgent if urgent else self._later).append(task)
        self._pump()
        return task.task_id

    def cancel(self) -> None:
        """Drop the waiting decode (the one in flight finishes; its result is dropped by id)."""
        self._pending = None

    def shutdown(self, timeout_ms: int = -1) -> bool:
        self._pending = None
        self._urgent.clear()
        self._later.clear()
        thread, self._thread = self._thread, None
        return stop_thread(thread, timeout_ms)

    def _pump(self) -> None:
        if self._busy is not None or self._thread is None:
            return
        if self._urgent:
            self._busy = self._urgent.popleft()
            self._runTask.emit(self._busy)
        elif self._pending is not None:
            self._busy, self._pending = self._pending, None
            self._runJob.emit(self._busy)
        elif self._later:
            self._busy = self._later.popleft()
            self._runTask.emit(self._busy)

    @Slot(int, object)
    def _on_decoded(self, job_id: int, result: DecodeResult) -> None:
        if self._pending is None:  # a newer request supersedes this result: do not even deliver it
            self.decoded.emit(job_id, result)

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        if self._pending is None:
            self.failed.emit(job_id, message)

    @Slot()
    def _on_done(self) -> None:
        self._busy = None
        self._pump()
