"""Take the README's screenshot (``docs/screenshot.png``) of the real window, with the real MobileSAM.

Run under a virtual X server, so the window is drawn by the xcb platform as
users see it::

    xvfb-run -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb python docs/screenshot.py docs/screenshot.png

It builds a folder of three ``skimage.data`` photos, loads a list of
categories, accepts the astronaut as ``person``, then clicks the helmet with
``helmet`` current so that its three candidates show, and grabs the screen.
With a second path it then takes the eraser (E) and drags a stroke across the
candidate's leak into the background, grabbing the screen mid-stroke (the
README's "Fixing a mask")::

    ... python docs/screenshot.py docs/screenshot.png docs/screenshot-editing.png

Look at the PNGs before committing them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def wait_until(app, condition, timeout_s: float = 120.0) -> None:
    t0 = time.monotonic()
    while not condition():
        app.processEvents()
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("the window did not get there in time")
        time.sleep(0.01)


def settle(app, seconds: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def drag(window, app, points, release: bool) -> None:
    """Press at the first point, move through the others with the left button held (release at the end if asked)."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent

    vp = window.canvas.viewport()

    def send(kind, x, y, buttons):
        pos = QPointF(window.canvas.viewport_pos(x, y))
        QApplication.sendEvent(vp, QMouseEvent(kind, pos, vp.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
                                               Qt.KeyboardModifier.NoModifier))
        app.processEvents()

    from PySide6.QtWidgets import QApplication

    held = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, *points[0], held)
    for x, y in points[1:]:
        send(QEvent.Type.MouseMove, x, y, held)
    if release:
        send(QEvent.Type.MouseButtonRelease, *points[-1], Qt.MouseButton.NoButton)


def main(out: str, editing_out: str = "") -> int:
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from skimage import data

    from annotator.ui.app import configure_application
    from annotator.ui.main_window import MainWindow
    from annotator.ui.settings import Settings
    from annotator.workers.messages import ModelInfo
    from sam_core import EmbeddingCache, ensure_checkpoint, load_model
    from sam_core.cache import checkpoint_fingerprint

    app = QApplication.instance() or QApplication(["sam-annotator"])
    configure_application(app)
    work = Path(tempfile.mkdtemp(prefix="sam-annotator-shot-"))
    folder = work / "photos"
    folder.mkdir()
    for name, image in (("astronaut", data.astronaut()), ("chelsea", data.chelsea()), ("coffee", data.coffee())):
        Image.fromarray(image).save(folder / f"{name}.jpg", quality=92)
    (work / "classes.txt").write_text("person\nhelmet\nflag\nrocket\n")
    checkpoint = ensure_checkpoint("vit_t")
    model = load_model("vit_t", checkpoint=checkpoint, device="cpu")
    cache = EmbeddingCache(work / "cache" / "embeddings", model_type="vit_t",
                           checkpoint_id=checkpoint_fingerprint(checkpoint))

    window = MainWindow(settings=Settings(work / "settings.ini"))
    window.interactive = False
    screen = app.primaryScreen().geometry()
    window.setGeometry(screen)
    window.show()
    s = window.session
    window.use_model(ModelInfo(model, "vit_t", "cpu", Path(checkpoint), cache))
    wait_until(app, lambda: s.images.model_info is not None)
    window.start(folder, None, None, categories=work / "classes.txt")
    wait_until(app, lambda: s.embedding is not None)
    canvas = window.canvas

    def click(x, y):
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         canvas.viewport_pos(x, y).toPoint())
        wait_until(app, lambda: s.result is not None and s.result.prompt is s.prompt)

    s.set_current_category(s.dataset.category_by_name("person").id)
    click(220, 300)
    click(250, 140)
    s.accept()
    wait_until(app, lambda: not s.accepting and len(s.dataset.annotations) == 1)
    s.set_current_category(s.dataset.category_by_name("helmet").id)
    click(445, 420)
    canvas.setFocus()
    QTest.mouseMove(canvas.viewport(), canvas.viewport_pos(445, 420).toPoint())
    settle(app, 1.5)
    shot = app.primaryScreen().grabWindow(0)
    assert shot.save(out), f"could not write {out}"
    print(f"wrote {out} ({shot.width()}x{shot.height()})")
    if editing_out:
        window.tools.toggle(erase=True)  # E: the eraser, on the candidate
        for _ in range(3):
            window.tools.grow()  # ]: a larger brush, 10 -> about 20 px
        settle(app, 0.3)
        # one stroke back and forth over the candidate's leak at the helmet's right edge, grabbed before the release
        zigzag = [(470 + 40 * (i % 2), 440 + 5 * i) for i in range(15)]
        path = [zigzag[0]]
        for (x0, y0), (x1, y1) in zip(zigzag, zigzag[1:]):
            path += [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(1, 9)]
        drag(window, app, path, release=False)
        settle(app, 0.5)
        shot = app.primaryScreen().grabWindow(0)
        assert shot.save(editing_out), f"could not write {editing_out}"
        print(f"wrote {editing_out} ({shot.width()}x{shot.height()})")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:3] if len(sys.argv) > 1 else ["docs/screenshot.png"])))
