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
from pathlib import Path
from typing import Any

from objascale.generator.download import DownloadError, download_file, fetch_json

__all__ = ["ObjaverseHttp", "URL_ENV", "CACHE_ENV", "DEFAULT_URL"]

URL_ENV = "FLIPBENCH_OBJAVERSE_URL"
CACHE_ENV = "FLIPBENCH_OBJAVERSE_CACHE"
DEFAULT_URL = "https://huggingface.co/datasets/allenai/objaverse/resolve/main"


class ObjaverseHttp:
    """``load_lvis_annotations`` / ``load_annotations`` / ``load_objects`` of the ``objaverse`` package over HTTP."""

    def __init__(self, base_url: str | None = None, cache: str | os.PathLike | None = None) -> None:
        self.base = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        default_cache = Path.home() / ".objaverse" / "hf-objaverse-v1"
        self.cache = Path(cache or os.environ.get(CACHE_ENV) or default_cache).expanduser()
        self._paths: dict[str, str] | None = None
        #: uid -> reason of the last failed download (the package only leaves such a uid out of its answer)
        self.errors: dict[str, str] = {}

    def _json(self, rel: str) -> Any:
        """A ``.json.gz`` file of the dataset, downloaded once into the cache."""
        local = download_file(f"{self.base}/{rel}", self.cache / rel)
        return fetch_json(local.resolve().as_uri())

    def load_lvis_annotations(self) -> dict[str, list[str]]:
        data = self._json("lvis-annotations.json.gz")
        if not isinstance(data, dict):
            raise DownloadError(f"{self.base}/lvis-annotations.json.gz: expected {{category: [uid, ...]}}")
        return data

    def object_paths(self) -> dict[str, str]:
        if self._paths is None:
            self._paths = self._json("object-paths.json.gz")
        return self._paths

    def load_annotations(self, uids: list[str]) -> dict[str, Any]:
        paths = self.object_paths()
        folders = sorted({paths[u].split("/")[1] for u in uids if u in paths})
        out: dict[str, Any] = {}
        for folder in folders:
            meta = self._json(f"metadata/{folder}.json.gz")
            out.update({u: meta[u] for u in uids if u in meta})
        return out

    def load_objects(self, uids: list[str], download_processes: int = 1) -> dict[str, str]:
        """uid -> local GLB path (``download_processes`` is accepted for API compatibility; downloads are serial)."""
        paths = self.object_paths()
        out = {}
        for uid in uids:
            rel = paths.get(uid)
            if rel is None:
                self.errors[uid] = "not in object-paths.json.gz"
                continue
            try:
                out[uid] = str(download_file(f"{self.base}/{rel}", self.cache / rel))
            except DownloadError as exc:
                self.errors[uid] = str(exc)
        return out
