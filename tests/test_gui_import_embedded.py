"""File → Import of labelme files whose image exists only inside the JSON (``imageData``), through the window.

The data layer writes such an image next to its JSON file when the import is
applied. The window used to list it as "not in the open folder" and drop it;
now one written into the open folder counts as matched, joins the image list
and can be shown; undo deletes it again (if unchanged), redo writes it back.
Real photos (skimage), real PNG bytes embedded as labelme does (base64).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.data.document import Dataset
from test_gui_formats import _import

pytestmark = pytest.mark.gui


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _labelme_json(path: Path, image_name: str, data: bytes, label: str, box) -> None:
    """A labelme 5 file with one rectangle-shaped polygon and the image embedded (no image file beside it)."""
    x0, y0, x1, y1 = box
    h, w = Image.open(io.BytesIO(data)).size[::-1]
    doc = {"version": "5.4.1", "flags": {},
           "shapes": [{"label": label, "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "group_id": None,
                       "shape_type": "polygon", "flags": {}, "description": ""}],
           "imagePath": image_name, "imageData": base64.b64encode(data).decode("ascii"),
           "imageHeight": h, "imageWidth": w}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _names(s) -> list:
    return [p.name for p in s.paths]


def test_an_embedded_image_is_imported_listed_shown_and_undone(qtbot, make_window, image_folder, photos,
                                                                monkeypatch):
    mirror_bytes = _png(np.ascontiguousarray(photos["chelsea"][:, ::-1]))
    _labelme_json(image_folder / "02b_mirror.json", "02b_mirror.png", mirror_bytes, "cat", (150, 20, 300, 180))
    # one in a sub-folder: the window does not list sub-folders, so it is not imported, and the report says why
    _labelme_json(image_folder / "sub" / "other.json", "other.png", _png(photos["coffee"]), "cup", (10, 10, 90, 90))
    mirror = image_folder / "02b_mirror.png"
    w = make_window(image_folder)
    s = w.session
    assert _names(s) == ["01_astronaut.jpg", "02_chelsea.png", "03_coffee.jpg"] and s.index == 0

    result, (summary, lines, enabled) = _import(qtbot, w, monkeypatch, "labelme", image_folder)
    assert enabled and summary.startswith("1 image(s) of the open folder matched (0 with no objects: marked done), "
                                          "1 annotation(s) (1 only in the labelme files, 'imageData': written into "
                                          "the folder)")
    assert "sub/other.json: its image (only in the file, 'imageData') would be written to sub/other.png, " \
           "a sub-folder, which the window does not list; not imported" in lines
    assert not (image_folder / "sub" / "other.png").exists()

    # written, byte for byte, and in the list in folder order; the image on show stays on show
    assert mirror.read_bytes() == mirror_bytes
    assert _names(s) == ["01_astronaut.jpg", "02_chelsea.png", "02b_mirror.png", "03_coffee.jpg"]
    assert w.images.model.rowCount() == 4 and s.current_path.name == "01_astronaut.jpg" and s.index == 0
    assert w.images.view.currentIndex().row() == 0
    assert len(result.changes.annotations) == 1 and Dataset.open(s.dataset.path).image_by_name("02b_mirror.png")

    # it can be shown like any other, with its annotation
    w.images.imageChosen.emit(2)  # a click on its row
    qtbot.waitUntil(lambda: s.loaded is not None and s.loaded.path == mirror, timeout=30_000)
    assert (s.loaded.width, s.loaded.height) == (451, 300) and s.image_row(2).annotations == 1

    # Ctrl+Z on it: the records go, the file the import wrote goes, the window moves to the next image
    w.actions_by_name["undo"].trigger()
    assert not mirror.exists() and not s.dataset.annotations
    assert _names(s) == ["01_astronaut.jpg", "02_chelsea.png", "03_coffee.jpg"]
    assert s.current_path.name == "03_coffee.jpg" and w.images.model.rowCount() == 3
    assert w.images.view.currentIndex().row() == 2
    assert Dataset.open(s.dataset.path).image_by_name("02b_mirror.png") is None
    assert (image_folder / "02b_mirror.json").is_file()  # the source (which holds the image) is untouched

    # Ctrl+Shift+Z writes it again
    w.actions_by_name["redo"].trigger()
    assert mirror.read_bytes() == mirror_bytes and len(s.dataset.annotations) == 1
    assert _names(s)[2] == "02b_mirror.png" and s.current_path.name == "03_coffee.jpg" and s.index == 3

    # a file changed since the import wrote it is the user's: undo keeps it, and says so
    Image.fromarray(np.ascontiguousarray(photos["chelsea"][::-1])).save(mirror)
    changed = mirror.read_bytes()
    w.actions_by_name["undo"].trigger()
    assert mirror.read_bytes() == changed and "02b_mirror.png" in _names(s)
    assert "02b_mirror.png kept (changed since the import wrote it)" in w.statusBar().currentMessage()


def test_a_folder_of_only_labelme_files_gets_its_images_from_them(qtbot, make_window, tmp_path, photos,
                                                                  monkeypatch):
    """A folder holding only labelme JSON files with embedded images: nothing to show until the import writes them."""
    folder = tmp_path / "only-json"
    one, two = _png(photos["coffee"]), _png(photos["astronaut"])
    _labelme_json(folder / "b.json", "b.png", one, "cup", (200, 100, 400, 300))
    _labelme_json(folder / "a.json", "a.png", two, "person", (100, 20, 400, 500))
    w = make_window(folder)
    s = w.session
    assert s.image_count() == 0 and s.current_path is None
    _result, (summary, _lines, _enabled) = _import(qtbot, w, monkeypatch, "labelme", folder)
    assert summary.startswith("2 image(s) of the open folder matched")
    assert _names(s) == ["a.png", "b.png"] and w.images.model.rowCount() == 2
    assert s.current_path == folder / "a.png"  # shown at once, as opening a folder shows its first image
    qtbot.waitUntil(lambda: s.loaded is not None and s.loaded.path == folder / "a.png", timeout=30_000)
    w.actions_by_name["undo"].trigger()  # nothing left to show
    assert s.image_count() == 0 and s.current_path is None and s.loaded is None
    assert not (folder / "a.png").exists() and not (folder / "b.png").exists()
    w.actions_by_name["redo"].trigger()  # written again, listed again, the first shown
    assert (folder / "a.png").read_bytes() == two and (folder / "b.png").read_bytes() == one
    assert _names(s) == ["a.png", "b.png"] and s.current_path == folder / "a.png"
    # an image deleted by hand after the import: undo puts the list right, redo writes it back (its records need it)
    (folder / "b.png").unlink()
    w.actions_by_name["undo"].trigger()
    assert s.image_count() == 0 and not (folder / "a.png").exists()
    w.actions_by_name["redo"].trigger()
    assert (folder / "b.png").read_bytes() == one and _names(s) == ["a.png", "b.png"]


def test_the_images_are_written_on_the_import_thread_and_no_bytes_are_kept(qtbot, make_window, tmp_path, photos,
                                                                           monkeypatch):
    """The write (fsync per image) runs on the import thread; the GUI thread only adds records. The undo step
    keeps (path, digest), not the images: redo reads them from the JSON files again."""
    import threading

    from annotator.data.formats import importing
    from annotator.data.formats.plan import EmbeddedImage

    folder = tmp_path / "only-json"
    pictures = {f"{name}.png": _png(photos[name]) for name in ("astronaut", "coffee", "chelsea")}
    for name, data in pictures.items():
        _labelme_json(folder / name.replace(".png", ".json"), name, data, "thing", (20, 20, 120, 120))
    w = make_window(folder)
    s = w.session
    writers = []
    real_write = importing.atomic_write_bytes

    def recording(path, data, **kw):
        writers.append((Path(path).name, threading.current_thread()))
        return real_write(path, data, **kw)

    monkeypatch.setattr(importing, "atomic_write_bytes", recording)
    _result, (summary, _lines, _enabled) = _import(qtbot, w, monkeypatch, "labelme", folder)
    assert summary.startswith("3 image(s) of the open folder matched")
    assert sorted(name for name, _ in writers) == sorted(pictures)
    assert all(t is not threading.main_thread() for _, t in writers), writers
    assert all((folder / n).read_bytes() == d for n, d in pictures.items()) and len(s.dataset.annotations) == 3
    command = s.undo_stack.command(s.undo_stack.count() - 1)
    assert sorted(p.name for p, _ in command.written) == sorted(pictures)
    assert all(isinstance(e, EmbeddedImage) for _, e in command.written)
    assert not any(isinstance(v, (bytes, bytearray)) and len(v) > 1000 for v in vars(command).values())
    w.actions_by_name["undo"].trigger()
    assert not any((folder / n).exists() for n in pictures)
    # one JSON file changed after the import: redo says so and does not write another picture in its place
    _labelme_json(folder / "coffee.json", "coffee.png", _png(photos["chelsea"]), "thing", (20, 20, 120, 120))
    w.actions_by_name["redo"].trigger()
    assert (folder / "astronaut.png").read_bytes() == pictures["astronaut.png"] and not (folder / "coffee.png").exists()
    assert "coffee.png not written (coffee.json changed since the import read it)" in command.text()


def test_cancelling_the_write_deletes_the_images_and_adds_nothing(qtbot, make_window, tmp_path, photos, monkeypatch):
    import threading

    from annotator.data.formats import importing

    folder = tmp_path / "only-json"
    for name in ("astronaut", "coffee", "chelsea"):
        _labelme_json(folder / f"{name}.json", f"{name}.png", _png(photos[name]), "thing", (20, 20, 120, 120))
    w = make_window(folder)
    s = w.session
    go, writes = threading.Event(), []
    real_write = importing.atomic_write_bytes

    def held_after_the_first(path, data, **kw):
        if writes:
            go.wait(60)  # the test cancels while the second image is due
        done = real_write(path, data, **kw)
        writes.append(Path(path).name)  # (once the file is there)
        return done

    monkeypatch.setattr(importing, "atomic_write_bytes", held_after_the_first)
    from test_gui_formats import _answer_import

    _answer_import(monkeypatch, "labelme", folder)
    with qtbot.waitSignal(s.imports.importRunning, check_params_cb=lambda on: on, timeout=60_000):
        w.actions_by_name["import_labels"].trigger()
    qtbot.waitUntil(lambda: len(writes) == 1, timeout=60_000)  # the dialog was answered; the writing has begun
    assert s.imports.running and (folder / writes[0]).is_file() and s.undo_stack.count() == 0
    with qtbot.waitSignal(s.imports.importRunning, check_params_cb=lambda on: not on, timeout=60_000):
        s.imports.cancel()
        go.set()
    qtbot.waitUntil(lambda: not list(folder.glob("*.png")), timeout=60_000)
    assert s.undo_stack.count() == 0 and not s.dataset.images and not s.dataset.annotations
    assert s.image_count() == 0


def test_undo_keeps_a_written_image_whose_labelme_file_no_longer_holds_it(qtbot, make_window, image_folder, photos,
                                                                          monkeypatch):
    """Found in review: the labeler deletes the imported labelme file, then undoes the import. Deleting the
    written image would lose the only copy (redo could not write it again): it is kept, and undo says why."""
    data = _png(np.ascontiguousarray(photos["chelsea"][:, ::-1]))
    src = image_folder / "02b_mirror.json"
    _labelme_json(src, "02b_mirror.png", data, "cat", (150, 20, 300, 180))
    mirror = image_folder / "02b_mirror.png"
    w = make_window(image_folder)
    s = w.session
    _import(qtbot, w, monkeypatch, "labelme", image_folder)
    assert mirror.read_bytes() == data
    src.unlink()
    w.actions_by_name["undo"].trigger()
    assert mirror.read_bytes() == data
    assert "no longer holds it" in s.undo_stack.command(s.undo_stack.index()).text()
    w.actions_by_name["redo"].trigger()
    assert mirror.read_bytes() == data and "02b_mirror.png" in _names(s)


def test_many_written_images_join_the_list_in_folder_order(qtbot, make_window, image_folder):
    """The images an import writes are merged into the list in one pass (found in review: inserting each
    with a scan of the list took seconds for a thousand), in the order the folder lists them."""
    from annotator.data.imageio import list_images

    w = make_window(image_folder)
    nav = w.session.images
    before = list(nav.paths)
    new = [image_folder / f"img{i}.png" for i in (1000, 2, 10, 1, 999, 30)] + [image_folder / "zz.png"]
    new += [image_folder / f"b{i}.png" for i in range(600)]
    for p in new:
        Image.new("RGB", (4, 3)).save(p)
    added = nav.add_paths(new + new[:3])  # (twice: listed once)
    assert added == new
    assert nav.paths == list_images(image_folder) and set(before) <= set(nav.paths)
