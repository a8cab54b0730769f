"""Writing a folder of output files all at once, losing nothing that was there.

An export to a folder writes hundreds of files. :class:`StagedFolder` writes
them into a hidden staging folder inside the output folder first (same file
system, so moving them is a rename), and only :meth:`StagedFolder.commit`
moves them into place. Cancelling or failing before that leaves the output
folder as it was.

What :meth:`~StagedFolder.commit` guarantees:

* **Files this program did not write are backed up** before they are
  replaced (:func:`annotator.data.atomic.backup_once`: ``NAME.<time>.bak``
  next to them), and a warning says so. Files an earlier export wrote are
  known from a manifest, ``.sam-annotator-export.json``, in the output folder,
  and are replaced without a backup.
* **Protected paths are never written**: the source images and the working
  file (:class:`ValueError` before anything moves).
* **Stale outputs are removed**: files that an earlier export *of the same
  format* wrote and that this one did not (an image that has left the working
  file), so that a trainer does not read labels for images no longer there.
* Each file is fsynced before it is renamed into place; a crash while moving
  leaves every file either old or new.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from annotator.data.atomic import atomic_write_bytes, backup_once
from annotator.data.jsonsafe import encode_text

MANIFEST = ".sam-annotator-export.json"
STAGING_PREFIX = ".sam-annotator-export-"


class StagedFolder:
    """Output files gathered in a staging folder, then moved into ``out`` together.

    Parameters
    ----------
    out
        The output folder (created, with its parents, if missing).
    fmt
        The format name, recorded in the manifest.
    protected
        Absolute paths that must never be written (source images, the working file).

    Raises
    ------
    ValueError
        ``out`` is an existing file.
    OSError
        ``out`` cannot be created or written.
    """

    def __init__(self, out: Path, fmt: str, protected: Iterable[str] = ()):
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} is a file; the {fmt} export writes a folder")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.fmt = fmt
        self.protected = {os.path.normcase(os.path.abspath(p)) for p in protected}
        _remove_abandoned(out)
        self.stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        self.files: Dict[str, None] = {}  # relative POSIX paths, in the order written

    # ------------------------------------------------------------------ writing

    def _staged(self, rel: str) -> Path:
        if rel in self.files:
            raise ValueError(f"{rel} is written twice by one export")
        path = self.stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files[rel] = None
        return path

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Stage ``data`` as ``out / rel`` (``rel`` a POSIX path)."""
        path = self._staged(rel)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def write_text(self, rel: str, text: str) -> None:
        """Stage UTF-8 ``text`` (newlines as given) as ``out / rel``.

        A lone surrogate (a file name that is not UTF-8, as ``os.listdir`` gives it) is written as the
        name's own byte, so that a list of file names names the files on disk.
        """
        self.write_bytes(rel, text.encode("utf-8", errors="surrogateescape"))

    def write_json(self, rel: str, text: str) -> None:
        """Stage JSON ``text`` as strict UTF-8 (a lone surrogate as its ``\\uXXXX`` escape: see ``jsonsafe``)."""
        self.write_bytes(rel, encode_text(text))

    def copy_file(self, rel: str, source: Path) -> None:
        """Stage a copy of ``source`` (its bytes and times) as ``out / rel``."""
        path = self._staged(rel)
        shutil.copy2(source, path)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ commit

    def _manifest(self) -> Dict[str, List[str]]:
        try:
            data = json.loads((self.out / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: [f for f in v if isinstance(f, str)] for k, v in data.items() if isinstance(v, list)}

    def _target(self, rel: str) -> Path:
        return self.out / rel

    def commit(self) -> List[str]:
        """Move every staged file into place; returns warnings (backups made, stale files removed).

        Raises
        ------
        ValueError
            A file would replace a protected path or a folder (nothing moved).
        OSError
            A backup or a move failed (files already moved stay; the rest stay staged and are removed).
        """
        try:
            return self._commit()
        finally:
            self.discard()

    def _commit(self) -> List[str]:
        manifest = self._manifest()
        ours = {rel for files in manifest.values() for rel in files}
        for rel in self.files:
            target = self._target(rel)
            if os.path.normcase(os.path.abspath(target)) in self.protected:
                raise ValueError(
                    f"the export would overwrite {target}, a source image or the working file; "
                    "choose another output folder"
                )
            if target.is_dir():
                raise ValueError(f"the export would replace the folder {target} with a file")
        warnings: List[str] = []
        backups: List[Path] = []
        for rel in self.files:
            target = self._target(rel)
            if rel not in ours and target.is_file() and not _same_bytes(target, self.stage / rel):
                made = backup_once(target)
                if made is not None:
                    backups.append(made)
        for rel in self.files:
            target = self._target(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.stage / rel, target)
        stale = [rel for rel in manifest.get(self.fmt, []) if rel not in self.files]
        removed = 0
        for rel in stale:
            target = self._target(rel)
            if os.path.normcase(os.path.abspath(target)) in self.protected:
                continue
            try:
                target.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError:  # a stale file we cannot remove is reported, not fatal
                warnings.append(f"could not remove {target}, written by an earlier {self.fmt} export")
        manifest[self.fmt] = list(self.files)
        atomic_write_bytes(self.out / MANIFEST, encode_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"))
        if backups:
            listed = ", ".join(str(p) for p in backups[:3]) + (" ..." if len(backups) > 3 else "")
            warnings.append(
                f"{len(backups)} existing file(s) in {self.out} that sam-annotator did not write were "
                f"replaced; the old versions were kept as backups ({listed})"
            )
        if removed:
            warnings.append(
                f"removed {removed} file(s) that an earlier {self.fmt} export wrote to {self.out} "
                f"for images no longer exported (e.g. {stale[0]})"
            )
        return warnings

    def discard(self) -> None:
        """Remove the staging folder and anything still in it."""
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> "StagedFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> Optional[bool]:
        self.discard()
        return None


#: A staging folder untouched this long belongs to an export that was killed.
ABANDONED_AFTER_S = 24 * 3600


def _remove_abandoned(out: Path) -> None:
    """Remove staging folders left by exports killed mid-way (old enough not to be running)."""
    now = time.time()
    try:
        entries = list(os.scandir(out))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > ABANDONED_AFTER_S:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                pass


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False
