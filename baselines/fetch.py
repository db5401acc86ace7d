"""Streaming one URL into a file with an overall deadline (used by :func:`baselines.weights.download`).

:func:`fetch` guards against what a server or a network can do to a download:

* a **deadline** on the whole transfer (connect, headers and body): a watchdog shuts the connection's sockets down
  when it passes, so a server that drips a byte every few seconds (which never trips a per-read socket timeout)
  still ends the download; ``timeout`` additionally bounds each connect and read;
* an **HTML page** instead of the file (a login, consent or error page served with status 200): refused on its
  ``Content-Type`` or its first bytes;
* a **truncated** body: fewer bytes than ``Content-Length`` (or than expected) is an error, as is a body longer
  than expected (nothing is written past ``max_bytes``);
* HTTP errors and unreachable hosts become one-line :class:`DownloadError` messages.

The caller owns the destination: :func:`fetch` writes it and, on any failure, removes it before raising.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

_CHUNK = 1 << 20
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<script")


class DownloadError(OSError):
    """A download failed (network, HTTP status, deadline, HTML instead of data, truncated); one-line message."""


class _Watchdog:
    """Shuts down every registered socket once ``seconds`` have passed (and any registered later)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """A urllib opener whose HTTP(S) connections register their sockets with ``watchdog`` (redirects included)."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.register(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.register(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(SecureConnection, req, context=self._context)

    return urllib.request.build_opener(Handler, SecureHandler)


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a body are an HTML/XML page."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_PREFIXES)


def fetch(
    url: str,
    dest: Path,
    *,
    deadline: float,
    timeout: float = 60.0,
    expected_bytes: int | None = None,
    max_bytes: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[int, str]:
    """Download ``url`` into ``dest`` within ``deadline`` seconds; returns ``(bytes, sha256 hex)``.

    ``timeout``: limit of each connect / read; ``expected_bytes``: the size the file must have (catalogue), checked
    against ``Content-Length`` before the body and against the received count after; ``max_bytes``: never write
    more (default ``expected_bytes``); ``progress(done, total_or_None)`` after each block. On any failure ``dest``
    is removed and :class:`DownloadError` raised.
    """
    limit = max_bytes if max_bytes is not None else expected_bytes
    digest = hashlib.sha256()
    done = 0
    try:
        with _Watchdog(deadline) as watchdog:
            try:
                done = _transfer(url, dest, watchdog, timeout, expected_bytes, limit, digest, progress)
            except DownloadError:
                raise
            except (OSError, http.client.HTTPException, ValueError) as err:
                if watchdog.expired:
                    raise DownloadError(_deadline_message(url, deadline, dest)) from err
                raise DownloadError(f"{url}: {_describe(err)}") from err
            if watchdog.expired:
                raise DownloadError(_deadline_message(url, deadline, dest))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return done, digest.hexdigest()


def _deadline_message(url: str, deadline: float, dest: Path) -> str:
    got = dest.stat().st_size if dest.exists() else 0
    return (f"{url}: not complete within the {deadline:.0f} s deadline ({got} bytes received); the server is stalled "
            "or too slow: retry later or allow more time with --deadline")


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot reach the server ({err.reason}); are you offline?"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "no data for too long (connection timed out)"
    return " ".join(f"{type(err).__name__}: {err}".split())


def _transfer(url, dest, watchdog, timeout, expected_bytes, limit, digest, progress) -> int:
    done = 0
    with _opener(watchdog).open(url, timeout=timeout) as response, open(dest, "wb") as out:
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            raise DownloadError(f"{url}: the server sent an HTML page ({content_type}) instead of the file "
                                "(a login, consent or error page?); download it in a browser and put it in place")
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if expected_bytes is not None and length is not None and length != expected_bytes:
            raise DownloadError(f"{url}: the server announces {length} bytes, the catalogue expects {expected_bytes} "
                                "(a different or changed file)")
        total = expected_bytes or length
        read = getattr(response, "read1", response.read)  # read1: returns after one receive, so the deadline is seen
        first = True
        while True:
            if watchdog.expired:
                raise DownloadError(_deadline_message(url, watchdog.seconds, dest))
            block = read(_CHUNK)
            if not block:
                break
            if first and looks_like_html(block[:512]):
                raise DownloadError(f"{url}: the server sent an HTML page instead of the file (a login, consent or "
                                    "error page?); download it in a browser and put it in place")
            first = False
            if limit is not None and done + len(block) > limit:
                raise DownloadError(f"{url}: more than the expected {limit} bytes; refusing the rest")
            out.write(block)
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    if watchdog.expired:
        raise DownloadError(_deadline_message(url, watchdog.seconds, dest))
    if length is not None and done != length:
        raise DownloadError(f"{url}: truncated: got {done} of the {length} bytes announced (connection dropped?)")
    if done == 0:
        raise DownloadError(f"{url}: the server sent an empty file")
    return done
