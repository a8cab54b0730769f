"""A labeler's day in the window (issue 16): image states and negatives, the list's filter and counts,
"next to do", resuming where the user was, opening image files. Keys go through the window's shortcuts."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, fake_info, key

from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


def _shown(qtbot, w, index):
    qtbot.waitUntil(lambda: w.session.index == index and w.session.loaded is not None, timeout=30_000)


def _focus(qtbot, w):
    from PySide6.QtWidgets import QApplication

    w.activateWindow()  # the keys go to the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def _on_disk(path: Path) -> dict:
    return {img["file_name"]: img for img in json.loads(path.read_text())["images"]}


def _coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_mark_done_with_no_annotations_is_a_negative_pycocotools_reads(qtbot, make_window, image_folder):
    w = make_window(image_folder)
    s = w.session
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    working = s.dataset.path
    assert not working.exists()  # nothing marked, nothing annotated: no file yet

    panel = w.images
    panel.filter.setCurrentIndex(panel.filter.findData("todo"))
    assert panel.proxy.rowCount() == 3 and panel.proxy.mapToSource(panel.view.currentIndex()).row() == 0
    key(qtbot, w, Qt.Key.Key_C)  # done, no annotation: a negative
    assert _on_disk(working)["01_astronaut.jpg"]["state"] == "done"
    assert panel.proxy.rowCount() == 2 and not panel.view.currentIndex().isValid()  # no other row looks current
    panel.filter.setCurrentIndex(panel.filter.findData(""))
    assert panel.proxy.mapToSource(panel.view.currentIndex()).row() == 0
    assert not s.dirty and "negative" in w.statusBar().currentMessage()
    coco = _coco(working)
    (img,) = coco.loadImgs(coco.getImgIds())
    assert (img["file_name"], img["width"], img["height"]) == ("01_astronaut.jpg", 512, 512)
    assert coco.getAnnIds(imgIds=[img["id"]]) == []
    assert "✓" in w.images.model.data(w.images.model.index(0))  # the list shows it

    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 1)
    key(qtbot, w, Qt.Key.Key_S)  # skipped
    assert _on_disk(working)["02_chelsea.png"]["state"] == "skipped"

    # undo covers the states: the skip goes, then the done mark, and with it the negative's record
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert "02_chelsea.png" not in _on_disk(working)
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _on_disk(working) == {}
    assert s.states.progress(image_folder / "01_astronaut.jpg") == "todo"
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
    assert _on_disk(working)["01_astronaut.jpg"]["state"] == "done"

    # reopened: the states are read back
    w.close()
    w2 = make_window(image_folder)
    assert w2.session.states.progress(image_folder / "01_astronaut.jpg") == "done"
    assert w2.session.states.progress(image_folder / "02_chelsea.png") == "todo"


def test_accepting_lists_the_image_to_do_and_marking_done_keeps_its_annotation(qtbot, make_window, image_folder,
                                                                               tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    _focus(qtbot, w)
    click_image(qtbot, w, 100, 100)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == 1, timeout=10_000)
    assert _on_disk(s.dataset.path)["01_astronaut.jpg"]["state"] == "todo"  # annotated: to do until marked done
    assert w.images.counts()["todo"] == 3
    key(qtbot, w, Qt.Key.Key_C)
    assert _on_disk(s.dataset.path)["01_astronaut.jpg"]["state"] == "done"
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # back to to do; the annotation stays
    assert _on_disk(s.dataset.path)["01_astronaut.jpg"]["state"] == "todo"
    assert len(json.loads(s.dataset.path.read_text())["annotations"]) == 1


def _four_images(image_folder: Path) -> Path:
    (image_folder / "04_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return image_folder


def test_filter_counts_and_next_to_do(qtbot, make_window, image_folder):
    folder = _four_images(image_folder)
    # a working file from an earlier day: coffee annotated, no state (counts as to do until marked done)
    from annotator.data.coco import encode_mask

    mask = np.zeros((400, 600), bool)
    mask[100:200, 100:300] = True
    rle = encode_mask(mask)
    (folder / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "03_coffee.jpg", "width": 600, "height": 400}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 20000.0,
                         "bbox": [100.0, 100.0, 200.0, 100.0], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cup"}],
    }))
    w = make_window(folder)
    s, panel = w.session, w.images
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    key(qtbot, w, Qt.Key.Key_C)  # astronaut: done
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 1)
    key(qtbot, w, Qt.Key.Key_S)  # chelsea: skipped
    s.go_to(3)  # the broken file: unusable
    qtbot.waitUntil(lambda: s.image_row(3).state == ImageState.ERROR, timeout=30_000)

    assert panel.counts() == {"": 4, "todo": 1, "done": 1, "skipped": 1, "unusable": 1}
    texts = ["All (4)", "To do (1)", "Done (1)", "Skipped (1)", "Unusable (1)"]
    qtbot.waitUntil(lambda: [panel.filter.itemText(i) for i in range(panel.filter.count())] == texts, timeout=5000)
    assert panel.summary.text() == "1 of 4 images annotated, 1 negative(s)"

    panel.filter.setCurrentIndex(panel.filter.findData("todo"))
    assert panel.proxy.rowCount() == 1
    only = panel.proxy.index(0, 0)
    assert panel.proxy.data(only).startswith("03_coffee.jpg")
    with qtbot.waitSignal(panel.imageChosen) as chosen:
        panel.view.clicked.emit(only)
    assert chosen.args == [2]  # the row in the whole list, which the window shows
    _shown(qtbot, w, 2)
    assert panel.proxy.mapToSource(panel.view.currentIndex()).row() == 2
    panel.filter.setCurrentIndex(panel.filter.findData("unusable"))
    assert panel.proxy.rowCount() == 1 and not panel.view.currentIndex().isValid()  # coffee is not in this view
    panel.filter.setCurrentIndex(panel.filter.findData(""))
    assert panel.proxy.rowCount() == 4
    assert panel.proxy.mapToSource(panel.view.currentIndex()).row() == 2  # selected again

    # next to do: from the broken file it wraps past done, skipped (and the broken one) to coffee
    s.go_to(3)
    qtbot.waitUntil(lambda: s.index == 3 and s.image_row(3).state == ImageState.ERROR, timeout=30_000)
    key(qtbot, w, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    _shown(qtbot, w, 2)
    key(qtbot, w, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    assert s.index == 2 and "No other image to do" in w.statusBar().currentMessage()
    panel.filter.setCurrentIndex(panel.filter.findData("todo"))
    assert panel.view.currentIndex().isValid()
    key(qtbot, w, Qt.Key.Key_C)  # coffee done: it leaves the "to do" view at once
    assert panel.proxy.rowCount() == 0 and not panel.view.currentIndex().isValid()
    assert panel.counts() == {"": 4, "todo": 0, "done": 2, "skipped": 1, "unusable": 1}
    key(qtbot, w, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    assert s.index == 2 and "No image left to do" in w.statusBar().currentMessage()
    assert _on_disk(s.dataset.path)["03_coffee.jpg"]["state"] == "done"  # annotated and done: not a negative
    assert len(json.loads(s.dataset.path.read_text())["annotations"]) == 1


def test_reopening_a_folder_resumes_at_the_last_image_and_scrolls_to_it(qtbot, make_window, tmp_path, photos):
    from PIL import Image

    folder = tmp_path / "many"
    folder.mkdir()
    small = Image.fromarray(photos["coffee"]).resize((60, 40))
    for i in range(80):
        small.save(folder / f"img{i:03d}.png")
    w = make_window(folder)
    _shown(qtbot, w, 0)
    w.session.go_to(57)
    _shown(qtbot, w, 57)
    w.close()

    w2 = make_window(folder)
    _shown(qtbot, w2, 57)  # not the first image
    view = w2.images.view
    index = view.currentIndex()
    assert w2.images.proxy.mapToSource(index).row() == 57
    qtbot.waitUntil(lambda: view.viewport().rect().contains(view.visualRect(index)), timeout=5000)
    assert not view.viewport().rect().contains(view.visualRect(w2.images.proxy.index(0, 0)))  # it did scroll

    # another working file for the same folder keeps its own place
    w2.session.go_to(3)
    _shown(qtbot, w2, 3)
    assert w2.open_folder(folder, tmp_path / "other.json")
    _shown(qtbot, w2, 0)
    assert w2.open_folder(folder)
    _shown(qtbot, w2, 3)


def test_open_image_files_from_the_command_line_with_output(qtbot, make_window, image_folder, tmp_path):
    from annotator.ui.app import parse_args

    a, c = image_folder / "01_astronaut.jpg", image_folder / "03_coffee.jpg"
    out = tmp_path / "elsewhere" / "work.json"
    out.parent.mkdir()
    args = parse_args([str(c), "--output", str(out), str(a)])
    assert args.images == [c, a] and args.image_dir == image_folder
    w = make_window()
    w.start(args.image_dir, args.output, None, images=args.images)
    s = w.session
    assert s.paths == [c, a] and s.dataset.path == out  # just those, in the order given
    assert w.images.proxy.rowCount() == 2
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    key(qtbot, w, Qt.Key.Key_C)
    assert _on_disk(out) == {"../images/03_coffee.jpg": {"id": 1, "file_name": "../images/03_coffee.jpg",
                                                          "width": 600, "height": 400, "state": "done"}}
    assert not (image_folder / "annotations.json").exists()


def test_open_image_files_default_working_file_and_bad_arguments(qtbot, make_window, image_folder, tmp_path,
                                                                  capsys):
    from annotator.ui.app import parse_args

    b = image_folder / "02_chelsea.png"
    args = parse_args([str(b)])
    assert args.images == [b] and args.image_dir == image_folder and args.output is None
    w = make_window()
    w.start(args.image_dir, args.output, None, images=args.images)
    assert w.session.paths == [b] and w.session.dataset.path == image_folder / "annotations.json"

    assert parse_args([str(image_folder)]).images is None  # a folder: every image in it
    (tmp_path / "notes.txt").write_text("x")
    for bad, says in (
        ([str(image_folder), str(b)], "is a folder"),
        ([str(tmp_path / "missing.jpg")], "does not exist"),
        ([str(tmp_path / "notes.txt")], "not an image file"),
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert says in capsys.readouterr().err


def test_file_open_images_in_the_window(qtbot, make_window, image_folder, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    picked = [str(image_folder / "02_chelsea.png"), str(image_folder / "01_astronaut.jpg")]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: (picked, "")))
    w = make_window()
    w.actions_by_name["open_images"].trigger()
    assert w.session.paths == [Path(p) for p in picked]
    assert w.session.dataset.path == image_folder / "annotations.json"


def test_the_state_keys_are_in_the_help_and_clash_with_nothing():
    from annotator.ui import actions

    assert actions.conflicts() == []
    rows = {keys: what for _, keys, what in actions.help_rows()}
    assert "negative" in rows["C"] and "skipped" in rows["S"] and "to do" in rows["T"]
    assert "next image to do" in rows[actions.key_text("Shift+D")]


def test_a_negative_marked_with_autosave_off_is_saved_on_close(qtbot, make_window, image_folder):
    w = make_window(image_folder)
    s = w.session
    s.set_autosave(False)
    _shown(qtbot, w, 0)
    s.mark_image("done")
    assert s.dirty and not s.dataset.path.exists()
    w.close()  # the document holds no annotation, only the negative: it must still be written
    assert _on_disk(image_folder / "annotations.json")["01_astronaut.jpg"]["state"] == "done"


def test_the_list_counts_once_per_burst_of_row_changes(qtbot):
    """The cached-embeddings scan marks every row ready at once: the counts must not read every row per row."""
    from annotator.session.rows import ImageRow
    from annotator.ui.panels import ImageListPanel

    n, reads, ready = 2000, [], set()

    def row(i):
        reads.append(i)
        return ImageRow(Path(f"/x/{i}.jpg"), f"{i}.jpg", 0, ImageState.READY if i in ready else ImageState.ERROR)

    panel = ImageListPanel(lambda: n, row)
    qtbot.addWidget(panel)
    panel.reset()
    assert panel.filter.itemText(4) == f"Unusable ({n})"
    reads.clear()
    for i in range(n):
        ready.add(i)
        panel.refresh_row(i)
    qtbot.waitUntil(lambda: panel.filter.itemText(1) == f"To do ({n})", timeout=5000)
    assert len(reads) < 5 * n  # (one count per row change read n * n = 4,000,000 rows)


def test_undoing_a_mark_never_drops_an_annotated_image(qtbot, make_window, image_folder):
    w = make_window(image_folder)
    s = w.session
    _shown(qtbot, w, 0)
    s.mark_image("done")  # lists the image (it was not)
    ds = s.dataset
    rec = ds.image_by_name("01_astronaut.jpg")
    mask = np.zeros((rec.height, rec.width), bool)
    mask[5:50, 5:50] = True
    s.edits.apply_add_annotations([ds.make_annotation(rec.id, min(ds.categories), mask)])  # (not an undo step)
    s.undo()  # the mark goes; the image, annotated now, stays listed, to do
    assert ds.image_by_name("01_astronaut.jpg") is rec and rec.extra["state"] == "todo"
    assert _on_disk(ds.path)["01_astronaut.jpg"]["state"] == "todo"
    assert len(json.loads(ds.path.read_text())["annotations"]) == 1
