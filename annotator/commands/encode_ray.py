"""``sam-annotator encode IMAGE_DIR --ray [ADDRESS]``: the embedding cache filled by a Ray cluster.

The pipeline is :mod:`annotator.commands.cluster`'s (read on CPU tasks,
encode on an actor pool, each entry written whole into the shared cache);
this module drives it for ``encode``: the digest record, progress, the
summary and the exit codes of :mod:`annotator.commands.encode`. Entries are
exactly those the single-process ``encode`` writes (same keys, format and
values for the same arithmetic), so the window opens the folder with every
image ready.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from annotator.commands import cluster


def encode_paths(
    paths: Sequence[Path],
    job: cluster.Job,
    *,
    address: Optional[str] = None,
    batch_size: int = 1,
    pool: cluster.Pool = cluster.Pool(),
    progress: Optional[Callable[[int], None]] = None,
    on_error: Optional[Callable[[Path, str], None]] = None,
    worker_cls: type = cluster.Worker,
):
    """``sam-annotator encode --ray``: fill the cache for ``paths`` on a Ray cluster; returns an encode ``Summary``.

    ``address`` as for :func:`connected`; ``progress(n)`` and
    ``on_error(path, reason)`` as for :func:`annotator.commands.encode.encode_folder`.
    The content digest of every image read is recorded
    (:class:`annotator.data.digests.DigestIndex`) by the driver alone.
    """
    from annotator.commands.common import Summary
    from annotator.data.digests import DigestIndex

    summary = Summary(total=len(paths))
    start = time.perf_counter()
    digests = DigestIndex.beside(job.cache())
    known = digests.lookup(paths) if digests is not None else {}
    rows = [{"path": str(p), "known": known.get(Path(p), ""), "done": ""} for p in paths]
    seen: set = set()

    def fail(path: Path, reason: str) -> None:
        summary.failed.append((path, reason))
        if on_error is not None:
            on_error(path, reason)

    with cluster.connected(address) as ray:
        for row in cluster.run_ray(ray, job, rows, batch_size=batch_size, pool=pool, worker_cls=worker_cls):
            path = Path(row["path"])
            if row["path"] in seen:  # a batch run twice around a lost actor: count it once
                continue
            seen.add(row["path"])
            if digests is not None and row["digest"] and row["size"] >= 0 and row["digest"] != known.get(path):
                digests.record(path, (row["size"], row["mtime_ns"]), row["digest"])
            if row["status"] == cluster.FAILED:
                fail(path, row["reason"])
            elif row["status"] == cluster.CACHED:
                summary.cached += 1
            else:
                summary.encoded += 1
            if progress is not None:
                progress(1)
    for path in cluster.lost_rows(paths, seen):
        fail(Path(path), cluster.LOST_REASON)
    summary.seconds = time.perf_counter() - start
    return summary


def encode_main(args: Any, paths: Sequence[Path]) -> int:
    """``sam-annotator encode IMAGE_DIR --ray [ADDRESS]`` once the folder is listed: returns the exit code."""
    from annotator.commands import common as cmd

    for name in ("concurrency", "cpus_per_actor"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return cmd.EXIT_USAGE
    bar = None
    try:
        cluster.import_ray()
        job = cluster.resolve_job("encode", args)
        with cluster.connected(args.ray or None) as ray:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            batch_size = args.batch_size or (cmd.DEFAULT_GPU_BATCH if gpus else 1)
            if not args.quiet:
                where = f"{gpus} GPU(s)" if gpus else f"{int(ray.cluster_resources().get('CPU', 0))} CPU(s)"
                print(f"encoding {len(paths)} images with {args.model} on a Ray cluster of {where} "
                      f"(batch size {batch_size}) into {job.embeddings_dir}", file=sys.stderr)
                from tqdm import tqdm

                bar = tqdm(total=len(paths), desc="encode", unit="img", file=sys.stderr, dynamic_ncols=True)

            def report(path: Path, reason: str) -> None:
                (bar.write if bar is not None else print)(f"cannot encode {path}: {reason}", file=sys.stderr)

            summary = encode_paths(paths, job, address=args.ray or None, batch_size=batch_size,
                                   pool=cluster.Pool(args.concurrency, args.cpus_per_actor),
                                   progress=bar.update if bar is not None else None,
                                   on_error=report)
    except KeyboardInterrupt:
        print("\ninterrupted; the entries written so far are kept", file=sys.stderr)
        return cmd.EXIT_INTERRUPTED
    except cluster.RayMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return cmd.EXIT_FATAL
    except cluster.TooManyActors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return cmd.EXIT_USAGE
    except Exception as exc:  # weights, connection, a worker that cannot start
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return cmd.EXIT_FATAL
    finally:
        if bar is not None:
            bar.close()
    print(summary.line())
    if summary.failed:
        print(f"{len(summary.failed)} image(s) could not be encoded:", file=sys.stderr)
        for path, reason in summary.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return cmd.EXIT_PARTIAL
    return cmd.EXIT_OK
