"""Qt test fixtures (a pytest plugin, loaded by conftest.py).

* Every test marked ``gui`` fails if it leaves one of our QThreads running or
  one of our QTimers active (registries: :data:`annotator.workers.base.THREADS`,
  :data:`annotator.workers.base.TIMERS`).
* ``image_folder``: a temporary folder with three real photos (JPEG/PNG).
* ``fake_predictor``: a stand-in for :class:`sam_core.Predictor` with a
  controllable encode delay and a deterministic decoder (discs around the
  last foreground point), for fast tests of the window's logic.
* ``make_window``: builds real :class:`annotator.ui.main_window.MainWindow`\\ s and
  closes them (saving, joining threads) at teardown.
* ``mobilesam_info``: a factory of :class:`annotator.workers.encoder.ModelInfo` around the
  real MobileSAM model with a fresh embedding cache in a temporary folder.
* Helpers to click at image coordinates (image -> scene -> viewport).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import pytest

def pytest_configure(config):
    # PySide6 6.12.0 on Python < 3.12 drops references to None/True on every void call and emit;
    # the work-around must be in place before any test drives Qt (see annotator/qtcompat.py).
    from annotator import qtcompat

    qtcompat.apply()


# --------------------------------------------------------------------------------------
# leak check
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_leaked_qt_work(request):
    """Fail a ``gui`` test that leaves a QThread of ours running or a QTimer of ours active."""
    if request.node.get_closest_marker("gui") is None:
        yield
        return
    yield
    import shiboken6
    from PySide6.QtWidgets import QApplication

    from annotator.workers import base as workers

    app = QApplication.instance()
    if app is not None:
        app.processEvents()
    running = [t for t in list(workers.THREADS) if shiboken6.isValid(t) and t.isRunning()]
    active = [t for t in list(workers.TIMERS) if shiboken6.isValid(t) and t.isActive()]
    if running or active:
        names = [t.objectName() or repr(t) for t in running]
        timers = [f"{t.parent().__class__.__name__ if t.parent() else None}:{t.interval()}ms" for t in active]
        for t in active:
            t.stop()
        for t in running:
            t.quit()
            t.wait(60_000)
        pytest.fail(f"test left QThreads running: {names}; QTimers active: {timers}", pytrace=False)


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path, photos) -> Path:
    """``tmp_path/images`` with ``01_astronaut.jpg`` (512x512), ``02_chelsea.png`` (451x300), ``03_coffee.jpg`` (600x400)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).save(folder / "01_astronaut.jpg", quality=92)
    Image.fromarray(photos["chelsea"]).save(folder / "02_chelsea.png")
    Image.fromarray(photos["coffee"]).save(folder / "03_coffee.jpg", quality=92)
    return folder


# --------------------------------------------------------------------------------------
# a fake predictor
# --------------------------------------------------------------------------------------


class FakePredictor:
    """Duck-typed :class:`sam_core.Predictor`.

    ``encode`` waits ``delay`` seconds (or until ``gate`` is set, when given)
    and records the image's mean colour in the features, so a test can tell
    which image an embedding came from. ``decode`` returns three discs
    centred on the last foreground point (radius 10%, 20%, 35% of the image's
    short side; scores 0.9, 0.8, 0.6), or the box, as low-res logits.
    """

    model_type = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.gate: Optional[threading.Event] = None
        self.encoded: List[Tuple[int, int]] = []
        self.decodes: List[dict] = []
        self.lock = threading.Lock()

    def encode(self, image: np.ndarray):
        import torch

        from sam_core import ImageEmbedding

        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        elif self.delay:
            time.sleep(self.delay)
        h, w = image.shape[:2]
        with self.lock:
            self.encoded.append((h, w))
        feats = torch.zeros(1, 256, 64, 64)
        feats[0, :3, 0, 0] = torch.tensor(image.reshape(-1, 3).mean(0), dtype=torch.float32)
        s = 1024 / max(h, w)
        return ImageEmbedding(feats, (h, w), (round(h * s), round(w * s)), "fake")

    def decode(self, emb, points=None, labels=None, box=None, mask_input=None, multimask=True):
        from sam_core import Candidates, PromptError

        with self.lock:
            self.decodes.append(dict(points=points, labels=labels, box=box, mask_input=mask_input))
        h, w = emb.original_size
        hh, ww = emb.input_size
        if points is None and box is None:
            raise PromptError("empty prompt")
        if box is not None:
            x0, y0, x1, y1 = box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        else:
            fg = [p for p, lbl in zip(points, labels) if lbl == 1] or list(points)
            cx, cy = fg[-1]
        # to low-res coordinates (256 over the padded 1024 input)
        f = 256 / 1024 * (hh / h)
        yy, xx = np.mgrid[:256, :256].astype(np.float32)
        d = np.hypot(xx + 0.5 - (cx + 0.5) * f, yy + 0.5 - (cy + 0.5) * f)
        short = min(h, w) * f
        logits = np.stack([(r * short - d) for r in (0.10, 0.20, 0.35)]).astype(np.float32)
        return Candidates(np.array([0.9, 0.8, 0.6], np.float32), logits, (h, w), (hh, ww), "fake")


