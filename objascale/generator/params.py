"""Deterministic per-image random draws (pure numpy, no bpy).

Image ``k`` of a run with global seed ``s`` uses two independent streams derived only from ``(s, k)``:

* the **scene draw** (``SeedSequence([s, k, 0])``): target relative area (first: log-uniform over the whole
  ``scale.area_range``), then a resolution that can hold it (``scale.frame_options``: an aspect among those with
  a fitting frame, a long side uniform in its fitting range, portrait or not), HDRI, heading, exposure, lens,
  camera pitch and the Cycles seed. It never changes for image ``k``, so re-draws after a rejected render
  do not bias the area / resolution distributions;
* the **object draw** of attempt ``a`` (``SeedSequence([s, k, 1 + a])``): which object (and its procedural
  variant), its orientation and the pixel its centre projects to (with the ground plane: below the horizon, so
  the object stands on a visible ground). The object is drawn among the image's
  *candidates*: the whole catalogue, or in a balanced run (``cfg.balanced``) the entries of category
  ``k mod C`` (:func:`image_category`).

A failed download never changes the pose of an image nor the draws of any other image: when the drawn object
is unusable (``excluded``) it is replaced by the first usable entry of a fixed fallback order of the candidates
(``SeedSequence([s, k, 1 + a, 1])``), so the result depends only on ``(s, k, a)`` and on which objects fail,
not on when a worker learnt of a failure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from objascale.generator.config import GeneratorConfig
from objascale.generator.scale import area_range, frame_options, horizon_row, sample_log_uniform, short_side

__all__ = ["SceneDraw", "ObjectDraw", "draw_scene", "draw_object", "category_order", "image_category"]


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


def _rng(seed: int, k: int, stream: int, *sub: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k), int(stream), *map(int, sub)]))


def category_order(categories: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    """(distinct categories in order of first appearance, category -> catalogue indices) of a catalogue given as
    its entries' categories."""
    members: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        members.setdefault(c, []).append(i)
    return list(members), members


def image_category(k: int, num_categories: int) -> int:
    """Category index of image ``k`` in a balanced run: ``k mod C``, so every block of ``C`` consecutive images
    holds each category once and ``C * n`` images hold exactly ``n`` per category."""
    if num_categories < 1:
        raise ValueError("no category in the catalogue")
    return int(k) % int(num_categories)


def draw_scene(cfg: GeneratorConfig, k: int, num_hdris: int) -> SceneDraw:
    """Scene draw of image ``k`` (see module docstring)."""
    if num_hdris < 1:
        raise ValueError("no HDRI available")
    rng = _rng(cfg.seed, k, 0)
    area = sample_log_uniform(rng, *area_range(cfg))
    options = frame_options(cfg, area)
    if not options:  # area_range guarantees one; only a config edited by hand could get here
        raise ValueError(f"no frame of the configured sizes holds a relative area of {area:g}")
    aspect, l_lo, l_hi = options[int(rng.integers(len(options)))]
    long_side = int(rng.integers(l_lo, l_hi + 1))
    short = short_side(long_side, aspect)
    portrait = bool(rng.uniform() < cfg.portrait_prob)
    width, height = (short, long_side) if portrait else (long_side, short)
    return SceneDraw(
        index=int(k),
        width=width,
        height=height,
        target_area=area,
        hdri_index=int(rng.integers(num_hdris)),
        heading_deg=float(rng.uniform(0.0, 360.0)),
        exposure_ev=float(rng.uniform(*cfg.exposure_ev)),
        lens_mm=float(rng.uniform(*cfg.lens_mm)),
        pitch_deg=float(rng.uniform(*cfg.pitch_deg)),
        render_seed=int(rng.integers(0, 2**31 - 1)),
    )


def draw_object(cfg: GeneratorConfig, k: int, attempt: int, scene: SceneDraw, num_objects: int,
                excluded: Sequence[int] = (), candidates: Sequence[int] | None = None) -> ObjectDraw:
    """Object draw of attempt ``attempt`` of image ``k`` among ``candidates`` (catalogue indices; default: all
    ``num_objects``). An object in ``excluded`` (failed downloads) is replaced by the first usable entry of the
    fallback order; every other field is unchanged (see the module docstring)."""
    pool = list(range(num_objects)) if candidates is None else [int(i) for i in candidates]
    excluded_set = set(excluded)
    if not pool:
        raise ValueError("no candidate object for this image")
    rng = _rng(cfg.seed, k, 1 + attempt)
    obj = pool[int(rng.integers(len(pool)))]
    if obj in excluded_set:
        order = [pool[i] for i in _rng(cfg.seed, k, 1 + attempt, 1).permutation(len(pool))]
        usable = [i for i in order if i not in excluded_set]
        if not usable:
            raise ValueError("no usable object left among this image's candidates (all excluded: failed downloads)")
        obj = usable[0]
    # centre pixel: uniform in the frame (with the ground plane: in the part below the horizon, when there is one);
    # scale control later pulls it inwards if the object would be cropped
    u = float(rng.uniform(0.0, scene.width))
    v_top = 0.0
    if cfg.ground_plane and not cfg.calibration:
        row = horizon_row(scene.width, scene.height, scene.lens_mm, cfg.sensor_mm, scene.pitch_deg)
        v_top = row if 0.0 < row < 0.95 * scene.height else 0.0
    v = float(v_top + rng.uniform(0.0, 1.0) * (scene.height - v_top))
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
