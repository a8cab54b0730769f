"""Negatives: images marked ``"state": "done"`` with no annotations export as the format's empty label.

The working file is written by hand (as the window's image states write it):
``done.png`` is a negative, ``todo.png`` and ``bare.png`` (no state: its
annotations were deleted) have no annotations and have not been checked,
``skipped.png`` and ``skipped_box.png`` (one mask) were skipped on purpose,
``object.png`` has one mask. Every format goes through ``sam-annotator export``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.cli import main as cli_main
from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.formats.importing import import_labels, undo_import
from test_formats_labelme import labelme_masks

H, W = 30, 40
UNCHECKED = ("todo.png", "bare.png")
SKIPPED = ("skipped.png", "skipped_box.png")


@pytest.fixture
def working_file(tmp_path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    names = ("object.png", "done.png") + UNCHECKED + SKIPPED
    for name in names:
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(images / name)
    square = np.zeros((H, W), bool)
    square[5:20, 10:30] = True
    rle = coco.encode_mask(square)
    data = {
        "images": [
            {"id": 1, "file_name": "object.png", "width": W, "height": H, "state": "done"},
            {"id": 2, "file_name": "done.png", "width": W, "height": H, "state": "done"},
            {"id": 3, "file_name": "todo.png", "width": W, "height": H, "state": "todo"},
            {"id": 4, "file_name": "skipped.png", "width": W, "height": H, "state": "skipped"},
            {"id": 5, "file_name": "bare.png", "width": W, "height": H},
            {"id": 6, "file_name": "skipped_box.png", "width": W, "height": H, "state": "skipped"},
        ],
        "categories": [{"id": 1, "name": "box", "supercategory": ""}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 300.0,
             "bbox": [10.0, 5.0, 20.0, 15.0], "iscrowd": 0},
            {"id": 2, "image_id": 6, "category_id": 1, "segmentation": rle, "area": 300.0,
             "bbox": [10.0, 5.0, 20.0, 15.0], "iscrowd": 0},
        ],
    }
    path = images / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def _export(working_file: Path, fmt: str, out: Path, *extra: str):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli_main(["export", str(working_file), "--format", fmt, "-o", str(out), *extra])
    assert status == 0, stderr.getvalue()
    lines = stderr.getvalue().splitlines()
    skipped = [line for line in lines if "marked skipped" in line]
    assert skipped == ["warning: 2 image(s) marked skipped ('skipped.png', 'skipped_box.png') left out of the "
                       "export, with their 1 annotation(s)"], stderr.getvalue()
    warnings = [line for line in lines if "not marked done" in line]
    assert warnings == ["warning: 2 image(s) with no annotations are not marked done ('todo.png', 'bare.png'); "
                        "left out of the export (mark an image done to export it as a negative: an empty label)"]
    assert stdout.getvalue().startswith(f"wrote {out}: 2 images, 1 annotations")
    return warnings


def test_yolo_writes_an_empty_label_file_for_the_negative_only(working_file, tmp_path):
    out = tmp_path / "yolo"
    _export(working_file, "yolo-seg", out, "--copy-images")
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["done.txt", "object.txt"]
    assert (out / "labels" / "done.txt").read_bytes() == b""
    rows = (out / "labels" / "object.txt").read_text().split()
    assert rows[0] == "0" and len(rows) % 2 == 1 and len(rows) >= 7


def test_voc_writes_an_all_background_png_for_the_negative_only(working_file, tmp_path):
    out = tmp_path / "voc"
    _export(working_file, "voc", out)
    for sub in ("SegmentationClass", "SegmentationObject"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["done.png", "object.png"]
        negative = Image.open(out / sub / "done.png")
        assert negative.mode == "P" and negative.size == (W, H)
        assert not np.asarray(negative).any()
        assert np.asarray(Image.open(out / sub / "object.png")).sum() > 0


def test_labelme_writes_a_json_with_no_shapes_for_the_negative_only(working_file, tmp_path):
    out = tmp_path / "labelme"
    _export(working_file, "labelme", out)
    assert sorted(p.name for p in out.glob("*.json") if not p.name.startswith(".")) == ["done.json", "object.json"]
    (negative, negative_masks), (obj, obj_masks) = labelme_masks([out / "done.json", out / "object.json"], tmp_path)
    assert negative["labels"] == [] and negative_masks == []  # labelme's LabelFile loads it: no shapes
    assert obj["labels"] == ["box"] and obj_masks[0].sum() == 15 * 20


@pytest.mark.parametrize("per_image", [False, True])
def test_masks_list_the_negative_and_not_the_unchecked_images(working_file, tmp_path, per_image):
    out = tmp_path / "masks"
    _export(working_file, "masks", out, *(["--masks-per-image"] if per_image else []))
    with (out / "masks.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({Path(r["image"]).name for r in rows}) == ["done.png", "object.png"]
    negative = [r for r in rows if Path(r["image"]).name == "done.png"]
    assert len(negative) == 1
    if per_image:
        png = np.asarray(Image.open(out / negative[0]["mask"]))
        assert png.shape == (H, W) and not png.any()
    else:
        assert negative[0]["mask"] == ""
    pngs = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert not any(name.split(".")[0] in p for p in pngs for name in UNCHECKED + SKIPPED)


@pytest.mark.parametrize("fmt", ["coco-rle", "coco-polygon"])
def test_coco_keeps_the_negative_image_and_leaves_out_the_unchecked(working_file, tmp_path, fmt):
    out = tmp_path / "export.json"
    _export(working_file, fmt, out)
    data = json.loads(out.read_text())
    assert sorted(img["file_name"] for img in data["images"]) == ["images/done.png", "images/object.png"]
    assert [a["image_id"] for a in data["annotations"]] == [1]
    assert coco.validate_coco(data) == []


def test_imported_empty_label_file_marks_the_image_done_and_undo_forgets_it(working_file, tmp_path):
    """An empty YOLO label file is a negative: the import marks the image done; undo removes what it listed."""
    out = tmp_path / "yolo"
    _export(working_file, "yolo-seg", out, "--copy-images")
    target = tmp_path / "images" / "fresh.json"
    ds = Dataset.open(target)
    changes, report = import_labels(ds, out, "yolo-seg", images=tmp_path / "images")
    assert ds.image_by_name("done.png").extra["state"] == "done"
    assert [line for line in report if "no label file" in line] == [
        f"{tmp_path / 'images'}: 4 image(s) have no label file in labels/; not imported (first: bare.png, "
        "skipped.png, skipped_box.png, ...)"
    ]  # unchecked and skipped images: no label
    undo_import(ds, changes)
    assert ds.image_by_name("done.png") is None and not ds.images  # the records it listed are gone
    assert not ds.annotations


def test_undo_import_puts_back_the_state_of_an_image_already_listed(working_file, tmp_path):
    out = tmp_path / "yolo"
    _export(working_file, "yolo-seg", out, "--copy-images")
    ds = Dataset.open(working_file)
    rec = ds.ensure_image("fresh.png", W, H)  # listed, to do, no annotations: the source says it is empty
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(working_file.parent / "fresh.png")
    ds.set_image_state(rec.id, "todo")
    (out / "labels" / "fresh.txt").write_text("")
    changes, _ = import_labels(ds, out, "yolo-seg", images=working_file.parent)
    assert ds.images[rec.id].extra["state"] == "done" and (rec.id, "todo") in changes.states
    undo_import(ds, changes)
    assert ds.images[rec.id].extra["state"] == "todo"
