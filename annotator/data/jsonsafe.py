"""JSON that always round-trips: parsing with our own messages, and text that always encodes.

The working file keeps every field it does not know (other tools' extras), so
whatever the loader accepts must also be writable, and read back equal.
Python's :mod:`json` has four ways to break that, each handled here:

* **Integers longer than 4300 digits** make ``json.loads`` raise a plain
  ``ValueError`` (CPython's limit on int/str conversion); :func:`loads`
  turns it into :class:`JsonError` with a sentence for the user.
* **Numbers out of float range** (``1e400``) and the non-standard ``NaN`` /
  ``Infinity`` literals parse to non-finite floats, which strict JSON cannot
  write. :func:`clean_extra` turns them into ``null`` at load time, so the
  document in memory is already what will be written, and counts them for a
  note to the user.
* **Nesting**: ``json.loads`` accepts nesting down to the recursion limit,
  but writing it back (and our own conversions) need more stack. Extra fields
  nested deeper than :data:`MAX_EXTRA_DEPTH` levels are refused at load with
  the place named; the parser's own ``RecursionError`` is a :class:`JsonError`
  too.
* **Lone surrogates** (``"\\udcff"`` in a file, or a file name that is not
  UTF-8, which :func:`os.listdir` returns with surrogate escapes) cannot be
  encoded as UTF-8. :func:`encode_text` writes them as ``\\uXXXX`` escapes,
  which read back as the same string.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, List, Tuple

__all__ = ["JsonError", "MAX_EXTRA_DEPTH", "loads", "clean_extra", "encode_text"]

#: Deepest nesting accepted inside a field we do not know (a list or object counts one level).
MAX_EXTRA_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(ValueError):
    """The text is not JSON we can keep; the message says why, for the user."""


def loads(text: str) -> Any:
    """``json.loads`` with every failure a :class:`JsonError` naming the problem (and line/column when known)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JsonError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # CPython's int digit limit (a plain ValueError)
        if "digits" in str(exc):
            raise JsonError(
                "the file holds an integer with thousands of digits, more than can be read as a number "
                "(no annotation tool writes such numbers: the file is damaged or was made to break readers)"
            ) from None
        raise JsonError(f"malformed JSON ({exc})") from None
    except MemoryError:
        raise JsonError("not enough memory to read this file") from None


def clean_extra(value: Any, where: str, notes: List[str]) -> Any:
    """``value`` (a parsed JSON value) with non-finite floats replaced by ``None``, checked for depth.

    Containers are changed in place. Each replaced number adds one line to
    ``notes``.

    Raises
    ------
    JsonError
        Nesting deeper than :data:`MAX_EXTRA_DEPTH`.
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{where}: {value!r} is not a number JSON can hold; it is kept as null")
        return None
    if not isinstance(value, (list, dict)):
        return value
    stack: List[Tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise JsonError(f"{path}: nested more than {MAX_EXTRA_DEPTH} levels deep")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            if isinstance(child, float) and not math.isfinite(child):
                node[key] = None
                notes.append(f"{path}[{key!r}]: {child!r} is not a number JSON can hold; it is kept as null")
            elif isinstance(child, (list, dict)):
                stack.append((child, depth + 1, f"{path}[{key!r}]"))
    return value


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of JSON text; lone surrogates become ``\\uXXXX`` escapes.

    ``json.dumps(..., ensure_ascii=False)`` leaves a lone surrogate as it is,
    and UTF-8 cannot encode it. In JSON text every character outside strings
    is ASCII, so each lone surrogate is inside a string and its escape is
    exact: Python's json (and pycocotools) reads back the same string, and
    :func:`os.fsencode` turns a surrogate-escaped file name back into the
    original bytes. (A high surrogate directly followed by a low one in the
    same string would read back as the one character they encode; no file
    name or parsed JSON string holds such a pair, both give the character.)
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")
