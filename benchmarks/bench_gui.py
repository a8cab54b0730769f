"""GUI benchmark: the real window (offscreen), real MobileSAM weights, 12-megapixel photos, CPU.

What a user feels, measured from outside the window the way a user acts on it
(a mouse event or a key press sent to the canvas), against the reference
``SamPredictor.predict`` timed on the same weights, photo and machine in the
same run:

* **click to overlay**: from the mouse event to the overlay of the best
  candidate set on the canvas and painted; first clicks on a fresh prompt and
  refining clicks (a second point, which also feeds the chosen candidate's
  logits back). Two settings: while the window prefetches (encodes) the next
  image, as right after an image is opened, and with the encoder idle;
* **next image to first mask**: with the next image prefetched, from the key
  press (``D``) to the overlay of a click made at once on the new image; and
  back (``A``) to an image whose embedding is in memory;
* **reopening**: a new window on the same folder and disk cache (memory cache
  empty), from ``open_folder`` to the embedding being ready, and to a mask;
* **event-loop stalls**: a 5 ms ``QTimer`` ticks throughout; the longest gap
  between ticks, per phase (encoding the first image, clicking while the next
  is prefetched, clicking while idle, switching images, reopening);
* **painting** (issue 17), on the same 12 MP photo seen whole (about 25 %):
  with the brush on an accepted annotation and on the candidate, each mouse
  move of a stroke, from the event sent to the canvas to the viewport
  repainted (``repaint()``, synchronous: the preview path drawn), and each
  stroke's release to its result in the document (annotation) or on display
  (candidate) and painted; the first stroke after selecting, and the cleanup
  keys.

Results go to ``docs/benchmarks/gui.md``. Run from the repository root::

    python benchmarks/bench_gui.py                  # default: 3 photos, 20 idle clicks, painting
    python benchmarks/bench_gui.py --clicks 40 --ref-clicks 20
    python benchmarks/bench_gui.py --paint          # painting only (docs/benchmarks/gui-paint.md)
    python benchmarks/bench_gui.py --click-path     # click vs bare decode + breakdown only (gui-click.md)

The click path against the bare decode (issue 18, goal 1), with a breakdown of each click, is
``benchmarks/click_path.py``'s; the default run includes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # refimpl: the reference with torchvision/timm stand-ins
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench_engine import _loadavg, machine_info, write_report  # noqa: E402

TIMEOUT_S = 120.0
TICK_MS = 5


def photos_12mp(folder: Path) -> List[Path]:
    """Three scikit-image photos upscaled to 4000 x 3000, saved as JPEG (quality 95)."""
    from skimage import data

    paths = []
    for i, name in enumerate(["coffee", "chelsea", "astronaut"]):
        path = folder / f"{i + 1:02d}_{name}.jpg"
        img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((4000, 3000), Image.BICUBIC)
        img.save(path, quality=95)
        paths.append(path)
    return paths


#: Click positions (fractions of width, height) on objects of the three photos.
CLICKS = [(0.50, 0.45), (0.30, 0.30), (0.75, 0.60), (0.55, 0.80), (0.20, 0.70), (0.85, 0.25), (0.40, 0.55)]


class Ticks:
    """Timestamps of a fast QTimer during named phases, for event-loop stall figures.

    The timer runs only inside a phase: its wake-ups every 5 ms preempt the
    decoder's threads on a 2-core machine, so click latencies are measured
    with it stopped.
    """

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.times: List[float] = []
        self.phases: List[Tuple[str, float, float]] = []
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self._open: Optional[Tuple[str, float]] = None

    def begin(self, name: str) -> None:
        self.end()
        self._open = (name, time.perf_counter())
        self._timer.start()

    def end(self) -> None:
        if self._open is not None:
            self._timer.stop()
            self.phases.append((self._open[0], self._open[1], time.perf_counter()))
            self._open = None

    def gaps(self, start: float, stop: float) -> np.ndarray:
        t = np.array([x for x in self.times if start <= x <= stop])
        return np.diff(t) * 1000.0 if len(t) > 1 else np.zeros(0)


def spin(pred: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    """Run the event loop until ``pred()`` holds (checked every 2 ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.perf_counter() + timeout_s
    while not pred():
        if time.perf_counter() > deadline:
            raise TimeoutError("the window did not get there in time")
        loop = QEventLoop()
        QTimer.singleShot(2, loop.quit)
        loop.exec()


def settle(ms: int = 150) -> None:
    end = time.perf_counter() + ms / 1000.0
    spin(lambda: time.perf_counter() >= end)


class Overlay:
    """Records when the candidate overlay was last set on the canvas (and painted)."""

    def __init__(self, window) -> None:
        self.window = window
        self.at: Optional[float] = None
        self._loop = None
        window.session.candidateOverlayChanged.connect(self._changed)  # after the canvas's own slot

    def _changed(self, image) -> None:
        if image is not None:
            self.window.canvas.viewport().repaint()
            self.at = time.perf_counter()
            if self._loop is not None:
                self._loop.quit()

    def wait(self) -> float:
        """Block in the event loop (no polling) until an overlay is shown; returns when it was."""
        from PySide6.QtCore import QEventLoop, QTimer

        if self.at is None:
            self._loop = QEventLoop()
            QTimer.singleShot(int(TIMEOUT_S * 1000), self._loop.quit)
            self._loop.exec()
            self._loop = None
        if self.at is None:
            raise TimeoutError("no overlay")
        return self.at


def click(window, overlay: Overlay, x: float, y: float) -> float:
    """Left-click image ``(x, y)``; seconds from the mouse event to the painted overlay."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    canvas = window.canvas
    pos = canvas.viewport_pos(x, y).toPoint()
    overlay.at = None
    t0 = time.perf_counter()
    QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    return overlay.wait() - t0


def press(window, key) -> float:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window.canvas.setFocus()
    t0 = time.perf_counter()
    QTest.keyClick(window.canvas, key, Qt.KeyboardModifier.NoModifier)
    return t0


def make_window(info, folder: Path):
    from annotator.ui.main_window import MainWindow

    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    got = []
    window.session.modelChanged.connect(got.append)
    window.use_model(info)
    spin(lambda: bool(got))
    return window


def model_info(model, checkpoint: Path, cache_root: Path):
    from annotator.workers.messages import ModelInfo
    from sam_core import EmbeddingCache
    from sam_core.cache import checkpoint_fingerprint

    cache = EmbeddingCache(cache_root / "embeddings", model_type="vit_t", checkpoint_id=checkpoint_fingerprint(checkpoint))
    return ModelInfo(model, "vit_t", "cpu", checkpoint, cache)


def close(window) -> None:
    window.close()
    settle(50)


def reference_predict(checkpoint: Path, photo: Path, n: int) -> List[float]:
    """Milliseconds per ``SamPredictor.predict`` (one point, three masks) on the photo, after ``set_image``."""
    import refimpl

    ms = refimpl.mobile_sam()
    ref = ms.sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()
    pred = ms.SamPredictor(ref)
    image = np.asarray(Image.open(photo).convert("RGB"))
    pred.set_image(image)
    h, w = image.shape[:2]
    out = []
    for i in range(n + 1):
        fx, fy = CLICKS[i % len(CLICKS)]
        t0 = time.perf_counter()
        pred.predict(point_coords=np.array([[fx * w, fy * h]]), point_labels=np.array([1]))
        if i:  # the first is a warm-up
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _idle_clicks(window, overlay: Overlay, n: int, first: List[float], refine: List[float]) -> None:
    """``n`` clicks with the encoder idle: a first click on a fresh prompt, then a refining one, alternately."""
    from PySide6.QtCore import Qt

    w, h = window.session.loaded.width, window.session.loaded.height
    for i in range(n):
        fx, fy = CLICKS[(i // 2) % len(CLICKS)]
        if i % 2 == 0:
            press(window, Qt.Key.Key_Escape)
            settle(40)
            first.append(click(window, overlay, fx * w, fy * h) * 1000.0)
        else:
            refine.append(click(window, overlay, (fx + 0.02) * w, (fy + 0.02) * h) * 1000.0)
        settle(40)


def _switch(window, overlay: Overlay, key, index: int) -> float:
    """Press ``key``, click the new image at once; ms from the key press to its overlay."""
    s = window.session
    t0 = press(window, key)
    assert s.index == index, (s.index, index)
    fx, fy = CLICKS[index]
    click(window, overlay, fx * s.loaded.width, fy * s.loaded.height)
    return (overlay.at - t0) * 1000.0


def run_gui(model, checkpoint: Path, folder: Path, paths: List[Path], cache_root: Path, args) -> Dict[str, object]:
    from PySide6.QtCore import Qt

    from annotator.session.rows import ImageState

    res: Dict[str, object] = {}
    ticks = Ticks()
    window = make_window(model_info(model, checkpoint, cache_root), folder)
    s = window.session
    overlay = Overlay(window)

    def prefetched(k: int) -> bool:
        return s.image_row(k).state == ImageState.READY and s.encoder_idle

    # 1. open the folder: the first photo is loaded and encoded (cold cache)
    ticks.begin("open + encode the first photo (cold cache)")
    t0 = time.perf_counter()
    assert window.open_folder(folder)
    spin(lambda: s.embedding is not None)
    res["cold"] = (time.perf_counter() - t0) * 1000.0

    # 2. click at once, while the second photo is prefetched (encoded)
    ticks.begin("clicks while the next photo is encoded (prefetch)")
    busy: List[float] = []
    i = 0
    while not prefetched(1) and len(busy) < 100:
        if i % 2 == 0:
            press(window, Qt.Key.Key_Escape)
        fx, fy = CLICKS[i % len(CLICKS)]
        busy.append(click(window, overlay, fx * s.loaded.width, fy * s.loaded.height) * 1000.0)
        i += 1
    ticks.end()
    spin(lambda: prefetched(1))
    res["busy"] = busy

    # 3. clicks with the encoder idle, no timer running: the click-latency figure
    settle(300)
    first: List[float] = []
    refine: List[float] = []
    _idle_clicks(window, overlay, args.clicks, first, refine)
    res["first"], res["refine"] = first, refine

    # 4. the same with the timer: the stalls
    ticks.begin("clicks, encoder idle")
    _idle_clicks(window, overlay, min(args.clicks, 10), [], [])
    ticks.end()

    # 5. next image (prefetched) -> click at once -> overlay; then back (embeddings in memory)
    nexts, backs = [], []
    for k in (1, 2):
        spin(lambda: prefetched(k))
        settle(300)
        nexts.append(_switch(window, overlay, Qt.Key.Key_D, k))
    for k in (1, 0):
        settle(300)
        backs.append(_switch(window, overlay, Qt.Key.Key_A, k))
    res["next"], res["back"] = nexts, backs

    # 6. switching with the timer on: the stalls
    ticks.begin("switching images (in memory) and clicking")
    for key_, k in ((Qt.Key.Key_D, 1), (Qt.Key.Key_D, 2), (Qt.Key.Key_A, 1), (Qt.Key.Key_A, 0)):
        settle(100)
        _switch(window, overlay, key_, k)
    ticks.end()
    close(window)

    # 7. reopen: a new window, the same disk cache, an empty memory cache
    window = make_window(model_info(model, checkpoint, cache_root), folder)
    s = window.session
    overlay = Overlay(window)
    encodes: List[str] = []
    s.encoderStatus.connect(lambda state, t: encodes.append(state) if state == "encoding" else None)
    ticks.begin("reopen (embedding from the disk cache)")
    t0 = time.perf_counter()
    assert window.open_folder(folder)
    spin(lambda: s.embedding is not None)
    ready = time.perf_counter() - t0
    fx, fy = CLICKS[0]
    click(window, overlay, fx * s.loaded.width, fy * s.loaded.height)
    res["reopen"] = (ready * 1000.0, (overlay.at - t0) * 1000.0, "encoding" in encodes[:1])
    ticks.end()
    close(window)

    res["stalls"] = [(name, ticks.gaps(a, b)) for name, a, b in ticks.phases]
    return res


# ---------------------------------------------------------------------------
# painting (issue 17)
# ---------------------------------------------------------------------------

#: Brush radius (image pixels) and stroke shape of the painting benchmark: a wave across the object.
PAINT_RADIUS = 25.0
PAINT_MOVES = 120


def _send_mouse(window, kind, pos, buttons) -> None:
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    vp = window.canvas.viewport()
    pos = QPointF(pos)
    QApplication.sendEvent(vp, QMouseEvent(kind, pos, vp.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
                                           Qt.KeyboardModifier.NoModifier))


def _paint_stroke(window, cx: float, cy: float, phase: float, moves: List[float]) -> float:
    """One stroke: press, PAINT_MOVES moves (each timed to the viewport repainted), release; returns ms from the
    release to the stroke's result on display and painted."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent

    canvas, vp = window.canvas, window.canvas.viewport()
    done = window.strokes_done  # (see run_paint)
    del done[:]
    w = window.session.loaded.width
    path = [canvas.viewport_pos(cx + (i / PAINT_MOVES - 0.5) * 0.5 * w, cy + 0.04 * w * np.sin(phase + i / 9.0))
            for i in range(PAINT_MOVES + 1)]
    left = Qt.MouseButton.LeftButton
    _send_mouse(window, QMouseEvent.Type.MouseButtonPress, path[0], left)
    for p in path[1:]:
        t0 = time.perf_counter()
        _send_mouse(window, QMouseEvent.Type.MouseMove, QPointF(p), left)
        vp.repaint()
        moves.append((time.perf_counter() - t0) * 1000.0)
    t0 = time.perf_counter()
    _send_mouse(window, QMouseEvent.Type.MouseButtonRelease, path[-1], Qt.MouseButton.NoButton)
    spin(lambda: bool(done) and not window.session.gate.busy)
    vp.repaint()
    return (time.perf_counter() - t0) * 1000.0


class CpuTimes:
    """Wraps functions to record each call's thread CPU time (ms): what the work costs, whatever else the machine
    runs (on a loaded machine the wall time of a thread also counts its waits for a core)."""

    def __init__(self) -> None:
        self.calls: Dict[str, List[float]] = {}
        self._undo: List[Tuple[object, str, object]] = []

    def wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)
        store = self.calls.setdefault(label, [])

        def timed(*a, **k):
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                store.append((time.thread_time() - t) * 1000.0)

        setattr(owner, name, timed)
        self._undo.append((owner, name, fn))

    def restore(self) -> None:
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)
        self._undo = []


