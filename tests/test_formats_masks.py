"""Plain mask PNGs: one per annotation or one instance map per image, with masks.csv."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from annotator.data.export import export_dataset
from test_formats_common import real_dataset


def _read(path):
    with Image.open(path) as im:
        im.load()
        return im.mode, np.asarray(im)


def test_one_png_per_annotation_is_lossless_and_listed(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "masks"
    assert export_dataset(ds, out, "masks") == []  # nothing is lost: no warning
    with open(out / "masks.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 27 + 1  # every mask, and one row for the negative
    for row in rows[:-1]:
        mode, pixels = _read(out / row["mask"])
        assert mode == "L" and set(np.unique(pixels)) <= {0, 255} and row["value"] == "255"
        np.testing.assert_array_equal(pixels == 255, originals[int(row["annotation_id"])])  # holes included
        assert row["category"] == ds.categories[int(row["category_id"])].name
        assert (out / row["image"]).resolve() == (tmp_path / "images" / row["image"].split("images/")[1]).resolve()
    assert rows[0]["mask"] == "voc/1.png" and rows[19]["mask"] == "arc/arc/20.png"
    assert rows[-1] == {"image": "../images/empty.png", "mask": "", "value": "", "annotation_id": "",
                        "category_id": "", "category": ""}  # fmt: skip


def test_one_instance_png_per_image(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "masks"
    warnings = export_dataset(ds, out, "masks", masks_per_image=True)
    assert len(warnings) == 1 and warnings[0].startswith("image 'arc/arc.png': masks overlap (")
    with open(out / "masks.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["mask"] for r in rows].count("voc.png") == 19
    mode, voc = _read(out / "voc.png")
    assert mode.startswith("I;16") and voc.dtype == np.uint16
    for row in rows:
        if row["mask"] == "voc.png":  # VOC masks do not overlap: each value is exactly its mask
            np.testing.assert_array_equal(voc == int(row["value"]), originals[int(row["annotation_id"])])
    _, empty = _read(out / "empty.png")
    assert empty.shape == (48, 64) and not empty.any()  # a negative: an all-zero PNG
    assert rows[-1]["image"] == "../images/empty.png" and rows[-1]["mask"] == "empty.png" and rows[-1]["value"] == ""
