"""annotator.workers.base: request ids, queues (latest wins, urgent first), typed errors, clean shutdown.

The base is exercised through a small service built on it (as the real ones
are) and through the real DecoderService and EncoderService.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QThread, Signal
from qt_fixtures import FakePredictor

from annotator.workers import base
from annotator.workers.base import Fifo, Latest, Priority, ThreadService, Worker, user_message

# --------------------------------------------------------------------------------------
# queues (no Qt)
# --------------------------------------------------------------------------------------


def test_latest_keeps_only_the_newest_job():
    q = Latest()
    assert not q and q.take() is None
    q.put("a")
    q.put("b")
    assert q and q.take() == "b" and not q
    q.put("c")
    q.clear()
    assert not q and q.take() is None


def test_priority_takes_from_the_first_queue_that_has_a_job():
    urgent, decode, later = Fifo(), Latest(), Fifo()
    q = Priority(urgent, decode, later)
    later.put("later-1")
    decode.put("decode-1")
    decode.put("decode-2")  # replaces decode-1
    later.put("later-2")
    urgent.put("urgent-1")
    assert q
    assert [q.take() for _ in range(5)] == ["urgent-1", "decode-2", "later-1", "later-2", None]
    assert not q
    urgent.put("x")
    later.put("y")
    q.clear()
    assert not q and not urgent and not later


# --------------------------------------------------------------------------------------
# a small service on the base
# --------------------------------------------------------------------------------------


class BadInput(ValueError):
    """An error with a message for the user (the worker says it is expected)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is wrong")
        self.field = field


@dataclass(frozen=True, eq=False)
class EchoJob:
    job_id: int
    value: Any
    gate: Optional[threading.Event] = None
    started: Optional[threading.Event] = None


class EchoWorker(Worker):
    def __init__(self, ran: list) -> None:
        super().__init__()
        self.ran = ran

    def work(self, job: EchoJob) -> Any:
        self.ran.append((job.job_id, QThread.currentThread().objectName()))
        if job.started is not None:
            job.started.set()
        if job.gate is not None:
            assert job.gate.wait(30), "test gate never opened"
        if isinstance(job.value, BaseException):
            raise job.value
        return job.value

    def expected(self, job: EchoJob, exc: Exception) -> bool:
        return isinstance(exc, BadInput)

    def describe(self, job: EchoJob) -> str:
        return f"echo {job.job_id}"


class EchoService(ThreadService):
    result = Signal(int, object)
    error = Signal(int, object)

    def __init__(self, name: str = "sam-test-echo", lazy: bool = False) -> None:
        super().__init__()
        self.ran: list = []
        self._queue = Fifo()
        self.thread = self._add_thread(
            lambda: EchoWorker(self.ran), name, self._queue,
            on_returned=lambda job, value: self.result.emit(job.job_id, value),
            on_errored=lambda job, exc: self.error.emit(job.job_id, exc),
            lazy=lazy,
        )

    def submit(self, value: Any, **kwargs: Any) -> int:
        job = EchoJob(self.new_id(), value, **kwargs)
        self._queue.put(job)
        self.thread.pump()
        return job.job_id


@pytest.fixture
def echo():
    services = []

    def make(**kwargs):
        services.append(EchoService(**kwargs))
        return services[-1]

    yield make
    for svc in services:
        svc.shutdown(10_000)



@pytest.mark.gui
def test_each_result_carries_its_request_id_and_idle_follows_the_last(qtbot, echo):
    svc = echo()
    results = []
    svc.result.connect(lambda i, v: results.append((i, v)))
    gate = threading.Event()
    with qtbot.waitSignal(svc.idle, timeout=10_000):
        ids = [svc.submit("first", gate=gate)] + [svc.submit(f"v{n}") for n in range(4)]
        assert svc.busy and svc.thread.busy is not None
        gate.set()
    assert ids == sorted(set(ids))  # fresh, increasing
    assert results == list(zip(ids, ["first", "v0", "v1", "v2", "v3"]))
    assert [i for i, _ in svc.ran] == ids  # one at a time, in order, all on the service's own thread
    assert {name for _, name in svc.ran} == {"sam-test-echo"}
    assert not svc.busy


