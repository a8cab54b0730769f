"""The small part of YAML that dataset files use: Ultralytics ``data.yaml`` (no YAML library needed).

Read by :func:`annotator.data.formats.yolo.read_yolo`; checked against PyYAML on generated files in
``tests/test_formats_yolo.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

__all__ = ["parse_data_yaml"]



def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(text: str) -> Any:
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        try:
            return json.loads(s)
        except ValueError:
            return s[1:-1]
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return s[1:-1].replace("''", "'")
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    return s


def _split_flow(text: str) -> List[str]:
    items, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        items.append(cur)
    return items


def _value(text: str) -> Any:
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        return [_scalar(v) for v in _split_flow(s[1:-1])]
    if s.startswith("{") and s.endswith("}"):
        out = {}
        for item in _split_flow(s[1:-1]):
            k, _, v = item.partition(":")
            out[_scalar(k)] = _scalar(v)
        return out
    return _scalar(s)


def parse_data_yaml(text: str) -> Dict[Any, Any]:
    """Top-level keys of a dataset YAML: scalars, flow ``[..]``/``{..}`` and indented block lists/maps.

    Enough for Ultralytics ``data.yaml`` files (``path``, ``train``, ``val``,
    ``nc``, ``names``); anything fancier (anchors, multi-line strings) is
    read as plain text or ignored.
    """
    result: Dict[Any, Any] = {}
    key = None
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            k, sep, v = line.partition(":")
            if not sep:
                key = None
                continue
            key = _scalar(k)
            result[key] = _value(v) if v.strip() else None
            continue
        if key is None:
            continue
        item = line.strip()
        if item.startswith("- ") or item == "-":
            if not isinstance(result[key], list):
                result[key] = []
            result[key].append(_scalar(item[1:]))
        elif ":" in item:
            if not isinstance(result[key], dict):
                result[key] = {}
            k, _, v = item.partition(":")
            result[key][_scalar(k)] = _scalar(v)
    return result
