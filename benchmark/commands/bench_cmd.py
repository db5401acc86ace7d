"""``flipbench bench ...``: micro-benchmarks that print figures (no assertions; see tests for correctness)."""

from __future__ import annotations

import platform
import time

import click
import numpy as np


@click.group("bench")
def bench_cmd() -> None:
    """Micro-benchmarks (sampler, models) that print figures."""


def _objects(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random prompt positions (normalized frame): centre in [-0.6, 0.6], major sigma log-uniform in
    [0.02, 0.4], axis ratio in [0.2, 1], random angle; converted with the official rho -> position rule."""
    from benchmark.flip.sampler import rho_to_position

    major = np.exp(rng.uniform(np.log(0.02), np.log(0.4), n))
    minor = major * rng.uniform(0.2, 1.0, n)
    ang = rng.uniform(0, np.pi, n)
    c, s = np.cos(ang), np.sin(ang)
    vx = c * c * major**2 + s * s * minor**2
    vy = s * s * major**2 + c * c * minor**2
    cxy = c * s * (major**2 - minor**2)
    rho = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.6, 0.6, n), vx, vy, cxy], 1).astype(np.float32)
    return rho_to_position(rho)


def _time_per_object(image, positions, num_tokens, fallback: bool) -> tuple[float, float, float]:
    """(median CPU ms, median wall ms, mean accepted patches) over the objects, one object per call.

    CPU time is this thread's (``time.thread_time``), i.e. one core, insensitive to other processes; wall time
    includes waiting for a core on a loaded machine.
    """
    import benchmark.flip.sampler as sampler

    previous = sampler._FORCE_FALLBACK
    sampler._FORCE_FALLBACK = fallback
    try:
        sampler.sample_patches(image, positions[0], num_tokens, seed=0)  # warm-up (tables, allocator)
        cpu, wall, counts = [], [], []
        for i, pos in enumerate(positions):
            c0, w0 = time.thread_time(), time.perf_counter()
            res = sampler.sample_patches(image, pos, num_tokens, seed=i)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            counts.append(res.num_patches)
    finally:
        sampler._FORCE_FALLBACK = previous
    return float(np.median(cpu) * 1e3), float(np.median(wall) * 1e3), float(np.mean(counts))


@bench_cmd.command("sampler")
@click.option("--tokens", "tokens", multiple=True, type=int, default=(256, 512, 1024), show_default=True,
              help="Token budgets (repeatable).")
@click.option("--sizes", "sizes", multiple=True, type=int, default=(512, 1024, 4096), show_default=True,
              help="Square image sides in pixels (repeatable).")
@click.option("--objects", type=int, default=200, show_default=True, help="Objects timed per cell (native).")
@click.option("--fallback-objects", type=int, default=10, show_default=True,
              help="Objects timed per cell with the pure-numpy fallback (0 to skip it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random objects and images.")
def sampler_cmd(tokens, sizes, objects, fallback_objects, seed) -> None:
    """Per-object patch sampling time (centres + bilinear patches + coordinates), native vs numpy fallback.

    One object per call (single thread), random prompts (see ``_objects``) on a random RGB image; medians of the
    per-call CPU time (one core) and wall time. The FLIP paper quotes about 1 ms per image for the official C
    extension.
    """
    from rich.console import Console
    from rich.table import Table

    from benchmark.flip.sampler import native_available

    console = Console()
    if objects < 1:
        raise click.BadParameter("--objects must be >= 1")
    rng = np.random.default_rng(seed)
    positions = _objects(rng, objects)
    has_native = native_available()
    table = Table(title="FLIP patch sampler, median time per object (ms; CPU = one core)")
    for col in ("image", "tokens", "patches", "native CPU", "native wall", "fallback CPU", "speed-up"):
        table.add_column(col, justify="right")
    for side in sizes:
        image = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        for n_tok in tokens:
            row = [f"{side}x{side}", str(n_tok)]
            nat = _time_per_object(image, positions, n_tok, fallback=False) if has_native else None
            fb = (_time_per_object(image, positions[:fallback_objects], n_tok, fallback=True)
                  if fallback_objects > 0 else None)
            patches = nat[2] if nat else (fb[2] if fb else float("nan"))
            row.append(f"{patches:.0f}")
            row += [f"{nat[0]:.3f}", f"{nat[1]:.3f}"] if nat else ["n/a", "n/a"]
            row.append(f"{fb[0]:.1f}" if fb else "skipped")
            row.append(f"{fb[0] / nat[0]:.0f}x" if nat and fb else "")
            table.add_row(*row)
    console.print(table)
    console.print(
        f"native extension: {'built' if has_native else 'NOT built (pip install -e . with a C++ compiler)'}; "
        f"python {platform.python_version()}, {platform.machine()}, {platform.processor() or 'cpu'}; "
        f"{objects} objects (native), {fallback_objects} (fallback), seed {seed}"
    )
