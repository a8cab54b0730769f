"""Tests of ``sam-annotator encode`` (annotator/cmd_encode.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotator import cli

from annotator.commands import encode as cmd_encode
from annotator.data.imageio import load_image
from sam_core.cache import EmbeddingCache, checkpoint_fingerprint
from sam_core.types import ImageEmbedding


class FakePredictor:
    """Deterministic stand-in for sam_core.Predictor; counts the images it encodes."""

    device = torch.device("cpu")

    def __init__(self, model_type="vit_t", fail_on_shape=None, batch=False):
        self.model_type = model_type
        self.encoded = 0
        self.batches: list[int] = []
        self.fail_on_shape = fail_on_shape
        self._lock = threading.Lock()
        if batch:
            self.encode_batch = self._encode_batch

    def encode(self, image):
        if self.fail_on_shape is not None and image.shape[:2] == self.fail_on_shape:
            raise RuntimeError("CUDA out of memory (simulated)")
        with self._lock:
            self.encoded += 1
        g = torch.Generator().manual_seed(int(image.sum()) % 2**31)
        return ImageEmbedding(torch.randn(1, 256, 64, 64, generator=g), image.shape[:2], (1024, 1024), self.model_type)

    def _encode_batch(self, images):
        self.batches.append(len(images))
        return [self.encode(im) for im in images]


def make_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "img1.png")
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / "img2.jpg", quality=90)
    (folder / "img10.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # corrupt
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Replace the model loading seams; yields the fake predictor and the fake checkpoint."""
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"fake weights")
    predictor = FakePredictor()
    loads = []

    def load(model_type, checkpoint, device, memo=None):
        loads.append((model_type, Path(checkpoint), device))
        predictor.model_type = model_type
        return predictor

    monkeypatch.setattr(cmd_encode, "_load_predictor", load)
    predictor.loads = loads
    return predictor, ckpt


def cache_for(root: Path, ckpt: Path, model_type="vit_t") -> EmbeddingCache:
    return EmbeddingCache(root / "embeddings", model_type=model_type, checkpoint_id=checkpoint_fingerprint(ckpt))


def test_encode_fills_the_cache_reports_the_bad_image_and_skips_on_rerun(tmp_path, fake, capsys):
    predictor, ckpt = fake
    folder = make_folder(tmp_path)
    root = tmp_path / "cache"
    argv = ["encode", str(folder), "--checkpoint", str(ckpt), "--cache-dir", str(root), "--device", "cpu"]

    assert cli.main(argv) == cmd_encode.EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert predictor.encoded == 2
    assert predictor.loads == [("vit_t", ckpt, "cpu")]
    assert "3 images: 2 encoded, 0 already cached, 1 failed" in out
    assert "cannot encode" in err and "img10.png" in err
    assert "img1.png" not in err.replace("img10.png", "")

    cache = cache_for(root, ckpt)
    for name in ("img1.png", "img2.jpg"):
        key = cache.key_for(load_image(folder / name))  # the key the window computes
        assert cache.path_for(key).is_file()
        emb = cache.get(key)
        assert emb is not None and emb.original_size == load_image(folder / name).shape[:2]
    assert len(list((root / "embeddings" / "vit_t").rglob("*.samemb"))) == 2

    # a second run encodes nothing
    assert cli.main(argv) == cmd_encode.EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert predictor.encoded == 2
    assert "3 images: 0 encoded, 2 already cached, 1 failed" in out

    # once the bad file is gone, the run succeeds
    (folder / "img10.png").unlink()
    assert cli.main(argv + ["--quiet"]) == cmd_encode.EXIT_OK
    assert predictor.encoded == 2


def test_encode_redoes_a_corrupt_entry(tmp_path, fake, capsys):
    predictor, ckpt = fake
    folder = make_folder(tmp_path)
    (folder / "img10.png").unlink()
    root = tmp_path / "cache"
    argv = [str(folder), "--checkpoint", str(ckpt), "--cache-dir", str(root), "-q"]
    assert cmd_encode.main(argv) == cmd_encode.EXIT_OK
    files = sorted((root / "embeddings").rglob("*.samemb"))
    files[0].write_bytes(files[0].read_bytes()[:100])
    assert cmd_encode.main(argv) == cmd_encode.EXIT_OK
    assert predictor.encoded == 3
    assert "1 encoded, 1 already cached" in capsys.readouterr().out


def test_another_model_type_is_encoded_separately(tmp_path, fake, capsys):
    predictor, ckpt = fake
    folder = make_folder(tmp_path)
    (folder / "img10.png").unlink()
    root = tmp_path / "cache"
    base = [str(folder), "--checkpoint", str(ckpt), "--cache-dir", str(root), "-q"]
    assert cmd_encode.main(base) == 0
    assert cmd_encode.main(base + ["--model", "vit_b"]) == 0
    assert predictor.encoded == 4
    assert len(list((root / "embeddings" / "vit_b").rglob("*.samemb"))) == 2


