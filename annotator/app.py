"""``sam-annotator [IMAGE_DIR] [options]``: start the window.

::

    sam-annotator [IMAGE_DIR] [--model TYPE] [--checkpoint PATH] [--device auto|cuda|mps|cpu]
                  [--output FILE] [--cache-dir DIR]

The window shows at once; the model loads in the background (downloading its
weights into the cache on first use, with a progress dialog that can cancel).
Without ``--model``: ``vit_h`` on a CUDA GPU when its weights are present or
can be fetched, else MobileSAM (``vit_t``), with a notice in the status bar.
With ``--checkpoint`` and no ``--model``, the type is read from the file.

Importing this module does not import torch: the model's code is imported by
the encoder thread, after the window is up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import ModelRequest

DEVICES = ("auto", "cuda", "mps", "cpu")


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
    p.add_argument("image_dir", nargs="?", type=Path, metavar="IMAGE_DIR", help="folder of images to annotate")
    p.add_argument(
        "--model",
        choices=model_choices(),
        default=None,
        help="model type (default: vit_h on a CUDA GPU if its weights are available, else vit_t = MobileSAM)",
    )
    p.add_argument("--checkpoint", type=Path, metavar="PATH", help="weights file (default: the cached download)")
    p.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N, mps or cpu")
    p.add_argument(
        "--output", type=Path, metavar="FILE", help="working file (default: IMAGE_DIR/annotations.json)"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache root for weights (DIR/checkpoints) and embeddings (DIR/embeddings); "
        "default $SAM_ANNOTATOR_CACHE or the user cache folder",
    )
    return p


def parse_args(argv: Optional[Sequence[str]]):
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.image_dir is not None and not args.image_dir.is_dir():
        parser.error(f"IMAGE_DIR {args.image_dir} is not a folder")
    if args.device.split(":")[0] not in DEVICES:
        parser.error(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {args.device!r}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} is not a file")
    if args.output is not None and args.image_dir is None:
        parser.error("--output needs IMAGE_DIR")
    return args


def model_request(args) -> "ModelRequest":
    from .jobs import ModelRequest

    return ModelRequest(
        model_type=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        cache_root=args.cache_dir,
    )


def configure_application(app) -> None:
    """Names, the Fusion style with a dark palette and ``resources/style.qss``."""
    from PySide6.QtGui import QColor, QPalette

    from .appdata import resource_text

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the window; returns the exit status."""
    args = parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from .logs import install_excepthook, setup_logging
    from .main_window import MainWindow

    setup_logging()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "sam-annotator"])
    configure_application(app)
    window = MainWindow()
    install_excepthook(window.show_error)
    window.show()
    window.start(args.image_dir, args.output, model_request(args))
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
