"""The pipeline behind ``sam-annotator encode --ray`` and ``sam-annotator auto``: Ray Data, or one process.

::

    driver      list the images; look up their content digests in the digest record
       |        (rows: path, known digest, digest of the stored result if any)
    read        Ray tasks, 1 CPU each: file stamp, decode as the window does (EXIF applied),
       |        content digest and cache key; a result already there -> "cached" (no pixels
       |        shipped); otherwise the pixels -> "todo" (encode with the SAM 1 family: resized
       |        to the model input here, on the CPU; auto: at full size, as the generator needs
       |        them); an unreadable file -> "failed" with the reason
    work        an actor pool (``--concurrency`` actors of ``--cpus-per-actor`` CPUs, one GPU
       |        each when the cluster has GPUs), ``--batch-size`` rows per call; each actor
       |        loads the model once. encode: embeds the "todo" rows in one pass and writes each entry into the
       |        shared cache folder (temporary file + rename, see sam_core.cache);
       |        auto: the image's embedding from the cache (else encoded and stored), then
       |        the automatic mask generator -> proposals as JSON
    driver      progress, the digest record, the summary (auto: the proposals file)

The same two stage functions (:func:`read_batch` and :class:`Worker`) run in
one process for ``auto`` without ``--ray`` (:func:`run_local`), so there is
one pipeline and two executors. When the actors ask for exactly what a read
task asks (one CPU and no GPU: a CPU-only cluster with ``--cpus-per-actor
1``), Ray Data fuses the read stage into the actors; the results are the same.

Faults
------
Every entry is written whole or not at all (rename), and the summary comes
from the rows that reached the driver, so an interruption loses only work.
Ray Data restarts a lost actor and runs its batch again on the new one (an
entry written twice is replaced whole); a read task is retried likewise.
Rows that never come back are reported as failed. A second run finds the
entries written so far and skips them.

Cluster layout
--------------
Every node must see the cache folder (``--cache-dir``) and the weights at
the same path, and have ``sam-annotator[cluster]`` installed; the image
folder must be at the same path too (the rows carry file paths, not pixels,
up to the read tasks).

This module imports Ray only inside functions; it never imports Qt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from annotator.data.proposals import GeneratorParams

log = logging.getLogger(__name__)

#: What to tell a user whose Python has no Ray.
INSTALL_HINT = 'pip install "sam-annotator[cluster]"   (or: pip install "ray[data]>=2.10")'

#: Model input side; the SAM 1 family is resized to it on the read tasks.
LONG_SIDE = 1024
#: Most blocks the listing is cut into (one read task each).
MAX_BLOCKS = 2000

TODO, CACHED, FAILED = "todo", "cached", "failed"


class TooManyActors(ValueError):
    """``--concurrency`` asks for more actors than the cluster can run at once."""


class RayMissing(RuntimeError):
    """Ray (with Ray Data) is not installed; the message says what to install."""


def import_ray():
    """``ray`` with ``ray.data`` imported, or :class:`RayMissing` with the command that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissing(f"--ray needs Ray Data, which is not installed here ({exc}). Install it with:\n"
                         f"    {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(address: Optional[str]):
    """Ray, connected: to ``address`` (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``), else a new local one.

    A Ray already initialised in this process (a caller's, a test's) is used
    as it is and left running; one started here is shut down on leaving.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: Dict[str, Any] = {"logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    else:
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# -- what the workers need ----------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a stage needs, as plain values (pickled to every worker).

    ``kind`` is ``"encode"`` or ``"auto"``; ``checkpoint`` and
    ``embeddings_dir`` are paths every node can read (and write, for the
    cache); ``checkpoint_id`` is :func:`sam_core.cache.checkpoint_fingerprint`
    of the weights, computed once by the driver.
    """

    kind: str
    model_type: str
    checkpoint: str
    checkpoint_id: str
    embeddings_dir: str
    device: str = "auto"
    params: GeneratorParams = GeneratorParams()

    @property
    def shrink(self) -> bool:
        """Resize on the read tasks (encode with a SAM 1 model: its resize is exact to repeat, see Worker)."""
        from sam_core.build import MODEL_TYPES

        return self.kind == "encode" and self.model_type in MODEL_TYPES

    def cache(self):
        from sam_core.cache import EmbeddingCache

        return EmbeddingCache(self.embeddings_dir, model_type=self.model_type, checkpoint_id=self.checkpoint_id,
                              memory_bytes=0)


# -- batches: dicts of equal-length columns (what Ray Data hands a map_batches function) --


def to_columns(rows: Sequence[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    """Rows (dicts with the same keys) -> columns; every column is an object array (images may differ in shape)."""
    out = {}
    for name in rows[0]:
        col = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            col[i] = row[name]
        out[name] = col
    return out


def to_rows(batch: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    names = list(batch)
    n = len(batch[names[0]]) if names else 0
    for i in range(n):
        yield {name: _plain(batch[name][i]) for name in names}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


def read_batch(batch: Dict[str, np.ndarray], job: Job) -> Dict[str, np.ndarray]:
    """The read stage (CPU): see the module notes.

    In: ``path``, ``known`` (the digest record's digest of the file, or
    ``""``), ``done`` (auto: the digest whose proposals are stored, or ``""``).
    Out: ``path``, ``status``, ``reason``, ``digest``, ``key``, ``size`` and
    ``mtime_ns`` (the file's stamp when read), ``height``, ``width`` (the
    image's, EXIF applied) and ``image`` (``(h, w, 3)`` uint8, resized for
    :attr:`Job.shrink`; empty unless the status is ``"todo"``).
    """
    from annotator.data.digests import file_stamp
    from annotator.data.imageio import ImageLoadError, load_image
    from sam_core.cache import image_digest
    from sam_core.transforms import resize_longest_side

    cache = job.cache()
    rows = []
    for path, known, done in zip(batch["path"], batch["known"], batch["done"]):
        row = dict(path=str(path), status=FAILED, reason="", digest="", key="", size=-1, mtime_ns=-1,
                   height=0, width=0, image=_NO_IMAGE)
        rows.append(row)
        row["size"], row["mtime_ns"] = stamp = file_stamp(Path(path))
        if known and job.kind == "encode" and cache.get(cache.key_for_digest(str(known))) is not None:
            row.update(status=CACHED, digest=str(known), key=cache.key_for_digest(str(known)))
            continue
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            row["reason"] = exc.problem
            continue
        except (OSError, ValueError, MemoryError) as exc:  # load_image wraps these; belt and braces
            row["reason"] = f"{type(exc).__name__}: {exc}"
            continue
        if file_stamp(Path(path)) != stamp:  # changed while it was read: the digest would be recorded wrongly
            row.update(size=-1, mtime_ns=-1)
        digest = image_digest(image)
        key = cache.key_for_digest(digest)
        row.update(digest=digest, key=key, height=int(image.shape[0]), width=int(image.shape[1]))
        if job.kind == "encode" and cache.get(key) is not None:
            row["status"] = CACHED
        elif job.kind == "auto" and done and done == digest:
            row["status"] = CACHED
        else:
            row.update(status=TODO, image=resize_longest_side(image, LONG_SIDE) if job.shrink else image)
    return to_columns(rows)


class Worker:
    """The work stage: one model per instance (a Ray actor, or in this process); see the module notes.

    Called with the read stage's batches; returns them without ``image`` and
    with ``encoded`` (this call computed the embedding), ``records`` (auto:
    the generator's records as JSON, else ``""``) and ``seconds``.
    """

    def __init__(self, job: Job) -> None:
        from sam_core import Predictor, load_model

        self.job = job
        self.predictor = Predictor(load_model(job.model_type, checkpoint=job.checkpoint, device=job.device))
        self.cache = job.cache()
        if job.shrink:
            from sam_core.modeling.sam import Sam

            model = self.predictor.model
            if not isinstance(model, Sam) or getattr(model, "image_size", None) != LONG_SIDE:
                raise ValueError(f"{job.model_type} is not a SAM 1 model with a {LONG_SIDE}-pixel input")
        self.generator = None
        if job.kind == "auto":
            from sam_core import AutomaticMaskGenerator

            self.generator = AutomaticMaskGenerator(self.predictor, **job.params.generator_kwargs())

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        rows = list(to_rows(batch))
        for row in rows:
            row.update(encoded=False, records="", seconds=0.0)
        todo = [row for row in rows if row["status"] == TODO]
        if todo:
            (self._encode if self.job.kind == "encode" else self._propose)(todo)
        for row in rows:
            del row["image"]
        return to_columns(rows)

    def _embed(self, images: List[np.ndarray]) -> List[Any]:
        """Embeddings (or the exception) per image: one batched pass; one by one if that fails."""
        try:
            return list(self.predictor.encode_batch(images))
        except (RuntimeError, ValueError) as exc:  # e.g. out of GPU memory: retry alone
            if len(images) == 1:
                return [exc]
        out: List[Any] = []
        for image in images:
            try:
                out.append(self.predictor.encode(image))
            except (RuntimeError, ValueError) as exc:
                out.append(exc)
        return out

    def _encode(self, rows: List[Dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        embeddings = self._embed([np.asarray(row["image"]) for row in rows])
        for row, emb in zip(rows, embeddings):
            if isinstance(emb, Exception):
                row.update(status=FAILED, reason=f"encoder failed: {emb}")
                continue
            if self.job.shrink:  # encoded from the resized pixels: same input tensor, the true size
                emb = dataclasses.replace(emb, original_size=(int(row["height"]), int(row["width"])))
            if self.cache.put(row["key"], emb):
                row["encoded"] = True
            else:
                row.update(status=FAILED, reason=f"could not write the cache entry {self.cache.path_for(row['key'])}")
        for row in rows:
            row["seconds"] = (time.perf_counter() - t0) / len(rows)

    def _propose(self, rows: List[Dict[str, Any]]) -> None:
        """The window's segment everything: the cached (float16) embedding, else encode, round, store; generate."""
        for row in rows:
            t0 = time.perf_counter()
            image = np.asarray(row["image"])
            try:
                had = self.cache.get(row["key"], device=self.predictor.device)
                emb = had if had is not None else self.cache.get_or_compute(image, self.predictor, key=row["key"])
                records = self.generator.generate(image, embedding=emb)
            except (RuntimeError, ValueError) as exc:
                row.update(status=FAILED, reason=f"segment everything failed: {exc}")
                continue
            row.update(encoded=had is None, records=json.dumps(records, separators=(",", ":")),
                       seconds=time.perf_counter() - t0)


# -- executors -------------------------------------------------------------------


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


def run_local(job: Job, rows: Sequence[Dict[str, Any]], *, batch_size: int = 1,
              worker_cls: Callable[[Job], Any] = Worker) -> Iterator[Dict[str, Any]]:
    """The pipeline in this process: read and work ``batch_size`` rows at a time; yields the output rows."""
    if not rows:
        return
    worker = worker_cls(job)
    for chunk in _chunks(list(rows), batch_size):
        yield from to_rows(worker(read_batch(to_columns(chunk), job)))


@dataclass(frozen=True)
class Pool:
    """The actor pool: ``concurrency`` actors (``None``: see :meth:`size`), each reserving ``cpus_per_actor`` CPUs.

    On a CPU-only cluster an actor's CPUs are its torch threads (Ray sets
    ``OMP_NUM_THREADS`` to them); with GPUs each actor also takes one GPU.
    """

    concurrency: Optional[int] = None
    cpus_per_actor: int = 1

    def size(self, ray) -> Tuple[int, int]:
        """``(actors, GPUs per actor)`` on this cluster: one actor per GPU; without GPUs, half of what fits
        beside one CPU kept for reading.

        Raises :class:`TooManyActors` when the actors asked for cannot all run at once.
        """
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if gpus:
            if self.concurrency is not None and self.concurrency > gpus:
                raise TooManyActors(f"--concurrency {self.concurrency}: the cluster has {gpus} GPU(s), one per actor")
            return self.concurrency or gpus, 1
        most = max(0, cpus - 1) // self.cpus_per_actor
        if most < 1 or (self.concurrency is not None and self.concurrency > most):
            raise TooManyActors(
                f"{self.concurrency or 1} actor(s) of {self.cpus_per_actor} CPU(s) do not fit on this cluster of "
                f"{cpus} CPU(s) and no GPU, beside one CPU kept for reading images (at most {most}): lower "
                "--concurrency or --cpus-per-actor")
        return self.concurrency or max(1, most // 2), 0


@contextlib.contextmanager
def _quiet_ray_data(ray):
    """Ray Data without its own progress bars (ours is on the driver) and without per-operator logging."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ctx.enable_progress_bars = saved
        data_log.setLevel(level)


def run_ray(ray, job: Job, rows: Sequence[Dict[str, Any]], *, batch_size: int = 1, pool: Pool = Pool(),
            worker_cls: type = Worker) -> Iterator[Dict[str, Any]]:
    """The pipeline on the connected Ray cluster; yields output rows as they finish (in any order).

    Restarts and retries are Ray Data's defaults for an actor pool: a lost
    actor is restarted without limit and its batch run again on the new one
    (``max_restarts=-1``, ``max_task_retries=-1``; Ray 2.60 deprecates
    setting them per call). When the actors ask for what a read task asks
    (one CPU, no GPU), Ray Data fuses the read stage into them.
    """
    if not rows:
        return
    actors, gpus = pool.size(ray)
    with _quiet_ray_data(ray):
        ds = ray.data.from_items(list(rows), override_num_blocks=min(len(rows), MAX_BLOCKS))
        ds = ds.map_batches(read_batch, fn_kwargs={"job": job}, batch_size=1, batch_format="numpy", num_cpus=1)
        ds = ds.map_batches(
            worker_cls, fn_constructor_kwargs={"job": job}, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=pool.cpus_per_actor, num_gpus=gpus,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield from to_rows(batch)


def lost_rows(paths: Iterable[Path], seen: set) -> List[Path]:
    """Paths whose row never reached the driver (its batch failed every retry)."""
    return [p for p in paths if str(p) not in seen]


LOST_REASON = "its result never came back from the cluster (see the Ray logs)"


def resolve_job(kind: str, args: Any, params: GeneratorParams = GeneratorParams()) -> Job:
    """The :class:`Job` of parsed ``encode``/``auto`` arguments: weights resolved (downloaded if needed) here."""
    from annotator.commands.common import resolve_checkpoint
    from sam_core.cache import checkpoint_fingerprint
    from sam_core.checkpoints import cache_dir

    checkpoint = resolve_checkpoint(args.model, args.checkpoint, args.cache_dir, args.quiet).resolve()
    return Job(kind=kind, model_type=args.model, checkpoint=str(checkpoint),
               checkpoint_id=checkpoint_fingerprint(checkpoint),
               embeddings_dir=str((cache_dir(args.cache_dir) / "embeddings").resolve()),
               device=args.device, params=params)
