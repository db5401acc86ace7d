"""Run-time estimate printed before a generation run starts (no bpy).

CPU-seconds per image = ``SETUP_CPU_S + CPU_S_PER_MEGAPIXEL[_GROUND] * E[megapixels] * samples / 32 * denoise factor``,
with the expected megapixels of the config's resolution distribution (long side uniform, random aspect). The
constants are typical of this project's reference machine (x86, Cycles CPU, bpy 5.0.1; measured with
``flipbench generate objascale --benchmark``); when the run directory already holds rendered images (a resumed
run) their measured CPU-seconds per megapixel replace the typical figure. Wall time = images x CPU-s per image /
cores (the workers share the cores: ``workers x threads = cores``). A GPU device is not modelled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objascale.generator.config import GeneratorConfig

__all__ = ["Estimate", "estimate", "expected_megapixels", "SETUP_CPU_S", "CPU_S_PER_MEGAPIXEL",
           "CPU_S_PER_MEGAPIXEL_GROUND"]

#: per-image CPU-seconds independent of the resolution (scene set-up, probe renders)
SETUP_CPU_S = 2.0
#: CPU-seconds per megapixel of the final render at 32 spp with high-quality denoising, without the ground plane
#: (paper settings, ``--no-ground-plane`` benchmark on the 2-core reference machine: 3.6 / 12.4 / 53.7 CPU-s per
#: image at 512x384 / 1024x768 / 2048x1536)
CPU_S_PER_MEGAPIXEL = 17.0
#: the same with the shadow-catching ground plane (the paper preset's default): 15.6 / 59.3 / 237.5 CPU-s per image
#: at the same sizes, measured beside the figures above (``--ground-plane`` benchmark, 2026-12-07)
CPU_S_PER_MEGAPIXEL_GROUND = 73.0
_DENOISE_FACTOR = {"none": 0.85, "fast": 0.9, "high": 1.0}


@dataclass(frozen=True)
class Estimate:
    images: int
    cpu_seconds_per_image: float
    cores: int
    wall_seconds: float
    basis: str  # "typical" or "measured on N images of this run"

    def text(self) -> str:
        return (f"estimate: {self.images} images x ~{self.cpu_seconds_per_image:.0f} CPU-s per image / "
                f"{self.cores} idle cores = about {_duration(self.wall_seconds)} ({self.basis}; CPU rendering; other "
                "load on the machine makes it longer)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def expected_megapixels(cfg: GeneratorConfig, draws: int = 2000) -> float:
    """E[W * H] / 1e6 under ``draw_scene``'s distribution: the mean over the first ``draws`` scene draws (the
    resolution depends on the drawn area, ``params.draw_scene``)."""
    from objascale.generator.params import draw_scene  # noqa: PLC0415

    return float(np.mean([(sd := draw_scene(cfg, k, 1)).width * sd.height for k in range(draws)])) / 1e6


def _measured(out: Path | None) -> tuple[float, int] | None:
    """(CPU-s per megapixel beyond the set-up, images) from the manifests already in ``out``, if any."""
    if out is None or not (out / "manifest").is_dir():
        return None
    per_mp = []
    for f in sorted((out / "manifest").glob("shard-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if "cpu_seconds" in r:
                    per_mp.append(max(r["cpu_seconds"] - SETUP_CPU_S, 0.0) / (r["width"] * r["height"] / 1e6))
    return (float(np.median(per_mp)), len(per_mp)) if per_mp else None


def estimate(cfg: GeneratorConfig, images: int, out: str | os.PathLike | None = None,
             cores: int | None = None) -> Estimate:
    """Estimated CPU time of rendering ``images`` images with ``cfg`` (see the module docstring)."""
    cores = max(1, cores or os.cpu_count() or 1)
    measured = _measured(Path(out) if out is not None else None)
    if measured is not None:
        per_mp, basis = measured[0], f"measured on {measured[1]} images of this run"
        per_image = SETUP_CPU_S + per_mp * expected_megapixels(cfg)
    else:
        basis = "typical figures of a 2-core x86 CPU"
        per_mp = CPU_S_PER_MEGAPIXEL_GROUND if cfg.ground_plane else CPU_S_PER_MEGAPIXEL
        per_image = SETUP_CPU_S + (per_mp * expected_megapixels(cfg) * cfg.samples / 32.0
                                   * _DENOISE_FACTOR.get(cfg.denoise, 1.0))
    return Estimate(images=images, cpu_seconds_per_image=per_image, cores=cores,
                    wall_seconds=images * per_image / cores, basis=basis)
