"""``flipbench bench ...``: micro-benchmarks that print figures (no assertions; see tests for correctness)."""

from __future__ import annotations

import os
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


def _time_flip(predictor, items, implementations=(None,), repeat: int = 1) -> dict:
    """Per implementation (FLIP's ``"fast"`` / ``"reference"``; ``None``: leave the predictor as it is, any model):
    ``{"wall": ms, "cpu": ms, "stages": {stage: ms}, "objects": n}`` per object (mean over objects, the pass of
    median wall time of ``repeat`` passes) of one ``predict`` call per object. The implementations alternate object
    by object (the order flips every object), so a change of machine load hits them alike; each one's first call
    on the first object is an untimed warm-up. ``cpu``: process CPU time (all threads)."""

    def use(implementation) -> None:
        if implementation is not None:
            predictor.implementation = implementation

    first_image, first_prompts = items[0]
    predictor.set_image(first_image)
    for implementation in implementations:
        use(implementation)
        predictor.predict(first_prompts[:1])
    passes: dict[str, list[tuple[float, float, dict]]] = {k: [] for k in implementations}
    for _ in range(repeat):
        sums = {k: [0.0, 0.0, {}] for k in implementations}
        n = 0
        for image, prompts in items:
            predictor.set_image(image)
            for prompt in prompts:
                order = implementations if n % 2 == 0 else implementations[::-1]
                for implementation in order:
                    use(implementation)
                    predictor.timer.reset()
                    wall, cpu = time.perf_counter(), time.process_time()
                    predictor.predict([prompt])
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    total = sums[implementation]
                    total[0] += wall
                    total[1] += cpu
                    for name, value in predictor.timer.pop().items():
                        total[2][name] = total[2].get(name, 0.0) + value
                n += 1
        for implementation, (wall, cpu, stages) in sums.items():
            passes[implementation].append((wall / n, cpu / n, {k: v / n for k, v in stages.items()}))
    result = {}
    for implementation, runs in passes.items():
        middle = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the pass of median wall time
        result[implementation] = {"wall": middle[0] * 1e3, "cpu": float(np.median([r[1] for r in runs])) * 1e3,
                                  "stages": {k: v * 1e3 for k, v in middle[2].items()}, "objects": n}
    return result


def _count_flip_flops(predictor, items) -> float:
    """Matrix-multiply GFLOP per object of the current implementation (counted from the shapes it runs, on this
    thread: decoding workers set to 1 meanwhile; masks do not depend on them). The native attention kernel is
    invisible to the counter, so the count runs the SDPA code of the same attention (same products, same shapes)."""
    from benchmark.flip import native_attention
    from benchmark.flip.flops import count_flops

    workers, native, total, n = predictor.num_threads, native_attention.ENABLED, 0, 0
    predictor.num_threads = 1
    native_attention.ENABLED = False
    try:
        for image, prompts in items:
            predictor.set_image(image)
            for prompt in prompts:
                total += count_flops(lambda: predictor.predict([prompt]))[0]
                n += 1
    finally:
        predictor.num_threads = workers
        native_attention.ENABLED = native
    return total / n / 1e9


