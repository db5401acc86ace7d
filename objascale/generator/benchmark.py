"""Throughput and scale-control accuracy of the generator (``flipbench generate objascale --benchmark``).

Renders ``images`` images at 512x384 and at 1024x768 (or the given resolutions) with the given config (fixed
resolution, everything else as configured) and prints images per minute (wall clock of the whole run, worker start-up included, and the mean
per-image render time from the manifest) and the distribution of the relative area errors:
``coverage_error`` (anti-aliased coverage sum vs target, what the scale control steers) and ``area_error``
(binary mask ``coverage >= 0.5`` vs target; limited by pixel discretisation for small objects).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from objascale.generator.config import GeneratorConfig
from objascale.generator.generate import generate

__all__ = ["run_benchmark", "error_stats"]

RESOLUTIONS = ((512, 384), (1024, 768))


def error_stats(errors: list[float]) -> dict[str, float]:
    """Summary of relative errors: median / p90 / max of |e|, mean e, fraction with |e| <= 2 %."""
    e = np.asarray(errors, dtype=np.float64)
    a = np.abs(e)
    return {"n": int(e.size), "median_abs": float(np.median(a)), "p90_abs": float(np.percentile(a, 90)),
            "max_abs": float(a.max()), "mean": float(e.mean()), "within_2pct": float((a <= 0.02).mean())}


def _fmt(s: dict[str, float]) -> str:
    return (f"median {100 * s['median_abs']:.2f} %  p90 {100 * s['p90_abs']:.2f} %  max {100 * s['max_abs']:.2f} %  "
            f"mean {100 * s['mean']:+.2f} %  within 2 %: {100 * s['within_2pct']:.0f} % (n={s['n']})")


def run_benchmark(cfg: GeneratorConfig, images: int = 6, workers: int | None = None, threads: int = 0,
                  out: Path | None = None, resolutions: tuple[tuple[int, int], ...] | None = None) -> dict:
    """Run the benchmark, print a report and return the figures (also written to ``<out>/benchmark.json``).

    ``resolutions``: (width, height) pairs to time (default :data:`RESOLUTIONS`)."""
    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="objascale-bench-"))
    report: dict = {"config": cfg.to_dict(), "images_per_resolution": images, "cpu_count": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(), "load_avg_start": os.getloadavg(),
                    "resolutions": {}}
    records_all = []
    for w, h in resolutions or RESOLUTIONS:
        rcfg = cfg.with_overrides(long_side_min=w, long_side_max=w, aspects=(w / h,), portrait_prob=0.0,
                                  shard_size=images)
        run_dir = root / f"bench-{w}x{h}"
        t0 = time.perf_counter()
        generate(run_dir, images, rcfg, workers=workers, threads=threads, overwrite=True, progress=True)
        wall = time.perf_counter() - t0
        recs = [json.loads(line) for line in (run_dir / "manifest.jsonl").read_text().splitlines() if line]
        records_all += recs
        per_image = float(np.mean([r["seconds_total"] for r in recs]))
        cpu = float(np.mean([r["cpu_seconds"] for r in recs]))
        report["resolutions"][f"{w}x{h}"] = {
            "wall_seconds": wall, "images_per_minute_wall": 60.0 * images / wall,
            "mean_seconds_per_image": per_image, "images_per_minute_render": 60.0 / per_image,
            "mean_seconds_probes": float(np.mean([r["seconds_probes"] for r in recs])),
            "mean_seconds_final": float(np.mean([r["seconds_final"] for r in recs])),
            "mean_probes": float(np.mean([r["probes"] for r in recs])),
            "mean_cpu_seconds_per_image": cpu,
            # what the machine's cores would sustain with no other load (render work is CPU-bound and parallel)
            "images_per_minute_idle_estimate": 60.0 * (os.cpu_count() or 1) / cpu,
        }
    report["coverage_error"] = error_stats([r["coverage_error"] for r in records_all])
    report["area_error"] = error_stats([r["area_error"] for r in records_all])
    big = [r["area_error"] for r in records_all if r["mask_pixels"] >= 1000]
    report["area_error_mask_ge_1000px"] = error_stats(big) if big else None
    report["load_avg_end"] = os.getloadavg()
    (root / "benchmark.json").write_text(json.dumps(report, indent=1))

    px_limit = f" and {cfg.max_object_px} px" if cfg.max_object_px else ""
    print(f"\nObjaScale generator benchmark (preset {cfg.preset_name}: {cfg.samples} spp, denoise={cfg.denoise}, "
          f"device={cfg.device}, box <= {cfg.max_box_fraction:g}{px_limit}, ground plane "
          f"{'on' if cfg.ground_plane else 'off'}, "
          f"{os.cpu_count()} cores, load avg at start {report['load_avg_start'][0]:.1f})")
    for res, r in report["resolutions"].items():
        print(f"  {res}: {r['images_per_minute_wall']:.1f} images/min wall ({r['wall_seconds']:.1f} s for {images}); "
              f"{r['mean_seconds_per_image']:.2f} s/image in the worker (probes {r['mean_seconds_probes']:.2f} s, "
              f"final {r['mean_seconds_final']:.2f} s, {r['mean_probes']:.1f} probes); "
              f"{r['mean_cpu_seconds_per_image']:.1f} CPU-s/image -> about {r['images_per_minute_idle_estimate']:.1f} "
              f"images/min upper bound on {os.cpu_count()} idle cores")
    print(f"  coverage area error: {_fmt(report['coverage_error'])}")
    print(f"  binary mask area error: {_fmt(report['area_error'])}")
    if report["area_error_mask_ge_1000px"]:
        print(f"  binary mask area error, masks >= 1000 px: {_fmt(report['area_error_mask_ge_1000px'])}")
    print(f"  details: {root / 'benchmark.json'}")
    return report
