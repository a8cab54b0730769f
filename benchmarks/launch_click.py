"""Child process of ``bench_startup.py --click``: launch the window on a folder and click once.

Starts exactly as ``sam-annotator FOLDER --model vit_t --device cpu`` does
(:func:`annotator.ui.app.main`'s steps), and prints, on stdout, lines
``t NAME SECONDS`` with ``time.monotonic()`` values (CLOCK_MONOTONIC is shared
by every process on the machine, so the parent subtracts its own clock at
spawn):

* ``shown``: the window's first event-loop turn after ``show()``;
* ``ready``: the model loaded and the first image's embedding on hand (from
  the disk cache when the folder was opened before);
* ``answered``: a left click sent at the image centre as soon as it is ready,
  and its best candidate's overlay set on the canvas and painted.

Then it exits with 0 (1 and a ``error ...`` line when something fails).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

TIMEOUT_S = 120.0


def main(folder: str) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from annotator.data.logs import setup_logging
    from annotator.ui.app import configure_application, model_request, parse_args

    args = parse_args([folder, "--model", "vit_t", "--device", "cpu"])
    setup_logging()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from annotator.ui.main_window import MainWindow
    from annotator.ui.settings import Settings

    configure_application(app)
    settings = Settings()
    window = MainWindow(settings=settings)
    window.interactive = False
    state = {"model": False, "embedding": False, "clicked": False, "code": 1}

    def mark(name: str) -> None:
        print(f"t {name} {time.monotonic():.6f}", flush=True)

    def finish(code: int, line: str = "") -> None:
        if line:
            print(line, flush=True)
        state["code"] = code
        window.close()
        app.exit(code)

    def overlay(image) -> None:
        if image is not None and state["clicked"]:
            window.canvas.viewport().repaint()
            mark("answered")
            finish(0)

    def maybe_click() -> None:
        if state["clicked"] or not (state["model"] and state["embedding"]):
            return
        mark("ready")
        state["clicked"] = True
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        h, w = window.session.images.embedding.original_size
        pos = window.canvas.viewport_pos(w / 2.0, h / 2.0).toPoint()
        QTest.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)

    def model_loaded(_info) -> None:
        state["model"] = True
        maybe_click()

    def embedding(_result) -> None:
        state["embedding"] = True
        maybe_click()

    window.session.modelChanged.connect(model_loaded)
    window.session.modelFailed.connect(lambda f: finish(1, f"error model: {f.message}"))
    window.session.images.embeddingArrived.connect(embedding)
    window.session.candidateOverlayChanged.connect(overlay)
    QTimer.singleShot(int(TIMEOUT_S * 1000), lambda: finish(1, "error timeout"))
    window.resize(1400, 900)
    window.show()
    QTimer.singleShot(0, lambda: mark("shown"))
    window.start(args.image_dir, args.output, model_request(args, settings))
    app.exec()
    return int(state["code"])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1]))