#: what a FLIP evaluation imports, timed in a fresh interpreter by ``bench flip``
_IMPORT_PROBE = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import benchmark.cli, benchmark.models, benchmark.flip.predictor, benchmark.flip.fast_decoder, benchmark.evaluation.runner
t2 = time.perf_counter()
print(json.dumps({"torch": t1 - t0, "flipbench": t2 - t1}))
"""


def _import_times() -> tuple[float, float, float] | None:
    """(torch s, flipbench's FLIP evaluation modules s, interpreter start + imports wall s) in a fresh process."""
    import json
    import subprocess

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return None
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    return times["torch"], times["flipbench"], wall


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
@click.option("--no-random", is_flag=True, help="Time only the dataset's objects (no random images).")
@click.option("--objects", type=click.IntRange(min=1), default=6, show_default=True,
              help="Objects timed per workload (one predict call each).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: torch.get_num_threads()).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Compute precision of the fast pixel predictor (the reference is fp32).")
@click.option("--compare-ref", is_flag=True,
              help="Also time the reference pixel predictor (the implementation before the fast path), object by "
                   "object alternating with the fast one, and print the speed-up.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timing passes over the objects; figures are those of the median pass.")
@click.option("--no-native", is_flag=True,
              help="Attend with PyTorch's SDPA instead of the native kernel, in the encoder and the pixel "
                   "predictor (A/B timing; as FLIPBENCH_NATIVE_ATTENTION=0).")
@click.option("--no-import-time", is_flag=True, help="Do not time the imports in a fresh process.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random images and prompts.")
def flip_cmd(model_spec, modes, sizes, dataset, no_dataset, no_random, objects, threads, device, precision,
             compare_ref, repeat, no_native, no_import_time, seed) -> None:
    """Per-object FLIP time per stage and mode, its matrix-multiply GFLOP (counted from the shapes the code runs)
    and the distance to this machine's compute bound (GFLOP / measured matmul GFLOP/s).

    One ``predict`` call per object, as the evaluation does (one ``set_image`` per image); the first call of each
    workload is a warm-up. Figures are means per object of the median of ``--repeat`` passes; "CPU" is the
    process's CPU time (all threads), insensitive to waiting for a core on a loaded machine. "x bound" = wall time
    / (GFLOP / matmul rate of the same thread count and precision); the rate is a 1024^3 matrix product, best of
    repeated runs before and after the timings.
    """
    import torch
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from benchmark.flip import native_attention
    from benchmark.flip.flops import matmul_rate
    from benchmark.flip.inference import MODES
    from benchmark.models import build_model
    from baselines.safe_load import CheckpointError
    from baselines.weights import MissingCheckpointError
    from benchmark.commands.errors import user_errors

    console = Console() if sys.stdout.isatty() else Console(width=200)
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(mode_list) - set(MODES))
    if unknown or not mode_list:
        raise click.BadParameter(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}", param_hint="--modes")
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available in this torch build / machine", param_hint="--device")
    imports = None if no_import_time else _import_times()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with user_errors(CheckpointError, ImportError):  # a refused or foreign checkpoint: one line, naming it
            predictor = build_model(model_spec, device=device)
    except MissingCheckpointError as err:
        console.print(f"[yellow]{err}[/yellow]\nfalling back to flip-test (random weights)")
        predictor = build_model("flip-test", device=device, allow_random=True)
    predictor.implementation = "fast"
    predictor.precision = precision
    if no_native:
        previous = native_attention.ENABLED
        native_attention.ENABLED = False
        click.get_current_context().call_on_close(lambda: setattr(native_attention, "ENABLED", previous))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n_threads = torch.get_num_threads()
    rates = [matmul_rate(n_threads, dtype=dtype, device=device)]
    if no_random and (no_dataset or dataset is None):
        raise click.UsageError("--no-random needs a dataset (--dataset, or the COCO mini fixture)")
    workloads = list(_flip_workloads(() if no_random else sizes, None if no_dataset else dataset, objects, seed))
    implementations = ("fast", "reference") if compare_ref else ("fast",)
    table = Table(title=f"{predictor.name} ({precision}): ms per object (means; median of {repeat} passes)",
                  box=box.SIMPLE_HEAD,
                  caption="sample = patch sampling + packing; CPU = process CPU time; GFLOP = counted matrix "
                          "multiplies (attention counted on its SDPA code); x bound = wall / (GFLOP / matmul "
                          "rate)")
    table.add_column("workload", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    columns = ["n", "sample", "encode", "decode", "wall", "CPU", "GFLOP", "GFLOP/s", "x bound"]
    if compare_ref:
        columns += ["ref wall", "ref CPU", "speed-up (wall)", "speed-up (CPU)"]
    for col in columns:
        table.add_column(col, justify="right")
    rows = []
    for label, items in workloads:
        for mode in mode_list:
            predictor.mode = mode
            gflop = _count_flip_flops(predictor, items)
            times = _time_flip(predictor, items, implementations, repeat)
            rows.append((label, mode, gflop, times))
    rates.append(matmul_rate(n_threads, dtype=dtype, device=device))
    rate = max(rates)
    for label, mode, gflop, times in rows:
        fast = times["fast"]
        stages = fast["stages"]
        bound_ms = gflop / rate * 1e3
        row = [label, mode, str(fast["objects"]), *(f"{stages.get(k, 0.0):.1f}" for k in
                                                    ("preprocess", "encoder", "decoder")),
               f"{fast['wall']:.1f}", f"{fast['cpu']:.1f}", f"{gflop:.2f}", f"{gflop / fast['wall'] * 1e3:.0f}",
               f"{fast['wall'] / bound_ms:.2f}"]
        if compare_ref:
            ref = times["reference"]
            row += [f"{ref['wall']:.1f}", f"{ref['cpu']:.1f}", f"{ref['wall'] / fast['wall']:.2f}x",
                    f"{ref['cpu'] / fast['cpu']:.2f}x"]
        table.add_row(*row)
    console.print(table)
    single = matmul_rate(1, dtype=dtype, device=device) if device == "cpu" else None
    console.print(
        f"matmul ({precision}, 1024^3, best): {rate:.0f} GFLOP/s with {n_threads} threads"
        + (f", {single:.0f} GFLOP/s with 1 thread" if single else "")
        + f" (measured before and after: {', '.join(f'{r:.0f}' for r in rates)})"
    )
    if not native_attention.ENABLED:
        attention = "PyTorch SDPA (native kernel switched off)"
    elif not native_attention.available():
        attention = "PyTorch SDPA (native kernel not built or this CPU lacks AVX2/FMA)"
    else:
        attention = ("native kernel (benchmark.flip._attention_native, AVX2 + FMA) in the encoder and the fast "
                     "pixel predictor, fp32 CPU")
    console.print(f"attention: {attention}; GFLOP counted on the SDPA code of the same products")
    if imports is not None:
        console.print(f"start-up in a fresh process: import torch {imports[0]:.2f} s, flipbench's FLIP evaluation "
                      f"modules {imports[1]:.2f} s; interpreter + imports {imports[2]:.2f} s wall")
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    console.print(
        f"weights: {predictor.weights.kind} ({predictor.weights.source}); device {predictor.device}; "
        f"{n_threads} torch threads; load average {load}; torch {torch.__version__}; python "
        f"{platform.python_version()}, {platform.machine()}; seed {seed}"
    )


def _register_cluster() -> None:
    from benchmark.commands.bench_cluster import cluster_cmd  # Ray is imported only when the command runs

    bench_cmd.add_command(cluster_cmd)


_register_cluster()


def _register_view() -> None:
    from benchmark.commands.bench_view import view_bench_cmd  # FastAPI is imported only when the command runs

    bench_cmd.add_command(view_bench_cmd)


_register_view()
