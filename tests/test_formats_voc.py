"""Pascal VOC segmentation PNGs: layout and palette, the overlap rule, exact round trips, hostile folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.common import voc_colormap
from annotator.data.formats.importing import ImportFailed, import_labels, read_labels
from test_formats_common import masks_by_image, real_dataset


def _png(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def test_voc_colormap_is_the_pascal_one():
    cmap = voc_colormap()
    assert cmap[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # void


def test_export_layout_palettes_and_negatives(tmp_path):
    ds, _ = real_dataset(tmp_path)
    out = tmp_path / "voc"
    warnings = export_dataset(ds, out, "voc", copy_images=True)
    names = (out / "class_names.txt").read_text(encoding="utf-8").splitlines()
    assert names[0] == "_background_"
    assert names[1:] == [c.name for c in sorted(ds.categories.values(), key=lambda c: c.id)]
    assert (out / "ImageSets" / "Segmentation" / "trainval.txt").read_text() == "arc/arc\nempty\nvoc\n"
    for key in ("voc", "arc/arc", "empty"):
        for kind in ("SegmentationClass", "SegmentationObject"):
            im = _png(out / kind / f"{key}.png")
            assert im.mode == "P"
            assert np.array(im.getpalette()[:768], np.uint8).reshape(256, 3).tolist() == voc_colormap().tolist()
    assert not np.asarray(_png(out / "SegmentationClass" / "empty.png")).any()  # a negative: all background
    assert (out / "JPEGImages" / "arc" / "arc.png").read_bytes() == (tmp_path / "images" / "arc" / "arc.png").read_bytes()
    # VOC's own masks do not overlap; ARC2017's do, and that is said once for the image
    assert [w for w in warnings if "overlap" in w] == [w for w in warnings if w.startswith("image 'arc/arc.png': masks overlap (")]
    assert len([w for w in warnings if "overlap" in w]) == 1


def test_round_trip_is_exact_where_nothing_overlaps_and_the_smaller_mask_wins_overlaps(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "voc"
    export_dataset(ds, out, "voc")
    back = Dataset(tmp_path / "images" / "back.json")
    changes, report = import_labels(back, out, "voc", images=tmp_path / "images")
    assert report == []
    # VOC masks: nothing overlaps, so every mask (holes and all) comes back identical
    src = ds.annotations_for(ds.image_by_name("voc.jpg").id)
    got = masks_by_image(back, "voc.jpg")
    assert [n for n, _ in got] == [ds.categories[a.category_id].name for a in src]
    for a, (_, mask) in zip(src, got):
        np.testing.assert_array_equal(mask, originals[a.id])
    # ARC masks overlap: each comes back exact outside the overlaps; inside, the smaller one holds the pixels
    src = ds.annotations_for(ds.image_by_name("arc/arc.png").id)
    got = [m for _, m in masks_by_image(back, "arc/arc.png")]
    assert len(got) == len(src) == 8
    stack = np.stack([originals[a.id] for a in src])
    alone = stack.sum(0) == 1
    area = stack.sum((1, 2))
    overlapped = 0
    for k, (a, mask) in enumerate(zip(src, got)):
        original = originals[a.id]
        np.testing.assert_array_equal(mask & alone, original & alone)
        shared = original & ~alone
        overlapped += shared.sum()
        smallest_here = np.where(stack[:, shared].T, area[None, :], np.inf).argmin(axis=1) == k
        np.testing.assert_array_equal(mask[shared], smallest_here)
    assert overlapped > 1000
    assert len(changes.annotations) == 27


def test_overlap_rule_on_a_drawn_example(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    ds.ensure_image("a.png", 30, 20)
    ds.add_category("wall")
    ds.add_category("person")
    small = np.zeros((20, 30), bool)
    small[5:10, 5:10] = True
    big = np.zeros((20, 30), bool)
    big[2:18, 2:28] = True
    ds.add_annotation(ds.make_annotation(1, 2, small))  # id 1: the person, first
    ds.add_annotation(ds.make_annotation(1, 1, big))  # id 2: the wall, later, larger
    warnings = export_dataset(ds, tmp_path / "voc", "voc")
    assert warnings == [
        "image 'a.png': masks overlap (2 under 1: 25 px); the smaller mask is on top, the larger one loses the covered pixels"
    ]
    obj = np.asarray(_png(tmp_path / "voc" / "SegmentationObject" / "a.png"))
    cls = np.asarray(_png(tmp_path / "voc" / "SegmentationClass" / "a.png"))
    assert (obj[small] == 1).all() and (cls[small] == 2).all()
    assert (obj[big & ~small] == 2).all() and (cls[big & ~small] == 1).all()
    assert (obj[~big] == 0).all() and (cls[~big] == 0).all()


def test_border_marks_edges_void_and_import_ignores_void(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    ds.ensure_image("a.png", 30, 20)
    ds.add_category("box")
    m = np.zeros((20, 30), bool)
    m[5:15, 5:25] = True
    ds.add_annotation(ds.make_annotation(1, 1, m))
    export_dataset(ds, tmp_path / "voc", "voc", voc_border=2)
    obj = np.asarray(_png(tmp_path / "voc" / "SegmentationObject" / "a.png"))
    inner = np.zeros_like(m)
    inner[7:13, 7:23] = True
    outer = np.zeros_like(m)
    outer[3:17, 3:27] = True
    assert (obj[inner] == 1).all() and (obj[outer & ~inner] == 255).all() and (obj[~outer] == 0).all()
    back = Dataset(tmp_path / "back.json")
    _, report = import_labels(back, tmp_path / "voc", "voc", images=tmp_path)
    assert report == []
    np.testing.assert_array_equal(masks_by_image(back, "a.png")[0][1], inner)


def test_more_than_254_categories_is_refused_before_writing(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    for i in range(255):
        ds.add_category(f"c{i}")
    with pytest.raises(ValueError, match="254 classes"):
        export_dataset(ds, tmp_path / "voc", "voc")
    assert not (tmp_path / "voc").exists()


def _write_png(path: Path, array: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array.astype(np.uint8))
    if mode == "P":
        im.putpalette(voc_colormap().tobytes())
    elif mode == "RGB":
        im = Image.fromarray(voc_colormap()[array.astype(np.uint8)])
    im.save(path)


def test_hostile_voc_folder_reports_every_problem_and_imports_the_rest(tmp_path):
    root = tmp_path / "voc"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "d.png", "e.jpg", "f.jpg", "g.jpg"):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "JPEGImages" / name)
    (root / "class_names.txt").write_text("_background_\ncat\ndog\n")
    obj = np.zeros((10, 12), np.uint8)
    cls = np.zeros((10, 12), np.uint8)
    obj[1:4, 1:4], cls[1:4, 1:4] = 1, 1  # fine
    obj[5:8, 1:4], cls[5:8, 1:3], cls[5:8, 3] = 2, 2, 1  # mostly dog, partly cat
    obj[1:4, 6:9], cls[1:4, 6:9] = 3, 9  # class 9 is unknown
    obj[6:9, 6:9] = 4  # on background in the class PNG
    _write_png(root / "SegmentationObject" / "a.png", obj)
    _write_png(root / "SegmentationClass" / "a.png", cls, mode="RGB")  # RGB in VOC colours also reads
    _write_png(root / "SegmentationObject" / "b.png", np.zeros((11, 12)))  # another size than b.jpg
    _write_png(root / "SegmentationClass" / "b.png", np.zeros((11, 12)))
    semantic = np.zeros((10, 12), np.uint8)
    semantic[2:5, 2:5] = 2
    _write_png(root / "SegmentationClass" / "d.png", semantic, mode="L")  # no object PNG: one mask per class
    _write_png(root / "SegmentationObject" / "e.png", obj)  # no class PNG
    _write_png(root / "SegmentationObject" / "f.png", np.zeros((10, 12)))  # an empty image: a negative
    _write_png(root / "SegmentationClass" / "f.png", np.zeros((10, 12)))
    _write_png(root / "SegmentationObject" / "z.png", obj)  # no image
    (root / "SegmentationObject" / "g.png").write_bytes(b"not a png")
    ds = Dataset(root / "annotations.json")
    changes, report = import_labels(ds, root, "voc")
    assert report == [
        "JPEGImages/d.png: same name as JPEGImages/d.jpg (labels pair with images by name without extension); not imported",
        "SegmentationObject/a.png instance 2: covers classes 1 and 2; imported as 'dog' (the most pixels)",
        "SegmentationObject/a.png instance 3: class index 9 is not in class_names.txt (1..2); skipped",
        "SegmentationObject/a.png instance 4: lies on background or void in SegmentationClass; skipped",
        "SegmentationObject/b.png: 12 x 11 pixels but the image JPEGImages/b.jpg is 12 x 10 (width x height); skipped",
        "SegmentationClass/d.png: no SegmentationObject/d.png; each class is imported as one mask",
        "SegmentationObject/e.png: no SegmentationClass/e.png, so its instances have no class; skipped",
        "SegmentationObject/g.png: cannot be read as a label PNG (not a PNG image); skipped",
        "SegmentationObject/z.png: no image named 'z' in JPEGImages; skipped",
        "JPEGImages/c.jpg: no label PNG (SegmentationObject/c.png); not imported",
    ]
    assert [(n, int(m.sum())) for n, m in masks_by_image(ds, "JPEGImages/a.jpg")] == [("cat", 9), ("dog", 9)]
    assert [(n, int(m.sum())) for n, m in masks_by_image(ds, "JPEGImages/d.jpg")] == [("dog", 9)]
    assert masks_by_image(ds, "JPEGImages/f.jpg") == []
    assert sorted(r.file_name for r in ds.images.values()) == ["JPEGImages/a.jpg", "JPEGImages/d.jpg", "JPEGImages/f.jpg"]
    assert len(changes.annotations) == 3


def test_voc_without_class_names_and_bad_sources(tmp_path):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "JPEGImages" / "a.jpg")
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 2:5] = 1
    _write_png(root / "SegmentationObject" / "a.png", m)
    _write_png(root / "SegmentationClass" / "a.png", m * 15)
    plan = read_labels(root, "voc")
    assert plan.report == ["class_names.txt: not found; classes are named class_<index> (class_1, class_2, ...)"]
    assert plan.categories == ["class_15"]
    with pytest.raises(ImportFailed, match="neither SegmentationObject/ nor SegmentationClass/"):
        read_labels(tmp_path, "voc")
    with pytest.raises(ImportFailed, match="no such image folder"):
        read_labels(root, "voc", images=tmp_path / "nowhere")
