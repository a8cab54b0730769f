"""Logging: a rotating log file in the user log folder, and uncaught exceptions.

Qt-free: the window passes a callback that shows a dialog; this module only
logs and calls it. ``SAM_ANNOTATOR_LOG_DIR`` overrides the folder (tests,
portable installs).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Optional

LOG_NAME = "sam-annotator.log"
_MAX_BYTES = 2 * 1024 * 1024
_BACKUPS = 3

log = logging.getLogger("sam_annotator")


def log_dir() -> Path:
    """Folder of the log file: ``SAM_ANNOTATOR_LOG_DIR`` or the platform's user log folder."""
    override = os.environ.get("SAM_ANNOTATOR_LOG_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_log_dir

    return Path(user_log_dir("sam-annotator", appauthor=False))


def log_path() -> Path:
    """Path of the current log file."""
    return log_dir() / LOG_NAME


def setup_logging(level: int = logging.INFO, stderr: bool = True) -> Optional[Path]:
    """Send the application's and sam_core's records to a rotating file (and stderr).

    Returns the log file's path, or ``None`` when the folder cannot be written
    (logging then goes to stderr only; the application still runs).
    Calling it twice does not add handlers twice.
    """
    root = logging.getLogger()
    root.setLevel(min(root.level or level, level))
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s")
    path: Optional[Path] = log_path()
    if not any(getattr(h, "_sam_annotator", False) for h in root.handlers):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=_MAX_BYTES, backupCount=_BACKUPS, encoding="utf-8", delay=True
            )
        except OSError as exc:
            path = None
            sys.stderr.write(f"sam-annotator: cannot write the log file ({exc}); logging to stderr only\n")
        else:
            handler.setFormatter(fmt)
            handler.setLevel(level)
            handler._sam_annotator = True  # type: ignore[attr-defined]
            root.addHandler(handler)
        if stderr:
            err = logging.StreamHandler(sys.stderr)
            err.setFormatter(fmt)
            err.setLevel(logging.WARNING)
            err._sam_annotator = True  # type: ignore[attr-defined]
            root.addHandler(err)
    return path


def format_exception(exc_type, exc, tb) -> str:
    return "".join(traceback.format_exception(exc_type, exc, tb))


def install_excepthook(on_error: Optional[Callable[[str, str], None]] = None) -> None:
    """Log every uncaught exception (main and other threads) and report it.

    ``on_error(summary, details)`` is called after logging; the GUI shows a
    dialog with the log path. It is never allowed to raise: an error in the
    reporter is logged, not re-raised, so there is no silent exit.
    """

    def report(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = format_exception(exc_type, exc, tb)
        log.error("Uncaught exception:\n%s", details)
        if on_error is not None:
            try:
                on_error(f"{exc_type.__name__}: {exc}", details)
            except Exception:  # pragma: no cover - last resort
                log.exception("The error reporter itself failed")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        report(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = report
    threading.excepthook = thread_hook
