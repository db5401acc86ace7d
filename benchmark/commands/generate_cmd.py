"""``flipbench generate objascale``: render ObjaScale images with Blender (bpy, Cycles) into FLIP HDF5 shards."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from benchmark.commands.errors import user_errors


@click.group("generate")
def generate_cmd() -> None:
    """Render synthetic datasets."""


@generate_cmd.command("objascale")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (HDF5 shards + manifest + dataset card). Re-running with the same options "
                   "resumes it.")
@click.option("--preset", "preset_name", type=click.Choice(["mini", "full", "paper"]), default="mini",
              show_default=True,
              help="mini: 24 small images (320-1024 px, 16 spp + fast denoising), minutes on 2 cores; "
                   "full: 1000 images at 640-4096 px, 32 spp + high-quality denoising (about 12 h on 2 idle cores); "
                   "paper: ObjaScale as published: Objaverse objects of 68 categories x 150 images = 10,200 at "
                   "640-4096 px over Poly Haven HDRIs sized to the frame, balanced, areas log-uniform in "
                   "[1e-6, 0.25], objects on a shadow-catching ground (needs the network; about 5 days on 2 idle "
                   "cores: try it with --per-category / --max-resolution; offline stand-in: --objects procedural "
                   "--hdris bundled).")
@click.option("--count", type=click.IntRange(min=1),
              help="Number of images [default: 24 for mini, 1000 for full, 68 x 150 for paper].")
@click.option("--per-category", "per_category", type=click.IntRange(min=1),
              help="Images per category instead of --count (count = N x categories; with the paper preset each "
                   "category gets exactly N) [paper default: 150].")
@click.option("--max-resolution", type=click.IntRange(min=16),
              help="Cap the long image side of the preset at this many pixels (smoke runs; recorded in the config "
                   "and the card).")
@click.option("--seed", type=int, default=0, show_default=True, help="Global seed; image k depends only on (seed, k).")
@click.option("--workers", type=click.IntRange(min=1), help="bpy worker processes [default: one per two cores]; with "
                                                            "--ray: images rendered at a time [default: all slots].")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Cycles threads per worker (0: cores/workers).")
@click.option("--device", type=click.Choice(["CPU", "CUDA", "OPTIX"]), help="Cycles device [default: CPU].")
@click.option("--objects", help="Object source: 'procedural' (embedded; mini/full default), 'objaverse' (LVIS "
                                "categories, needs internet: Hugging Face; paper default) or 'folder:<path>' "
                                "(GLB/glTF/OBJ files).")
@click.option("--categories", "categories_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON list of LVIS categories ({\"categories\": [...]}) for --objects objaverse and for the "
                   "balanced design [default: the shipped 68, not the official list].")
@click.option("--categories-from", "categories_from", type=click.Path(exists=True),
              help="Take the category list from a dataset (FLIP HDF5 file or shard folder with per-instance "
                   "categories, e.g. the official ObjaScale files), a JSON file or a text file (one name per "
                   "line); recorded in the run's categories.json and the card.")
@click.option("--objects-per-category", type=click.IntRange(min=1),
              help="Objaverse objects per category in the catalogue [default: 50].")
@click.option("--download-retries", type=click.IntRange(min=1), help="Tries per Objaverse object [default: 3].")
@click.option("--hdris", help="'bundled' (the 8 CC0 1K HDRIs shipped with bpy; mini/full default), "
                              "'polyhaven[:RES[:N]]' (N CC0 HDRIs at RES, e.g. polyhaven:8k:16, chosen by --seed and "
                              "downloaded from Poly Haven; RES 'auto' = as sharp as the largest frame, the paper "
                              "default polyhaven:auto:16) or a folder of .hdr/.exr files.")
@click.option("--ground-plane/--no-ground-plane", default=None,
              help="Shadow-catcher ground plane under the object [default: on for paper, off otherwise].")
@click.option("--max-object-px", type=click.IntRange(min=0),
              help="Largest object width and height in pixels (the paper's constraint; its value is not "
                   "published) [paper: 2048; 0: no limit].")
@click.option("--min-side", type=click.IntRange(min=16), help="Smallest long image side in pixels.")
@click.option("--max-side", type=click.IntRange(min=16), help="Largest long image side in pixels.")
@click.option("--min-pixels", type=click.FloatRange(min=1),
              help="Smallest object area in pixels: every image gets a resolution that gives its drawn area at least "
                   "this many [default: 16].")
@click.option("--samples", type=click.IntRange(min=1), help="Cycles samples per pixel of the final render.")
@click.option("--denoise", type=click.Choice(["none", "fast", "high"]), help="OpenImageDenoise mode.")
@click.option("--shard-size", type=click.IntRange(min=1), help="Images per HDF5 shard.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run in --out and start again.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--benchmark", is_flag=True, help="Measure images/minute at 512x384 and 1024x768 and the area error "
                                                "distribution instead of generating a dataset.")
@click.option("--benchmark-images", type=click.IntRange(min=1), default=6, show_default=True,
              help="Images per resolution for --benchmark.")
@click.option("--benchmark-sizes", default="512x384,1024x768", show_default=True,
              help="Comma-separated WxH resolutions timed by --benchmark (e.g. add 2048x1536 for paper sizes).")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Render on the Ray cluster at HOST:PORT ('auto': the cluster this machine belongs to), one task per "
                   "image; --out (and --hdris/--objects folders) must be at the same path on every node. Needs "
                   "pip install -e \".[cluster]\".")
@click.option("--cpus-per-render", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: CPUs each image task reserves (its Cycles threads).")
@click.option("--gpus-per-render", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --ray: GPUs each image task reserves (use with --device CUDA or OPTIX).")
def objascale_cmd(out, preset_name, count, per_category, max_resolution, seed, workers, threads, device, objects,
                  categories_file, categories_from, objects_per_category, download_retries, hdris, ground_plane,
                  max_object_px, min_side, max_side,
                  min_pixels, samples, denoise, shard_size, overwrite, quiet, benchmark, benchmark_images,
                  benchmark_sizes, ray_address, cpus_per_render, gpus_per_render) -> None:
    """Render ObjaScale: one object per image at a log-uniform relative size in [1e-6, 0.25] of the image,
    exact Cryptomatte masks, written as FLIP HDF5 shards with a manifest of every image's parameters and a
    dataset card (DATASET_CARD.md, card.json). Prints a time estimate before rendering."""
    from objascale.generator.config import PAPER_PER_CATEGORY, PRESET_COUNTS, preset  # noqa: PLC0415
    from objascale.generator.download import DownloadError  # noqa: PLC0415
    from objascale.generator.estimate import estimate  # noqa: PLC0415
    from objascale.generator.generate import GenerationError, default_workers, generate  # noqa: PLC0415

    if count is not None and per_category is not None:
        raise click.UsageError("give --count or --per-category, not both")
    try:
        cfg = preset(preset_name).with_overrides(
            seed=seed, device=device, objects=objects, categories_file=categories_file,
            categories_from=str(categories_from) if categories_from else None, max_object_px=max_object_px,
            objects_per_category=objects_per_category, download_retries=download_retries, hdris=hdris,
            ground_plane=ground_plane, long_side_min=min_side, long_side_max=max_side, min_pixels=min_pixels,
            samples=samples, denoise=denoise, shard_size=shard_size).capped(max_resolution)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if benchmark:
        from objascale.generator.benchmark import run_benchmark  # noqa: PLC0415

        try:
            sizes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in benchmark_sizes.split(",") if s)
            if not sizes or any(len(wh) != 2 or min(wh) < 16 for wh in sizes):
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{benchmark_sizes!r}: expected WxH[,WxH...], sides >= 16",
                                     param_hint="--benchmark-sizes") from None
        run_benchmark(cfg, images=benchmark_images, workers=workers, threads=threads, out=out, resolutions=sizes)
        return
    if out is None:
        raise click.UsageError("--out DIR is required (or use --benchmark)")
    from objascale.cluster import ClusterError  # noqa: PLC0415

    if ray_address is None and (cpus_per_render != 1 or gpus_per_render):
        raise click.UsageError("--cpus-per-render and --gpus-per-render need --ray ADDRESS")
    cluster = None if ray_address is None else {"address": ray_address, "cpus_per_render": cpus_per_render,
                                                "gpus_per_render": gpus_per_render, "workers": workers}
    if count is None and per_category is None:
        if preset_name == "paper":
            per_category = PAPER_PER_CATEGORY
        else:
            count = PRESET_COUNTS[preset_name]

    def on_plan(n: int) -> None:
        w = workers or default_workers()
        design = f" ({per_category} per category)" if per_category is not None else ""
        click.echo(f"{preset_name} preset: {n} images{design}, long side {cfg.long_side_min}-{cfg.long_side_max} px, "
                   f"{cfg.samples} spp, {w} worker(s) into {out}")
        click.echo(estimate(cfg, n, out).text() + "; interrupt and rerun the same command to resume")

    with user_errors(GenerationError, ClusterError, FileNotFoundError, ImportError, ValueError, DownloadError):
        try:
            summary = generate(out, count, cfg, workers=workers, threads=threads, overwrite=overwrite,
                               progress=not quiet, per_category=per_category, on_plan=on_plan,
                               cluster=cluster)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted; run the same command again to resume {out}", err=True)
            sys.exit(130)
    click.echo(f"{summary.count} images in {summary.out} ({summary.rendered} rendered, {summary.reused} reused, "
               f"{summary.shards_written} shards written, {summary.shards_skipped} already complete) "
               f"in {summary.seconds:.1f} s; dataset card: {summary.out / 'DATASET_CARD.md'}")
    if summary.cluster:
        c = summary.cluster["cluster"]
        click.echo(f"rendered on the Ray cluster at {summary.cluster['address']}: {c['num_nodes']} nodes, "
                   f"{c['cpus']:g} CPUs, {c['gpus']:g} GPUs, Ray {c['ray_version']}; "
                   f"{summary.cluster['crashed_tasks']} images re-drawn after losing their worker")
    if summary.failed_uids:
        click.echo(f"{len(summary.failed_uids)} objects failed to download (skipped): see {out}/failed_uids.json")
