"""annotator.data.coco: RLE/polygon conversion through pycocotools, its traps, validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annotator.data import coco
from annotator.data.coco import SegmentationError


def blob_mask(h, w, seed, n=4):
    """Union of random discs and rectangles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = rng.integers(2, max(3, min(h, w) // 3))
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, 8), x0 : x0 + rng.integers(1, 8)] = True
    return m


def ring_mask(h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (yy - h / 2) ** 2 + (xx - w / 2) ** 2
    return (d2 < 15**2) & (d2 >= 6**2)


def fill_holes(m):
    """The mask with every background region not connected to the border filled."""
    padded = np.pad(m.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 2)  # 4-connected background from outside
    return (flood[1:-1, 1:-1] != 2)


MASKS = {
    "blobs": blob_mask(37, 53, 1),
    "ring": ring_mask(),
    "border": np.pad(np.ones((10, 12), bool), ((0, 5), (3, 0))),  # touches top and right edges
    "empty": np.zeros((9, 7), bool),
    "full": np.ones((9, 7), bool),
    "one_pixel_image": np.ones((1, 1), bool),
    "checker": (np.indices((6, 8)).sum(0) % 2).astype(bool),
    "corners": np.pad(np.zeros((3, 3), bool), 1, constant_values=True),
}


@pytest.mark.parametrize("name", sorted(MASKS))
def test_encode_decode_round_trip(name):
    m = MASKS[name]
    rle = coco.encode_mask(m)
    assert rle["size"] == list(m.shape) and type(rle["size"][0]) is int
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # counts are JSON-serialisable
    back = coco.decode_rle(rle, *m.shape)
    assert back.dtype == np.bool_ and back.shape == m.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, m)
    assert coco.rle_area(rle) == float(m.sum())
    # bytes counts (as pycocotools itself returns them) decode the same
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    np.testing.assert_array_equal(coco.decode_rle(as_bytes, *m.shape), m)


def test_encode_accepts_non_bool_and_non_contiguous():
    m = blob_mask(20, 30, 2)
    as_255 = m.astype(np.uint8) * 255  # pycocotools would misread 255 as a run value
    assert coco.encode_mask(as_255) == coco.encode_mask(m)
    view = np.asfortranarray(blob_mask(30, 20, 3))[:, ::-1]
    np.testing.assert_array_equal(coco.decode_rle(coco.encode_mask(view), 30, 20), view)
    with pytest.raises(ValueError):
        coco.encode_mask(np.zeros((3, 4, 2), bool))


def test_area_and_bbox_agree_with_numpy():
    m = blob_mask(41, 29, 7)
    rle = coco.encode_mask(m)
    ys, xs = np.nonzero(m)
    assert coco.rle_area(rle) == float(m.sum())
    assert coco.rle_bbox(rle) == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                  float(ys.max() - ys.min() + 1)]  # fmt: skip
    assert all(type(v) is float for v in coco.rle_bbox(rle))
    assert coco.rle_bbox(coco.encode_mask(np.zeros((4, 4), bool))) == [0.0, 0.0, 0.0, 0.0]


def test_uncompressed_rle_import():
    m = blob_mask(23, 31, 4)
    # column-major runs starting with background
    flat = m.T.ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    seg = {"size": [23, 31], "counts": runs}
    np.testing.assert_array_equal(coco.decode_rle(seg, 23, 31), m)
    rle = coco.to_compressed_rle(seg, 23, 31)
    assert rle == coco.encode_mask(m)


def test_polygon_import_matches_pixel_edges():
    seg = [[2, 3, 6, 3, 6, 8, 2, 8]]  # pixels x 2..5, y 3..7
    m = coco.decode_rle(seg, 12, 10)
    expected = np.zeros((12, 10), bool)
    expected[3:8, 2:6] = True
    np.testing.assert_array_equal(m, expected)
    # a flat single polygon (some tools write this) means the same
    np.testing.assert_array_equal(coco.decode_rle(seg[0], 12, 10), expected)
    # two polygons: their union
    two = coco.decode_rle([seg[0], [0, 0, 1, 0, 1, 1, 0, 1]], 12, 10)
    assert two.sum() == expected.sum() + 1 and two[0, 0]


