"""The JSON lines of a working file's records, reused while a record is unchanged (no Qt).

The window saves after every accept, on the GUI thread. Serialising 100,000
annotations (``to_json`` and :func:`json.dumps` of each) took over a second;
nearly all of them are the same as at the previous save. :class:`LineCache`
keeps each record's line with a key taken from the record, and serialises
again only the records whose key no longer matches.

What is noticed, and how (the key is checked at every save, whoever changed
the record; nothing has to remember to invalidate anything):

* **Image records**: an exact fingerprint, :func:`marshal.dumps` (format 2,
  no back-references) of every value ``to_json`` reads, compared by value.
  It is type-exact (``1``, ``1.0`` and ``True``, written ``1``, ``1.0`` and
  ``true``, differ; so do ``0.0`` and ``-0.0``, a list and a tuple),
  order-exact (dict items in their order, as :mod:`json` writes them) and
  deep, so ``rec.extra["state"] = "done"`` in place, as :class:`Dataset`
  does, is seen. Values marshal cannot take (numpy scalars, subclasses) make
  the record uncached: serialised at every save. There are few image records
  (one per image, not per mask), so the exact check costs little.
* **Annotations** (100,000 of them): the *identity* of every object
  ``to_json`` reads (each field, and the RLE ``counts`` and ``size``):
  replacing an annotation (:meth:`Dataset.replace_annotation`, how every
  edit in the window works), or assigning any of its attributes
  (``ann.category_id = 2``, anywhere), is seen; an identical object has the
  identical value. Identity, not equality: ``1 == 1.0 == True`` but JSON
  writes them differently. An exact fingerprint of each annotation took
  0.11 s per save at 100,000 annotations, more than the whole budget.
  The contract this rests on: **an annotation's containers (``segmentation``,
  ``bbox``, ``extra`` and what they hold) are not changed in place once it
  is in a Dataset**; make a new annotation (``dataclasses.replace``) or
  assign a new container. No code does otherwise; setting :data:`VERIFY`
  (environment variable ``SAM_ANNOTATOR_VERIFY_SAVES=1``, e.g. in a test
  suite) makes every :meth:`Dataset.to_json` also serialise everything
  afresh and raise :class:`StaleCacheError` (an ``AssertionError``, not a
  save error the window would report and go on) if the texts differ.

:func:`join_sections` puts the lines together in exactly the layout of
:func:`annotator.data.records.dumps_coco` (one item per line, strict JSON).
Per unchanged record nothing is allocated: creating 100,000 tuples per save
set off full passes of the cyclic garbage collector over the document
(about 0.2 s each on the benchmark machine).
"""

from __future__ import annotations

import json
import marshal
import os
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar

from annotator.data.records import Annotation, ImageRecord

__all__ = ["LineCache", "annotation_lines", "image_lines", "dumps_item", "image_fingerprint", "annotation_identity",
           "join_sections", "PreRendered", "VERIFY", "StaleCacheError"]

R = TypeVar("R")

#: Check every cached serialisation against a fresh one (slow; for test suites).
VERIFY = os.environ.get("SAM_ANNOTATOR_VERIFY_SAVES", "") not in ("", "0")


class StaleCacheError(AssertionError):
    """:data:`VERIFY` found a cached line that is not the record's (a record was changed in place).

    Not a :class:`~annotator.data.workfile.SaveError`: the window would show
    it as a failed save; a test must fail on it.
    """


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


def image_fingerprint(rec: ImageRecord) -> Optional[bytes]:
    """Every value :meth:`ImageRecord.to_json` reads, exactly (marshal); ``None`` when it cannot be taken."""
    return _marshal((rec.id, rec.file_name, rec.width, rec.height, rec.extra))


def _image_same(key: bytes, rec: ImageRecord) -> bool:
    return key == image_fingerprint(rec)


def annotation_identity(ann: Annotation) -> Optional[Tuple[Any, ...]]:
    """The objects :meth:`Annotation.to_json` reads (the fields, and the RLE ``counts`` and ``size``)."""
    seg = ann.segmentation
    try:
        counts, size = seg["counts"], seg["size"]
    except (TypeError, KeyError):
        return None
    return (ann.id, ann.image_id, ann.category_id, seg, counts, size, ann.area, ann.bbox, ann.iscrowd, ann.extra)


