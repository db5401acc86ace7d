"""Deterministic per-image random draws (pure numpy, no bpy).

Image ``k`` of a run with global seed ``s`` uses two independent streams derived only from ``(s, k)``:

* the **scene draw** (``SeedSequence([s, k, 0])``): resolution, target relative area, HDRI, heading, exposure,
  lens, camera pitch and the Cycles seed. It never changes for image ``k``, so re-draws after a rejected render
  do not bias the area / resolution distributions;
* the **object draw** of attempt ``a`` (``SeedSequence([s, k, 1 + a])``): which object (and its procedural
  variant), its orientation and the pixel its centre projects to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from objascale.generator.config import GeneratorConfig
from objascale.generator.scale import area_bounds, sample_log_uniform

__all__ = ["SceneDraw", "ObjectDraw", "draw_scene", "draw_object"]


@dataclass(frozen=True)
class SceneDraw:
    """Per-image scene parameters. ``target_area``: relative mask area (fraction of W*H)."""

    index: int
    width: int
    height: int
    target_area: float
    hdri_index: int
    heading_deg: float
    exposure_ev: float
    lens_mm: float
    pitch_deg: float
    render_seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ObjectDraw:
    """Per-attempt object parameters. ``u``, ``v``: continuous pixel the object centre should project to."""

    attempt: int
    object_index: int
    variant_seed: int
    yaw_deg: float
    tilt_deg: float
    tilt_axis_deg: float
    u: float
    v: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, k: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k), int(stream)]))


def draw_scene(cfg: GeneratorConfig, k: int, num_hdris: int) -> SceneDraw:
    """Scene draw of image ``k`` (see module docstring)."""
    if num_hdris < 1:
        raise ValueError("no HDRI available")
    rng = _rng(cfg.seed, k, 0)
    long_side = int(rng.integers(cfg.long_side_min, cfg.long_side_max + 1))
    aspect = float(cfg.aspects[int(rng.integers(len(cfg.aspects)))])
    short_side = max(16, int(round(long_side / aspect)))
    portrait = bool(rng.uniform() < cfg.portrait_prob)
    width, height = (short_side, long_side) if portrait else (long_side, short_side)
    lo, hi = area_bounds(width, height, cfg.min_pixels, cfg.max_area, cfg.min_area)
    return SceneDraw(
        index=int(k),
        width=width,
        height=height,
        target_area=sample_log_uniform(rng, lo, hi),
        hdri_index=int(rng.integers(num_hdris)),
        heading_deg=float(rng.uniform(0.0, 360.0)),
        exposure_ev=float(rng.uniform(*cfg.exposure_ev)),
        lens_mm=float(rng.uniform(*cfg.lens_mm)),
        pitch_deg=float(rng.uniform(*cfg.pitch_deg)),
        render_seed=int(rng.integers(0, 2**31 - 1)),
    )


def draw_object(cfg: GeneratorConfig, k: int, attempt: int, scene: SceneDraw, num_objects: int,
                excluded: Sequence[int] = ()) -> ObjectDraw:
    """Object draw of attempt ``attempt`` of image ``k``; object indices in ``excluded`` (failed downloads) are
    skipped by drawing again from the same stream, so the result depends only on ``(seed, k, attempt, excluded)``."""
    excluded_set = set(excluded)
    if num_objects - len(excluded_set & set(range(num_objects))) < 1:
        raise ValueError("no usable object left in the catalogue (all excluded)")
    rng = _rng(cfg.seed, k, 1 + attempt)
    obj = int(rng.integers(num_objects))
    while obj in excluded_set:
        obj = int(rng.integers(num_objects))
    # centre pixel: uniform in the frame; scale control later pulls it inwards if the object would be cropped
    u = float(rng.uniform(0.0, scene.width))
    v = float(rng.uniform(0.0, scene.height))
    # tilt: cap angle uniform on the spherical cap of half-angle max_tilt (area-uniform)
    cos_max = math.cos(math.radians(cfg.max_tilt_deg))
    tilt = math.degrees(math.acos(1.0 - rng.uniform() * (1.0 - cos_max)))
    return ObjectDraw(
        attempt=int(attempt),
        object_index=obj,
        variant_seed=int(rng.integers(0, 2**31 - 1)),
        yaw_deg=float(rng.uniform(0.0, 360.0)),
        tilt_deg=float(tilt),
        tilt_axis_deg=float(rng.uniform(0.0, 360.0)),
        u=u,
        v=v,
    )
