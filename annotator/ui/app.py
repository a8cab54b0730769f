"""``sam-annotator [IMAGE_DIR | IMAGE ...] [options]``: start the window.

::

    sam-annotator [IMAGE_DIR | IMAGE ...] [--model TYPE] [--checkpoint PATH] [--device auto|cuda|mps|cpu]
                  [--output FILE] [--cache-dir DIR]

A folder opens every image in it; image files (``sam-annotator a.jpg b.jpg``)
open just those, in that order, with the working file in their common
folder (``annotations.json``) unless ``--output`` names it.

The window shows at once; the model loads in the background (downloading its
weights into the cache on first use, with a progress dialog that can cancel).
Without ``--model``: ``vit_h`` on a CUDA GPU when its weights are present or
can be fetched, else MobileSAM (``vit_t``), with a notice in the status bar.
With ``--checkpoint`` and no ``--model``, the type is read from the file.

Model, device and cache folder: the command line wins, then
``$SAM_ANNOTATOR_CACHE`` (cache folder only), then the preferences
(:class:`annotator.ui.settings.Settings`), then the defaults.

Launch smoke test (CI): with ``SAM_ANNOTATOR_SMOKE_TEST=1`` the app, once its
window is shown and the model has loaded (weights fetched and verified, model
built), prints ``sam-annotator: ready (model vit_t on cpu)`` on stdout and
exits with status 0; if the model cannot be loaded it prints the reason and
exits with 1; after ``SAM_ANNOTATOR_SMOKE_TIMEOUT`` seconds (default 600)
without either, it exits with 2. No dialog waits for a click meanwhile.

Importing this module does not import torch: the model's code is imported by
the encoder thread, after the window is up.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from annotator.data.files import path_arg

if TYPE_CHECKING:  # pragma: no cover
    from annotator.ui.settings import Settings
    from annotator.workers.messages import ModelRequest

DEVICES = ("auto", "cuda", "mps", "cpu")
#: Environment variables of the launch smoke test (see the module notes).
SMOKE_ENV = "SAM_ANNOTATOR_SMOKE_TEST"
SMOKE_TIMEOUT_ENV = "SAM_ANNOTATOR_SMOKE_TIMEOUT"
SMOKE_TIMEOUT_S = 600.0


def model_choices() -> list[str]:
    """Model types with known weights (no torch import)."""
    try:
        from sam_core import CHECKPOINTS

        return list(CHECKPOINTS)
    except Exception:  # pragma: no cover - a broken engine still lets --help work
        return ["vit_t", "vit_b", "vit_l", "vit_h"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sam-annotator",
        description="Annotate images with Segment Anything: click, pick one of three ranked masks, accept.",
        epilog="Other commands: sam-annotator models | encode | export (each has --help).",
    )
    p.add_argument("paths", nargs="*", type=path_arg, metavar="IMAGE_DIR | IMAGE",
                   help="a folder of images to annotate, or one or more image files")
    p.add_argument(
        "--model",
        choices=model_choices(),
        default=None,
        help="model type (default: the preferences' choice, else vit_h on a CUDA GPU if its weights are "
        "available, else vit_t = MobileSAM)",
    )
    p.add_argument("--checkpoint", type=path_arg, metavar="PATH", help="weights file (default: the cached download)")
    p.add_argument("--device", default=None, help="auto, cuda, cuda:N, mps or cpu (default: the preferences' choice, "
                   "else auto)")
    p.add_argument(
        "--output", type=path_arg, metavar="FILE",
        help="working file (default: IMAGE_DIR/annotations.json; for image files, annotations.json in their folder)"
    )
    p.add_argument(
        "--cache-dir",
        type=path_arg,
        metavar="DIR",
        help="cache root for weights (DIR/checkpoints) and embeddings (DIR/embeddings); "
        "default $SAM_ANNOTATOR_CACHE, else the preferences' folder, else the user cache folder",
    )
    p.add_argument("--categories", type=path_arg, metavar="FILE",
                   help="add the categories of FILE (a text file, one name a line, or a COCO file) to the working "
                   "file; names already there are kept")
    return p


def _folder_and_images(parser: argparse.ArgumentParser, args) -> None:
    """``args.image_dir`` (the folder to open, or ``None``) and ``args.images`` (just these files, or ``None``)."""
    from annotator.data.image_states import common_folder
    from annotator.data.imageio import IMAGE_EXTENSIONS

    args.image_dir, args.images = None, None
    paths = list(args.paths)
    if not paths:
        return
    for p in paths:
        if not p.exists():
            parser.error(f"{p} does not exist")
    if len(paths) == 1 and paths[0].is_dir():
        args.image_dir = paths[0]
        return
    for p in paths:
        if p.is_dir():
            parser.error(f"{p} is a folder: give one folder, or image files")
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            parser.error(f"{p} is not an image file (one of {', '.join(IMAGE_EXTENSIONS)})")
    try:
        args.image_dir = common_folder(paths)
    except ValueError as exc:
        if args.output is None:
            parser.error(f"{exc}: name the working file with --output FILE")
        args.image_dir = args.output.absolute().parent
    args.images = list(dict.fromkeys(p.absolute() for p in paths))


def parse_args(argv: Optional[Sequence[str]]):
    parser = build_parser()
    # intermixed: ``sam-annotator a.jpg --output work.json b.jpg`` keeps both images
    args = parser.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    _folder_and_images(parser, args)
    if args.device is not None and args.device.split(":")[0] not in DEVICES:
        parser.error(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {args.device!r}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} is not a file")
    if args.categories is not None and not args.categories.is_file():
        parser.error(f"--categories {args.categories} is not a file")
    if args.output is not None and args.image_dir is None:
        parser.error("--output needs IMAGE_DIR or image files")
    return args


def model_request(args, settings: Optional["Settings"] = None) -> "ModelRequest":
    """The model to load: command line > ``$SAM_ANNOTATOR_CACHE`` (cache) > preferences > defaults.

    With ``--checkpoint`` and no ``--model`` the type comes from the file, not
    from the preferences (whose model may be another one).
    """
    import os

    from annotator.workers.messages import ModelRequest
    from sam_core.checkpoints import ENV_CACHE

    if settings is None:
        return ModelRequest(model_type=args.model, checkpoint=args.checkpoint, device=args.device or "auto",
                            cache_root=args.cache_dir)
    model = args.model
    if model is None and args.checkpoint is None:
        model = settings.model_type()
    cache_root = args.cache_dir
    if cache_root is None and not os.environ.get(ENV_CACHE):
        cache_root = settings.cache_root()
    return ModelRequest(
        model_type=model,
        checkpoint=args.checkpoint,
        device=args.device or settings.device,
        cache_root=cache_root,
        memory_bytes=settings.memory_bytes(),
        disk_bytes=settings.disk_bytes(),
    )


def configure_application(app) -> None:
    """Names, the Fusion style with a dark palette and ``resources/style.qss``."""
    from PySide6.QtGui import QColor, QPalette

    from annotator.data.appdata import resource_text

    app.setApplicationName("sam-annotator")
    app.setOrganizationName("sam-annotator")
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: (45, 47, 51),
        QPalette.ColorRole.WindowText: (222, 224, 228),
        QPalette.ColorRole.Base: (33, 35, 38),
        QPalette.ColorRole.AlternateBase: (40, 42, 46),
        QPalette.ColorRole.Text: (222, 224, 228),
        QPalette.ColorRole.Button: (55, 58, 63),
        QPalette.ColorRole.ButtonText: (222, 224, 228),
        QPalette.ColorRole.Highlight: (52, 120, 198),
        QPalette.ColorRole.HighlightedText: (255, 255, 255),
        QPalette.ColorRole.ToolTipBase: (30, 31, 34),
        QPalette.ColorRole.ToolTipText: (230, 230, 230),
        QPalette.ColorRole.PlaceholderText: (140, 143, 150),
    }
    for role, rgb in roles.items():
        pal.setColor(role, QColor(*rgb))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 122, 128))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 122, 128))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(120, 122, 128))
    app.setPalette(pal)
    qss = resource_text("style.qss")
    if qss:
        app.setStyleSheet(qss)


def smoke_test(app, window, timeout_s: Optional[float] = None) -> None:
    """Make ``app`` exit once ``window``'s model has loaded (0), failed (1) or after ``timeout_s`` (2).

    Prints ``sam-annotator: ready (model TYPE on DEVICE)`` or the failure on stdout.
    """
    import os

    from PySide6.QtCore import QTimer

    if timeout_s is None:
        timeout_s = float(os.environ.get(SMOKE_TIMEOUT_ENV) or SMOKE_TIMEOUT_S)
    window.interactive = False

    def finish(code: int, line: str) -> None:
        if getattr(window, "_smoke_done", False):
            return
        window._smoke_done = True
        print(line, flush=True)
        window.close()
        app.exit(code)

    def loaded(info) -> None:
        finish(0, f"sam-annotator: ready (model {info.model_type} on {info.device})")

    def failed(failure) -> None:
        finish(1, f"sam-annotator: the model could not be loaded ({failure.kind}): {failure.message}")

    window.session.modelChanged.connect(loaded)
    window.session.modelFailed.connect(failed)
    timer = QTimer(window)
    timer.setSingleShot(True)
    timer.timeout.connect(lambda: finish(2, f"sam-annotator: not ready after {timeout_s:.0f} s"))
    timer.start(int(timeout_s * 1000))
    window._smoke_timer = timer


def _log_start() -> None:
    """One line at the top of each session's log: what ran where (torch is not imported yet: see the model line)."""
    import logging
    import platform

    import PySide6

    from annotator import __version__

    logging.getLogger("sam_annotator").info(
        "sam-annotator %s starting: Python %s, PySide6 %s, %s", __version__, platform.python_version(),
        PySide6.__version__, platform.platform(),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the window; returns the exit status."""
    import os

    args = parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from annotator.data.logs import install_excepthook, log_path, setup_logging

    setup_logging()
    _log_start()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "sam-annotator"])
    smoke = os.environ.get(SMOKE_ENV, "") not in ("", "0")
    try:
        from annotator.ui.main_window import MainWindow
        from annotator.ui.settings import Settings

        configure_application(app)
        settings = Settings()
        window = MainWindow(settings=settings)
        install_excepthook(window.show_error)
        if smoke:
            smoke_test(app, window)
        window.show()
        window.start(args.image_dir, args.output, model_request(args, settings), images=args.images,
                     categories=args.categories)
    except Exception as exc:  # the window could not even be built: say so, never exit silently
        import logging
        import traceback

        logging.getLogger("sam_annotator").exception("sam-annotator could not start")
        sys.stderr.write(f"sam-annotator could not start: {exc}\n(details in {log_path()})\n")
        if not smoke:
            from PySide6.QtWidgets import QMessageBox

            box = QMessageBox(QMessageBox.Icon.Critical, "sam-annotator could not start",
                              f"{type(exc).__name__}: {exc}\n\nDetails are in {log_path()}")
            box.setDetailedText(traceback.format_exc())
            box.exec()
        return 1
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