def _annotation_same(key: Tuple[Any, ...], ann: Annotation) -> bool:
    # identity, not equality: 1 == 1.0 == True and 0.0 == -0.0, but JSON writes them differently
    seg = ann.segmentation
    return (
        key[9] is ann.extra
        and key[3] is seg
        and key[4] is seg.get("counts")
        and key[5] is seg.get("size")
        and key[7] is ann.bbox
        and key[2] is ann.category_id
        and key[0] is ann.id
        and key[1] is ann.image_id
        and key[6] is ann.area
        and key[8] is ann.iscrowd
    )


class LineCache(Generic[R]):
    """Lines ``dumps_item(record.to_json())`` by record id, each kept with a key taken from its record.

    Parameters
    ----------
    key
        ``record -> key or None`` (``None``: never cache this record).
    same
        ``(key, record) -> bool``: True only if the record's line is still
        the one made when ``key`` was taken.
    """

    def __init__(self, key: Callable[[R], Any], same: Callable[[Any, R], bool]):
        self._key = key
        self._same = same
        self._entries: Dict[Any, Tuple[Any, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lines(self, records: Iterable[R]) -> List[str]:
        """The line of each record, in order; unchanged records' lines are reused.

        Entries of records not in ``records`` are dropped (memory stays one
        line per record). Any exception of ``to_json`` (a value JSON cannot
        hold) propagates; the cache then holds only lines that are right.

        Per unchanged record this allocates nothing: a save of 100,000
        annotations must not trigger the cyclic garbage collector's full
        passes over the document (about 0.2 s each here).
        """
        records = list(records)
        entries = self._entries
        same = self._same
        out: List[str] = []
        append = out.append
        uncached = 0
        for rec in records:
            entry = entries.get(rec.id)  # type: ignore[attr-defined]
            if entry is not None and same(entry[0], rec):
                append(entry[1])
                continue
            entries.pop(rec.id, None)  # type: ignore[attr-defined]
            line = dumps_item(rec.to_json())  # type: ignore[attr-defined]
            key = self._key(rec)
            if key is not None:
                entries[rec.id] = (key, line)  # type: ignore[attr-defined]
            else:
                uncached += 1
            append(line)
        if len(entries) != len(out) - uncached:  # records were removed: drop their lines
            self._entries = {rec.id: entries[rec.id] for rec in records if rec.id in entries}  # type: ignore[attr-defined]
        return out

    def clear(self) -> None:
        self._entries = {}


def annotation_lines() -> "LineCache[Annotation]":
    """A :class:`LineCache` for annotations (see the module docstring for what it notices)."""
    return LineCache(annotation_identity, _annotation_same)


def image_lines() -> "LineCache[ImageRecord]":
    """A :class:`LineCache` for image records (exact fingerprints: their ``extra`` is changed in place)."""
    return LineCache(image_fingerprint, _image_same)


def join_sections(sections: Iterable[Tuple[str, Any]]) -> str:
    """:func:`annotator.data.records.dumps_coco` text from ``(key, value)`` pairs, byte for byte.

    A value that is a :class:`PreRendered` list is a list whose items are
    already JSON lines; any other value is serialised here. The text is
    joined once (a 32 MB file is not copied section by section).
    """
    pieces: List[str] = []
    for key, value in sections:
        pieces.append(",\n " if pieces else "{\n ")
        pieces.append(dumps_item(key))
        if isinstance(value, list) and value:
            pieces.append(": [\n  ")
            lines = value if isinstance(value, PreRendered) else [dumps_item(v) for v in value]
            pieces.append(",\n  ".join(lines))
            pieces.append("\n ]")
        else:
            pieces.append(": " + dumps_item(value))
    pieces.append("\n}\n" if pieces else "{\n\n}\n")
    return "".join(pieces)


class PreRendered(list):
    """A list of JSON lines (strings already serialised), for :func:`join_sections`."""
