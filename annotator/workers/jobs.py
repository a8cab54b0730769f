"""Long, cancellable jobs on a worker thread: segment everything, export.

A :class:`JobService` (GUI thread) drives one :class:`JobWorker` on its own
:class:`QThread`, started on the first :meth:`JobService.submit`. It keeps
**one job in flight**: submitting while a job runs cancels that job (its
result is dropped) and the new one starts as soon as the worker is free.
Every job gets an id; only the latest job's signals reach the caller, so a
late result of a job the user has left is never applied.

A job is a plain function called as ``fn(*args, report=report,
cancel=cancel)`` on a thread that ends with it (see
:func:`annotator.workers.base.in_fresh_thread`): ``report(done, total,
text="")`` sends progress (throttled to :data:`PROGRESS_INTERVAL`),
``cancel`` is a :class:`threading.Event` it checks between steps. An
exception raised once ``cancel`` is set counts as a cancellation, whatever
its type.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal, Slot

from annotator.workers.base import Latest, ThreadService, Worker, user_message
from annotator.workers.messages import BackgroundJob

#: Progress reaches the GUI at most this often (seconds), besides the first and the last report.
PROGRESS_INTERVAL = 0.1

__all__ = ["PROGRESS_INTERVAL", "BackgroundJob", "JobCancelled", "JobService", "JobWorker"]


class JobCancelled(Exception):
    """The job was cancelled before it started."""


class JobWorker(Worker):
    """Runs on the job thread: ``fn(*args, report=, cancel=)`` of a :class:`BackgroundJob`, on a fresh thread."""

    progress = Signal(int, int, int, str)  # job id, done, total, text

    fresh_thread = True

    def work(self, job: BackgroundJob) -> Any:
        if job.cancel.is_set():
            raise JobCancelled()
        last = [0.0]

        def report(done: int, total: int, text: str = "") -> None:
            now = time.monotonic()
            if done <= 0 or done >= total or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                self.progress.emit(job.job_id, int(done), int(total), str(text))

        return job.fn(*job.args, report=report, cancel=job.cancel)

    def expected(self, job: BackgroundJob, exc: Exception) -> bool:
        return job.cancel.is_set()  # a cancellation, not a bug

    def describe(self, job: BackgroundJob) -> str:
        return f"background job {getattr(job.fn, '__name__', job.fn)}"


class JobService(ThreadService):
    """GUI-thread side of one job thread (named ``name``): one job in flight, the latest one wins.

    Signals carry the job id; only those of the latest submitted job are
    emitted, and none after :meth:`cancel` (but ``cancelled``).
    """

    progress = Signal(int, int, int, str)  # job id, done, total, text
    finished = Signal(int, object)  # job id, fn's return value
    failed = Signal(int, str)  # job id, message for the user
    cancelled = Signal(int)  # job id
    # idle (from ThreadService): nothing in flight or waiting any more

    def __init__(self, name: str, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.name = name
        self._waiting = Latest()  # the job to send when the worker is free
        self._thread = self._add_thread(
            JobWorker, name, self._waiting, on_returned=self._on_returned, on_errored=self._on_errored,
            wire=lambda worker: worker.progress.connect(self._on_progress), lazy=True,
        )
        self._latest = 0  # id of the job whose signals are delivered

    @property
    def running(self) -> bool:
        """The latest job is running or waiting, not cancelled."""
        job = self._waiting.job or self._thread.busy
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
        job = BackgroundJob(self.new_id(), fn, tuple(args))
        self._latest = job.job_id
        if self._thread.busy is not None:
            self._thread.busy.cancel.set()
        self._waiting.put(job)
        self._thread.pump()
        return job.job_id

    def cancel(self) -> bool:
        """Cancel the running or waiting job; ``cancelled`` follows. Returns whether there was one."""
        had = False
        job = self._waiting.take()
        if job is not None:
            had = True
            if job.job_id == self._latest:
                self.cancelled.emit(job.job_id)
        busy = self._thread.busy
        if busy is not None and not busy.cancel.is_set():
            busy.cancel.set()
            had = True
        return had

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Cancel everything and join the thread (the running job stops at its next check). Idempotent."""
        if self._thread.busy is not None:
            self._thread.busy.cancel.set()
        return super().shutdown(timeout_ms)

    # -- internals -----------------------------------------------------------------

    def _current(self, job: BackgroundJob) -> bool:
        return job.job_id == self._latest and self._thread.busy is job

    @Slot(int, int, int, str)
    def _on_progress(self, job_id: int, done: int, total: int, text: str) -> None:
        busy = self._thread.busy
        if busy is not None and job_id == busy.job_id == self._latest and not busy.cancel.is_set():
            self.progress.emit(job_id, done, total, text)

    def _on_returned(self, job: BackgroundJob, value: Any) -> None:
        if self._current(job):
            if job.cancel.is_set():
                self.cancelled.emit(job.job_id)
            else:
                self.finished.emit(job.job_id, value)

    def _on_errored(self, job: BackgroundJob, exc: BaseException) -> None:
        if self._current(job):
            if job.cancel.is_set():
                self.cancelled.emit(job.job_id)
            else:
                self.failed.emit(job.job_id, user_message(exc))
