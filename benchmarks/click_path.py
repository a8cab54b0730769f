"""Click to overlay against the bare decode, measured in the same window and run, with a breakdown of each click.

Used by ``benchmarks/bench_gui.py`` (its ``--click-path`` option runs this part alone). Issue 18, goal 1 (window
clause): the window's click -> overlay may cost no more than the bare decode plus 10 ms.

* **the click**: a mouse click sent to the canvas (``QTest.mouseClick``) -> the best candidate's overlay set on the
  canvas -> the viewport's pending repaint done. First clicks on a fresh prompt alternate with refining clicks (a
  second point; the candidate on display goes back in as the mask input), as in bench_gui's idle clicks.
* **the bare decode**: ``Predictor.decode`` of *the same prompts* (the jobs the clicks sent, recorded), replayed
  as a task on the window's own decoder thread: the same process, model, embedding, thread and OpenMP pool
  (``torch.get_num_threads()`` there is reported). Blocks of clicks and blocks of bare decodes alternate.
* **the breakdown** of every click (milliseconds after the mouse event): the job queued
  (``DecoderService.submit``), the decode started and ended (``Predictor.decode`` on the decoder thread), the
  display work done (the worker's ``work`` returned), the result delivered on the GUI thread
  (``Prompting._on_decoded`` entered), the overlay set on the canvas, and painted.

What "painted" means: the overlay's item is set, then the bench makes Qt do now the repaint the window has
pending (``viewport().repaint(region)`` of the region the scene marked dirty, as the next turn of the event loop
would), so the figure counts what the window paints, not a repaint of the whole viewport.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

#: Click positions (fractions of width, height) on objects of the photos (bench_gui's list).
CLICKS = [(0.50, 0.45), (0.30, 0.30), (0.75, 0.60), (0.55, 0.80), (0.20, 0.70), (0.85, 0.25), (0.40, 0.55)]
#: The stages of one click, in order, as the breakdown reports them.
STAGES = ("queued", "decode start", "decode end", "display ready", "delivered", "overlay set", "painted")


class Probe:
    """Timestamps of the click path's stages, from wrappers put on the classes the window uses.

    Install before the window is made (the session connects bound methods at construction); :meth:`remove`
    puts the originals back. Only the first event of a kind per click is kept.
    """

    def __init__(self) -> None:
        self.marks: Dict[str, float] = {}
        self.bare = threading.Event()  # set while the bare decodes run: their decodes are not the click's
        self._undo: List[Tuple[Any, str, Any]] = []
        self.jobs: List[Any] = []  # DecodeJobs submitted, in order
        self.cpu: Dict[str, float] = {}  # wrapped function's name -> its thread CPU ms (first call per click)

    def mark(self, stage: str) -> None:
        self.marks.setdefault(stage, time.perf_counter())

    def install(self) -> None:
        import sam_core
        from annotator.session.prompting import Prompting
        from annotator.workers.decoder import DecoderService, DecoderWorker

        def around(owner, name: str, before: Optional[str], after: Optional[str], skip_bare: bool = False):
            fn = getattr(owner, name)

            def wrapped(*a, **k):
                on = not (skip_bare and self.bare.is_set())
                if on and before:
                    self.mark(before)
                c0 = time.thread_time()
                out = fn(*a, **k)
                if on:
                    self.cpu.setdefault(name, (time.thread_time() - c0) * 1000.0)
                if on and after:
                    self.mark(after)
                return out

            wrapped.__name__ = getattr(fn, "__name__", name)
            setattr(owner, name, wrapped)
            self._undo.append((owner, name, fn))

        around(DecoderService, "submit", "queued", None)
        submit = DecoderService.submit

        def recording(service, job):  # the click's job, replayed by the bare decodes
            self.jobs.append(job)
            return submit(service, job)

        DecoderService.submit = recording
        around(sam_core.Predictor, "decode", "decode start", "decode end", skip_bare=True)
        around(DecoderWorker, "work", None, "display ready", skip_bare=True)
        around(Prompting, "_on_decoded", "delivered", None)
        # after the first paint (where the code delivers in two steps): the rest, on each thread
        if hasattr(DecoderWorker, "_complete"):
            around(DecoderWorker, "_complete", None, None, skip_bare=True)
        if hasattr(Prompting, "_on_completed"):
            around(Prompting, "_on_completed", None, None)

    def remove(self) -> None:
        from annotator.workers.decoder import DecoderService

        del DecoderService.submit  # the recording wrapper (the class's own, wrapped, is restored below)
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)
        self._undo = []


class Painted:
    """Marks "overlay set" when the session shows a candidate (after the canvas's own slot), then makes the
    viewport paint what is pending and marks "painted"."""

    def __init__(self, window, probe: Probe) -> None:
        self.window = window
        self.probe = probe
        self.at: Optional[float] = None
        self._loop = None
        window.session.candidateOverlayChanged.connect(self._changed)

    def _changed(self, image) -> None:
        if image is None or self.at is not None:
            return
        self.probe.mark("overlay set")
        c0 = time.thread_time()
        paint_pending(self.window.canvas)
        self.probe.cpu["paint"] = (time.thread_time() - c0) * 1000.0
        self.probe.mark("painted")
        self.at = time.perf_counter()
        if self._loop is not None:
            self._loop.quit()

    def wait(self, timeout_s: float) -> float:
        from PySide6.QtCore import QEventLoop, QTimer

        if self.at is None:
            self._loop = QEventLoop()
            QTimer.singleShot(int(timeout_s * 1000), self._loop.quit)
            self._loop.exec()
            self._loop = None
        if self.at is None:
            raise TimeoutError("no overlay")
        return self.at


def paint_pending(canvas) -> None:
    """Do now the repaint the canvas has pending, as the event loop's next turns would.

    A changed item makes the scene queue its processing of dirty items (a queued call to the scene); that
    marks the view's viewport dirty, which posts an ``UpdateRequest`` to the window; handling that paints
    the dirty region. Both are delivered here, in that order, synchronously.
    """
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(canvas.scene(), QEvent.Type.MetaCall.value)
    QCoreApplication.sendPostedEvents(canvas.window(), QEvent.Type.UpdateRequest.value)


def _med(xs) -> float:
    return statistics.median(xs) if len(xs) else float("nan")


def bare_decodes(window, jobs: List[Any], probe: Probe, spin: Callable) -> Tuple[List[float], int]:
    """Milliseconds of ``Predictor.decode`` for each of ``jobs``' prompts, run on the window's decoder thread (one
    task: the thread's own predictor and OpenMP pool); and ``torch.get_num_threads()`` there."""
    service = window.session.decoder
    predictor = service._thread.worker._predictor  # the decoder thread's own (bench only: a private)

    def replay() -> Tuple[List[float], int]:
        import torch

        out = []
        for job in jobs:
            args = job.prompt.decode_args(job.embedding)
            t0 = time.perf_counter()
            predictor.decode(job.embedding, multimask=True, **args)
            out.append((time.perf_counter() - t0) * 1000.0)
        return out, torch.get_num_threads()

    box: Dict[str, Any] = {}
    probe.bare.set()
    try:
        task_id = service.run_task(replay)
        service.taskDone.connect(lambda tid, value: box.setdefault(tid, value))
        spin(lambda: task_id in box)
    finally:
        probe.bare.clear()
    return box[task_id]


def run_click_path(window, probe: Probe, *, rounds: int, per_round: int, spin: Callable, settle: Callable,
                   press: Callable, timeout_s: float = 120.0) -> Dict[str, Any]:
    """``rounds`` blocks of ``per_round`` clicks (encoder idle), each followed by a block of bare decodes of the same
    prompts. Returns click and bare-decode milliseconds and each click's stage times (ms after the event)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    s, canvas = window.session, window.canvas
    painted = Painted(window, probe)
    w, h = s.loaded.width, s.loaded.height
    clicks: List[float] = []
    kinds: List[str] = []
    bare: List[float] = []
    stages: List[Dict[str, float]] = []
    cpu: List[Dict[str, float]] = []
    threads = 0
    n = 0
    for _ in range(rounds):
        jobs_before = len(probe.jobs)
        for _ in range(per_round):
            fx, fy = CLICKS[(n // 2) % len(CLICKS)]
            if n % 2 == 0:
                press(window, Qt.Key.Key_Escape)
                settle(40)
            else:
                fx, fy = fx + 0.02, fy + 0.02
            pos = canvas.viewport_pos(fx * w, fy * h).toPoint()
            settle(40)
            probe.marks, probe.cpu = {}, {}
            painted.at = None
            first_job = len(probe.jobs)
            t0 = time.perf_counter()
            QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
            painted.wait(timeout_s)
            assert len(probe.jobs) == first_job + 1, "one click, one decode job"
            clicks.append((painted.at - t0) * 1000.0)
            kinds.append("first" if n % 2 == 0 else "refine")
            stages.append({k: (v - t0) * 1000.0 for k, v in probe.marks.items()})
            spin(lambda: s.result is not None and s.result.prompt is s.prompt)  # the strip filled too (if later)
            cpu.append(dict(probe.cpu))
            n += 1
        settle(40)
        ms, threads = bare_decodes(window, probe.jobs[jobs_before:], probe, spin)
        bare += ms
    return {"clicks": clicks, "kinds": kinds, "bare": bare, "stages": stages, "cpu": cpu,
            "threads": threads}


def render_click_path(res: Dict[str, Any]) -> str:
    """The markdown section: click vs bare decode, and the median breakdown."""
    clicks, bare = np.asarray(res["clicks"]), np.asarray(res["bare"])
    mc, mb = float(np.median(clicks)), float(np.median(bare))
    out = ["## Click to overlay against the bare decode (issue 18, goal 1: window clause)", "",
           f"Same window, process, embedding and prompts; the bare decode ran on the window's decoder thread "
           f"(torch threads there: {res['threads']}), in blocks alternating with the clicks.", "",
           "| measurement | n | median ms | p90 ms | target |", "|---|---|---|---|---|",
           f"| bare decode (`Predictor.decode`, the clicks' prompts) | {len(bare)} | {mb:.1f} | "
           f"{np.percentile(bare, 90):.1f} | |",
           f"| click -> overlay painted | {len(clicks)} | {mc:.1f} | {np.percentile(clicks, 90):.1f} | "
           f"<= bare + 10 |"]
    for kind in ("first", "refine"):
        xs = [c for c, k in zip(res["clicks"], res["kinds"]) if k == kind]
        out.append(f"| ... {kind} clicks | {len(xs)} | {_med(xs):.1f} | {np.percentile(xs, 90):.1f} | |")
    out += ["", f"**Difference (medians): {mc - mb:+.1f} ms; ratio {mc / mb:.2f}x.**", "",
            "Breakdown of a click (median over the clicks, ms after the mouse event; step = median of the "
            "differences from the stage before):", "", "| stage | at ms | step ms |", "|---|---|---|"]
    prev = None
    for stage in STAGES:
        at = [st[stage] for st in res["stages"] if stage in st]
        if not at:
            continue
        if prev is None:
            steps = at
        else:
            steps = [st[stage] - st[prev] for st in res["stages"] if stage in st and prev in st]
        out.append(f"| {stage} | {_med(at):.1f} | {_med(steps):.1f} |")
        prev = stage
    cpu = res.get("cpu") or []
    rows = [("decode (decoder thread)", lambda c: c["decode"]),
            ("display work after the decode, before delivery (decoder thread)", lambda c: c["work"] - c["decode"]),
            ("the result shown: session, strip if filled then, canvas item set (GUI thread)",
             lambda c: c["_on_decoded"] - c["paint"]),
            ("the pending repaint (GUI thread)", lambda c: c["paint"]),
            ("after the first paint: the other overlays, areas, thumbnails (decoder thread)", lambda c: c["_complete"]),
            ("after the first paint: the strip filled (GUI thread)", lambda c: c["_on_completed"])]
    out += ["", "CPU time of the steps (thread CPU time: what the work costs, whatever else the machine runs; the "
            "repaint is made inside the session's overlay signal, so it is taken out of the row above it):", "",
            "| step | median ms | p90 ms |", "|---|---|---|"]
    for label, get in rows:
        xs = []
        for c in cpu:
            try:
                xs.append(get(c))
            except KeyError:
                pass
        if xs:
            out.append(f"| {label} | {_med(xs):.2f} | {np.percentile(xs, 90):.2f} |")
    return "\n".join(out + [""])
