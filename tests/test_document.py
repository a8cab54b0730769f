"""annotator.data.document: lossless save/load, resume, bad files, atomic saves."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.data import atomic

from annotator.data import coco
from annotator.data.document import DEFAULT_PALETTE, Annotation, Dataset, DatasetError


def blob_mask(h, w, seed, n=4):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, max(3, min(h, w) // 3))
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return m


def ring_mask(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (yy - h / 2) ** 2 + (xx - w / 2) ** 2
    return (d2 < (min(h, w) / 3) ** 2) & (d2 >= (min(h, w) / 8) ** 2)


H, W = 48, 64


def masks_for_round_trip():
    border = np.zeros((H, W), bool)
    border[0, :] = border[:, 0] = border[-1, :] = border[:, -1] = True  # a frame on every edge
    corner = np.zeros((H, W), bool)
    corner[-5:, -7:] = True
    return {
        "blob0": blob_mask(H, W, 0),
        "blob1": blob_mask(H, W, 1, n=7),
        "ring": ring_mask(H, W),
        "border": border,
        "corner": corner,
        "empty": np.zeros((H, W), bool),
        "full": np.ones((H, W), bool),
        "noise": np.random.default_rng(5).random((H, W)) < 0.5,
    }


@pytest.fixture
def dataset(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    ds.ensure_image("a.png", W, H)
    ds.ensure_image("sub/b.png", W, H)
    ds.add_category("cat")
    ds.add_category("dog", color=(1, 2, 3), supercategory="animal")
    return ds


def _load_silently(path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


# ---------------------------------------------------------------------------- round trip


def test_round_trip_masks_are_identical(dataset, tmp_path):
    masks = masks_for_round_trip()
    made = {}
    for i, (name, m) in enumerate(masks.items()):
        ann = dataset.make_annotation(1 + i % 2, 1 + i % 2, m, predicted_iou=np.float32(0.93), model="vit_t")
        dataset.add_annotation(ann)
        made[name] = ann
    assert dataset.dirty
    dataset.save()
    assert not dataset.dirty
    again = Dataset.open(tmp_path / "annotations.json")
    assert set(again.annotations) == {a.id for a in made.values()}
    for name, ann in made.items():
        back = again.annotations[ann.id]
        np.testing.assert_array_equal(back.mask(), masks[name], err_msg=name)
        assert back.area == float(masks[name].sum())
        assert back.bbox == ann.bbox
        assert (back.image_id, back.category_id, back.iscrowd) == (ann.image_id, ann.category_id, 0)
        assert back.extra == {"predicted_iou": pytest.approx(0.93), "model": "vit_t"}
    assert again.images == dataset.images
    assert again.categories == dataset.categories
    assert again.to_coco() == dataset.to_coco()


def test_written_file_is_valid_coco_and_self_evaluates_to_ap_one(dataset, tmp_path):
    for i, (name, m) in enumerate(masks_for_round_trip().items()):
        if m.any():  # an empty mask cannot be matched by IoU
            dataset.add_annotation(dataset.make_annotation(1 + i % 2, 1 + i % 2, m))
    path = dataset.save()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert coco.validate_coco(data) == []
    gt = _load_silently(path)  # pycocotools loads it
    assert len(gt.getAnnIds()) == len(dataset.annotations)
    for ann in gt.loadAnns(gt.getAnnIds()):
        np.testing.assert_array_equal(gt.annToMask(ann).astype(bool), dataset.annotations[ann["id"]].mask())
    assert coco.self_evaluation_ap(data) == pytest.approx(1.0)


def test_to_coco_is_plain_python(dataset):
    m = blob_mask(H, W, 3)
    dataset.add_annotation(
        dataset.make_annotation(
            np.int64(1), 1, m, predicted_iou=np.float32(0.5), stability=np.float64("nan"),
            point=np.array([3, 4], dtype=np.int32), flag=np.bool_(True), nested={"k": (np.uint8(7),)},
        )
    )  # fmt: skip
    data = dataset.to_coco()
    text = json.dumps(data, allow_nan=False)  # no numpy types, no NaN
    ann = json.loads(text)["annotations"][0]
    assert ann["predicted_iou"] == 0.5 and ann["stability"] is None
    assert ann["point"] == [3, 4] and ann["flag"] is True and ann["nested"] == {"k": [7]}
    assert type(ann["id"]) is int and type(ann["area"]) is float
    assert isinstance(ann["segmentation"]["counts"], str)

    with pytest.raises(TypeError, match="cannot be written to JSON"):
        dataset.make_annotation(1, 1, m, thing=object())


def test_json_top_level_layout(dataset):
    data = dataset.to_coco()
    assert list(data) == ["info", "licenses", "images", "annotations", "categories"]
    assert data["images"][1] == {"id": 2, "file_name": "sub/b.png", "width": W, "height": H}
    assert data["categories"][1] == {"id": 2, "name": "dog", "supercategory": "animal", "color": [1, 2, 3]}


# ---------------------------------------------------------------------------- ids, undo, revisions


def test_annotation_ids_are_never_reused_in_a_session(dataset):
    m = blob_mask(H, W, 2)
    a1 = dataset.make_annotation(1, 1, m)
    dataset.add_annotation(a1)
    a2 = dataset.make_annotation(1, 1, m)
    dataset.add_annotation(a2)
    assert (a1.id, a2.id) == (1, 2)
    removed = dataset.remove_annotation(a2.id)
    a3 = dataset.make_annotation(1, 1, m)
    assert a3.id == 3
    dataset.add_annotation(removed)  # undo keeps the id
    assert dataset.annotations[2] is removed
    with pytest.raises(ValueError, match="already in use"):
        dataset.add_annotation(removed)
    assert [a.id for a in dataset.annotations_for(1)] == [1, 2]
    assert dataset.annotations_for(2) == []


def test_revision_and_dirty(dataset, tmp_path):
    rev = dataset.revision
    ann = dataset.make_annotation(1, 1, blob_mask(H, W, 2))
    assert dataset.revision == rev  # making is not changing
    dataset.add_annotation(ann)
    dataset.save()
    assert not dataset.dirty and dataset.saved_revision == dataset.revision
    for change in (
        lambda: dataset.set_annotation_category(ann.id, 2),
        lambda: dataset.rename_category(1, "kitten"),
        lambda: dataset.recolor_category(1, (9, 9, 9)),
        lambda: dataset.ensure_image("c.png", 5, 3),
        lambda: dataset.remove_annotation(ann.id),
    ):
        before = dataset.revision
        change()
        assert dataset.revision == before + 1 and dataset.dirty
    before = dataset.revision
    dataset.ensure_image("c.png", 5, 3)  # already there: no change
    assert dataset.revision == before


def test_replace_annotation_and_set_category(dataset):
    ann = dataset.make_annotation(1, 1, blob_mask(H, W, 2))
    dataset.add_annotation(ann)
    assert dataset.set_annotation_category(ann.id, 2) == 1
    with pytest.raises(KeyError):
        dataset.set_annotation_category(ann.id, 99)
    new_mask = blob_mask(H, W, 9)
    edited = Annotation(**{**ann.__dict__, "segmentation": coco.encode_mask(new_mask)})
    old = dataset.replace_annotation(edited)
    assert old is ann
    np.testing.assert_array_equal(dataset.annotations[ann.id].mask(), new_mask)


def test_mask_must_fit_its_image(dataset):
    with pytest.raises(ValueError, match="does not match image 'a.png'"):
        dataset.make_annotation(1, 1, np.zeros((H, W + 1), bool))
    with pytest.raises(KeyError):
        dataset.make_annotation(1, 42, np.zeros((H, W), bool))
    with pytest.raises(KeyError):
        dataset.make_annotation(42, 1, np.zeros((H, W), bool))


def test_ensure_image(dataset):
    c = dataset.ensure_image("c.png", 10, 20)
    assert c.id == 3 and dataset.ensure_image("c.png", 10, 20) is c
    with pytest.raises(DatasetError, match="would not line up"):
        dataset.ensure_image("c.png", 20, 10)
    with pytest.raises(ValueError):
        dataset.ensure_image("d.png", 0, 10)
    assert dataset.image_by_name("c.png") is c
    assert dataset.relative_name(dataset.root / "sub" / "x y é.png") == "sub/x y é.png"
    assert dataset.image_path(c) == dataset.root / "c.png"


# ---------------------------------------------------------------------------- categories


def test_categories(tmp_path):
    ds = Dataset.open(tmp_path / "a.json")
    a = ds.add_category("a")
    b = ds.add_category("b")
    assert (a.id, b.id) == (1, 2)
    assert (a.color, b.color) == (DEFAULT_PALETTE[0], DEFAULT_PALETTE[1])
    with pytest.raises(ValueError, match="already exists"):
        ds.add_category("a")
    with pytest.raises(ValueError, match="empty"):
        ds.add_category("  ")
    with pytest.raises(ValueError, match="colour"):
        ds.add_category("c", color=(300, 0, 0))
    assert ds.rename_category(1, "apple") == "a"
    assert ds.category_by_name("apple") is a and ds.category_by_name("a") is None
    with pytest.raises(ValueError):
        ds.rename_category(1, "b")
    assert ds.recolor_category(2, "#102030") == DEFAULT_PALETTE[1]
    assert b.color == (16, 32, 48)
    added = ds.add_categories([("apple", None), ("pear", (5, 6, 7))])
    assert [c.name for c in added] == ["pear"] and added[0].id == 3


def test_remove_category_and_undo(dataset):
    m = blob_mask(H, W, 1)
    a1 = dataset.make_annotation(1, 1, m)
    a2 = dataset.make_annotation(2, 2, m)
    dataset.add_annotation(a1)
    dataset.add_annotation(a2)
    before = dataset.to_coco()

    removed = dataset.remove_category(1)  # drops its annotations
    assert 1 not in dataset.categories and a1.id not in dataset.annotations
    assert removed.removed_annotations == [a1]
    assert dataset.add_category("new").id == 3  # the removed id is not reused
    dataset.remove_category(3)
    dataset.restore_category(removed)
    assert dataset.to_coco() == before

    moved = dataset.remove_category(2, reassign_to=1)
    assert dataset.annotations[a2.id].category_id == 1 and moved.reassigned == [a2.id]
    dataset.restore_category(moved)
    assert dataset.to_coco() == before
    with pytest.raises(ValueError):
        dataset.remove_category(1, reassign_to=1)


# ---------------------------------------------------------------------------- resume


def _third_party_file(path: Path) -> dict:
    blob = blob_mask(20, 30, 4)
    flat = blob.T.ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        runs = [0] + runs
    data = {
        "info": {"year": 2024, "description": "from another tool"},
        "licenses": [{"id": 1, "name": "CC-BY"}],
        "tool_specific": {"keep": ["me", 1]},
        "images": [
            {"id": 7, "file_name": "x.jpg", "width": 30, "height": 20, "license": 1, "flickr_url": "http://e"},
            {"id": 3, "file_name": "y.jpg", "width": 30, "height": 20},
        ],
        "categories": [
            {"id": 5, "name": "person", "supercategory": "human", "keypoints": []},
            {"id": 9, "name": "bike", "color": [10, 20, 30]},
        ],
        "annotations": [
            {"id": 17, "image_id": 7, "category_id": 5, "segmentation": [[2, 3, 6, 3, 6, 8, 2, 8]],
             "area": 20.0, "bbox": [2, 3, 4, 5], "iscrowd": 0, "attributes": {"occluded": True}},
            {"id": 4, "image_id": 3, "category_id": 9, "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": runs}},
            {"id": 40, "image_id": 3, "category_id": 5,
             "segmentation": coco.encode_mask(blob), "area": 1, "score": 0.7},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def test_resume_keeps_ids_and_unknown_fields(tmp_path):
    path = tmp_path / "annotations.json"
    _third_party_file(path)
    original = path.read_bytes()
    ds = Dataset.open(path)
    assert path.read_bytes() == original and not ds.dirty  # loading never writes
    assert set(ds.images) == {7, 3} and set(ds.categories) == {5, 9} and set(ds.annotations) == {17, 4, 40}
    square = np.zeros((20, 30), bool)
    square[3:8, 2:6] = True
    np.testing.assert_array_equal(ds.annotations[17].mask(), square)  # polygon -> mask
    blob = blob_mask(20, 30, 4)
    np.testing.assert_array_equal(ds.annotations[4].mask(), blob)  # uncompressed RLE
    np.testing.assert_array_equal(ds.annotations[40].mask(), blob)
    assert ds.annotations[4].iscrowd == 1
    assert ds.annotations[40].area == float(blob.sum())  # recomputed from the mask
    assert ds.categories[9].color == (10, 20, 30)

    new = ds.make_annotation(7, 9, blob)
    assert new.id == 41  # after the largest id in the file
    ds.add_annotation(new)
    assert ds.ensure_image("z.jpg", 30, 20).id == 8
    ds.save()
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["info"] == {"year": 2024, "description": "from another tool"}
    assert saved["licenses"] == [{"id": 1, "name": "CC-BY"}]
    assert saved["tool_specific"] == {"keep": ["me", 1]}
    img7 = next(i for i in saved["images"] if i["id"] == 7)
    assert img7["license"] == 1 and img7["flickr_url"] == "http://e"
    person = next(c for c in saved["categories"] if c["id"] == 5)
    assert person["keypoints"] == [] and person["supercategory"] == "human"
    a17 = next(a for a in saved["annotations"] if a["id"] == 17)
    assert a17["attributes"] == {"occluded": True}
    assert isinstance(a17["segmentation"]["counts"], str)  # now compressed RLE
    assert next(a for a in saved["annotations"] if a["id"] == 40)["score"] == 0.7
    assert coco.validate_coco(saved) == []
    # the backup holds the file as it was before this session's first write
    backups = list(tmp_path.glob("annotations.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    # and it all comes back the same
    again = Dataset.open(path)
    assert again.to_coco() == ds.to_coco()


def test_missing_file_is_an_empty_dataset_and_nothing_is_written(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json", image_dir=tmp_path / "imgs")
    assert ds.images == {} and ds.annotations == {} and not ds.dirty
    assert ds.image_dir == tmp_path / "imgs" and ds.root == tmp_path
    assert list(tmp_path.iterdir()) == []


BAD_FILES = {
    "malformed": (b'{"images": [1, 2,,]}', r"malformed JSON at line 1, column 18"),
    "malformed_multiline": (b'{\n  "images": [\n  }\n', r"malformed JSON at line 3"),
    "empty": (b"", "empty"),
    "binary": (b"\xff\xd8\xff\xe0JFIF", "not UTF-8"),
    "list": (b"[]", "top level is a list"),
    "labelme": (b'{"version": "5", "shapes": [], "imagePath": "a.jpg"}', "'images' list is missing"),
    "wrong_type": (b'{"images": {}, "annotations": [], "categories": []}', "'images' must be a list"),
    "duplicate_image": (
        b'{"images": [{"id": 1, "file_name": "a", "width": 2, "height": 2},'
        b' {"id": 1, "file_name": "b", "width": 2, "height": 2}], "annotations": [], "categories": []}',
        "duplicate image id 1",
    ),
    "duplicate_annotation": (
        b'{"images": [{"id": 1, "file_name": "a", "width": 2, "height": 2}], "categories": [{"id": 1, "name": "c"}],'
        b' "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": {"size": [2, 2], "counts": [4]}},'
        b' {"id": 5, "image_id": 1, "category_id": 1, "segmentation": {"size": [2, 2], "counts": [4]}}]}',
        "duplicate annotation id 5",
    ),
    "missing_image": (
        b'{"images": [], "categories": [{"id": 1, "name": "c"}],'
        b' "annotations": [{"id": 5, "image_id": 3, "category_id": 1, "segmentation": []}]}',
        "image_id 3 is not in 'images'",
    ),
    "rle_size": (
        b'{"images": [{"id": 1, "file_name": "a", "width": 3, "height": 2}], "categories": [{"id": 1, "name": "c"}],'
        b' "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": {"size": [3, 2], "counts": [6]}}]}',
        r"RLE size \[height 3, width 2\] disagrees with the image \(height 2, width 3\)",
    ),
    "float_id": (
        b'{"images": [{"id": 1.5, "file_name": "a", "width": 3, "height": 2}], "annotations": [], "categories": []}',
        "'id' must be a non-negative integer",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_dataset_error_and_are_untouched(tmp_path, name):
    content, match = BAD_FILES[name]
    path = tmp_path / "annotations.json"
    path.write_bytes(content)
    stamp = path.stat().st_mtime_ns
    with pytest.raises(DatasetError, match=match) as info:
        Dataset.open(path)
    assert str(path) in str(info.value)
    assert info.value.path == path and info.value.problems
    assert path.read_bytes() == content and path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["annotations.json"]


def test_many_problems_are_listed_together(tmp_path):
    path = tmp_path / "a.json"
    anns = [{"id": 1, "image_id": 99, "category_id": 1, "segmentation": []} for _ in range(15)]
    path.write_text(json.dumps({"images": [], "categories": [], "annotations": anns}))
    with pytest.raises(DatasetError) as info:
        Dataset.open(path)
    assert len(info.value.problems) > 15
    assert "problems:" in str(info.value) and "more" in str(info.value)


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "annotations.json").mkdir()
    with pytest.raises(DatasetError, match="folder"):
        Dataset.open(tmp_path / "annotations.json")


def test_replacing_a_bad_file_backs_it_up_first(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_bytes(b"{ broken")
    with pytest.raises(DatasetError):
        Dataset.open(path)
    ds = Dataset(path)  # the user chose to start over
    ds.ensure_image("a.png", 4, 4)
    ds.save()
    backups = list(tmp_path.glob("annotations.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"{ broken"
    assert Dataset.open(path).images[1].file_name == "a.png"


# ---------------------------------------------------------------------------- failing saves


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_failed_save_keeps_old_file_and_stays_dirty(dataset, tmp_path, monkeypatch, err):
    dataset.add_annotation(dataset.make_annotation(1, 1, blob_mask(H, W, 1)))
    path = dataset.save()
    saved = path.read_bytes()
    dataset.add_annotation(dataset.make_annotation(1, 2, blob_mask(H, W, 2)))
    assert dataset.dirty

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(atomic.os, "fsync", fail)
    with pytest.raises(OSError) as info:
        dataset.save()
    assert info.value.errno == err
    assert dataset.dirty
    assert path.read_bytes() == saved
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    dataset.save()
    assert not dataset.dirty
    assert len(Dataset.open(path).annotations) == 2


def test_save_as_rebases_file_names(dataset, tmp_path):
    dataset.add_annotation(dataset.make_annotation(2, 1, blob_mask(H, W, 1)))
    out = tmp_path / "elsewhere" / "copy.json"
    out.parent.mkdir()
    dataset.save(out)
    assert dataset.path == out and dataset.root == out.parent
    again = Dataset.open(out)
    assert again.images[2].file_name == "../sub/b.png"
    assert again.image_path(2).resolve() == (tmp_path / "sub" / "b.png").resolve()


def test_check_image_sizes(tmp_path):
    Image.new("RGB", (W, H)).save(tmp_path / "a.png")
    Image.new("RGB", (H, W)).save(tmp_path / "rotated.png")
    ds = Dataset.open(tmp_path / "annotations.json")
    ds.ensure_image("a.png", W, H)
    ds.ensure_image("rotated.png", W, H)
    ds.ensure_image("gone.png", W, H)
    problems = ds.check_image_sizes()
    assert len(problems) == 2
    assert any("rotated.png" in p and f"{H} x {W}" in p for p in problems)
    assert any("gone.png" in p and "not found" in p for p in problems)
