"""The annotation document: images, categories and masks, without Qt.

The working file is COCO JSON (see :mod:`annotator.data.coco` for conventions):

* ``images``: ``id``, ``file_name`` (POSIX path relative to the JSON file's
  folder), ``width``, ``height`` (after EXIF orientation, as
  :func:`annotator.data.imageio.image_size` reports), and the user's
  ``state`` (``"todo"``, ``"done"``, ``"skipped"``; see
  :mod:`annotator.data.image_states`: done with no annotations is a negative).
* ``categories``: ``id`` (from 1), ``name``, ``supercategory`` and our display
  colour in an extra ``color`` field, ``[r, g, b]`` 0..255.
* ``annotations``: ``id`` (unique, from 1), ``image_id``, ``category_id``,
  ``segmentation`` as compressed RLE ``{"size": [h, w], "counts": str}``,
  ``area`` from ``pycocotools.mask.area``, ``bbox`` ``[x, y, w, h]`` from
  ``toBbox``, ``iscrowd``, and extra fields (``predicted_iou``, ``model``...).

Loading accepts compressed RLE (``counts`` as ``str`` or ``bytes``),
uncompressed RLE and polygons, and turns them all into compressed RLE in
memory; ``area`` and ``bbox`` are recomputed from the mask. Ids stay as they
were, and every field we do not know (top level, image, category,
annotation) is kept and written back. A bad file raises :class:`DatasetError`
and is never written on load.

Whatever the loader accepts can be saved and reads back equal (see
:mod:`annotator.data.jsonsafe`): numbers JSON cannot hold become ``null`` at
load (listed in :attr:`Dataset.load_notes`), extra fields nested absurdly
deep and integers of thousands of digits are refused with a message, and
strings that are not valid Unicode (a file name that is not UTF-8) are
written as escapes. A file name holding a NUL character is refused.

Changes bump :attr:`Dataset.revision`; :meth:`Dataset.save` writes atomically
(after a once-per-session backup of an existing file) and records the revision
it saved in :attr:`Dataset.saved_revision`, only on success. Every failure of a
save is a :class:`~annotator.data.workfile.SaveError` (an ``OSError``), after
which the document is unchanged, still dirty and fully usable;
:meth:`Dataset.save_copy` writes a copy elsewhere. The disk side (reading only
regular files, the one-writer lock, external changes and conflict copies) is
:class:`annotator.data.workfile.WorkingFile`.

Each image entry may record ``file_sha256``, the SHA-256 of the image file the
masks were made on (see :mod:`annotator.data.identity`);
:meth:`Dataset.changed_images` lists the images whose file changed since.

A :class:`Dataset` is not thread-safe: mutate and serialise it on one thread
(:meth:`Dataset.to_json` gives a snapshot string another thread may write).

Why so long: this module is about 900 lines and :class:`Dataset` about 750, over the
usual limits, because the class is the single owner of the document's
invariants (ids never reused, the per-image and per-file indexes, the
revision that decides what is unsaved) and every change must go through it.
What does not need those invariants is elsewhere: the records
(:mod:`annotator.data.records`), parsing (:mod:`annotator.data.loader`), the
disk side (:mod:`annotator.data.workfile`) and image identity
(:mod:`annotator.data.identity`). Splitting the editing methods into mixins
would spread the invariants over modules that reach into each other's state.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from annotator.data import coco, identity, jsonsafe, names, palette, savecache
from annotator.data.atomic import write_protected
from annotator.data.files import FileTooLargeError, NotRegularFileError
from annotator.data.loader import parse_working_file
from annotator.data.lock import LockHolder
from annotator.data.savecache import LineCache, PreRendered, annotation_lines, image_lines, join_sections
from annotator.data.workfile import ConflictError, ReadOnlyError, SaveError, WorkingFile

__all__ = [
    "Category",
    "ImageRecord",
    "Annotation",
    "RemovedCategory",
    "DatasetError",
    "Dataset",
    "DEFAULT_PALETTE",
    "ANNOTATIONS_FILENAME",
    "dumps_coco",
    "SaveError",
    "ConflictError",
    "ReadOnlyError",
    "ImageChangedError",
]

from annotator.data.records import (  # noqa: F401  (re-exported: the public names of this module)
    _ANNOTATION_KEYS,
    _CATEGORY_KEYS,
    _IMAGE_KEYS,
    _TOP_KEYS,
    ANNOTATIONS_FILENAME,
    DEFAULT_PALETTE,
    Annotation,
    Category,
    Color,
    DatasetError,
    ImageRecord,
    PathLike,
    RemovedCategory,
    _color,
    _plain,
    dumps_coco,
)


#: Largest id written (ids are JSON numbers: 2**53 - 1 is the largest every reader holds exactly;
#: :func:`annotator.data.coco.inspect_coco` refuses larger ones).
MAX_ID = (1 << 53) - 1


class ImageChangedError(DatasetError):
    """An annotated image's file is another picture now (its recorded SHA-256 differs)."""


