"""Working files from other tools name their images in other spellings: the same file is found, never doubled.

A COCO file written on Windows (``sub\\b.png``), by a script (``./a.png``,
``sub//../sub/b.png``) or with absolute paths names files that are in the
folder. The window finds an image's record by ``relative_name`` (``a.png``,
``sub/b.png``); before, no record matched: the image showed none of its
annotations, a missing-file warning was given for a file that is there, and
the first accept made a second record for the same picture (exported twice).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from annotator.data import atomic, names
from annotator.data.document import Dataset

W, H = 30, 20


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 80, np.uint8)).save(path)


def _square():
    m = np.zeros((H, W), bool)
    m[2:8, 3:9] = True
    return m


@pytest.fixture
def foreign(tmp_path):
    """A folder with three images and a working file that spells each name another way."""
    root = tmp_path / "project"
    for rel in ("a.png", "sub/b.png", "c.png"):
        _image(root / rel)
    spelled = ["./a.png", "sub\\b.png", str(root / "c.png")]
    poly = [[3, 2, 9, 2, 9, 8, 3, 8]]
    data = {
        "images": [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(spelled)],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": poly, "iscrowd": 0}
                        for i in range(3)],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root, spelled


def test_each_spelling_finds_its_record_and_an_accept_adds_to_it(foreign):
    root, spelled = foreign
    ds = Dataset.open(root / "annotations.json", lock=True)
    try:
        assert ds.load_notes == []
        assert ds.check_image_sizes() == []  # every file is found where its record says
        for n, rel in enumerate(("a.png", "sub/b.png", "c.png")):
            path = root / rel
            rec = ds.image_by_name(ds.relative_name(path))
            assert rec is not None and rec.id == n + 1, rel
            assert ds.image_path(rec).resolve() == path.resolve()
            assert len(ds.annotations_for(rec.id)) == 1
            # the accept path: ensure_image(relative_name) must return that record, not make a new one
            again = ds.ensure_image(ds.relative_name(path), W, H)
            assert again.id == rec.id
            ds.add_annotation(ds.make_annotation(again.id, 1, _square()))
        assert len(ds.images) == 3 and len(ds.annotations) == 6
        ds.save()
    finally:
        ds.close()
    saved = json.loads((root / "annotations.json").read_text())
    assert [img["file_name"] for img in saved["images"]] == spelled  # kept as the other tool wrote them


def test_a_copy_elsewhere_and_a_save_as_rebase_every_spelling(foreign, tmp_path):
    root, _ = foreign
    ds = Dataset.open(root / "annotations.json")
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert [img["file_name"] for img in ds.to_coco(root=other)["images"]] == [
        "../project/a.png", "../project/sub/b.png", "../project/c.png"]  # fmt: skip
    ds.save(other / "annotations.json")
    moved = Dataset.open(other / "annotations.json")
    assert moved.check_image_sizes() == []
    assert moved.image_by_name(moved.relative_name(root / "sub" / "b.png")).id == 2


def test_two_records_of_one_file_are_noted_and_the_first_gets_new_work(tmp_path):
    _image(tmp_path / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                       {"id": 2, "file_name": "./a.png", "width": W, "height": H}],
            "categories": [], "annotations": []}  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    ds = Dataset.open(tmp_path / "annotations.json")
    assert len(ds.load_notes) == 1 and "name the same file" in ds.load_notes[0]
    assert ds.image_by_name("a.png").id == 1
    ds.remove_image(1)  # the other spelling takes over
    assert ds.image_by_name("a.png").id == 2


def test_two_records_of_one_file_survive_a_save_as_and_a_copy_elsewhere(tmp_path):
    """Found in review: rebased to another folder, both records got the same file_name, and the file written
    (by Save As, or by Save a Copy, the way out of a failing save) did not open again."""
    _image(tmp_path / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                       {"id": 2, "file_name": "./a.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "c"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 3]],
                             "iscrowd": 0} for i in (1, 2)]}  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    ds = Dataset.open(tmp_path / "annotations.json")
    other = tmp_path / "elsewhere"
    other.mkdir()
    ds.save_copy(other / "copy.json")
    ds.save(other / "annotations.json")
    for path in (other / "copy.json", other / "annotations.json"):
        again = Dataset.open(path)
        assert sorted(again.images) == [1, 2] and len(again.annotations) == 2
        assert {again.image_path(r).resolve() for r in again.images.values()} == {(tmp_path / "a.png").resolve()}
    assert ds.image_by_name("../a.png").id == 1 and ds.images[2].file_name == "./../a.png"


@pytest.mark.skipif(os.sep != "/", reason="a backslash is a separator on Windows")
def test_a_real_backslash_in_a_file_name_is_kept(tmp_path):
    _image(tmp_path / "odd\\name.png")
    assert names.local_name("odd\\name.png", tmp_path) == "odd\\name.png"
    assert names.local_name("sub\\b.png", tmp_path) == "sub/b.png"
    # ... and is not the file of the same name in a folder: each record is found by its own name
    _image(tmp_path / "odd" / "name.png")
    assert names.name_key("odd\\name.png", tmp_path) != names.name_key("odd/name.png", tmp_path)
    data = {"images": [{"id": 1, "file_name": "odd\\name.png", "width": W, "height": H},
                       {"id": 2, "file_name": "./odd/name.png", "width": W, "height": H}],
            "categories": [], "annotations": []}  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    ds = Dataset.open(tmp_path / "annotations.json")
    assert ds.load_notes == []
    assert ds.image_by_name("odd/name.png").id == 2 and ds.image_by_name("odd\\name.png").id == 1


@pytest.mark.parametrize("spelling,key", [
    ("a.png", "a.png"), ("./a.png", "a.png"), ("sub\\b.png", "sub/b.png"), ("sub//x/../b.png", "sub/b.png"),
    (".\\sub\\b.png", "sub/b.png"), ("../other/a.png", "../other/a.png"),
])  # fmt: skip
def test_name_key(tmp_path, spelling, key):
    assert names.name_key(spelling, tmp_path) == key
    assert names.name_key(str(tmp_path / key), tmp_path) == key
