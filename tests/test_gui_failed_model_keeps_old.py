"""File → Load Checkpoint… with a file that is not one: the model in use stays, and the window says so.

Found under Xvfb: after the refusal the status bar said "no model" although the encoder went on with
MobileSAM (clicks still gave masks), so a user would restart or hunt for weights for nothing.
"""

from __future__ import annotations

import pytest
from qt_fixtures import FakePredictor, click_image, fake_info

from annotator.workers.messages import ModelRequest

pytestmark = pytest.mark.gui


def test_a_failed_load_keeps_the_model_in_use_and_says_so(qtbot, make_window, image_folder, tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    w.interactive = False  # the message goes to the status bar instead of a dialog
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    label = w.model_label.text()
    assert label == s.model_info.label
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"<html>not found</html>" * 100)
    with qtbot.waitSignal(s.modelFailed, timeout=60_000):
        w.model_dialogs.load(ModelRequest(checkpoint=bad, device="cpu", cache_root=tmp_path / "cache"))
    assert s.model_info is not None and w.model_label.text() == label
    assert f"still using {label}" in w.statusBar().currentMessage()
    click_image(qtbot, w, 100, 100)  # and it still answers clicks
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
