"""Issue 15, class 8: memory budget from the header, bounded CPU batches, no non-finite embedding anywhere.

The memory-growth test (resident memory after a long-ish run of distinct
images stays within the cache bound plus a stated overhead) is in
``test_reliability_growth.py``; it needs the real weights.
"""

from __future__ import annotations

import hashlib
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.data import memory
from annotator.data.imageio import ImageLoadError, estimate_memory, image_size, load_image
from sam_core.cache import FEATURES_SHAPE, EmbeddingCache, NonFiniteEmbeddingError, check_finite, check_model_output
from sam_core.types import ImageEmbedding

SIDE = 31622  # 31622 x 31622 = 999,950,884 pixels: just under the one-gigapixel limit


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = SIDE) -> Path:
    """A valid 1-bit grayscale PNG of ``side`` x ``side`` zeros, about 120 kB, written without the image in memory."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * 1024
    full, rest = divmod(side, 1024)
    for _ in range(full):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * rest))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def test_a_decompression_bomb_is_refused_by_the_header_estimate(bomb):
    assert bomb.stat().st_size < 1_000_000
    before = _max_rss()
    assert image_size(bomb) == (SIDE, SIDE)
    estimate = estimate_memory(bomb)
    assert estimate.mode == "1" and estimate.pixels == SIDE * SIDE
    assert estimate.decode_bytes >= SIDE * SIDE * 4  # Pillow's byte per pixel + our RGB output
    assert estimate.open_bytes > estimate.decode_bytes
    budget = 2 * 2**30
    check = memory.check_image(bomb, budget=budget)
    assert not check.fits and not check.prefetch_ok
    assert "31622 x 31622" in check.message and "Open it anyway?" in check.message
    with pytest.raises(ImageLoadError, match="too large for the memory budget"):
        load_image(bomb, max_bytes=budget)
    assert _max_rss() - before < 200 * 2**20  # nothing was decoded


def test_an_ordinary_image_fits_and_loads_under_a_budget(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    check = memory.check_image(path, budget=512 * 2**20)
    assert check.fits and check.message == ""
    assert load_image(path, max_bytes=512 * 2**20).shape == (300, 400, 3)


def test_memory_figures_are_plausible():
    total, available = memory.total_memory(), memory.available_memory()
    assert total is None or total > 2**28
    assert available is None or 0 < available <= (total or available) * 1.01
    budget = memory.default_image_budget()
    assert budget == int((total or memory.FALLBACK_TOTAL) * memory.DEFAULT_BUDGET_FRACTION)
    with pytest.raises(ValueError):
        memory.default_image_budget(0)


def test_meminfo_and_cgroup_parsing(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n")
    limit = tmp_path / "memory.max"
    limit.write_text("4294967296\n")
    usage = tmp_path / "memory.current"
    usage.write_text("1073741824\n")
    monkeypatch.setattr(memory, "_MEMINFO", str(info))
    monkeypatch.setattr(memory, "_CGROUP_FILES", (str(limit),))
    monkeypatch.setattr(memory, "_CGROUP_USAGE", (str(usage),))
    assert memory.total_memory() == 4 * 2**30  # the container's limit, below the RAM
    assert memory.available_memory() == 3 * 2**30
    limit.write_text("max\n")  # no limit
    assert memory.total_memory() == 16_000_000 * 1024
    assert memory.available_memory() == 8_000_000 * 1024


# ---------------------------------------------------------------------------------------------
# non-finite embeddings
# ---------------------------------------------------------------------------------------------


def _embedding(value: float = 0.0) -> ImageEmbedding:
    features = torch.zeros(FEATURES_SHAPE)
    features[0, 3, 4, 5] = value
    return ImageEmbedding(features, (30, 40), (768, 1024), "vit_t")


class _Encoder:
    device = torch.device("cpu")

    def __init__(self, value: float):
        self.value, self.calls = value, 0

    def encode(self, image):
        self.calls += 1
        return _embedding(self.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_embedding_is_never_cached(tmp_path, bad):
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="c")
    with pytest.raises(NonFiniteEmbeddingError):
        cache.put("ab" * 16, _embedding(bad))
    image = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(NonFiniteEmbeddingError):
        cache.get_or_compute(image, _Encoder(bad))
    assert cache.stats.stores == 0 and not list((tmp_path / "emb").rglob("*.samemb"))
    with pytest.raises(NonFiniteEmbeddingError, match="weights are damaged"):
        check_model_output(_Encoder(bad))
    check_model_output(_Encoder(0.0))


def test_a_value_beyond_float16_is_not_stored_as_infinity(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="c")
    with pytest.raises(NonFiniteEmbeddingError, match="float16"):
        cache.get_or_compute(np.zeros((30, 40, 3), np.uint8), _Encoder(1e6))  # finite in float32, inf in float16


def test_a_disk_entry_holding_nan_is_treated_as_corrupt(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="c", memory_bytes=0)
    key = "cd" * 16
    cache.put(key, _embedding(1.0))
    path = cache.path_for(key)
    data = bytearray(path.read_bytes())
    (hlen,) = struct.unpack_from("<I", data, 24)
    payload = 24 + 4 + hlen
    data[payload : payload + 2] = np.array([np.nan], "<f2").tobytes()
    body = bytes(data[24:])
    path.write_bytes(bytes(data[:8]) + hashlib.blake2b(body, digest_size=16).digest() + body)
    assert cache.get(key) is None and cache.stats.dropped == 1 and not path.exists()


def test_check_finite_names_the_tensor():
    emb = ImageEmbedding(torch.zeros(FEATURES_SHAPE), (1, 1), (1, 1), "sam2", (torch.zeros(2), torch.tensor([float("nan")])))
    with pytest.raises(NonFiniteEmbeddingError, match="high-resolution features 1"):
        check_finite(emb)


@pytest.mark.weights
@pytest.mark.slow
def test_a_checkpoint_of_nan_weights_is_refused_by_encode(tmp_path, mobilesam_checkpoint, capsys):
    from annotator.commands import encode as cmd_encode

    state = torch.load(mobilesam_checkpoint, map_location="cpu", weights_only=True)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "a.png")
    code = cmd_encode.main([str(folder), "--checkpoint", str(bad), "--device", "cpu", "-q",
                            "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == cmd_encode.EXIT_FATAL and "non-finite" in err and "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("*.samemb"))
