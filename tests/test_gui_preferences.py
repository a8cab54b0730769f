"""Preferences, logs and help in the real window (fake predictor: fast, no weights).

* Edit → Preferences changes a key of the running window, the F1 help shows it, and it persists;
* the mask opacity reaches candidate and annotation fills (outlines stay);
* autosave off: nothing is written until the image, the folder or the window changes;
* the command line beats the preferences, which beat the defaults;
* "Clear embedding cache" deletes the embedding files and nothing else;
* an uncaught error on a worker thread shows a dialog with the log file's path;
* Help → About and Help → Open Log Folder.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTextBrowser
from qt_fixtures import FakePredictor, click_image, close_window, fake_info, key

from annotator.ui.settings import Settings

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton


def _ready(qtbot, w, timeout=10_000):
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=timeout)


def _candidates(qtbot, w, timeout=10_000):
    s = w.session
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=timeout)
    return s.result


@pytest.fixture
def ini(tmp_path) -> Path:
    return tmp_path / "prefs.ini"


@pytest.fixture
def window(make_window, image_folder, tmp_path, ini):
    def make(settings=None, folder=image_folder):
        w = make_window(folder, fake_info(FakePredictor(), tmp_path / "cache"), settings=settings or Settings(ini))
        return w

    return make


def test_preferences_change_a_key_of_the_window_and_the_help_and_it_persists(qtbot, window, ini):
    w = window()
    _ready(qtbot, w)
    s = w.session
    assert w.actions_by_name["preferences"].shortcut().toString() == "Ctrl+,"
    key(qtbot, w, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.app_dialogs.preferences_dialog is not None and w.app_dialogs.preferences_dialog.isVisible())
    dialog = w.app_dialogs.preferences_dialog
    assert dialog.windowModality() == Qt.WindowModality.WindowModal  # open(), not exec(): no nested event loop
    dialog.set_keys("next_image", ["N"])
    dialog.opacity_slider.setValue(80)
    dialog.autosave_check.setChecked(False)
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert not dialog.isVisible()

    # in effect at once: N moves on, D does not; opacity and autosave reached the session
    assert s.opacity == pytest.approx(0.8) and s.autosave is False
    key(qtbot, w, Qt.Key.Key_N)
    assert s.index == 1
    key(qtbot, w, Qt.Key.Key_D)
    assert s.index == 1
    key(qtbot, w, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: w.app_dialogs.help_dialog.isVisible())
    shown = w.app_dialogs.help_dialog.findChild(QTextBrowser, "helpText").toPlainText()
    assert "Show the next image" in shown
    lines = [line.strip() for line in shown.splitlines() if line.strip()]
    keys_cell = lines[lines.index("Show the next image") - 1]  # the table's cells come one per line
    assert keys_cell == "N"
    w.app_dialogs.help_dialog.close()

    # persisted, and a new window starts with it
    assert Settings(ini).shortcuts == {"next_image": ("N",)}
    close_window(w)
    w2 = window(Settings(ini))
    assert [k.toString() for k in w2.actions_by_name["next_image"].shortcuts()] == ["N"]
    assert w2.session.opacity == pytest.approx(0.8) and w2.session.autosave is False


def _alpha(image, x, y) -> int:
    return image.pixelColor(x, y).alpha()


def test_opacity_reaches_candidate_and_annotation_fills_but_not_outlines(qtbot, window, ini):
    st = Settings(ini)
    st.overlay_opacity = 0.9
    w = window(st)
    _ready(qtbot, w)
    s = w.session
    click_image(qtbot, w, 256, 256)
    res = _candidates(qtbot, w)
    centre = res.overlays[0].width() // 2, res.overlays[0].height() // 2
    assert _alpha(res.overlays[0], *centre) == round(255 * 0.9)
    s.set_opacity(0.2)  # a re-render at the new opacity follows
    qtbot.waitUntil(lambda: s.result is not res and s.result is not None)
    overlay = s.result.overlays[0]
    assert _alpha(overlay, *centre) == round(255 * 0.2)
    assert not overlay.outline.isEmpty() and overlay.edge_color == (255, 255, 255)  # drawn opaque, as a path

    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(w.canvas.overlays.annotation_items) == 1, timeout=10_000)
    item = next(iter(w.canvas.overlays.annotation_items.values()))
    img = item.pixmap().toImage()
    inner = _alpha(img, img.width() // 2, img.height() // 2)
    s.set_opacity(0.0)
    img0 = next(iter(w.canvas.overlays.annotation_items.values())).pixmap().toImage()
    assert inner > 0 and _alpha(img0, img0.width() // 2, img0.height() // 2) == 0
    item0 = next(iter(w.canvas.overlays.annotation_items.values()))
    assert not item0.outline.isEmpty() and item0.outline_pen.color().alpha() == 255 and item0.outline_pen.isCosmetic()


def test_autosave_off_saves_only_on_image_change_and_close(qtbot, window, ini, image_folder):
    st = Settings(ini)
    st.autosave = False
    w = window(st)
    _ready(qtbot, w)
    s = w.session
    working = image_folder / "annotations.json"
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting)
    # an accept is saved at once (not debounced) when autosave is on, and no save is scheduled for later
    assert len(s.dataset.annotations) == 1 and s.dirty and not working.exists() and not s.edits.save_pending
    assert w.windowTitle().startswith("*")
    key(qtbot, w, Qt.Key.Key_D)  # the image changes: saved
    assert working.exists() and not s.dirty
    _ready(qtbot, w)
    click_image(qtbot, w, 200, 150)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting)
    assert s.dirty
    close_window(w)  # quitting saves
    from annotator.data.document import Dataset

    assert len(Dataset.open(working).annotations) == 2


def test_command_line_beats_preferences_beat_defaults(ini, tmp_path, monkeypatch):
    from annotator.ui import app

    monkeypatch.delenv("SAM_ANNOTATOR_CACHE", raising=False)
    st = Settings(ini)
    plain = app.model_request(app.parse_args([]), st)
    assert (plain.model_type, plain.device, plain.cache_root, plain.disk_bytes) == (None, "auto", None, None)
    st.model, st.device, st.cache_dir, st.cache_disk_mb, st.cache_memory_mb = "vit_b", "cpu", str(tmp_path), 100, 64
    prefs = app.model_request(app.parse_args([]), st)
    assert (prefs.model_type, prefs.device, prefs.cache_root) == ("vit_b", "cpu", tmp_path)
    assert prefs.disk_bytes == 100 * 2**20 and prefs.memory_bytes == 64 * 2**20
    other = tmp_path / "other"
    cli = app.model_request(app.parse_args(["--model", "vit_t", "--device", "cuda", "--cache-dir", str(other)]), st)
    assert (cli.model_type, cli.device, cli.cache_root) == ("vit_t", "cuda", other)
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"x")
    from_file = app.model_request(app.parse_args(["--checkpoint", str(ckpt)]), st)
    assert from_file.model_type is None and from_file.checkpoint == ckpt  # the file says which model it is
    monkeypatch.setenv("SAM_ANNOTATOR_CACHE", str(other))
    assert app.model_request(app.parse_args([]), st).cache_root is None  # the environment beats the preferences


def test_clear_embedding_cache_deletes_embeddings_only(qtbot, window, ini, tmp_path):
    w = window()
    _ready(qtbot, w)
    qtbot.waitUntil(lambda: w.session.encoder_idle, timeout=10_000)  # the prefetch is written too
    emb = tmp_path / "cache" / "embeddings"
    files = list(emb.rglob("*.samemb"))
    assert files
    keep = tmp_path / "cache" / "embeddings" / "notes.txt"
    keep.write_text("mine")
    weights = tmp_path / "cache" / "checkpoints" / "w.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"w")
    message = w.app_dialogs.clear_embedding_cache()
    assert f"Deleted {len(files)} embedding" in message
    assert not list(emb.rglob("*.samemb")) and keep.exists() and weights.exists()
    assert w.session.encoder.cache.memory_keys() == []
    # the button of the dialog calls it
    w.app_dialogs.show_preferences()
    d = w.app_dialogs.preferences_dialog
    qtbot.mouseClick(d.clear_cache_button, LEFT)
    assert d.clear_cache_status.text().startswith("Deleted 0 embedding")
    d.reject()


def test_error_on_a_worker_thread_shows_a_dialog_with_the_log_path(qtbot, window, tmp_path):
    from annotator.data import logs

    w = window()
    old_hooks = (__import__("sys").excepthook, threading.excepthook)
    logs.install_excepthook(w.show_error)
    try:
        def boom():
            raise RuntimeError("the worker tripped")

        t = threading.Thread(target=boom)
        t.start()
        t.join()
        qtbot.waitUntil(lambda: w.app_dialogs.error_box is not None and w.app_dialogs.error_box.isVisible(), timeout=5000)
    finally:
        __import__("sys").excepthook, threading.excepthook = old_hooks
    box = w.app_dialogs.error_box
    assert "RuntimeError: the worker tripped" in box.text()
    assert str(logs.log_path()) in box.informativeText()
    assert "boom" in box.detailedText()  # the traceback
    assert "the worker tripped" in w.statusBar().currentMessage()
    w.show_error("ValueError: second", "details 2")  # a second one joins the open box
    qtbot.waitUntil(lambda: box.count == 2)
    assert "1 more" in box.text()
    box.close()


def test_about_and_log_folder(qtbot, window, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    from annotator import __version__

    from annotator.data import logs

    w = window()
    key_rows = dict(w.app_dialogs.about_rows())
    assert key_rows["Version"] == __version__ and key_rows["Model"] == "fake" and key_rows["Device"] == "cpu"
    assert key_rows["Log file"] == str(logs.log_path())
    w.app_dialogs.show_about()
    assert __version__ in w.app_dialogs.about_box.text() and str(logs.log_path()) in w.app_dialogs.about_box.text()
    w.app_dialogs.about_box.close()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    w.actions_by_name["open_log_folder"].trigger()
    assert opened and Path(opened[0].toLocalFile()) == logs.log_dir() and logs.log_dir().is_dir()
