"""The ``sam-annotator`` console script.

``sam-annotator [IMAGE_DIR] [options]`` opens the window. The first word may
instead name a subcommand; each lives in its own module with a
``main(argv: list[str]) -> int`` so that the window's Qt imports are never paid
for by a command-line task:

=========  ===============================  ======================================================================
command    module                      what it does
=========  ===============================  ======================================================================
models     ``annotator.commands.models``    list / download / verify model weights
export     ``annotator.commands.export``    write a working file as COCO, YOLO-seg, VOC, labelme, mask PNGs
import     ``annotator.commands.importer``  add labelme, YOLO-seg, VOC or COCO labels to a working file
encode     ``annotator.commands.encode``    pre-encode a folder into the embedding cache (``--ray``: on a cluster)
auto       ``annotator.commands.auto``      segment everything over a folder, proposals kept for review
=========  ===============================  ======================================================================
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

SUBCOMMANDS = {
    "models": "annotator.commands.models",
    "export": "annotator.commands.export",
    "import": "annotator.commands.importer",
    "encode": "annotator.commands.encode",
    "auto": "annotator.commands.auto",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]) or 0)
    from annotator.ui.app import main as app_main  # Qt is imported only here

    return int(app_main(argv) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
