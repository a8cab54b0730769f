"""Fifty categories in the window: quick keys, renaming onto another's name (the way users try to merge),
deleting with a move and its undo. Found driving the real window under Xvfb: the rename was refused with
"exists already" and no word of how to merge."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, fake_info, key

pytestmark = pytest.mark.gui


def test_fifty_categories_rename_onto_another_and_merge_by_delete(qtbot, make_window, image_folder, tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    s = w.session
    listing = tmp_path / "cats.txt"
    listing.write_text("".join(f"class_{i}\n" for i in range(1, 51)))
    added, _, _ = w.category_loading.load(listing)
    assert len(added) == 50 and w.categories.list.count() == 51
    rows = s.category_rows()
    assert [r.quick_key for r in rows[:10]] == [f"Ctrl+{i}" for i in range(1, 10)] + [None]
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    s.set_current_category(rows[20].id)  # class_20: no quick key, picked in the panel
    click_image(qtbot, w, 100, 100)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == 1, timeout=10_000)
    (ann,) = s.dataset.annotations.values()
    assert ann.category_id == rows[20].id

    said = []
    s.statusMessage.connect(lambda text, ms: said.append(text))
    assert not s.rename_category(rows[20].id, " class_49 ")  # a rename never merges
    assert s.dataset.categories[rows[20].id].name == "class_20"
    assert any("exists already" in m and "To merge “class_20”" in m and "move its annotations to “class_49”" in m
               for m in said), said

    # the merge: delete class_20, its annotation moves to class_49; one undo brings both back
    s.delete_category(rows[20].id, rows[49].id)
    assert rows[20].id not in s.dataset.categories and s.dataset.annotations[ann.id].category_id == rows[49].id
    s.undo()
    assert s.dataset.categories[rows[20].id].name == "class_20"
    assert s.dataset.annotations[ann.id].category_id == rows[20].id
    assert w.categories.list.count() == 51


def test_undoing_the_deletion_of_the_current_category_makes_it_current_again(qtbot, make_window, image_folder,
                                                                               tmp_path):
    """Found under Xvfb: after Delete category "object" (current, moved to class_1) and Ctrl+Z, "object" was back
    but class_1 stayed current, so the next accepted masks went to class_1."""
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    s = w.session
    s.add_categories([("class_1", None), ("class_2", None)])
    rows = s.category_rows()
    s.set_current_category(rows[0].id)
    s.delete_category(rows[0].id, rows[1].id)
    assert s.category_id == rows[1].id
    s.undo()
    assert s.category_id == rows[0].id
    assert w.categories.current_id() == rows[0].id  # the panel shows it
    s.redo()
    assert s.category_id == rows[1].id
    # a category that was not current stays not current after its undo
    s.undo()
    s.set_current_category(rows[2].id)
    s.delete_category(rows[1].id, None)
    s.undo()
    assert s.category_id == rows[2].id
