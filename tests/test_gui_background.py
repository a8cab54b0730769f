"""annotator.workers.jobs.JobService: one job in flight, the latest wins, cancel, progress, shutdown."""

from __future__ import annotations

import threading

import pytest

from annotator.workers import base as workers
from annotator.workers.jobs import JobService

pytestmark = pytest.mark.gui


def _slow(name, gate: threading.Event, *, report, cancel):
    report(0, 3, "start")
    while not gate.wait(0.005):
        if cancel.is_set():
            raise RuntimeError("stopped")  # any exception after cancel counts as a cancellation
    for i in range(3):
        report(i + 1, 3, name)
    return name


def _boom(*, report, cancel):
    raise ValueError("bad input")


@pytest.fixture
def service():
    services = []

    def make():
        services.append(JobService("sam-test"))
        return services[-1]

    yield make
    for svc in services:
        svc.shutdown(10_000)


def test_latest_job_wins_and_the_superseded_one_is_cancelled(qtbot, service):
    svc = service()
    finished, cancelled, progress = [], [], []
    svc.finished.connect(lambda i, r: finished.append((i, r)))
    svc.cancelled.connect(cancelled.append)
    svc.progress.connect(lambda i, d, t, text: progress.append((i, d, t, text)))
    gate = threading.Event()
    first = svc.submit(_slow, "first", gate)
    qtbot.waitUntil(lambda: bool(progress) and progress[0][0] == first)  # it runs
    assert svc.running
    second = svc.submit(_slow, "second", threading.Event())
    third = svc.submit(_slow, "third", gate)  # replaces the waiting second one
    gate.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)
    qtbot.waitUntil(lambda: not svc.busy)
    assert finished == [(third, "third")]  # nothing of first or second was delivered
    assert {i for i, *_ in progress} <= {first, third} and progress[-1] == (third, 3, 3, "third")
    assert cancelled == []  # superseded jobs are dropped silently, only cancel() reports
    assert second not in {i for i, *_ in progress}
    thread = next(t for t in workers.THREADS if t.objectName() == "sam-test")
    assert svc.shutdown(5000) and not thread.isRunning()


def test_cancel_failure_and_shutdown(qtbot, service):
    svc = service()
    failed, cancelled = [], []
    svc.failed.connect(lambda i, m: failed.append(m))
    svc.cancelled.connect(cancelled.append)
    job = svc.submit(_slow, "x", threading.Event())
    assert svc.cancel()
    qtbot.waitUntil(lambda: cancelled == [job], timeout=5000)
    qtbot.waitUntil(lambda: not svc.busy)
    assert not svc.cancel()
    svc.submit(_boom)
    qtbot.waitUntil(lambda: bool(failed), timeout=5000)
    assert failed == ["ValueError: bad input"]
    svc.submit(_slow, "y", threading.Event())  # still running at shutdown: stopped and joined
    assert svc.shutdown(5000)
    assert not any(t.isRunning() for t in workers.THREADS if t.objectName() == "sam-test")
    with pytest.raises(RuntimeError):
        svc.submit(_boom)
