"""Drive the real application in a subprocess, for the crash-safety test (tests/test_gui_crash.py).

Usage::

    python tests/gui_driver.py annotate -- IMAGE_DIR [sam-annotator options]
    python tests/gui_driver.py report   -- IMAGE_DIR [sam-annotator options]

Both run :func:`annotator.ui.app.main` (the same code path as ``sam-annotator``)
and steer the window from a QTimer, as a user would: mouse clicks on the
canvas at image coordinates and key presses.

``annotate`` accepts an annotation at each of :data:`CLICKS` (moving to the
next image with D where the list says so) and prints ``ACCEPTED <id>`` after
each accept, then ``DONE``, and waits to be killed. ``report`` prints
``REPORT <json>`` with the annotations the window loaded, then closes the
window (the app exits).
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


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[argv.index("--") + 1 :]
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from annotator.ui import app

    QApplication.instance() or QApplication([sys.argv[0]])
    driver = Annotate() if mode == "annotate" else Report()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(driver.tick)
    timer.start()
    return app.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
