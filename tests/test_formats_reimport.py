"""Importing labels exported from the same working file adds nothing: every mask is already there.

Polygon formats fill holes, so the re-imported mask of an annotation with a
hole is the hole-filled mask; it is still the same object (compared with the
mask and with the mask's holes filled) and is not added a second time.
(VOC is left out: where masks overlap, the larger one loses the covered
pixels, so its re-import can differ by more than the 0.95 IoU that makes two
masks the same.)
"""

from __future__ import annotations

import pytest

from annotator.data.export import export_dataset
from annotator.data.formats.importing import import_labels
from test_formats_common import has_holes, real_dataset


@pytest.mark.parametrize("fmt", ["yolo-seg", "labelme", "coco"])
def test_reimporting_our_own_export_adds_nothing(tmp_path, fmt):
    ds, originals = real_dataset(tmp_path)
    assert sum(has_holes(m) for m in originals.values()) >= 5
    out = tmp_path / fmt
    if fmt == "coco":
        out.mkdir()
        export_dataset(ds, out / "coco.json", "coco-polygon")
        src = out / "coco.json"
    else:
        export_dataset(ds, out, fmt)
        src = out
    before = {a.id: a.segmentation for a in ds.annotations.values()}
    changes, report = import_labels(ds, src, fmt, images=None if fmt == "coco" else tmp_path / "images")
    assert changes.annotations == [] and changes.categories == []
    already = [line for line in report if "the working file already has this" in line]
    assert len(already) == 27, report
    assert {a.id: a.segmentation for a in ds.annotations.values()} == before