def test_polygon_with_two_points_is_dropped_not_read_as_a_box():
    # pycocotools.frPyObjects would take 4 numbers for a bounding box
    m = coco.decode_rle([[1, 1, 8, 8]], 10, 10)
    assert not m.any()
    assert not coco.decode_rle([], 10, 10).any()


@pytest.mark.parametrize(
    "seg,match",
    [
        ({"size": [10, 12], "counts": "PP5"}, "disagrees"),
        ({"size": [12, 10], "counts": [50]}, "add up to 50"),
        ({"size": [12, 10], "counts": [100, 100]}, "add up to 200"),  # would overrun the C buffer
        ({"size": [12, 10], "counts": [-1, 121]}, "0 .. 2"),
        ({"size": [12, 10], "counts": [1.5, 118.5]}, "integers"),
        ({"size": [12, 10], "counts": [True, 119]}, "integers"),
        ({"size": [12, 10], "counts": "1o"}, "ends in the middle"),  # 'o' = continuation bit
        ({"size": [12, 10], "counts": "ab{c"}, "alphabet"),
        ({"size": [12, 10], "counts": "é"}, "alphabet"),
        ({"size": [12, 10], "counts": b"\xff\xfe"}, "ASCII"),
        ({"size": [12, 10], "counts": 5}, "string or a list"),
        ({"size": [12, 10]}, "'counts'"),
        ({"size": "12x10", "counts": "0"}, "size"),
        ({"size": [12, 10], "counts": "ooooooooo0"}, "too large"),
        ([[0, 0, 5, float("nan"), 5, 5]], "NaN"),
        ([[0, 0, 5, 0, 5]], "odd"),
        ([[0, 0, "5", 0, 5, 5]], "numbers"),
        ([[0, 0, 1e12, 0, 5, 5]], "far outside"),
        ([{"a": 1}], "polygon 0"),
        ("0", "segmentation must be"),
        (None, "segmentation must be"),
    ],
)
def test_malformed_segmentations_raise_cleanly(seg, match):
    with pytest.raises(SegmentationError, match=match):
        coco.decode_rle(seg, 12, 10)


def test_counts_string_with_runs_past_the_mask_is_refused():
    too_long = coco.encode_mask(np.zeros((20, 20), bool))["counts"]  # 400 pixels
    with pytest.raises(SegmentationError, match="add up to 400"):
        coco.decode_rle({"size": [10, 10], "counts": too_long}, 10, 10)


def test_counts_parser_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.random()
        counts = mask_utils.encode(np.asfortranarray(m, dtype=np.uint8))["counts"].decode()
        runs = coco._counts_from_string(counts)
        rebuilt = np.repeat(np.arange(runs.size) % 2, runs).astype(bool).reshape(w, h).T
        np.testing.assert_array_equal(rebuilt, m)


def test_empty_rle_has_no_pixels():
    rle = coco.empty_rle(300, 400)
    assert coco.rle_area(rle) == 0.0
    assert not coco.decode_rle(rle, 300, 400).any()


def test_size_limits():
    with pytest.raises(SegmentationError, match="limit"):
        coco.to_compressed_rle([], 100_000, 100_000)
    with pytest.raises(SegmentationError, match="positive"):
        coco.to_compressed_rle([], 0, 5)


# ---------------------------------------------------------------------------- polygons


@pytest.mark.parametrize("seed", range(6))
def test_polygons_with_zero_tolerance_are_exact_for_filled_masks(seed):
    m = blob_mask(48, 64, seed, n=5)
    polys, has_holes = coco.mask_to_polygons(m, tolerance=0)
    back = coco.decode_rle(polys, 48, 64)
    np.testing.assert_array_equal(back, fill_holes(m))
    assert has_holes == bool((fill_holes(m) & ~m).any())


def test_polygons_touching_borders_and_single_pixels():
    m = np.zeros((10, 10), bool)
    m[0, 0] = True  # single pixel in a corner
    m[4:, 9] = True  # thin line on the right edge
    m[9, :3] = True  # on the bottom edge
    polys, has_holes = coco.mask_to_polygons(m, tolerance=1.0)
    assert not has_holes
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
    np.testing.assert_array_equal(coco.decode_rle(polys, 10, 10), m)


