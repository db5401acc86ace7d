"""Render one ObjaScale image with Cycles: scale control by zoomed probes, final render, exact mask (bpy process).

Per attempt (see ``params.py`` for the draws):

1. build the scene (HDRI world, camera, object normalised to a unit bounding sphere);
2. put the object centre on the camera ray through pixel ``(u, v)`` and find the distance that gives the target
   coverage area with cheap *probe* renders: a square ``probe_size`` image through a zoomed, shifted copy of the
   final camera (same projective plane, so areas convert exactly, ``scale.probe_view``), alpha of a transparent
   film = coverage. Similar triangles make the distance correction exact for a fixed ray; the projected box is
   kept inside the frame by moving ``(u, v)`` inwards; with a box limit (``max_box_fraction`` < 1 or
   ``max_object_px``) an object too wide or tall for it, or for the frame, is moved back along its ray until it
   fits (its area then falls below the drawn one), otherwise objects larger than the frame are re-drawn;
3. final render (Cycles, fixed samples, optional OIDN) to a multilayer EXR with a Cryptomatte asset pass plus
   the display-referred PNG; coverage = Cryptomatte coverage of the target, mask = coverage >= 0.5, so the mask is
   aligned with the RGB by construction. If the achieved coverage misses the target by more than
   ``area_tolerance``, the distance is corrected once more and the final render repeated;
4. reject broken renders (empty mask, black image, missing textures) so the caller re-draws the object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from PIL import Image

from objascale.generator import scene as sc
from objascale.generator.config import GeneratorConfig
from objascale.generator.masks import cryptomatte_coverage, mask_from_coverage, read_exr
from objascale.generator.params import ObjectDraw, SceneDraw
from objascale.generator.scale import (box_excess, clamp_center, distance_for_area, initial_distance,
                                       pixel_direction, probe_view)

__all__ = ["Rejected", "RenderOutput", "render_attempt"]


class Rejected(Exception):
    """This attempt cannot give a valid image (the caller re-draws the object); the message is the reason."""


@dataclass
class RenderOutput:
    rgb: np.ndarray  # uint8 [H, W, 3]
    mask: np.ndarray  # bool [H, W]
    info: dict[str, Any]


def _output_exr(scene: bpy.types.Scene, multilayer: bool) -> None:
    s = scene.render.image_settings
    s.media_type = "MULTI_LAYER_IMAGE" if multilayer else "IMAGE"
    s.file_format = "OPEN_EXR_MULTILAYER" if multilayer else "OPEN_EXR"
    s.color_mode = "RGBA"
    s.color_depth = "32" if multilayer else "16"  # Cryptomatte ids are float32 bit patterns
    s.exr_codec = "ZIP" if multilayer else "NONE"


def _render_to(scene: bpy.types.Scene, path: Path) -> None:
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    if not path.is_file():
        raise RuntimeError(f"Blender did not write {path}")


def _camera_position(cam: bpy.types.Object, u: float, v: float, sd: SceneDraw, sensor_mm: float,
                     distance: float) -> np.ndarray:
    d_cam = pixel_direction(u, v, sd.width, sd.height, sd.lens_mm, sensor_mm)
    mw = np.array(cam.matrix_world, dtype=np.float64)
    return mw[:3, :3] @ (d_cam * distance) + mw[:3, 3]


class _Prober:
    """Cheap coverage renders through a zoomed probe camera (transparent film, flat material, no bounces)."""

    def __init__(self, scene, cam, cfg: GeneratorConfig, sd: SceneDraw, tmp: Path) -> None:
        self.scene, self.cam, self.cfg, self.sd, self.tmp = scene, cam, cfg, sd, tmp
        self.flat = bpy.data.materials.new("flipbench_probe")
        self.world = scene.world  # restored for the final render
        self.count = 0
        self.seconds = 0.0

    def measure(self, u: float, v: float, expected_px: float) -> tuple[float, tuple[float, float, float, float]]:
        """(coverage area in final pixels, object box relative to (u, v) in final pixels)."""
        sd, cfg, scene, cam = self.sd, self.cfg, self.scene, self.cam
        fill = 0.15
        for _ in range(6):
            view = probe_view(u, v, sd.width, sd.height, expected_px, cfg.probe_size, fill)
            t0 = time.perf_counter()
            r = scene.render
            r.resolution_x = r.resolution_y = view.size
            cam.data.lens = sd.lens_mm * view.zoom
            cam.data.shift_x, cam.data.shift_y = view.shift_x, view.shift_y
            r.film_transparent = True
            scene.world = None  # coverage only: no background light to sample
            scene.view_layers[0].material_override = self.flat
            scene.cycles.samples = cfg.probe_samples
            scene.cycles.max_bounces = 0
            scene.cycles.use_denoising = False
            scene.cycles.seed = sd.render_seed
            _output_exr(scene, multilayer=False)
            path = self.tmp / f"probe_{self.count}.exr"
            _render_to(scene, path)
            channels, _ = read_exr(path)
            path.unlink()
            alpha = next(a for k, a in channels.items() if k.split(".")[-1] in ("A", "a")).astype(np.float64)
            self.count += 1
            self.seconds += time.perf_counter() - t0
            area_probe = float(alpha.sum())
            ys, xs = np.nonzero(alpha > 1e-3)
            if len(xs) == 0:  # too zoomed out to see it, or it vanished: zoom in
                fill *= 16.0
                continue
            n = view.size
            if xs.min() == 0 or ys.min() == 0 or xs.max() == n - 1 or ys.max() == n - 1:
                fill /= 8.0  # cropped by the probe border: zoom out
                continue
            s = view.px_scale
            c = n / 2.0
            box = ((xs.min() - c) * s, (ys.min() - c) * s, (xs.max() + 1 - c) * s, (ys.max() + 1 - c) * s)
            return area_probe * s * s, box
        raise Rejected("probe could not frame the object")


def _final_settings(scene, cam, cfg: GeneratorConfig, sd: SceneDraw, world) -> None:
    scene.world = world
    r = scene.render
    r.resolution_x, r.resolution_y = sd.width, sd.height
    cam.data.lens = sd.lens_mm
    cam.data.shift_x = cam.data.shift_y = 0.0
    r.film_transparent = False
    scene.view_layers[0].material_override = None
    cyc = scene.cycles
    cyc.samples = cfg.samples
    cyc.max_bounces = cfg.max_bounces
    cyc.seed = sd.render_seed
    cyc.use_denoising = cfg.denoise != "none"
    if cyc.use_denoising:
        cyc.denoiser = "OPENIMAGEDENOISE"
        cyc.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        cyc.denoising_prefilter = "NONE" if cfg.denoise == "fast" else "FAST"
        cyc.denoising_quality = "FAST" if cfg.denoise == "fast" else "HIGH"
    _output_exr(scene, multilayer=True)


def _final_render(scene, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB [H, W, 3], coverage float32 [H, W]) of one final render."""
    _output_exr(scene, multilayer=True)  # the PNG save below switches the format: a second final render needs EXR
    exr = tmp / "final.exr"
    _render_to(scene, exr)
    channels, header = read_exr(exr)
    coverage = cryptomatte_coverage(channels, header, sc.TARGET_NAME, "CryptoAsset")
    exr.unlink()
    # display-referred RGB of the same render (view transform applied by Blender)
    s = scene.render.image_settings
    s.media_type, s.file_format, s.color_mode, s.color_depth = "IMAGE", "PNG", "RGB", "8"
    png = tmp / "final.png"
    bpy.data.images["Render Result"].save_render(str(png), scene=scene)
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint8).copy()
    png.unlink()
    return rgb, coverage


