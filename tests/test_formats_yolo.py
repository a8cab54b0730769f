"""YOLO segmentation: Ultralytics' documented layout, the round trip on real masks, hostile label folders.

``ultralytics`` itself cannot be installed here (it needs torchvision, which
has no CPU build in this environment), so its reader's checks are restated
from ``ultralytics/data/utils.py`` (``img2label_paths``, ``verify_image_label``,
``check_det_dataset``) and applied to what we write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.importing import ImportFailed, import_labels, read_labels
from annotator.data.formats.yolo import parse_data_yaml
from test_formats_common import filled, has_holes, iou, masks_by_image, real_dataset


def ultralytics_label_path(image: Path) -> Path:
    """``img2label_paths``: the last ``/images/`` becomes ``/labels/``, the extension ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def check_ultralytics_label(path: Path, nc: int) -> list:
    """What ``verify_image_label`` requires of a segmentation label file; returns its rows."""
    rows = [x.split() for x in path.read_text(encoding="utf-8").strip().splitlines() if len(x)]
    for row in rows:
        assert len(row) > 6, "a segment line has a class and at least 3 points"
        assert len(row) % 2 == 1, "class then x y pairs"
        assert re.fullmatch(r"\d+", row[0]) and int(row[0]) < nc
        xy = np.array(row[1:], dtype=np.float64)
        assert np.isfinite(xy).all() and xy.min() >= 0 and xy.max() <= 1, "normalised coordinates"
        assert all(re.fullmatch(r"\d\.\d{6}", v) for v in row[1:])
    assert len({tuple(r) for r in rows}) == len(rows), "Ultralytics drops duplicate rows"
    return rows


def test_export_writes_the_ultralytics_layout(tmp_path):
    yaml = pytest.importorskip("yaml")  # PyYAML, as Ultralytics reads data.yaml (installed with labelme)
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "yolo"
    warnings = export_dataset(ds, out, "yolo-seg", copy_images=True)

    doc = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert doc == parse_data_yaml((out / "data.yaml").read_text(encoding="utf-8"))
    names = [c.name for c in sorted(ds.categories.values(), key=lambda c: c.id)]
    assert doc["names"] == dict(enumerate(names)) and doc["nc"] == len(names)
    assert Path(doc["path"]) == out.resolve() and doc["train"] == doc["val"] == "images"

    copied = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.*"))
    assert copied == ["arc/arc.png", "empty.png", "voc.jpg"]
    counts = {"voc.jpg": 19, "arc/arc.png": 8, "empty.png": 0}
    for rel, n in counts.items():
        image = out / "images" / rel
        assert image.read_bytes() == (tmp_path / "images" / rel).read_bytes()
        label = ultralytics_label_path(image)
        rows = check_ultralytics_label(label, len(names))
        assert len(rows) == n  # one line per instance, parts joined
        if n == 0:
            assert label.read_bytes() == b""  # a negative: an empty label file
    voc_rows = check_ultralytics_label(out / "labels" / "voc.txt", len(names))
    by_image = ds.annotations_for(ds.image_by_name("voc.jpg").id)
    assert [names[int(r[0])] for r in voc_rows] == [ds.categories[a.category_id].name for a in by_image]
    holed = [aid for aid, m in originals.items() if has_holes(m)]
    assert len(holed) >= 5
    for aid in holed:
        assert any(w.startswith(f"annotation {aid} (") and "the mask has holes" in w for w in warnings)
    assert not any("Ultralytics will not find" in w for w in warnings)


def test_round_trip_through_yolo_keeps_every_real_mask(tmp_path):
    """COCO -> yolo-seg -> import -> COCO: IoU >= 0.98 per annotation at the default tolerance (0.25 px).

    Polygons cannot carry holes, so the reference is each original mask with
    its holes filled (those masks were warned about on export); masks without
    holes are also compared with the original directly.
    """
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "yolo"
    export_dataset(ds, out, "yolo-seg", copy_images=True)
    back = Dataset.open(out / "annotations.json")
    changes, report = import_labels(back, out, "yolo-seg")
    assert report == []
    assert len(changes.annotations) == 27 and len(changes.images) == 3
    back.save()
    reread = Dataset.open(out / "annotations.json")
    assert masks_by_image(reread, "images/empty.png") == []  # the negative came back as an image
    worst = 1.0
    for src_name, name in (("voc.jpg", "images/voc.jpg"), ("arc/arc.png", "images/arc/arc.png")):
        src = ds.annotations_for(ds.image_by_name(src_name).id)
        got = masks_by_image(reread, name)
        assert [n for n, _ in got] == [ds.categories[a.category_id].name for a in src]
        for a, (_, mask) in zip(src, got):
            original = originals[a.id]
            score = iou(mask, filled(original))
            worst = min(worst, score)
            assert score >= 0.98, (a.id, score)
            if not has_holes(original):
                assert iou(mask, original) >= 0.98
    assert worst >= 0.999  # measured: the 0.25 px tolerance keeps the pixels


