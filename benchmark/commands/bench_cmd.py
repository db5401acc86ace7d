"""``flipbench bench ...``: micro-benchmarks that print figures (no assertions; see tests for correctness)."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import click
import numpy as np


@click.group("bench")
def bench_cmd() -> None:
    """Micro-benchmarks (sampler, models) that print figures."""


def _objects(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random prompt positions (normalized frame) of :func:`_random_rho`, converted with the official
    rho -> position rule."""
    from benchmark.flip.sampler import rho_to_position

    return rho_to_position(_random_rho(rng, n))


def _random_rho(rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 [n, 5] random prompts ``rho`` (normalized frame): centre in [-0.6, 0.6], major sigma log-uniform in
    [0.02, 0.4], axis ratio in [0.2, 1], random angle."""
    major = np.exp(rng.uniform(np.log(0.02), np.log(0.4), n))
    minor = major * rng.uniform(0.2, 1.0, n)
    ang = rng.uniform(0, np.pi, n)
    c, s = np.cos(ang), np.sin(ang)
    vx = c * c * major**2 + s * s * minor**2
    vy = s * s * major**2 + c * c * minor**2
    cxy = c * s * (major**2 - minor**2)
    return np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.6, 0.6, n), vx, vy, cxy], 1).astype(np.float32)


#: the repository's COCO mini fixture (3 images, 36 objects), used by ``bench flip`` when present
_COCO_MINI = Path(__file__).resolve().parents[2] / "tests" / "data" / "coco_val2017_mini.hdf5"


def _time_per_object(work, num_tokens, fallback: bool) -> tuple[float, float, float, float]:
    """(median CPU ms, median wall ms, mean accepted patches, median CPU ms of the patch extraction alone) over
    ``work`` = ``[(image, position), ...]``, one object per call (seed = its index).

    CPU time is this thread's (``time.thread_time``), i.e. one core, insensitive to other processes; wall time
    includes waiting for a core on a loaded machine. The extraction share is timed by extracting the sampled
    centres again with :func:`~benchmark.flip.sampler.extract_patches` (same backend).
    """
    import benchmark.flip.sampler as sampler

    previous = sampler._FORCE_FALLBACK
    sampler._FORCE_FALLBACK = fallback
    try:
        sampler.sample_patches(work[0][0], work[0][1], num_tokens, seed=0)  # warm-up (tables, allocator)
        cpu, wall, counts, extract = [], [], [], []
        for i, (image, pos) in enumerate(work):
            c0, w0 = time.thread_time(), time.perf_counter()
            res = sampler.sample_patches(image, pos, num_tokens, seed=i)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            counts.append(res.num_patches)
            c0 = time.thread_time()
            for centres, p in zip(res.centers_px, res.patch_sizes, strict=True):
                sampler.extract_patches(image, centres, p)
            extract.append(time.thread_time() - c0)
    finally:
        sampler._FORCE_FALLBACK = previous
    return (float(np.median(cpu) * 1e3), float(np.median(wall) * 1e3), float(np.mean(counts)),
            float(np.median(extract) * 1e3))


def _dataset_work(dataset: Path, objects: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image uint8 [H, W, 3], position float32 [6])`` of the dataset's first ``objects`` objects (stored
    prompts through the official rho -> position rule), in instance order."""
    from benchmark.flip.sampler import rho_to_position
    from objascale.hdf5_format import FlipDataset

    work: list[tuple[np.ndarray, np.ndarray]] = []
    with FlipDataset(dataset) as ds:
        for i in range(ds.num_images):
            if len(work) >= objects:
                break
            image = ds.image(i)
            for j in list(ds.instance_indices(i))[: objects - len(work)]:
                work.append((image, rho_to_position(ds.rho(j))))
    return work


@bench_cmd.command("sampler")
@click.option("--tokens", "tokens", multiple=True, type=int, default=(256, 512, 1024), show_default=True,
              help="Token budgets (repeatable).")
@click.option("--sizes", "sizes", multiple=True, type=int, default=(512, 1024, 4096), show_default=True,
              help="Square image sides in pixels (repeatable).")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=True, path_type=Path), default=None,
              help="FLIP HDF5 dataset whose objects (own images, stored prompts) are timed too "
                   "(default: the COCO mini fixture when present).")
@click.option("--no-dataset", is_flag=True, help="Time only the random prompts.")
@click.option("--objects", type=int, default=200, show_default=True,
              help="Objects timed per row with the native code (at most this many from --dataset).")
@click.option("--fallback-objects", type=int, default=10, show_default=True,
              help="Objects timed per row with the pure-numpy fallback (0 to skip it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random objects and images.")
