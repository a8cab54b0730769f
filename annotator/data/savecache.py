"""The JSON lines of a working file's records, reused while a record is unchanged (no Qt).

The window saves after every accept, on the GUI thread. Serialising 100,000
annotations (``to_json`` and :func:`json.dumps` of each) takes over a second;
nearly all of them are the same as at the previous save. :class:`LineCache`
keeps each record's line with an exact *fingerprint* of every value its line
is made from, and re-serialises only records whose fingerprint differs.

Staleness cannot happen, whatever mutates a record (a :class:`Dataset` method,
an assignment ``ann.category_id = 3`` elsewhere, ``rec.extra["state"] =
"done"`` in place, a nested list in ``extra`` changed in place): the
fingerprint is recomputed from the record at every save and compared with the
one stored beside the line. It is :func:`marshal.dumps` (format version 2, no
back-references) of the fields, which is

* **type-exact**: ``1``, ``1.0`` and ``True`` (written ``1``, ``1.0``,
  ``true``), ``0.0`` and ``-0.0``, a list and a tuple all differ;
* **order-exact**: dict items in their order, as :mod:`json` writes them;
* **deep**: nested lists and dicts in ``extra`` are part of it;
* **strict**: anything that is not a plain ``int``/``float``/``str``/``bool``/
  ``None``/``list``/``dict``/``tuple`` (a numpy scalar, a subclass) makes
  ``marshal`` raise, and the record is then serialised afresh at every save.

Equal fingerprints decode (``marshal.loads``) to equal, same-typed values, so
they give the same line. The RLE ``counts`` string (most of each line) is
compared by value beside the fingerprint (a ``str`` comparison, which is
exact and starts with an identity check) instead of being copied into it.

Cost at 100,000 annotations: one fingerprint per record per save (about a
microsecond each) instead of a ``to_json`` and a ``json.dumps`` (about 15);
see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import marshal
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar

from annotator.data.records import Annotation, ImageRecord

__all__ = ["LineCache", "dumps_item", "annotation_fingerprint", "image_fingerprint", "join_sections", "PreRendered"]

R = TypeVar("R")
Fingerprint = Tuple[bytes, Any]

# One encoder for all lines: json.dumps with non-default options builds a new
# JSONEncoder on every call (a few microseconds each, 100,000 times a save).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def dumps_item(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))``, the same text."""
    return _ENCODER.encode(value)


def _marshal(value: Any) -> Optional[bytes]:
    try:
        return marshal.dumps(value, 2)
    except (ValueError, TypeError, RecursionError):  # unmarshallable (numpy, subclasses), or absurdly deep
        return None


def annotation_fingerprint(ann: Annotation) -> Optional[Fingerprint]:
    """Every value :meth:`Annotation.to_json` reads, exactly; ``None`` when it cannot be taken (no caching)."""
    seg = ann.segmentation
    try:
        counts, size = seg["counts"], seg["size"]
    except (TypeError, KeyError):
        return None
    if type(counts) is not str:
        return None
    key = _marshal((ann.id, ann.image_id, ann.category_id, size, ann.area, ann.bbox, ann.iscrowd, ann.extra))
    return None if key is None else (key, counts)


def image_fingerprint(rec: ImageRecord) -> Optional[Fingerprint]:
    """Every value :meth:`ImageRecord.to_json` reads, exactly; ``None`` when it cannot be taken."""
    key = _marshal((rec.id, rec.file_name, rec.width, rec.height, rec.extra))
    return None if key is None else (key, None)


class LineCache(Generic[R]):
    """Lines ``dumps_item(record.to_json())`` by record id, each kept with its record's fingerprint.

    Parameters
    ----------
    fingerprint
        ``record -> (bytes, value) or None``: equal fingerprints must mean
        equal lines (see the module docstring); ``None`` means "do not cache".
    """

    def __init__(self, fingerprint: Callable[[R], Optional[Fingerprint]]):
        self._fingerprint = fingerprint
        self._entries: Dict[Any, Tuple[Fingerprint, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lines(self, records: Iterable[R]) -> List[str]:
        """The line of each record, in order; unchanged records' lines are reused.

        Entries of records not in ``records`` are dropped (memory stays one
        line per record). Any exception of ``to_json`` (a value JSON cannot
        hold) propagates, with the cache as it was.
        """
        entries = self._entries
        fingerprint = self._fingerprint
        kept: Dict[Any, Tuple[Fingerprint, str]] = {}
        out: List[str] = []
        append = out.append
        for rec in records:
            key = fingerprint(rec)
            rid = rec.id  # type: ignore[attr-defined]
            entry = entries.get(rid)
            if key is not None and entry is not None and entry[0] == key:
                append(entry[1])
                kept[rid] = entry
                continue
            line = dumps_item(rec.to_json())  # type: ignore[attr-defined]
            if key is not None:
                kept[rid] = (key, line)
            append(line)
        self._entries = kept
        return out

    def clear(self) -> None:
        self._entries = {}


def join_sections(sections: Iterable[Tuple[str, Any]]) -> str:
    """:func:`annotator.data.records.dumps_coco` text from ``(key, value)`` pairs, byte for byte.

    A value that is a :class:`PreRendered` list is a list whose items are
    already JSON lines; any other value is serialised here.
    """
    parts = []
    for key, value in sections:
        if isinstance(value, PreRendered):
            body = "[\n  " + ",\n  ".join(value) + "\n ]" if value else "[]"
        elif isinstance(value, list) and value:
            body = "[\n  " + ",\n  ".join(dumps_item(v) for v in value) + "\n ]"
        else:
            body = dumps_item(value)
        parts.append(f" {dumps_item(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


class PreRendered(list):
    """A list of JSON lines (strings already serialised), for :func:`join_sections`."""
