"""The data layer's API for the window: annotations from a precomputed RLE, and export as a function."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from annotator.data import export as export_api

from annotator.data import coco
from annotator.data.document import Dataset

H, W = 60, 80


def _ring():
    yy, xx = np.mgrid[0:H, 0:W]
    d2 = (yy - 30) ** 2 + (xx - 40) ** 2
    return (d2 < 20**2) & (d2 >= 8**2)


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    ds = Dataset.open(tmp_path / "images" / "annotations.json")
    ds.ensure_image("a.png", W, H)
    ds.add_category("donut")
    return ds


def test_make_annotation_takes_a_precomputed_rle(dataset):
    mask = _ring()
    rle = coco.encode_mask(mask)
    from_rle = dataset.make_annotation(1, 1, rle=rle, predicted_iou=0.91, stability_score=0.97)
    from_mask = dataset.make_annotation(1, 1, mask)
    assert from_rle.segmentation == from_mask.segmentation
    assert from_rle.area == from_mask.area == int(mask.sum())
    assert from_rle.bbox == from_mask.bbox
    assert from_rle.extra == {"predicted_iou": 0.91, "stability_score": 0.97}
    np.testing.assert_array_equal(from_rle.mask(), mask)
    as_bytes = dataset.make_annotation(1, 1, rle={"size": rle["size"], "counts": rle["counts"].encode()})
    assert isinstance(as_bytes.segmentation["counts"], str)
    assert as_bytes.segmentation == rle


@pytest.mark.parametrize(
    "bad",
    [
        {"size": [H + 1, W], "counts": "PPYo1"},  # another image's size
        {"size": [H, W], "counts": "not rle at all ~~~"},
        {"size": [H, W]},
    ],
)
def test_make_annotation_rejects_a_bad_rle(dataset, bad):
    with pytest.raises(ValueError):
        dataset.make_annotation(1, 1, rle=bad)


def test_make_annotation_needs_a_mask_or_an_rle(dataset):
    with pytest.raises(ValueError):
        dataset.make_annotation(1, 1)


def test_export_dataset_returns_warnings_and_writes_unsaved_work(dataset, tmp_path):
    dataset.add_annotation(dataset.make_annotation(1, 1, _ring()))
    empty = dataset.make_annotation(1, 1, np.zeros((H, W), bool))
    dataset.add_annotation(empty)
    assert dataset.dirty  # never saved: the export takes the document as it is in memory
    out = tmp_path / "exports" / "poly.json"
    out.parent.mkdir()
    seen = []
    warnings = export_api.export_dataset(dataset, out, "coco-polygon", 1.0, progress=lambda d, t: seen.append((d, t)))
    assert len(warnings) == 2
    assert any("holes" in w for w in warnings) and any("empty" in w for w in warnings)
    assert not any(w.startswith("warning:") for w in warnings)
    assert seen[-1] == (2, 2)
    data = json.loads(out.read_text())
    assert len(data["annotations"]) == 1 and isinstance(data["annotations"][0]["segmentation"], list)
    assert data["images"][0]["file_name"] == "../images/a.png"
    assert coco.validate_coco(data) == []
    assert export_api.export_dataset(dataset, tmp_path / "rle.json") == []
    assert len(json.loads((tmp_path / "rle.json").read_text())["annotations"]) == 2
    assert len(dataset.annotations) == 2  # the document is untouched


def test_export_dataset_refuses_bad_requests_and_honours_cancel(dataset, tmp_path):
    dataset.add_annotation(dataset.make_annotation(1, 1, _ring()))
    dataset.save()
    with pytest.raises(ValueError, match="lossy"):
        export_api.export_dataset(dataset, dataset.path, "coco-polygon")
    with pytest.raises(ValueError):
        export_api.export_dataset(dataset, tmp_path / "x.json", "yaml")
    with pytest.raises(ValueError):
        export_api.export_dataset(dataset, tmp_path / "x.json", "coco-polygon", float("nan"))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(export_api.ExportCancelled):
        export_api.export_dataset(dataset, tmp_path / "x.json", "coco-polygon", cancel=cancel)
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(OSError):
        export_api.export_dataset(dataset, tmp_path / "no" / "such" / "folder" / "x.json")


def test_folder_export_through_snapshot_and_export_data_as_the_window_runs_it(dataset, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    dataset.add_annotation(dataset.make_annotation(1, 1, _ring()))
    out = tmp_path / "yolo"
    data = export_api.snapshot(dataset, out, "yolo-seg")  # on the GUI thread
    assert data["images"][0]["file_name"] == "../images/a.png"  # relative to the folder written into
    seen = []
    result = {}
    worker = threading.Thread(  # the rest may run anywhere: it reads only the snapshot
        target=lambda: result.setdefault("w", export_api.export_data(
            data, out, "yolo-seg", progress=lambda d, t: seen.append((d, t)), cancel=threading.Event())),
    )  # fmt: skip
    worker.start()
    worker.join()
    assert seen == [(1, 1)]
    assert any("holes" in w for w in result["w"])
    line = (out / "labels" / "a.txt").read_text().split()
    assert line[0] == "0" and len(line) > 7
    with pytest.raises(ValueError, match="VOC border"):
        export_api.export_dataset(dataset, out, "voc", voc_border=-2)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="writes a folder"):
        export_api.snapshot(dataset, tmp_path / "f", "voc")
    assert export_api.FORMATS == ("coco-rle", "coco-polygon", "yolo-seg", "voc", "labelme", "masks")


@pytest.mark.parametrize("fmt", ["coco-rle", "coco-polygon", "yolo-seg", "voc", "labelme", "masks"])
def test_every_format_exports_an_image_whose_name_is_not_utf8(tmp_path, fmt):
    """A file name that is not UTF-8 (``os.listdir`` gives it as a lone surrogate) saves in the working file;
    every export writes it too: the JSON formats as a ``\\udcXX`` escape (read back as the same name), the
    files named after the image with the name's own bytes."""
    import os

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    raw = b"caf\xe9.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(os.fsdecode(os.path.join(os.fsencode(images), raw)))
    name = os.fsdecode(raw)  # "caf\udce9.png"
    ds = Dataset.open(images / "annotations.json")
    ds.ensure_image(name, W, H)
    ds.add_category("donut")
    ds.add_annotation(ds.make_annotation(1, 1, _ring()))
    ds.save()
    out = tmp_path / ("out.json" if fmt.startswith("coco") else "out")
    export_api.export_dataset(ds, out, fmt)
    if fmt.startswith("coco"):
        data = json.loads(out.read_bytes().decode("utf-8"))
        assert os.path.basename(data["images"][0]["file_name"]) == name
        return
    written = [p for p in out.rglob("*") if p.is_file()]
    for path in written:
        if path.suffix == ".json":
            doc = json.loads(path.read_bytes().decode("utf-8"))  # strict UTF-8 JSON
            if fmt == "labelme" and "imagePath" in doc:
                assert os.path.basename(doc["imagePath"]) == name
        elif path.suffix == ".xml":
            import xml.etree.ElementTree as ET

            assert ET.fromstring(path.read_bytes()).findtext("filename") == "caf\\xe9.png"
    if fmt == "masks":  # files named by annotation id; the table names the image by its own bytes
        assert raw in b"".join(p.read_bytes() for p in written if p.suffix == ".csv")
        return
    stems = {os.fsencode(p.name).rsplit(b".", 1)[0] for p in written}
    assert b"caf\xe9" in stems, sorted(stems)
