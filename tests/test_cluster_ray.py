"""``encode --ray`` and ``auto --ray`` on a real local Ray cluster, with the real MobileSAM weights.

Ray is started once for the module (3 logical CPUs on whatever cores there
are: room for an actor of 2 CPUs beside a read task, so that the two stages
run apart as they do on a GPU cluster) and shut down at the end; the fixture
then checks that every process it started has exited.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="needs the cluster extra: pip install -e '.[test,cluster]'")

from annotator import cli  # noqa: E402
from annotator.commands import cluster  # noqa: E402
from annotator.commands import encode as cmd_encode  # noqa: E402
from annotator.commands import encode_ray  # noqa: E402
from annotator.data import proposals as P  # noqa: E402
from annotator.data.digests import DigestIndex  # noqa: E402
from annotator.data.imageio import load_image  # noqa: E402
from sam_core.cache import EmbeddingCache, checkpoint_fingerprint, image_digest  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.weights,
    # Ray Data's DataContext warns about its own defaults when it is first made (Ray 2.60)
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


def _descendants(pid: int) -> set:
    """Pids of every living process below ``pid`` (Linux /proc)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 3 CPUs for the whole module; afterwards, no process it started is left."""
    if not os.path.isdir("/proc"):
        pytest.skip("the leak check reads /proc")
    before = _descendants(os.getpid())
    ray.init(num_cpus=3, include_dashboard=False, logging_level="WARNING")
    started = _descendants(os.getpid()) - before
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        started |= _descendants(os.getpid()) - before
        ray.shutdown()
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the process table: there is no signal to wait on
        left = [p for p in started if _alive(p)]
        assert not left, f"Ray left processes running: {left}"


@pytest.fixture
def photo_folder(tmp_path, photos) -> Path:
    """Four real photos (three of them downsized), and one file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).save(folder / "a_astronaut.png")
    Image.fromarray(photos["coffee"][::2, ::2]).save(folder / "b_coffee.jpg", quality=92)
    Image.fromarray(photos["chelsea"][::2, ::2]).save(folder / "c_chelsea.png")
    Image.fromarray(photos["chelsea"][::2, ::-2]).save(folder / "d_chelsea_flipped.png")
    (folder / "e_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def _cache(root: Path, checkpoint: Path) -> EmbeddingCache:
    return EmbeddingCache(root / "embeddings", model_type="vit_t", checkpoint_id=checkpoint_fingerprint(checkpoint),
                          memory_bytes=0)


def _entries(root: Path) -> dict:
    """``key -> path`` of every finished entry (temporary files excluded)."""
    return {p.stem: p for p in (root / "embeddings").rglob("*.samemb") if not p.name.startswith(".tmp-")}


@contextlib.contextmanager
def _threads(n: int):
    """The arithmetic of an ``n``-CPU Ray actor (Ray sets OMP_NUM_THREADS=n) in this process, restored afterwards."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def test_encode_ray_writes_what_encode_writes_and_a_second_run_encodes_nothing(
    local_ray, photo_folder, tmp_path, mobilesam_checkpoint, capsys
):
    (photo_folder / "d_chelsea_flipped.png").unlink()
    common = ["--checkpoint", str(mobilesam_checkpoint), "--device", "cpu", "-q"]
    single, clustered = tmp_path / "single", tmp_path / "cluster"
    with _threads(2):
        assert cli.main(["encode", str(photo_folder), "--cache-dir", str(single)] + common) == 3
    capsys.readouterr()

    # actors of 2 CPUs: the read stage runs on its own tasks and ships the resized pixels to the actor
    argv = ["encode", str(photo_folder), "--cache-dir", str(clustered), "--ray", local_ray, "--cpus-per-actor", "2"]
    argv += common
    assert cli.main(argv) == cmd_encode.EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "4 images: 3 encoded, 0 already cached, 1 failed" in out
    assert "e_broken.png: not an image" in err

    # the same entries under the same keys, the same float16 values after decoding
    a, b = _entries(single), _entries(clustered)
    assert sorted(a) == sorted(b) and len(a) == 3
    ca, cb = _cache(single, mobilesam_checkpoint), _cache(clustered, mobilesam_checkpoint)
    for key in a:
        ea, eb = ca.get(key), cb.get(key)
        assert (ea.original_size, ea.input_size, ea.model_type) == (eb.original_size, eb.input_size, eb.model_type)
        assert np.array_equal(ea.features.half().numpy(), eb.features.half().numpy()), key
    # ... under the key the window computes, and known to the window without reading the images
    paths = sorted(p for p in photo_folder.iterdir() if p.name != "e_broken.png")
    recorded = DigestIndex.beside(cb).lookup(paths)
    for path in paths:
        digest = image_digest(load_image(path))
        assert recorded[path] == digest and cb.key_for_digest(digest) in b

    # a second run encodes nothing
    written = {k: p.read_bytes() for k, p in b.items()}  # (a rewrite would change the header's "created")
    assert cli.main(argv) == cmd_encode.EXIT_PARTIAL
    out, _ = capsys.readouterr()
    assert "4 images: 0 encoded, 3 already cached, 1 failed" in out
    assert {k: p.read_bytes() for k, p in _entries(clustered).items()} == written


def test_an_encoder_actor_killed_mid_run_is_replaced_and_every_entry_ends_valid(
    local_ray, photo_folder, tmp_path, mobilesam_checkpoint
):
    (photo_folder / "e_broken.png").unlink()

    @ray.remote(num_cpus=0)
    class Killer:
        """Kills the first encoder actor that finishes a batch (entries written, result not yet returned)."""

        def __init__(self):
            self.starts, self.batches, self.killed = 0, 0, False

        def started(self):
            self.starts += 1

        def batch_done(self, actor):
            self.batches += 1
            if not self.killed:
                self.killed = True
                ray.kill(actor, no_restart=False)  # Ray may restart it

        def counts(self):
            return self.starts, self.batches, self.killed

    killer = Killer.remote()

    class KilledOnce(cluster.Worker):  # a local class: Ray ships it by value
        def __init__(self, job):
            super().__init__(job)
            ray.get(killer.started.remote())

        def __call__(self, batch):
            out = super().__call__(batch)
            ray.get(killer.batch_done.remote(ray.get_runtime_context().current_actor))
            return out

    root = tmp_path / "cache"
    job = cluster.Job(kind="encode", model_type="vit_t", checkpoint=str(mobilesam_checkpoint),
                      checkpoint_id=checkpoint_fingerprint(mobilesam_checkpoint),
                      embeddings_dir=str(root / "embeddings"), device="cpu")
    paths = sorted(photo_folder.iterdir())
    summary = encode_ray.encode_paths(paths, job, address=local_ray, batch_size=1, worker_cls=KilledOnce)

    starts, batches, killed = ray.get(killer.counts.remote())
    assert killed and starts >= 2, (starts, batches)  # the actor was killed and Ray started it again
    assert batches >= len(paths) + 1  # the batch it was killed in ran again
    # the rerun of the killed batch finds the entry written before the kill (whole: renamed into place)
    assert (summary.encoded + summary.cached, summary.failed) == (4, [])
    cache = _cache(root, mobilesam_checkpoint)
    entries = _entries(root)
    assert len(entries) == 4
    for path in paths:
        emb = cache.get(cache.key_for(load_image(path)))
        assert emb is not None and emb.original_size == load_image(path).shape[:2]
    assert len(_entries(root)) == 4  # all passed their checks (a corrupt one would have been deleted)

    # and a second run encodes nothing
    again = encode_ray.encode_paths(paths, job, address=local_ray, batch_size=2)
    assert (again.encoded, again.cached, again.failed) == (0, 4, [])


def test_auto_ray_gives_the_proposals_of_segment_everything(local_ray, tmp_path, photos, mobilesam_checkpoint,
                                                            capsys):
    import sam_core

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photos["chelsea"][::2, ::2]).save(folder / "cat.png")
    Image.fromarray(photos["coffee"][::2, ::2]).save(folder / "cup.jpg", quality=92)
    root = tmp_path / "cache"
    argv = ["auto", str(folder), "--ray", local_ray, "--checkpoint", str(mobilesam_checkpoint),
            "--cache-dir", str(root), "--device", "cpu", "--points-per-side", "4", "-q"]
    assert cli.main(argv) == 0
    assert "2 images: 2 segmented" in capsys.readouterr().out

    # segment everything as the window runs it: the generator with the window's parameters on the image's
    # embedding from the cache (which auto filled), in the arithmetic of a 1-CPU actor
    params = P.GeneratorParams(points_per_side=4)
    model = sam_core.load_model("vit_t", checkpoint=mobilesam_checkpoint, device="cpu")
    generator = sam_core.AutomaticMaskGenerator(sam_core.Predictor(model), **params.generator_kwargs())
    cache = _cache(root, mobilesam_checkpoint)
    total = 0
    for name in ("cat.png", "cup.jpg"):
        image = load_image(folder / name)
        emb = cache.get(cache.key_for(image))
        assert emb is not None
        with _threads(1):
            expected = generator.generate(image, embedding=emb)
        size, stored = P.load_for_review(folder / "annotations.json", name, image_digest(image))
        assert size == image.shape[:2]
        assert stored == expected, name
        total += len(stored)
    assert total > 0

    assert cli.main(argv) == 0  # a second run does nothing again
    assert "2 images: 0 segmented (0 proposals), 2 already done, 0 failed" in capsys.readouterr().out


@pytest.mark.gui
def test_the_window_opens_a_folder_encoded_by_ray_with_every_image_ready_and_no_encode(
    local_ray, photo_folder, tmp_path, mobilesam_checkpoint, mobilesam_info, make_window, qtbot, capsys
):
    from annotator.session.rows import ImageState

    (photo_folder / "e_broken.png").unlink()
    (photo_folder / "d_chelsea_flipped.png").unlink()
    cache_root = tmp_path / "shared-cache"
    argv = ["encode", str(photo_folder), "--cache-dir", str(cache_root), "--ray", local_ray,
            "--checkpoint", str(mobilesam_checkpoint), "--device", "cpu", "-q"]
    assert cli.main(argv) == cmd_encode.EXIT_OK
    capsys.readouterr()

    w = make_window(None, mobilesam_info(cache_root))
    encodes = []
    w.session.encoder.encodeStarted.connect(encodes.append)
    assert w.open_folder(photo_folder)
    s = w.session
    n = s.image_count()
    assert n == 3
    # every row is marked ready from the digest record, before any image but the first is visited
    qtbot.waitUntil(lambda: all(s.image_row(i).state == ImageState.READY for i in range(n)), timeout=60_000)
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=60_000)
    for i in range(1, n):  # and visiting them reads the cache: no image is encoded
        s.go_to(i)
        qtbot.waitUntil(lambda: s.embedding is not None, timeout=60_000)
    assert encodes == []