@click.option("--official", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder holding the official FLIP C extension (flip_gaussian, built in the FLIP repository's ext/ "
                   "with 'python setup.py build_ext --inplace'): times it on the same objects, for a same-machine "
                   "comparison.")
def sampler_cmd(tokens, sizes, dataset, no_dataset, objects, fallback_objects, seed, official) -> None:
    """Per-object patch sampling time (centres + bilinear patches + coordinates), native vs numpy fallback.

    One object per call (single thread); medians of the per-call CPU time (one core) and wall time, and of the
    time the bilinear patch extraction alone takes (the rest is mostly the overlap test). Rows: random
    prompts (see ``_objects``: large objects, many patches) on a random RGB image per size, then the objects of a
    real dataset with their own images and stored prompts. The FLIP paper quotes about 1 ms per image for the
    official C extension; ``--official`` times that extension here on the same objects.
    """
    from rich.console import Console
    from rich.table import Table

    from benchmark.commands.official_sampler import load_official, time_official
    from benchmark.flip.sampler import PATCH_SIZES, native_available

    console = Console() if sys.stdout.isatty() else Console(width=160)  # files and pipes get the whole table
    if objects < 1:
        raise click.BadParameter("--objects must be >= 1")
    if dataset is None and not no_dataset and _COCO_MINI.exists():
        dataset = _COCO_MINI
    rng = np.random.default_rng(seed)
    positions = _objects(rng, objects)
    workloads = []
    for side in sizes:
        image = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        workloads.append((f"{side}x{side}", [(image, p) for p in positions]))
    if dataset is not None and not no_dataset:
        work = _dataset_work(dataset, objects)
        workloads.append((dataset.stem, work))
    has_native = native_available()
    official_module = load_official(official) if official is not None else None
    table = Table(title="FLIP patch sampler, median time per object (ms; CPU = one core)")
    table.add_column("image", justify="right", min_width=max(len(label) for label, _ in workloads))
    columns = ["tokens", "patches", "native CPU", "of which patches", "native wall", "fallback CPU", "speed-up"]
    if official_module is not None:
        columns += ["official CPU", "official patches", "native vs official"]
    for col in columns:
        table.add_column(col, justify="right")
    for label, work in workloads:
        for n_tok in tokens:
            row = [label, str(n_tok)]
            nat = _time_per_object(work, n_tok, fallback=False) if has_native else None
            fb = _time_per_object(work[:fallback_objects], n_tok, fallback=True) if fallback_objects > 0 else None
            patches = nat[2] if nat else (fb[2] if fb else float("nan"))
            row.append(f"{patches:.0f}")
            row += [f"{nat[0]:.3f}", f"{nat[3]:.3f}", f"{nat[1]:.3f}"] if nat else ["n/a", "n/a", "n/a"]
            row.append(f"{fb[0]:.1f}" if fb else "skipped")
            row.append(f"{fb[0] / nat[0]:.0f}x" if nat and fb else "")
            if official_module is not None:
                off = time_official(official_module, work, n_tok, PATCH_SIZES)
                row += [f"{off[0]:.3f}", f"{off[1]:.0f}", f"{off[0] / nat[0]:.1f}x faster" if nat else ""]
            table.add_row(*row)
    console.print(table)
    console.print(
        f"native extension: {'built' if has_native else 'NOT built (pip install -e . with a C++ compiler)'}; "
        f"python {platform.python_version()}, {platform.machine()}, {platform.processor() or 'cpu'}; "
        f"{objects} objects per row (native), {fallback_objects} (fallback), seed {seed}"
        + (f"; {dataset.stem}: its first {len(workloads[-1][1])} objects" if dataset is not None and not no_dataset
           else "")
    )


def _box_of(rho: np.ndarray, height: int, width: int) -> np.ndarray:
    """XYXY pixel box of the 2-sigma extent of a normalized-frame ``rho`` (FLIP ignores it; it only enters the
    per-prompt sampler seed)."""
    cx, cy = (rho[0] + 1) * (width - 1) / 2, (rho[1] + 1) * (height - 1) / 2
    hx, hy = 2 * np.sqrt(rho[2]) * (width - 1) / 2, 2 * np.sqrt(rho[3]) * (height - 1) / 2
    return np.array([max(cx - hx, 0), max(cy - hy, 0), min(cx + hx, width - 1), min(cy + hy, height - 1)])


def _flip_workloads(sizes, dataset: Path | None, objects: int, seed: int):
    """``(label, [(image uint8 [H, W, 3], [ObjectPrompt, ...]), ...])`` per workload: a random RGB image per square
    size (label ``WxH``) with ``objects`` random prompts (:func:`_random_rho`), then the dataset's first images
    with their stored prompts (``objects`` in all; label: the file's stem)."""
    from baselines.base import ObjectPrompt

    rng = np.random.default_rng(seed)
    for side in sizes:
        image = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        prompts = [ObjectPrompt(_box_of(r, side, side), r) for r in _random_rho(rng, objects)]
        yield f"{side}x{side}", [(image, prompts)]
    if dataset is None:
        return
    from objascale.hdf5_format import FlipDataset

    ds = FlipDataset(dataset)
    items, left = [], objects
    for i in range(ds.num_images):
        if left <= 0:
            break
        indices = list(ds.instance_indices(i))[:left]
        left -= len(indices)
        items.append((ds.image(i), [ObjectPrompt(ds.bbox(j), ds.rho(j)) for j in indices]))
    yield dataset.stem, items


def _time_flip(predictor, items) -> tuple[dict[str, float], float, int]:
    """(mean seconds per object and stage, median total seconds per object, objects) of one ``predict`` call per
    object; one untimed warm-up call on the first object precedes them."""
    first_image, first_prompts = items[0]
    predictor.set_image(first_image)
    predictor.predict(first_prompts[:1])
    predictor.timer.reset()
    stages: dict[str, float] = {}
    totals = []
    for image, prompts in items:
        predictor.set_image(image)
        for prompt in prompts:
            predictor.predict([prompt])
            seconds = predictor.timer.pop()
            totals.append(sum(seconds.values()))
            for name, value in seconds.items():
                stages[name] = stages.get(name, 0.0) + value
    n = len(totals)
    return {k: v / n for k, v in stages.items()}, float(np.median(totals)), n


@bench_cmd.command("flip")
@click.option("--model", "model_spec", default="flip-tiny", show_default=True,
              help="FLIP model NAME or NAME:CHECKPOINT; without weights it falls back to flip-test (random).")
@click.option("--modes", default="window,full,hierarchical", show_default=True,
              help="Comma-separated inference modes.")
@click.option("--sizes", "sizes", multiple=True, type=click.IntRange(min=16), default=(512, 1024),
              show_default=True, help="Square random-image sides in pixels (repeatable).")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=True, path_type=Path),
              default=_COCO_MINI if _COCO_MINI.exists() else None,
              help="FLIP HDF5 dataset whose images and prompts are timed too (default: the COCO mini fixture).")
