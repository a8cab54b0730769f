"""Importing COCO files, and adding any plan to an existing working file (add, never drop)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.importing import ImportFailed, apply_plan, import_labels, read_labels, undo_import
from test_formats_common import has_holes, iou, masks_by_image, real_dataset


def _image(path, w=40, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def test_coco_round_trip_is_lossless_and_keeps_extra_fields(tmp_path):
    ds, originals = real_dataset(tmp_path)
    (tmp_path / "export").mkdir()
    export_dataset(ds, tmp_path / "export" / "coco.json", "coco-rle")
    back = Dataset(tmp_path / "images" / "back.json")
    changes, report = import_labels(back, tmp_path / "export" / "coco.json", "coco")
    assert report == []
    assert len(changes.annotations) == 27 and len(changes.images) == 3
    for name in ("voc.jpg", "arc/arc.png"):
        src = ds.annotations_for(ds.image_by_name(name).id)
        for a, (label, mask) in zip(src, masks_by_image(back, name)):
            assert label == ds.categories[a.category_id].name
            np.testing.assert_array_equal(mask, originals[a.id])
    assert masks_by_image(back, "empty.png") == []  # listed, no annotations: a negative


def test_hostile_coco_file_reports_every_problem_and_imports_the_rest(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / name)
    tri = [2, 2, 12, 2, 6, 10]
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 41, "height": 30},
            {"id": 3, "file_name": "missing.png", "width": 40, "height": 30},
            {"id": 4, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 5, "file_name": "c.png", "width": 40, "height": 30},
            {"id": 1, "file_name": "c.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}, {"id": 3, "name": 7}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [tri]},
            {"id": 2, "image_id": 1, "category_id": 9, "segmentation": [tri]},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 5, 5], [20, 2, 30, 2, 25, 10]]},
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": [[1, float("nan"), 5, 5, 3, 8]]},
            {"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[-5, 20, 50, 20, 20, 35]]},
            {"id": 6, "image_id": 2, "category_id": 1, "segmentation": [tri]},
            {"id": 7, "image_id": 42, "category_id": 1, "segmentation": [tri]},
            {"id": 8, "image_id": 1, "category_id": 1, "segmentation": {"size": [30, 40], "counts": "zz"}},
            {"id": 9, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]]},
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": coco.encode_mask(np.ones((30, 40), bool)),
             "iscrowd": 1, "score": 0.5},
        ],
    }  # fmt: skip
    src = tmp_path / "in.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    ds = Dataset(tmp_path / "annotations.json")
    changes, report = import_labels(ds, src, "coco")
    assert report == [
        "in.json images[1] (id 2): 'b.png' is 41 x 30 in the JSON but the image file is 40 x 30 "
        "(width x height, EXIF orientation applied); skipped with its annotations",
        "in.json images[2] (id 3): image file 'missing.png' not found; skipped with its annotations",
        "in.json images[3] (id 4): duplicate file_name 'a.png' (also images[0]); skipped with its annotations",
        "in.json images[5] (id 1): duplicate image id 1; skipped",
        "in.json categories[2] (id 3): 'name' must be a string, got 7; skipped",
        "in.json categories: class 2 'cat' has the same name as class 1; both import as 'cat'",
        "in.json annotations[1] (id 2): category_id 9 is not in 'categories'; skipped",
        "in.json annotations[2] (id 3): polygon 0 has fewer than 3 points; left out of the mask",
        "in.json annotations[3] (id 4): polygon 0 has a NaN or infinite coordinate; skipped",
        "in.json annotations[4] (id 5): coordinates outside the 40 x 30 image; clipped to it",
        "in.json annotations[6] (id 7): image_id 42 is not in 'images'; skipped",
        "in.json annotations[7] (id 8): RLE counts string contains 'z', which is not in the RLE alphabet; skipped",
        "in.json annotations[8] (id 9): polygon 0 has fewer than 3 points; left out of the mask",
        "in.json annotations[8] (id 9): the mask is empty; skipped",
    ]
    assert sorted(r.file_name for r in ds.images.values()) == ["a.png", "c.png"]  # c.png: listed, no annotations
    got = ds.annotations_for(ds.image_by_name("a.png").id)
    assert [ds.categories[a.category_id].name for a in got] == ["cat"] * 4
    assert got[-1].iscrowd == 1 and got[-1].extra == {"score": 0.5}
    assert len(changes.annotations) == 4
    with pytest.raises(ImportFailed, match="malformed JSON at line 1"):
        (tmp_path / "bad.json").write_text("{", encoding="utf-8")
        read_labels(tmp_path / "bad.json", "coco")
    with pytest.raises(ImportFailed, match="no 'images' list"):
        (tmp_path / "bad.json").write_text("[]", encoding="utf-8")
        read_labels(tmp_path / "bad.json", "coco")
    with pytest.raises(ValueError, match="unknown import format"):
        read_labels(src, "pascal")


def test_import_into_an_existing_working_file_adds_and_never_drops(tmp_path):
    ds, originals = real_dataset(tmp_path)
    before = {a.id: (a.category_id, a.segmentation["counts"]) for a in ds.annotations.values()}
    cats_before = {c.id: c.name for c in ds.categories.values()}
    (tmp_path / "coco").mkdir()
    export_dataset(ds, tmp_path / "coco" / "c.json", "coco-rle")
    # the same labels again: nothing is added twice, every repeat is reported
    # (read on a worker thread, applied where the dataset lives: the window's two steps)
    plan = read_labels(tmp_path / "coco" / "c.json", "coco")
    assert plan.annotation_count == 27
    changes, report = apply_plan(ds, plan)
    assert changes.annotations == [] and changes.images == [] and changes.categories == []
    assert len(report) == 27
    assert all(re.fullmatch(r"c\.json annotations\[\d+\] \(id \d+\): the working file already has this '.*' mask "
                            r"\(IoU 1\.000\); not added again", line) for line in report), report[:3]  # fmt: skip
    # through polygons: a mask that comes back within IoU 0.95 is the same; one whose holes were filled is not
    export_dataset(ds, tmp_path / "yolo", "yolo-seg")
    changes, report = import_labels(ds, tmp_path / "yolo", "yolo-seg", images=tmp_path / "images")
    assert len(report) + len(changes.annotations) == 27 and len(report) >= 19
    for aid in changes.annotations:
        new = ds.annotations[aid].mask()
        twin = max((a for a in before if ds.annotations[a].image_id == ds.annotations[aid].image_id),
                   key=lambda a: iou(new, originals[a]))  # fmt: skip
        assert has_holes(originals[twin]) and iou(new, originals[twin]) < 0.95
        ds.remove_annotation(aid)
    # a new image, a new class and one image recorded at another size
    root = tmp_path / "more"
    _image(root / "images" / "new.png")
    _image(root / "images" / "voc.jpg", 10, 10)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [zebra]\n")
    (root / "labels" / "new.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (root / "labels" / "voc.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    changes, report = import_labels(ds, root, "yolo-seg", images=root / "images")
    assert report == []  # different paths: ../more/images/voc.jpg is another image than voc.jpg
    assert len(changes.images) == 2 and len(changes.annotations) == 2
    assert [ds.categories[c].name for c in changes.categories] == ["zebra"]
    # what was there is all still there, unchanged
    assert {aid: before[aid] for aid in before} == {
        aid: (ds.annotations[aid].category_id, ds.annotations[aid].segmentation["counts"]) for aid in before
    }
    assert {cid: ds.categories[cid].name for cid in cats_before} == cats_before
    undo_import(ds, changes)
    assert set(ds.annotations) == set(before) and {c.id for c in ds.categories.values()} == set(cats_before)


def test_an_image_recorded_at_another_size_is_reported_not_changed(tmp_path):
    _image(tmp_path / "a.png", 40, 30)
    ds = Dataset(tmp_path / "annotations.json")
    ds.ensure_image("a.png", 20, 15)  # the file was replaced since it was annotated
    (tmp_path / "a.json").write_text(json.dumps({
        "shapes": [{"label": "cat", "points": [[2, 2], [12, 2], [6, 10]], "shape_type": "polygon"}],
        "imagePath": "a.png", "imageData": None,
    }))  # fmt: skip
    changes, report = import_labels(ds, tmp_path / "a.json", "labelme")
    assert report == [
        "a.json: the working file records 'a.png' as 20 x 15, but the image is 40 x 30 (width x height); not imported"
    ]
    assert changes.annotations == [] and ds.images[1].width == 20


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """The ``{"counts": [runs...]}`` form CVAT writes for crowd masks (column-major, background first)."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def test_a_cvat_coco_export_imports_whole(tmp_path):
    """CVAT's "COCO 1.0" export: ``annotations/instances_default.json`` beside ``images/``, crowd masks
    as uncompressed RLE, polygons with a degenerate part, rectangles as ``"segmentation": []`` + bbox.

    Masks agree with pycocotools' ``annToMask`` on the same file; the rectangle (which ``annToMask``
    cannot read) is its box; nothing is dropped.
    """
    from pycocotools.coco import COCO
    from skimage import data as skdata

    coins = skdata.coins()  # 303 x 384, real coins on a background
    h, w = coins.shape
    _image(tmp_path / "images" / "coins.png", w, h)
    crowd = coins > 140
    data = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": 1, "name": "coin", "supercategory": ""}],
        "images": [{"id": 1, "width": w, "height": h, "file_name": "coins.png", "license": 0, "flickr_url": "",
                    "coco_url": "", "date_captured": 0}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": _uncompressed_rle(crowd),
             "area": float(crowd.sum()), "bbox": coco.rle_bbox(coco.encode_mask(crowd)), "iscrowd": 1,
             "attributes": {"occluded": False}},
            {"id": 2, "image_id": 1, "category_id": 1,
             "segmentation": [[40.5, 20.2, 90.1, 25.7, 70.3, 80.9, 35.0, 60.4], [100.0, 100.0, 101.0, 101.0]],
             "area": 2500.0, "bbox": [35.0, 20.2, 55.1, 60.7], "iscrowd": 0, "attributes": {"occluded": True}},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [], "area": 600.0,
             "bbox": [200.0, 150.0, 30.0, 20.0], "iscrowd": 0, "attributes": {"occluded": False}},
        ],
    }  # fmt: skip
    src = tmp_path / "annotations" / "instances_default.json"
    src.parent.mkdir()
    src.write_text(json.dumps(data), encoding="utf-8")
    ds = Dataset(tmp_path / "work.json")
    changes, report = import_labels(ds, src, "coco")
    assert report == [
        "instances_default.json: the images are not beside it; file_name is read relative to ../images/ "
        "(where 1 of the first 1 are)",
        "instances_default.json annotations[1] (id 2): polygon 1 has fewer than 3 points; left out of the mask",
        "instances_default.json annotations[2] (id 3): no segmentation, only a box; imported as a rectangle mask",
    ]
    got = ds.annotations_for(ds.image_by_name("images/coins.png").id)
    assert [a.iscrowd for a in got] == [1, 0, 0] and len(changes.annotations) == 3
    assert got[1].extra == {"attributes": {"occluded": True}}
    reference = COCO()
    reference.dataset = json.loads(src.read_text())
    reference.createIndex()
    for a, ann in zip(got[:2], data["annotations"][:2]):
        np.testing.assert_array_equal(a.mask(), reference.annToMask(ann).astype(bool))
    box = np.zeros((h, w), bool)
    box[150:170, 200:230] = True
    np.testing.assert_array_equal(got[2].mask(), box)


