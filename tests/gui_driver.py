"""Drive the real application in a subprocess, for the crash-safety test (tests/test_gui_crash.py).

Usage::

    python tests/gui_driver.py annotate -- IMAGE_DIR [sam-annotator options]
    python tests/gui_driver.py report   -- IMAGE_DIR [sam-annotator options]
    python tests/gui_driver.py chaos SEED -- IMAGE_DIR [sam-annotator options]

Both run :func:`annotator.ui.app.main` (the same code path as ``sam-annotator``)
and steer the window from a QTimer, as a user would: mouse clicks on the
canvas at image coordinates and key presses.

``annotate`` accepts an annotation at each of :data:`CLICKS` (moving to the
next image with D where the list says so) and prints ``ACCEPTED <id>`` after
each accept, then ``DONE``, and waits to be killed. ``report`` prints
``REPORT <json>`` with the annotations the window loaded, then closes the
window (the app exits).

``chaos`` (tests/test_gui_chaos.py) prints ``READY <json>`` (the annotation
ids the window loaded, whether it is read-only) once the first image is
encoded, then runs a random sequence (seeded by SEED) of accepts, undos and
image changes as fast as the window takes them, until it is killed. Every
write of the working file is reported around the real
:meth:`annotator.data.workfile.WorkingFile.write`: ``SAVING <sha256> <ids>``
before it starts and ``SAVED <sha256>`` once it returned, so the test knows
which file contents may be on disk after a kill -9.
"""

from __future__ import annotations

import json
import sys

#: (image index, x, y) of each click to accept, in image coordinates.
CLICKS = [(0, 260, 150), (0, 470, 440), (1, 230, 120)]


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _window():
    from PySide6.QtWidgets import QApplication

    from annotator.ui.main_window import MainWindow

    for w in QApplication.topLevelWidgets():
        if isinstance(w, MainWindow):
            return w
    return None


class Annotate:
    def __init__(self) -> None:
        self.step = 0
        self.phase = "wait-image"
        self.before: set = set()

    def tick(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        w = _window()
        if w is None or self.step >= len(CLICKS):
            return
        s = w.session
        index, x, y = CLICKS[self.step]
        if self.phase == "wait-image":
            if s.index != index:
                QTest.keyClick(w.canvas, Qt.Key.Key_D)
                return
            if s.embedding is None:
                return
            pos = w.canvas.viewport_pos(x, y).toPoint()
            QTest.mouseClick(w.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
            self.phase = "wait-mask"
        elif self.phase == "wait-mask":
            if s.result is None or s.result.prompt is not s.prompt:
                return
            self.before = set(s.dataset.annotations)
            QTest.keyClick(w.canvas, Qt.Key.Key_Return)
            self.phase = "wait-accept"
        elif self.phase == "wait-accept":
            if s.accepting:
                return  # its full-resolution mask is being computed
            for ann_id in sorted(set(s.dataset.annotations) - self.before):
                _say(f"ACCEPTED {ann_id}")
            self.step += 1
            self.phase = "wait-image"
            if self.step == len(CLICKS):
                _say("DONE")


class Report:
    def __init__(self) -> None:
        self.done = False

    def tick(self) -> None:
        w = _window()
        if w is None or self.done or w.session.dataset is None:
            return
        self.done = True
        ds = w.session.dataset
        anns = {
            str(a.id): {"image": ds.images[a.image_id].file_name, "category": ds.categories[a.category_id].name,
                        "area": a.area}
            for a in ds.annotations.values()
        }
        _say("REPORT " + json.dumps({"annotations": anns, "title": w.windowTitle()}))
        w.close()


class Chaos:
    """Random accept / undo / next-image steps, each issued as soon as the window can take it."""

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.ready = False
        self.phase = "choose"
        self.steps = 0

    def tick(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        w = _window()
        if w is None or w.session.dataset is None:
            return
        s = w.session
        if not self.ready:
            if s.embedding is None:
                return
            self.ready = True
            _say("READY " + json.dumps({"ids": sorted(s.dataset.annotations), "read_only": s.dataset.read_only}))
        if self.phase == "wait-mask":
            if s.result is None or s.result.prompt is not s.prompt:
                return
            QTest.keyClick(w.canvas, Qt.Key.Key_Return)  # accept: saved before the next step is taken
            self.phase = "choose"
            return
        if s.accepting or s.embedding is None:
            return  # (an image change waits for its embedding)
        self.steps += 1
        roll = self.rng.random()
        if roll < 0.55:
            loaded = s.loaded
            x, y = self.rng.uniform(0.1, 0.9) * loaded.width, self.rng.uniform(0.1, 0.9) * loaded.height
            pos = w.canvas.viewport_pos(x, y).toPoint()
            QTest.mouseClick(w.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
            self.phase = "wait-mask"
        elif roll < 0.75:
            QTest.keyClick(w.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        else:
            last = s.index + 1 >= s.image_count()
            QTest.keyClick(w.canvas, Qt.Key.Key_A if last else Qt.Key.Key_D)


def _report_writes() -> None:
    """Wrap the real working-file write to say what may be on disk (see the module notes)."""
    import hashlib

    from annotator.data.workfile import WorkingFile

    real = WorkingFile.write

    def write(self, data: bytes, *, force: bool = False):
        sha = hashlib.sha256(data).hexdigest()
        ids = sorted(a["id"] for a in json.loads(data)["annotations"])
        _say(f"SAVING {sha} {json.dumps(ids)}")
        out = real(self, data, force=force)
        _say(f"SAVED {sha}")
        return out

    WorkingFile.write = write


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[argv.index("--") + 1 :]
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from annotator.ui import app

    QApplication.instance() or QApplication([sys.argv[0]])
    if mode == "chaos":
        _report_writes()
        driver = Chaos(int(argv[1]))
    else:
        driver = Annotate() if mode == "annotate" else Report()
    timer = QTimer()
    timer.setInterval(20 if mode == "chaos" else 50)
    timer.timeout.connect(driver.tick)
    timer.start()
    return app.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
