"""File → Export's folder picker for the folder formats opened in the images folder when no ``*_export`` folder
existed yet (found driving the real window): one OK exported YOLO labels and image copies among the photos. It
now opens in a sibling ``<images>_<format>_export`` folder, made for it and removed again if not used."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox
from qt_fixtures import FakePredictor, fake_info

from annotator.ui.format_dialogs import ExportChoice, ExportDialog

pytestmark = pytest.mark.gui


def _window(qtbot, make_window, folder, tmp_path):
    w = make_window(folder, fake_info(FakePredictor(), tmp_path / "cache"))
    w.session.add_category("thing")
    return w


def _export(monkeypatch, w, choice, answer):
    """Export ``choice``; the picker answers ``answer(start)``; returns the folders the picker opened in."""
    starts = []

    def pick(parent, caption, start, *a, **k):
        starts.append(start)
        return answer(start)

    monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(choice), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", pick)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: pytest.fail(f"export failed: {a[2]}"))
    w.actions_by_name["export_coco"].trigger()
    return starts


def test_the_picker_opens_in_a_sibling_of_the_images_folder_made_for_it(qtbot, make_window, image_folder,
                                                                        tmp_path, monkeypatch):
    w = _window(qtbot, make_window, image_folder, tmp_path)
    before = sorted(p.name for p in image_folder.iterdir())
    with qtbot.waitSignal(w.session.exportFinished, timeout=60_000):
        starts = _export(monkeypatch, w, ExportChoice("yolo-seg"), lambda start: start)  # OK at once
    sibling = image_folder.parent / f"{image_folder.name}_yolo_export"
    assert starts == [str(sibling)]
    assert (sibling / "data.yaml").is_file()
    assert sorted(p.name for p in image_folder.iterdir()) == before  # nothing written among the images

    # next time the same folder is offered again
    with qtbot.waitSignal(w.session.exportFinished, timeout=60_000):
        again = _export(monkeypatch, w, ExportChoice("yolo-seg"), lambda start: start)
    assert again == [str(sibling)]


def test_cancelling_or_choosing_elsewhere_leaves_no_empty_folder_behind(qtbot, make_window, image_folder, tmp_path,
                                                                         monkeypatch):
    w = _window(qtbot, make_window, image_folder, tmp_path)
    sibling = image_folder.parent / f"{image_folder.name}_voc_export"
    starts = _export(monkeypatch, w, ExportChoice("voc"), lambda start: "")  # cancelled
    assert starts == [str(sibling)] and not sibling.exists() and not w.session.exporting

    elsewhere = tmp_path / "chosen"
    elsewhere.mkdir()
    with qtbot.waitSignal(w.session.exportFinished, timeout=60_000):
        _export(monkeypatch, w, ExportChoice("voc"), lambda start: str(elsewhere))
    assert not sibling.exists() and any(elsewhere.iterdir())


def test_an_earlier_export_folder_beside_the_working_file_is_offered_again(qtbot, make_window, image_folder,
                                                                           tmp_path, monkeypatch):
    w = _window(qtbot, make_window, image_folder, tmp_path)
    earlier = image_folder / "labelme_export"  # where earlier versions suggested it: the user's choice then
    earlier.mkdir()
    starts = _export(monkeypatch, w, ExportChoice("labelme"), lambda start: "")
    assert starts == [str(earlier)]
    assert not (image_folder.parent / f"{image_folder.name}_labelme_export").exists()
