"""The image memory budget in the window (issue 15): an image over it is refused from its header alone.

A tiny PNG whose header claims 10000 x 10000 pixels (a decompression bomb at
a 256 MB budget: about 0.9 GB to open) sits next to the current image: it is never decoded, not by
the prefetch and not when the user goes to it; going there says why (and
where the budget is set), and the window goes on working.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, fake_info, key

from annotator.data import imageio
from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


def _png_header_only(path, width, height):
    """A valid PNG header claiming ``width`` x ``height`` RGB, with almost no pixel data (a few hundred bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_an_image_over_the_budget_is_never_decoded_and_says_why(qtbot, make_window, image_folder, tmp_path,
                                                                monkeypatch):
    from annotator.ui.settings import Settings

    bomb = image_folder / "01b_bomb.png"  # right after 01_astronaut.jpg: the one the prefetch goes to
    _png_header_only(bomb, 10_000, 10_000)
    assert bomb.stat().st_size < 1000
    settings = Settings()
    settings.image_budget_mb = 256  # (the photos take under 100 MB)
    decoded = []
    real = imageio.load_image
    monkeypatch.setattr(imageio, "load_image", lambda path, **kw: decoded.append(path) or real(path, **kw))

    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"), settings=settings)
    s = w.session
    assert s.encoder.image_budget == 256 * 2**20
    assert [p.name for p in s.paths][:2] == ["01_astronaut.jpg", "01b_bomb.png"]
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    qtbot.waitUntil(lambda: s.image_row(1).state == ImageState.ERROR, timeout=10_000)  # the prefetch was refused
    assert "memory budget" in s.image_row(1).message and "Preferences" in s.image_row(1).message
    assert bomb not in decoded

    s.next_image()  # the user goes there: a message, nothing decoded
    qtbot.waitUntil(lambda: "memory budget" in w.statusBar().currentMessage(), timeout=10_000)
    message = w.statusBar().currentMessage()
    assert "01b_bomb.png" in message and "10000 x 10000" in message
    assert bomb not in decoded and s.embedding is None

    s.next_image()  # and the window still works
    qtbot.waitUntil(lambda: s.embedding is not None and s.current_path.name == "02_chelsea.png", timeout=10_000)
    click_image(qtbot, w, 200, 150)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == 1, timeout=10_000)
    assert bomb not in decoded


def test_moving_onto_an_image_right_after_its_prefetch_failed_gets_the_failure(qtbot, make_window, image_folder,
                                                                              tmp_path):
    """The user arrives between the prefetch's failure and the loader's 'done': the load runs again, no hang."""
    from annotator.ui.settings import Settings

    _png_header_only(image_folder / "01b_bomb.png", 10_000, 10_000)
    settings = Settings()
    settings.image_budget_mb = 256
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"), settings=settings)
    s = w.session
    moved = []

    def arrive(row: int) -> None:  # at once, inside the failure's report (before the loader's done)
        if row == 1 and s.image_row(1).state == ImageState.ERROR and not moved:
            moved.append(True)
            s.next_image()

    s.imageRowChanged.connect(arrive)
    qtbot.waitUntil(lambda: bool(moved), timeout=10_000)
    qtbot.waitUntil(lambda: "memory budget" in w.statusBar().currentMessage(), timeout=10_000)
    assert s.index == 1 and "01b_bomb.png" in w.statusBar().currentMessage()


def test_the_default_budget_is_a_share_of_the_memory(tmp_path):
    from annotator.data.memory import default_image_budget
    from annotator.ui.settings import Settings

    settings = Settings(tmp_path / "s.ini")
    assert settings.image_budget_mb == 0 and settings.image_budget_bytes() == default_image_budget()
    settings.image_budget_mb = 2048
    assert settings.image_budget_bytes() == 2048 * 2**20
    settings.qsettings.setValue("image_budget_mb", "-5")  # a bad stored value reads as the default
    assert settings.image_budget_mb == 0
