"""Reading lists of categories (annotator/data/category_lists.py): text and COCO files, and what is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator.data.category_lists import CategoryListError, read_categories


def test_text_list_with_bom_comments_blanks_and_windows_line_ends(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_bytes("\ufeff# header\r\ncat\r\n\r\n  dog  \r\nçà et là\r\n".encode("utf-8"))
    got = read_categories(f)
    assert got.names == ["cat", "dog", "çà et là"] and got.problems == []
    assert all(color is None for _, color in got.entries)


def test_refused_lines_are_named_by_number(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("cat\ncat\na\tb\n" + "y" * 201 + "\nok\n", encoding="utf-8")
    got = read_categories(f)
    assert got.names == ["cat", "ok"]
    assert [p.split(":")[0] for p in got.problems] == ["line 2", "line 3", "line 4"]
    assert "listed twice" in got.problems[0] and "control characters" in got.problems[1]


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe\x00c\x00a", "not UTF-8"),
    (b'{"categories": 3}', "no \"categories\" list"),
    (b'[1, 2]', "no \"categories\" list"),
    (b'{"images": [', "not valid JSON"),
])
def test_unusable_files_raise_with_a_message(tmp_path, content, message):
    f = tmp_path / ("x.json" if content.startswith((b"{", b"[")) else "x.txt")
    f.write_bytes(content)
    with pytest.raises(CategoryListError, match=message):
        read_categories(f)


def test_missing_file(tmp_path):
    with pytest.raises(CategoryListError, match="cannot read"):
        read_categories(tmp_path / "nope.txt")


def test_coco_categories_in_id_order_with_valid_colours_only(tmp_path):
    f = tmp_path / "other.json"
    f.write_text(json.dumps({"categories": [
        {"id": 3, "name": "c", "color": [1, 2, 300]}, {"id": 1, "name": "a", "color": [9, 8, 7]},
        {"id": 2, "name": "b", "color": [True, 0, 0]}, {"name": " "}, "junk", {"id": 4, "name": "a"}]}))
    got = read_categories(f)
    assert got.entries == [("a", (9, 8, 7)), ("b", None), ("c", None)]
    assert got.problems == ["categories[3]: no name", "categories[4]: no name", "categories[5]: 'a' is listed twice (taken once)"]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_list_or_a_clear_error(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("fuzz") / "list.txt"
    f.write_bytes(data)
    try:
        got = read_categories(f)
    except CategoryListError as exc:
        assert str(exc)
        return
    assert len(set(got.names)) == len(got.names) and all(n and n == n.strip() for n in got.names)