def test_file_names_written_on_windows_or_another_machine_are_found_here(tmp_path):
    """COCO files made on Windows (``images\\a.jpg``) or with absolute paths from the labeller's machine:
    the image is looked up by that path, then by its file name (reported once); two names that land
    on the same file do not both import."""
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / "images" / name)
    tri = [2, 2, 12, 2, 6, 10]
    data = {
        "images": [
            {"id": 1, "file_name": "images\\a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "C:\\Users\\bob\\dataset\\b.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "/home/alice/data/c.png", "width": 40, "height": 30},
            {"id": 4, "file_name": "D:\\other\\c.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": k, "image_id": k, "category_id": 1, "segmentation": [tri]} for k in (1, 2, 3, 4)],
    }
    (tmp_path / "in.json").write_text(json.dumps(data), encoding="utf-8")
    plan = read_labels(tmp_path / "in.json", "coco")
    assert [i.path for i in plan.images] == [tmp_path / "images" / "a.png"]  # Windows separators, relative
    assert plan.report == [
        "in.json images[1] (id 2): image file 'C:\\Users\\bob\\dataset\\b.png' not found; skipped with its annotations",
        "in.json images[2] (id 3): image file '/home/alice/data/c.png' not found; skipped with its annotations",
        "in.json images[3] (id 4): image file 'D:\\other\\c.png' not found; skipped with its annotations",
    ]
    plan = read_labels(tmp_path / "in.json", "coco", images=tmp_path / "images")
    assert [i.path.name for i in plan.images] == ["a.png", "b.png", "c.png"]
    assert plan.report == [
        "in.json images[3] (id 4): 'D:\\other\\c.png' is the file of images[2] too; skipped with its annotations",
        "in.json: 3 file_name(s) are paths from another machine (first: 'images\\a.png'); "
        f"found by their file name in {tmp_path / 'images'}",
    ]