def test_batches_use_the_batch_encoder_and_fall_back_one_by_one(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(np.full((20 + i, 30, 3), i * 40, np.uint8)).save(p)
        paths.append(p)
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="c", memory_bytes=0)
    predictor = FakePredictor(batch=True)
    done = []
    summary = cmd_encode.encode_folder(paths, predictor, cache, batch_size=2, progress=done.append,
                                       background_loading=True)
    assert predictor.batches == [2, 2]  # the fifth image alone goes through encode()
    assert (summary.encoded, summary.cached, summary.failed) == (5, 0, [])
    assert sum(done) == 5

    # a failing batch is retried image by image; only the bad one fails
    cache2 = EmbeddingCache(tmp_path / "emb2", model_type="vit_t", checkpoint_id="c", memory_bytes=0)
    flaky = FakePredictor(batch=True, fail_on_shape=(22, 30))
    errors = []
    summary = cmd_encode.encode_folder(paths, flaky, cache2, batch_size=4, on_error=lambda p, r: errors.append(p))
    assert summary.encoded == 4 and errors == [paths[2]]
    assert "out of memory" in summary.failed[0][1]


def test_batched_entries_decode_like_images_encoded_one_at_a_time(tmp_path):
    """The real batch encoder (random MobileSAM weights) fills the cache with the embeddings encode() gives."""
    from sam_core import Predictor, build_model

    torch.manual_seed(0)
    predictor = Predictor(build_model("vit_t"))
    rng = np.random.default_rng(1)
    paths = []
    for i, shape in enumerate([(60, 80), (90, 40), (50, 50)]):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, (*shape, 3), np.uint8)).save(paths[-1])
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="c", memory_bytes=0)
    summary = cmd_encode.encode_folder(paths, predictor, cache, batch_size=3)
    assert (summary.encoded, summary.failed) == (3, [])
    for path in paths:
        image = load_image(path)
        cached = cache.get(cache.key_for(image))
        alone = predictor.encode(image)
        assert cached.original_size == alone.original_size and cached.input_size == alone.input_size
        a = predictor.decode(cached, points=[[10, 10]], labels=[1])
        b = predictor.decode(alone, points=[[10, 10]], labels=[1])
        # the cache stores float16: masks agree up to that rounding
        np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=0.05 * np.abs(b.low_res_logits).max())


def test_usage_errors(tmp_path, fake, capsys):
    _, ckpt = fake
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cmd_encode.main([str(empty), "--checkpoint", str(ckpt)]) == cmd_encode.EXIT_USAGE
    assert "no images" in capsys.readouterr().err
    assert cmd_encode.main([str(tmp_path / "missing")]) == cmd_encode.EXIT_USAGE
    assert "cannot list" in capsys.readouterr().err
    assert cmd_encode.main([str(empty), "--batch-size", "0"]) == cmd_encode.EXIT_USAGE
    assert cmd_encode.main([str(empty), "--model", "nope"]) == cmd_encode.EXIT_USAGE
    capsys.readouterr()


def test_missing_checkpoint_is_fatal(tmp_path, fake, capsys):
    folder = make_folder(tmp_path)
    assert cmd_encode.main([str(folder), "--checkpoint", str(tmp_path / "nope.pt"), "-q"]) == cmd_encode.EXIT_FATAL
    assert "nope.pt" in capsys.readouterr().err


@pytest.mark.weights
def test_encode_with_real_weights_then_the_window_hits(tmp_path, mobilesam_checkpoint, mobilesam_model, photos, capsys):
    """The real engine: the entries the command writes are hits for a Predictor later."""
    from sam_core import Predictor

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photos["chelsea"]).save(folder / "cat.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    root = tmp_path / "cache"
    argv = [str(folder), "--checkpoint", str(mobilesam_checkpoint), "--cache-dir", str(root), "--device", "cpu"]
    assert cmd_encode.main(argv) == cmd_encode.EXIT_PARTIAL
    assert "1 encoded" in capsys.readouterr().out

    cache = EmbeddingCache(root / "embeddings", model_type="vit_t",
                           checkpoint_id=checkpoint_fingerprint(mobilesam_checkpoint))

    class Counting:
        def __init__(self, inner):
            self.inner, self.model, self.calls = inner, inner.model, 0

        def encode(self, image):
            self.calls += 1
            return self.inner.encode(image)

    predictor = Counting(Predictor(mobilesam_model))
    emb = cache.get_or_compute(load_image(folder / "cat.png"), predictor)
    assert predictor.calls == 0 and cache.stats.disk_hits == 1
    points, labels = np.array([[200.0, 150.0]]), np.array([1])
    fresh = predictor.inner.encode(photos["chelsea"])
    a = predictor.inner.decode(emb, points=points, labels=labels).mask(0)
    b = predictor.inner.decode(fresh, points=points, labels=labels).mask(0)
    iou = np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
    assert iou >= 0.99
