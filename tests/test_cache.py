"""Tests of sam_core.cache: keys, memory LRU, disk entries and their checks, threads.

Most tests use hand-made embeddings and a stand-in encoder; the ``weights``
tests decode real MobileSAM masks from cached embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_core.cache import (
    DEFAULT_MEMORY_BYTES,
    FEATURES_SHAPE,
    FORMAT_VERSION,
    EmbeddingCache,
    checkpoint_fingerprint,
    image_digest,
    round_to_storage,
)
from sam_core.types import ImageEmbedding

MiB = 2**20
EMB_BYTES = 4 * MiB  # one float32 (1, 256, 64, 64) embedding


def make_embedding(seed: int = 0, *, model_type: str = "vit_t", high_res: bool = False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hr = ()
    if high_res:
        hr = (
            torch.randn(1, 32, 256, 256, generator=g, dtype=dtype),
            torch.randn(1, 64, 128, 128, generator=g, dtype=dtype),
        )
    return ImageEmbedding(
        features=torch.randn(FEATURES_SHAPE, generator=g).to(dtype),
        original_size=(30 + seed, 40),
        input_size=(768, 1024),
        model_type=model_type,
        high_res_features=hr,
    )


def make_image(seed: int = 0, shape=(30, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


class FakePredictor:
    """Stands in for Predictor.encode: deterministic per image, counts calls."""

    device = torch.device("cpu")

    def __init__(self, model_type: str = "vit_t", delay: float = 0.0):
        self.model_type = model_type
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        seed = int(image.astype(np.int64).sum()) % 2**31
        emb = make_embedding(seed, model_type=self.model_type)
        return ImageEmbedding(emb.features, image.shape[:2], (768, 1024), self.model_type)


def cache_at(tmp_path: Path, **kw) -> EmbeddingCache:
    kw.setdefault("model_type", "vit_t")
    kw.setdefault("checkpoint_id", "ckpt-a")
    return EmbeddingCache(tmp_path / "emb", **kw)


def entry_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "emb").rglob("*.samemb"))


# -- file surgery for the corruption tests (mirrors the documented layout) --


def split_file(path: Path):
    data = path.read_bytes()
    magic, body = data[:8], data[24:]
    (hlen,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + hlen])
    return magic, header, body[4 + hlen :]


def join_file(path: Path, magic: bytes, header: dict, payload: bytes) -> None:
    h = json.dumps(header).encode()
    body = struct.pack("<I", len(h)) + h + payload
    path.write_bytes(magic + hashlib.blake2b(body, digest_size=16).digest() + body)


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------


def test_image_digest_depends_on_content_shape_and_dtype_only():
    img = make_image(0, (600, 800, 3))  # 1.4 MB: one chunk
    assert image_digest(img) == image_digest(img.copy())
    assert image_digest(np.asfortranarray(img)) == image_digest(img)  # same content, other layout
    other = img.copy()
    other[599, 799, 2] ^= 1
    assert image_digest(other) != image_digest(img)
    assert image_digest(img.reshape(800, 600, 3)) != image_digest(img)  # same bytes, other shape
    assert image_digest(img.view(np.int8)) != image_digest(img)  # same bytes, other dtype


def test_image_digest_of_a_large_image_covers_every_chunk():
    img = make_image(1, (1500, 2000, 3))  # 9 MB: three 4 MiB chunks, hashed in parallel
    base = image_digest(img)
    assert image_digest(img) == base
    for row in (0, 700, 1499):  # one byte in each chunk
        other = img.copy()
        other[row, 5, 0] ^= 0x80
        assert image_digest(other) != base


def test_key_depends_on_model_type_checkpoint_and_image(tmp_path):
    img = make_image(0)
    a = cache_at(tmp_path)
    assert a.key_for(img) == cache_at(tmp_path).key_for(img)
    assert a.key_for(img) == a.key_for_digest(image_digest(img))
    keys = {
        a.key_for(img),
        a.key_for(make_image(1)),
        cache_at(tmp_path, checkpoint_id="ckpt-b").key_for(img),
        cache_at(tmp_path, model_type="vit_b").key_for(img),
    }
    assert len(keys) == 4
    assert all(len(k) == 32 for k in keys)


def test_checkpoint_fingerprint_changes_with_content_size_and_mtime(tmp_path):
    p = tmp_path / "w.pt"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 * MiB, dtype=np.uint8).tobytes())
    p.write_bytes(data)
    os.utime(p, ns=(10**18, 10**18))
    fp = checkpoint_fingerprint(p)
    assert fp.startswith("fp1-") and fp == checkpoint_fingerprint(p)

    data[-1] ^= 1  # the last MiB (where torch.save keeps the CRCs of all tensors)
    p.write_bytes(data)
    os.utime(p, ns=(10**18, 10**18))
    assert checkpoint_fingerprint(p) != fp
    data[-1] ^= 1
    p.write_bytes(data)
    os.utime(p, ns=(10**18, 10**18))
    assert checkpoint_fingerprint(p) == fp  # same bytes, same mtime: same id
    os.utime(p, ns=(10**18 + 1, 10**18 + 1))
    assert checkpoint_fingerprint(p) != fp
    p.write_bytes(data + b"\0")
    os.utime(p, ns=(10**18, 10**18))
    assert checkpoint_fingerprint(p) != fp


def _write_sidecar(path: Path) -> str:
    """What sam_core.checkpoints writes next to a verified file."""
    st = path.stat()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    record = {"file": path.name, "sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    path.with_name(path.name + ".sha256").write_text(json.dumps(record))
    return sha


def test_checkpoint_fingerprint_uses_a_sha256_sidecar_only_when_it_matches(tmp_path):
    p = tmp_path / "a" / "mobile_sam.pt"
    p.parent.mkdir()
    p.write_bytes(b"weights" * 1000)
    plain = checkpoint_fingerprint(p)
    sha = _write_sidecar(p)
    assert checkpoint_fingerprint(p) == "sha256-" + sha
    # a copy elsewhere, verified again (new sidecar): same id, so cached entries are shared
    q = tmp_path / "b" / "mobile_sam.pt"
    q.parent.mkdir()
    q.write_bytes(p.read_bytes())
    assert checkpoint_fingerprint(q).startswith("fp1-")
    _write_sidecar(q)
    assert checkpoint_fingerprint(q) == checkpoint_fingerprint(p)
    # the file changed after it was verified: the sidecar no longer vouches for it
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert checkpoint_fingerprint(p).startswith("fp1-") and checkpoint_fingerprint(p) != plain
    p.with_name("mobile_sam.pt.sha256").write_text("{broken")
    assert checkpoint_fingerprint(p).startswith("fp1-")


# ---------------------------------------------------------------------------
# memory tier
# ---------------------------------------------------------------------------


def test_memory_hit_returns_the_stored_object(tmp_path):
    cache = cache_at(tmp_path, disk=False)
    emb = make_embedding()
    key = cache.key_for(make_image())
    assert cache.get(key) is None
    cache.put(key, emb)
    assert cache.get(key) is emb
    assert cache.get(key, device="cpu") is emb
    s = cache.stats
    assert (s.memory_hits, s.disk_hits, s.misses, s.stores) == (2, 0, 1, 1)
    assert s.hits == 2 and s.memory_entries == 1 and s.memory_bytes == EMB_BYTES
    assert entry_files(tmp_path) == []  # disk=False writes nothing


def test_memory_bound_holds_and_evicts_least_recently_used(tmp_path):
    cache = cache_at(tmp_path, disk=False, memory_bytes=3 * EMB_BYTES + EMB_BYTES // 2)
    keys = [cache.key_for(make_image(i)) for i in range(8)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, make_embedding(i))
    assert cache.memory_keys() == keys[:3]
    assert cache.get(keys[0]) is not None  # keys[0] becomes the most recent
    cache.put(keys[3], make_embedding(3))  # evicts keys[1], the least recently used
    assert cache.memory_keys() == [keys[2], keys[0], keys[3]]
    assert not cache.contains(keys[1])
    for i, key in enumerate(keys[4:], start=4):
        cache.put(key, make_embedding(i))
        assert cache.stats.memory_bytes <= cache.memory_bytes
    s = cache.stats
    assert s.memory_entries == 3 and s.memory_bytes == 3 * EMB_BYTES
    assert s.memory_evictions == 5
    assert cache.memory_keys() == keys[5:]


def test_discard_forgets_memory_and_disk(tmp_path):
    cache = cache_at(tmp_path)
    key = cache.key_for(make_image())
    cache.put(key, make_embedding())
    assert cache.contains(key) and cache.path_for(key).is_file()
    cache.discard(key)
    assert not cache.contains(key) and not cache.path_for(key).exists()
    assert cache.stats.memory_bytes == 0 and cache.get(key) is None


def test_embedding_larger_than_the_bound_is_not_kept_in_memory(tmp_path):
    cache = cache_at(tmp_path, memory_bytes=EMB_BYTES - 1)
    key = cache.key_for(make_image())
    cache.put(key, make_embedding())
    assert cache.stats.memory_entries == 0
    assert cache.get(key) is not None  # still on disk
    assert cache.stats.disk_hits == 1


def test_default_memory_bound_is_512_mib(tmp_path):
    assert DEFAULT_MEMORY_BYTES == 512 * MiB
    assert cache_at(tmp_path).memory_bytes == 512 * MiB


def test_put_rejects_other_model_type_and_wrong_shape(tmp_path):
    cache = cache_at(tmp_path)
    key = cache.key_for(make_image())
    with pytest.raises(ValueError, match="vit_b"):
        cache.put(key, make_embedding(model_type="vit_b"))
    bad = ImageEmbedding(torch.zeros(1, 256, 32, 32), (30, 40), (768, 1024), "vit_t")
    with pytest.raises(ValueError, match="features must be"):
        cache.put(key, bad)
    with pytest.raises(ValueError, match="not a cache key"):
        cache.put("../../etc/passwd", make_embedding())
    assert entry_files(tmp_path) == []


# ---------------------------------------------------------------------------
# disk tier
# ---------------------------------------------------------------------------


def test_disk_entry_roundtrips_as_float16(tmp_path):
    emb = make_embedding(3, high_res=True)
    writer = cache_at(tmp_path)
    key = writer.key_for(make_image(3))
    writer.put(key, emb)
    (path,) = entry_files(tmp_path)
    assert path == writer.path_for(key)
    assert path.relative_to(tmp_path / "emb").parts[:2] == ("vit_t", key[:2])
    # float16 on disk: 2 bytes per value plus a small header
    assert 2 * (256 * 64 * 64 + 32 * 256 * 256 + 64 * 128 * 128) < path.stat().st_size < 2 * emb.nbytes // 4 + 4096

    reader = cache_at(tmp_path)  # a later session
    assert reader.contains(key)
    got = reader.get(key)
    assert got is not None and reader.stats.disk_hits == 1
    want = round_to_storage(emb)
    assert got.features.dtype == torch.float32 and got.features.device.type == "cpu"
    assert torch.equal(got.features, want.features)
    assert len(got.high_res_features) == 2
    for g, w in zip(got.high_res_features, want.high_res_features):
        assert torch.equal(g, w)
    assert got.original_size == emb.original_size and got.input_size == emb.input_size
    assert got.model_type == "vit_t"
    # rounding is small, and loading the rounded value again changes nothing
    assert (got.features - emb.features).abs().max() < 2e-3 * emb.features.abs().max()
    assert torch.equal(round_to_storage(got).features, got.features)
    # the disk hit is now in memory
    assert reader.get(key) is got and reader.stats.memory_hits == 1


def test_disk_hit_in_a_requested_dtype_and_half_source_dtype(tmp_path):
    emb = make_embedding(4, dtype=torch.bfloat16)  # e.g. a GPU encoder's output
    writer = cache_at(tmp_path)
    key = writer.key_for(make_image(4))
    writer.put(key, emb)
    got = cache_at(tmp_path).get(key)  # half types come back as float32 on the CPU
    assert got.features.dtype == torch.float32
    assert torch.equal(got.features, round_to_storage(emb).features.float())
    # bf16 -> fp16 is exact except below fp16's normal range (|x| < 6.1e-5)
    assert (got.features - emb.features.float()).abs().max() < 6.1e-5
    got16 = cache_at(tmp_path).get(key, dtype=torch.float16)
    assert got16.features.dtype == torch.float16


def test_disk_off_and_directory_none_stay_in_memory(tmp_path):
    mem_only = EmbeddingCache(None, model_type="vit_t", checkpoint_id="x")
    key = mem_only.key_for(make_image())
    mem_only.put(key, make_embedding())
    assert mem_only.get(key) is not None and not mem_only.disk
    assert not tmp_path.joinpath("emb").exists()


def _corrupt_truncated(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_random_bytes(path: Path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())


def _corrupt_flipped_payload_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x01
    path.write_bytes(bytes(data))


def _corrupt_wrong_version(path: Path):
    magic, header, payload = split_file(path)
    header["format_version"] = FORMAT_VERSION + 1
    join_file(path, magic, header, payload)


def _corrupt_wrong_shape(path: Path):
    magic, header, payload = split_file(path)  # consistent with the payload, but not SAM's grid
    header["tensors"][0]["shape"] = [1, 256, 128, 32]
    join_file(path, magic, header, payload)


def _corrupt_shape_payload_mismatch(path: Path):
    magic, header, payload = split_file(path)
    header["tensors"].append({"name": "high_res_0", "shape": [1, 32, 256, 256]})
    join_file(path, magic, header, payload)


def _corrupt_wrong_key(path: Path):
    magic, header, payload = split_file(path)
    header["key"] = "0" * 32
    join_file(path, magic, header, payload)


def _corrupt_bad_header(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[:30] + b"{not json" + data[39:])


def _corrupt_empty(path: Path):
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncated,
        _corrupt_random_bytes,
        _corrupt_flipped_payload_byte,
        _corrupt_wrong_version,
        _corrupt_wrong_shape,
        _corrupt_shape_payload_mismatch,
        _corrupt_wrong_key,
        _corrupt_bad_header,
        _corrupt_empty,
    ],
)
def test_corrupt_entry_is_deleted_and_recomputed(tmp_path, corrupt):
    img = make_image(5)
    predictor = FakePredictor()
    first = cache_at(tmp_path)
    expected = first.get_or_compute(img, predictor)
    assert predictor.calls == 1
    (path,) = entry_files(tmp_path)
    corrupt(path)

    cache = cache_at(tmp_path)  # a later session: memory is empty
    key = cache.key_for(img)
    assert cache.contains(key)  # a file is there (contains does not validate)
    assert cache.get(key) is None
    assert not path.exists()
    assert (cache.stats.dropped, cache.stats.misses) == (1, 1)

    got = cache.get_or_compute(img, predictor)
    assert predictor.calls == 2
    assert torch.equal(got.features, expected.features)
    assert path.exists()
    assert cache_at(tmp_path).get(key) is not None  # the new file is valid


def test_other_checkpoint_or_model_type_does_not_hit(tmp_path):
    img = make_image(6)
    a = cache_at(tmp_path)
    a.get_or_compute(img, FakePredictor())
    b = cache_at(tmp_path, checkpoint_id="ckpt-b")
    pb = FakePredictor()
    b.get_or_compute(img, pb)
    assert pb.calls == 1 and b.stats.hits == 0
    c = cache_at(tmp_path, model_type="vit_b")
    pc = FakePredictor("vit_b")
    c.get_or_compute(img, pc)
    assert pc.calls == 1 and c.stats.hits == 0
    assert len(entry_files(tmp_path)) == 3
    # the same settings hit again
    p = FakePredictor()
    cache_at(tmp_path).get_or_compute(img, p)
    assert p.calls == 0


def test_entry_of_another_checkpoint_is_rejected_even_under_the_right_name(tmp_path):
    """Keys already differ; the header is checked as well (e.g. a file copied by hand)."""
    img = make_image(7)
    a = cache_at(tmp_path)
    a.put(a.key_for(img), make_embedding())
    b = cache_at(tmp_path, checkpoint_id="ckpt-b")
    key_b = b.key_for(img)
    b.path_for(key_b).parent.mkdir(parents=True, exist_ok=True)
    src = a.path_for(a.key_for(img))
    magic, header, payload = split_file(src)
    header["key"] = key_b  # the right key, but the other checkpoint's id
    join_file(b.path_for(key_b), magic, header, payload)
    assert b.get(key_b) is None and b.stats.dropped == 1
    assert not b.path_for(key_b).exists()


def test_get_or_compute_refuses_a_predictor_of_another_model(tmp_path):
    cache = cache_at(tmp_path)
    with pytest.raises(ValueError, match="vit_b"):
        cache.get_or_compute(make_image(), FakePredictor("vit_b"))
    assert entry_files(tmp_path) == []


def test_disk_bound_evicts_oldest_files(tmp_path):
    entry = 2 * 256 * 64 * 64 + 1024
    cache = cache_at(tmp_path, memory_bytes=0, disk_bytes=3 * entry)
    keys = []
    for i in range(6):
        key = cache.key_for(make_image(i))
        cache.put(key, make_embedding(i))
        os.utime(cache.path_for(key), (1000.0 + i, 1000.0 + i))  # distinct ages
        keys.append(key)
        total = sum(p.stat().st_size for p in entry_files(tmp_path))
        assert total <= 3 * entry
    assert cache.contains(keys[-1])
    assert not cache.contains(keys[0])
    assert cache.stats.disk_evictions >= 3


def test_a_disk_hit_refreshes_the_age_used_by_the_bound(tmp_path):
    cache = cache_at(tmp_path, memory_bytes=0)
    key = cache.key_for(make_image())
    cache.put(key, make_embedding())
    os.utime(cache.path_for(key), (1000.0, 1000.0))
    assert cache.get(key) is not None
    assert cache.path_for(key).stat().st_mtime > 1000.0 + 1e6


def test_write_failure_does_not_raise(tmp_path):
    blocker = tmp_path / "emb"
    blocker.write_bytes(b"a file where the folder should be")
    cache = cache_at(tmp_path)
    key = cache.key_for(make_image())
    assert cache.put(key, make_embedding()) is False  # logged, not raised
    assert cache.get(key) is not None  # memory still works
    assert cache_at(tmp_path, disk=False).put(key, make_embedding()) is False
    assert cache_at(tmp_path / "ok").put(key, make_embedding()) is True


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------


def test_two_threads_put_and_get_concurrently(tmp_path):
    cache = cache_at(tmp_path, memory_bytes=5 * EMB_BYTES)
    embs = [make_embedding(i) for i in range(4)]
    keys = [cache.key_for(make_image(i)) for i in range(12)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(offset: int):
        try:
            start.wait()
            for n in range(60):
                key = keys[(n * 5 + offset) % len(keys)]
                if n % 3 == 0:
                    cache.put(key, embs[n % len(embs)])
                got = cache.get(key)
                if got is not None:
                    assert tuple(got.features.shape) == FEATURES_SHAPE
                cache.contains(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    s = cache.stats
    assert s.memory_bytes <= cache.memory_bytes
    assert s.memory_bytes == s.memory_entries * EMB_BYTES
    assert s.stores == 40
    assert s.hits + s.misses == 120
    for p in entry_files(tmp_path):  # every file written concurrently is complete and valid
        assert cache_at(tmp_path).get(p.stem) is not None
    assert not list((tmp_path / "emb").rglob(".tmp-*"))


def test_concurrent_get_or_compute_of_one_image_encodes_once(tmp_path):
    cache = cache_at(tmp_path)
    predictor = FakePredictor(delay=0.3)
    img = make_image(8)
    results = []

    def work():
        results.append(cache.get_or_compute(img, predictor))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert predictor.calls == 1
    assert len(results) == 2 and results[0] is results[1]


def test_a_failed_encode_lets_a_waiting_thread_try_again(tmp_path):
    cache = cache_at(tmp_path)
    img = make_image(9)

    class Flaky(FakePredictor):
        def encode(self, image):
            n = self.calls
            out = super().encode(image)
            if n == 0:
                raise RuntimeError("out of memory")
            return out

    predictor = Flaky(delay=0.2)
    outcomes = []

    def work():
        try:
            outcomes.append(cache.get_or_compute(img, predictor))
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert predictor.calls == 2
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert sum(isinstance(o, ImageEmbedding) for o in outcomes) == 1


# ---------------------------------------------------------------------------
# real masks
# ---------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


PROMPTS = {  # (points x then y, labels) per photo
    "astronaut": (np.array([[260.0, 100.0]]), np.array([1])),  # the face
    "coffee": (np.array([[300.0, 200.0]]), np.array([1])),  # the cup
    "chelsea": (np.array([[200.0, 150.0], [420.0, 50.0]]), np.array([1, 0])),  # the cat
}


@pytest.fixture(scope="module")
def real(mobilesam_model, photos):
    """A real Predictor and its embedding of each photo, encoded once per module."""
    from sam_core import Predictor

    predictor = Predictor(mobilesam_model)
    memo: dict[str, ImageEmbedding] = {}

    def embedding(name: str) -> ImageEmbedding:
        if name not in memo:
            memo[name] = predictor.encode(photos[name])
        return memo[name]

    return predictor, embedding


class Replay:
    """Predictor stand-in that hands out one precomputed real embedding (counts encode calls)."""

    def __init__(self, predictor, embedding: ImageEmbedding):
        self.device, self.embedding, self.calls = predictor.device, embedding, 0

    def encode(self, image):
        self.calls += 1
        return self.embedding


@pytest.mark.weights
def test_cache_hits_give_identical_masks_with_real_weights(tmp_path, real, mobilesam_checkpoint, photos):
    predictor, embedding = real
    ckpt = checkpoint_fingerprint(mobilesam_checkpoint)
    image = photos["astronaut"]
    points, labels = PROMPTS["astronaut"]
    encoder = Replay(predictor, embedding("astronaut"))

    # disk off: a hit is the very embedding that was computed
    mem = EmbeddingCache(None, model_type="vit_t", checkpoint_id=ckpt)
    computed = mem.get_or_compute(image, encoder)
    assert computed is encoder.embedding
    hit = mem.get_or_compute(image, encoder)
    assert hit is computed and mem.stats.memory_hits == 1 and encoder.calls == 1
    m0 = predictor.decode(computed, points=points, labels=labels).masks()
    assert np.array_equal(predictor.decode(hit, points=points, labels=labels).masks(), m0)

    # disk on: what the user first sees, the memory hit and a later session's disk hit agree exactly
    cache = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id=ckpt)
    first = cache.get_or_compute(image, encoder)
    assert encoder.calls == 2
    masks_first = predictor.decode(first, points=points, labels=labels).masks()
    assert cache.get_or_compute(image, encoder) is first
    later = EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id=ckpt)
    from_disk = later.get_or_compute(image, encoder)
    assert encoder.calls == 2
    assert later.stats.disk_hits == 1 and later.stats.misses == 0
    assert torch.equal(from_disk.features, first.features)
    masks_disk = predictor.decode(from_disk, points=points, labels=labels).masks()
    assert np.array_equal(masks_disk, masks_first)
    assert masks_first[0].any()


@pytest.mark.weights
@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_float16_storage_barely_changes_masks(real, name):
    """The float16 rounding the disk tier applies, against the unrounded embedding."""
    predictor, embedding = real
    emb = embedding(name)
    points, labels = PROMPTS[name]
    exact = predictor.decode(emb, points=points, labels=labels)
    rounded = predictor.decode(round_to_storage(emb), points=points, labels=labels)
    ious = [_iou(exact.mask(i), rounded.mask(i)) for i in range(len(exact))]
    print(f"\nfp16 storage, {name}: IoU per candidate {[round(v, 5) for v in ious]}")
    assert min(ious) >= 0.99
    np.testing.assert_allclose(rounded.scores, exact.scores, atol=5e-3)
