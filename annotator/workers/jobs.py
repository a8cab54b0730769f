"""Long, cancellable jobs on a worker thread: segment everything, export.

A :class:`JobService` (GUI thread) drives one :class:`JobWorker` on its own
:class:`QThread`, started on the first :meth:`JobService.submit`. It keeps
**one job in flight**: submitting while a job runs cancels that job (its
result is dropped) and the new one starts as soon as the worker is free.
Every job gets an id; only the latest job's signals reach the caller, so a
late result of a job the user has left is never applied.

A job is a plain function called on the worker thread as
``fn(*args, report=report, cancel=cancel)``: ``report(done, total, text="")``
sends progress (throttled to :data:`PROGRESS_INTERVAL`), ``cancel`` is a
:class:`threading.Event` it checks between steps. An exception raised once
``cancel`` is set counts as a cancellation, whatever its type.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple

from PySide6.QtCore import QObject, QThread, Signal, Slot

from annotator.workers.encoder import in_fresh_thread, start_thread, stop_thread, user_message

log = logging.getLogger(__name__)

#: Progress reaches the GUI at most this often (seconds), besides the first and the last report.
PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True, eq=False)
class BackgroundJob:
    """``fn(*args, report=..., cancel=...)`` under ``job_id``; ``cancel`` is set to stop it."""

    job_id: int
    fn: Callable[..., Any]
    args: Tuple[Any, ...] = ()
    cancel: threading.Event = field(default_factory=threading.Event)


class JobWorker(QObject):
    """Runs on the job thread. Never call its slots directly from another thread; emit to them."""

    progress = Signal(int, int, int, str)  # job id, done, total, text
    finished = Signal(int, object)  # job id, fn's return value
    failed = Signal(int, str)  # job id, message for the user
    cancelled = Signal(int)  # job id
    jobDone = Signal(int)  # job id: the worker is free again

    @Slot(object)
    def run(self, job: BackgroundJob) -> None:
        last = [0.0]

        def report(done: int, total: int, text: str = "") -> None:
            now = time.monotonic()
            if done <= 0 or done >= total or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                self.progress.emit(job.job_id, int(done), int(total), str(text))

        try:
            if job.cancel.is_set():
                self.cancelled.emit(job.job_id)
                return
            result = in_fresh_thread(job.fn, *job.args, report=report, cancel=job.cancel)
            if job.cancel.is_set():
                self.cancelled.emit(job.job_id)
            else:
                self.finished.emit(job.job_id, result)
        except Exception as exc:
            if job.cancel.is_set():
                self.cancelled.emit(job.job_id)
            else:
                log.exception("background job %s failed", getattr(job.fn, "__name__", job.fn))
                self.failed.emit(job.job_id, user_message(exc))
        finally:
            self.jobDone.emit(job.job_id)


class JobService(QObject):
    """GUI-thread side of one job thread (named ``name``): one job in flight, the latest one wins.

    Signals carry the job id; only those of the latest submitted job are
    emitted, and none after :meth:`cancel` (but ``cancelled``).
    """

    progress = Signal(int, int, int, str)  # job id, done, total, text
    finished = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)
    idle = Signal()  # nothing in flight or waiting any more

    _run = Signal(object)

    def __init__(self, name: str, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.name = name
        self._worker: Optional[JobWorker] = None
        self._thread: Optional[QThread] = None
        self._busy: Optional[BackgroundJob] = None  # sent to the worker
        self._waiting: Optional[BackgroundJob] = None  # to send when the worker is free
        self._latest = 0  # id of the job whose signals are delivered
        self._next_id = 0
        self._closed = False

    @property
    def busy(self) -> bool:
        """A job is running or waiting (a cancelled one may still be finishing its step)."""
        return self._busy is not None or self._waiting is not None

    @property
    def running(self) -> bool:
        """The latest job is running or waiting, not cancelled."""
        job = self._waiting or self._busy
        return job is not None and job.job_id == self._latest and not job.cancel.is_set()

    @property
    def latest(self) -> int:
        return self._latest

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        """Run ``fn(*args, report=, cancel=)`` on the job thread; returns its id.

        A job already running is cancelled (and its result dropped); one
        waiting is replaced.
        """
        if self._closed:
            raise RuntimeError(f"the {self.name} service is shut down")
        self._next_id += 1
        job = BackgroundJob(self._next_id, fn, tuple(args))
        self._latest = job.job_id
        if self._busy is not None:
            self._busy.cancel.set()
        self._waiting = job
        self._pump()
        return job.job_id

    def cancel(self) -> bool:
        """Cancel the running or waiting job; ``cancelled`` follows. Returns whether there was one."""
        had = False
        if self._waiting is not None:
            job, self._waiting = self._waiting, None
            had = True
            if job.job_id == self._latest:
                self.cancelled.emit(job.job_id)
        if self._busy is not None and not self._busy.cancel.is_set():
            self._busy.cancel.set()
            had = True
        return had

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Cancel everything and join the thread (the running job stops at its next check). Idempotent."""
        self._closed = True
        self._waiting = None
        if self._busy is not None:
            self._busy.cancel.set()
        thread, self._thread = self._thread, None
        return stop_thread(thread, timeout_ms)

    # -- internals -----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._worker = JobWorker()
            self._run.connect(self._worker.run)
            self._worker.progress.connect(self._on_progress)
            self._worker.finished.connect(self._on_finished)
            self._worker.failed.connect(self._on_failed)
            self._worker.cancelled.connect(self._on_cancelled)
            self._worker.jobDone.connect(self._on_done)
            self._thread = start_thread(self._worker, self.name)

    def _pump(self) -> None:
        if self._busy is not None or self._waiting is None or self._closed:
            return
        self._ensure_thread()
        self._busy, self._waiting = self._waiting, None
        self._run.emit(self._busy)

    def _current(self, job_id: int) -> bool:
        return job_id == self._latest and self._busy is not None and self._busy.job_id == job_id

    @Slot(int, int, int, str)
    def _on_progress(self, job_id: int, done: int, total: int, text: str) -> None:
        if self._current(job_id) and not self._busy.cancel.is_set():
            self.progress.emit(job_id, done, total, text)

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        if self._current(job_id) and not self._busy.cancel.is_set():
            self.finished.emit(job_id, result)
        elif self._current(job_id):
            self.cancelled.emit(job_id)

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        if self._current(job_id):
            self.failed.emit(job_id, message)

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        if self._current(job_id):
            self.cancelled.emit(job_id)

    @Slot(int)
    def _on_done(self, job_id: int) -> None:
        if self._busy is not None and self._busy.job_id == job_id:
            self._busy = None
        self._pump()
        if not self.busy:
            self.idle.emit()
