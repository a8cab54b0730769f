"""A long session: 300 images annotated one after another, prefetch on, memory bounded.

The real window, real threads, real embedding cache (memory tier bounded to
a few embeddings) and real document; the fake predictor stands in for SAM so
that the run takes seconds (embeddings have the real size, 4 MiB each).
"""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, key

pytestmark = [pytest.mark.gui, pytest.mark.slow]

N_IMAGES = 300
CACHE_BYTES = 8 * 4 * 2**20  # eight embeddings
RSS_GROWTH_BOUND_MB = 120  # after warm-up; see docs/benchmarks.md


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_300_images_annotated_with_bounded_memory(qtbot, make_window, tmp_path):
    from PIL import Image
    from sam_core import EmbeddingCache

    from annotator.workers.messages import ModelInfo

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        img = np.full((120, 160, 3), rng.integers(0, 255, 3), np.uint8)
        img[30:90, 40:120] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"img_{i:03d}.png")

    pred = FakePredictor()
    cache = EmbeddingCache(None, model_type="fake", checkpoint_id="fake-1", memory_bytes=CACHE_BYTES)
    w = make_window(folder, ModelInfo(pred, "fake", "cpu", None, cache))
    s = w.session
    rss = {}
    save_times = []
    real_save = s.dataset.save

    def timed_save(*a, **k):
        t = time.perf_counter()
        try:
            return real_save(*a, **k)
        finally:
            save_times.append(time.perf_counter() - t)

    s.dataset.save = timed_save
    t0 = time.perf_counter()
    for i in range(N_IMAGES):
        qtbot.waitUntil(lambda: s.index == i and s.embedding is not None, timeout=20_000)
        click_image(qtbot, w, 80, 60)
        qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=20_000)
        key(qtbot, w, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not s.accepting, timeout=20_000)
        if i in (49, N_IMAGES - 1):
            gc.collect()
            rss[i] = _rss_mb()
        if i + 1 < N_IMAGES:
            key(qtbot, w, Qt.Key.Key_D)
    elapsed = time.perf_counter() - t0

    assert len(s.dataset.annotations) == N_IMAGES
    assert len(s.dataset.images) == N_IMAGES
    stats = cache.stats
    assert stats.memory_bytes <= CACHE_BYTES and stats.memory_entries <= 8
    assert s.encoder._image_bytes <= s.encoder._image_memory_bytes
    assert len(pred.encoded) <= N_IMAGES + 1  # each image encoded once (prefetch included)
    growth = rss[N_IMAGES - 1] - rss[49]
    print(
        f"\n{N_IMAGES} images in {elapsed:.1f} s; RSS {rss[49]:.0f} MB after 50, {rss[N_IMAGES - 1]:.0f} MB after "
        f"{N_IMAGES} (+{growth:.0f} MB); cache {stats.memory_entries} entries / {stats.memory_bytes / 2**20:.0f} MiB; "
        f"save of the last file {save_times[-1] * 1000:.1f} ms (median {np.median(save_times) * 1000:.1f} ms)"
    )
    assert growth < RSS_GROWTH_BOUND_MB
