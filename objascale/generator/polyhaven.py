"""CC0 HDRIs from Poly Haven's public API (``--hdris polyhaven[:RES[:N]]``; no bpy).

API (https://api.polyhaven.com, OpenAPI spec ``swagger.yml`` of github.com/Poly-Haven/Public-API), the two
endpoints used and the parts of their JSON read here:

* ``GET /assets?t=hdris`` -> ``{asset_id: {"name": str, "type": 0, "authors": {author: credit}, "categories":
  [...], "max_resolution": [w, h], "files_hash": sha1, ...}, ...}``;
* ``GET /files/{id}`` -> ``{"hdri": {"1k": {"hdr": {"url", "md5", "size"}, "exr": {...}}, "2k": ..., ...},
  "tonemapped": {...}, ...}`` (``size`` in bytes, ``md5`` hex).

``polyhaven_hdris("polyhaven:4k:16", seed)`` lists the HDRI assets, chooses ``N`` of them by ``seed`` (the first
``N`` of a seeded permutation of the sorted ids, sorted), downloads the ``RES`` file of each (``.hdr`` preferred,
else ``.exr``) into the cache, verifying size and MD5 (``download.py``: resumed, atomic), and returns one
``HdriSpec`` per asset with licence "CC0 (Poly Haven)", its authors and its asset page. Everything Poly Haven
publishes is CC0. An asset that does not offer ``RES`` is skipped with a warning and its slot of the list takes
the next asset of the permutation that does, so the other slots (and the images that draw them) stay as they
were. ``RES`` = ``auto`` (the paper preset) is chosen from the frame's angular resolution
(:func:`resolution_for_frame`: the smallest Poly Haven resolution at least as sharp as the frame, 16k at most).

Configuration: ``FLIPBENCH_POLYHAVEN_API`` (base URL, default ``https://api.polyhaven.com``; tests point it at
a local server), ``FLIPBENCH_HDRI_CACHE`` (cache folder, default ``$FLIPBENCH_HOME/hdris`` or
``~/.cache/flipbench/hdris``). Defaults: ``RES`` = 4k, ``N`` = 16.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from objascale.generator.backgrounds import HdriSpec
from objascale.generator.download import DownloadError, download_file, fetch_json

__all__ = ["API_ENV", "CACHE_ENV", "DEFAULT_API", "parse_source", "api_base", "cache_dir", "list_assets",
           "choose_assets", "candidate_order", "hdri_file", "polyhaven_hdris", "resolution_for_frame", "LICENSE",
           "RESOLUTIONS"]

API_ENV = "FLIPBENCH_POLYHAVEN_API"
CACHE_ENV = "FLIPBENCH_HDRI_CACHE"
DEFAULT_API = "https://api.polyhaven.com"
LICENSE = "CC0 (Poly Haven)"
FORMATS = ("hdr", "exr")
_RES = re.compile(r"^(\d+k|auto)$")
#: Poly Haven's HDRI resolutions (equirectangular width = k x 1024 px), ascending
RESOLUTIONS = ("1k", "2k", "4k", "8k", "16k")
_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


def parse_source(source: str) -> tuple[str, int]:
    """``"polyhaven[:RES[:N]]"`` -> (RES, N); ``ValueError`` with the accepted form otherwise."""
    parts = source.split(":")
    if parts[0] != "polyhaven" or len(parts) > 3:
        raise ValueError(f"HDRI source {source!r}: expected polyhaven[:RES[:N]], e.g. polyhaven:4k:16")
    res = parts[1] if len(parts) > 1 and parts[1] else "4k"
    n = parts[2] if len(parts) > 2 else "16"
    if not _RES.match(res) or not n.isdigit() or int(n) < 1:
        raise ValueError(f"HDRI source {source!r}: RES must look like 1k, 2k, 4k, 8k, 16k or be auto and N be a "
                         "positive integer")
    return res, int(n)


def resolution_for_frame(long_side: int, lens_mm: float, sensor_mm: float) -> str:
    """The Poly Haven resolution whose equirectangular map (``k x 1024`` px over 360 degrees) is at least as sharp
    as a frame of ``long_side`` px whose sensor width ``sensor_mm`` spans it at focal length ``lens_mm``: needed
    width = ``360 / fov * long_side``, the smallest of :data:`RESOLUTIONS` that reaches it, else the largest (16k).
    ``generate`` passes the run's largest long side and widest lens, the least demanding frame: narrower lenses
    magnify the map up to ``lens_max / lens_min`` times more. E.g. 4096 px at 24 mm (73.7 degrees): 20,000 px ->
    16k (still 1.2x upsampled there, 3.1x at 70 mm); 512 px: 2,500 px -> 4k."""
    fov_deg = math.degrees(2.0 * math.atan(sensor_mm / (2.0 * lens_mm)))
    needed = 360.0 / fov_deg * long_side
    return next((r for r in RESOLUTIONS if int(r[:-1]) * 1024 >= needed), RESOLUTIONS[-1])


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


def candidate_order(ids: list[str], seed: int) -> list[str]:
    """Every id in the seeded order the assets are taken in (a permutation of the sorted ids)."""
    ids = sorted(ids)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9D41])).permutation(len(ids))
    return [ids[i] for i in perm]


def choose_assets(ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` ids chosen by ``seed``: the first ``n`` of :func:`candidate_order` (sorted again)."""
    return sorted(candidate_order(ids, seed)[:n])


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


