"""HTTP downloads of generator assets (Poly Haven HDRIs, Objaverse objects): JSON, resumable files (stdlib only).

A file is streamed into ``<dest>.part``; an interrupted download resumes from the bytes already there with an
HTTP ``Range`` request (a server that answers ``200`` instead of ``206`` is read from the start again). When the
expected size and MD5 are known they are checked before the atomic rename to ``dest``; a mismatch deletes the
partial file and raises :class:`DownloadError`, so a cache never holds a wrong file. ``file://`` URLs work too.

``FLIPBENCH_OFFLINE=1`` (set by the test suite) refuses every URL but ``file://`` and hosts on this machine
(``127.0.0.1``, ``localhost``, ``::1``: the tests' servers), with a :class:`DownloadError` saying so.
"""

from __future__ import annotations

import gzip
import io
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from objascale.json_depth import json_depth_ok

__all__ = ["DownloadError", "USER_AGENT", "OFFLINE_ENV", "fetch_json", "download_file", "md5_of", "check_online"]

#: Poly Haven's API terms ask every client for a unique User-Agent
USER_AGENT = "flipbench-objascale/2 (+https://github.com/; ObjaScale generator)"
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or gave a file of the wrong size / checksum (the message names the URL)."""


OFFLINE_ENV = "FLIPBENCH_OFFLINE"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_online(url: str) -> None:
    """Raise :class:`DownloadError` when ``FLIPBENCH_OFFLINE`` is set and ``url`` leaves this machine."""
    if os.environ.get(OFFLINE_ENV, "") in ("", "0"):
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file" or parts.hostname in _LOCAL_HOSTS:
        return
    raise DownloadError(f"{url}: not fetched, {OFFLINE_ENV} is set")


def _open(url: str, timeout: float, start: int = 0):
    check_online(url)
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


#: bounds on a JSON document from a server: its size (compressed and decompressed) and how deep it nests
MAX_JSON_BYTES = 256 << 20
MAX_JSON_DEPTH = 64


def fetch_json(url: str, timeout: float = 60.0, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Decoded JSON of ``url`` (gzip-compressed when the URL ends in ``.gz``), at most ``max_bytes`` (before and
    after decompression) and :data:`MAX_JSON_DEPTH` containers deep; anything else is a one-line
    :class:`DownloadError` naming the URL. Callers still check the shape they rely on."""
    try:
        with _open(url, timeout) as resp:
            data = resp.read(max_bytes + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc
    if len(data) > max_bytes:
        raise DownloadError(f"{url}: the JSON answer is larger than {max_bytes} bytes; refused")
    too_deep = f"{url}: the JSON answer nests deeper than {MAX_JSON_DEPTH} levels; refused"
    try:
        if url.endswith(".gz"):
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise DownloadError(f"{url}: the JSON answer decompresses to more than {max_bytes} bytes; refused")
        value = json.loads(data)
    except RecursionError:  # deeper than the interpreter's stack: far beyond MAX_JSON_DEPTH
        raise DownloadError(too_deep) from None
    except (ValueError, OSError, EOFError) as exc:
        raise DownloadError(f"{url}: not valid JSON ({' '.join(str(exc).split())})") from exc
    if not json_depth_ok(value, MAX_JSON_DEPTH):
        raise DownloadError(too_deep)
    return value


def md5_of(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - integrity check against the server's published MD5, not security
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _announced_total(resp: Any, resumed: bool) -> int | None:
    """The whole file's size as the response announces it (``Content-Range`` of a 206, else ``Content-Length``)."""
    try:
        if resumed:
            total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
            return int(total) if total.isdigit() else None
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
    except (AttributeError, ValueError):
        return None


def download_file(url: str, dest: str | os.PathLike, size: int | None = None, md5: str | None = None,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check ``size`` / ``md5`` when given; returns ``dest``.

    An existing ``dest`` of the right size and MD5 is reused without a request.
    """
    dest = Path(dest)
    if dest.is_file() and (size is None or dest.stat().st_size == size) and (md5 is None or md5_of(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    announced = None
    try:
        if size is None or start < size:
            try:
                resp = _open(url, timeout, start)
            except urllib.error.HTTPError as exc:
                if exc.code != 416 or not start:  # 416: nothing left after the .part's bytes; start again
                    raise
                start = 0
                resp = _open(url, timeout)
            with resp:
                resumed = start > 0 and getattr(resp, "status", 200) == 206
                announced = _announced_total(resp, resumed)  # catches a cut transfer even without a published size
                with open(part, "ab" if resumed else "wb") as f:
                    while block := resp.read(_CHUNK):
                        f.write(block)
    except (urllib.error.URLError, OSError) as exc:  # keep the .part: the next call resumes it
        raise DownloadError(f"{url}: {exc}") from exc
    got = part.stat().st_size
    if announced is not None and got < announced:  # cut short: keep the .part, the next call resumes it
        raise DownloadError(f"{url}: got {got} of {announced} bytes (connection cut); run again to resume")
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {size} (incomplete or changed file)")
    if md5 is not None and (digest := md5_of(part)) != md5:
        part.unlink()
        raise DownloadError(f"{url}: MD5 {digest} does not match the published {md5}")
    os.replace(part, dest)
    return dest
