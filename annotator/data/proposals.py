"""Stored segment-everything proposals: the file ``sam-annotator auto`` writes and the window reviews.

``sam-annotator auto DIR`` runs :class:`sam_core.AutomaticMaskGenerator` over
every image of a folder (on one machine or a Ray cluster) and keeps what it
proposes in a *proposals file* beside the working file: for
``DIR/annotations.json`` it is ``DIR/annotations.proposals.sqlite3``
(:func:`proposals_path`). When the window opens the folder it can offer an
image's stored proposals for review (select, accept, reject) without
computing them again: :func:`load_for_review` gives them in exactly the
shape the generator returns, to be prepared as a live run's are
(``annotator.session.everything.prepare_proposals(records, h, w)``).

Format (SQLite, version :data:`FORMAT_VERSION`)
------------------------------------------------
``meta(key TEXT PRIMARY KEY, value TEXT)`` holds ``format`` =
:data:`FORMAT_NAME` and ``version``. ``proposals`` has one row per image:

============== ================================================================
column         meaning
============== ================================================================
file_name      POSIX path of the image relative to the working file's folder
               (what :meth:`annotator.data.document.Dataset.relative_name` gives)
digest         :func:`sam_core.cache.image_digest` of the decoded image (EXIF
               applied): proposals of an image changed since are not offered
height, width  the image's size after EXIF orientation
model_type     e.g. ``"vit_t"``; ``checkpoint_id``: the weights' fingerprint
params         JSON of the :class:`GeneratorParams` used
seconds        time the generator took; ``created``: Unix time of the row
count          number of proposals
records        zlib-compressed UTF-8 JSON: the generator's records, each
               ``segmentation`` (COCO RLE ``{"size": [h, w], "counts": str}``),
               ``area`` (int), ``bbox`` ``[x, y, w, h]`` (image pixels),
               ``predicted_iou``, ``stability_score`` (floats),
               ``point_coords`` ``[[x, y]]``, ``crop_box`` ``[x, y, w, h]``
============== ================================================================

A row is written in one transaction, so a reader never sees half of an
image's proposals; a run that is interrupted keeps the rows it committed.
Only one process writes a file at a time (``auto`` writes from its driver
alone; the cluster's workers send their records to it), which keeps SQLite
safe on a network share. Everything read is checked: a file that is not a
proposals file, of another version, or with a malformed row raises
:class:`ProposalsError` with the file, the image and what is wrong.

This module never imports Qt.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GeneratorParams",
    "ProposalsError",
    "ProposalStore",
    "StoredProposals",
    "load_for_review",
    "proposals_path",
    "validate_records",
]

FORMAT_NAME = "sam-annotator-proposals"
FORMAT_VERSION = 1
SUFFIX = ".proposals.sqlite3"

PathLike = Union[str, Path]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS proposals ("
    " file_name TEXT PRIMARY KEY, digest TEXT NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL,"
    " model_type TEXT NOT NULL, checkpoint_id TEXT NOT NULL, params TEXT NOT NULL, seconds REAL NOT NULL,"
    " created REAL NOT NULL, count INTEGER NOT NULL, records BLOB NOT NULL)",
)
_COLUMNS = "file_name, digest, height, width, model_type, checkpoint_id, params, seconds, created, count, records"


@dataclass(frozen=True)
class GeneratorParams:
    """Parameters of :class:`sam_core.AutomaticMaskGenerator` for segment everything.

    The defaults are the window's (``annotator.session.everything.EverythingOptions``;
    a test keeps the two equal), so that ``auto`` proposes what the window's
    Segment Everything would. ``points_per_side`` None (the default) is the
    generator's fast mode (prompts chosen in rounds where no kept mask covers
    the image yet, a few seconds on a CPU); ``n`` prompts the official
    generator's full ``n x n`` grid (cost grows with ``n**2``: 32 takes tens of
    seconds for MobileSAM on a CPU). The others have the generator's meaning.
    """

    points_per_side: Optional[int] = None
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0

    def generator_kwargs(self) -> Dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GeneratorParams":
        """From a mapping with exactly these fields (as :meth:`to_json` writes); ValueError otherwise."""
        names = {f.name for f in fields(cls)}
        if not isinstance(values, Mapping) or set(values) != names:
            raise ValueError(f"generator parameters must have exactly {sorted(names)}, got {values!r}")
        out = {}
        for f in fields(cls):
            v = values[f.name]
            if f.name == "points_per_side" and v is None:  # the fast mode
                out[f.name] = None
                continue
            if not _finite(v):
                raise ValueError(f"generator parameter {f.name} must be a number, got {v!r}")
            out[f.name] = int(v) if f.name == "points_per_side" else type(f.default)(v)
        return cls(**out)


class ProposalsError(Exception):
    """A proposals file cannot be used; the message names the file (and the image) and says why."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"proposals file {self.path}: {problem}")


