"""CC0 HDRIs from Poly Haven's public API (``--hdris polyhaven[:RES[:N]]``; no bpy).

API (https://api.polyhaven.com, OpenAPI spec ``swagger.yml`` of github.com/Poly-Haven/Public-API), the two
endpoints used and the parts of their JSON read here:

* ``GET /assets?t=hdris`` -> ``{asset_id: {"name": str, "type": 0, "authors": {author: credit}, "categories":
  [...], "max_resolution": [w, h], "files_hash": sha1, ...}, ...}``;
* ``GET /files/{id}`` -> ``{"hdri": {"1k": {"hdr": {"url", "md5", "size"}, "exr": {...}}, "2k": ..., ...},
  "tonemapped": {...}, ...}`` (``size`` in bytes, ``md5`` hex).

``polyhaven_hdris("polyhaven:4k:16", seed)`` lists the HDRI assets, chooses ``N`` of them by ``seed`` (a
permutation of the sorted ids), downloads the ``RES`` file of each (``.hdr`` preferred, else ``.exr``) into the
cache, verifying size and MD5 (``download.py``: resumed, atomic), and returns one ``HdriSpec`` per asset with
licence "CC0 (Poly Haven)", its authors and its asset page. Everything Poly Haven publishes is CC0.

Configuration: ``FLIPBENCH_POLYHAVEN_API`` (base URL, default ``https://api.polyhaven.com``; tests point it at
a local server), ``FLIPBENCH_HDRI_CACHE`` (cache folder, default ``$FLIPBENCH_HOME/hdris`` or
``~/.cache/flipbench/hdris``). Defaults: ``RES`` = 4k, ``N`` = 16.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from objascale.generator.backgrounds import HdriSpec
from objascale.generator.download import DownloadError, download_file, fetch_json

__all__ = ["API_ENV", "CACHE_ENV", "DEFAULT_API", "parse_source", "api_base", "cache_dir", "list_assets",
           "choose_assets", "hdri_file", "polyhaven_hdris", "LICENSE"]

API_ENV = "FLIPBENCH_POLYHAVEN_API"
CACHE_ENV = "FLIPBENCH_HDRI_CACHE"
DEFAULT_API = "https://api.polyhaven.com"
LICENSE = "CC0 (Poly Haven)"
FORMATS = ("hdr", "exr")
_RES = re.compile(r"^\d+k$")
_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


def parse_source(source: str) -> tuple[str, int]:
    """``"polyhaven[:RES[:N]]"`` -> (RES, N); ``ValueError`` with the accepted form otherwise."""
    parts = source.split(":")
    if parts[0] != "polyhaven" or len(parts) > 3:
        raise ValueError(f"HDRI source {source!r}: expected polyhaven[:RES[:N]], e.g. polyhaven:4k:16")
    res = parts[1] if len(parts) > 1 and parts[1] else "4k"
    n = parts[2] if len(parts) > 2 else "16"
    if not _RES.match(res) or not n.isdigit() or int(n) < 1:
        raise ValueError(f"HDRI source {source!r}: RES must look like 1k, 2k, 4k, 8k and N be a positive integer")
    return res, int(n)


def api_base() -> str:
    return os.environ.get(API_ENV, DEFAULT_API).rstrip("/")


def cache_dir() -> Path:
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV]).expanduser()
    home = Path(os.environ.get("FLIPBENCH_HOME", Path.home() / ".cache" / "flipbench")).expanduser()
    return home / "hdris"


def list_assets(base: str | None = None) -> dict[str, dict[str, Any]]:
    """``GET /assets?t=hdris``: asset id -> metadata (only well-formed ids of type 0 are kept)."""
    data = fetch_json(f"{base or api_base()}/assets?t=hdris")
    if not isinstance(data, dict):
        raise DownloadError(f"{base or api_base()}/assets?t=hdris: expected a JSON object of assets")
    return {k: v for k, v in data.items() if _ID.match(k) and isinstance(v, dict) and v.get("type", 0) == 0}


def choose_assets(ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` ids chosen by ``seed``: the first ``n`` of a seeded permutation of the sorted ids (sorted again)."""
    ids = sorted(ids)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9D41])).permutation(len(ids))
    return sorted(ids[i] for i in perm[:n])


def hdri_file(files: dict[str, Any], res: str) -> tuple[str, dict[str, Any]]:
    """(format, ``{"url", "md5", "size"}``) of the ``res`` HDRI in a ``/files/{id}`` answer (hdr, else exr).

    A ``KeyError`` when ``res`` (or a file of it) is not offered; a ``ValueError`` naming the field when a
    field the code uses has the wrong JSON type."""
    if not isinstance(files, dict):
        raise ValueError(f"the answer is a JSON {type(files).__name__}, not an object")
    by_res = files.get("hdri", {})
    if not isinstance(by_res, dict):
        raise ValueError(f"field 'hdri' is a JSON {type(by_res).__name__}, not an object of resolutions")
    if res not in by_res:
        raise KeyError(f"no {res} HDRI (available: {', '.join(sorted(map(str, by_res))) or 'none'})")
    if not isinstance(by_res[res], dict):
        raise ValueError(f"field 'hdri.{res}' is a JSON {type(by_res[res]).__name__}, not an object of formats")
    for fmt in FORMATS:
        entry = by_res[res].get(fmt)
        if isinstance(entry, dict) and entry.get("url"):
            field = f"hdri.{res}.{fmt}"
            if not isinstance(entry["url"], str):
                raise ValueError(f"field '{field}.url' is not a string")
            size = entry.get("size")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise ValueError(f"field '{field}.size' is {size!r}, not a byte count")
            if entry.get("md5") is not None and not isinstance(entry["md5"], str):
                raise ValueError(f"field '{field}.md5' is not a string")
            return fmt, entry
    raise KeyError(f"no .hdr or .exr file at {res}")


def polyhaven_hdris(source: str, seed: int = 0) -> list[HdriSpec]:
    """The HDRIs of ``source`` (see the module docstring), downloaded into :func:`cache_dir` if needed."""
    res, n = parse_source(source)
    base = api_base()
    assets = list_assets(base)
    if not assets:
        raise DownloadError(f"{base}/assets?t=hdris lists no HDRI")
    chosen = {}
    for asset_id in choose_assets(list(assets), n, seed):  # every file entry first: fail before downloading
        try:
            chosen[asset_id] = hdri_file(fetch_json(f"{base}/files/{asset_id}"), res)
        except KeyError as exc:
            raise DownloadError(f"Poly Haven HDRI {asset_id}: {exc.args[0]}; choose another RES") from exc
        except ValueError as exc:
            raise DownloadError(f"{base}/files/{asset_id}: not a Poly Haven files answer: {exc}") from exc
    specs = []
    for asset_id, (fmt, entry) in chosen.items():
        dest = cache_dir() / "polyhaven" / res / f"{asset_id}_{res}.{fmt}"
        download_file(entry["url"], dest, size=entry.get("size"), md5=entry.get("md5"))
        authors = assets[asset_id].get("authors") or {}
        specs.append(HdriSpec(name=asset_id, path=str(dest.resolve()), license=LICENSE,
                              author=", ".join(sorted(authors)) if isinstance(authors, dict) else str(authors),
                              source=f"https://polyhaven.com/a/{asset_id}"))
    return specs
