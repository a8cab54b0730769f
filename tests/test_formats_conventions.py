"""Other tools' conventions the importers and exporters follow.

* Roboflow's COCO exports put the dataset's name first as category 0, a grouping that every real
  class names as its ``supercategory`` and no annotation uses (``roboflow/rf-detr`` #1303 drops it
  by the same rule); importing it would add an empty category and shift every YOLO class id by one.
* VOC marks regions to ignore as 255 (void) in both label PNGs: crowd regions are written so, and
  left out of ``Annotations/*.xml`` (detectron2 trains on ``difficult`` objects).
* VOC2012 ships ~17,000 JPEGs of which ~2,900 have label PNGs: the rest are one report line.
* COCO files that record an EXIF-rotated photo at its stored size: which pixels their coordinates
  are on cannot be told from the file, so they are skipped with one line that says what to do.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.importing import import_labels, read_labels
from test_formats_common import masks_by_image, real_dataset


def _image(path: Path, w: int = 40, h: int = 30, orientation: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path, exif=exif.tobytes())


# ----------------------------------------------------------------------------
# Roboflow's dataset-name category


def _roboflow_coco(tmp_path: Path) -> Path:
    """A COCO file laid out as Roboflow exports it (``_annotations.coco.json`` beside the images)."""
    for name in ("a.jpg", "b.jpg"):
        _image(tmp_path / "train" / name)
    tri = [2, 2, 12, 2, 6, 10]
    data = {
        "info": {"description": "Exported from roboflow.com", "contributor": "Roboflow"},
        "categories": [
            {"id": 0, "name": "workers", "supercategory": "none"},
            {"id": 1, "name": "head", "supercategory": "workers"},
            {"id": 2, "name": "helmet", "supercategory": "workers"},
        ],
        "images": [
            {"id": 0, "license": 1, "file_name": "a.jpg", "height": 30, "width": 40},
            {"id": 1, "license": 1, "file_name": "b.jpg", "height": 30, "width": 40},
        ],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 2, "bbox": [2, 2, 10, 8], "area": 40, "segmentation": [tri],
             "iscrowd": 0},
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 8], "area": 40, "segmentation": [tri],
             "iscrowd": 0},
        ],
    }  # fmt: skip
    src = tmp_path / "train" / "_annotations.coco.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    return src


def test_roboflow_dataset_name_category_is_not_imported_and_yolo_ids_do_not_shift(tmp_path):
    src = _roboflow_coco(tmp_path)
    ds = Dataset(tmp_path / "train" / "work.json")
    changes, report = import_labels(ds, src, "coco")
    assert report == [
        "_annotations.coco.json categories[0] (id 0): 'workers' is the supercategory of 2 other "
        "categories and no annotation uses it (Roboflow writes the dataset's name so); not imported as a category"
    ]
    assert [c.name for c in ds.categories.values()] == ["head", "helmet"]
    assert len(changes.annotations) == 2
    ds.save()
    out = tmp_path / "yolo"
    export_dataset(ds, out, "yolo-seg")
    yaml = (out / "data.yaml").read_text()
    assert "nc: 2" in yaml and '  0: "head"\n  1: "helmet"' in yaml
    classes = {p.stem: p.read_text().split()[0] for p in (out / "labels").rglob("*.txt")}
    assert classes == {"a": "1", "b": "0"}  # helmet, head


def test_a_grouping_category_is_kept_when_used_or_when_it_groups_nothing(tmp_path):
    """Only the Roboflow pattern is dropped: an annotated parent keeps its class, and an unused
    category nobody names as a supercategory is a class still to be annotated."""
    src = _roboflow_coco(tmp_path)
    data = json.loads(src.read_text())
    data["annotations"].append(
        {"id": 2, "image_id": 0, "category_id": 0, "segmentation": [[20, 2, 30, 2, 25, 10]], "iscrowd": 0}
    )
    src.write_text(json.dumps(data), encoding="utf-8")
    plan = read_labels(src, "coco")
    assert plan.report == [] and plan.categories == ["workers", "head", "helmet"]
    data["annotations"].pop()
    for cat in data["categories"]:
        cat["supercategory"] = "none"  # a flat file: 'workers' is an empty class, not a grouping
    src.write_text(json.dumps(data), encoding="utf-8")
    plan = read_labels(src, "coco")
    assert plan.report == [] and plan.categories == ["workers", "head", "helmet"]


# ----------------------------------------------------------------------------
# crowd regions in VOC


def test_voc_export_writes_crowd_regions_as_void_under_instances_and_leaves_them_out_of_the_xml(tmp_path):
    ds, originals = real_dataset(tmp_path)
    img = ds.image_by_name("voc.jpg")
    anns = ds.annotations_for(img.id)
    region = np.zeros((img.height, img.width), bool)
    region[100:300, 50:450] = True  # covers instances and background
    crowd = ds.make_annotation(img.id, anns[0].category_id, region)
    crowd.iscrowd = 1
    ds.add_annotation(crowd)
    ds.save()
    out = tmp_path / "voc"
    warnings = export_dataset(ds, out, "voc")
    assert [w for w in warnings if "crowd" in w] == [
        "1 crowd region(s) (iscrowd) written as void (255) in SegmentationClass and SegmentationObject, under "
        f"the instances, and left out of Annotations/*.xml (first: annotation {crowd.id} (image 'voc.jpg', "
        f"category '{ds.categories[anns[0].category_id].name}'))"
    ]
    obj = np.asarray(Image.open(out / "SegmentationObject" / "voc.png"))
    cls = np.asarray(Image.open(out / "SegmentationClass" / "voc.png"))
    instances = np.zeros(region.shape, bool)
    for k, a in enumerate(anns, 1):
        np.testing.assert_array_equal(obj == k, originals[a.id])  # the instances are whole: void is under them
        instances |= originals[a.id]
    void = region & ~instances
    assert void.any()
    np.testing.assert_array_equal(obj == 255, void)
    np.testing.assert_array_equal(cls == 255, void)
    assert obj.max() == 255 and sorted(set(np.unique(obj).tolist()) - {0, 255}) == list(range(1, len(anns) + 1))
    objects = ET.parse(out / "Annotations" / "voc.xml").getroot().findall("object")
    assert len(objects) == len(anns)  # object k is still instance k
    # the instances come back; the void (like VOC's own) does not
    back = Dataset(tmp_path / "back" / "work.json")
    import_labels(back, out, "voc", images=tmp_path / "images")
    got = masks_by_image(back, "../images/voc.jpg")
    assert [m.sum() for _, m in got] == [originals[a.id].sum() for a in anns]
    # with edges marked, the crowd only turns the background it covers void
    export_dataset(ds, tmp_path / "with", "voc", voc_border=2)
    ds.remove_annotation(crowd.id)
    export_dataset(ds, tmp_path / "without", "voc", voc_border=2)
    for sub in ("SegmentationObject", "SegmentationClass"):
        with_crowd = np.asarray(Image.open(tmp_path / "with" / sub / "voc.png"))
        expected = np.asarray(Image.open(tmp_path / "without" / sub / "voc.png")).copy()
        expected[region & (expected == 0)] = 255
        np.testing.assert_array_equal(with_crowd, expected)


# ----------------------------------------------------------------------------
# VOC images without label PNGs


def _voc_with_unlabelled_images(root: Path, unlabelled: int) -> None:
    (root / "JPEGImages").mkdir(parents=True)
    for k in range(unlabelled + 1):
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "JPEGImages" / f"2007_{k:06d}.jpg")
    (root / "class_names.txt").write_text("_background_\ncat\n")
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 2:5] = 1
    for sub in ("SegmentationObject", "SegmentationClass"):
        (root / sub).mkdir()
        Image.fromarray(m, "L").save(root / sub / "2007_000000.png")


def test_voc_images_without_label_pngs_are_one_report_line(tmp_path):
    root = tmp_path / "VOC2012"
    _voc_with_unlabelled_images(root, 40)
    plan = read_labels(root, "voc")
    assert plan.report == [
        "JPEGImages: 40 image(s) have no label PNG in SegmentationObject/ or SegmentationClass/; not imported "
        "(first: 2007_000001.jpg, 2007_000002.jpg, 2007_000003.jpg, ...)"
    ]
    assert len(plan.images) == 1 and plan.annotation_count == 1


def test_a_labelme_folder_with_many_unlabelled_images_is_one_report_line(tmp_path):
    root = tmp_path / "photos"
    for k in range(12):
        _image(root / f"img{k}.png", 12, 10)
    shape = {"label": "cat", "points": [[1, 1], [8, 1], [4, 6]], "shape_type": "polygon"}
    doc = {"shapes": [shape], "imagePath": "img3.png", "imageData": None, "imageWidth": 12, "imageHeight": 10}
    (root / "img3.json").write_text(json.dumps(doc), encoding="utf-8")
    plan = read_labels(root, "labelme")
    assert plan.report == [
        "photos: 11 image(s) are not referred to by any labelme file; not imported (first: img0.png, img1.png, "
        "img2.png, ...)"
    ]
    assert [i.path.name for i in plan.images] == ["img3.png"]


def test_a_yolo_split_with_many_unlabelled_images_is_one_report_line(tmp_path):
    root = tmp_path / "yolo"
    for k in range(5):
        _image(root / "images" / f"b{k}.jpg", 12, 10)
    (root / "labels").mkdir()
    (root / "labels" / "b0.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [cat]\n")
    plan = read_labels(root, "yolo-seg")
    assert plan.report == [
        "images: 4 image(s) have no label file in labels/; not imported (first: b1.jpg, b2.jpg, b3.jpg, ...)"
    ]


# ----------------------------------------------------------------------------
# EXIF-rotated photos recorded at their stored size


def test_coco_image_recorded_at_its_stored_size_before_exif_rotation_is_one_clear_line(tmp_path):
    """A portrait photo stored landscape (EXIF orientation 6 or 8) and recorded in the JSON at the
    stored 40 x 30: labelImg and VoTT write such sizes with coordinates on the stored pixels, scripts
    that size with PIL and draw on cv2.imread's upright image with upright coordinates, Label Studio
    with upright percentages scaled by the stored size (HumanSignal/label-studio #6608); the file
    cannot tell which, so the images are skipped, in one line that says what to do."""
    for k, orientation in enumerate((6, 8, 6)):
        _image(tmp_path / f"p{k}.jpg", 40, 30, orientation)  # shown 30 x 40
    _image(tmp_path / "upright.jpg", 40, 30)
    tri = [2, 2, 12, 2, 6, 10]
    data = {
        "images": [{"id": k, "file_name": f"p{k}.jpg", "width": 40, "height": 30} for k in range(3)]
        + [{"id": 3, "file_name": "upright.jpg", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": k, "image_id": k, "category_id": 1, "segmentation": [tri]} for k in range(4)],
    }
    (tmp_path / "in.json").write_text(json.dumps(data), encoding="utf-8")
    plan = read_labels(tmp_path / "in.json", "coco")
    assert plan.report == [
        "in.json: 3 image(s) are recorded at their stored size, but their EXIF orientation (6 or 8) turns them "
        "by 90 degrees for display, and they are annotated here as shown (first: 'p0.jpg', 40 x 30 in the JSON, "
        "shown 30 x 40); the file cannot tell which pixels its coordinates are on, so they are skipped with "
        "their annotations. If the tool drew on the stored pixels (labelImg, VoTT), remove the orientation tag "
        "from the images (exiftool -Orientation= FILE); if it drew on the upright photo, set each width and "
        "height to the shown size (Label Studio's export also scales x and y by the stored width and height: "
        "rescale them to the shown size); then import again"
    ]
    assert [i.path.name for i in plan.images] == ["upright.jpg"]
    # the first way out the line gives: the upright size, and the coordinates as they are
    for img in data["images"][:3]:
        img["width"], img["height"] = 30, 40
    (tmp_path / "in.json").write_text(json.dumps(data), encoding="utf-8")
    plan = read_labels(tmp_path / "in.json", "coco")
    assert plan.report == [] and len(plan.images) == 4
    expected = coco.decode_rle(coco.polygons_to_rle([tri], 40, 30), 40, 30)
    np.testing.assert_array_equal(coco.decode_rle(plan.images[0].annotations[0].rle, 40, 30), expected)
