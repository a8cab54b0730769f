"""A labeler's day, the screen (issue 16): category names in the menu, the cursor position, category lists,
embeddings written by a parallel ``sam-annotator encode``.

Drives the real window with :class:`qt_fixtures.FakePredictor` in place of SAM.
"""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, fake_info, key

from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


@pytest.fixture
def window(make_window, image_folder, tmp_path):
    def make(**kw):
        pred = FakePredictor()
        w = make_window(image_folder, fake_info(pred, tmp_path / "cache"), **kw)
        w.fake = pred
        w.interactive = False
        return w

    return make


def _menu_entries(w):
    menu = next(m for m in w.menuBar().findChildren(type(w.menuBar().actions()[0].menu()))
                if m.title().replace("&", "") == "Categories")
    return [a.text() for a in menu.actions() if a.isVisible() and not a.isSeparator()]


def test_categories_menu_shows_names_and_follows_edits(qtbot, window):
    w = window()
    s = w.session
    a = w.actions_by_name
    assert a["category_1"].text() == "object" and a["category_1"].isVisible()
    assert not any(a[f"category_{i}"].isVisible() for i in range(2, 10))
    assert s.add_category("Cat & dog")
    assert s.add_category("tree")
    assert a["category_2"].text() == "Cat && dog"  # shown as "Cat & dog", no mnemonic
    assert a["category_3"].text() == "tree" and a["category_3"].isVisible()
    assert [k.toString() for k in a["category_3"].shortcuts()] == ["Ctrl+3"]
    entries = _menu_entries(w)
    assert entries[:3] == ["object", "Cat && dog", "tree"] and not any(e.startswith("Category ") for e in entries)
    tree = s.dataset.category_by_name("tree")
    s.rename_category(tree.id, "oak")
    assert a["category_3"].text() == "oak"
    s.delete_category(s.dataset.category_by_name("Cat & dog").id, reassign_to=None)
    assert a["category_2"].text() == "oak" and not a["category_3"].isVisible()
    key(qtbot, w, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert s.dataset.categories[s.category_id].name == "oak"
    # the panel shows the key actually bound
    assert [r.quick_key for r in w.categories._rows] == ["Ctrl+1", "Ctrl+2"]


def test_panel_shows_rebound_quick_keys(qtbot, window):
    w = window()
    w.settings.shortcuts = {"category_1": ("Alt+1",)}
    w.apply_settings()  # what the preferences dialog's OK does
    assert [k.toString() for k in w.actions_by_name["category_1"].shortcuts()] == ["Alt+1"]
    assert w.categories._rows[0].quick_key == "Alt+1"
    assert "Alt+1" in w.categories.list.item(0).text()


def test_status_bar_cursor_position_is_cleared_on_image_switch(qtbot, window):
    w = window()
    c = w.canvas
    qtbot.waitUntil(lambda: c.image_size is not None)
    qtbot.mouseMove(c.viewport(), c.viewport_pos(100, 120).toPoint())
    qtbot.waitUntil(lambda: w.position_label.text() != "")
    assert w.position_label.text() == "x 100  y 120"
    first = c.image_size
    w.session.next_image()
    qtbot.waitUntil(lambda: c.image_size != first)
    assert w.position_label.text() == ""


# -- category lists ---------------------------------------------------------------------------


def test_load_a_text_list_keeps_names_present_and_reports_bad_lines(qtbot, window, tmp_path):
    w = window()
    s = w.session
    listing = tmp_path / "classes.txt"
    listing.write_text("# our classes\nperson\n\n  object \ncar\nperson\nbad\tline\n" + "x" * 300 + "\n",
                       encoding="utf-8")
    messages = []
    s.statusMessage.connect(lambda text, _ms: messages.append(text))
    added, kept, problems = w.category_loading.load(listing)
    assert added == ["person", "car"] and kept == ["object"]
    assert [p.split(":")[0] for p in problems] == ["line 6", "line 7", "line 8"]
    assert [r.name for r in s.category_rows()] == ["object", "person", "car"]
    assert "2 categories added from classes.txt, 1 already there; 3 line(s) not used" in messages
    # one undo step takes the whole list back; loading again adds nothing
    s.undo()
    assert [r.name for r in s.category_rows()] == ["object"]
    s.redo()
    assert w.category_loading.load(listing)[0] == []
    assert [r.name for r in s.category_rows()] == ["object", "person", "car"]


def test_load_categories_of_a_coco_file_in_id_order_with_colours(qtbot, window, tmp_path):
    w = window()
    coco = tmp_path / "other.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 7, "name": "zebra", "color": [1, 2, 3]}, {"id": 2, "name": "ant"}, {"id": 3}]}))
    added, kept, problems = w.category_loading.load(coco)
    assert added == ["ant", "zebra"] and problems == ["categories[2]: no name"]
    ds = w.session.dataset
    assert ds.category_by_name("zebra").color == (1, 2, 3)
    messages = []
    w.session.statusMessage.connect(lambda text, _ms: messages.append(text))
    bad = tmp_path / "broken.json"
    bad.write_text("{ not json")
    assert w.category_loading.load(bad) is None
    assert messages and messages[-1].startswith("Categories not loaded: broken.json: not valid JSON")


def test_categories_option_applies_once_the_folder_is_open(qtbot, make_window, image_folder, tmp_path):
    from annotator.ui.app import parse_args

    listing = tmp_path / "classes.txt"
    listing.write_text("cat\ndog\n")
    args = parse_args(["--categories", str(listing), str(image_folder)])
    assert args.categories == listing and args.image_dir == image_folder
    w = make_window()
    w.interactive = False
    w.start(args.image_dir, args.output, None, categories=args.categories)
    assert [r.name for r in w.session.category_rows()] == ["object", "cat", "dog"]
    with pytest.raises(SystemExit):
        parse_args(["--categories", str(tmp_path / "missing.txt"), str(image_folder)])


def test_categories_option_before_a_folder_waits_for_it(qtbot, make_window, image_folder, tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_text("cat\n")
    w = make_window()
    w.interactive = False
    w.start(None, None, None, categories=listing)
    assert w.session.dataset is None
    assert w.open_folder(image_folder)
    assert [r.name for r in w.session.category_rows()] == ["object", "cat"]


# -- a parallel `sam-annotator encode` ----------------------------------------------------------


def test_embeddings_written_by_a_parallel_encode_are_picked_up(qtbot, window, image_folder, tmp_path):
    from sam_core import EmbeddingCache

    from annotator.commands.encode import encode_folder

    w = window()
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    nav = s.images
    third = nav.paths[2]
    qtbot.waitUntil(lambda: not s.encoder.busy, timeout=10_000)  # the prefetch of the second image is done
    assert s.image_row(2).state == ImageState.UNKNOWN
    encoded_before = list(w.fake.encoded)
    # another process: its own cache object over the same folder, the encode command's own code path
    other = FakePredictor()
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings", model_type="fake", checkpoint_id="fake-1", disk=True)
    summary = encode_folder([third], other, cache)
    assert summary.encoded == 1 and len(other.encoded) == 1
    # the list notices without a reopen (the periodic look-up, made quick here)
    nav._ready_timer.setInterval(50)
    qtbot.waitUntil(lambda: s.image_row(2).state == ImageState.READY, timeout=10_000)
    nav._ready_timer.setInterval(20_000)
    started = []
    s.encoder.encodeStarted.connect(started.append)
    s.go_to(2)
    qtbot.waitUntil(lambda: s.embedding is not None and nav.current_path == third, timeout=10_000)
    assert started == [] and w.fake.encoded == encoded_before  # no encode ran for it


def test_a_refresh_while_a_look_is_out_waits_for_its_answer(qtbot, window, image_folder, tmp_path, monkeypatch):
    """On a slow disk a look may outlast the refresh period: superseding it each time would drop every answer."""
    from sam_core import EmbeddingCache

    from annotator.commands.encode import encode_folder

    w = window()
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    qtbot.waitUntil(lambda: not s.encoder.busy, timeout=10_000)
    nav = s.images
    third = nav.paths[2]
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings", model_type="fake", checkpoint_id="fake-1", disk=True)
    assert encode_folder([third], FakePredictor(), cache).encoded == 1
    looks = []
    scan = s.encoder.scan_cached
    monkeypatch.setattr(s.encoder, "scan_cached", lambda *a: looks.append(a) or scan(*a))
    nav.refresh_ready()
    nav.refresh_ready()  # its answer cannot have arrived: this thread has not returned to the event loop
    assert len(looks) == 1
    qtbot.waitUntil(lambda: s.image_row(2).state == ImageState.READY, timeout=10_000)
    nav.refresh_ready()  # answered: a new look may start (some images are still not known ready)
    assert len(looks) == 2


def test_a_colour_close_to_a_reserved_one_asks_before_it_is_used(qtbot, window, monkeypatch):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QColorDialog, QMessageBox

    w = window()
    s = w.session
    cat = next(iter(s.dataset.categories.values()))
    panel = w.categories
    asked = []
    answer = [QMessageBox.StandardButton.No]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: asked.append(a[2]) or answer[0]))
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor(250, 245, 10)))  # ~ selection
    panel.recolor(cat.id)
    assert len(asked) == 1 and "selected annotation" in asked[0]
    assert tuple(s.dataset.categories[cat.id].color) != (250, 245, 10)  # No: the colour is not taken
    answer[0] = QMessageBox.StandardButton.Yes
    panel.recolor(cat.id)
    qtbot.waitUntil(lambda: tuple(s.dataset.categories[cat.id].color) == (250, 245, 10), timeout=5000)
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor(200, 40, 90)))
    panel.recolor(cat.id)  # far from every reserved colour: no question
    assert len(asked) == 2
    qtbot.waitUntil(lambda: tuple(s.dataset.categories[cat.id].color) == (200, 40, 90), timeout=5000)
