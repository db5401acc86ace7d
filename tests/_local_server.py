"""A static HTTP server on 127.0.0.1 for download tests (recorded-shape API fixtures, resumable files).

``serve(root)`` serves the files below ``root``: ``/a/b`` -> ``root/a/b``; a request for ``X.json.gz`` with only
``X.json`` present gets it gzip-compressed; in ``.json`` answers the text ``{BASE}`` becomes the server's base
URL; ``/assets?t=hdris`` maps to ``assets.json`` and ``/files/<id>`` to ``files/<id>.json`` (Poly Haven's API
routes). ``Range: bytes=N-`` gives ``206`` with the tail (unless ``server.ignore_range``), ``416`` past the end. Every request is
logged in ``server.requests`` as ``(path, range header or None)``.
"""

from __future__ import annotations

import gzip
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _resolve(self, path: str) -> tuple[bytes | None, str]:
        root: Path = self.server.root  # type: ignore[attr-defined]
        if path == "/assets":
            path = "/assets.json"
        elif path.startswith("/files/") and not path.endswith(".json"):
            path = path + ".json"
        target = (root / path.lstrip("/")).resolve()
        if root.resolve() not in target.parents:
            return None, path
        if target.is_file():
            data = target.read_bytes()
        elif path.endswith(".json.gz") and target.with_suffix("").is_file():
            data = target.with_suffix("").read_bytes()
        else:
            return None, path
        if ".json" in path:
            data = data.replace(b"{BASE}", self.server.base.encode())  # type: ignore[attr-defined]
        if path.endswith(".gz") and not target.is_file():
            data = gzip.compress(data, mtime=0)
        return data, path

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parts = urlsplit(self.path)
        rng = self.headers.get("Range")
        self.server.requests.append((parts.path + (f"?{parts.query}" if parts.query else ""), rng))  # type: ignore
        data, _ = self._resolve(parts.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and rng.startswith("bytes=") and not self.server.ignore_range:  # type: ignore[attr-defined]
            start = int(rng[len("bytes="):].split("-")[0])
        if start >= len(data) > 0:
            self.send_error(416)  # as real servers answer a range past the end
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(root: Path):
    """Context manager: a running server for ``root``; yields it (``.base`` URL, ``.requests``, ``.ignore_range``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.root = Path(root)
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests = []
    server.ignore_range = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def cube_glb() -> bytes:
    """A minimal binary glTF 2.0 file: one unit cube mesh (8 vertices, 12 triangles), no material."""
    import json
    import struct

    pos = [(x, y, z) for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [i for a, b, c, d in quads for i in (a, b, c, a, c, d)]
    vbin = b"".join(struct.pack("<3f", *p) for p in pos)
    ibin = struct.pack(f"<{len(tris)}H", *tris)
    ibin += b"\0" * (-len(ibin) % 4)
    blob = vbin + ibin
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(vbin), "target": 34962},
                        {"buffer": 0, "byteOffset": len(vbin), "byteLength": len(tris) * 2, "target": 34963}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3",
                       "min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]},
                      {"bufferView": 1, "componentType": 5123, "count": len(tris), "type": "SCALAR"}],
    }
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body