class Dataset:
    """Images, categories and annotations of one working file.

    Attributes
    ----------
    path : Path
        The JSON file.
    root : Path
        Its folder; ``ImageRecord.file_name`` is relative to it.
    image_dir : Path
        The folder of images being annotated (defaults to ``root``).
    images, categories, annotations : dict
        By id.
    info : dict
    licenses : list
    extra : dict
        Unknown top-level keys, written back unchanged.
    revision : int
        Incremented on every change.
    saved_revision : int
        The revision last written (or loaded); :attr:`dirty` compares them.

    ``Dataset(path)`` is an empty document for ``path`` that ignores any file
    there (use it only once the user chose to replace a bad file; the first
    save backs that file up). :meth:`open` loads the file.
    """

    def __init__(self, path: PathLike, image_dir: Optional[PathLike] = None):
        self.path = Path(path)
        self.root = self.path.parent
        self.image_dir = Path(image_dir) if image_dir is not None else self.root
        self.images: Dict[int, ImageRecord] = {}
        self.categories: Dict[int, Category] = {}
        self.annotations: Dict[int, Annotation] = {}
        self.info: Dict[str, Any] = {"description": "sam-annotator annotations"}
        self.licenses: List[Any] = []
        self.extra: Dict[str, Any] = {}
        self.revision = 0
        self.saved_revision = 0
        self._next_annotation_id = 1
        self._next_category_id = 1
        self._issued: set = set()  # (kind, id) handed out below the maximum, or removed (see _fresh_id)
        self._by_image: Dict[int, Dict[int, None]] = {}
        self._by_file: Dict[str, int] = {}
        # names.name_key(file_name) -> id, for the records that spell their file otherwise (usually none)
        self._by_key: Dict[str, int] = {}
        self._respelled: Dict[int, str] = {}  # id -> key of every such record
        #: Things the loader changed or noticed, one sentence each (numbers JSON cannot hold, no lock...).
        self.load_notes: List[str] = []
        self._file = WorkingFile(self.path)
        # each record's JSON line, reused by to_json while the record is unchanged (see annotator.data.savecache)
        self._annotation_lines: LineCache[Annotation] = annotation_lines()
        self._image_lines: LineCache[ImageRecord] = image_lines()

    # ------------------------------------------------------------------ loading

    @classmethod
    def open(cls, path: PathLike, image_dir: Optional[PathLike] = None, *, lock: bool = False) -> "Dataset":
        """Load ``path`` if it exists, else return an empty dataset for it.

        Parameters
        ----------
        path
            The working file. Only a regular file is read (symlinks followed),
            of at most :data:`annotator.data.workfile.MAX_WORKING_FILE_BYTES`.
        image_dir
            The folder of images (default: the file's folder).
        lock
            Take the working file's lock first (see :mod:`annotator.data.lock`)
            and remove our temporary files left by an interrupted save. When
            another window or process holds it, the document opens
            read-only: :attr:`read_only` says why and by whom, and
            :meth:`save` raises :class:`~annotator.data.workfile.ReadOnlyError`
            (:meth:`save_copy` works). A lock that cannot be created (a
            read-only folder) is noted in :attr:`load_notes`.

        Raises
        ------
        DatasetError
            The file cannot be read (a FIFO, a device, a symlink loop, too
            large, permission denied...), is not UTF-8 JSON (the message
            gives line and column), or is not a valid COCO segmentation file:
            wrong schema, non-integer or duplicate ids, annotations for
            missing images or categories, RLE whose size disagrees with its
            image, malformed RLE or polygons, extra fields nested more than
            :data:`annotator.data.jsonsafe.MAX_EXTRA_DEPTH` levels. The file
            is never modified, and no lock is kept.
        """
        ds = cls(path, image_dir)
        ds._file = WorkingFile(ds.path, check_external=True)
        p = ds.path
        if lock:
            try:
                ds._file.lock()
            except OSError as exc:
                ds.load_notes.append(
                    f"the lock file beside {p.name} cannot be created ({exc.strerror or exc}): "
                    "another window could write this file at the same time"
                )
        try:
            raw = ds._file.read()
            if raw is not None:
                with _gc_paused():
                    ds._load(raw)
                ds._note_write_protected()
        except NotRegularFileError as exc:
            ds._file.unlock()
            if exc.kind == "folder":
                raise DatasetError(p, "this is a folder, not an annotation file") from None
            raise DatasetError(p, f"cannot be read: it is {exc.strerror}") from None
        except FileTooLargeError as exc:
            ds._file.unlock()
            raise DatasetError(p, f"cannot be read: {exc.strerror}") from None
        except FileNotFoundError:  # only a broken symlink gets here: a missing file is an empty document
            ds._file.unlock()
            raise DatasetError(
                p, f"is a symbolic link to {os.readlink(p)}, which does not exist (a drive that is not mounted?)"
            ) from None
        except OSError as exc:
            ds._file.unlock()
            raise DatasetError(p, f"cannot be read ({exc.strerror or exc})") from None
        except BaseException:
            ds._file.unlock()
            raise
        return ds

    def _note_write_protected(self) -> None:
        try:
            protected = write_protected(os.stat(self.path), self.path)
        except OSError:
            return
        if protected:
            self.load_notes.append(
                f"{self.path.name} is write-protected (its permissions are read-only): changes cannot be saved "
                "to it until it is made writable; File > Save a Copy keeps them elsewhere"
            )

    def _load(self, raw: bytes) -> None:
        parsed = parse_working_file(self.path, raw)
        self.info, self.licenses, self.extra = parsed.info, parsed.licenses, parsed.extra
        for rec in parsed.images:
            self.images[rec.id] = rec
            self._by_file[rec.file_name] = rec.id
            self._by_image[rec.id] = {}
        for rec in parsed.images:
            key = names.name_key(rec.file_name, self.root)
            if key == rec.file_name:
                continue
            self._respelled[rec.id] = key
            first = self._by_file.get(key)
            if first is None:
                first = self._by_key.setdefault(key, rec.id)
            if first != rec.id:
                self.load_notes.append(
                    f"image id {rec.id} '{rec.file_name}' and image id {first} '{self.images[first].file_name}' "
                    f"name the same file; new annotations on it go to image id {first}"
                )
        self.categories = {cat.id: cat for cat in parsed.categories}
        for a in parsed.annotations:
            self.annotations[a.id] = a
            self._by_image[a.image_id][a.id] = None
        self._next_annotation_id = max(self.annotations, default=0) + 1
        self._next_category_id = max(self.categories, default=0) + 1
        self.load_notes.extend(parsed.notes)

    # ------------------------------------------------------------------ the file on disk

    @property
    def read_only(self) -> Optional[str]:
        """Why this document must not be saved over its file (another window holds it), or ``None``."""
        return self._file.read_only

    @property
    def lock_holder(self) -> Optional[LockHolder]:
        """Who holds the working file when this document is read-only."""
        return self._file.holder

    @property
    def locked(self) -> bool:
        """Whether this document holds its working file's lock."""
        return self._file.locked

    @property
    def conflict_copy(self) -> Optional[Path]:
        """Where the last save put this document's version because the file had changed on disk."""
        return self._file.conflict_copy

    def changed_on_disk(self) -> bool:
        """Whether another program changed the working file since this document read or wrote it."""
        return self._file.changed_on_disk()

    def acquire_lock(self) -> Optional[str]:
        """Take the working file's lock now, as ``open(..., lock=True)`` does (e.g. for ``Dataset(path)``).

        Returns
        -------
        str or None
            ``None`` when this document holds the lock; otherwise why it is
            read-only (:attr:`read_only`).

        Raises
        ------
        OSError
            The lock file cannot be created (a read-only folder).
        """
        self._file.lock()
        return self.read_only

    def close(self) -> None:
        """Release the working file's lock (the document stays usable in memory, and read-only-free)."""
        self._file.unlock()

    # ------------------------------------------------------------------ state

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return self.revision != self.saved_revision

    def _changed(self) -> None:
        self.revision += 1

    # ------------------------------------------------------------------ images

    def relative_name(self, image_path: PathLike) -> str:
        """``file_name`` for an image file: POSIX path relative to :attr:`root`.

        Remembered per (path, root, working directory): the image list asks
        for every image of the folder whenever its counts change (about 30 us
        each, 150 ms for 5,000 images, before).
        """
        return _relative_name(os.fspath(image_path), os.fspath(self.root), os.getcwd())

    def image_path(self, image: Union[int, ImageRecord]) -> Path:
        """The file of an image record (``root / file_name``, Windows separators read as ``/``)."""
        rec = self.images[image] if isinstance(image, int) else image
        return self.root / names.local_name(rec.file_name, self.root)

    def image_by_name(self, file_name: str) -> Optional[ImageRecord]:
        """The record of the file ``file_name`` (as :meth:`relative_name` spells it), or None.

        A record spelling the same file otherwise (``./a.jpg``, ``sub\\a.jpg``,
        an absolute path: see :mod:`annotator.data.names`) is found too, so an
        accept adds to it rather than making a second record for the file.
        """
        iid = self._by_file.get(file_name)
        if iid is None and self._by_key:
            iid = self._by_key.get(names.name_key(file_name, self.root))
        return None if iid is None else self.images[iid]

    def ensure_image(
        self, file_name: str, width: int, height: int, *, file_sha256: Optional[str] = None
    ) -> ImageRecord:
        """The record for ``file_name``, created (new id = max + 1) if needed.

        Parameters
        ----------
        file_name
            POSIX path relative to :attr:`root` (see :meth:`relative_name`).
        width, height
            Size of the image as displayed (EXIF orientation applied).
        file_sha256
            :func:`annotator.data.identity.file_sha256` of the image file, to
            record (a new record, or one without a digest yet) or to check.

        Raises
        ------
        DatasetError
            The image is already recorded with another size (the file changed,
            or was rotated): its masks would no longer line up.
        ImageChangedError
            The image has annotations and its recorded digest is not
            ``file_sha256``: another picture is there now (see
            :meth:`set_image_digest` once the user has reviewed them).
        """
        if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
            raise ValueError(f"file_name must be a non-empty string without NUL, got {file_name!r}")
        if not (coco._is_int(width) and coco._is_int(height) and width >= 1 and height >= 1):
            raise ValueError(f"width and height must be positive integers, got {width!r} x {height!r}")
        if file_sha256 is not None and not identity.is_sha256(file_sha256):
            raise ValueError(f"file_sha256 must be 64 lowercase hex characters, got {file_sha256!r}")
        rec = self.image_by_name(file_name)
        if rec is not None:
            if (rec.width, rec.height) != (width, height):
                raise DatasetError(
                    self.path,
                    f"image '{file_name}' is {width} x {height} pixels now, but the annotation file "
                    f"records {rec.width} x {rec.height} (width x height): its masks would not line up",
                )
            recorded = rec.extra.get(identity.DIGEST_FIELD)
            if file_sha256 is not None and recorded != file_sha256:
                if identity.is_sha256(recorded) and self._by_image.get(rec.id):
                    raise ImageChangedError(
                        self.path,
                        f"image '{file_name}' is another picture than the one its "
                        f"{len(self._by_image[rec.id])} annotation(s) were made on (its content changed); "
                        "they need review before they are shown on it",
                    )
                rec.extra[identity.DIGEST_FIELD] = file_sha256
                self._changed()
            return rec
        rec = ImageRecord(id=self._fresh_id("image", max(self.images, default=0) + 1, self.images),
                          file_name=file_name, width=int(width), height=int(height))
        if file_sha256 is not None:
            rec.extra[identity.DIGEST_FIELD] = file_sha256
        self.images[rec.id] = rec
        self._by_file[file_name] = rec.id
        self._index_spelling(rec)
        self._by_image[rec.id] = {}
        self._changed()
        return rec

    def _index_spelling(self, rec: ImageRecord) -> None:
        """Let :meth:`image_by_name` find ``rec`` by the usual spelling of its file, if it spells it otherwise."""
        key = names.name_key(rec.file_name, self.root)
        if key != rec.file_name:
            self._respelled[rec.id] = key
            if key not in self._by_file:
                self._by_key.setdefault(key, rec.id)

    def check_image_sizes(self) -> List[str]:
        """Compare every record with its image file (header only).

        Returns
        -------
        list of str
            One sentence per image whose file is missing, unreadable or of
            another size than recorded.
        """
        from annotator.data.imageio import ImageLoadError, image_size

        problems = []
        for rec in self.images.values():
            try:
                w, h = image_size(self.image_path(rec))
            except ImageLoadError as exc:
                problems.append(f"image id {rec.id} '{rec.file_name}': {exc.problem}")
                continue
            if (w, h) != (rec.width, rec.height):
                problems.append(
                    f"image id {rec.id} '{rec.file_name}': the file is {w} x {h} but the annotation "
                    f"file records {rec.width} x {rec.height} (width x height)"
                )
        return problems

    def image_digest_records(self) -> List[Tuple[int, str, Path, str, Tuple[int, ...]]]:
        """``(image_id, file_name, path, recorded sha256, annotation ids)`` of every image with a digest.

        A snapshot to hand to :func:`annotator.data.identity.find_changed` on
        another thread (this object is not thread-safe; the snapshot is).
        """
        out = []
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            recorded = rec.extra.get(identity.DIGEST_FIELD)
            if identity.is_sha256(recorded):
                anns = tuple(sorted(self._by_image.get(rec.id, ())))
                out.append((rec.id, rec.file_name, self.image_path(rec), recorded, anns))
        return out

    def changed_images(self, cancel: Optional[threading.Event] = None) -> List[identity.ImageChange]:
        """Images whose file is missing or is another picture than the one recorded (reads every file).

        Images without a recorded digest are not checked. For a large folder,
        call :meth:`image_digest_records` here and
        :func:`annotator.data.identity.find_changed` on a worker thread.
        """
        return identity.find_changed(self.image_digest_records(), cancel=cancel)

    def set_image_digest(self, image_id: int, file_sha256: Optional[str]) -> Optional[str]:
        """Record ``file_sha256`` as the picture image ``image_id``'s masks belong to (``None``: forget it).

        For the window once the user reviewed a changed image's annotations.
        Returns the old digest.
        """
        rec = self.images[image_id]
        if file_sha256 is not None and not identity.is_sha256(file_sha256):
            raise ValueError(f"file_sha256 must be 64 lowercase hex characters, got {file_sha256!r}")
        old = rec.extra.get(identity.DIGEST_FIELD)
        if file_sha256 is None:
            rec.extra.pop(identity.DIGEST_FIELD, None)
        else:
            rec.extra[identity.DIGEST_FIELD] = file_sha256
        if old != file_sha256:
            self._changed()
        return old if isinstance(old, str) else None

    def set_image_state(self, image_id: int, state: Optional[str]) -> Any:
        """Record image ``image_id``'s state (see :mod:`annotator.data.image_states`); ``None`` removes the field.

        Returns the old value of the field (``None`` when absent), for undo.
        Raises ValueError for a value not in :data:`annotator.data.image_states.STATES`.
        """
        from annotator.data.image_states import STATE_FIELD, STATES

        if state is not None and state not in STATES:
            raise ValueError(f"an image state is one of {', '.join(STATES)}, got {state!r}")
        rec = self.images[image_id]
        old = rec.extra.get(STATE_FIELD)
        if state is None:
            rec.extra.pop(STATE_FIELD, None)
        else:
            rec.extra[STATE_FIELD] = state
        if old != state:
            self._changed()
        return old

    def remove_image(self, image_id: int) -> ImageRecord:
        """Remove an image record that has no annotations (undoing the step that listed it); returns it.

        Raises ValueError when it has annotations (their image must stay).
        """
        if self._by_image.get(image_id):
            raise ValueError(f"image id {image_id} has annotations: it cannot be removed")
        rec = self.images.pop(image_id)
        self._issued.add(("image", image_id))  # an undo may bring it back: never handed out again (_fresh_id)
        self._by_image.pop(image_id, None)
        if self._by_file.get(rec.file_name) == image_id:
            del self._by_file[rec.file_name]
        key = names.name_key(rec.file_name, self.root)
        if self._by_key.get(key) == image_id:
            del self._by_key[key]
        self._respelled.pop(image_id, None)
        if key not in self._by_file and key not in self._by_key:  # another spelling of the file takes over
            for other_id in sorted(i for i, k in self._respelled.items() if k == key):
                self._index_spelling(self.images[other_id])
        self._changed()
        return rec

    def restore_image(self, rec: ImageRecord) -> None:
        """Undo :meth:`remove_image`: the same record with the same id (redoing a step that listed it).

        Raises ValueError when its id or its ``file_name`` is in use again.
        """
        if rec.id in self.images or rec.file_name in self._by_file:
            raise ValueError(f"image id {rec.id} or '{rec.file_name}' is in use")
        self.images[rec.id] = rec
        self._by_file[rec.file_name] = rec.id
        self._index_spelling(rec)
        self._by_image[rec.id] = {}
        self._changed()

    # ------------------------------------------------------------------ categories

    def category_by_name(self, name: str) -> Optional[Category]:
        """The first category called ``name``, or None."""
        for cat in self.categories.values():
            if cat.name == name:
                return cat
        return None

    def add_category(self, name: str, color: Optional[Sequence[int]] = None, supercategory: str = "") -> Category:
        """Create a category (new id: one more than any id used so far, from 1).

        ``color`` defaults to the next :data:`DEFAULT_PALETTE` entry.

        Raises
        ------
        ValueError
            Empty name, a name already used, or an invalid colour.
        """
        name = self._check_name(name)
        cid = self._fresh_id("category", self._next_category_id, self.categories)
        if color is None:
            rgb = palette.category_color(cid)
        else:
            rgb = self._check_color(color)
        cat = Category(id=cid, name=name, color=rgb, supercategory=supercategory)
        self._next_category_id = max(self._next_category_id, cid + 1)
        self.categories[cat.id] = cat
        self._changed()
        return cat

    def add_categories(self, entries: Iterable[Tuple[str, Optional[Sequence[int]]]]) -> List[Category]:
        """Add ``(name, color)`` pairs whose name is not present yet (e.g. defaults)."""
        added = []
        for name, color in entries:
            if self.category_by_name(name) is None:
                added.append(self.add_category(name, color))
        return added

    def rename_category(self, category_id: int, name: str) -> str:
        """Rename; returns the old name. Raises ValueError on an empty or used name."""
        cat = self.categories[category_id]
        name = self._check_name(name, allow_id=category_id)
        old, cat.name = cat.name, name
        self._changed()
        return old

    def recolor_category(self, category_id: int, color: Sequence[int]) -> Color:
        """Change the display colour; returns the old one."""
        cat = self.categories[category_id]
        old, cat.color = cat.color, self._check_color(color)
        self._changed()
        return old

    def remove_category(self, category_id: int, reassign_to: Optional[int] = None) -> RemovedCategory:
        """Remove a category and deal with its annotations.

        Parameters
        ----------
        category_id
            The category to remove.
        reassign_to
            Move its annotations to this category; ``None`` removes them.

        Returns
        -------
        RemovedCategory
            Everything needed by :meth:`restore_category` to undo this.
        """
        cat = self.categories[category_id]
        if reassign_to is not None and (reassign_to == category_id or reassign_to not in self.categories):
            raise ValueError(f"cannot reassign annotations to category {reassign_to!r}")
        affected = [a for a in self.annotations.values() if a.category_id == category_id]
        removed: List[Annotation] = []
        moved: List[int] = []
        for a in affected:
            if reassign_to is None:
                removed.append(self._remove(a.id))
            else:
                a.category_id = reassign_to
                moved.append(a.id)
        del self.categories[category_id]
        self._issued.add(("category", category_id))  # (see _fresh_id)
        self._changed()
        return RemovedCategory(cat, removed, moved, reassign_to)

    def restore_category(self, removed: RemovedCategory) -> None:
        """Undo :meth:`remove_category`: same ids, same annotations."""
        cat = removed.category
        if cat.id in self.categories:
            raise ValueError(f"category id {cat.id} is in use")
        self.categories[cat.id] = cat
        self._next_category_id = max(self._next_category_id, cat.id + 1)
        for a in removed.removed_annotations:
            self._insert(a)
        for aid in removed.reassigned:
            if aid in self.annotations:
                self.annotations[aid].category_id = cat.id
        self._changed()

    def _check_name(self, name: str, allow_id: Optional[int] = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a category name cannot be empty")
        name = name.strip()
        other = self.category_by_name(name)
        if other is not None and other.id != allow_id:
            raise ValueError(f"a category called {name!r} already exists")
        return name

    @staticmethod
    def _check_color(color: Sequence[int]) -> Color:
        rgb = _color(list(color) if not isinstance(color, str) else color)
        if rgb is None:
            raise ValueError(f"colour must be three integers 0..255, got {color!r}")
        return rgb

    # ------------------------------------------------------------------ annotations

    def make_annotation(
        self,
        image_id: int,
        category_id: int,
        mask: Optional[np.ndarray] = None,
        *,
        rle: Optional[Mapping[str, Any]] = None,
        **extra: Any,
    ) -> Annotation:
        """Build (not add) an annotation with a fresh id.

        Parameters
        ----------
        image_id, category_id
            Existing ids.
        mask
            ``(height, width)`` of the image, bool (non-zero = inside).
        rle
            Instead of ``mask``: the mask already encoded, as compressed COCO
            RLE ``{"size": [height, width], "counts": str or bytes}`` (e.g.
            computed off the GUI thread, so a 12 MP mask is not encoded twice).
            It is checked to decode to the image's size; ``counts`` is stored as str.
            When both are given, ``rle`` is used and must describe ``mask``.
        **extra
            Extra fields (``predicted_iou=0.93, model="vit_t"``); numpy
            scalars and arrays are converted to plain Python.

        Returns
        -------
        Annotation
            Id = one more than any id used so far in this session (never
            reused, even after deletion); area and bbox from pycocotools.

        Raises
        ------
        KeyError
            Unknown image or category id.
        ValueError
            Neither or a malformed ``mask``/``rle``, or one whose size is not the image's.
        """
        rec = self.images[image_id]
        if category_id not in self.categories:
            raise KeyError(f"unknown category id {category_id}")
        if rle is not None:
            segmentation = coco.to_compressed_rle(dict(rle), rec.height, rec.width)
        elif mask is not None:
            m = np.asarray(mask)
            if m.shape != (rec.height, rec.width):
                raise ValueError(
                    f"mask shape {m.shape} does not match image '{rec.file_name}' "
                    f"(height {rec.height}, width {rec.width})"
                )
            segmentation = coco.encode_mask(m)
        else:
            raise ValueError("make_annotation needs a mask or an rle")
        plain_extra = _plain(dict(extra), "extra")
        aid = self._fresh_id("annotation", self._next_annotation_id, self.annotations)
        ann = Annotation(
            id=aid,
            image_id=image_id,
            category_id=category_id,
            segmentation=segmentation,
            area=coco.rle_area(segmentation),
            bbox=coco.rle_bbox(segmentation),
            iscrowd=0,
            extra=plain_extra,
        )
        self._next_annotation_id = max(self._next_annotation_id, aid + 1)
        return ann

    def _fresh_id(self, kind: str, following: int, used: Mapping[int, Any]) -> int:
        """``following`` (one more than any id so far), or, past :data:`MAX_ID`, the lowest id never used.

        An id past :data:`MAX_ID` is not an exact JSON number for most readers,
        and our own loader refuses it: a file that numbers from near the limit
        (ids made from timestamps or hashes) would otherwise be saved with ids
        that make it impossible to open again. Below the maximum, an id is
        taken only if it is free, was never handed out in this session and
        was not removed in it (an undo may still bring back what had it).
        """
        if following <= MAX_ID:
            return following
        n = 1
        while n in used or (kind, n) in self._issued:
            n += 1
        self._issued.add((kind, n))
        return n

    def add_annotation(self, ann: Annotation) -> None:
        """Add an annotation, keeping its id (so undoing a removal restores it)."""
        self._insert(ann)
        self._changed()

    def remove_annotation(self, annotation_id: int) -> Annotation:
        """Remove and return an annotation (KeyError if absent)."""
        ann = self._remove(annotation_id)
        self._changed()
        return ann

    def replace_annotation(self, ann: Annotation) -> Annotation:
        """Put ``ann`` in place of the annotation with the same id; returns the old one."""
        old = self.annotations[ann.id]
        self._remove(ann.id)
        try:
            self._insert(ann)
        except Exception:
            self._insert(old)
            raise
        self._changed()
        return old

    def set_annotation_category(self, annotation_id: int, category_id: int) -> int:
        """Change an annotation's category; returns the old category id."""
        ann = self.annotations[annotation_id]
        if category_id not in self.categories:
            raise KeyError(f"unknown category id {category_id}")
        old, ann.category_id = ann.category_id, category_id
        self._changed()
        return old

    def annotations_for(self, image_id: int) -> List[Annotation]:
        """Annotations of one image, by increasing id."""
        return [self.annotations[aid] for aid in sorted(self._by_image.get(image_id, ()))]

    def _insert(self, ann: Annotation) -> None:
        if ann.id in self.annotations:
            raise ValueError(f"annotation id {ann.id} is already in use")
        if not coco._is_int(ann.id) or ann.id < 1:
            raise ValueError(f"annotation id must be an integer >= 1, got {ann.id!r}")
        rec = self.images.get(ann.image_id)
        if rec is None:
            raise KeyError(f"unknown image id {ann.image_id}")
        if ann.category_id not in self.categories:
            raise KeyError(f"unknown category id {ann.category_id}")
        if ann.size != (rec.height, rec.width):
            raise ValueError(
                f"annotation {ann.id}: mask size {ann.size} does not match image "
                f"'{rec.file_name}' (height {rec.height}, width {rec.width})"
            )
        self.annotations[ann.id] = ann
        self._by_image.setdefault(ann.image_id, {})[ann.id] = None
        self._next_annotation_id = max(self._next_annotation_id, ann.id + 1)

    def _remove(self, annotation_id: int) -> Annotation:
        ann = self.annotations.pop(annotation_id)
        self._issued.add(("annotation", annotation_id))  # (see _fresh_id)
        self._by_image.get(ann.image_id, {}).pop(annotation_id, None)
        return ann

    # ------------------------------------------------------------------ saving

    def to_coco(self, root: Optional[PathLike] = None) -> Dict[str, Any]:
        """The dataset as a COCO dict of plain Python types (``json.dumps``-safe).

        Parameters
        ----------
        root
            Folder the ``file_name`` values should be relative to (the folder
            of the file being written); default :attr:`root`.
        """
        out: Dict[str, Any] = {"info": _plain(self.info, "info"), "licenses": _plain(self.licenses, "licenses")}
        out.update({k: v for k, v in _plain(self.extra, "top level").items() if k not in _TOP_KEYS})
        out["images"] = self._image_items(root)
        out["annotations"] = [a.to_json() for a in sorted(self.annotations.values(), key=lambda a: a.id)]
        out["categories"] = [c.to_json() for c in sorted(self.categories.values(), key=lambda c: c.id)]
        return out

    def to_json(self, root: Optional[PathLike] = None) -> str:
        """:meth:`to_coco` as strict JSON text (no NaN), one list item per line.

        One image, category or annotation per line keeps the file diffable
        and lets :mod:`json` use its fast C encoder (it has none for
        indented output). The text is ``dumps_coco(self.to_coco(root))``
        exactly, but the line of every image and annotation unchanged since
        the last call is reused (:mod:`annotator.data.savecache`): a save after
        one accept does not serialise the other 100,000 annotations again.
        An annotation is seen as changed when it is replaced or any of its
        attributes is assigned; its ``segmentation``, ``bbox`` and ``extra``
        must not be changed in place (make a new annotation, or assign a new
        dict or list). Image records may be changed in any way.
        """
        rebase = root is not None and os.path.abspath(root) != os.path.abspath(self.root)
        if rebase:  # Save As / a copy elsewhere: every file_name changes, serialise the images afresh
            images: List[Any] = self._image_items(root)
        else:
            images = PreRendered(self._image_lines.lines([self.images[i] for i in sorted(self.images)]))
        sections: List[Tuple[str, Any]] = [("info", _plain(self.info, "info")),
                                           ("licenses", _plain(self.licenses, "licenses"))]
        sections += [(k, v) for k, v in _plain(self.extra, "top level").items() if k not in _TOP_KEYS]
        sections.append(("images", images))
        sections.append(("annotations", PreRendered(
            self._annotation_lines.lines([self.annotations[i] for i in sorted(self.annotations)]))))
        sections.append(("categories", [c.to_json() for c in sorted(self.categories.values(), key=lambda c: c.id)]))
        text = join_sections(sections)
        if savecache.VERIFY and text != dumps_coco(self.to_coco(root)):
            raise savecache.StaleCacheError(
                "the cached serialisation differs from a fresh one: an annotation in the document was changed "
                "in place (see annotator.data.savecache)"
            )
        return text

    def prepare_save(self) -> None:
        """Serialise every record once now (while a folder opens), so that the first save, usually right
        after the first accept, costs what later ones do (:meth:`to_json` reuses unchanged lines); about
        a second for 100,000 annotations. A value that cannot be written is left for :meth:`save` to report."""
        try:
            self.to_json()
        except Exception:  # (save raises it as a SaveError, with the message)
            pass

    def mark_saved(self, revision: int) -> None:
        """Record that the state of ``revision`` is on disk."""
        self.saved_revision = revision

    def _encoded(self, root: Path) -> bytes:
        """The document as UTF-8 JSON bytes, ``file_name`` relative to ``root``; any failure is a SaveError."""
        try:
            return jsonsafe.encode_text(self.to_json(root=root))
        except savecache.StaleCacheError:
            raise  # (VERIFY mode, in a test suite: a bug to see, not a save to retry)
        except Exception as exc:  # a value JSON cannot hold, nesting, memory: never a crash on save
            raise SaveError(self.path, f"the document cannot be written as JSON ({type(exc).__name__}: {exc})") from exc

    def save(self, path: Optional[PathLike] = None, *, force: bool = False) -> Path:
        """Write the working file atomically.

        Parameters
        ----------
        path
            Where to write; default :attr:`path`. Another path is a "save as":
            ``file_name`` values are rewritten relative to its folder and
            :attr:`path`/:attr:`root` move there once the write succeeded (and
            the lock, if this document held one, moves with it).
        force
            Overwrite the working file even when another program changed it
            since this document read or wrote it (the user chose "keep mine").

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        annotator.data.workfile.ReadOnlyError
            Another window or program holds the file (see :attr:`read_only`).
        annotator.data.workfile.ConflictError
            The file changed on disk: it was not overwritten, this version went
            to :attr:`ConflictError.ours` beside it.
        annotator.data.workfile.SaveError
            Anything else (disk full, read-only folder, permission denied, a
            FIFO or device in the file's place, a value that cannot be written).
            All three are ``OSError``; after any of them the file on disk is
            intact, :attr:`dirty` stays True and the document is unchanged.
        """
        target = Path(path) if path is not None else self.path
        revision = self.revision
        if os.path.realpath(target) != os.path.realpath(self.path):  # (a link to this file is this file)
            data = self._encoded(target.parent)
            st = self._file.write_copy(target, data, backup=True)
            self._move_to(target)
            self._file.moved_to(target, data, st)
        else:
            self._file.write(self._encoded(self.root), force=force)
        self.mark_saved(revision)
        return target

    def save_copy(self, path: PathLike) -> Path:
        """Write a copy of the document to ``path`` ("save a copy elsewhere"); the working file stays as it is.

        ``file_name`` values are rewritten relative to the copy's folder.
        :attr:`path` and :attr:`dirty` do not change: this is how work is kept
        when the working file cannot be written (read-only, conflict, disk full).

        Raises
        ------
        annotator.data.workfile.SaveError
            ``path`` is the working file itself, or cannot be written.
        """
        path = Path(path)
        if os.path.abspath(os.path.realpath(path)) == os.path.abspath(os.path.realpath(self.path)):
            raise SaveError(path, "this is the working file itself; choose another file for the copy")
        self._file.write_copy(path, self._encoded(path.parent))
        return path

    def _image_items(self, root: Optional[PathLike]) -> List[Dict[str, Any]]:
        """The image records as COCO dicts, ``file_name`` relative to ``root`` (default :attr:`root`)."""
        rebase = root is not None and os.path.abspath(root) != os.path.abspath(self.root)
        rebased = self._rebased_names(Path(root)) if rebase else {}
        images = []
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            item = rec.to_json()
            if rebase:
                item["file_name"] = rebased[rec.id]
            images.append(item)
        return images

    def _rebased_names(self, new_root: Path) -> Dict[int, str]:
        """Each image's ``file_name`` relative to ``new_root`` (a Save As or a copy elsewhere), by id.

        Two records of one file (other spellings, which the loader accepts
        with a note) would get the same name there, and a file with a
        duplicate ``file_name`` does not open again: the later records get
        ``./``-prefixed spellings of the same name, so both are kept and the
        file stays readable.
        """
        out: Dict[int, str] = {}
        taken: set = set()
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            name = _relative_name(os.fspath(self.image_path(rec)), os.fspath(new_root), os.getcwd())
            while name in taken:
                name = "./" + name
            taken.add(name)
            out[rec.id] = name
        return out

    def _move_to(self, target: Path) -> None:
        new_root = target.parent
        rebased = self._rebased_names(new_root)
        renamed: Dict[str, int] = {}
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            rec.file_name = rebased[rec.id]
            renamed[rec.file_name] = rec.id
        self._by_file, self._by_key, self._respelled = renamed, {}, {}
        self.path, self.root = target, new_root
        for rec in sorted(self.images.values(), key=lambda r: r.id):
            self._index_spelling(rec)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is built (it makes millions of objects, none garbage).

    Each collection of the older generations walks every object made so far:
    about a second of the 3.9 s that opening 100,000 annotations took.
    Reference counting still frees everything as usual; collection resumes
    (if it was on) when the block ends, however it ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.lru_cache(maxsize=1 << 16)
def _relative_name(image_path: str, root: str, cwd: str) -> str:
    """:meth:`Dataset.relative_name` (``cwd``: the working directory relative paths are read against)."""
    try:
        rel = os.path.relpath(os.path.abspath(image_path), os.path.abspath(root))
    except ValueError:  # another drive on Windows: no relative path exists
        rel = os.path.abspath(image_path)
    return Path(rel).as_posix()
