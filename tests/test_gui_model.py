"""Model loading from the window: in the background, with errors that offer a way out.

* a damaged or wrong checkpoint gives a dialog that offers another file (or
  the type the file really is), and choosing one loads it;
* a download shows a progress dialog whose Cancel stops it;
* without --model, on a CPU, MobileSAM is chosen.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from annotator.workers.messages import ModelRequest

pytestmark = [pytest.mark.gui]


def _answer_dialogs(monkeypatch, button_prefix: str, seen: list):
    """Make every QMessageBox press the button whose text starts with ``button_prefix``."""

    def fake_exec(box):
        seen.append((box.text(), box.detailedText(), [b.text() for b in box.buttons()]))
        for b in box.buttons():
            if b.text().startswith(button_prefix):
                b.click()
                break
        return 0

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)


@pytest.mark.weights
@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 1000, "truncated"])
def test_bad_checkpoint_offers_another_file(qtbot, make_window, image_folder, mobilesam_checkpoint, tmp_path,
                                            monkeypatch, content):
    bad = tmp_path / "bad.pt"
    if content == "truncated":
        bad.write_bytes(Path(mobilesam_checkpoint).read_bytes()[: 1 << 20])
    else:
        bad.write_bytes(content)
    seen = []
    _answer_dialogs(monkeypatch, "Choose Another File", seen)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(mobilesam_checkpoint), ""))
    w = make_window(image_folder)
    with qtbot.waitSignal(w.session.modelChanged, timeout=120_000):
        w.start(model=ModelRequest(model_type="vit_t", checkpoint=bad, device="cpu", cache_root=tmp_path / "c"))
    assert seen and "bad.pt" in seen[0][0] + seen[0][1]
    assert "Choose Another File…" in seen[0][2]
    assert w.session.model_info.model_type == "vit_t"
    assert w.model_label.text() == "vit_t on cpu"
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=180_000)


@pytest.mark.weights
@pytest.mark.slow
def test_wrong_model_type_offers_the_detected_one(qtbot, make_window, mobilesam_checkpoint, tmp_path, monkeypatch):
    seen = []
    _answer_dialogs(monkeypatch, "Load as vit_t", seen)
    w = make_window()
    with qtbot.waitSignal(w.session.modelChanged, timeout=180_000):
        w.start(model=ModelRequest(model_type="vit_b", checkpoint=Path(mobilesam_checkpoint), device="cpu",
                                   cache_root=tmp_path / "c"))
    assert "vit_b" in seen[0][0] + seen[0][1] and "Load as vit_t" in seen[0][2]
    assert w.session.model_info.model_type == "vit_t"


def test_download_progress_can_be_cancelled(qtbot, make_window, tmp_path, monkeypatch):
    import sam_core

    started = threading.Event()

    def fake_ensure(model_type, cache=None, progress=None, cancel=None, **kw):
        total = 40_000_000
        done = 0
        started.set()
        while not cancel.is_set():
            done = min(total, done + 1_000_000)
            if progress(done, total) is False:
                break
            cancel.wait(0.02)
        raise RuntimeError("cancelled by the user")  # what the real one raises is DownloadCancelled

    monkeypatch.setattr(sam_core, "ensure_checkpoint", fake_ensure)
    w = make_window()
    w.start(model=ModelRequest(model_type="vit_t", device="cpu", cache_root=tmp_path / "c"))
    qtbot.waitUntil(lambda: w.model_dialogs.progress is not None and w.model_dialogs.progress.isVisible(), timeout=60_000)
    qtbot.waitUntil(lambda: w.model_dialogs.progress.value() > 0)
    assert "MB" in w.model_dialogs.progress.labelText()
    from PySide6.QtWidgets import QPushButton

    with qtbot.waitSignal(w.session.modelFailed, timeout=10_000) as blocker:
        w.model_dialogs.progress.findChild(QPushButton).click()  # the dialog's Cancel button
    assert blocker.args[0].kind == "cancelled"
    assert w.model_dialogs.progress is None
    assert "cancelled" in w.statusBar().currentMessage().lower()
    assert w.session.model_info is None


@pytest.mark.weights
def test_default_model_on_cpu_is_mobilesam(qtbot, make_window, mobilesam_checkpoint, tmp_path):
    w = make_window()
    root = Path(mobilesam_checkpoint).parent.parent  # the cache root that holds the verified weights
    with qtbot.waitSignal(w.session.modelChanged, timeout=120_000) as blocker:
        w.start(model=ModelRequest(device="cpu", cache_root=root, disk_cache=False))
    info = blocker.args[0]
    assert info.model_type == "vit_t" and info.device == "cpu" and info.notice == ""