@dataclass(frozen=True)
class StoredProposals:
    """One image's row of a proposals file (``records`` as the generator returned them)."""

    file_name: str
    digest: str
    size: Tuple[int, int]  # (height, width)
    model_type: str
    checkpoint_id: str
    params: GeneratorParams
    seconds: float
    created: float
    records: Tuple[Dict[str, Any], ...]


def proposals_path(working_file: PathLike) -> Path:
    """The proposals file beside ``working_file``: ``annotations.json`` -> ``annotations.proposals.sqlite3``."""
    p = Path(working_file)
    return p.with_name(p.stem + SUFFIX)


# ----------------------------------------------------------------------------
# records


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def validate_records(records: Any, height: int, width: int) -> List[Dict[str, Any]]:
    """Check generator records for an ``height x width`` image; returns them as plain JSON-ready dicts.

    Raises
    ------
    ValueError
        The first problem, naming the record (``record 3: ...``).
    """
    from annotator.data.coco import SegmentationError, to_compressed_rle

    if not isinstance(records, (list, tuple)):
        raise ValueError(f"records must be a list, got {type(records).__name__}")
    out = []
    for i, r in enumerate(records):
        try:
            if not isinstance(r, Mapping):
                raise ValueError(f"not an object but {type(r).__name__}")
            missing = {"segmentation", "area", "bbox", "predicted_iou", "stability_score"} - set(r)
            if missing:
                raise ValueError(f"missing {sorted(missing)}")
            if not isinstance(r["segmentation"], Mapping):
                raise ValueError("segmentation must be an RLE object")
            seg = to_compressed_rle(r["segmentation"], height, width)
            area = r["area"]
            if type(area) is not int or area < 0:
                raise ValueError(f"area must be a non-negative integer, got {area!r}")
            bbox = r["bbox"]
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
                raise ValueError(f"bbox must be [x, y, w, h] numbers, got {bbox!r}")
            for name in ("predicted_iou", "stability_score"):
                if not _finite(r[name]):
                    raise ValueError(f"{name} must be a finite number, got {r[name]!r}")
            rec = {
                "segmentation": seg,
                "area": area,
                "bbox": [v for v in bbox],
                "predicted_iou": float(r["predicted_iou"]),
                "stability_score": float(r["stability_score"]),
            }
            for name, n in (("point_coords", None), ("crop_box", 4)):
                if name in r:
                    rec[name] = _plain_numbers(r[name], name, n)
        except (SegmentationError, ValueError, TypeError) as exc:
            raise ValueError(f"record {i}: {exc}") from None
        out.append(rec)
    return out


def _plain_numbers(value: Any, name: str, length: Optional[int]) -> Any:
    flat = value
    if name == "point_coords":
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            raise ValueError(f"point_coords must be [[x, y], ...], got {value!r}")
        flat = [v for p in value for v in p]
    elif not (isinstance(value, (list, tuple)) and len(value) == length):
        raise ValueError(f"{name} must have {length} numbers, got {value!r}")
    if not all(_finite(v) for v in flat):
        raise ValueError(f"{name} must hold finite numbers, got {value!r}")
    return [list(p) for p in value] if name == "point_coords" else list(value)


# ----------------------------------------------------------------------------
# the file


