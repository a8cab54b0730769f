"""``encode`` and ``auto`` name a path option that is the wrong kind of thing, before loading any model.

Before: ``--cache-dir FILE`` failed as a weights download ("Not a directory:
.../FILE/checkpoints"), ``--checkpoint FOLDER`` as "FileNotFoundError: ...
does not exist", and ``auto --output FOLDER`` ran (minutes on a large folder)
and stored the proposals beside the folder as ``FOLDER.proposals.sqlite3``,
where the window never looks.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotator.commands import auto, encode
from annotator.commands.common import EXIT_USAGE


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
    (tmp_path / "a_file").write_bytes(b"")
    return images


@pytest.mark.parametrize("command", [encode, auto])
@pytest.mark.parametrize("option,value,words", [
    ("--cache-dir", "a_file", "is a file; give a folder"),
    ("--checkpoint", "images", "is a folder; give the weights file"),
])  # fmt: skip
def test_a_path_option_of_the_wrong_kind_is_a_usage_error(folder, capsys, command, option, value, words):
    code = command.main([str(folder), option, str(folder.parent / value), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_auto_refuses_a_folder_as_its_working_file(folder, capsys):
    code = auto.main([str(folder), "--output", str(folder), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "is a folder; give the working file" in err
    assert list(folder.parent.glob("*.sqlite3")) == []