def test_a_mask_in_several_parts_is_one_line_that_ultralytics_fills_whole(tmp_path):
    ds = Dataset.open(tmp_path / "images" / "annotations.json")
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    ds.ensure_image("a.png", 80, 60)
    ds.add_category("part")
    m = np.zeros((60, 80), bool)
    m[5:20, 5:20] = m[30:50, 40:70] = m[45:55, 5:12] = True
    ds.add_annotation(ds.make_annotation(1, 1, m))
    export_dataset(ds, tmp_path, "yolo-seg")  # images already in <out>/images: nothing to copy
    rows = check_ultralytics_label(tmp_path / "labels" / "a.txt", 1)
    assert len(rows) == 1
    xy = np.array(rows[0][1:], dtype=np.float64).reshape(-1, 2) * (80, 60)
    np.testing.assert_array_equal(coco.decode_rle(coco.polygons_to_rle([list(xy.ravel())], 60, 80), 60, 80), m)
    # Ultralytics' polygon2mask: cv2.fillPoly on int32 points; the bridges add thin lines, no part is lost
    ultra = np.zeros((60, 80), np.uint8)
    cv2.fillPoly(ultra, [xy.astype(np.int32)], 1)
    ultra = ultra.astype(bool)
    assert (ultra & m).sum() >= 0.9 * m.sum()  # every part is there (int32 truncation shifts edges)
    assert (ultra & ~m).sum() < 0.1 * m.sum()  # the bridges are thin


def test_images_outside_images_folder_get_a_warning_and_an_absolute_train_path(tmp_path):
    ds, _ = real_dataset(tmp_path)
    out = tmp_path / "yolo"
    warnings = export_dataset(ds, out, "yolo-seg")
    assert warnings[-1] == (
        "Ultralytics will not find the labels of 3 image(s): it reads an image's labels where the last "
        f"'/images/' in its path becomes '/labels/' (for {tmp_path / 'images' / 'voc.jpg'} it reads "
        f"{tmp_path / 'labels' / 'voc.txt'}); copy the images into {out / 'images'} (export with copy_images, "
        "--copy-images) before training"
    )
    doc = parse_data_yaml((out / "data.yaml").read_text(encoding="utf-8"))
    assert doc["train"] == str(tmp_path / "images")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == [
        "labels/arc/arc.txt", "labels/empty.txt", "labels/voc.txt",
    ]  # fmt: skip
    # reading it back needs the image folder
    back = Dataset(tmp_path / "images" / "back.json")
    changes, report = import_labels(back, out, "yolo-seg", images=tmp_path / "images")
    assert report == [] and len(changes.annotations) == 27


@pytest.mark.parametrize(
    "text",
    [
        "names: [cat, 'dog', \"bird # not a comment\"]\nnc: 3\n",
        "names:\n  - cat\n  - dog  # a comment\n  - 'bird # not a comment'\n",
        "# comment\npath: ../x\nnames:\n  0: cat\n  1: \"dog\"\n  2: bird # not a comment\n",
        "names: {0: cat, 1: dog, 2: 'bird # not a comment'}\ntrain: images/train\nval: images/val\n",
    ],
)
def test_data_yaml_reader_agrees_with_pyyaml(text):
    yaml = pytest.importorskip("yaml")
    assert parse_data_yaml(text) == yaml.safe_load(text)


