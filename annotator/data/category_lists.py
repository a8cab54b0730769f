"""Lists of category names to load into a working file: a text file (one name a line) or a COCO file.

:func:`read_categories` reads either and says what it could not use, line by
line; it never raises for a bad entry, only when the file itself cannot be
read (:class:`CategoryListError`, with a message for the user). Qt-free.

Text files: UTF-8 (a BOM is allowed), one name a line; blank lines and lines
starting with ``#`` are skipped; surrounding spaces are trimmed. A name with
control characters (a tab, say: a pasted table) or longer than
:data:`MAX_NAME` characters is refused with its line number; a name repeated
in the file is taken once.

COCO files (``.json``, or text starting with ``{``): the ``categories``
list, in id order, with each entry's ``color`` when it is a valid ``[r, g,
b]`` (else the palette's next colour).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from annotator.data.records import _color as parse_color

Color = Tuple[int, int, int]

#: Longest category name accepted from a list.
MAX_NAME = 200
#: Files larger than this are not category lists (a wrong file picked by mistake).
MAX_BYTES = 50 * 1024 * 1024


class CategoryListError(ValueError):
    """The file cannot be read as a list of categories (the message says why)."""


@dataclass
class CategoryList:
    """What a file holds: ``entries`` ``(name, colour or None)`` in file order, and ``problems`` (one line each)."""

    entries: List[Tuple[str, Optional[Color]]] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def names(self) -> List[str]:
        return [name for name, _ in self.entries]


def read_categories(path) -> CategoryList:
    """Read a text or COCO file of categories. Raises :class:`CategoryListError` if the file is unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CategoryListError(f"{path.name} is {size / 1e6:.0f} MB: not a list of categories")
        data = path.read_bytes()
    except OSError as exc:
        raise CategoryListError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CategoryListError(f"{path.name} is not UTF-8 text (byte {exc.start})") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _from_coco(text, path.name)
    return _from_text(text)


def _check_name(name: str) -> Optional[str]:
    """Why ``name`` cannot be a category name, or ``None``."""
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "has control characters (a tab?)"
    return None


def _from_text(text: str) -> CategoryList:
    out = CategoryList()
    seen = set()
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        why = _check_name(name)
        if why is not None:
            out.problems.append(f"line {number}: {why}: {name[:40]!r}")
        elif name in seen:
            out.problems.append(f"line {number}: {name!r} is listed twice (taken once)")
        else:
            seen.add(name)
            out.entries.append((name, None))
    return out


def _from_coco(text: str, name: str) -> CategoryList:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CategoryListError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise CategoryListError(f"{name}: no \"categories\" list (is it a COCO file?)")
    out = CategoryList()
    seen = set()
    usable = []
    for i, cat in enumerate(cats):
        label = f"categories[{i}]"
        if not isinstance(cat, dict) or not isinstance(cat.get("name"), str) or not cat["name"].strip():
            out.problems.append(f"{label}: no name")
            continue
        cid = cat.get("id")
        usable.append((cid if isinstance(cid, int) and not isinstance(cid, bool) else float("inf"), i, cat, label))
    for _, _, cat, label in sorted(usable, key=lambda t: (t[0], t[1])):
        category = cat["name"].strip()
        why = _check_name(category)
        if why is not None:
            out.problems.append(f"{label}: {why}: {category[:40]!r}")
        elif category in seen:
            out.problems.append(f"{label}: {category!r} is listed twice (taken once)")
        else:
            seen.add(category)
            out.entries.append((category, parse_color(cat.get("color"))))  # as the working file reads it
    return out
