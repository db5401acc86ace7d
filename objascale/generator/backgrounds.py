"""HDRI backgrounds: the 8 CC0 HDRIs bundled with bpy, a folder of ``.hdr`` / ``.exr`` files, or Poly Haven
(``polyhaven[:RES[:N]]``, downloaded and cached by ``polyhaven.py``) (no bpy import).

The bundled set lives in bpy's ``datafiles/studiolights/world`` (1024x512 each, CC0 by Greg Zaal / Poly Haven,
see the ``license.txt`` next to them); it is found from the installed ``bpy`` package without importing it.
For a folder, an optional ``licenses.json`` (``{"file name": "licence text", ...}``) gives per-file licences.

:func:`hdri_problem` decodes a file (OpenCV for ``.hdr``, OpenEXR for ``.exr``) to tell whether Blender can use
it; a run skips the ones that fail (see ``generate.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["HdriSpec", "bundled_hdri_dir", "list_hdris", "hdri_problem"]

BUNDLED_LICENSE = "CC0 (Greg Zaal, Poly Haven; 1K version bundled with Blender)"
HDRI_SUFFIXES = (".hdr", ".exr")


@dataclass(frozen=True)
class HdriSpec:
    name: str
    path: str
    license: str
    author: str = ""
    source: str = ""  # where the file came from (asset page / URL), for attribution

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def bundled_hdri_dir() -> Path:
    """``.../bpy/<version>/datafiles/studiolights/world`` of the installed bpy wheel."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("bpy is not installed; install flipbench's 'generate' extra (pip install bpy==5.0.1) "
                                "or pass --hdris DIR with .hdr/.exr files")
    for root in spec.submodule_search_locations:
        hits = sorted(Path(root).glob("*/datafiles/studiolights/world"))
        if hits:
            return hits[-1]
    raise FileNotFoundError("the bpy installation has no datafiles/studiolights/world folder")


def list_hdris(source: str, seed: int = 0, frame: tuple[int, float, float] | None = None) -> list[HdriSpec]:
    """HDRIs of ``source``: ``"bundled"``, ``"polyhaven[:RES[:N]]"`` (N assets chosen by ``seed``, downloaded; RES
    ``auto`` from ``frame`` = (long side px, widest lens mm, sensor mm)) or a folder path, sorted by file name."""
    if source.split(":", 1)[0] == "polyhaven":
        from objascale.generator.polyhaven import polyhaven_hdris  # noqa: PLC0415 - network code only when asked

        return polyhaven_hdris(source, seed, frame)
    if source == "bundled":
        folder, default_license = bundled_hdri_dir(), BUNDLED_LICENSE
    else:
        folder, default_license = Path(source), "unknown (see the HDRI folder)"
        if not folder.is_dir():
            raise FileNotFoundError(f"HDRI folder {folder} does not exist")
    licenses: dict[str, str] = {}
    lic_file = folder / "licenses.json"
    if lic_file.is_file():
        try:
            licenses = json.loads(lic_file.read_text())
        except ValueError as exc:
            raise ValueError(f"{lic_file} is not valid JSON ({exc}); fix or remove it") from exc
        if not isinstance(licenses, dict):
            raise ValueError(f"{lic_file} must map file names to licence texts (a JSON object)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in HDRI_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .hdr / .exr file in {folder}")
    return [HdriSpec(name=p.stem, path=str(p.resolve()), license=licenses.get(p.name, default_license)) for p in files]


def hdri_problem(path: str | os.PathLike) -> str | None:
    """Why the HDRI file ``path`` cannot be used (missing, empty, not decodable, no finite RGB pixels), or None.

    Decodes the whole image (``.hdr`` with OpenCV, ``.exr`` with OpenEXR, as float RGB): a truncated file fails
    here instead of in Blender, where it fails or crashes every render that draws it."""
    path = Path(path)
    if not path.is_file():
        return "the file does not exist (removed or moved)"
    if path.stat().st_size == 0:
        return "the file is empty"
    try:
        pixels = _decode(path)
    except Exception as exc:  # noqa: BLE001 - every decoder failure means "unusable"; the text says which
        return f"cannot be decoded: {' '.join(str(exc).split()) or type(exc).__name__}"
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] < 3 or pixels.size == 0:
        return "cannot be decoded as an RGB image"
    import numpy as np  # noqa: PLC0415

    if not np.isfinite(pixels).all():
        return "holds NaN or infinite pixels"
    return None


def _decode(path: Path):
    """Float pixels ``[H, W, C]`` of an ``.hdr`` / ``.exr`` file (None when OpenCV cannot decode it)."""
    if path.suffix.lower() == ".hdr":
        import cv2  # noqa: PLC0415

        with open(path, "rb") as f:
            if not f.read(10).startswith((b"#?RADIANCE", b"#?RGBE")):
                raise ValueError("no Radiance header (#?RADIANCE)")
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    import numpy as np  # noqa: PLC0415
    import OpenEXR  # noqa: PLC0415

    channels = OpenEXR.File(str(path)).channels()
    if "RGB" in channels:
        return channels["RGB"].pixels
    if "RGBA" in channels:
        return channels["RGBA"].pixels
    if all(c in channels for c in "RGB"):
        return np.stack([channels[c].pixels for c in "RGB"], axis=-1)
    raise ValueError(f"no RGB channels (has {sorted(channels)})")