def _image(path: Path, w: int = 40, h: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "ds"
    for name in ("a.png", "b.png", "c.png", "d.jpg", "d.png", "e.png"):
        _image(root / "images" / name)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [cat, dog]\n", encoding="utf-8")
    (root / "labels" / "a.txt").write_text(
        "0 0.1 0.1 0.5 0.1 0.5 0.5\n"
        "1 0.1 0.1 0.5 0.5\n"
        "0 0.1 nan 0.5 0.1 0.5 0.5\n"
        "7 0.1 0.1 0.5 0.1 0.5 0.5\n"
        "1 -0.5 0.1 1.5 0.1 0.5 0.9\n"
        "0 0.1 0.1 0.5 0.1 0.5\n"
        "x 0.1 0.1 0.5 0.1 0.5 0.5\n"
        "\n"
        "0 0.2 0.2 0.2 0.2 0.2 0.2\n"
        "0 1.5 1.5 2 1.5 2 2\n",
        encoding="utf-8",
    )
    (root / "labels" / "b.txt").write_text("1 0.1 0.1\n", encoding="utf-8")
    (root / "labels" / "d.txt").write_text("1 0 0 1 0 1 1 0 1\n", encoding="utf-8")
    (root / "labels" / "e.txt").write_text("", encoding="utf-8")
    (root / "labels" / "z.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n", encoding="utf-8")
    return root


def test_hostile_yolo_folder_reports_every_problem_and_imports_the_rest(hostile):
    ds = Dataset(hostile / "annotations.json")
    changes, report = import_labels(ds, hostile, "yolo-seg")
    assert report == [
        "images/d.png: same name as images/d.jpg (labels pair with images by name without extension); not imported",
        "labels/a.txt line 2: a box (class cx cy w h), not a polygon; imported as a rectangle mask, clipped to the image",
        "labels/a.txt line 3: coordinate 'nan' is not a finite number; line skipped",
        "labels/a.txt line 4: class id 7 is not in data.yaml (ids 0..1); line skipped",
        "labels/a.txt line 5: coordinates outside 0..1 (from -0.5 to 1.5); clipped to the image",
        "labels/a.txt line 6: odd number of coordinates (5); line skipped",
        "labels/a.txt line 7: class id 'x' is not a whole number >= 0; line skipped",
        "labels/a.txt line 9: the polygon has no area; line skipped",
        "labels/a.txt line 10: the polygon lies outside the image (coordinates outside 0..1); line skipped",
        "labels/b.txt line 1: 1 points; a polygon needs at least 3; line skipped",
        "labels/z.txt: no image named 'z' in images; skipped",
        "images/c.png: no label file labels/c.txt; not imported",
    ]
    assert sorted(r.file_name for r in ds.images.values()) == ["images/a.png", "images/d.jpg", "images/e.png"]
    assert [c.name for c in ds.categories.values()] == ["cat", "dog"]
    a = masks_by_image(ds, "images/a.png")
    assert [n for n, _ in a] == ["cat", "dog", "dog"]
    box = np.zeros((20, 40), bool)
    box[:7, :14] = True  # "1 0.1 0.1 0.5 0.5": x -0.15..0.35, y -0.15..0.35 of 40 x 20, clipped
    np.testing.assert_array_equal(a[1][1], box)
    clipped = a[2][1]
    cols = np.flatnonzero(clipped.any(axis=0))
    assert cols[0] <= 1 and cols[-1] >= 38  # clipped to the image's edges, not dropped
    d = masks_by_image(ds, "images/d.jpg")
    assert len(d) == 1 and d[0][1].all()  # the whole image
    assert masks_by_image(ds, "images/e.png") == []  # an empty label file: a negative
    assert len(changes.images) == 3 and len(changes.annotations) == 4


def test_yolo_without_data_yaml_names_classes_by_id_and_reports_duplicate_names(tmp_path):
    root = tmp_path / "ds"
    _image(root / "images" / "a.png")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("3 0.1 0.1 0.5 0.1 0.5 0.5\n0 0.1 0.1 0.9 0.1 0.9 0.9\n")
    plan = read_labels(root, "yolo-seg")
    assert plan.report == ["data.yaml: not found; classes are named class_<id> (class_0, class_1, ...)"]
    assert plan.categories == ["class_0", "class_3"]
    assert [a.category for a in plan.images[0].annotations] == ["class_3", "class_0"]
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: cat\n  2: ''\n  3: dog\n")
    plan = read_labels(root, "yolo-seg")
    assert plan.report == [
        "data.yaml: class 1 'cat' has the same name as class 0; both import as 'cat'",
        "data.yaml: class 2 has an empty name; imported as 'class_2'",
    ]
    assert plan.categories == ["cat", "class_2", "dog"]


def test_yolo_source_that_is_not_a_yolo_folder_fails_with_a_message(tmp_path):
    with pytest.raises(ImportFailed, match="no such file or folder"):
        read_labels(tmp_path / "nope", "yolo-seg")
    with pytest.raises(ImportFailed, match=r"no labels/ folder"):
        read_labels(tmp_path, "yolo-seg")
    (tmp_path / "labels").mkdir()
    with pytest.raises(ImportFailed, match="no such image folder"):
        read_labels(tmp_path, "yolo-seg")
    (tmp_path / "images").mkdir()
    (tmp_path / "data.yaml").write_text("train: images\n")
    with pytest.raises(ImportFailed, match="no 'names'"):
        read_labels(tmp_path, "yolo-seg")


def test_real_world_label_files_crlf_trailing_spaces_and_box_lines_among_polygons(tmp_path):
    """Files written on Windows (CRLF), with trailing spaces, and detection lines (``class cx cy w h``)
    mixed with polygons: every line is imported; a box becomes its rectangle, with a report line.

    Ultralytics' ``verify_image_label`` would take the box line for a two-point polygon (a file with
    any line longer than 6 columns is read as polygons), so a box must not be dropped silently here.
    """
    root = tmp_path / "ds"
    _image(root / "images" / "a.jpg", 50, 40)
    _image(root / "images" / "b.jpg", 50, 40)
    (root / "labels").mkdir()
    (root / "data.yaml").write_bytes(b"names:\r\n  - cat\r\n  - dog\r\n")
    (root / "labels" / "a.txt").write_bytes(
        b"0 0.1 0.1 0.5 0.1 0.5 0.5  \r\n"  # a polygon with trailing spaces
        b"1 0.5 0.5 0.2 0.5 \r\n"  # a box: x 20..30 px, y 10..30 px
        b"\r\n"
        b"1 0.5 0.5 0 0.5\r\n"  # a box with no width
    )
    (root / "labels" / "b.txt").write_bytes(b"0 0.2 0.25 0.4 0.5\r\n")  # a detection-only file
    plan = read_labels(root, "yolo-seg")
    assert plan.report == [
        "labels/a.txt line 2: a box (class cx cy w h), not a polygon; imported as a rectangle mask",
        "labels/a.txt line 4: a box (class cx cy w h) of width 0 and height 0.5 has no area; line skipped",
        "labels/b.txt line 1: a box (class cx cy w h), not a polygon; imported as a rectangle mask",
    ]
    a, b = plan.images
    assert [x.category for x in a.annotations] == ["cat", "dog"] and [x.category for x in b.annotations] == ["cat"]
    triangle = coco.decode_rle(a.annotations[0].rle, 40, 50)
    assert triangle.sum() > 0 and triangle[4:20, 5:25].any()
    box = np.zeros((40, 50), bool)
    box[10:30, 20:30] = True
    np.testing.assert_array_equal(coco.decode_rle(a.annotations[1].rle, 40, 50), box)
    box = np.zeros((40, 50), bool)
    box[0:20, 0:20] = True
    np.testing.assert_array_equal(coco.decode_rle(b.annotations[0].rle, 40, 50), box)


def test_crowd_regions_are_left_out_of_yolo_labels_with_a_warning(tmp_path):
    """A crowd region (``iscrowd: 1``, e.g. from an imported COCO file) is not an instance: Ultralytics'
    ``convert_coco`` skips it, and so does the export, saying so."""
    ds, _ = real_dataset(tmp_path)
    img = ds.image_by_name("voc.jpg")
    first = ds.annotations_for(img.id)[0]
    crowd = ds.make_annotation(img.id, first.category_id, first.mask())
    crowd.iscrowd = 1
    ds.add_annotation(crowd)
    warnings = export_dataset(ds, tmp_path / "yolo", "yolo-seg", copy_images=True)
    assert len(check_ultralytics_label(tmp_path / "yolo" / "labels" / "voc.txt", len(ds.categories))) == 19
    assert [w for w in warnings if "crowd" in w] == [
        f"annotation {crowd.id} (image 'voc.jpg', category '{ds.categories[first.category_id].name}'): a crowd "
        "region (iscrowd) is not one instance and YOLO labels cannot mark it; left out of the export, as "
        "Ultralytics' convert_coco does"
    ]


def test_roboflow_layout_with_a_folder_per_split_imports_every_split(tmp_path):
    """Roboflow's YOLO export: ``data.yaml`` beside ``train/images``, ``train/labels``, ``valid/...``
    (Ultralytics finds each split's labels by its ``/images/`` -> ``/labels/`` rule)."""
    root = tmp_path / "rf"
    root.mkdir()
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['cat', 'dog']\n"
    )
    for split, line in (("train", "0 0.1 0.1 0.5 0.1 0.5 0.5\n"), ("valid", "1 0.5 0.5 0.5 0.5\n"), ("test", "")):
        _image(root / split / "images" / "a_jpg.rf.1234.jpg")
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / "a_jpg.rf.1234.txt").write_text(line)
    _image(root / "valid" / "images" / "unlabelled.jpg")
    plan = read_labels(root, "yolo-seg")
    assert [i.where for i in plan.images] == [
        "test/labels/a_jpg.rf.1234.txt", "train/labels/a_jpg.rf.1234.txt", "valid/labels/a_jpg.rf.1234.txt",
    ]  # fmt: skip
    assert [[a.category for a in i.annotations] for i in plan.images] == [[], ["cat"], ["dog"]]
    assert plan.images[0].negative
    assert plan.report == [
        "valid/labels/a_jpg.rf.1234.txt line 1: a box (class cx cy w h), not a polygon; imported as a rectangle mask",
        "valid/images/unlabelled.jpg: no label file valid/labels/unlabelled.txt; not imported",
    ]
    with pytest.raises(ImportFailed, match="in each split's images/ folder"):
        read_labels(root, "yolo-seg", images=tmp_path)


