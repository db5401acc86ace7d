"""Timing the official FLIP C sampler (``flip_gaussian``) on the same objects as ours, for ``bench sampler
--official``: a same-machine comparison instead of the paper's figure from another machine.

The official extension is not a dependency and is never vendored: build it from the FLIP repository
(``ext/``: ``python setup.py build_ext --inplace``) and pass the directory that holds the built module.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import click
import numpy as np

#: the module name the official ``ext/setup.py`` builds
OFFICIAL_MODULE = "flip_gaussian"


def load_official(directory: Path) -> ModuleType:
    """Import ``flip_gaussian`` from ``directory`` (and from nowhere else); click.UsageError when it is not there
    or lacks the sampler entry point."""
    spec = importlib.machinery.PathFinder.find_spec(OFFICIAL_MODULE, [str(directory)])
    if spec is None or spec.loader is None:
        raise click.UsageError(
            f"no built {OFFICIAL_MODULE} module in {directory}: clone the official FLIP repository, run "
            f"'python setup.py build_ext --inplace' in its ext/ folder and pass that folder to --official"
        )
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise click.UsageError(f"could not import {spec.origin}: {exc}") from exc
    for name in ("seed", "get_continuous_patches_with_indices"):
        if not hasattr(module, name):
            raise click.UsageError(f"{spec.origin} has no {name}(); is it the official FLIP ext/ build?")
    return module


def time_official(module: ModuleType, work, num_tokens: int, patch_sizes) -> tuple[float, float]:
    """(median CPU ms per object on this thread, mean accepted patches) of the official
    ``get_continuous_patches_with_indices`` (centres, bilinear patches, coordinates, indices) over
    ``work = [(image uint8 [H, W, 3], position float32 [6] normalized frame), ...]``, reseeded with ``seed(i)``
    before object i, threshold 2.67 and coverage 1.44 (the configs' values).

    Its inputs are the pixel-frame Gaussian the official Python wrapper passes (mu, sigma * sqrt(2) in pixels, -rot_a,
    rot_b; here with the rotation already normalized, which the C code repeats): timing only, the patches are not
    compared (the official build uses -ffast-math, so its bits depend on the machine).
    """
    from benchmark.flip.sampler_reference import sampler_params_px

    sizes = [float(p) for p in patch_sizes]
    calls = [(image, [float(v) for v in sampler_params_px(position, *image.shape[:2])]) for image, position in work]

    def sample(image: np.ndarray, args: list[float]):
        return module.get_continuous_patches_with_indices(image, *args, int(num_tokens), sizes, 2.67, 1.44)

    module.seed(0)
    sample(*calls[0])  # warm-up
    cpu, counts = [], []
    for i, (image, args) in enumerate(calls):
        module.seed(i)  # outside the timed call: it rebuilds the ziggurat tables
        c0 = time.thread_time()
        result = sample(image, args)
        cpu.append(time.thread_time() - c0)
        counts.append(sum(int(c) for c in result[3]))
    return float(np.median(cpu) * 1e3), float(np.mean(counts))
