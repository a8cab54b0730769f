"""Fuzz the decoder's prompt inputs with hypothesis: any input gives candidates or a PromptError.

A small random-weight MobileSAM-shaped model keeps each example cheap; what is
checked is the validation and plumbing (no crash, no NaN, right shapes), not
mask quality. Bounded: 60 examples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam_core import Candidates, Predictor, PromptError
from sam_core.build import build_model

H, W = 37, 53  # odd sizes on purpose

special = st.sampled_from([float("nan"), float("inf"), float("-inf"), -1e12, 1e12, -0.0])
coord = st.one_of(st.floats(-200, 200, allow_nan=False, allow_infinity=False), special)
points = st.one_of(
    st.none(),
    st.lists(st.tuples(coord, coord), min_size=0, max_size=6).map(lambda p: np.array(p, dtype=np.float64).reshape(-1, 2)),
    st.lists(coord, min_size=0, max_size=5).map(np.array),  # wrong shape
)
labels = st.one_of(st.none(), st.lists(st.sampled_from([0, 1, 2, -1]), min_size=0, max_size=6).map(np.array))
box = st.one_of(st.none(), st.lists(coord, min_size=3, max_size=5).map(np.array))
mask = st.one_of(
    st.none(),
    st.sampled_from(["zeros", "nan", "large", "wrong"]),
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model("vit_t").eval()
    predictor = Predictor(model)
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    return predictor, predictor.encode(image)


def _mask(kind):
    if kind is None:
        return None
    return {
        "zeros": np.zeros((256, 256), np.float32),
        "nan": np.full((256, 256), np.nan, np.float32),
        "large": np.full((256, 256), 1e30, np.float32),
        "wrong": np.zeros((64, 64), np.float32),
    }[kind]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=points, labels=labels, box=box, mask_kind=mask, multimask=st.booleans())
def test_any_prompt_gives_candidates_or_a_prompt_error(setup, points, labels, box, mask_kind, multimask):
    predictor, emb = setup
    try:
        c = predictor.decode(emb, points=points, labels=labels, box=box, mask_input=_mask(mask_kind), multimask=multimask)
    except PromptError as exc:
        assert str(exc)  # a message that says why
        return
    assert isinstance(c, Candidates)
    k = 3 if multimask else 1
    assert c.scores.shape == (k,) and c.low_res_logits.shape == (k, 256, 256)
    assert np.all(np.diff(c.scores) <= 0)
    assert np.isfinite(c.scores).all() and np.isfinite(c.low_res_logits).all()
    assert c.mask(0).shape == (H, W) and c.mask(0).dtype == bool
