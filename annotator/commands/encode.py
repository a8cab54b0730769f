"""``sam-annotator encode``: pre-encode a folder of images into the embedding cache.

::

    sam-annotator encode IMAGE_DIR [--model vit_t] [--checkpoint PATH] [--device auto]
                                   [--batch-size N] [--cache-dir DIR] [--recursive] [--quiet]

Every image of ``IMAGE_DIR`` (natural order, see :func:`annotator.data.imageio.list_images`)
is loaded as the window loads it (EXIF orientation applied), so the content
hash and therefore the cache key are the ones the window computes; images
whose entry is already there (and passes its checks) are skipped. Opening the
folder in the window afterwards needs no encoder run at all, as long as the
window uses the same model, weights and cache folder.

Folders
-------
``--cache-dir`` is the cache *root*, as for ``sam-annotator models``:
embeddings go to ``<root>/embeddings`` and the weights are looked up (and
downloaded if needed) in ``<root>/checkpoints``. The default root is
``$SAM_ANNOTATOR_CACHE``, else the user cache folder. ``--checkpoint`` uses a
weights file of your own instead.

Batching
--------
On a CUDA device, images are loaded and hashed by background threads while
the GPU works, and ``--batch-size`` images (default 8 on CUDA, 1 on CPU) go
through the encoder in one forward pass (``Predictor.encode_batch``). A batch
that fails (out of GPU memory, say) is retried image by image. On a CPU a
batch only costs memory, hence the default of 1 there; a larger one is
lowered to what half the available memory holds (:func:`cpu_batch_bound`,
with a note on stderr). ``--batch-size`` above :data:`MAX_BATCH` is a usage
error on any device.

Checks
------
The model is refused (exit 1) when its weights or a test encode hold
non-finite values (:func:`sam_core.cache.check_model`: damaged or all-NaN
weights load without complaint otherwise; the test encode runs once per
checkpoint, recorded beside the embeddings as the window does), and no
non-finite embedding is ever written.
An image whose decoding would take more than half the available memory is
reported as failed instead of being decoded (its size is read from the header).

On a cluster
------------
``--ray [ADDRESS]`` runs the same work as a Ray Data pipeline on many
machines (``pip install "sam-annotator[cluster]"``), writing the same
entries: see :mod:`annotator.commands.encode_ray` and
:mod:`annotator.commands.cluster`.

Exit codes
----------
0
    every image is in the cache now (encoded by this run or before);
1
    nothing could be done: the weights could not be found, downloaded or loaded;
2
    usage error: bad option, a folder that cannot be listed or holds no images;
3
    some images could not be loaded or encoded (each is reported on stderr with
    the reason); all the others are in the cache;
130
    interrupted (entries written so far are complete and kept).

A partly broken folder is thus told apart from full success (3, not 0) while
the work done is kept, and from a setup problem (1).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from annotator.commands.common import (  # noqa: F401  (the exit codes and Summary are this command's API too)
    DEFAULT_GPU_BATCH,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Summary,
)
from annotator.commands.common import model_choices as _model_choices
from annotator.commands.common import path_problem
from annotator.commands.common import resolve_checkpoint as _resolve_checkpoint
from annotator.data.files import path_arg

#: Largest ``--batch-size`` accepted on any device.
MAX_BATCH = 1024
#: Memory each image adds to a CPU encoder batch, by model type, with a 2x margin: measured 191 MB (vit_t)
#: and 203 MB (vit_b) per image (peak of a batch of 4 against 1; docs/benchmarks.md), scaled by the
#: encoder's width for vit_l and vit_h. Other types get the largest figure.
CPU_BYTES_PER_IMAGE = {"vit_t": 384 * 2**20, "vit_b": 512 * 2**20, "vit_l": 768 * 2**20, "vit_h": 1024 * 2**20}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-annotator encode",
        description="Fill the embedding cache for every image in a folder, so that annotating it never waits "
        "for the image encoder.",
        epilog="Exit codes: 0 every image is cached; 1 the weights could not be loaded; 2 usage error or no "
        "images; 3 some images failed (listed), the others are cached; 130 interrupted.",
    )
    parser.add_argument("image_dir", type=path_arg, metavar="IMAGE_DIR", help="folder of images")
    parser.add_argument("--model", default="vit_t", choices=_model_choices(), help="model type (default: vit_t)")
    parser.add_argument("--checkpoint", type=path_arg, default=None,
                        help="weights file (default: the model's verified file in <cache root>/checkpoints, "
                        "downloaded if missing)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ... (default: auto)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help=f"images per encoder call (default: {DEFAULT_GPU_BATCH} on CUDA, 1 otherwise)")
    parser.add_argument("--cache-dir", type=path_arg, default=None, metavar="DIR",
                        help="cache root (default: $SAM_ANNOTATOR_CACHE, else the user cache folder); "
                        "embeddings go to DIR/embeddings")
    parser.add_argument("-r", "--recursive", action="store_true", help="also encode images in sub-folders")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (needs sam-annotator[cluster]): join the one at ADDRESS "
                        "(HOST:PORT, ray://HOST:10001, auto), or start Ray on this machine without one; put it "
                        "after IMAGE_DIR. Every node must see IMAGE_DIR, the weights and --cache-dir at the same paths")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="with --ray: encoder actors (default: one per GPU; without GPUs, half the CPUs)")
    parser.add_argument("--cpus-per-actor", type=int, default=1, metavar="N",
                        help="with --ray: CPUs each actor reserves (its threads without a GPU; default: 1)")
    return parser


def check_args(args: argparse.Namespace) -> Optional[str]:
    """The usage error in ``args`` (our own sentence), or ``None``."""
    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH:
        return f"--batch-size must be between 1 and {MAX_BATCH}, got {args.batch_size}"
    return path_problem(args)


def cpu_batch_bound(model_type: str, available: Optional[int] = None) -> int:
    """Largest CPU batch that fits in half of ``available`` bytes (default: the memory available now)."""
    from annotator.data.memory import FALLBACK_TOTAL, available_memory

    if available is None:
        available = available_memory() or FALLBACK_TOTAL // 2
    per_image = CPU_BYTES_PER_IMAGE.get(model_type, max(CPU_BYTES_PER_IMAGE.values()))
    return max(1, min(MAX_BATCH, int(available // 2 // per_image)))


# -- seams (replaced in tests) ------------------------------------------------


def _load_predictor(model_type: str, checkpoint: Path, device: str, memo: Optional[Path] = None) -> Any:
    """A :class:`sam_core.Predictor` on ``device`` (``"auto"`` picks CUDA when there is one), checked to give finite
    output (:func:`sam_core.cache.check_model`: the test encode once per checkpoint with ``memo``)."""
    from sam_core import Predictor, load_model
    from sam_core.cache import check_model

    predictor = Predictor(load_model(model_type, checkpoint=checkpoint, device=device))
    check_model(predictor, checkpoint, memo)
    return predictor


# -- the work -----------------------------------------------------------------


def _device_of(predictor: Any) -> str:
    """``"cuda"``, ``"cpu"``, ``"mps"``: the type of ``predictor.device``."""
    return str(getattr(predictor, "device", "cpu")).split(":")[0]


def _load_and_key(
    path: Path, cache: Any, digests: Any = None
) -> Tuple[Optional[np.ndarray], Optional[str], Optional[str]]:
    """(image, key, None) or (None, key, None) when already cached, or (None, None, reason) on failure.

    The image's content digest goes to ``digests`` (:class:`annotator.data.digests.DigestIndex`), so that the
    window can show the image as encoded without reading it.
    """
    from annotator.data.digests import file_stamp
    from annotator.data.imageio import ImageLoadError, load_image
    from annotator.data.memory import available_memory
    from sam_core.cache import image_digest

    stamp = file_stamp(path)
    try:
        available = available_memory()
        image = load_image(path, max_bytes=available // 2 if available else None)
    except ImageLoadError as exc:
        return None, None, exc.problem
    except OSError as exc:  # pragma: no cover - load_image wraps these; belt and braces
        return None, None, str(exc)
    digest = image_digest(image)
    key = cache.key_for_digest(digest)
    if digests is not None and file_stamp(path) == stamp:
        digests.record(path, stamp, digest)
    if cache.get(key) is not None:  # validated, unlike contains(): a corrupt entry is redone
        return None, key, None
    return image, key, None


def _prefetched(
    items: Sequence[Path], fn: Callable[[Path], Any], workers: int, ahead: int
) -> Iterator[Tuple[Path, Any]]:
    """``(item, fn(item))`` in order, with up to ``ahead`` items computed in background threads."""
    if workers <= 0:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="sam-encode-load") as pool:
        pending: "deque[Tuple[Path, Future]]" = deque()
        it = iter(items)
        try:
            for item in it:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= ahead:
                    p, fut = pending.popleft()
                    yield p, fut.result()
            while pending:
                p, fut = pending.popleft()
                yield p, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def _encode_many(predictor: Any, images: List[np.ndarray]) -> list:
    """Embeddings of ``images``, one batched call when the engine has one."""
    batch = getattr(predictor, "encode_batch", None)
    if batch is not None and len(images) > 1:
        return list(batch(images))
    return [predictor.encode(image) for image in images]


def encode_folder(
    paths: Sequence[Path],
    predictor: Any,
    cache: Any,
    *,
    batch_size: int = 1,
    progress: Optional[Callable[[int], None]] = None,
    on_error: Optional[Callable[[Path, str], None]] = None,
    background_loading: bool = False,
) -> Summary:
    """Encode every image in ``paths`` that ``cache`` does not hold yet.

    Parameters
    ----------
    paths:
        Image files, in the order to process them.
    predictor:
        Has ``encode(image) -> ImageEmbedding`` (and optionally
        ``encode_batch(images) -> list``).
    cache:
        An :class:`sam_core.cache.EmbeddingCache` with a disk tier.
    batch_size:
        Images per encoder call.
    progress:
        Called with the number of images finished (cached, encoded or failed)
        since the last call.
    on_error:
        Called as ``on_error(path, reason)`` for each image that failed.
    background_loading:
        Load and hash images in two background threads while encoding.
    """
    summary = Summary(total=len(paths))
    start = time.perf_counter()
    batch: List[Tuple[Path, np.ndarray, str]] = []

    def fail(path: Path, reason: str) -> None:
        summary.failed.append((path, reason))
        if on_error is not None:
            on_error(path, reason)

    def flush() -> None:
        if not batch:
            return
        try:
            embeddings = _encode_many(predictor, [img for _, img, _ in batch])
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory: retry one by one
            if len(batch) == 1:
                fail(batch[0][0], f"encoder failed: {exc}")
                embeddings = []
            else:
                embeddings = []
                for path, img, key in batch:
                    try:
                        embeddings.append(predictor.encode(img))
                    except (RuntimeError, ValueError) as exc1:
                        embeddings.append(None)
                        fail(path, f"encoder failed: {exc1}")
        for (path, _, key), emb in zip(batch, embeddings):
            if emb is None:
                continue
            try:
                stored = cache.put(key, emb)
            except ValueError as exc:  # NonFiniteEmbeddingError: never written
                fail(path, f"encoder failed: {exc}")
                continue
            if stored:
                summary.encoded += 1
            else:
                fail(path, f"could not write the cache entry {cache.path_for(key)}")
        if progress is not None:
            progress(len(batch))
        batch.clear()

    from annotator.data.digests import DigestIndex

    digests = DigestIndex.beside(cache)
    loaded = _prefetched(paths, lambda p: _load_and_key(p, cache, digests), 2 if background_loading else 0,
                         ahead=max(2, 2 * batch_size))
    for path, (image, key, problem) in loaded:
        if problem is not None:
            fail(path, problem)
        elif image is None:
            summary.cached += 1
        else:
            batch.append((path, image, key))
            if len(batch) >= batch_size:
                flush()
            continue
        if progress is not None:
            progress(1)
    flush()
    summary.seconds = time.perf_counter() - start
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``sam-annotator encode ...`` with ``argv`` (the words after ``encode``); return the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    problem = check_args(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE

    from annotator.data.imageio import list_images

    try:
        paths = list_images(args.image_dir, recursive=args.recursive)
    except OSError as exc:
        print(f"error: cannot list {args.image_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if not paths:
        print(f"error: no images in {args.image_dir}", file=sys.stderr)
        return EXIT_USAGE

    if args.ray is not None:  # the Ray Data pipeline: annotator/commands/encode_ray.py
        from annotator.commands.encode_ray import encode_main

        return encode_main(args, paths)

    from sam_core.cache import (
        CHECKED_MODELS_DIR,
        EmbeddingCache,
        checkpoint_fingerprint,
    )
    from sam_core.checkpoints import cache_dir

    try:
        checkpoint = _resolve_checkpoint(args.model, args.checkpoint, args.cache_dir, args.quiet)
        checkpoint_id = checkpoint_fingerprint(checkpoint)
        memo = cache_dir(args.cache_dir) / "embeddings" / CHECKED_MODELS_DIR  # the window's record too
        predictor = _load_predictor(args.model, checkpoint, args.device, memo=memo)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # download failure, bad weights file, unknown device...
        print(f"error: cannot load the {args.model} model: {exc}", file=sys.stderr)
        return EXIT_FATAL

    device = _device_of(predictor)
    batch_size = args.batch_size or (DEFAULT_GPU_BATCH if device == "cuda" else 1)
    bound = cpu_batch_bound(args.model) if device == "cpu" else batch_size
    if batch_size > bound:
        batch_size = bound
        print(f"note: --batch-size lowered to {batch_size}, what half the available memory holds on the CPU",
              file=sys.stderr)
    embeddings_dir = cache_dir(args.cache_dir) / "embeddings"
    cache = EmbeddingCache(embeddings_dir, model_type=args.model, checkpoint_id=checkpoint_id, memory_bytes=0)
    batched = "batched" if batch_size > 1 and hasattr(predictor, "encode_batch") else "one at a time"
    if not args.quiet:
        print(f"encoding {len(paths)} images with {args.model} on {device} ({batched}, batch size {batch_size}) "
              f"into {embeddings_dir}", file=sys.stderr)

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="encode", unit="img", file=sys.stderr, dynamic_ncols=True)

    def report(path: Path, reason: str) -> None:
        message = f"cannot encode {path}: {reason}"
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    try:
        summary = encode_folder(paths, predictor, cache, batch_size=batch_size,
                                progress=bar.update if bar is not None else None, on_error=report,
                                background_loading=device != "cpu")
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("\ninterrupted; the entries written so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    if bar is not None:
        bar.close()
    print(summary.line())
    if summary.failed:
        print(f"{len(summary.failed)} image(s) could not be encoded:", file=sys.stderr)
        for path, reason in summary.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
