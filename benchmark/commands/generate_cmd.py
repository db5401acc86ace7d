"""``flipbench generate objascale``: render ObjaScale images with Blender (bpy, Cycles) into FLIP HDF5 shards."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("generate")
def generate_cmd() -> None:
    """Render synthetic datasets."""


@generate_cmd.command("objascale")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (HDF5 shards + manifest). Re-running with the same options resumes it.")
@click.option("--preset", "preset_name", type=click.Choice(["mini", "full"]), default="full", show_default=True,
              help="mini: 24 small images (320-1024 px, 16 spp + fast denoising), minutes on 2 cores; "
                   "full: 640-4096 px, 32 spp + high-quality denoising.")
@click.option("--count", type=click.IntRange(min=1), help="Number of images [default: 24 for mini, 1000 for full].")
@click.option("--seed", type=int, default=0, show_default=True, help="Global seed; image k depends only on (seed, k).")
@click.option("--workers", type=click.IntRange(min=1), help="bpy worker processes [default: one per two cores]; with "
                                                            "--ray: images rendered at a time [default: all slots].")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Cycles threads per worker (0: cores/workers).")
@click.option("--device", type=click.Choice(["CPU", "CUDA", "OPTIX"]), help="Cycles device [default: CPU].")
@click.option("--objects", help="Object source: 'procedural' (embedded, default), 'objaverse' (LVIS categories, "
                                "needs the objaverse package and internet) or 'folder:<path>' (GLB/glTF/OBJ files).")
@click.option("--categories", "categories_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON list of LVIS categories for --objects objaverse [default: the shipped 68].")
@click.option("--per-category", type=click.IntRange(min=1), help="Objaverse objects per category [default: 50].")
@click.option("--download-retries", type=click.IntRange(min=1), help="Tries per Objaverse object [default: 3].")
@click.option("--hdris", help="'bundled' (the 8 CC0 HDRIs shipped with bpy) or a folder of .hdr/.exr files.")
@click.option("--min-side", type=click.IntRange(min=16), help="Smallest long image side in pixels.")
@click.option("--max-side", type=click.IntRange(min=16), help="Largest long image side in pixels.")
@click.option("--min-pixels", type=click.FloatRange(min=1), help="Smallest object area in pixels [default: 16].")
@click.option("--samples", type=click.IntRange(min=1), help="Cycles samples per pixel of the final render.")
@click.option("--denoise", type=click.Choice(["none", "fast", "high"]), help="OpenImageDenoise mode.")
@click.option("--shard-size", type=click.IntRange(min=1), help="Images per HDF5 shard.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run in --out and start again.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--benchmark", is_flag=True, help="Measure images/minute at 512x384 and 1024x768 and the area error "
                                                "distribution instead of generating a dataset.")
@click.option("--benchmark-images", type=click.IntRange(min=1), default=6, show_default=True,
              help="Images per resolution for --benchmark.")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Render on the Ray cluster at HOST:PORT ('auto': the cluster this machine belongs to), one task per "
                   "image; --out (and --hdris/--objects folders) must be at the same path on every node. Needs "
                   "pip install -e \".[cluster]\".")
@click.option("--cpus-per-render", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: CPUs each image task reserves (its Cycles threads).")
@click.option("--gpus-per-render", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --ray: GPUs each image task reserves (use with --device CUDA or OPTIX).")
def objascale_cmd(out, preset_name, count, seed, workers, threads, device, objects, categories_file, per_category,
                  download_retries, hdris, min_side, max_side, min_pixels, samples, denoise, shard_size, overwrite,
                  quiet, benchmark, benchmark_images, ray_address, cpus_per_render, gpus_per_render) -> None:
    """Render ObjaScale: one object per image at a log-uniform relative size in [1e-6, 0.25] of the image,
    exact Cryptomatte masks, written as FLIP HDF5 shards with a manifest of every image's parameters."""
    from objascale.generator.config import PRESET_COUNTS, preset  # noqa: PLC0415
    from objascale.generator.generate import GenerationError, generate  # noqa: PLC0415

    try:
        cfg = preset(preset_name).with_overrides(
            seed=seed, device=device, objects=objects, categories_file=categories_file,
            objects_per_category=per_category, download_retries=download_retries, hdris=hdris,
            long_side_min=min_side, long_side_max=max_side, min_pixels=min_pixels, samples=samples, denoise=denoise,
            shard_size=shard_size)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if benchmark:
        from objascale.generator.benchmark import run_benchmark  # noqa: PLC0415

        run_benchmark(cfg, images=benchmark_images, workers=workers, threads=threads, out=out)
        return
    if out is None:
        raise click.UsageError("--out DIR is required (or use --benchmark)")
    n = count or PRESET_COUNTS[preset_name]
    from objascale.cluster import ClusterError  # noqa: PLC0415

    if ray_address is None and (cpus_per_render != 1 or gpus_per_render):
        raise click.UsageError("--cpus-per-render and --gpus-per-render need --ray ADDRESS")
    cluster = None if ray_address is None else {"address": ray_address, "cpus_per_render": cpus_per_render,
                                                "gpus_per_render": gpus_per_render, "workers": workers}
    try:
        summary = generate(out, n, cfg, workers=workers, threads=threads, overwrite=overwrite, progress=not quiet,
                           cluster=cluster)
    except (GenerationError, ClusterError, FileNotFoundError, ImportError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; run the same command again to resume {out}", err=True)
        sys.exit(130)
    click.echo(f"{summary.count} images in {summary.out} ({summary.rendered} rendered, {summary.reused} reused, "
               f"{summary.shards_written} shards written, {summary.shards_skipped} already complete) "
               f"in {summary.seconds:.1f} s")
    if summary.cluster:
        c = summary.cluster["cluster"]
        click.echo(f"rendered on the Ray cluster at {summary.cluster['address']}: {c['num_nodes']} nodes, "
                   f"{c['cpus']:g} CPUs, {c['gpus']:g} GPUs, Ray {c['ray_version']}; "
                   f"{summary.cluster['crashed_tasks']} images re-drawn after losing their worker")
    if summary.failed_uids:
        click.echo(f"{len(summary.failed_uids)} objects failed to download (skipped): see {out}/failed_uids.json")