def run_paint(model, checkpoint: Path, folder: Path, cache_root: Path, args) -> Dict[str, object]:
    """The painting measurements (see the module notes)."""
    from PySide6.QtCore import Qt

    from annotator.session import drafts, editing

    cpu = CpuTimes()  # (the session calls these through its module's names: wrapped there)
    cpu.wrap(editing.drafts, "render_draft", "decoder thread: draw the edited candidate")
    cpu.wrap(editing.drafts, "edit_annotation", "decoder thread: edit the annotation's mask, RLE, overlay")
    cpu.wrap(editing.MaskEditing, "_finish_edit", "GUI thread: the annotation into the document, saved")
    res: Dict[str, object] = {"cpu": cpu.calls}
    window = make_window(model_info(model, checkpoint, cache_root), folder)
    s = window.session
    overlay = Overlay(window)
    window.strokes_done = []
    s.strokeDone.connect(lambda: window.strokes_done.append(time.perf_counter()))  # after the canvas's own slot
    assert window.open_folder(folder)
    spin(lambda: s.embedding is not None)
    spin(lambda: s.encoder_idle, TIMEOUT_S)
    settle(500)
    w, h = s.loaded.width, s.loaded.height
    cx, cy = CLICKS[0][0] * w, CLICKS[0][1] * h
    res["scale"] = window.canvas.view_scale()
    res["size"] = (w, h)

    # the candidate: B, then strokes over SAM's mask
    click(window, overlay, cx, cy)
    press(window, Qt.Key.Key_B)
    window.tools.brush.set_radius(PAINT_RADIUS)
    spin(lambda: not s.editing.busy and not s.decoder.busy)  # the first stroke's base was prepared
    settle(200)
    moves_c: List[float] = []
    res["candidate"] = [_paint_stroke(window, cx, cy, k, moves_c) for k in range(args.strokes)]
    res["moves_candidate"] = moves_c
    t0 = time.perf_counter()
    press(window, Qt.Key.Key_Return)
    spin(lambda: len(s.dataset.annotations) == 1 and not s.gate.busy)
    res["accept_draft"] = (time.perf_counter() - t0) * 1000.0

    # the accepted annotation: Ctrl+click, then strokes applied to the document at once
    from PySide6.QtTest import QTest

    press(window, Qt.Key.Key_B)  # back to prompting...
    settle(200)
    QTest.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     window.canvas.viewport_pos(cx, cy).toPoint())
    assert s.selected_annotation is not None
    t0 = time.perf_counter()
    press(window, Qt.Key.Key_B)  # ...and the brush on the annotation: its mask is prepared in the background
    spin(lambda: not s.editing.busy and not s.decoder.busy)
    res["prepare"] = (time.perf_counter() - t0) * 1000.0
    settle(200)
    moves_a: List[float] = []
    res["annotation"] = [_paint_stroke(window, cx, cy + 0.05 * h, k, moves_a) for k in range(args.strokes)]
    res["moves_annotation"] = moves_a
    cleanup = {}
    for name, key_ in (("fill holes", Qt.Key.Key_O), ("remove islands", Qt.Key.Key_I),
                       ("keep largest", Qt.Key.Key_K)):
        t0 = time.perf_counter()
        press(window, key_)
        spin(lambda: not s.gate.busy)
        cleanup[name] = (time.perf_counter() - t0) * 1000.0
    res["cleanup"] = cleanup
    close(window)
    cpu.restore()
    assert drafts.render_draft is editing.drafts.render_draft
    return res