def test_polygons_report_holes_and_fill_them():
    m = ring_mask()
    polys, has_holes = coco.mask_to_polygons(m, tolerance=0)
    assert has_holes
    assert len(polys) == 1
    np.testing.assert_array_equal(coco.decode_rle(polys, *m.shape), fill_holes(m))


def test_polygon_simplification_stays_close():
    yy, xx = np.mgrid[0:200, 0:300]
    disc = (yy - 100) ** 2 + (xx - 150) ** 2 < 80**2
    exact, _ = coco.mask_to_polygons(disc, tolerance=0)
    simple, _ = coco.mask_to_polygons(disc, tolerance=1.0)
    assert len(simple[0]) < len(exact[0]) / 4
    back = coco.decode_rle(simple, 200, 300)
    iou = (back & disc).sum() / (back | disc).sum()
    assert iou > 0.98


def test_polygons_of_empty_mask_and_bad_arguments():
    assert coco.mask_to_polygons(np.zeros((5, 5), bool)) == ([], False)
    with pytest.raises(ValueError):
        coco.mask_to_polygons(np.zeros((5, 5), bool), tolerance=-1)
    with pytest.raises(ValueError):
        coco.mask_to_polygons(np.zeros((5,), bool))


# ---------------------------------------------------------------------------- validation


def _valid():
    m = blob_mask(20, 30, 5)
    rle = coco.encode_mask(m)
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": coco.rle_area(rle),
             "bbox": coco.rle_bbox(rle), "iscrowd": 0}  # fmt: skip
        ],
    }


def test_validate_accepts_valid_data_and_checks_image_files():
    data = _valid()
    assert coco.validate_coco(data) == []
    assert coco.validate_coco(data, {"a.png": (30, 20)}) == []
    problems = coco.validate_coco(data, {"a.png": (20, 30)})
    assert len(problems) == 1 and "image file is 20 x 30" in problems[0]


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.pop("images"), "'images' list is missing"),
        (lambda d: d.pop("categories"), "'categories' list is missing"),
        (lambda d: d.update(images={}), "'images' must be a list"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 1"),
        (lambda d: d["images"][0].update(id="1"), "'id' must be"),
        (lambda d: d["images"][0].update(id=1.0), "'id' must be"),
        (lambda d: d["images"][0].update(width=0), "positive integers"),
        (lambda d: d["images"][0].pop("file_name"), "file_name"),
        (lambda d: d["categories"].append({"id": 1, "name": "x"}), "duplicate category id 1"),
        (lambda d: d["categories"][0].pop("name"), "'name'"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "duplicate annotation id 1"),
        (lambda d: d["annotations"][0].update(id=0), "COCOeval"),
        (lambda d: d["annotations"][0].update(id=True), "'id' must be"),
        (lambda d: d["annotations"][0].update(image_id=9), "image_id 9 is not in 'images'"),
        (lambda d: d["annotations"][0].update(category_id=9), "category_id 9 is not in 'categories'"),
        (lambda d: d["annotations"][0].update(iscrowd=2), "iscrowd"),
        (lambda d: d["annotations"][0].update(area=5.0), "'area' 5.0 disagrees"),
        (lambda d: d["annotations"][0].update(bbox=[0, 0, 1, 1]), "'bbox' .* disagrees"),
        (lambda d: d["annotations"][0].update(bbox=[0, 0, 1]), "'bbox' must be"),
        (lambda d: d["annotations"][0].pop("segmentation"), "'segmentation' is missing"),
        (lambda d: d["annotations"][0]["segmentation"].update(size=[30, 20]), "disagrees with the image"),
        (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 1e9, 0, 1, 1]]), "far outside"),
    ],
)
def test_validate_names_each_problem(mutate, match):
    data = _valid()
    mutate(data)
    problems = coco.validate_coco(data)
    assert problems, "expected a problem"
    assert any(__import__("re").search(match, p) for p in problems), problems


def test_validate_top_level_not_an_object():
    assert "top level is a list" in coco.validate_coco([])[0]


