"""Actions on an image that cannot be used say why, instead of something wrong or nothing.

Found driving the real window on a folder with an empty and a truncated file:
on such an image Ctrl+E said "Open a folder of images first" (a folder was
open), B took the brush ("Brush on a new mask") though nothing can be painted,
and Enter did nothing without a word. Each now says "Cannot use <name>:
<reason>", as the status bar did when the image was shown. Fake predictor.
"""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import fake_info, key

from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


@pytest.fixture
def bad_folder(image_folder):
    shutil.copy(image_folder / "01_astronaut.jpg", image_folder / "00_ok.jpg")
    (image_folder / "00_zero.png").write_bytes(b"")  # after 00_ok.jpg in natural order
    return image_folder


def test_segment_everything_brush_and_enter_on_an_unusable_image_say_why(qtbot, make_window, bad_folder,
                                                                         fake_predictor, tmp_path):
    w = make_window(bad_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    bar = w.statusBar()
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    s.next_image()
    assert s.current_path.name == "00_zero.png"
    qtbot.waitUntil(lambda: s.images.image_row(1).state == ImageState.ERROR, timeout=30_000)
    assert bar.currentMessage().startswith("Cannot use 00_zero.png: ")

    for act in ("segment_everything", "accept"):
        bar.clearMessage()
        w.actions_by_name[act].trigger()
        assert bar.currentMessage().startswith("Cannot use 00_zero.png: "), (act, bar.currentMessage())
    assert not s.everything.running

    bar.clearMessage()
    key(qtbot, w, Qt.Key.Key_B)
    assert w.tools.mode == "prompt"
    assert bar.currentMessage().startswith("Cannot use 00_zero.png: ")

    # on a usable image the brush is taken as before
    s.previous_image()
    qtbot.waitUntil(lambda: s.loaded is not None, timeout=30_000)
    key(qtbot, w, Qt.Key.Key_B)
    assert w.tools.mode == "brush"


def test_the_strip_hint_gives_the_reason_instead_of_click_an_object(qtbot, make_window, bad_folder, fake_predictor,
                                                                     tmp_path):
    """Under an unusable image the strip said "Click an object…", which cannot work there: it says why instead."""
    from annotator.ui.main_window import STRIP_HINT

    w = make_window(bad_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    assert w.strip.hint.text() == STRIP_HINT
    s.next_image()
    qtbot.waitUntil(lambda: s.images.image_row(1).state == ImageState.ERROR, timeout=30_000)
    qtbot.waitUntil(lambda: w.strip.hint.text().startswith("Cannot use 00_zero.png: "), timeout=5_000)
    assert "Click an object" not in w.strip.hint.text() and w.strip.hint.isVisibleTo(w.strip)
    # a prompt change on it (Esc) does not bring the instructions back
    s.clear_prompts()
    assert w.strip.hint.text().startswith("Cannot use 00_zero.png: ")
    # back on a usable image: the instructions again
    s.previous_image()
    qtbot.waitUntil(lambda: w.strip.hint.text() == STRIP_HINT, timeout=30_000)