@pytest.fixture
def fake_predictor() -> FakePredictor:
    return FakePredictor()


def fake_info(predictor: FakePredictor, cache_root: Path, disk: bool = True):
    """ModelInfo around a FakePredictor with its own embedding cache under ``cache_root``."""
    from sam_core import EmbeddingCache

    from annotator.workers.messages import ModelInfo

    cache = EmbeddingCache(cache_root / "embeddings", model_type="fake", checkpoint_id="fake-1", disk=disk)
    return ModelInfo(predictor, "fake", "cpu", None, cache)


@pytest.fixture
def mobilesam_info(mobilesam_model, mobilesam_checkpoint, tmp_path) -> Callable[..., object]:
    """``make(cache_root=tmp_path/'cache')`` -> ModelInfo for the real MobileSAM with a fresh cache."""
    from sam_core import EmbeddingCache
    from sam_core.cache import checkpoint_fingerprint

    from annotator.workers.messages import ModelInfo

    def make(cache_root: Optional[Path] = None):
        root = cache_root or tmp_path / "cache"
        cache = EmbeddingCache(
            root / "embeddings", model_type="vit_t", checkpoint_id=checkpoint_fingerprint(mobilesam_checkpoint)
        )
        return ModelInfo(mobilesam_model, "vit_t", "cpu", Path(mobilesam_checkpoint), cache)

    return make


# --------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------


@pytest.fixture
def make_window(qtbot, _no_leaked_qt_work):
    """``make(folder=None, model_info=None, output=None, settings=None)`` -> a shown MainWindow; closed at teardown.

    ``settings`` (an :class:`annotator.ui.settings.Settings`) defaults to the test's private settings file.
    """
    from annotator.ui.main_window import MainWindow

    windows = []

    def make(folder: Optional[Path] = None, model_info=None, output: Optional[Path] = None, settings=None):
        window = MainWindow(settings=settings)
        windows.append(window)
        qtbot.addWidget(window)
        window.resize(1000, 750)
        window.show()
        qtbot.waitExposed(window)
        if model_info is not None:
            with qtbot.waitSignal(window.session.modelChanged, timeout=30_000):
                window.use_model(model_info)
        if folder is not None:
            assert window.open_folder(folder, output)
        return window

    yield make
    for window in windows:
        close_window(window)


def close_window(window) -> None:
    """Close like a user would (saves, joins the worker threads); safe to call twice."""
    import shiboken6

    if shiboken6.isValid(window) and not window.session._closed:
        window.close()


def click_image(qtbot, window, x: float, y: float, button=None, modifier=None) -> None:
    """Click the canvas at image coordinates ``(x, y)`` (pixel centres at integers)."""
    from PySide6.QtCore import Qt

    canvas = window.canvas
    pos = canvas.viewport_pos(x, y).toPoint()
    qtbot.mouseClick(
        canvas.viewport(),
        button or Qt.MouseButton.LeftButton,
        modifier or Qt.KeyboardModifier.NoModifier,
        pos,
    )


def drag_image(qtbot, window, x0: float, y0: float, x1: float, y1: float) -> None:
    """Left-drag on the canvas from image ``(x0, y0)`` to ``(x1, y1)``."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    canvas = window.canvas
    vp = canvas.viewport()
    a, b = canvas.viewport_pos(x0, y0), canvas.viewport_pos(x1, y1)
    left, no = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier

    def send(kind, pos: QPointF, buttons):
        ev = QMouseEvent(kind, pos, vp.mapToGlobal(pos), left, buttons, no)
        QApplication.sendEvent(vp, ev)

    send(QMouseEvent.Type.MouseButtonPress, a, left)
    for t in (0.25, 0.5, 0.75, 1.0):
        send(QMouseEvent.Type.MouseMove, a + (b - a) * t, left)
    send(QMouseEvent.Type.MouseButtonRelease, b, Qt.MouseButton.NoButton)


def key(qtbot, window, k, modifier=None) -> None:
    """Press a key with the canvas focused (as a user would: shortcuts are window-wide)."""
    from PySide6.QtCore import Qt

    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, k, modifier or Qt.KeyboardModifier.NoModifier)


@pytest.fixture
def gui_helpers():
    """The click/drag/key helpers, for tests that prefer a fixture to an import."""
    return {"click": click_image, "drag": drag_image, "key": key}