def run_click(model, checkpoint: Path, folder: Path, cache_root: Path, args) -> Dict[str, object]:
    """A fresh window on the folder, the next photo prefetched, then :func:`click_path.run_click_path`."""
    import click_path

    from annotator.session.rows import ImageState

    probe = click_path.Probe()
    probe.install()  # before the window: the session connects bound methods when it is made
    try:
        window = make_window(model_info(model, checkpoint, cache_root), folder)
        s = window.session
        assert window.open_folder(folder)
        spin(lambda: s.embedding is not None)
        spin(lambda: s.encoder_idle and s.image_row(1).state == ImageState.READY)
        settle(300)
        res = click_path.run_click_path(window, probe, rounds=args.rounds, per_round=10, spin=spin, settle=settle,
                                        press=press)
        close(window)
    finally:
        probe.remove()
    return res


def render_paint(res: Dict[str, object], machine: Optional[Dict[str, str]] = None) -> str:
    w, h = res["size"]
    out = [f"## Painting on a {w}x{h} photo seen at {res['scale'] * 100:.0f}% (brush radius {PAINT_RADIUS:g} px, "
           f"{PAINT_MOVES} moves per stroke)", ""]
    if machine:
        out += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine.items()] + [""]
    out += ["| measurement | n | median ms | p90 ms | p99 ms | max ms | target |", "|---|---|---|---|---|---|---|"]
    for label, xs, target in [
        ("mouse move -> repainted, on the candidate", res["moves_candidate"], "p99 <= 16"),
        ("mouse move -> repainted, on an annotation", res["moves_annotation"], "p99 <= 16"),
        ("release -> candidate edited, on display", res["candidate"], "<= 50"),
        ("release -> annotation edited, saved, on display", res["annotation"], "<= 50"),
    ]:
        xs = np.asarray(xs)
        out.append(f"| {label} | {len(xs)} | {np.median(xs):.1f} | {np.percentile(xs, 90):.1f} | "
                   f"{np.percentile(xs, 99):.1f} | {xs.max():.1f} | {target} |")
    out += ["", "| one-off | ms |", "|---|---|",
            f"| B on a selected annotation -> its full-resolution mask ready (decode, in the background) | "
            f"{res['prepare']:.0f} |",
            f"| Enter on the edited candidate -> annotation saved | {res['accept_draft']:.0f} |"]
    out += [f"| {name} (key -> saved) | {ms:.0f} |" for name, ms in res["cleanup"].items()]
    out += ["", "CPU time of the work behind a stroke (thread CPU time, independent of the machine's load):", "",
            "| step | calls | median ms | max ms |", "|---|---|---|---|"]
    for label, xs in res["cpu"].items():
        if xs:
            out.append(f"| {label} | {len(xs)} | {np.median(xs):.1f} | {max(xs):.1f} |")
    return "\n".join(out + [""])


