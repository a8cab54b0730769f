"""File → Export into the folder of the images (where the export's folder picker opens when no
``*_export`` folder exists yet). Found driving the real window under Xvfb:

* mask PNGs, one per image, into a folder of JPEGs were written beside the photos, so the next
  open listed every mask as an image to annotate (300 images became 600);
* an export the writers refuse (a source image, or a folder, where an output would go) said
  "ValueError: the export would …".
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox
from qt_fixtures import FakePredictor, click_image, fake_info, key

from annotator.data.imageio import list_images
from annotator.ui.format_dialogs import ExportChoice, ExportDialog

pytestmark = pytest.mark.gui


def _annotated_window(qtbot, make_window, folder, tmp_path):
    w = make_window(folder, fake_info(FakePredictor(), tmp_path / "cache"))
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    click_image(qtbot, w, 100, 100)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == 1, timeout=10_000)
    return w


def _export_into(qtbot, monkeypatch, w, choice, target):
    warned = []
    monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(choice), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(target))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: pytest.fail(f"exported: {a[2]}"))
    w.actions_by_name["export_coco"].trigger()
    qtbot.waitUntil(lambda: bool(warned) and not w.session.exporting, timeout=60_000)
    return warned


def test_one_mask_png_per_image_is_not_written_among_the_images(qtbot, make_window, image_folder, tmp_path,
                                                                monkeypatch):
    (image_folder / "02_chelsea.png").unlink()  # JPEGs only: no mask name meets an image's
    w = _annotated_window(qtbot, make_window, image_folder, tmp_path)
    before = sorted(p.name for p in image_folder.iterdir())
    warned = _export_into(qtbot, monkeypatch, w, ExportChoice("masks", masks_per_image=True), image_folder)
    assert "folder of the images" in warned[0] and "Nothing was written" in warned[0], warned
    assert sorted(p.name for p in image_folder.iterdir()) == before
    assert [p.name for p in list_images(image_folder)] == ["01_astronaut.jpg", "03_coffee.jpg"]

    # one PNG per annotation goes into sub-folders (never listed as images): still allowed there
    monkeypatch.undo()
    infos = []
    monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(ExportChoice("masks")), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(image_folder))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: pytest.fail(f"export failed: {a[2]}"))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: infos.append(a[2]))
    with qtbot.waitSignal(w.session.exportFinished, timeout=60_000):
        w.actions_by_name["export_coco"].trigger()
    assert (image_folder / "masks.csv").is_file()
    assert [p.name for p in list_images(image_folder)] == ["01_astronaut.jpg", "03_coffee.jpg"]


def test_an_export_the_writers_refuse_says_why_in_words(qtbot, make_window, image_folder, tmp_path, monkeypatch):
    w = _annotated_window(qtbot, make_window, image_folder, tmp_path)
    out = tmp_path / "out"
    (out / "01_astronaut.png").mkdir(parents=True)  # a folder where the image's mask PNG would go
    warned = _export_into(qtbot, monkeypatch, w, ExportChoice("masks", masks_per_image=True), out)
    assert not warned[0].startswith("ValueError"), warned[0]
    assert "would replace the folder" in warned[0] and "Nothing was written" in warned[0], warned[0]
    assert not w.statusBar().currentMessage().startswith("Export failed: ValueError")
    assert sorted(p.name for p in out.iterdir()) == ["01_astronaut.png"]