def polyhaven_hdris(source: str, seed: int = 0, frame: tuple[int, float, float] | None = None) -> list[HdriSpec]:
    """The HDRIs of ``source`` (see the module docstring), downloaded into :func:`cache_dir` if needed.

    ``frame``: ``(long side px, widest lens mm, sensor mm)`` of the run, for ``RES`` = ``auto`` (required then)."""
    res, n = parse_source(source)
    if res == "auto":
        if frame is None:
            raise ValueError(f"HDRI source {source!r}: RES auto needs the frame size; give a resolution such as 8k")
        res = resolution_for_frame(*frame)
    base = api_base()
    assets = list_assets(base)
    if not assets:
        raise DownloadError(f"{base}/assets?t=hdris lists no HDRI")
    order = candidate_order(list(assets), seed)
    slots = sorted(order[:n])  # the list images draw from; a slot without RES takes the next candidate
    spare = iter(order[n:])
    chosen: dict[str, tuple[str, dict]] = {}
    skipped: dict[str, str] = {}

    def entry(asset_id: str) -> tuple[str, dict] | None:
        try:
            return hdri_file(fetch_json(f"{base}/files/{asset_id}"), res)
        except KeyError as exc:  # no file at RES: skip this asset
            skipped[asset_id] = str(exc.args[0])
            return None
        except ValueError as exc:
            raise DownloadError(f"{base}/files/{asset_id}: not a Poly Haven files answer: {exc}") from exc

    names: list[str | None] = []
    for asset_id in slots:  # every file entry first: fail before downloading
        found = entry(asset_id)
        while found is None and (nxt := next(spare, None)) is not None:
            asset_id, found = nxt, entry(nxt)
        names.append(asset_id if found is not None else None)
        if found is not None:
            chosen[asset_id] = found
    for asset_id, why in skipped.items():
        print(f"warning: Poly Haven HDRI {asset_id} is skipped: {why}; its place is taken by the next candidate",
              file=sys.stderr)
    if not chosen:
        raise ValueError(f"no Poly Haven HDRI offers {res} ({len(skipped)} tried: {', '.join(sorted(skipped))}); "
                         "choose another RES")
    # fewer candidates with RES than slots: a slot left empty takes the next filled one (cyclically), as a broken file
    filled = [i for i, name in enumerate(names) if name is not None]
    names = [name if name is not None else names[next((f for f in filled if f > i), filled[0])]
             for i, name in enumerate(names)]
    specs = []
    for asset_id in names:
        fmt, file_entry = chosen[asset_id]
        dest = cache_dir() / "polyhaven" / res / f"{asset_id}_{res}.{fmt}"
        download_file(file_entry["url"], dest, size=file_entry.get("size"), md5=file_entry.get("md5"))
        authors = assets[asset_id].get("authors") or {}
        specs.append(HdriSpec(name=asset_id, path=str(dest.resolve()), license=LICENSE,
                              author=", ".join(sorted(authors)) if isinstance(authors, dict) else str(authors),
                              source=f"https://polyhaven.com/a/{asset_id}"))
    return specs
