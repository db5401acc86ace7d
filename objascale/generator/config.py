"""Generator configuration: every knob of an ObjaScale run, presets, validation and a stable fingerprint.

A run directory stores its config as ``generator_config.json``; a resumed run must use the same config (only
``count`` may change), so the images already written stay consistent with the ones still to come.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["GeneratorConfig", "PRESETS", "PRESET_COUNTS", "PAPER_PER_CATEGORY", "preset",
           "DENOISE_MODES", "DEVICES", "GENERATOR_VERSION"]

DENOISE_MODES = ("none", "fast", "high")
DEVICES = ("CPU", "CUDA", "OPTIX")
#: version of the draw / render procedure; recorded in the run config and the dataset card. 2: category-balanced
#: design, object fallback after a failed download keeps the image's pose, optional ground plane and box limit.
#: 3: the area is drawn first, log-uniformly over the whole configured range, and the resolution is chosen to hold
#: it (no per-image floor); object width/height limit in pixels (``max_object_px``); objects on the ground plane
#: drawn below the horizon.
GENERATOR_VERSION = 3


@dataclass(frozen=True)
class GeneratorConfig:
    """Parameters of an ObjaScale generation run (all sizes in pixels, angles in degrees).

    Image ``k``'s random draws depend only on ``(seed, k)`` (and the retry number), never on worker count or order.
    """

    seed: int = 0
    #: range of the long image side; the short side follows from a random aspect ratio in ``aspects``
    long_side_min: int = 640
    long_side_max: int = 4096
    aspects: tuple[float, ...] = (1.0, 4 / 3, 3 / 2, 16 / 9)
    portrait_prob: float = 0.25
    #: relative mask area: drawn first, log-uniformly in [min_area, max_area] (clipped to what the largest frame
    #: can hold, ``scale.area_range``); the resolution is then drawn among the frames that give the object at
    #: least ``min_pixels`` pixels (an area of 1e-6 needs 16 / 1e-6 = 16 MP), see ``scale.frame_options``
    min_area: float = 1e-6
    max_area: float = 0.25
    min_pixels: float = 16.0
    #: relative tolerance on the achieved (coverage) area; one extra render corrects a miss
    area_tolerance: float = 0.02
    #: camera
    lens_mm: tuple[float, float] = (24.0, 70.0)
    sensor_mm: float = 36.0
    pitch_deg: tuple[float, float] = (-12.0, 12.0)
    #: object orientation: uniform yaw, tilt of the up axis up to this many degrees
    max_tilt_deg: float = 35.0
    #: background: "bundled" (the 8 CC0 HDRIs shipped with bpy) or a folder of .hdr / .exr files
    hdris: str = "bundled"
    exposure_ev: tuple[float, float] = (-0.5, 1.0)
    #: objects: "procedural", "folder:<path>" or "objaverse" (LVIS categories of ``categories_file``)
    objects: str = "procedural"
    categories_file: str = ""
    #: read the category list from this dataset / file instead (``categories.read_category_list``; frozen in the
    #: run's ``categories.json``): the official ObjaScale files, when available
    categories_from: str = ""
    objects_per_category: int = 50
    download_retries: int = 3
    #: balanced design: image ``k`` shows category ``k mod C`` (C = number of categories of the catalogue, in
    #: catalogue order), so ``C * n`` images hold exactly ``n`` per category; the object is drawn among that
    #: category's catalogue entries. Off: objects drawn uniformly from the whole catalogue.
    balanced: bool = False
    #: each side of the object's projected box at most this fraction of the image side (1.0: the frame). The
    #: paper preset uses sqrt(max_area) = 0.5, so no object is wider or taller than half the frame (our reading of
    #: the paper's "constrained in width and height"); an object too wide or tall at its drawn area is moved back
    #: along its ray until it fits (its area then falls below the drawn one; recorded per image)
    max_box_fraction: float = 1.0
    #: the object's projected width and height at most this many pixels (0: no pixel limit). The paper constrains
    #: object width and height in pixels without publishing the value; the paper preset uses 2048 (half of its
    #: 4096 px long side). With a limit, frames are chosen so a mask of the drawn area fits a box of that size
    #: filled to ``object_box_fill`` (mask area / box area), and an object still too wide or tall is moved back
    max_object_px: int = 0
    object_box_fill: float = 0.5
    #: shadow-catching ground plane under the object (only when the object is below the camera; see scene.py)
    ground_plane: bool = False
    #: Cycles
    samples: int = 32
    denoise: str = "high"
    max_bounces: int = 4
    device: str = "CPU"
    #: probe renders used by the scale control
    probe_size: int = 256
    probe_samples: int = 8
    max_probes: int = 4
    max_attempts: int = 6
    #: images per HDF5 shard (shard k holds images [k * shard_size, (k + 1) * shard_size))
    shard_size: int = 64
    #: calibration mode (tests): flat green emitter objects on a black world, linear "Standard" view transform
    calibration: bool = False
    preset_name: str = "custom"

    def __post_init__(self) -> None:
        problems = []
        if not 16 <= self.long_side_min <= self.long_side_max <= 16384:
            problems.append(f"need 16 <= long_side_min <= long_side_max <= 16384, got "
                            f"{self.long_side_min}..{self.long_side_max}")
        if not 0 < self.min_area <= self.max_area <= 1:
            problems.append(f"need 0 < min_area <= max_area <= 1, got {self.min_area}..{self.max_area}")
        if self.denoise not in DENOISE_MODES:
            problems.append(f"denoise must be one of {DENOISE_MODES}, got {self.denoise!r}")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.samples < 1 or self.probe_samples < 1:
            problems.append("samples and probe_samples must be >= 1")
        if self.shard_size < 1:
            problems.append("shard_size must be >= 1")
        if not (self.objects in ("procedural", "objaverse") or self.objects.startswith("folder:")):
            problems.append(f"objects must be 'procedural', 'objaverse' or 'folder:<path>', got {self.objects!r}")
        if not 0 < self.area_tolerance < 1:
            problems.append("area_tolerance must be in (0, 1)")
        if not 0 < self.max_box_fraction <= 1:
            problems.append(f"max_box_fraction must be in (0, 1], got {self.max_box_fraction}")
        if self.max_object_px < 0 or (self.max_object_px and self.max_object_px < 4):
            problems.append(f"max_object_px must be 0 (no limit) or >= 4, got {self.max_object_px}")
        if self.categories_file and self.categories_from:
            problems.append("give categories_file (--categories) or categories_from (--categories-from), not both")
        if not 0 < self.object_box_fill <= 1:
            problems.append(f"object_box_fill must be in (0, 1], got {self.object_box_fill}")
        if not problems:
            from objascale.generator.scale import area_range  # noqa: PLC0415 - scale imports nothing of ours

            try:
                area_range(self)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("invalid generator config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        conv = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**conv)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config (identifies the draws of a run)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, **kw: Any) -> "GeneratorConfig":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def capped(self, max_resolution: int | None) -> "GeneratorConfig":
        """The config with the long image side capped at ``max_resolution`` (both ends of the range; smoke runs
        of a preset). Recorded as it is in the run config, so a capped run never passes for a full one."""
        if not max_resolution:
            return self
        return replace(self, long_side_min=min(self.long_side_min, max_resolution),
                       long_side_max=min(self.long_side_max, max_resolution))


#: named presets; "mini" is the embedded default (minutes on 2 cores, offline: procedural objects, bundled HDRIs).
#: "paper" is ObjaScale as published (FLIP, arXiv 2502.02763): Objaverse objects of 68 LVIS categories x 150
#: images = 10,200, Poly Haven HDRIs at the resolution the frames need (``polyhaven:auto``), long side up to
#: 4096 px, relative mask area log-uniform in [1e-6, 0.25] with the resolution chosen to hold it, object width and
#: height at most ``max_object_px`` pixels, balanced categories, upright objects standing on a shadow-catching
#: ground plane (camera level or looking down, so the ground is below the horizon).
PRESETS: dict[str, GeneratorConfig] = {
    "mini": GeneratorConfig(long_side_min=320, long_side_max=1024, samples=16, denoise="fast", shard_size=8,
                            probe_size=192, preset_name="mini"),
    "full": GeneratorConfig(long_side_min=640, long_side_max=4096, samples=32, denoise="high", shard_size=64,
                            preset_name="full"),
    "paper": GeneratorConfig(long_side_min=640, long_side_max=4096, samples=32, denoise="high", shard_size=64,
                             balanced=True, max_object_px=2048, objects="objaverse", hdris="polyhaven:auto:16",
                             ground_plane=True, max_tilt_deg=0.0, pitch_deg=(-12.0, 0.0), preset_name="paper"),
}
#: images per category of the paper preset (68 x 150 = 10,200)
PAPER_PER_CATEGORY = 150
PRESET_COUNTS = {"mini": 24, "full": 1000, "paper": 68 * PAPER_PER_CATEGORY}


def preset(name: str) -> GeneratorConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
