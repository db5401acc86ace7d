"""Pinhole-camera geometry of ObjaScale's scale control (pure numpy, no bpy).

Frames and units:

* **Pixel frame**: continuous image coordinates ``(u, v)`` with ``u`` in ``[0, W]`` to the right and ``v`` in
  ``[0, H]`` downwards; pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``.
* **Camera frame** (Blender convention): the camera looks down its local ``-Z``, ``+X`` right, ``+Y`` up.
* **Sensor**: Blender's ``sensor_fit='AUTO'``: the sensor width ``sensor_mm`` spans the *larger* image
  dimension, so one pixel is ``sensor_mm / max(W, H)`` millimetres on the image plane at focal length
  ``lens_mm``. Blender lens shift is in units of that larger dimension.

Scale control (see ``render.py``): the object is normalised to a unit bounding sphere and placed on the camera
ray through the chosen pixel at distance ``d``. Scaling the object about its centre by ``s`` and moving it to
``d / s`` along the ray give the same image (similarity about the camera centre), so its projected area in
pixels is exactly ``A(d) = A(d0) * (d0 / d)**2`` *for a fixed ray and orientation*; only the finite probe
measurement is approximate, so one or two corrections reach the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "area_range",
    "short_side",
    "frame_pixels",
    "frame_options",
    "horizon_row",
    "sample_log_uniform",
    "pixel_direction",
    "ProbeView",
    "probe_view",
    "distance_for_area",
    "initial_distance",
    "clamp_center",
    "box_excess",
]


def short_side(long_side: int, aspect: float) -> int:
    """Short image side of a frame with long side ``long_side`` and aspect ratio ``aspect`` (>= 1; at least 16)."""
    return max(16, int(round(long_side / aspect)))


def frame_pixels(long_side: int, aspect: float) -> int:
    """Pixel count of that frame."""
    return int(long_side) * short_side(long_side, aspect)


def _max_pixels_of_box(cfg) -> float:
    """Most mask pixels an object may have under the pixel limit: ``object_box_fill * max_object_px**2`` (inf
    without a limit)."""
    return cfg.object_box_fill * float(cfg.max_object_px) ** 2 if cfg.max_object_px else math.inf


def area_range(cfg) -> tuple[float, float]:
    """Range ``[lo, hi]`` the relative mask area of a config (``GeneratorConfig``) is drawn from, log-uniformly.

    ``lo = max(min_area, min_pixels / P_max)``: the configured minimum unless even the largest frame (``P_max``
    pixels, long side ``long_side_max``) cannot give it ``min_pixels`` pixels (the paper preset: 16 px / 4096^2
    = 9.5e-7 <= 1e-6, so the whole range). ``hi = min(max_area, object_box_fill, box limit / P_min)``: a mask
    must fit the frame (and the pixel box limit) at the assumed fill. Raises ``ValueError`` when empty."""
    p_max = max(frame_pixels(cfg.long_side_max, r) for r in cfg.aspects)
    p_min = min(frame_pixels(cfg.long_side_min, r) for r in cfg.aspects)
    lo = max(float(cfg.min_area), float(cfg.min_pixels) / p_max)
    hi = min(float(cfg.max_area), float(cfg.object_box_fill), _max_pixels_of_box(cfg) / p_min)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"empty relative-area range [{lo:g}, {hi:g}]: long sides {cfg.long_side_min}.."
                         f"{cfg.long_side_max} px cannot hold min_pixels={cfg.min_pixels:g} within max_area="
                         f"{cfg.max_area:g}; lower min_pixels or allow larger images")
    return lo, hi


def _first_long_side(aspect: float, lo: int, hi: int, ok) -> int | None:
    """Smallest long side in ``[lo, hi]`` with ``ok(frame_pixels(L, aspect))`` (``ok`` monotone: False..True)."""
    if lo > hi or not ok(frame_pixels(hi, aspect)):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(frame_pixels(mid, aspect)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def frame_options(cfg, area: float) -> list[tuple[float, int, int]]:
    """Frames that can hold a mask of relative ``area``: ``(aspect, L_lo, L_hi)`` for each aspect of the config
    with a non-empty range of long sides ``L`` in ``[long_side_min, long_side_max]`` whose frame gives the mask
    at least ``min_pixels`` pixels and, with a pixel box limit, at most ``object_box_fill * max_object_px**2``.
    Every area of :func:`area_range` has at least one (the largest square for the smallest area)."""
    need_lo = float(cfg.min_pixels) / area
    need_hi = _max_pixels_of_box(cfg) / area
    out = []
    for r in cfg.aspects:
        lo = _first_long_side(r, cfg.long_side_min, cfg.long_side_max, lambda p: p >= need_lo * (1 - 1e-12))
        if lo is None:
            continue
        above = _first_long_side(r, lo, cfg.long_side_max, lambda p: p > need_hi * (1 + 1e-12))
        hi = cfg.long_side_max if above is None else above - 1
        if lo <= hi:
            out.append((float(r), lo, hi))
    return out


def horizon_row(width: int, height: int, lens_mm: float, sensor_mm: float, pitch_deg: float) -> float:
    """Image row ``v`` of the horizon for a camera without roll pitched by ``pitch_deg`` (up positive): pixels with
    a larger ``v`` see below the camera's height (may be outside ``[0, H]``)."""
    pitch = sensor_mm / max(width, height)
    return height / 2.0 + lens_mm * math.tan(math.radians(pitch_deg)) / pitch


