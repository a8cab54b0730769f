"""What the loader repaired is shown to the user once, when the folder opens (issue 15)."""

from __future__ import annotations

import json
import logging

import pytest
from qt_fixtures import FakePredictor, fake_info

pytestmark = pytest.mark.gui


def _file_with_a_huge_number(folder):
    coco = {
        "images": [{"id": 1, "file_name": "01_astronaut.jpg", "width": 512, "height": 512}],
        "categories": [{"id": 1, "name": "person", "supercategory": ""}],
        "annotations": [],
        "score": "__X__",
    }
    (folder / "annotations.json").write_text(json.dumps(coco).replace('"__X__"', "1e400"))


def test_load_notes_are_shown_once_on_open(qtbot, make_window, image_folder, tmp_path, caplog):
    _file_with_a_huge_number(image_folder)
    caplog.set_level(logging.WARNING, logger="annotator.ui.safety_dialogs")
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    qtbot.waitUntil(lambda: w.safety.notes_box is not None and w.safety.notes_box.isVisible(), timeout=5000)
    box = w.safety.notes_box
    assert "1 number(s) out of JSON's range" in box.detailedText()
    assert "annotations.json" in box.text()
    assert "1 number(s) out of JSON's range" in w.statusBar().currentMessage()
    assert any("out of JSON's range" in r.getMessage() for r in caplog.records)  # and in the log
    assert not box.isModal()
    box.close()
    qtbot.waitUntil(lambda: w.safety.notes_box is None or not w.safety.notes_box.isVisible(), timeout=5000)

    shown = []
    w.safety.notes_box = None
    w.session.folderChanged.connect(lambda: shown.append(w.session.dataset.load_notes))
    (image_folder / "annotations.json").unlink()
    assert w.open_folder(image_folder)  # a clean file: nothing to say
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=10_000)  # (the queued report ran before)
    assert shown == [[]] and w.safety.notes_box is None


def test_without_dialogs_the_notes_go_to_the_status_bar_and_the_log(qtbot, make_window, image_folder, tmp_path,
                                                                    caplog):
    _file_with_a_huge_number(image_folder)
    caplog.set_level(logging.WARNING, logger="annotator.ui.safety_dialogs")
    w = make_window(None, fake_info(FakePredictor(), tmp_path / "cache"))
    w.interactive = False
    assert w.open_folder(image_folder)
    qtbot.waitUntil(lambda: any("out of JSON's range" in r.getMessage() for r in caplog.records), timeout=5000)
    assert "1 number(s) out of JSON's range" in w.statusBar().currentMessage()
    assert w.safety.notes_box is None
