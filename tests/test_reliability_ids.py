"""A working file whose ids reach the largest exact JSON integer still gets ids it can read back.

Ids are numbered one above the largest so far. A file made by another tool
with ids near 2**53 - 1 (timestamps, hashes) therefore made the next
accept, category or image take 2**53, which the loader refuses: the file
saved fine and then could not be opened again. Past the limit, the lowest id
never used is taken instead (not one handed out earlier in the session, so
an undo can still bring back what had it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.data import atomic
from annotator.data.document import MAX_ID, Dataset

W, H = 6, 4


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


@pytest.fixture
def at_the_limit(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({
        "images": [{"id": MAX_ID, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": MAX_ID, "name": "old"}],
        "annotations": [{"id": MAX_ID, "image_id": MAX_ID, "category_id": MAX_ID,
                         "segmentation": [[1, 1, 4, 1, 4, 3]], "iscrowd": 0}],
    }))  # fmt: skip
    return path


def test_new_ids_past_the_limit_are_free_ones_and_the_file_opens_again(at_the_limit):
    ds = Dataset.open(at_the_limit, lock=True)
    try:
        rec = ds.ensure_image("b.png", W, H)
        cat = ds.add_category("new")
        first = ds.make_annotation(rec.id, cat.id, np.ones((H, W), bool))
        ds.add_annotation(first)
        second = ds.make_annotation(MAX_ID, cat.id, np.ones((H, W), bool))
        ds.add_annotation(second)
        ids = [rec.id, cat.id, first.id, second.id]
        assert all(1 <= i <= MAX_ID for i in ids) and first.id != second.id
        ds.remove_annotation(first.id)
        third = ds.make_annotation(rec.id, cat.id, np.ones((H, W), bool))
        assert third.id not in (first.id, second.id, MAX_ID)  # a removed one's id is not handed out again
        ds.add_annotation(third)
        ds.add_annotation(first)  # ... so undoing the removal still works
        ds.save()
    finally:
        ds.close()
    again = Dataset.open(at_the_limit)  # refused before: "'id' must be a non-negative integer, got 9007199254740992"
    assert len(again.images) == 2 and len(again.categories) == 2 and len(again.annotations) == 4


def test_past_the_limit_an_id_loaded_from_the_file_and_removed_is_not_handed_out(tmp_path):
    """Found in review: ids 1, 2, 3 and the maximum in the file; delete 2, make a new annotation, undo the
    delete: the new one must not have taken id 2."""
    path = tmp_path / "annotations.json"
    seg = [[1, 1, 4, 1, 4, 3]]
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "c"}, {"id": MAX_ID, "name": "d"}],
        "annotations": [{"id": i, "image_id": 1, "category_id": 1, "segmentation": seg, "iscrowd": 0}
                        for i in (1, 2, 3, MAX_ID)],
    }))  # fmt: skip
    ds = Dataset.open(path)
    removed = ds.remove_annotation(2)
    new = ds.make_annotation(1, 1, np.ones((H, W), bool))
    assert new.id not in (1, 2, 3, MAX_ID)
    ds.add_annotation(new)
    ds.add_annotation(removed)  # the undo
    gone = ds.remove_category(MAX_ID)  # (its annotations go with it)
    assert ds.add_category("e").id not in (1, MAX_ID)
    ds.restore_category(gone)


def test_below_the_limit_ids_keep_counting_up(tmp_path):
    ds = Dataset(tmp_path / "annotations.json")
    rec = ds.ensure_image("a.png", W, H)
    cat = ds.add_category("c")
    anns = [ds.make_annotation(rec.id, cat.id, np.ones((H, W), bool)) for _ in range(3)]
    assert [a.id for a in anns] == [1, 2, 3]
    ds.add_annotation(anns[2])
    assert ds.make_annotation(rec.id, cat.id, np.ones((H, W), bool)).id == 4