# ---------------------------------------------------------------------------- pycocotools itself


def test_self_evaluation_gives_ap_one():
    masks = [blob_mask(40, 60, s) for s in range(5)] + [ring_mask(40, 60)]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40},
                       {"id": 2, "file_name": "b.png", "width": 60, "height": 40}],  # fmt: skip
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": []}  # fmt: skip
    for i, m in enumerate(masks):
        rle = coco.encode_mask(m)
        data["annotations"].append({"id": i + 1, "image_id": 1 + i % 2, "category_id": 1 + i % 2, "segmentation": rle,
                                    "area": coco.rle_area(rle), "bbox": coco.rle_bbox(rle), "iscrowd": 0})  # fmt: skip
    assert coco.validate_coco(data) == []
    assert coco.self_evaluation_ap(data) == pytest.approx(1.0)
    # a perturbed copy is not perfect: the evaluation really compares masks
    worse = json.loads(json.dumps(data))
    worse["annotations"][0]["segmentation"] = coco.encode_mask(np.roll(masks[0], 6, axis=1))
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        dt = gt.loadRes([dict(a, score=1.0) for a in worse["annotations"]])
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 1.0


def test_importing_the_data_layer_pulls_no_gui_or_plotting():
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, annotator.data.coco, annotator.data.document, annotator.data.imageio, annotator.data.atomic, annotator.commands.export\n"
        "bad = [m for m in ('PySide6', 'matplotlib', 'pycocotools.coco', 'torch') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_id_too_large_for_json_readers_is_refused_saying_so():
    big = 2**53
    data = {
        "images": [{"id": big, "file_name": "a.png", "width": 2, "height": 2},
                   {"id": 1, "file_name": "b.png", "width": 2, "height": 2}],
        "categories": [{"id": big + 1, "name": "c"}, {"id": 1, "name": "d"}],
        "annotations": [{"id": 2**60, "image_id": big, "category_id": big + 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
                        {"id": 0, "image_id": -1, "category_id": "x", "segmentation": [[0, 0, 1, 0, 1, 1]]}],
    }
    problems = coco.validate_coco(data, check_geometry=False)
    too_large = [p for p in problems if "too large" in p]
    assert len(too_large) == 5, problems  # image id, category id, annotation id, its image_id and category_id
    assert all("2**53" in p and "non-negative" not in p for p in too_large)
    assert any(p.startswith("images[0]") and f"'id' {big} is too large" in p for p in too_large)
    assert any(f"'category_id' {big + 1} is too large" in p for p in too_large)
    # the other refusals keep their words
    assert any("'id' must be an integer >= 1 (COCOeval cannot match id 0), got 0" in p for p in problems)
    assert any("'image_id' must be a non-negative integer, got -1" in p for p in problems)
    assert any("'category_id' must be a non-negative integer, got 'x'" in p for p in problems)


@pytest.mark.parametrize("image_id", [[1], {"a": 1}, [[]]])
def test_an_image_id_that_is_a_list_or_object_is_a_problem_not_a_crash(image_id):
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}],
            "categories": [{"id": 1, "name": "c"}],
            "annotations": [{"id": 1, "image_id": image_id, "category_id": 1,
                             "segmentation": {"size": [2, 2], "counts": "04"}}]}
    problems = coco.validate_coco(data, check_geometry=False)
    assert problems == [f"annotations[0] (id 1): 'image_id' must be a non-negative integer, got {image_id!r}"]


def test_integers_too_large_for_a_float_are_problems_not_crashes():
    huge = 10**400  # JSON reads it (fewer than 4300 digits); float() of it overflows
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}],
            "categories": [{"id": 1, "name": "c"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": coco.encode_mask(np.ones((4, 4), bool)),
                 "area": huge, "bbox": [0, 0, huge, 1]},
                {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, huge, 0, 1, 1]]},
            ]}
    problems = coco.validate_coco(data, check_geometry=False)
    assert len(problems) == 3, problems
    assert "'area' must be a finite number >= 0" in problems[0]
    assert "'bbox' must be [x, y, width, height] finite numbers" in problems[1]
    assert "polygon 0 has a coordinate too large to be a number" in problems[2]