@click.option("--no-dataset", is_flag=True, help="Time only the random images.")
@click.option("--objects", type=click.IntRange(min=1), default=6, show_default=True,
              help="Objects timed per workload (one predict call each).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: torch.get_num_threads()).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random images and prompts.")
def flip_cmd(model_spec, modes, sizes, dataset, no_dataset, objects, threads, device, seed) -> None:
    """Per-object FLIP time per stage (sampling = preprocess, encoder, decoder, postprocess) in each mode.

    One ``predict`` call per object, as the evaluation does (one ``set_image`` per image); the first call of each
    workload is a warm-up and not counted. Stage figures are means per object, the total a median.
    """
    import torch
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from benchmark.flip.inference import MODES
    from benchmark.models import build_model
    from baselines.safe_load import CheckpointError
    from baselines.weights import MissingCheckpointError
    from benchmark.commands.errors import user_errors

    console = Console()
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(mode_list) - set(MODES))
    if unknown or not mode_list:
        raise click.BadParameter(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}", param_hint="--modes")
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available in this torch build / machine", param_hint="--device")
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with user_errors(CheckpointError, ImportError):  # a refused or foreign checkpoint: one line, naming it
            predictor = build_model(model_spec, device=device)
    except MissingCheckpointError as err:
        console.print(f"[yellow]{err}[/yellow]\nfalling back to flip-test (random weights)")
        predictor = build_model("flip-test", device=device, allow_random=True)
    workloads = list(_flip_workloads(sizes, None if no_dataset else dataset, objects, seed))
    table = Table(title=f"{predictor.name}: ms per object (stages: mean; total: median)", box=box.SIMPLE_HEAD,
                  caption="n objects; sample = patch sampling + packing (preprocess), post = postprocess")
    table.add_column("workload", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    for col in ("n", "sample", "encode", "decode", "post", "total"):
        table.add_column(col, justify="right")
    for label, items in workloads:
        for mode in mode_list:
            predictor.mode = mode
            stages, total, n = _time_flip(predictor, items)
            table.add_row(label, mode, str(n), *(f"{stages.get(k, 0.0) * 1e3:.1f}" for k in
                                                 ("preprocess", "encoder", "decoder", "postprocess")),
                          f"{total * 1e3:.1f}")
    console.print(table)
    console.print(
        f"weights: {predictor.weights.kind} ({predictor.weights.source}); device {predictor.device}; "
        f"{torch.get_num_threads()} torch threads; torch {torch.__version__}; python {platform.python_version()}, "
        f"{platform.machine()}; seed {seed}"
    )


def _register_cluster() -> None:
    from benchmark.commands.bench_cluster import cluster_cmd  # Ray is imported only when the command runs

    bench_cmd.add_command(cluster_cmd)


_register_cluster()


def _register_view() -> None:
    from benchmark.commands.bench_view import view_bench_cmd  # FastAPI is imported only when the command runs

    bench_cmd.add_command(view_bench_cmd)


_register_view()