def render_attempt(cfg: GeneratorConfig, sd: SceneDraw, od: ObjectDraw, obj: dict[str, Any], hdri: dict[str, Any],
                   object_path: str | None, tmp: Path, threads: int = 0) -> RenderOutput:
    """Render image ``sd.index`` with the object draw ``od``; raises :class:`Rejected` for a broken attempt.

    ``obj``: catalogue entry (``ObjectSpec.to_dict()``); ``hdri``: ``HdriSpec.to_dict()``; ``object_path``: local
    mesh file (None for procedural objects); ``threads``: Cycles CPU threads (0 = all cores).
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    tmp.mkdir(parents=True, exist_ok=True)
    scene = sc.reset()
    sc.configure_cycles(scene, cfg.device, threads)
    if cfg.calibration:
        sc.setup_black_world(scene)
    else:
        sc.setup_world(scene, hdri["path"], sd.heading_deg, sd.exposure_ev)
    cam = sc.setup_camera(scene, sd.lens_mm, cfg.sensor_mm, sd.pitch_deg)
    try:
        if obj["source"] == "procedural":
            root, radius, centre = sc.load_object(scene, "procedural", obj["name"], od.variant_seed, cfg.calibration)
        else:
            root, radius, centre = sc.load_object(scene, "file", str(object_path), od.variant_seed, cfg.calibration)
    except (ValueError, RuntimeError) as exc:
        raise Rejected(f"object import failed: {exc}") from exc
    missing = sc.missing_textures()
    if missing:
        raise Rejected(f"missing textures: {', '.join(missing[:5])}")
    t_setup = time.perf_counter() - t_start

    target_px = sd.target_area * sd.width * sd.height
    u, v = od.u, od.v
    distance = initial_distance(target_px, sd.width, sd.height, sd.lens_mm, cfg.sensor_mm)

    def place() -> None:
        pos = _camera_position(cam, u, v, sd, cfg.sensor_mm, distance)
        sc.place_object(root, radius, centre, pos, od.yaw_deg, od.tilt_deg, od.tilt_axis_deg)

    prober = _Prober(scene, cam, cfg, sd, tmp)
    expected = target_px
    limited = False  # the box limit (cfg.max_box_fraction) lowered the target area
    history = []
    for _ in range(cfg.max_probes):
        place()
        area, box = prober.measure(u, v, expected)
        history.append({"distance": distance, "u": u, "v": v, "coverage_px": area})
        err = area / target_px - 1.0
        new_distance = distance_for_area(distance, area, target_px)
        shrink = distance / new_distance
        final_box = tuple(b * shrink for b in box)
        limits = cfg.max_box_fraction < 1 or cfg.max_object_px > 0  # with a limit, the frame is one too
        excess = (box_excess(final_box, sd.width, sd.height, cfg.max_box_fraction, cfg.max_object_px, margin=1.0)
                  if limits else 0)
        if excess > 1:  # too wide or tall at the drawn area: move it back until the box fits, lowering the area
            target_px /= excess**2
            new_distance *= excess
            final_box = tuple(b / excess for b in final_box)
            limited = True
        u2, v2, fits = clamp_center(u, v, final_box, sd.width, sd.height)
        if not fits:
            raise Rejected("object larger than the frame at the target area")
        moved = abs(u2 - u) > 1e-6 or abs(v2 - v) > 1e-6
        if abs(err) <= cfg.area_tolerance / 4 and not moved and excess <= 1.005:
            break
        distance, u, v, expected = new_distance, u2, v2, target_px

    _final_settings(scene, cam, cfg, sd, prober.world)
    t_final = time.perf_counter()
    finals = 0
    ground = None
    for _ in range(2):
        place()
        if cfg.ground_plane and not cfg.calibration:
            ground = sc.place_ground(scene, root, ground)
        rgb, coverage = _final_render(scene, tmp)
        finals += 1
        achieved = float(coverage.sum(dtype=np.float64))
        if achieved > 0 and abs(achieved / target_px - 1.0) > cfg.area_tolerance and finals < 2:
            distance = distance_for_area(distance, achieved, target_px)
            continue
        break
    t_final = time.perf_counter() - t_final
    m = mask_from_coverage(coverage)
    if m.mask_area == 0:
        raise Rejected("empty mask (object below half-pixel coverage everywhere)")
    if int(rgb.max()) < 8:
        raise Rejected("black image")
    if not cfg.calibration and float(rgb.mean()) < 2.0:
        raise Rejected("black image")

    pixels = sd.width * sd.height
    mw = np.array(cam.matrix_world, dtype=np.float64)
    q = cam.matrix_world.to_quaternion()
    obj_pos = _camera_position(cam, u, v, sd, cfg.sensor_mm, distance)
    info = {
        "index": sd.index,
        "width": sd.width,
        "height": sd.height,
        "target_area": sd.target_area,
        # the area aimed at: the drawn one, or less when the box limit moved the object back (area_limited_by_box)
        "target_area_effective": target_px / (sd.width * sd.height),
        "area_limited_by_box": limited,
        "achieved_area": m.mask_area / pixels,
        "coverage_area": m.coverage_area / pixels,
        "mask_pixels": m.mask_area,
        "coverage_pixels": m.coverage_area,
        "area_error": m.mask_area / target_px - 1.0,
        "coverage_error": m.coverage_area / target_px - 1.0,
        "center_px": [u, v],
        "center_px_drawn": [od.u, od.v],
        "object_distance": distance,
        "object_position": obj_pos.tolist(),
        "object_yaw_deg": od.yaw_deg,
        "object_tilt_deg": od.tilt_deg,
        "object_tilt_axis_deg": od.tilt_axis_deg,
        "object_variant_seed": od.variant_seed,
        "object_bounding_radius_native": radius,
        "camera_lens_mm": sd.lens_mm,
        "camera_sensor_mm": cfg.sensor_mm,
        "camera_pitch_deg": sd.pitch_deg,
        "camera_location": mw[:3, 3].tolist(),
        "camera_quaternion_wxyz": [q.w, q.x, q.y, q.z],
        "hdri": None if cfg.calibration else hdri["name"],
        "hdri_license": None if cfg.calibration else hdri["license"],
        "hdri_heading_deg": sd.heading_deg,
        "exposure_ev": sd.exposure_ev,
        "render_seed": sd.render_seed,
        "samples": cfg.samples,
        "denoise": cfg.denoise,
        "max_bounces": cfg.max_bounces,
        "device": scene.cycles.device,
        "ground_plane": bool(ground is not None and not ground.hide_render),
        "probes": prober.count,
        "probe_history": history,
        "final_renders": finals,
        "seconds_setup": t_setup,
        "seconds_probes": prober.seconds,
        "seconds_final": t_final,
        "seconds_total": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,  # all threads of the worker
    }
    return RenderOutput(rgb=rgb, mask=m.mask, info=info)


def bpy_version() -> str:
    return ".".join(map(str, bpy.app.version))

