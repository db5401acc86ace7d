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
    with pytest.raises(W.ChecksumMismatchError, match="bytes"):
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
    archive = tmp_path / "weights.pt.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("weights/inner.pt", b"checkpoint bytes")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    _add(monkeypatch, "zipped", filename="inner.pt", url=archive.as_uri(), sha256=sha, archive_member="inner.pt")
    path = W.download("zipped")
    assert path == home / "inner.pt" and path.read_bytes() == b"checkpoint bytes"
    assert sorted(p.name for p in home.iterdir()) == ["inner.pt"]  # archive removed
    result = W.verify("zipped")
    assert result.status == "unverified" and result.sha256 == hashlib.sha256(b"checkpoint bytes").hexdigest()


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
