"""Our COCO exports as pycocotools reads them: ``COCO(path)``, ``annToMask``, ``loadRes`` and ``COCOeval``.

The export used as both ground truth and detections scores AP = 1.0 (segm and bbox), and every mask
pycocotools draws from the file is ours (polygons: ours with holes filled; crowd regions: exactly ours).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from annotator.data.export import export_dataset
from test_formats_common import filled, real_dataset


def _ring(h, w):
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 60, xx - 300)
    return (r < 40) & (r > 15)


@pytest.mark.parametrize("fmt", ["coco-rle", "coco-polygon"])
def test_pycocotools_reads_our_export_back_as_our_masks_and_scores_it_perfect(tmp_path, fmt):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds, originals = real_dataset(tmp_path)
    img = ds.image_by_name("voc.jpg")
    crowd = ds.make_annotation(img.id, 1, _ring(img.height, img.width))
    crowd.iscrowd = 1
    ds.add_annotation(crowd)
    originals[crowd.id] = _ring(img.height, img.width)
    out = tmp_path / "out" / "coco.json"
    out.parent.mkdir()
    export_dataset(ds, out, fmt)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        anns = json.loads(out.read_text())["annotations"]
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": gt.annToRLE(a),
                 "score": 1.0} for a in anns if not a["iscrowd"]]  # fmt: skip
        dt = gt.loadRes(dets)
        stats = []
        for kind in ("segm", "bbox"):
            ev = COCOeval(gt, dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats.append(ev.stats[0])
    assert stats == [pytest.approx(1.0), pytest.approx(1.0)]
    assert len(anns) == len(originals)
    for a in anns:
        theirs = gt.annToMask(a).astype(bool)
        assert theirs.sum() == pytest.approx(a["area"], abs=0.5)
        if a["iscrowd"]:
            assert a["id"] == crowd.id and isinstance(a["segmentation"]["counts"], str)  # RLE in both exports
            np.testing.assert_array_equal(theirs, originals[a["id"]])  # the hole is kept
        elif fmt == "coco-rle":
            np.testing.assert_array_equal(theirs, originals[a["id"]])
        else:
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])  # what detectron2 requires
            np.testing.assert_array_equal(theirs, filled(originals[a["id"]]))