def sample_log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw of ``exp(U(log lo, log hi))``."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def pixel_direction(u: float, v: float, width: int, height: int, lens_mm: float, sensor_mm: float,
                    shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """Unit vector (camera frame, float64 [3]) of the ray through continuous pixel ``(u, v)``."""
    pitch = sensor_mm / max(width, height)  # mm per pixel on the image plane
    x = (u - width / 2.0) * pitch + shift_x * sensor_mm
    y = (height / 2.0 - v) * pitch + shift_y * sensor_mm
    d = np.array([x, y, -lens_mm], dtype=np.float64)
    return d / np.linalg.norm(d)


@dataclass(frozen=True)
class ProbeView:
    """A zoomed square probe camera that sees the object centred and large.

    ``zoom``: focal-length factor (probe lens = ``zoom * lens_mm``); ``shift_x``, ``shift_y``: Blender lens shift
    of the probe; ``size``: probe resolution (square); ``px_scale``: final-image pixels per probe pixel along one
    axis, so ``final_area_px = probe_area_px * px_scale**2``.
    """

    zoom: float
    shift_x: float
    shift_y: float
    size: int
    px_scale: float


def probe_view(u: float, v: float, width: int, height: int, expected_area_px: float, size: int = 256,
               fill: float = 0.15) -> ProbeView:
    """Probe camera for an object centred on pixel ``(u, v)`` of the final ``width x height`` image.

    The zoom is chosen so an object of ``expected_area_px`` final pixels covers about ``fill`` of the probe. The
    probe keeps the final camera's position, orientation and sensor; its image plane is the final one scaled by
    ``zoom`` and shifted so ``(u, v)`` lands at the probe centre (exact for a pinhole: same projective plane).
    """
    m = max(width, height)
    zoom = m * math.sqrt(fill / max(expected_area_px, 1e-9)) if expected_area_px > 0 else 1.0
    zoom = float(min(max(zoom, 0.05), 1e6))
    dx = (u - width / 2.0) / m
    dy = (height / 2.0 - v) / m
    return ProbeView(zoom=zoom, shift_x=zoom * dx, shift_y=zoom * dy, size=int(size), px_scale=m / (zoom * size))


def distance_for_area(distance: float, measured_area: float, target_area: float) -> float:
    """Distance along the same ray that turns ``measured_area`` into ``target_area`` (similar triangles)."""
    if measured_area <= 0 or target_area <= 0:
        raise ValueError("areas must be positive")
    return float(distance * math.sqrt(measured_area / target_area))


def initial_distance(target_area_px: float, width: int, height: int, lens_mm: float, sensor_mm: float,
                     fill_factor: float = 0.45) -> float:
    """First guess of the distance at which a unit-radius bounding sphere covers ``target_area_px`` pixels.

    A unit sphere at distance ``d`` projects to a disc of radius about ``lens / (d * pitch)`` pixels; real
    objects fill ``fill_factor`` of that disc on average. Only a starting point for the probe loop.
    """
    pitch = sensor_mm / max(width, height)
    r_px = math.sqrt(target_area_px / (math.pi * fill_factor))
    return float(max(lens_mm / (r_px * pitch), 1.05))


def clamp_center(u: float, v: float, bbox_rel: tuple[float, float, float, float], width: int, height: int,
                 margin: float = 1.0) -> tuple[float, float, bool]:
    """Move the object centre so its projected box stays inside the frame.

    ``bbox_rel``: (left, top, right, bottom) extents of the object's box relative to its centre pixel, in final
    pixels (left/top negative). Returns the new ``(u, v)`` and whether the box fits at all (when it is larger
    than the frame the centre is put in the middle and ``False`` is returned).
    """
    left, top, right, bottom = bbox_rel
    fits = (right - left) + 2 * margin <= width and (bottom - top) + 2 * margin <= height
    if not fits:
        return width / 2.0, height / 2.0, False
    u2 = min(max(u, margin - left), width - margin - right)
    v2 = min(max(v, margin - top), height - margin - bottom)
    return float(u2), float(v2), True


def box_excess(bbox_rel: tuple[float, float, float, float], width: int, height: int, fraction: float,
               max_px: float = 0.0, margin: float = 0.0) -> float:
    """How many times the object's box (``clamp_center``'s ``bbox_rel``, final pixels) exceeds its limits: ``fraction``
    of the image width and height less ``2 * margin`` and, when ``max_px`` > 0, ``max_px`` pixels (the paper's
    width/height constraint in pixels); <= 1 when it fits. Moving the object ``e`` times further away along its
    ray divides the box by ``e`` and its area by ``e**2``."""
    left, top, right, bottom = bbox_rel
    bw, bh = right - left, bottom - top
    excess = max(bw / (fraction * width - 2 * margin), bh / (fraction * height - 2 * margin))
    if max_px:
        excess = max(excess, bw / max_px, bh / max_px)
    return excess
