"""Checkpoint download, verification and lookup, against local file:// and 127.0.0.1 HTTP sources."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from baselines import weights as W


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def payload(tmp_path):
    data = bytes(range(256)) * 5000  # 1.28 MB: several download chunks
    path = tmp_path / "src" / "model.pt"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _add(monkeypatch, name, **kwargs) -> W.WeightFile:
    entry = W.WeightFile(model=name, **kwargs)
    monkeypatch.setitem(W.CATALOG, name, entry)
    return entry


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part")) if directory.exists() else []


def test_download_file_url_verifies_and_reports_progress(home, payload, monkeypatch):
    src, sha = payload
    _add(monkeypatch, "toy", filename="toy.pt", url=src.as_uri(), num_bytes=src.stat().st_size, sha256=sha)
    seen = []
    path = W.download("toy", progress=lambda done, total: seen.append((done, total)))
    assert path == home / "toy.pt"
    assert path.read_bytes() == src.read_bytes()
    assert seen[-1] == (src.stat().st_size, src.stat().st_size) and len(seen) > 1
    assert W.verify("toy").status == "ok"
    assert W.find_checkpoint("toy") == path
    assert _leftovers(home) == []


def test_sha_mismatch_raises_and_leaves_nothing(home, payload, monkeypatch):
    src, _ = payload
    _add(monkeypatch, "toy", filename="toy.pt", url=src.as_uri(), sha256="0" * 64)
    with pytest.raises(W.ChecksumMismatchError, match="SHA-256"):
        W.download("toy")
    assert not (home / "toy.pt").exists()
    assert _leftovers(home) == []


def test_size_mismatch_raises_and_leaves_nothing(home, payload, monkeypatch):
    src, sha = payload
    _add(monkeypatch, "toy", filename="toy.pt", url=src.as_uri(), num_bytes=src.stat().st_size + 1, sha256=sha)
    with pytest.raises((W.ChecksumMismatchError, W.DownloadError), match="bytes"):
        W.download("toy")
    assert list(home.iterdir()) == []


def test_existing_file_is_kept_unless_forced(home, payload, monkeypatch):
    src, sha = payload
    _add(monkeypatch, "toy", filename="toy.pt", url=src.as_uri(), sha256=sha)
    home.mkdir(parents=True)
    (home / "toy.pt").write_bytes(b"old")
    assert W.download("toy").read_bytes() == b"old"
    assert W.verify("toy").status == "mismatch"
    assert W.download("toy", force=True).read_bytes() == src.read_bytes()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_url(payload):
    src, _ = payload
    handler = partial(_QuietHandler, directory=str(src.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{src.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_over_local_http(home, payload, http_url, monkeypatch):
    src, sha = payload
    _add(monkeypatch, "toy", filename="toy.pt", url=http_url, sha256=sha)
    totals = []
    path = W.download("toy", timeout=10, progress=lambda done, total: totals.append(total))
    assert path.read_bytes() == src.read_bytes()
    assert totals[-1] == src.stat().st_size  # from Content-Length when the catalogue has no size


def test_http_sha_mismatch_leaves_nothing(home, http_url, monkeypatch):
    _add(monkeypatch, "toy", filename="toy.pt", url=http_url, sha256="f" * 64)
    with pytest.raises(W.ChecksumMismatchError):
        W.download("toy", timeout=10)
    assert list(home.iterdir()) == []


def test_http_404_is_an_error_without_leftovers(home, http_url, monkeypatch):
    _add(monkeypatch, "toy", filename="toy.pt", url=http_url + ".missing")
    with pytest.raises(OSError):
        W.download("toy", timeout=10)
    assert _leftovers(home) == [] and not (home / "toy.pt").exists()


def test_zip_archive_member_is_extracted(home, tmp_path, monkeypatch):
    inner = _tensor_checkpoint(tmp_path)
    archive = tmp_path / "weights.pt.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("weights/inner.pt", inner)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    _add(monkeypatch, "zipped", filename="inner.pt", url=archive.as_uri(), sha256=sha, archive_member="inner.pt")
    path = W.download("zipped")
    assert path == home / "inner.pt" and path.read_bytes() == inner
    assert sorted(p.name for p in home.iterdir()) == ["inner.pt"]  # archive removed
    result = W.verify("zipped")
    assert result.status == "unverified" and result.sha256 == hashlib.sha256(inner).hexdigest()


def test_verify_reports_missing_and_unverified(home, monkeypatch):
    _add(monkeypatch, "toy", filename="toy.pt", url="file:///nonexistent")
    assert W.verify("toy").status == "missing"
    home.mkdir(parents=True)
    (home / "toy.pt").write_bytes(b"abc")
    result = W.verify("toy")
    assert result.status == "unverified" and result.sha256 == hashlib.sha256(b"abc").hexdigest()


def test_require_checkpoint_message_says_what_to_download(home):
    with pytest.raises(W.MissingCheckpointError) as err:
        W.require_checkpoint("sam-b")
    message = str(err.value)
    assert "flipbench weights download sam-b" in message
    assert "sam_vit_b_01ec64.pth" in message and str(home) in message


def test_explicit_checkpoint_must_exist(tmp_path):
    with pytest.raises(W.MissingCheckpointError, match="does not exist"):
        W.find_checkpoint("sam-b", tmp_path / "nope.pth")
    (tmp_path / "x.pth").write_bytes(b"x")
    assert W.find_checkpoint("sam-b", tmp_path / "x.pth") == (tmp_path / "x.pth").resolve()


# -- hostile servers on 127.0.0.1 --------------------------------------------------------------------------------
class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.body`` per ``server.mode``: ok, html (200 text/html), html-octet (HTML body with a binary
    type), truncated (Content-Length larger than the body, then close), drip (one byte per 0.2 s), stall-headers
    (status line, then one header byte per 0.2 s), redirect (302 to /file)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        import time

        mode, body = self.server.mode, self.server.body
        try:
            if mode == "redirect" and self.path != "/file":
                self.send_response(302)
                self.send_header("Location", "/file")
                self.end_headers()
                return
            if mode == "stall-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"X-Slow: " + b"a" * 10_000:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            self.send_response(200)
            html = mode == "html"
            self.send_header("Content-Type", "text/html; charset=utf-8" if html else "application/octet-stream")
            self.send_header("Content-Length", str(len(body) + (1000 if mode == "truncated" else 0)))
            self.end_headers()
            if mode == "drip":
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    server.daemon_threads = True
    server.mode, server.body = "ok", b""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/file"
    finally:
        server.shutdown()
        server.server_close()


def _tensor_checkpoint(tmp_path) -> bytes:
    import torch

    path = tmp_path / "real.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    return path.read_bytes()


def _serve(hostile, mode, body):
    server, url = hostile
    server.mode, server.body = mode, body
    return url


@pytest.mark.parametrize("mode, message", [
    ("html", "HTML page"),
    ("html-octet", "HTML page"),
    ("truncated", "truncated"),
])
def test_hostile_server_bodies_are_refused_and_leave_nothing(home, tmp_path, hostile, monkeypatch, mode, message):
    body = b"<!DOCTYPE html><html><body>Please log in</body></html>" if mode.startswith("html") else b"x" * 5000
    url = _serve(hostile, mode, body)
    _add(monkeypatch, "toy", filename="toy.pt", url=url)
    with pytest.raises(W.DownloadError, match=message):
        W.download("toy", timeout=5, deadline=30)
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("mode, body", [
    ("drip", b"y" * 10_000),  # the body: 2000 s at one byte per 0.2 s, yet every read succeeds within the timeout
    ("stall-headers", b""),  # the headers, one byte per 0.2 s
])
def test_dripping_server_hits_the_overall_deadline(home, hostile, monkeypatch, mode, body):
    import time

    _add(monkeypatch, "toy", filename="toy.pt", url=_serve(hostile, mode, body))
    start = time.monotonic()
    with pytest.raises(W.DownloadError, match="deadline"):
        W.download("toy", timeout=5, deadline=1.5)
    assert time.monotonic() - start < 10
    assert list(home.iterdir()) == []


def test_wrong_digest_and_wrong_announced_size_over_http(home, tmp_path, hostile, monkeypatch):
    body = _tensor_checkpoint(tmp_path)
    url = _serve(hostile, "ok", body)
    _add(monkeypatch, "toy", filename="toy.pt", url=url, num_bytes=len(body), sha256="0" * 64)
    with pytest.raises(W.ChecksumMismatchError, match="SHA-256"):
        W.download("toy", timeout=5, deadline=30)
    _add(monkeypatch, "toy", filename="toy.pt", url=url, num_bytes=len(body) + 7)
    with pytest.raises(W.DownloadError, match="announces"):
        W.download("toy", timeout=5, deadline=30)
    assert list(home.iterdir()) == []


def test_unpinned_download_is_checked_by_a_tensors_only_load(home, tmp_path, hostile, monkeypatch):
    good = _tensor_checkpoint(tmp_path)
    url = _serve(hostile, "redirect", good)
    _add(monkeypatch, "toy", filename="toy.pt", url=url.replace("/file", "/start"))
    assert W.download("toy", timeout=5, deadline=30).read_bytes() == good
    marker = tmp_path / "PWNED"
    import torch

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    _serve(hostile, "ok", evil.read_bytes())
    _add(monkeypatch, "bad", filename="bad.pt", url=url)
    with pytest.raises(W.ChecksumMismatchError, match="not a usable bad.pt"):
        W.download("bad", timeout=5, deadline=30)
    _serve(hostile, "ok", b"\x00" * 4096)
    with pytest.raises(W.ChecksumMismatchError, match="not a usable"):
        W.download("bad", timeout=5, deadline=30)
    assert not marker.exists() and sorted(p.name for p in home.iterdir()) == ["toy.pt"]


def test_interrupted_download_leaves_no_part_file(home, hostile, monkeypatch):
    url = _serve(hostile, "ok", b"z" * (3 << 20))
    _add(monkeypatch, "toy", filename="toy.pt", url=url)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        W.download("toy", timeout=5, deadline=30, progress=interrupt)
    assert list(home.iterdir()) == []


def test_stale_part_of_a_dead_process_is_removed(home, payload, monkeypatch):
    src, sha = payload
    home.mkdir(parents=True)
    stale = home / "toy.pt.999999999.part"
    stale.write_bytes(b"old")
    (home / "toy.pt.99999999999999999999.part").write_bytes(b"old")  # beyond any pid (os.kill: OverflowError)
    _add(monkeypatch, "toy", filename="toy.pt", url=src.as_uri(), sha256=sha)
    W.download("toy")
    assert sorted(p.name for p in home.iterdir()) == ["toy.pt"]


def test_bad_archive_and_bad_member_leave_no_archive(home, tmp_path, monkeypatch):
    not_zip = tmp_path / "weights.pt.zip"
    not_zip.write_bytes(b"this is no zip file at all" * 100)
    _add(monkeypatch, "zipped", filename="inner.pt", url=not_zip.as_uri(), archive_member="inner.pt")
    with pytest.raises(W.ChecksumMismatchError, match="zip"):
        W.download("zipped")
    assert list(home.iterdir()) == []
    with zipfile.ZipFile(not_zip, "w") as zf:
        zf.writestr("inner.pt", b"<html>not a checkpoint</html>")
    with pytest.raises(W.ChecksumMismatchError, match="not a usable inner.pt"):
        W.download("zipped")
    assert list(home.iterdir()) == []


def test_closed_port_is_a_one_line_error(home, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _add(monkeypatch, "toy", filename="toy.pt", url=f"http://127.0.0.1:{port}/x.pt")
    with pytest.raises(W.DownloadError, match="cannot reach") as err:
        W.download("toy", timeout=5, deadline=30)
    assert "\n" not in str(err.value) and list(home.iterdir()) == []
