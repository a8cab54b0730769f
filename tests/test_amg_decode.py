"""The automatic generator's batched decode (sam_core.amg_decode) against the model's own predict_low_res.

Two shortcuts must not change anything the generator reads: the mask
upscaling skipped for prompts whose every candidate fails the predicted-IoU
filter, and the logits computed only on the window of feature cells that
the photo fills (plus the interpolation's one-row margin).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sam_core import Predictor
from sam_core import amg_decode
from sam_core.amg_decode import decode_points, logit_window
from sam_core.amg_utils import build_all_layer_point_grids
from sam_core.transforms import preprocess_shape


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 4000), w=st.integers(1, 4000), seed=st.integers(0, 2**16))
def test_window_upsampling_equals_the_full_upsampling(h, w, seed):
    """SAM 1's upsampling (256 -> 1024, crop to input_size) gives the same values on the logit window."""
    h_in, w_in = preprocess_shape(h, w)
    rows, cols = logit_window((h_in, w_in))
    assert 1 <= rows <= 64 and 1 <= cols <= 64
    low = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(seed))
    full = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)[..., :h_in, :w_in]
    part = low[..., : 4 * rows, : 4 * cols]
    win = F.interpolate(part, (16 * rows, 16 * cols), mode="bilinear", align_corners=False)[..., :h_in, :w_in]
    assert torch.equal(full, win)


def test_window_of_a_wide_photo_drops_the_padding_rows():
    assert logit_window((683, 1024)) == (44, 64)  # coffee: 43 rows of cells hold the photo, plus one
    assert logit_window((1024, 683)) == (64, 44)
    assert logit_window((1024, 1024)) == (64, 64)


@pytest.mark.weights
@pytest.mark.slow
def test_split_decode_equals_predict_low_res(mobilesam_model, photos):
    """Real MobileSAM on a real photo: same IoU, same logits on the window, -inf only for rejected prompts."""
    image = photos["coffee"]
    embedding = Predictor(mobilesam_model).encode(image)
    h, w = image.shape[:2]
    points = build_all_layer_point_grids(16, 0, 1)[0] * np.array([[w, h]])  # 256 points over the photo
    # a mix of prompts that pass and fail the IoU filter at 0.95 (coffee: most pass 0.88)
    points = points[::8]
    window = logit_window(tuple(embedding.input_size))
    assert window[0] < 64
    assert amg_decode._is_plain_sam(mobilesam_model)
    with torch.inference_mode():
        low, iou = decode_points(mobilesam_model, embedding, points, 0.95, window, max_batch=16)
        coords = torch.as_tensor(
            mobilesam_model.transform_coords(points, (h, w)), dtype=torch.float32
        ).reshape(-1, 1, 2)
        labels = torch.ones((len(points), 1), dtype=torch.int32)
        ref_low, ref_iou = mobilesam_model.predict_low_res(embedding, coords, labels, None, None, True)
    assert low.shape == (len(points), 3, 4 * window[0], 4 * window[1])
    assert torch.allclose(iou, ref_iou, atol=1e-6, rtol=0)
    needed = (ref_iou > 0.95).any(dim=1)
    assert 0 < int(needed.sum()) < len(points), "the photo must exercise both kinds of prompt"
    ref_win = ref_low[..., : low.shape[-2], : low.shape[-1]]
    assert torch.allclose(low[needed], ref_win[needed], atol=1e-4, rtol=0)
    assert bool(torch.isneginf(low[~needed]).all())
    # without an IoU filter every prompt is upscaled
    with torch.inference_mode():
        low_all, _ = decode_points(mobilesam_model, embedding, points, 0.0, window, max_batch=64)
    assert torch.allclose(low_all, ref_win, atol=1e-4, rtol=0)


def test_a_replaced_predict_low_res_is_used():
    """A wrapper on the object (a benchmark's counter, a test double) turns the shortcut off."""

    class Probe(torch.nn.Module):
        pass

    from sam_core.modeling.sam import Sam

    fake = Sam.__new__(Sam)
    torch.nn.Module.__init__(fake)
    assert amg_decode._is_plain_sam(fake)
    fake.predict_low_res = lambda *a: None
    assert not amg_decode._is_plain_sam(fake)

    class Sub(Sam):
        def predict_low_res(self, *args):  # pragma: no cover - never called
            raise AssertionError

    sub = Sub.__new__(Sub)
    torch.nn.Module.__init__(sub)
    assert not amg_decode._is_plain_sam(sub)
    assert not amg_decode._is_plain_sam(Probe())
