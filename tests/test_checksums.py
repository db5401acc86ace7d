"""File digests cached across processes (objascale.checksums)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from objascale import checksums


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLIPBENCH_HASH_CACHE", raising=False)
    monkeypatch.setattr(checksums, "_MEMORY", {})
    return tmp_path / "home"


def _data(tmp_path, content: bytes):
    p = tmp_path / "data.bin"
    p.write_bytes(content)
    return p


def test_digest_is_sha256_and_survives_a_new_process(home, tmp_path, monkeypatch):
    p = _data(tmp_path, b"x" * 5_000_000)
    assert checksums.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert (home / "sha256-cache.sqlite").is_file()
    monkeypatch.setattr(checksums, "_MEMORY", {})  # as in a new process: only the on-disk cache remains

    def no_read(path):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(checksums, "_hash", no_read)
    assert checksums.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_changed_file_is_hashed_again_even_with_its_old_mtime(home, tmp_path, monkeypatch):
    p = _data(tmp_path, b"first")
    checksums.file_sha256(p)
    st = p.stat()
    time.sleep(0.05)  # beyond the filesystem's timestamp granularity
    p.write_bytes(b"other")  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: ctime still changes
    monkeypatch.setattr(checksums, "_MEMORY", {})
    assert checksums.file_sha256(p) == hashlib.sha256(b"other").hexdigest()


def test_cache_can_be_disabled_or_unwritable(tmp_path, monkeypatch):
    p = _data(tmp_path, b"abc")
    monkeypatch.setattr(checksums, "_MEMORY", {})
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "off"))
    monkeypatch.setenv("FLIPBENCH_HASH_CACHE", "0")
    assert checksums.file_sha256(p) == hashlib.sha256(b"abc").hexdigest()
    assert not (tmp_path / "off").exists()
    monkeypatch.delenv("FLIPBENCH_HASH_CACHE")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("FLIPBENCH_HOME", str(blocker / "home"))  # cannot be created
    monkeypatch.setattr(checksums, "_MEMORY", {})
    assert checksums.file_sha256(p) == hashlib.sha256(b"abc").hexdigest()


def test_on_disk_cache_stays_bounded(home, tmp_path, monkeypatch):
    monkeypatch.setattr(checksums, "_KEEP_ROWS", 10)
    for i in range(300):
        monkeypatch.setattr(checksums, "_MEMORY", {})
        checksums.file_sha256(_data(tmp_path, str(i).encode()))
    import sqlite3

    with sqlite3.connect(home / "sha256-cache.sqlite") as con:
        (rows,) = con.execute("SELECT COUNT(*) FROM digests").fetchone()
    assert rows < 300