@pytest.mark.gui
def test_a_typed_error_reaches_the_caller_and_only_bugs_are_logged(qtbot, echo, caplog):
    svc = echo()
    errors, results = [], []
    svc.error.connect(lambda i, exc: errors.append((i, exc)))
    svc.result.connect(lambda i, v: results.append(i))
    with qtbot.waitSignal(svc.idle, timeout=10_000):
        bad = svc.submit(BadInput("width"))
        bug = svc.submit(KeyError("boom"))
        fine = svc.submit(7)
    assert [i for i, _ in errors] == [bad, bug] and results == [fine]
    (_, exc1), (_, exc2) = errors
    assert type(exc1) is BadInput and exc1.field == "width"  # the real exception object, not a name in a string
    assert type(exc2) is KeyError and exc2.args == ("boom",)
    assert exc1.__traceback__ is None and exc2.__traceback__ is None  # frames do not cross threads
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in logged] == [f"echo {bug} failed"]  # the expected error is not logged
    assert logged[0].exc_info is not None and logged[0].name == __name__
    assert user_message(exc1) == "BadInput: width is wrong"


@pytest.mark.gui
def test_shutdown_with_a_job_in_flight_joins_the_thread_and_starts_nothing_more(qtbot, echo):
    svc = echo()
    delivered = []
    svc.result.connect(lambda i, v: delivered.append(i))
    svc.error.connect(lambda i, e: delivered.append(i))
    svc.idle.connect(lambda: delivered.append("idle"))
    gate, started = threading.Event(), threading.Event()
    first = svc.submit("in flight", gate=gate, started=started)
    svc.submit("waiting")
    qtbot.waitUntil(started.is_set, timeout=10_000)
    thread = svc.thread.thread
    assert thread.isRunning()
    assert not svc.shutdown(50)  # the job in flight holds the thread: not stopped yet
    assert thread.isRunning() and svc.thread.thread is None
    gate.set()  # the job ends; the thread quits after it
    assert thread.wait(10_000)
    assert svc.shutdown(10_000)  # idempotent
    QCoreApplication.sendPostedEvents()  # the job in flight still reports (the window relies on it)
    assert delivered == [first, "idle"]
    assert svc.ran == [(first, "sam-test-echo")]  # the waiting job never ran
    svc.submit("after")  # nothing starts after shutdown
    assert svc.thread.thread is None and svc.ran == [(first, "sam-test-echo")]


@pytest.mark.gui
def test_a_lazy_thread_starts_with_its_first_job(qtbot, echo):
    svc = echo(name="sam-test-lazy", lazy=True)
    assert svc.thread.thread is None
    assert not any(t.objectName() == "sam-test-lazy" for t in base.THREADS if t.isRunning())
    with qtbot.waitSignal(svc.result, timeout=10_000) as blocker:
        job = svc.submit("hello")
    assert blocker.args == [job, "hello"]
    assert svc.thread.thread.isRunning() and svc.thread.thread.objectName() == "sam-test-lazy"
    assert svc.shutdown(10_000)


# --------------------------------------------------------------------------------------
# the real services
# --------------------------------------------------------------------------------------


class GatedDecoder(FakePredictor):
    """FakePredictor whose first decode waits for ``decode_gate``; every decode is logged with its point's x."""

    def __init__(self, order: list) -> None:
        super().__init__()
        self.order = order
        self.decode_gate = threading.Event()
        self.decode_started = threading.Event()

    def decode(self, emb, points=None, labels=None, **kwargs):
        self.order.append(("decode", None if points is None else int(points[-1][0])))
        if not self.decode_started.is_set():
            self.decode_started.set()
            assert self.decode_gate.wait(30), "test gate never opened"
        return super().decode(emb, points=points, labels=labels, **kwargs)


def _decode_job(job_id: int, embedding, x: Optional[int]):
    from annotator.data.prompts import PromptState
    from annotator.workers.messages import DecodeJob

    prompt = PromptState(((float(x), 20.0),), (1,)) if x is not None else PromptState()
    small = np.zeros((48, 64, 3), np.uint8)
    return DecodeJob(job_id, embedding, prompt, (48, 64), small, (255, 0, 0))


