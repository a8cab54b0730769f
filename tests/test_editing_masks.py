"""Editing masks without a window: edits as values, the stored prompt, masks as SAM's mask input, overlay grids,
and the draft functions the decoder thread runs (issue 17)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator import render
from annotator.data import maskedit
from annotator.data.maskedit import Cleanup, Stroke
from annotator.data.prompts import PromptState


def blobs(h: int, w: int, seed: int = 0, cell: int = 20) -> np.ndarray:
    """A mask of smooth random blobs with holes and islands."""
    rng = np.random.default_rng(seed)
    small = (rng.random((h // cell + 2, w // cell + 2)) > 0.55).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0


# --------------------------------------------------------------------------------------
# edits as values
# --------------------------------------------------------------------------------------


def test_apply_edit_dispatches_and_keeps_the_memory_order():
    m = np.asfortranarray(blobs(120, 160))
    stroke = Stroke.make([(10, 10), (100, 60)], 6)
    for edit, expected in [
        (stroke, maskedit.paint(m, stroke)),
        (Cleanup("fill_holes"), maskedit.fill_holes(m)),
        (Cleanup("remove_islands", 50), maskedit.remove_islands(m, 50)),
        (Cleanup("keep_largest"), maskedit.keep_largest(m)),
    ]:
        delta = maskedit.apply_edit(m, edit)
        out = delta.apply(m)
        np.testing.assert_array_equal(out, expected.apply(m))
        assert out.flags.f_contiguous  # no 12 MP transpose before encoding
        np.testing.assert_array_equal(delta.revert(out), m)
    assert maskedit.describe_edit(stroke) == "Brush stroke"
    assert maskedit.describe_edit(Stroke.make([(1, 1)], 2, erase=True)) == "Eraser stroke"
    assert maskedit.describe_edit(Cleanup("remove_islands", 100)) == "Remove islands < 100 px"


def test_cleanup_values_are_checked():
    with pytest.raises(ValueError, match="unknown cleanup"):
        Cleanup("smooth")
    with pytest.raises(ValueError, match="at least|>= 1"):
        Cleanup("remove_islands", 0)
    assert Cleanup("fill_holes") == Cleanup("fill_holes")


# --------------------------------------------------------------------------------------
# the stored prompt
# --------------------------------------------------------------------------------------


def test_prompt_fields_round_trip_through_json():
    p = PromptState().with_point(10.256, 20.5, 1, None).with_point(30, 40, 0, None).with_box((1, 2, 50, 60), None)
    fields = maskedit.prompt_fields(p, 2)
    assert fields == {"points": [[10.26, 20.5], [30.0, 40.0]], "labels": [1, 0], "box": [1.0, 2.0, 50.0, 60.0],
                      "candidate": 2}
    back, index = maskedit.prompt_from_fields(json.loads(json.dumps(fields)), 100, 80)
    assert back.points == ((10.26, 20.5), (30.0, 40.0)) and back.labels == (1, 0)
    assert back.box == (1.0, 2.0, 50.0, 60.0) and index == 2 and back.mask_input is None
    no_box = maskedit.prompt_fields(PromptState().with_point(5, 5, 1, None), 0)
    assert "box" not in no_box and maskedit.prompt_from_fields(no_box, 10, 10)[0].box is None


@pytest.mark.parametrize("bad", [
    None, "points", [], {}, {"points": [], "labels": []},  # nothing to prompt with
    {"points": [[1, 2]], "labels": [1, 0]},  # counts differ
    {"points": [[1, 2]], "labels": [2]},
    {"points": [[1, 2]], "labels": [True]},
    {"points": [[1, float("nan")]], "labels": [1]},
    {"points": [[500, 2]], "labels": [1]},  # off the image
    {"points": [[1, 2, 3]], "labels": [1]},
    {"points": [["1", 2]], "labels": [1]},
    {"points": [[1, 2]], "labels": [1], "candidate": 3},
    {"points": [[1, 2]], "labels": [1], "candidate": 1.0},
    {"points": [[1, 2]], "labels": [1], "box": [0, 0, 1]},
    {"points": [], "labels": [], "box": [5, 5, 5.5, 5.5]},  # too thin after clamping
])
def test_a_stored_prompt_from_another_tool_or_a_hand_edit_is_rejected_as_a_whole(bad):
    assert maskedit.prompt_from_fields(bad, 100, 80) is None


def test_a_box_only_prompt_is_clamped_to_the_image():
    prompt, index = maskedit.prompt_from_fields({"points": [], "labels": [], "box": [-10, -5, 200, 50]}, 100, 80)
    assert prompt.box == (-0.5, -0.5, 99.5, 50.0) and index == 0


# --------------------------------------------------------------------------------------
# a mask as the decoder's mask input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(512, 512), (300, 451), (400, 600), (3000, 1000)])
def test_mask_logits_follow_sams_preprocessing(shape):
    """A candidate's own low-resolution logits, upscaled to a mask the official way and turned back into logits,
    give the same inside/outside grid: the resize of the longest side and the bottom/right padding line up."""
    from sam_core import Candidates

    h, w = shape
    hi, wi = maskedit.input_size(h, w)
    yy, xx = np.mgrid[:256, :256].astype(np.float32)
    disc = 40.0 - np.hypot(xx + 0.5 - 100 * wi / 1024, yy + 0.5 - 90 * hi / 1024)  # logits > 0 inside a disc
    cands = Candidates(np.array([0.9], np.float32), disc[None].astype(np.float32), (h, w), (hi, wi))
    logits = maskedit.mask_logits(cands.mask(0), (hi, wi))
    assert logits.shape == (256, 256) and logits.dtype == np.float32
    valid = (slice(0, round(hi / 4)), slice(0, round(wi / 4)))
    agree = (logits[valid] > 0) == (disc[valid] > 0)
    assert agree.mean() > 0.995  # (only cells the edge crosses may differ)
    assert (logits[round(hi / 4) + 1:, :] < 0).all() and (logits[:, round(wi / 4) + 1:] < 0).all()  # padding: out
    assert logits.max() == pytest.approx(maskedit.MASK_LOGIT) and logits.min() == pytest.approx(-maskedit.MASK_LOGIT)
    assert maskedit.input_size(h, w) == (hi, wi) and max(hi, wi) == 1024


# --------------------------------------------------------------------------------------
# overlay grids
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(h=st.integers(20, 700), w=st.integers(20, 700), seed=st.integers(0, 1000),
       box=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
def test_refresh_grid_recomputes_exactly_the_cells_over_the_change(h, w, seed, box):
    m = blobs(h, w, seed, cell=7)
    max_side = 97  # a grid smaller than the mask, at a ratio that puts cell edges between pixels
    gh, gw = render.overlay_size(h, w, 1.0, max_side=max_side)
    grid = render.resize_mask(m, (gh, gw))
    y0, y1 = sorted(int(v * h) for v in box[:2])
    x0, x1 = sorted(int(v * w) for v in box[2:])
    m2 = m.copy()
    m2[y0:y1 + 1, x0:x1 + 1] = ~m2[y0:y1 + 1, x0:x1 + 1]
    got = render.refresh_grid(grid, m2, y0, y1 + 1, x0, x1 + 1)
    expected = render.resize_mask(m2, (gh, gw))
    frac = cv2.resize(m2.astype(np.float64), (gw, gh), interpolation=cv2.INTER_AREA)  # OpenCV's own area fractions
    differ = got != expected
    assert np.all(np.abs(frac[differ] - 0.5) < 1e-6)  # only cells exactly half covered (ties) may be rounded apart


def test_a_grid_comes_back_from_its_patch_and_refreshes_like_a_full_resize():
    m = blobs(3000, 4000, 3, cell=150)
    grid = render.grid_of(m)
    assert grid.shape == (1536, 2048)
    np.testing.assert_array_equal(render.grid_from_patch(render.patch_of(m), 3000, 4000), grid)
    edited = maskedit.paint(m, Stroke.make([(100, 100), (2500, 1900)], 60)).apply(m)
    d = maskedit.paint(m, Stroke.make([(100, 100), (2500, 1900)], 60))
    np.testing.assert_array_equal(render.refresh_grid(grid, edited, d.y0, d.y1, d.x0, d.x1), render.grid_of(edited))


# --------------------------------------------------------------------------------------
# the draft functions (run on the decoder thread in the app)
# --------------------------------------------------------------------------------------


def test_apply_edits_incrementally_equals_from_scratch_and_reverts():
    from annotator.session import drafts

    base = blobs(200, 300, 5)
    edits = (Stroke.make([(20, 20), (250, 150)], 8), Cleanup("fill_holes"), Stroke.make([(150, 30)], 25, erase=True),
             Cleanup("remove_islands", 40), Cleanup("keep_largest"))

    def scratch(k):
        m = base.copy()
        for e in edits[:k]:
            m = maskedit.apply_edit(m, e).apply(m)
        return m

    first = drafts.render_draft(base, 0, base.shape, edits[:2], None, (255, 0, 0), 0.5)
    np.testing.assert_array_equal(first.mask, scratch(2))
    more = drafts.render_draft(base, 0, base.shape, edits, first, (255, 0, 0), 0.5)  # three more, incrementally
    np.testing.assert_array_equal(more.mask, scratch(5))
    np.testing.assert_array_equal(more.grid, render.grid_of(scratch(5)))
    back = drafts.render_draft(base, 0, base.shape, edits[:1], more, (255, 0, 0), 0.5)  # undo four: reverted
    np.testing.assert_array_equal(back.mask, scratch(1))
    np.testing.assert_array_equal(back.grid, render.grid_of(scratch(1)))
    other = blobs(200, 300, 6)  # another base: from scratch, whatever the cache
    np.testing.assert_array_equal(drafts.draft_mask(other, 0, other.shape, (), more), other)
    empty = drafts.draft_mask(None, 0, (50, 60), (Stroke.make([(10, 10)], 3),), None)
    assert empty.sum() == maskedit.paint(np.zeros((50, 60), bool), Stroke.make([(10, 10)], 3)).after.sum()
    assert base.flags.c_contiguous and first.mask.flags.f_contiguous


def test_edit_annotation_decodes_edits_and_finishes_the_mask():
    from annotator.data import coco
    from annotator.session import drafts

    m = blobs(240, 320, 8)
    seg = coco.encode_mask(m)
    stroke = Stroke.make([(5, 5), (300, 200)], 10, erase=True)
    done = drafts.edit_annotation(None, None, seg, m.shape, stroke, (0, 200, 0), 0.4, render.patch_of(m))
    expected = maskedit.paint(m, stroke).apply(m)
    np.testing.assert_array_equal(done.mask, expected)
    np.testing.assert_array_equal(coco.decode_rle(done.finished.rle, 240, 320), expected)
    np.testing.assert_array_equal(done.grid, render.grid_of(expected))
    again = drafts.edit_annotation(done.mask, done.grid, None, m.shape, Cleanup("fill_holes"), (0, 200, 0), 0.4)
    np.testing.assert_array_equal(again.mask, maskedit.fill_holes(expected).apply(expected))
    mask, logits, match = drafts.refine_inputs(seg, m.shape, None)
    np.testing.assert_array_equal(mask, m)
    assert logits.shape == (256, 256)
    assert match is None  # (no model, embedding and prompt given: nothing to compare SAM's candidates with)
