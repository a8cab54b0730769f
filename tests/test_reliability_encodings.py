"""A working file in UTF-16 or UTF-32 with a byte-order mark (Windows PowerShell's ``Out-File``) opens.

Before, it was refused as "not UTF-8 text (bad byte at offset 0)". Now it is
read, the folder's load notes say so, a save writes UTF-8 (what every COCO
reader expects), and the session's backup keeps the original bytes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.data import atomic
from annotator.data.document import Dataset, DatasetError


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


def _text():
    ds = Dataset("unused.json")
    rec = ds.ensure_image("straße/ä.png", 6, 4)
    cat = ds.add_category("Käfer")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(4, 6, dtype=bool)))
    return ds.to_json()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
def test_a_file_with_a_byte_order_mark_opens_and_saves_as_utf8(tmp_path, encoding):
    text = _text()
    raw = text.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):  # the codecs without a mark: add it, as editors do
        raw = "\ufeff".encode(encoding) + raw
    path = tmp_path / "annotations.json"
    path.write_bytes(raw)
    ds = Dataset.open(path, lock=True)
    try:
        assert [c.name for c in ds.categories.values()] == ["Käfer"]
        assert ds.image_by_name("straße/ä.png") is not None and len(ds.annotations) == 1
        assert bool(ds.load_notes) == (encoding != "utf-8-sig")
        ds.add_category("Biene")
        ds.save()
    finally:
        ds.close()
    saved = path.read_bytes()
    assert [c["name"] for c in json.loads(saved.decode("utf-8"))["categories"]] == ["Käfer", "Biene"]
    assert [b.read_bytes() for b in tmp_path.glob("annotations.json.*.bak")] == [raw]


def test_other_bytes_are_still_a_clear_message(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_bytes(_text().encode("latin-1"))
    with pytest.raises(DatasetError, match=r"not UTF-8 text \(bad byte at offset \d+\)"):
        Dataset.open(path)
    path.write_bytes(b"\xff\xfe" + b"\x00\xd8")  # a mark, then a lone surrogate
    with pytest.raises(DatasetError, match=r"not UTF-16 text"):
        Dataset.open(path)
