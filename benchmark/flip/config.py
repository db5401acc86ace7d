"""FLIP model configurations: the four official sizes, a tiny random ``flip-test`` model, and a parser for the
official configuration JSON files (``configs/flip-*.json`` of CognitiveModeling/FLIP).

Only the ``model`` section of an official JSON matters for inference. The encoder is built as the official
``model/flip.py`` does; the fields mean:

* ``channels`` C: width of every token; ``layers``: number of self-attention layers;
* ``head_size``: head width, the number of heads is ``max(kq_expansion * C // head_size, 1)``;
* ``num_registers``: learned register tokens prepended to every object's token sequence;
* ``min_patch_size`` / ``max_patch_size``: powers of two, one patch embedding per size in between;
* ``alpha``: initial value of the scalar residual gates; ``kq_expansion`` / ``v_expansion`` / ``mlp_expansion``:
  width multipliers of the query/key, value and feed-forward projections;
* ``avg_num_tokens``: token budget handed to the patch sampler at inference.

``bottleneck_selection`` (``"max"``/``"min"``) picks the feed-forward hidden width from ``max``/``min`` of the input
and output widths; every FLIP feed-forward block maps C to C, so both give ``C * mlp_expansion`` and the value is
only validated.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

#: patch sizes for which the official code defines a patch embedding that we implement
SUPPORTED_PATCH_SIZES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class FlipConfig:
    """Hyper-parameters of one FLIP encoder + pixel predictor (see module docstring)."""

    name: str
    channels: int
    layers: int
    head_size: int
    num_registers: int = 8
    min_patch_size: int = 1
    max_patch_size: int = 16
    alpha: float = 0.1
    kq_expansion: int = 1
    v_expansion: int = 1
    mlp_expansion: int = 4
    avg_num_tokens: int = 512

    def __post_init__(self) -> None:
        for field in ("channels", "layers", "head_size", "num_registers", "kq_expansion", "v_expansion",
                      "mlp_expansion", "avg_num_tokens"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"FLIP config {self.name!r}: {field} must be >= 1, got {getattr(self, field)}")
        sizes = self.patch_sizes
        bad = [p for p in sizes if p not in SUPPORTED_PATCH_SIZES]
        if bad or 2 ** round(math.log2(self.min_patch_size)) != self.min_patch_size:
            raise ValueError(
                f"FLIP config {self.name!r}: patch sizes {self.min_patch_size}..{self.max_patch_size} must be powers "
                f"of two within {SUPPORTED_PATCH_SIZES}"
            )
        if (self.channels * 4) % 16:
            raise ValueError(f"FLIP config {self.name!r}: channels must be a multiple of 4, got {self.channels}")
        for expansion in ("kq_expansion", "v_expansion"):
            width = self.channels * getattr(self, expansion)
            if width % self.num_heads:
                raise ValueError(
                    f"FLIP config {self.name!r}: {expansion} * channels = {width} is not divisible by "
                    f"{self.num_heads} heads"
                )

    @property
    def patch_sizes(self) -> tuple[int, ...]:
        """Patch sizes in the order of the model's patch embeddings, e.g. ``(1, 2, 4, 8, 16)``."""
        lo, hi = int(math.log2(self.min_patch_size)), int(math.log2(self.max_patch_size))
        return tuple(2**k for k in range(lo, hi + 1))

    @property
    def num_heads(self) -> int:
        return max((self.kq_expansion * self.channels) // self.head_size, 1)


def config_from_dict(data: Mapping[str, Any], name: str | None = None) -> FlipConfig:
    """Build a :class:`FlipConfig` from a parsed official config (whole file or just its ``model`` section)."""
    model = data.get("model", data)
    try:
        encoder = model["encoder"]
        selection = model.get("bottleneck_selection", "max")
        if selection not in ("max", "min"):
            raise ValueError(f"bottleneck_selection must be 'max' or 'min', got {selection!r}")
        return FlipConfig(
            name=name or str(data.get("model_path", "flip-custom")),
            channels=int(encoder["channels"]),
            layers=int(encoder["layers"]),
            head_size=int(encoder["head_size"]),
            num_registers=int(encoder["num_registers"]),
            min_patch_size=int(model["min_patch_size"]),
            max_patch_size=int(model["max_patch_size"]),
            alpha=float(encoder.get("alpha", 0.1)),
            kq_expansion=int(encoder.get("kq_expansion", 1)),
            v_expansion=int(encoder.get("v_expansion", 1)),
            mlp_expansion=int(encoder.get("mlp_expansion", 4)),
            avg_num_tokens=int(model["avg_num_tokens"]),
        )
    except KeyError as missing:
        raise ValueError(f"FLIP config {name or ''} lacks the field {missing}") from None


def load_config_json(path: str | os.PathLike) -> FlipConfig:
    """Parse an official FLIP config JSON (e.g. ``configs/flip-tiny.json``); the name is the file stem."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        return config_from_dict(json.load(fh), name=path.stem)


_OFFICIAL = dict(num_registers=8, min_patch_size=1, max_patch_size=16, alpha=0.1, kq_expansion=1, v_expansion=1,
                 mlp_expansion=4, avg_num_tokens=512)

#: registry name -> configuration; values of the official ``configs/flip-*.json`` (commit a8dc2a5)
CONFIGS: dict[str, FlipConfig] = {
    "flip-tiny": FlipConfig("flip-tiny", channels=64, layers=3, head_size=16, **_OFFICIAL),
    "flip-small": FlipConfig("flip-small", channels=128, layers=5, head_size=32, **_OFFICIAL),
    "flip-middle": FlipConfig("flip-middle", channels=256, layers=8, head_size=32, **_OFFICIAL),
    "flip-large": FlipConfig("flip-large", channels=512, layers=24, head_size=32, **_OFFICIAL),
    # small random model for CI and end-to-end smoke tests (never has weights)
    "flip-test": FlipConfig("flip-test", channels=32, layers=1, head_size=16, avg_num_tokens=128),
}


def get_config(name: str, **overrides: Any) -> FlipConfig:
    """The configuration registered as ``name``, optionally with some fields replaced."""
    try:
        config = CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown FLIP config {name!r}; known: {', '.join(CONFIGS)}") from None
    return replace(config, **overrides) if overrides else config