@pytest.fixture
def decoder():
    from annotator.workers.decoder import DecoderService

    svc = DecoderService()
    yield svc
    svc.shutdown(10_000)


@pytest.mark.gui
def test_decoder_latest_decode_wins_and_urgent_tasks_go_first(qtbot, decoder):
    order: list = []
    predictor = GatedDecoder(order)
    embedding = predictor.encode(np.full((96, 128, 3), 100, np.uint8))
    decoded, tasks = [], []
    decoder.decoded.connect(lambda i, r: decoded.append((i, r.job_id)))
    decoder.taskDone.connect(lambda i, v: tasks.append((i, v)))
    decoder.set_model(predictor)

    decoder.submit(_decode_job(1, embedding, 10))
    qtbot.waitUntil(predictor.decode_started.is_set, timeout=10_000)
    later = decoder.run_task(lambda: order.append(("task", "later")) or "L")
    decoder.submit(_decode_job(2, embedding, 20))
    decoder.submit(_decode_job(3, embedding, 30))  # replaces 2 (latest wins)
    urgent = decoder.run_task(lambda: order.append(("task", "urgent")) or "U", urgent=True)
    assert decoder.busy and urgent != later
    with qtbot.waitSignal(decoder.idle, timeout=10_000):
        predictor.decode_gate.set()
    assert order == [("decode", 10), ("task", "urgent"), ("decode", 30), ("task", "later")]
    assert decoded == [(3, 3)]  # 1 was superseded by the waiting 3 when its result came: not delivered
    assert tasks == [(urgent, "U"), (later, "L")]


@pytest.mark.gui
def test_decoder_a_bad_prompt_is_the_users_error_a_failing_task_is_a_bug(qtbot, decoder, caplog):
    predictor = FakePredictor()
    embedding = predictor.encode(np.full((96, 128, 3), 100, np.uint8))
    decoder.set_model(predictor)
    failed, task_failed = [], []
    decoder.failed.connect(lambda i, m: failed.append((i, m)))
    decoder.taskFailed.connect(lambda i, m: task_failed.append((i, m)))

    def broken():
        raise ValueError("bad mask")

    with qtbot.waitSignal(decoder.idle, timeout=10_000):
        decoder.submit(_decode_job(5, embedding, None))  # no point, no box: sam_core.PromptError
        task = decoder.run_task(broken)
    assert failed == [(5, "PromptError: empty prompt")]
    assert task_failed == [(task, "ValueError: bad mask")]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged == ["background task broken failed"]


@pytest.mark.gui
def test_encoder_service_an_unreadable_image_fails_with_its_own_message_unlogged(qtbot, tmp_path, photos, caplog):
    from PIL import Image

    from annotator.workers.encoder import EncoderService

    good = tmp_path / "good.png"
    Image.fromarray(photos["chelsea"]).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    svc = EncoderService()
    try:
        loaded, failed = [], []
        svc.imageLoaded.connect(lambda i, img: loaded.append((i, img.path, img.width, img.height)))
        svc.jobFailed.connect(lambda i, path, message: failed.append((i, path, message)))
        first = svc.new_id()
        with qtbot.waitSignal(svc.idle, timeout=10_000):
            svc.submit(first, bad)
        second = svc.new_id()
        with qtbot.waitSignal(svc.idle, timeout=10_000):
            svc.submit(second, good)
        assert second > first
        assert len(failed) == 1 and failed[0][:2] == (first, bad)
        assert failed[0][2].startswith(f"Cannot load image '{bad}'")
        assert loaded == [(second, good, 451, 300)]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        assert svc.shutdown(10_000)


def test_user_message_tells_error_kinds_apart_by_type():
    from annotator.data.imageio import ImageLoadError
    from sam_core.predictor import PromptError

    assert user_message(ImageLoadError("/x/a.png", "empty file (0 bytes)")).endswith("empty file (0 bytes)")
    assert not user_message(ImageLoadError("/x/a.png", "empty file (0 bytes)")).startswith("ImageLoadError")
    assert user_message(PromptError("empty prompt")) == "PromptError: empty prompt"
    assert user_message(MemoryError()) == "not enough memory to encode this image"
    assert user_message(RuntimeError()) == "RuntimeError"