def _machine_table(machine: Dict[str, str]) -> str:
    return "\n".join(["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine.items()] + ["", ""])


def _med(xs: List[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def render(res: Dict[str, object], ref: List[float], machine: Dict[str, str], args) -> str:
    ref_ms = _med(ref)
    out = ["# GUI benchmark: the window, real MobileSAM, 12 MP photos, CPU", ""]
    out += [f"Produced by `python benchmarks/bench_gui.py --clicks {args.clicks} --ref-clicks {args.ref_clicks}`; "
            "see its docstring for what is measured. Medians; the reference ran in the same process and run.", ""]
    out += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine.items()] + [""]
    out += ["## Click to overlay (mouse event -> best candidate's overlay painted)", ""]
    out += ["| setting | n | median ms | p90 ms | ratio to reference predict | target |", "|---|---|---|---|---|---|"]
    out.append(f"| reference `SamPredictor.predict` (one point, 3 full-size masks) | {len(ref)} | {ref_ms:.0f} | "
               f"{np.percentile(ref, 90):.0f} | 1.00 | |")
    idle = list(res["first"]) + list(res["refine"])
    for label, xs, target in [
        ("ours, encoder idle: all clicks", idle, "<= 0.35x"),
        ("ours, encoder idle: first click of a prompt", res["first"], ""),
        ("ours, encoder idle: refining click (2nd point + mask input)", res["refine"], ""),
        ("ours, while the next photo is being encoded (prefetch; 5 ms timer on)", res["busy"], ""),
    ]:
        xs = list(xs)
        if not xs:
            continue
        out.append(f"| {label} | {len(xs)} | {_med(xs):.0f} | {np.percentile(xs, 90):.0f} | "
                   f"{_med(xs) / ref_ms:.2f}x | {target} |")
    out += ["", "## Between images", "", "| step | times ms | target |", "|---|---|---|"]
    out.append(f"| first photo: open -> embedding ready (cold: load 12 MP JPEG + encode) | {res['cold']:.0f} | |")
    out.append(f"| next photo (prefetched): key D -> click -> overlay | {', '.join(f'{x:.0f}' for x in res['next'])} | < 100 |")
    out.append(f"| previous photo (in memory): key A -> click -> overlay | {', '.join(f'{x:.0f}' for x in res['back'])} | < 100 |")
    ready, mask, encoded = res["reopen"]
    out.append(f"| reopen the folder in a new window (disk cache): open -> embedding ready; -> first mask"
               f"{' (it ENCODED: cache missed)' if encoded else ''} | {ready:.0f}; {mask:.0f} | instant |")
    out += ["", f"## Event-loop stalls (longest gap between ticks of a {TICK_MS} ms timer)", "",
            "| phase | ticks | longest gap ms | p99 gap ms | target |", "|---|---|---|---|---|"]
    worst = 0.0
    for name, gaps in res["stalls"]:
        if len(gaps):
            worst = max(worst, float(gaps.max()))
            out.append(f"| {name} | {len(gaps)} | {gaps.max():.0f} | {np.percentile(gaps, 99):.0f} | < 50 |")
    out += ["", f"Longest stall over the whole run: {worst:.0f} ms.", ""]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20, help="clicks with the encoder idle")
    parser.add_argument("--ref-clicks", type=int, default=10, help="reference predict calls, before and after")
    parser.add_argument("--checkpoint", default=None, help="mobile_sam.pt (default: the checkpoint cache)")
    parser.add_argument("--out", default=None, help="default docs/benchmarks/gui.md (--paint: gui-paint.md)")
    parser.add_argument("--strokes", type=int, default=10, help="painting: strokes per target")
    parser.add_argument("--paint", action="store_true", help="run the painting measurements only")
    parser.add_argument("--click-path", action="store_true",
                        help="run the click path against the bare decode only (docs/benchmarks/gui-click.md)")
    parser.add_argument("--rounds", type=int, default=3, help="click path: rounds of 10 clicks + 10 bare decodes")
    args = parser.parse_args(argv)
    default = "gui-paint.md" if args.paint else "gui-click.md" if args.click_path else "gui.md"
    args.out = args.out or str(ROOT / "docs" / "benchmarks" / default)

    from PySide6.QtWidgets import QApplication

    from sam_core import ensure_checkpoint, load_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["SAM_ANNOTATOR_SETTINGS"] = str(tmp / "settings.ini")
    os.environ["SAM_ANNOTATOR_LOG_DIR"] = str(tmp / "logs")
    app = QApplication.instance() or QApplication(["bench_gui"])  # noqa: F841

    load_before = _loadavg()
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(ensure_checkpoint("vit_t"))
    folder = tmp / "photos"
    folder.mkdir()
    paths = photos_12mp(folder)
    # loaded on a thread that then ends, as the app does (annotator.workers.base.in_fresh_thread): torch work on the
    # GUI thread would leave it an OpenMP pool for good, which slows every worker's operations (see there)
    from annotator.workers.base import in_fresh_thread

    model = in_fresh_thread(load_model, "vit_t", checkpoint=checkpoint, device="cpu")

    if args.paint:
        print("painting ...", flush=True)
        paint = run_paint(model, checkpoint, folder, tmp / "cache-paint", args)
        machine = machine_info(**{
            "Qt platform": os.environ.get("QT_QPA_PLATFORM", ""),
            "load average (1/5/15 min) before / after": f"{load_before} / {_loadavg()}",
        })
        write_report("# GUI benchmark: painting\n\n" + render_paint(paint, machine), args.out)
        return 0

    if args.click_path:
        import click_path

        print("click path ...", flush=True)
        clicks = run_click(model, checkpoint, folder, tmp / "cache-click", args)
        machine = machine_info(**{
            "Qt platform": os.environ.get("QT_QPA_PLATFORM", ""),
            "load average (1/5/15 min) before / after": f"{load_before} / {_loadavg()}",
        })
        write_report("# GUI benchmark: click path\n\n" + _machine_table(machine) + click_path.render_click_path(clicks),
                     args.out)
        return 0

    print("reference predict ...", flush=True)
    ref = in_fresh_thread(reference_predict, checkpoint, paths[0], args.ref_clicks)
    print("window ...", flush=True)
    res = run_gui(model, checkpoint, folder, paths, tmp / "cache", args)
    print("reference predict again ...", flush=True)
    ref += in_fresh_thread(reference_predict, checkpoint, paths[0], args.ref_clicks)
    print("painting ...", flush=True)
    paint = run_paint(model, checkpoint, folder, tmp / "cache-paint", args)
    print("click path ...", flush=True)
    import click_path

    clicks = run_click(model, checkpoint, folder, tmp / "cache-click", args)

    machine = machine_info(**{
        "Qt platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "load average (1/5/15 min) before / after": f"{load_before} / {_loadavg()}",
    })
    write_report(render(res, ref, machine, args) + "\n" + click_path.render_click_path(clicks) + "\n"
                 + render_paint(paint), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
