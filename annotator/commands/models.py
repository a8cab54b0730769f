"""``sam-annotator models``: list, download and verify model weights.

::

    sam-annotator models list [--cache-dir DIR]
    sam-annotator models download MODEL [--cache-dir DIR] [--quiet]
    sam-annotator models verify [MODEL ...] [--cache-dir DIR]

The cache folder is ``--cache-dir`` if given, else ``$SAM_ANNOTATOR_CACHE``,
else the user cache folder (see :mod:`sam_core.checkpoints`). Exit codes: 0 on
success, 1 when a download or a verification fails, 2 on a usage error, 130
when interrupted. This module imports neither Qt nor torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

from annotator.commands.common import ByteBar, format_size
from annotator.data.files import path_arg
from sam_core import checkpoints as ck


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    cache = args.cache_dir
    rows: List[List[str]] = [["model", "present", "size", "path"]]
    for row in ck.list_models(cache):
        present = {"verified": "yes", "present": "yes (not yet verified)", "wrong size": "no (wrong size)",
                   "partial": "no (partial download)", "missing": "no"}[row.status]
        size = format_size(row.size) if row.present else f"{format_size(row.expected_size)} to download"
        rows.append([row.model_type, present, size, str(row.path)])
    print(f"cache folder: {ck.cache_dir(cache)}")
    print(_table(rows))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    spec = ck.CHECKPOINTS[args.model]
    target = ck.checkpoint_path(spec, args.cache_dir)
    bar = ByteBar(spec.file_name, args.quiet)
    try:
        path = ck.ensure_checkpoint(spec, cache=args.cache_dir, progress=bar)
    except ck.CheckpointDownloadError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ck.DownloadCancelled):
        bar.close()
        print(f"\ncancelled; the partial download {target.name}.part is kept in {target.parent} "
              "and resumes next time", file=sys.stderr)
        return 130
    bar.close()
    print(f"{args.model}: {path} (SHA-256 verified)")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    unknown = [m for m in args.models if m not in ck.CHECKPOINTS]
    if unknown:
        print(f"error: unknown model {', '.join(unknown)}; known: {', '.join(ck.CHECKPOINTS)}", file=sys.stderr)
        return 2
    failed = 0
    for model in args.models or [row.model_type for row in ck.list_models(args.cache_dir) if row.present]:
        path = ck.checkpoint_path(model, args.cache_dir)
        if not path.exists():
            print(f"{model}: missing ({path})")
            failed += 1
            continue
        reason = ck.verify_checkpoint(path, model, force=True)
        print(f"{model}: {'ok' if reason is None else 'BAD: ' + reason} ({path})")
        failed += reason is not None
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-annotator models", description="List, download and verify SAM weights.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", type=path_arg, default=None,
                        help=f"cache folder (default: ${ck.ENV_CACHE}, else the user cache folder); "
                             "checkpoints go to <cache>/checkpoints")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,download,verify}")
    p = sub.add_parser("list", parents=[common], help="every known model: present?, size, path")
    p.set_defaults(func=_cmd_list, parser=p)
    p = sub.add_parser("download", parents=[common], help="download and verify one model")
    p.add_argument("model", choices=list(ck.CHECKPOINTS), metavar="MODEL",
                   help="one of: " + ", ".join(ck.CHECKPOINTS))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download, parser=p)
    p = sub.add_parser("verify", parents=[common], help="re-hash present models against the registry")
    p.add_argument("models", nargs="*", metavar="MODEL", help="models to check (default: every present one)")
    p.set_defaults(func=_cmd_verify, parser=p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``sam-annotator models ...`` with ``argv`` (the words after ``models``); return the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # e.g. "source 1 failed, trying the next"
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if extra:  # said by the subcommand, with its own usage line (not the parent's)
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except OSError as exc:  # an unusable cache folder (a file in its place, permission denied...)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use the cache folder{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
