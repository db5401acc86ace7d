"""Objaverse 1.0 over plain HTTP, with the three calls of the ``objaverse`` package that the generator uses.

The ``objaverse`` package (0.1.x, github.com/allenai/objaverse-xl, ``objaverse/__init__.py``) reads these files
of the Hugging Face dataset ``allenai/objaverse`` (base ``https://huggingface.co/datasets/allenai/objaverse/
resolve/main``) and caches them under ``~/.objaverse/hf-objaverse-v1`` with the same relative paths:

* ``lvis-annotations.json.gz``: ``{lvis_category: [uid, ...]}`` -> :meth:`load_lvis_annotations`;
* ``object-paths.json.gz``: ``{uid: "glbs/000-023/<uid>.glb"}`` (798,759 entries);
* ``metadata/000-023.json.gz``: ``{uid: {"name", "license", "uri", "viewerUrl", "user": {"username", ...},
  ...}}`` for the uids of that folder -> :meth:`load_annotations`;
* ``glbs/000-023/<uid>.glb`` -> :meth:`load_objects` (``{uid: local path}``; a uid missing from the paths
  file or failing to download is left out, as the package does).

:class:`ObjaverseHttp` implements exactly that, with a configurable base URL (``FLIPBENCH_OBJAVERSE_URL``) and
cache folder (``FLIPBENCH_OBJAVERSE_CACHE``, default the package's), so the generator needs no extra package and
tests can serve recorded-shape JSON from 127.0.0.1. Downloads resume and are atomic (``download.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from objascale.generator.download import DownloadError, download_file, fetch_json

__all__ = ["ObjaverseHttp", "URL_ENV", "CACHE_ENV", "DEFAULT_URL"]

URL_ENV = "FLIPBENCH_OBJAVERSE_URL"
CACHE_ENV = "FLIPBENCH_OBJAVERSE_CACHE"
DEFAULT_URL = "https://huggingface.co/datasets/allenai/objaverse/resolve/main"
#: what a dataset path from the server may look like (``glbs/000-023/<uid>.glb``, ``metadata/000-023.json.gz``)
_SAFE_REL = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class ObjaverseHttp:
    """``load_lvis_annotations`` / ``load_annotations`` / ``load_objects`` of the ``objaverse`` package over HTTP."""

    def __init__(self, base_url: str | None = None, cache: str | os.PathLike | None = None) -> None:
        self.base = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        default_cache = Path.home() / ".objaverse" / "hf-objaverse-v1"
        self.cache = Path(cache or os.environ.get(CACHE_ENV) or default_cache).expanduser()
        self._paths: dict[str, str] | None = None
        #: uid -> reason of the last failed download (the package only leaves such a uid out of its answer)
        self.errors: dict[str, str] = {}

    def _local(self, rel: str) -> Path:
        """Where the dataset file ``rel`` (a server-given relative path) is cached; a path that is absolute, has
        ``..`` or other than plain name characters, or resolves outside the cache raises :class:`DownloadError`."""
        parts = rel.split("/")
        root = self.cache.resolve()
        local = (root / rel).resolve()
        if (not _SAFE_REL.fullmatch(rel) or any(p in ("", ".", "..") for p in parts)
                or not local.is_relative_to(root)):
            raise DownloadError(f"{self.base}: refused dataset path {rel!r} (not a plain relative path in the cache)")
        return local

    def _json(self, rel: str) -> Any:
        """A ``.json.gz`` file of the dataset, downloaded once into the cache (a cached file that does not decode
        is removed, so the next run downloads it again)."""
        local = download_file(f"{self.base}/{rel}", self._local(rel))
        try:
            return fetch_json(local.resolve().as_uri())
        except DownloadError as exc:
            local.unlink(missing_ok=True)
            raise DownloadError(f"{local} (from {self.base}/{rel}) is not valid gzip JSON; removed, run again to "
                                f"download it anew ({exc})") from exc

    def load_lvis_annotations(self) -> dict[str, list[str]]:
        name = f"{self.base}/lvis-annotations.json.gz"
        data = self._json("lvis-annotations.json.gz")
        if not isinstance(data, dict):
            raise DownloadError(f"{name}: expected {{category: [uid, ...]}}, got a {type(data).__name__}")
        for category, uids in data.items():
            if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
                raise DownloadError(f"{name}: category {category!r} must map to a list of uid strings, got "
                                    f"{_shape(uids)}")
        return data

    def object_paths(self) -> dict[str, str]:
        if self._paths is None:
            name = f"{self.base}/object-paths.json.gz"
            data = self._json("object-paths.json.gz")
            if not isinstance(data, dict):
                raise DownloadError(f"{name}: expected {{uid: \"glbs/<folder>/<uid>.glb\"}}, got a "
                                    f"{type(data).__name__}")
            bad = next((u for u, p in data.items() if not isinstance(p, str)), None)
            if bad is not None:
                raise DownloadError(f"{name}: the path of uid {bad!r} is {_shape(data[bad])}, not a string")
            self._paths = data
        return self._paths

    def load_annotations(self, uids: list[str]) -> dict[str, Any]:
        _check_uids(uids)
        paths = self.object_paths()
        folders = sorted({paths[u].split("/")[1] for u in uids if u in paths and paths[u].count("/") >= 2})
        out: dict[str, Any] = {}
        for folder in folders:
            meta = self._json(f"metadata/{folder}.json.gz")
            if not isinstance(meta, dict):
                raise DownloadError(f"{self.base}/metadata/{folder}.json.gz: expected {{uid: {{...}}}}, got a "
                                    f"{type(meta).__name__}")
            out.update({u: meta[u] for u in uids if u in meta})
        return out

    def load_objects(self, uids: list[str], download_processes: int = 1) -> dict[str, str]:
        """uid -> local GLB path (``download_processes`` is accepted for API compatibility; downloads are serial)."""
        _check_uids(uids)
        paths = self.object_paths()
        out = {}
        for uid in uids:
            rel = paths.get(uid)
            if rel is None:
                self.errors[uid] = "not in object-paths.json.gz"
                continue
            try:
                out[uid] = str(download_file(f"{self.base}/{rel}", self._local(rel)))
            except DownloadError as exc:
                self.errors[uid] = str(exc)
        return out


def _shape(value: Any) -> str:
    """``a int (3)``-style description of a JSON value for an error message (bounded)."""
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60] + '...' if len(text) > 60 else text})"


def _check_uids(uids: Any) -> None:
    if not isinstance(uids, (list, tuple)) or not all(isinstance(u, str) for u in uids):
        bad = next((u for u in uids if not isinstance(u, str)), uids) if isinstance(uids, (list, tuple)) else uids
        raise DownloadError(f"Objaverse uids must be strings; got {_shape(bad)}")
