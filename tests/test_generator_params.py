"""ObjaScale generator: config validation, deterministic per-image draws, scale-control geometry (no bpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from objascale.generator.config import PRESET_COUNTS, GeneratorConfig, preset
from objascale.generator.params import draw_object, draw_scene
from objascale.generator.scale import (area_range, clamp_center, distance_for_area, horizon_row, pixel_direction,
                                       probe_view, sample_log_uniform)


def test_config_validation_and_roundtrip():
    cfg = preset("mini")
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == GeneratorConfig.from_dict(cfg.to_dict()).fingerprint()
    assert cfg.fingerprint() != cfg.with_overrides(seed=1).fingerprint()
    with pytest.raises(ValueError, match="long_side_min"):
        GeneratorConfig(long_side_min=500, long_side_max=100)
    with pytest.raises(ValueError, match="denoise"):
        GeneratorConfig(denoise="ultra")
    with pytest.raises(ValueError, match="objects"):
        GeneratorConfig(objects="shapenet")
    with pytest.raises(ValueError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({"sed": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_area_range():
    # the paper preset: the largest frame (4096^2 = 16.8 MP) gives 1e-6 at least 16 px, so the whole range
    assert area_range(preset("paper")) == (1e-6, 0.25)
    # mini (1024 px at most): the range starts where the largest frame still gives 16 px
    assert area_range(preset("mini")) == (pytest.approx(16 / 1024**2), 0.25)
    # a pixel box limit caps the top: 0.5 x 30^2 px / the smallest frame (64 x 48)
    tiny = GeneratorConfig(long_side_min=64, long_side_max=64, aspects=(4 / 3,), max_object_px=30)
    assert area_range(tiny)[1] == pytest.approx(0.5 * 30**2 / (64 * 48))
    with pytest.raises(ValueError, match="empty relative-area range"):
        GeneratorConfig(long_side_min=16, long_side_max=16, aspects=(1.0,), min_pixels=32, max_area=0.1)


def test_scene_draw_depends_only_on_seed_and_index():
    cfg = preset("full")
    a = draw_scene(cfg, 17, 8)
    assert a == draw_scene(cfg, 17, 8)
    assert a != draw_scene(cfg, 18, 8)
    assert a != draw_scene(cfg.with_overrides(seed=1), 17, 8)
    # the object draw of a retry changes, the scene draw of the image does not
    o0, o1 = draw_object(cfg, 17, 0, a, 9), draw_object(cfg, 17, 1, a, 9)
    assert o0 == draw_object(cfg, 17, 0, a, 9) and o0 != o1


def test_scene_draw_ranges_and_log_uniform_area():
    cfg = preset("full")
    lo, hi = area_range(cfg)
    draws = [draw_scene(cfg, k, 8) for k in range(3000)]
    for d in draws:
        assert cfg.long_side_min <= max(d.width, d.height) <= cfg.long_side_max
        assert lo <= d.target_area <= hi
        assert d.target_area * d.width * d.height >= cfg.min_pixels * (1 - 1e-9)  # the frame holds the area
    for d in draws[:200]:
        assert cfg.lens_mm[0] <= d.lens_mm <= cfg.lens_mm[1]
        assert 0 <= d.hdri_index < 8
    # log(area) is uniform on [log lo, log hi] for every image (no per-image floor)
    t = [(math.log(d.target_area) - math.log(lo)) / (math.log(hi) - math.log(lo)) for d in draws]
    hist, _ = np.histogram(t, bins=10, range=(0, 1))
    assert hist.min() > 0.8 * len(draws) / 10 and hist.max() < 1.2 * len(draws) / 10
    assert sum(d.height > d.width for d in draws) > 0.15 * len(draws)  # some portrait images


def test_paper_draws_are_log_uniform_from_1e6_to_025():
    """The paper preset's 10,200 scene draws (seed 0): the share of images per decade of the relative area is the
    log-uniform one on [1e-6, 0.25] within 2 % (relative) per decade; every frame gives its object >= 16 px (an
    area of 1e-6 needs 16 MP), and the pixel box limit leaves room for the mask (0.5 x 2048^2 px)."""
    cfg = preset("paper")
    draws = [draw_scene(cfg, k, 16) for k in range(PRESET_COUNTS["paper"])]
    areas = np.array([d.target_area for d in draws])
    pixels = np.array([d.width * d.height for d in draws], dtype=np.float64)
    edges = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.25)
    share = np.histogram(areas, bins=edges)[0] / len(draws)
    span = math.log(0.25 / 1e-6)
    expected = np.array([math.log(b / a) / span for a, b in zip(edges[:-1], edges[1:])])  # 18.5 % per decade
    assert expected[0] == pytest.approx(0.1853, abs=1e-4)
    assert np.all(np.abs(share / expected - 1) <= 0.02), (share, expected)
    assert areas.min() >= 1e-6 and areas.max() <= 0.25 and areas.max() > 0.24  # 0.25 is reached
    assert (areas < 2e-6).sum() > 0.02 * len(draws)  # the smallest objects exist (not 0.7 % below 1e-5)
    mask_px = areas * pixels
    assert mask_px.min() >= 16 * (1 - 1e-9)
    assert mask_px.max() <= 0.5 * 2048**2 * (1 + 1e-9)
    tiny = [d for d in draws if d.target_area < 16 / (4096 * 3072)]  # only square frames near 4096^2 hold them
    assert tiny and all(d.width == d.height >= 3547 for d in tiny)
    assert max(max(d.width, d.height) for d in draws) == 4096 and min(max(d.width, d.height) for d in draws) >= 640


def test_object_draw_below_the_horizon_with_a_ground_plane():
    cfg = preset("paper")  # ground plane on, camera pitched down or level
    for k in range(300):
        sd = draw_scene(cfg, k, 8)
        od = draw_object(cfg, k, 0, sd, 3)
        row = horizon_row(sd.width, sd.height, sd.lens_mm, cfg.sensor_mm, sd.pitch_deg)
        assert row <= sd.height / 2 + 1e-9 and od.v >= max(row, 0.0) - 1e-9 and od.tilt_deg == 0.0
        d = pixel_direction(od.u, od.v, sd.width, sd.height, sd.lens_mm, cfg.sensor_mm)
        p = math.radians(sd.pitch_deg)  # the camera is rotated about world x by 90 degrees + pitch (scene.py)
        z_world = math.cos(p) * d[1] - math.sin(p) * d[2]
        assert z_world <= 1e-9  # the ray looks down: the object stands below the camera, on the ground


def test_object_draw_skips_excluded_objects():
    cfg = preset("mini")
    sd = draw_scene(cfg, 3, 8)
    for attempt in range(20):
        assert draw_object(cfg, 3, attempt, sd, 5, excluded=[0, 1, 2, 3]).object_index == 4
    with pytest.raises(ValueError, match="no usable object"):
        draw_object(cfg, 3, 0, sd, 2, excluded=[0, 1])


def _project(direction: np.ndarray, width: int, height: int, lens: float, sensor: float, shift=(0.0, 0.0)):
    """Pixel (u, v) where a camera-frame direction lands (inverse of pixel_direction)."""
    pitch = sensor / max(width, height)
    x = direction[0] / -direction[2] * lens
    y = direction[1] / -direction[2] * lens
    u = (x - shift[0] * sensor) / pitch + width / 2
    v = height / 2 - (y - shift[1] * sensor) / pitch
    return u, v


@pytest.mark.parametrize("w,h", [(1024, 768), (480, 640)])
def test_probe_view_maps_final_pixels_exactly(w, h):
    lens, sensor = 35.0, 36.0
    u, v = 0.83 * w, 0.21 * h
    view = probe_view(u, v, w, h, expected_area_px=200.0, size=256)
    d = pixel_direction(u, v, w, h, lens, sensor)
    # the object centre lands in the middle of the probe
    pu, pv = _project(d, view.size, view.size, lens * view.zoom, sensor, (view.shift_x, view.shift_y))
    assert pu == pytest.approx(view.size / 2, abs=1e-6) and pv == pytest.approx(view.size / 2, abs=1e-6)
    # a displacement of one final pixel is px_scale**-1 probe pixels (area factor px_scale**2)
    d2 = pixel_direction(u + 1.0, v, w, h, lens, sensor)
    pu2, _ = _project(d2, view.size, view.size, lens * view.zoom, sensor, (view.shift_x, view.shift_y))
    assert (pu2 - pu) * view.px_scale == pytest.approx(1.0, rel=1e-9)
    # 200 px objects fill about 15 % of the probe
    assert 200.0 / view.px_scale**2 == pytest.approx(0.15 * 256**2, rel=1e-9)


def test_distance_correction_and_clamp():
    assert distance_for_area(10.0, 400.0, 100.0) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        distance_for_area(10.0, 0.0, 100.0)
    # box (-30..+50, -10..+20) around a centre near the right edge is pulled inside a 100x80 frame
    u, v, fits = clamp_center(95.0, 5.0, (-30, -10, 50, 20), 100, 80)
    assert fits and u == pytest.approx(100 - 1 - 50) and v == pytest.approx(1 + 10)
    assert clamp_center(50, 40, (-60, -10, 60, 10), 100, 80)[2] is False
    rng = np.random.default_rng(0)
    vals = [sample_log_uniform(rng, 1e-6, 0.25) for _ in range(1000)]
    assert min(vals) >= 1e-6 and max(vals) <= 0.25
