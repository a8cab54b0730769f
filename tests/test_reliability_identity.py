"""Issue 15, class 4: a picture replaced under the same name (and the same size) is found, never silently reattached."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from annotator.data import atomic, identity
from annotator.data.document import Dataset, DatasetError, ImageChangedError
from annotator.data.identity import DIGEST_FIELD, file_sha256, find_changed


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


def _picture(path, seed: int) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)


def _annotated(tmp_path) -> Dataset:
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _picture(tmp_path / name, i)
    ds = Dataset.open(tmp_path / "annotations.json")
    cat = ds.add_category("thing")
    for name in ("a.png", "b.png", "c.png"):
        rec = ds.ensure_image(name, 60, 40, file_sha256=file_sha256(tmp_path / name))
        if name != "c.png":  # c.png is recorded but has no annotation
            ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(40, 60, dtype=bool)))
    ds.save()
    return ds


def test_the_digest_is_the_sha256_of_the_file_and_is_saved_as_an_extra_field(tmp_path):
    ds = _annotated(tmp_path)
    data = json.loads(ds.path.read_text())
    recorded = {img["file_name"]: img[DIGEST_FIELD] for img in data["images"]}
    assert recorded["a.png"] == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    from pycocotools.coco import COCO  # other COCO readers ignore the field

    COCO(str(ds.path))


def test_a_picture_replaced_by_another_of_the_same_size_is_reported(tmp_path):
    _annotated(tmp_path)
    _picture(tmp_path / "a.png", 99)  # another picture, same name, same 60 x 40 size
    (tmp_path / "b.png").unlink()
    ds = Dataset.open(tmp_path / "annotations.json")
    assert ds.check_image_sizes() == ["image id 2 'b.png': file not found (was it deleted or moved?)"]  # sizes alone miss a.png
    changes = {c.file_name: c for c in ds.changed_images()}
    assert set(changes) == {"a.png", "b.png"}
    a = changes["a.png"]
    assert a.problem == "changed" and a.current == file_sha256(tmp_path / "a.png") and a.annotation_ids == (1,)
    assert "need review" in a.describe()
    assert changes["b.png"].problem.startswith("missing")


def test_ensure_image_refuses_to_reattach_masks_to_another_picture(tmp_path):
    _annotated(tmp_path)
    _picture(tmp_path / "a.png", 99)
    _picture(tmp_path / "c.png", 98)
    ds = Dataset.open(tmp_path / "annotations.json")
    with pytest.raises(ImageChangedError, match="another picture") as info:
        ds.ensure_image("a.png", 60, 40, file_sha256=file_sha256(tmp_path / "a.png"))
    assert isinstance(info.value, DatasetError)  # the window already reports DatasetError here
    assert not ds.dirty
    # an image without annotations just takes the new digest: no mask to misplace
    ds.ensure_image("c.png", 60, 40, file_sha256=file_sha256(tmp_path / "c.png"))
    # after review, the window records the new picture as the reference
    ds.set_image_digest(1, file_sha256(tmp_path / "a.png"))
    assert ds.changed_images() == []
    ds.save()
    assert Dataset.open(tmp_path / "annotations.json").changed_images() == []


def test_an_old_working_file_without_digests_gets_them_on_the_next_visit(tmp_path):
    _picture(tmp_path / "a.png", 0)
    ds = Dataset.open(tmp_path / "annotations.json")
    ds.ensure_image("a.png", 60, 40)  # as before this issue: no digest
    assert ds.changed_images() == []  # nothing recorded, nothing to compare
    ds.ensure_image("a.png", 60, 40, file_sha256=file_sha256(tmp_path / "a.png"))
    assert ds.images[1].extra[DIGEST_FIELD] == file_sha256(tmp_path / "a.png")


def test_unchanged_files_are_hashed_once_per_process(tmp_path, monkeypatch):
    _picture(tmp_path / "a.png", 0)
    first = file_sha256(tmp_path / "a.png")
    calls = []
    real = identity.hashlib.sha256
    monkeypatch.setattr(identity.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert file_sha256(tmp_path / "a.png") == first and calls == []
    _picture(tmp_path / "a.png", 5)
    assert file_sha256(tmp_path / "a.png") != first and calls == [1]


def test_find_changed_reports_unreadable_files_and_can_be_cancelled(tmp_path):
    import threading

    (tmp_path / "dir.png").mkdir()
    records = [(1, "dir.png", tmp_path / "dir.png", "0" * 64, ())]
    (change,) = find_changed(records)
    assert change.problem.startswith("unreadable") and change.current is None
    stop = threading.Event()
    stop.set()
    assert find_changed(records, cancel=stop) == []
