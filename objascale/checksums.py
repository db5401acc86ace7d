"""sha256 of files, cached across processes so that provenance checksums of large datasets cost one read.

Every ``flipbench eval`` records the checksum of its dataset (hundreds of GB for some); hashing it at each start
would dominate short runs. Digests are cached in memory and in ``$FLIPBENCH_HOME/sha256-cache.sqlite`` (default
``~/.cache/flipbench``), keyed by the resolved path and the file's stat identity: size, mtime_ns, ctime_ns, inode
and device. Any write to the file changes its ctime (which, unlike mtime, cannot be set back by users; at the
filesystem's timestamp granularity, a few milliseconds at most), so a changed file is hashed again. The file keeps
the most recent 20000 digests. Set ``FLIPBENCH_HASH_CACHE=0`` to disable the on-disk cache; when its directory is
not writable the cache is silently memory-only.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

__all__ = ["file_sha256"]

_MEMORY: dict[tuple, str] = {}
_BLOCK = 1 << 22
_KEEP_ROWS = 20000  # the on-disk cache keeps the most recent digests only


def _cache_path() -> Path | None:
    if os.environ.get("FLIPBENCH_HASH_CACHE", "1") == "0":
        return None
    home = Path(os.environ.get("FLIPBENCH_HOME", Path.home() / ".cache" / "flipbench")).expanduser()
    return home / "sha256-cache.sqlite"


def _connect(path: Path) -> sqlite3.Connection | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=10)
        con.execute("CREATE TABLE IF NOT EXISTS digests (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
        return con
    except (OSError, sqlite3.Error):
        return None


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (cached, see the module docstring)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    if key in _MEMORY:
        return _MEMORY[key]
    cache = _cache_path()
    con = _connect(cache) if cache is not None else None
    text_key = "\0".join(map(str, key))
    digest = None
    if con is not None:
        try:
            row = con.execute("SELECT sha256 FROM digests WHERE key = ?", (text_key,)).fetchone()
            digest = row[0] if row else None
        except sqlite3.Error:
            digest = None
    if digest is None:
        digest = _hash(p)
        if con is not None:
            try:
                with con:
                    row = con.execute("INSERT OR REPLACE INTO digests (key, sha256) VALUES (?, ?)", (text_key, digest))
                    if row.lastrowid and row.lastrowid % 256 == 0:
                        con.execute("DELETE FROM digests WHERE rowid <= ?", (row.lastrowid - _KEEP_ROWS,))
            except sqlite3.Error:
                pass  # read-only or locked cache: the digest is still correct, only not remembered
    if con is not None:
        con.close()
    _MEMORY[key] = digest
    return digest
