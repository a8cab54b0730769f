"""``sam-annotator auto``: segment everything over a folder, into a proposals file for review in the window.

::

    sam-annotator auto IMAGE_DIR [--output FILE] [--ray [ADDRESS]] [--model vit_t] [--checkpoint PATH]
                                 [--device auto] [--cache-dir DIR] [--batch-size N] [--concurrency N]
                                 [--cpus-per-actor N]
                                 [--points-per-side N] [--pred-iou-thresh 0.88] ... [--recursive] [--quiet]

Every image of ``IMAGE_DIR`` gets what the window's Segment Everything
would propose for it (same generator, same parameters, on the same float16
embedding from the cache; an image not yet encoded is encoded and its entry
stored, so the window then opens it at once). The proposals go to
:func:`annotator.data.proposals.proposals_path` of the working file
(``--output``, default ``IMAGE_DIR/annotations.json``): the window offers
them for review without computing them again. Images whose proposals are
already there for the same content, model, weights and parameters are
skipped, so an interrupted run resumes where it stopped.

Without ``--ray`` the work runs in this process; with it, on Ray (see
:mod:`annotator.commands.cluster`): the proposals are written by this
process alone, from the records the cluster's actors send back.

Exit codes are those of ``sam-annotator encode``: 0 every image has its
proposals; 1 the weights could not be loaded or Ray is missing; 2 usage
error or no images; 3 some images failed (listed), the others are done;
130 interrupted (proposals finished so far are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

from annotator.commands import cluster
from annotator.commands.common import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from annotator.commands.common import model_choices as _model_choices
from annotator.commands.common import path_problem
from annotator.data.files import path_arg
from annotator.data.proposals import GeneratorParams, ProposalsError, ProposalStore, StoredProposals, signature

#: Stored rows are committed in groups of this many (or every :data:`COMMIT_SECONDS`).
COMMIT_ROWS = 16
COMMIT_SECONDS = 5.0


@dataclass
class AutoSummary:
    """What a run did."""

    total: int = 0
    segmented: int = 0
    proposals: int = 0
    already: int = 0
    encoded: int = 0
    failed: List[Tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        text = (f"{self.total} images: {self.segmented} segmented ({self.proposals} proposals), "
                f"{self.already} already done, {len(self.failed)} failed")
        if self.segmented:
            per_image = self.seconds / self.segmented
            text += f"; {self.encoded} encoded first ({self.seconds:.1f} s, {per_image:.2f} s per image)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam-annotator auto",
        description="Segment everything on every image of a folder and store the proposals beside the working "
        "file, for review in the window.",
        epilog="Exit codes: 0 every image has its proposals; 1 the weights could not be loaded or Ray is missing; "
        "2 usage error or no images; 3 some images failed (listed); 130 interrupted.",
    )
    parser.add_argument("image_dir", type=path_arg, metavar="IMAGE_DIR", help="folder of images")
    parser.add_argument("--output", type=path_arg, default=None, metavar="FILE",
                        help="the working file the window opens (default: IMAGE_DIR/annotations.json); the "
                        "proposals go beside it, FILE stem + .proposals.sqlite3")
    parser.add_argument("--model", default="vit_t", choices=_model_choices(), help="model type (default: vit_t)")
    parser.add_argument("--checkpoint", type=path_arg, default=None,
                        help="weights file (default: the model's verified file in <cache root>/checkpoints)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--cache-dir", type=path_arg, default=None, metavar="DIR",
                        help="cache root (embeddings are read from and written to DIR/embeddings)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per actor call (default: 1)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (needs sam-annotator[cluster]): join the one at ADDRESS, or start "
                        "Ray on this machine without one; put it after IMAGE_DIR")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="with --ray: actors (default: one per GPU; without GPUs, half the CPUs)")
    parser.add_argument("--cpus-per-actor", type=int, default=1, metavar="N",
                        help="with --ray: CPUs each actor reserves (its threads without a GPU; default: 1)")
    parser.add_argument("--points-per-side", type=int, default=None, metavar="N",
                        help="prompt the official generator's full N x N grid (default, the window's: the fast "
                             "mode, prompts chosen where no mask covers the image yet)")
    for f in fields(GeneratorParams):
        if f.name == "points_per_side":
            continue
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                            metavar="N" if isinstance(f.default, int) else "X",
                            help=f"generator parameter (default, the window's: {f.default})")
    parser.add_argument("-r", "--recursive", action="store_true", help="also images in sub-folders")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def auto_folder(
    paths: Sequence[Path],
    job: cluster.Job,
    working_file: Path,
    *,
    ray: Any = None,
    batch_size: int = 1,
    pool: cluster.Pool = cluster.Pool(),
    progress: Optional[Callable[[int], None]] = None,
    on_error: Optional[Callable[[Path, str], None]] = None,
    worker_cls: type = cluster.Worker,
) -> AutoSummary:
    """Propose masks for every image of ``paths`` not done yet; rows go to the proposals file of ``working_file``.

    ``ray``: a connected Ray (:func:`annotator.commands.cluster.connected`) to
    run there, ``None`` to run in this process.
    """
    from annotator.data.digests import DigestIndex
    from annotator.data.document import Dataset

    summary = AutoSummary(total=len(paths))
    start = time.perf_counter()
    store = ProposalStore.beside(working_file, create=True)
    sig = signature(job.model_type, job.checkpoint_id, job.params)
    stored = {name: digest for name, (digest, s) in store.digests().items() if s == sig}
    names = Dataset(working_file)  # only for relative_name: nothing is read
    digests = DigestIndex.beside(job.cache())
    known = digests.lookup(paths) if digests is not None else {}
    rows = []
    for p in paths:
        done = stored.get(names.relative_name(p), "")
        if done and known.get(Path(p)) == done:  # same content as when proposed: not even read
            summary.already += 1
            if progress is not None:
                progress(1)
        else:
            rows.append({"path": str(p), "known": known.get(Path(p), ""), "done": done})

    pending: List[StoredProposals] = []
    last_commit = time.monotonic()
    seen: set = set()

    def commit() -> None:
        nonlocal last_commit
        store.put_many(pending)
        pending.clear()
        last_commit = time.monotonic()

    def fail(path: Path, reason: str) -> None:
        summary.failed.append((path, reason))
        if on_error is not None:
            on_error(path, reason)

    if ray is not None:
        results = cluster.run_ray(ray, job, rows, batch_size=batch_size, pool=pool, worker_cls=worker_cls)
    else:
        results = cluster.run_local(job, rows, batch_size=batch_size, worker_cls=worker_cls)
    try:
        for row in results:
            path = Path(row["path"])
            if row["path"] in seen:
                continue
            seen.add(row["path"])
            if digests is not None and row["digest"] and row["size"] >= 0 and row["digest"] != known.get(path):
                digests.record(path, (row["size"], row["mtime_ns"]), row["digest"])
            if row["status"] == cluster.FAILED:
                fail(path, row["reason"])
            elif row["status"] == cluster.CACHED:
                summary.already += 1
            else:
                records = json.loads(row["records"])
                pending.append(StoredProposals(
                    file_name=names.relative_name(path), digest=row["digest"], size=(row["height"], row["width"]),
                    model_type=job.model_type, checkpoint_id=job.checkpoint_id, params=job.params,
                    seconds=float(row["seconds"]), created=time.time(), records=tuple(records),
                ))
                summary.segmented += 1
                summary.proposals += len(records)
                summary.encoded += bool(row["encoded"])
                if len(pending) >= COMMIT_ROWS or time.monotonic() - last_commit > COMMIT_SECONDS:
                    commit()
            if progress is not None:
                progress(1)
    finally:  # also on an interruption: what is finished is kept
        commit()
    for path in cluster.lost_rows([Path(r["path"]) for r in rows], seen):
        fail(path, cluster.LOST_REASON)
    summary.seconds = time.perf_counter() - start
    return summary


def _mode(params: GeneratorParams) -> str:
    return "fast mode" if params.points_per_side is None else f"full grid, {params.points_per_side} points per side"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``sam-annotator auto ...`` with ``argv`` (the words after ``auto``); return the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    for name in ("batch_size", "concurrency", "cpus_per_actor", "points_per_side", "points_per_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return EXIT_USAGE
    problem = path_problem(args)
    if problem is None and args.output is not None and args.output.is_dir():
        problem = f"--output {args.output} is a folder; give the working file (e.g. {args.output / 'annotations.json'})"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    params = GeneratorParams(**{f.name: getattr(args, f.name) for f in fields(GeneratorParams)})

    from annotator.data.document import ANNOTATIONS_FILENAME
    from annotator.data.imageio import list_images

    try:
        paths = list_images(args.image_dir, recursive=args.recursive)
    except OSError as exc:
        print(f"error: cannot list {args.image_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if not paths:
        print(f"error: no images in {args.image_dir}", file=sys.stderr)
        return EXIT_USAGE
    working_file = args.output if args.output is not None else args.image_dir / ANNOTATIONS_FILENAME

    bar = None
    try:
        if args.ray is not None:
            cluster.import_ray()
        job = cluster.resolve_job("auto", args, params)
        with (cluster.connected(args.ray or None) if args.ray is not None else contextlib.nullcontext()) as ray:
            if not args.quiet:
                where = "a Ray cluster" if ray is not None else "this process"
                print(f"segmenting everything on {len(paths)} images with {args.model} in {where} "
                      f"({_mode(params)}) into {working_file.name} + proposals",
                      file=sys.stderr)
                from tqdm import tqdm

                bar = tqdm(total=len(paths), desc="auto", unit="img", file=sys.stderr, dynamic_ncols=True)

            def report(path: Path, reason: str) -> None:
                (bar.write if bar is not None else print)(f"cannot segment {path}: {reason}", file=sys.stderr)

            summary = auto_folder(paths, job, working_file, ray=ray, batch_size=args.batch_size,
                                  pool=cluster.Pool(args.concurrency, args.cpus_per_actor),
                                  progress=bar.update if bar is not None else None,
                                  on_error=report)
    except KeyboardInterrupt:
        print("\ninterrupted; the proposals finished so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (cluster.RayMissing, ProposalsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except cluster.TooManyActors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # weights, connection, a worker that cannot start
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FATAL
    finally:
        if bar is not None:
            bar.close()
    print(summary.line())
    if summary.failed:
        print(f"{len(summary.failed)} image(s) could not be segmented:", file=sys.stderr)
        for path, reason in summary.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
