"""Image states in the working file, without Qt: the field, negatives read by pycocotools, the list's counts,
the common folder of opened files (issue 16)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.image_states import DONE, SKIPPED, STATE_FIELD, TODO, common_folder, effective_state
from annotator.session.rows import ImageRow, ImageState, count_states, list_state


def _coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_a_negative_is_listed_with_no_annotations_and_round_trips(tmp_path):
    ds = Dataset(tmp_path / "annotations.json")
    cat = ds.add_category("object")
    neg = ds.ensure_image("empty.jpg", 64, 48)
    ds.set_image_state(neg.id, DONE)
    busy = ds.ensure_image("busy.jpg", 64, 48)
    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:30] = True
    ds.add_annotation(ds.make_annotation(busy.id, cat.id, mask))
    ds.set_image_state(busy.id, TODO)
    skipped = ds.ensure_image("blurred.jpg", 64, 48)
    ds.set_image_state(skipped.id, SKIPPED)
    ds.save()

    coco = _coco(ds.path)
    assert sorted(img["file_name"] for img in coco.loadImgs(coco.getImgIds())) == ["blurred.jpg", "busy.jpg",
                                                                                    "empty.jpg"]
    assert coco.getAnnIds(imgIds=[neg.id]) == []
    assert coco.loadImgs([neg.id])[0]["state"] == "done"
    assert len(coco.getAnnIds(imgIds=[busy.id])) == 1

    for fmt in ("coco-rle", "coco-polygon"):  # the COCO exports keep the negative too
        export_dataset(ds, tmp_path / f"{fmt}.json", fmt)
        exported = _coco(tmp_path / f"{fmt}.json")
        (img,) = [i for i in exported.loadImgs(exported.getImgIds()) if i["file_name"] == "empty.jpg"]
        assert exported.getAnnIds(imgIds=[img["id"]]) == [] and img["state"] == "done"

    again = Dataset.open(ds.path)
    assert {r.file_name: r.extra.get(STATE_FIELD) for r in again.images.values()} == {
        "empty.jpg": "done", "busy.jpg": "todo", "blurred.jpg": "skipped"}
    again.save()  # the field is written back unchanged
    assert json.loads(again.path.read_text())["images"] == json.loads(ds.path.read_text())["images"]


def test_set_image_state_checks_its_value_and_bumps_the_revision_only_on_a_change(tmp_path):
    ds = Dataset(tmp_path / "a.json")
    rec = ds.ensure_image("x.jpg", 10, 10)
    r0 = ds.revision
    assert ds.set_image_state(rec.id, DONE) is None
    assert ds.revision == r0 + 1
    assert ds.set_image_state(rec.id, DONE) == DONE and ds.revision == r0 + 1
    with pytest.raises(ValueError, match="todo, done, skipped"):
        ds.set_image_state(rec.id, "finished")
    assert ds.set_image_state(rec.id, None) == DONE and STATE_FIELD not in rec.extra


def test_remove_image_refuses_an_annotated_image(tmp_path):
    ds = Dataset(tmp_path / "a.json")
    cat = ds.add_category("object")
    rec = ds.ensure_image("x.jpg", 10, 10)
    ann = ds.make_annotation(rec.id, cat.id, np.ones((10, 10), bool))
    ds.add_annotation(ann)
    with pytest.raises(ValueError, match="has annotations"):
        ds.remove_image(rec.id)
    ds.remove_annotation(ann.id)
    ds.remove_image(rec.id)
    assert ds.image_by_name("x.jpg") is None and not ds.images
    assert ds.ensure_image("x.jpg", 10, 10).id == rec.id  # listed again later: a fresh record


def test_an_unknown_or_missing_state_counts_as_to_do():
    assert effective_state(None) == TODO  # not listed
    assert effective_state({}) == TODO  # annotated, no state
    assert effective_state({"state": "finished"}) == TODO  # another tool's value: kept in the file, shown to do
    assert effective_state({"state": "skipped"}) == SKIPPED


def test_list_states_and_counts():
    rows = [
        ImageRow(Path("a.jpg"), "a.jpg", 0),
        ImageRow(Path("b.jpg"), "b.jpg", 2, progress=DONE),
        ImageRow(Path("c.jpg"), "c.jpg", 0, progress=DONE),
        ImageRow(Path("d.jpg"), "d.jpg", 0, progress=SKIPPED),
        ImageRow(Path("e.jpg"), "e.jpg", 0, ImageState.ERROR, "truncated", progress=DONE),
    ]
    assert [list_state(r) for r in rows] == ["todo", "done", "done", "skipped", "unusable"]
    assert count_states(rows) == {"": 5, "todo": 1, "done": 2, "skipped": 1, "unusable": 1}


def test_common_folder(tmp_path):
    a, b = tmp_path / "x" / "a.jpg", tmp_path / "x" / "y" / "b.jpg"
    assert common_folder([a]) == tmp_path / "x"
    assert common_folder([b, a]) == tmp_path / "x"
    with pytest.raises(ValueError):
        common_folder([])
    if os.name != "nt":
        with pytest.raises(ValueError, match="no folder in common but the root"):
            common_folder(["/a.jpg", "/usr/b.jpg"])