class ProposalStore:
    """Read and write one proposals file (see the module notes).

    Parameters
    ----------
    path:
        The ``.proposals.sqlite3`` file (:func:`proposals_path`).
    create:
        Writers pass ``True``: a missing file is created. Readers (the
        default) get :class:`ProposalsError` for a missing file.

    Each call opens its own connection (closed after), so one store may be
    used from any thread; there is no state between calls.
    """

    def __init__(self, path: PathLike, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ProposalsError(self.path, "does not exist (run sam-annotator auto on the folder first)")
        with self._connect(write=create) as con:
            if create:
                self._init(con)
            self._check_meta(con)

    @classmethod
    def beside(cls, working_file: PathLike, *, create: bool = False) -> "ProposalStore":
        return cls(proposals_path(working_file), create=create)

    # -- connection -----------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.path, timeout=30.0)
            else:  # never creates or changes the file
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        except (sqlite3.Error, OSError) as exc:
            raise ProposalsError(self.path, f"cannot be opened ({exc})") from None
        try:
            with con:
                yield con
        except sqlite3.DatabaseError as exc:
            raise ProposalsError(self.path, f"is not a readable proposals file ({exc})") from None
        finally:
            con.close()

    def _init(self, con: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            con.execute(statement)
        con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT_NAME,))
        con.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(FORMAT_VERSION),))

    def _check_meta(self, con: sqlite3.Connection) -> None:
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            con.execute(f"SELECT {_COLUMNS} FROM proposals LIMIT 0")
        except sqlite3.OperationalError as exc:  # no such table / column
            raise ProposalsError(self.path, f"is not a proposals file ({exc})") from None
        if meta.get("format") != FORMAT_NAME:
            raise ProposalsError(self.path, f"is not a proposals file (format {meta.get('format')!r})")
        if meta.get("version") != str(FORMAT_VERSION):
            raise ProposalsError(
                self.path,
                f"has format version {meta.get('version')!r}; this sam-annotator reads version {FORMAT_VERSION} "
                "(run sam-annotator auto again, or update sam-annotator)",
            )

    # -- writing --------------------------------------------------------------------

    def put_many(self, rows: Iterable[StoredProposals]) -> int:
        """Write (or replace) rows, all in one transaction; returns how many. Records are validated first."""
        values = []
        for row in rows:
            h, w = (int(v) for v in row.size)
            try:
                records = validate_records(list(row.records), h, w)
            except ValueError as exc:
                raise ValueError(f"proposals of {row.file_name}: {exc}") from None
            blob = zlib.compress(json.dumps(records, separators=(",", ":")).encode("utf-8"), 6)
            values.append((
                str(row.file_name), str(row.digest), h, w, str(row.model_type), str(row.checkpoint_id),
                row.params.to_json(), float(row.seconds), float(row.created), len(records), blob,
            ))
        if values:
            with self._connect(write=True) as con:
                con.executemany(f"INSERT OR REPLACE INTO proposals ({_COLUMNS}) VALUES ({','.join('?' * 11)})",
                                values)
        return len(values)

    def put(self, row: StoredProposals) -> None:
        self.put_many([row])

    # -- reading --------------------------------------------------------------------

    def digests(self) -> Dict[str, Tuple[str, str]]:
        """``file_name -> (digest, signature)`` of every row (no records read); see :func:`signature`."""
        with self._connect() as con:
            rows = con.execute("SELECT file_name, digest, model_type, checkpoint_id, params FROM proposals")
            return {name: (digest, signature(mt, ck, params)) for name, digest, mt, ck, params in rows}

    def get(self, file_name: str, digest: Optional[str] = None) -> Optional[StoredProposals]:
        """The row of ``file_name``, or ``None`` if there is none or its ``digest`` differs (the image changed).

        Raises
        ------
        ProposalsError
            The row is malformed (the message names the image and the problem).
        """
        with self._connect() as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM proposals WHERE file_name = ?", (file_name,)).fetchone()
        if row is None or (digest is not None and row[1] != digest):
            return None
        return self._decode(row)

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM proposals").fetchone()[0])

    def _decode(self, row: Sequence[Any]) -> StoredProposals:
        name, digest, h, w, model_type, checkpoint_id, params, seconds, created, count, blob = row
        try:
            if type(h) is not int or type(w) is not int or h < 1 or w < 1:
                raise ValueError(f"bad image size {h!r} x {w!r}")
            try:
                params_obj = GeneratorParams.from_mapping(json.loads(params))
                records = json.loads(zlib.decompress(blob).decode("utf-8"))
            except (zlib.error, UnicodeDecodeError, TypeError) as exc:
                raise ValueError(f"records cannot be decoded ({exc})") from None
            records = validate_records(records, h, w)
            if len(records) != count:
                raise ValueError(f"{len(records)} records where {count} were written")
        except ValueError as exc:
            raise ProposalsError(self.path, f"proposals of {name}: {exc}") from None
        return StoredProposals(
            file_name=name, digest=digest, size=(h, w), model_type=model_type, checkpoint_id=checkpoint_id,
            params=params_obj, seconds=float(seconds), created=float(created), records=tuple(records),
        )


def signature(model_type: str, checkpoint_id: str, params: Union[str, GeneratorParams]) -> str:
    """What, besides the image, decides the proposals: model, weights and parameters (one string)."""
    if isinstance(params, GeneratorParams):
        params = params.to_json()
    else:
        params = json.dumps(json.loads(params), sort_keys=True)
    return json.dumps([model_type, checkpoint_id, params])


def load_for_review(
    working_file: PathLike, file_name: str, digest: str
) -> Optional[Tuple[Tuple[int, int], List[Dict[str, Any]]]]:
    """An image's stored proposals for the window's review, or ``None`` when there are none for this content.

    Parameters
    ----------
    working_file:
        The window's working file; its proposals file is :func:`proposals_path` of it.
    file_name:
        The image's ``file_name`` (``Dataset.relative_name(path)``).
    digest:
        The content digest of the image as loaded now (``LoadedImage.digest``).

    Returns
    -------
    ((height, width), records) or None
        ``records`` as :meth:`sam_core.AutomaticMaskGenerator.generate` returns
        them, for ``prepare_proposals(records, height, width)``; ``None`` when
        there is no proposals file, no row for the image, or the image changed.

    Raises
    ------
    ProposalsError
        The file or the row cannot be used (say so to the user; run segment
        everything instead).
    """
    path = proposals_path(working_file)
    if not path.is_file():
        return None
    stored = ProposalStore(path).get(file_name, digest)
    if stored is None:
        return None
    return stored.size, list(stored.records)
