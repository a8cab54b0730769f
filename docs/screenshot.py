"""Take the README's screenshot (``docs/screenshot.png``) of the real window, with the real MobileSAM.

Run under a virtual X server, so the window is drawn by the xcb platform as
users see it::

    xvfb-run -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb python docs/screenshot.py docs/screenshot.png

It builds a folder of three ``skimage.data`` photos, loads a list of
categories, accepts the astronaut as ``person``, then clicks the helmet with
``helmet`` current so that its three candidates show, and grabs the screen.
Look at the PNG before committing it.
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


def main(out: str) -> int:
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
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"))