def test_what_ultralytics_would_drop_quietly_is_warned(tmp_path):
    """``verify_image_label`` ignores an image under 10 pixels a side and removes label rows that repeat
    a class and box (``np.unique`` on class + box): the export says so for each."""
    ds = Dataset.open(tmp_path / "annotations.json")
    _image(tmp_path / "tiny.png", 8, 20)
    _image(tmp_path / "a.png", 40, 30)
    ds.ensure_image("tiny.png", 8, 20)
    a = ds.ensure_image("a.png", 40, 30).id
    ds.add_category("cat")
    ring = np.zeros((30, 40), bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False
    disc = np.zeros((30, 40), bool)
    disc[5:25, 5:25] = True
    disc[6:8, 6:8] = False  # another mask, same box
    other = np.zeros((30, 40), bool)
    other[2:4, 30:35] = True
    for m in (ring, disc, other):
        ds.add_annotation(ds.make_annotation(a, 1, m))
    tiny = np.zeros((20, 8), bool)
    tiny[2:5, 2:5] = True
    ds.add_annotation(ds.make_annotation(1, 1, tiny))
    warnings = export_dataset(ds, tmp_path / "yolo", "yolo-seg", copy_images=True)
    assert (
        "image 'tiny.png': 8 x 20 pixels; Ultralytics skips images under 10 pixels a side ('image size ... <10 pixels')"
        in warnings
    )
    dup = [w for w in warnings if "duplicate" in w]
    assert dup == [
        "annotation 2 (image 'a.png', category 'cat'): same class and box as annotation 1; Ultralytics drops one "
        "of them as a duplicate label ('duplicate labels removed')"
    ]
    rows = (tmp_path / "yolo" / "labels" / "a.txt").read_text().splitlines()
    boxes = []
    for row in rows:
        xy = np.array(row.split()[1:], np.float32).reshape(-1, 2)
        boxes.append((row.split()[0], *xy.min(0), *xy.max(0)))
    assert len(rows) == 3 and len(set(boxes)) == 2  # what Ultralytics would keep: 2 of 3


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo-fuzz")
    _image(root / "images" / "a.png", 23, 17)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [a, b, c]\n")
    return root


_token = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-0.2, 1.2).map(lambda v: f"{v:.4f}"),
    st.integers(-3, 5).map(str),
    st.text(alphabet="0123456789.-+eEnaifx", max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.lists(_token, max_size=12).map(" ".join), max_size=6))
def test_fuzzed_label_lines_import_or_are_reported_never_crash(fuzz_root, lines):
    (fuzz_root / "labels" / "a.txt").write_text("\n".join(lines), encoding="utf-8")
    plan = read_labels(fuzz_root, "yolo-seg")
    used = [(n, l) for n, l in enumerate(lines, 1) if l.strip()]
    imported = plan.images[0].annotations if plan.images else []
    for ann in imported:
        assert ann.rle["size"] == [17, 23] and coco.rle_area(ann.rle) > 0
    reported = {
        int(r.split(" line ")[1].split(":")[0])
        for r in plan.report
        if " line " in r and "clipped" not in r and "imported as a rectangle" not in r
    }
    assert len(imported) + len(reported) == len(used)
    assert {int(a.where.split(" line ")[1]) for a in imported}.isdisjoint(reported)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("names:-[]{}'\"#, \n\t0123abc")), max_size=80))
def test_fuzzed_data_yaml_never_crashes(text):
    assert isinstance(parse_data_yaml(text), dict)
