"""CUDA: the encoder runs under half-precision autocast and its masks match fp32.

Skipped without a CUDA GPU (see conftest). The default (``encoder_dtype="auto"``)
is fp16 autocast on CUDA: bf16 keeps only 8 bits of mantissa and, measured with
CPU autocast on these photos, moves MobileSAM's features ~2 % and some masks
below IoU 0.99, while fp16 stays within ~0.2 % (see sam_core/predictor.py).

With the real MobileSAM weights, on three real photos and several prompts,
the single-mask output has IoU >= 0.99 with the fp32 (CPU) result, and each of
the three fp32 candidates has a half-precision candidate with IoU >= 0.99
(their order may swap where scores nearly tie).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_core import load_model
from sam_core.predictor import Predictor

pytestmark = [pytest.mark.gpu, pytest.mark.weights]


@pytest.fixture(scope="module")
def gpu_predictor(mobilesam_checkpoint):
    return Predictor(load_model("vit_t", checkpoint=mobilesam_checkpoint, device="cuda"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_half_precision_encoder_masks_match_fp32(name, photos, gpu_predictor, mobilesam_model):
    image = photos[name]
    h, w = image.shape[:2]
    fast = gpu_predictor.encode(image)  # fp16 autocast
    exact = Predictor(mobilesam_model).encode(image)  # CPU, fp32
    assert fast.features.device.type == "cuda" and exact.features.dtype == torch.float32
    assert torch.isfinite(fast.features).all()
    prompts = [
        dict(points=[[0.5 * w, 0.5 * h]], labels=[1]),
        dict(points=[[0.5 * w, 0.5 * h], [0.1 * w, 0.1 * h]], labels=[1, 0]),
        dict(box=[0.2 * w, 0.2 * h, 0.8 * w, 0.85 * h]),
    ]
    for prompt in prompts:
        single_fast = gpu_predictor.decode(fast, multimask=False, **prompt)
        single_exact = Predictor(mobilesam_model).decode(exact, multimask=False, **prompt)
        assert single_fast.low_res_logits.dtype == np.float32
        assert _iou(single_fast.mask(0), single_exact.mask(0)) >= 0.99, prompt

        multi_fast = gpu_predictor.decode(fast, **prompt).masks()
        multi_exact = Predictor(mobilesam_model).decode(exact, **prompt).masks()
        for i, mask in enumerate(multi_exact):
            best = max(_iou(mask, other) for other in multi_fast)
            assert best >= 0.99, f"{name} {prompt}: candidate {i} best IoU {best:.4f}"



def test_batched_encode_on_the_gpu_gives_each_images_masks(photos, gpu_predictor):
    images = [photos[n] for n in ("astronaut", "coffee", "chelsea")]
    batch = gpu_predictor.encode_batch(images)
    for image, emb in zip(images, batch):
        alone = gpu_predictor.encode(image)
        assert emb.features.device.type == "cuda" and emb.original_size == image.shape[:2]
        h, w = image.shape[:2]
        a = gpu_predictor.decode(emb, points=[[0.5 * w, 0.5 * h]], labels=[1]).mask(0)
        b = gpu_predictor.decode(alone, points=[[0.5 * w, 0.5 * h]], labels=[1]).mask(0)
        assert _iou(a, b) >= 0.99
