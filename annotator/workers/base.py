"""Thread plumbing and the base of every background service: a worker QObject on a QThread.

The pattern (superqt's ``new_worker_qthread`` recipe, with the job queue of
napari's slicer): a :class:`Worker` is moved to its own :class:`QThread`
(:func:`start_thread`) and runs one job at a time through its ``run`` slot;
it reports ``returned(job, value)`` or ``errored(job, exception)``, then
``done(job)``. A :class:`ThreadService` on the GUI thread owns one or more
:class:`WorkerThread`\\ s, each keeping **one job in flight** and taking the
next from its queue: :class:`Latest` (a newer job replaces the waiting one:
latest wins), :class:`Fifo` (none dropped) or :class:`Priority` (several
queues, the first non-empty one goes first: urgent jobs first). Jobs carry
ids from :meth:`ThreadService.new_id`; the service decides which results are
stale and drops them.

Why not superqt itself: its ``WorkerBase`` runs each job as a
:class:`QRunnable` on a shared thread pool and its ``new_worker_qthread``
makes one thread per job; we need long-lived named threads with their own
priority, one job in flight per thread and a queue policy per service (and
the decoder's thread must live on, see :func:`in_fresh_thread`).

Errors stay typed: the worker hands the exception object itself to the GUI
thread (its traceback logged on the worker's thread first, unless the worker
calls it an error with a message for the user), and services turn it into a
message with :func:`user_message`, which tells kinds apart by ``isinstance``.

Teardown: ``thread.finished`` -> ``worker.deleteLater``; a service's
``shutdown()`` drops waiting jobs, asks its threads to quit and joins them
(the job in flight runs to its end: torch cannot be interrupted mid-layer,
and still reports); no job starts after it. Threads and timers made here are registered
in :data:`THREADS` and :data:`TIMERS` (weak sets), which the test suite
checks for leaks. Worker threads lower their own priority (:data:`NICE`), so
the window stays smooth during an encode.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from typing import Any, Callable, List, Optional

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from annotator import qtcompat

qtcompat.apply()  # binding work-arounds, before any signal is emitted

log = logging.getLogger(__name__)

#: Every QThread this module starts (weakly held): tests fail when one is left running.
THREADS: "weakref.WeakSet[QThread]" = weakref.WeakSet()
#: Every QTimer made through :func:`make_timer` (weakly held): tests fail when one is left active.
TIMERS: "weakref.WeakSet[QTimer]" = weakref.WeakSet()

#: Niceness of the worker threads (Linux, macOS): background work yields the CPU to the GUI thread, and
#: the decoder (on the click path) to the encoder's prefetching. Threads that torch starts from a worker
#: inherit it.
NICE = {"sam-decoder": 2, "sam-loader": 5, "sam-encoder": 10, "sam-everything": 10, "sam-export": 5}


# ---------------------------------------------------------------------------
# threads and timers
# ---------------------------------------------------------------------------


def make_timer(parent: QObject, interval_ms: int, *, single_shot: bool = False) -> QTimer:
    """A QTimer registered in :data:`TIMERS` (so tests can tell it was stopped)."""
    timer = QTimer(parent)
    timer.setInterval(interval_ms)
    timer.setSingleShot(single_shot)
    TIMERS.add(timer)
    return timer


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


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def user_message(exc: BaseException) -> str:
    """What to tell the user about ``exc``: an unreadable image's own message; else ``Type: message``."""
    if isinstance(exc, MemoryError):
        return "not enough memory to encode this image"
    # Imported here, not at the top: it pulls in PIL, which the window does not import at start-up. By the
    # time an error reaches this, the loader thread has read images, so it is already loaded.
    from annotator.data.imageio import ImageLoadError

    text = str(exc).strip()
    if isinstance(exc, ImageLoadError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` (and its causes) without tracebacks: it crosses threads, the frames and the arrays they hold do not."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


# ---------------------------------------------------------------------------
# the worker (runs on its own thread)
# ---------------------------------------------------------------------------


class Worker(QObject):
    """Runs on its own thread, one job at a time. Never call its slots from another thread; emit to them.

    Subclasses implement :meth:`work` and may override :meth:`finish`,
    :meth:`expected` and :meth:`describe`. ``run(job)`` calls ``work(job)``,
    emits ``returned(job, value)`` at once, then calls ``finish(job, value)``;
    an exception from either is logged here (unless :meth:`expected`) and
    emitted as ``errored(job, exception)``; ``done(job)`` always follows.
    """

    returned = Signal(object, object)  # job, work(job)'s value
    errored = Signal(object, object)  # job, the exception (its traceback logged here and dropped)
    done = Signal(object)  # job: the worker is free again

    #: Run each job on a thread of its own that ends with it (see :func:`in_fresh_thread`): set for long
    #: torch jobs. ``returned`` is then emitted from that thread, as soon as the value is there.
    fresh_thread = False

    def work(self, job: Any) -> Any:
        """Do ``job`` (on this worker's thread) and return its result."""
        raise NotImplementedError

    def finish(self, job: Any, value: Any) -> None:
        """After ``returned`` was emitted, still on the worker's thread: work the caller need not wait for."""

    def expected(self, job: Any, exc: Exception) -> bool:
        """Whether ``exc`` is an error with a message for the user (not logged as a bug)."""
        return False

    def describe(self, job: Any) -> str:
        """The job in a log line (``"<describe> failed"``)."""
        return type(job).__name__

    @Slot(object)
    def run(self, job: Any) -> None:
        try:
            if self.fresh_thread:
                in_fresh_thread(self._work, job)
            else:
                self._work(job)
        except Exception as exc:  # never let one job kill the thread
            if not self.expected(job, exc):
                logging.getLogger(type(self).__module__).exception("%s failed", self.describe(job))
            self.errored.emit(job, _without_frames(exc))
        finally:
            self.done.emit(job)

    def _work(self, job: Any) -> None:
        value = self.work(job)
        self.returned.emit(job, value)
        self.finish(job, value)


# ---------------------------------------------------------------------------
# queues: which job goes next
# ---------------------------------------------------------------------------


class Latest:
    """At most one waiting job: a newer one replaces it (latest wins)."""

    def __init__(self) -> None:
        self.job: Any = None

    def put(self, job: Any) -> None:
        self.job = job

    def take(self) -> Any:
        job, self.job = self.job, None
        return job

    def clear(self) -> None:
        self.job = None

    def __bool__(self) -> bool:
        return self.job is not None


class Fifo:
    """Waiting jobs in the order they came; none is dropped."""

    def __init__(self) -> None:
        self._jobs: "deque[Any]" = deque()

    def put(self, job: Any) -> None:
        self._jobs.append(job)

    def take(self) -> Any:
        return self._jobs.popleft() if self._jobs else None

    def clear(self) -> None:
        self._jobs.clear()

    def __bool__(self) -> bool:
        return bool(self._jobs)


class Priority:
    """Several queues in order of priority: the next job comes from the first one that has one."""

    def __init__(self, *queues: Any) -> None:
        self.queues = queues

    def take(self) -> Any:
        for queue in self.queues:
            if queue:
                return queue.take()
        return None

    def clear(self) -> None:
        for queue in self.queues:
            queue.clear()

    def __bool__(self) -> bool:
        return any(self.queues)


# ---------------------------------------------------------------------------
# the GUI-thread side
# ---------------------------------------------------------------------------


class WorkerThread(QObject):
    """GUI-thread handle on one :class:`Worker` and its QThread: one job in flight, the next from ``queue``.

    ``queue`` is any object with ``take()`` (the next job or ``None``),
    ``clear()`` and truthiness (jobs are waiting). The worker is made by
    ``make_worker`` when the thread starts: at once, or with ``lazy`` on the
    first job. ``wire(worker)`` connects the worker's own signals and slots
    beyond the job's; results go to ``on_returned(job, value)`` and
    ``on_errored(job, exc)`` (on the GUI thread), then ``on_freed()`` once the
    worker has taken the next job, if any.

    After :meth:`quit` no job starts, but the one in flight still reports
    when it ends, if the GUI thread's event loop runs again: the window
    relies on it (an encode that ends after closing stops the encoder-status
    clock that ``MainWindow.closeEvent`` may have restarted).
    """

    _send = Signal(object)

    def __init__(
        self,
        make_worker: Callable[[], Worker],
        name: str,
        queue: Any,
        *,
        on_returned: Callable[[Any, Any], None],
        on_errored: Callable[[Any, BaseException], None],
        on_freed: Callable[[], None],
        wire: Optional[Callable[[Worker], None]] = None,
        lazy: bool = False,
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.queue = queue
        self.worker: Optional[Worker] = None
        self.thread: Optional[QThread] = None
        self.busy: Any = None  # the job in flight
        self._reported: Any = None  # the job in flight whose result was handed over already (done not yet in)
        self._make_worker = make_worker
        self._on_returned = on_returned
        self._on_errored = on_errored
        self._on_freed = on_freed
        self._wire = wire
        self._stopped = False
        if not lazy:
            self._start()

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting."""
        return self.busy is None and not self.queue

    def pump(self) -> None:
        """Send the next job to the worker if it is free (starting the thread if need be)."""
        if self.busy is not None or self._stopped:
            return
        job = self.queue.take()
        if job is None:
            return
        if self.worker is None:
            self._start()
        self.busy = job
        self._send.emit(job)

    def quit(self) -> None:
        """Drop waiting jobs, start no more and ask the thread to quit (without waiting)."""
        self._stopped = True
        self.queue.clear()
        if self.thread is not None:
            self.thread.quit()

    def stop(self, timeout_ms: int = -1) -> bool:
        """:meth:`quit`, then wait for the thread (the job in flight runs to its end). Idempotent."""
        self.quit()
        thread, self.thread = self.thread, None
        return stop_thread(thread, timeout_ms)

    def _start(self) -> None:
        worker = self.worker = self._make_worker()
        self._send.connect(worker.run)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.done.connect(self._done)
        if self._wire is not None:
            self._wire(worker)
        self.thread = start_thread(worker, self.name)

    @property
    def in_flight(self) -> Any:
        """The job in flight whose result is still to come (``None`` once it was reported, before ``done``).

        A request for the same work may wait on (adopt) this job only: one
        whose result was already handed over would never report again, and
        the request would wait forever (moving onto an image whose prefetch
        had just failed, between its failure and the worker's ``done``).
        """
        return None if self.busy is self._reported else self.busy

    @Slot(object, object)
    def _returned(self, job: Any, value: Any) -> None:
        self._reported = job
        self._on_returned(job, value)

    @Slot(object, object)
    def _errored(self, job: Any, exc: BaseException) -> None:
        self._reported = job
        self._on_errored(job, exc)

    @Slot(object)
    def _done(self, job: Any) -> None:
        if self._reported is job:
            self._reported = None
        if self.busy is job:
            self.busy = None
        self.pump()
        self._on_freed()


class ThreadService(QObject):
    """Base of the GUI-thread services: request ids, worker threads, ``busy``, ``idle`` and shutdown.

    A subclass adds its threads with :meth:`_add_thread` (in ``__init__``),
    puts jobs in their queues and calls :meth:`WorkerThread.pump`.
    """

    idle = Signal()  # nothing in flight and nothing waiting on any thread

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._workers: List[WorkerThread] = []
        self._next_id = 0
        self._closed = False

    def new_id(self) -> int:
        """A fresh request id (store it before submitting: results may arrive during the call)."""
        self._next_id += 1
        return self._next_id

    @property
    def busy(self) -> bool:
        """Whether a job is in flight or waiting."""
        return not all(w.idle for w in self._workers)

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Drop waiting jobs, stop the threads and join them; no job starts after. Idempotent.

        Jobs in flight run to their end first (``timeout_ms`` per thread,
        ``-1`` for as long as it takes); returns whether every thread stopped.
        """
        self._closed = True
        for w in self._workers:  # all threads wind down together
            w.quit()
        return all([w.stop(timeout_ms) for w in self._workers])

    def _add_thread(
        self,
        make_worker: Callable[[], Worker],
        name: str,
        queue: Any,
        *,
        on_returned: Callable[[Any, Any], None],
        on_errored: Callable[[Any, BaseException], None],
        wire: Optional[Callable[[Worker], None]] = None,
        lazy: bool = False,
    ) -> WorkerThread:
        w = WorkerThread(
            make_worker, name, queue, on_returned=on_returned, on_errored=on_errored, on_freed=self._freed,
            wire=wire, lazy=lazy, parent=self,
        )
        self._workers.append(w)
        return w

    def _freed(self) -> None:
        if not self.busy:
            self.idle.emit()
