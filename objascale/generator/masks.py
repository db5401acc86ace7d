"""Exact object masks from a Cycles Cryptomatte pass (multilayer EXR written by Blender), via the OpenEXR wheel.

Cryptomatte stores, per pixel and rank, an object id (a 32-bit hash, stored bit-for-bit as a float32) and the
coverage of that id in the pixel (anti-aliased, from the same samples as the beauty render). The EXR header key
``cryptomatte/<k>/manifest`` maps names to hex hashes. The coverage of one name is the sum of the coverage of the
ranks whose id matches; since the RGB is the coverage blend ``c * object + (1 - c) * background`` of the same
render, ``coverage >= 0.5`` is a binary mask aligned with the image by construction.

Blender 5.0 writes multilayer EXRs as multi-part files, one part per pass, channels named
``<ViewLayer>.<Pass>NN.{r,g,b,a}``; :func:`read_exr` merges all parts into one channel dict.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_exr", "name_hash_float", "cryptomatte_coverage", "MaskResult", "mask_from_coverage"]


def _openexr():
    try:
        import OpenEXR  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - environment problem
        raise ImportError("reading Cycles EXR passes needs the OpenEXR wheel: pip install OpenEXR "
                          "(part of flipbench's 'generate' extra)") from exc
    return OpenEXR


def read_exr(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All channels (name -> float array [H, W]) and the merged header of every part of an EXR file."""
    OpenEXR = _openexr()
    channels: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {}
    with OpenEXR.File(str(path), separate_channels=True) as f:
        for part in f.parts:
            header.update(part.header)
            for name, ch in part.channels.items():
                channels[name] = np.asarray(ch.pixels)
    return channels, header


def name_hash_float(manifest_hex: str) -> np.float32:
    """The float32 whose bits are the manifest's hex hash (how Cryptomatte stores ids in the image)."""
    return np.frombuffer(struct.pack("<I", int(manifest_hex, 16)), dtype=np.float32)[0]


def _crypto_layers(channels: dict[str, np.ndarray], pass_name: str) -> list[tuple[np.ndarray, ...]]:
    """[(r, g, b, a), ...] of the ``<pass_name>NN`` layers, in rank order."""
    pat = re.compile(rf"(^|\.){re.escape(pass_name)}(\d\d)\.([rgbaRGBA])$")
    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, arr in channels.items():
        m = pat.search(name)
        if m:
            layers.setdefault(int(m.group(2)), {})[m.group(3).lower()] = arr
    out = []
    for idx in sorted(layers):
        chans = layers[idx]
        if set(chans) != set("rgba"):
            raise ValueError(f"Cryptomatte layer {pass_name}{idx:02d} lacks channels: has {sorted(chans)}")
        out.append((chans["r"], chans["g"], chans["b"], chans["a"]))
    if not out:
        raise ValueError(f"no Cryptomatte '{pass_name}' channels in the EXR (channels: {sorted(channels)[:8]}...)")
    return out


def _manifest(header: dict[str, Any], pass_name: str) -> dict[str, str]:
    for key, value in header.items():
        if key.startswith("cryptomatte/") and key.endswith("/name"):
            name = value.decode() if isinstance(value, bytes) else str(value)
            if name.endswith(pass_name):
                raw = header.get(key[: -len("name")] + "manifest", "{}")
                return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    raise ValueError(f"no Cryptomatte manifest for '{pass_name}' in the EXR header")


def cryptomatte_coverage(channels: dict[str, np.ndarray], header: dict[str, Any], object_name: str,
                         pass_name: str = "CryptoAsset") -> np.ndarray:
    """Coverage float32 [H, W] in [0, 1] of ``object_name`` in the Cryptomatte pass ``pass_name``."""
    manifest = _manifest(header, pass_name)
    if object_name not in manifest:
        raise KeyError(f"'{object_name}' is not in the Cryptomatte manifest (names: {sorted(manifest)[:10]})")
    target = name_hash_float(manifest[object_name]).view(np.uint32)
    cov = None
    for r, g, b, a in _crypto_layers(channels, pass_name):
        for ident, c in ((r, g), (b, a)):
            hit = np.ascontiguousarray(ident, dtype=np.float32).view(np.uint32) == target
            part = np.where(hit, c.astype(np.float32), np.float32(0))
            cov = part if cov is None else cov + part
    return np.clip(cov, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class MaskResult:
    """``mask`` bool [H, W] (coverage >= threshold), ``coverage_area`` (sum of coverage, px), ``mask_area`` (px)."""

    mask: np.ndarray
    coverage_area: float
    mask_area: int


def mask_from_coverage(coverage: np.ndarray, threshold: float = 0.5) -> MaskResult:
    """Binary mask and areas (pixels) from a coverage map."""
    mask = coverage >= threshold
    return MaskResult(mask=mask, coverage_area=float(coverage.sum(dtype=np.float64)), mask_area=int(mask.sum()))
