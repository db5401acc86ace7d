"""``flipbench convert {coco,lvis,openimages,kitti360,hypersim} SRC --out DIR``: native datasets -> FLIP HDF5.

Every sub-command streams one image at a time into ``DIR/{dataset_name}-{type}-v{N}.hdf5`` (official naming),
shows progress, accepts ``--limit N --seed S`` (a random subset of N source images), prints a summary of what was
written and skipped (and why) with the conversion rate in instances per second, and stores that summary plus the
protocol in the file's provenance. The protocol of each source is documented in ``objascale/converters/<name>.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from benchmark.commands.errors import user_errors

_COMMON_OPTIONS = [
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                 help="Output directory (created if needed)."),
    click.option("--limit", type=click.IntRange(min=1), default=None,
                 help="Convert a random subset of this many source images."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit subset."),
    click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Processes that load and encode images (output identical; try the number of cores)."),
    click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."),
]


def _common(fn: Callable) -> Callable:
    for option in reversed(_COMMON_OPTIONS):
        fn = option(fn)
    return fn


def _run(source_factory: Callable[[], object], out_dir: Path, limit: int | None, seed: int, workers: int,
         progress: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from objascale.converters.common import convert

    console = Console(stderr=False)
    with user_errors(FileNotFoundError, PermissionError, ValueError):
        source = source_factory()
        report = convert(source, out_dir, limit=limit, seed=seed, workers=workers, progress=progress)
    table = Table(title=f"converted {source.dataset_name}", show_header=False)
    table.add_row("images selected", str(report.images_selected))
    table.add_row("images written", str(report.images_written))
    table.add_row("instances written", str(report.instances_written))
    for kind, counter in (("images", report.skipped_images), ("instances", report.skipped_instances)):
        table.add_row(f"{kind} skipped", str(sum(counter.values())))
    table.add_row("warnings (kept)", str(sum(report.warnings.values())))
    console.print(table)
    for what, counter in (("skipped {n} image(s)", report.skipped_images),
                          ("skipped {n} instance(s)", report.skipped_instances), ("warning, {n}x", report.warnings)):
        for reason, n in sorted(counter.items()):
            examples = "; ".join(report.examples[reason][:2])
            console.print(f"{what.format(n=n)}: {reason} (e.g. {examples})", soft_wrap=True, highlight=False,
                          markup=False)
    console.print(f"wrote {report.output}", soft_wrap=True, highlight=False)
    console.print(f"{report.instances_written} instances in {report.seconds:.1f} s = "
                  f"{report.instances_per_second:.1f} instances/s", highlight=False)


@click.group("convert")
def convert_cmd() -> None:
    """Convert a native dataset to the FLIP HDF5 format (see objascale/converters/ for each protocol)."""


@convert_cmd.command("coco")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO instances JSON, e.g. annotations/instances_val2017.json.")
@click.option("--split", default="val2017", show_default=True, help="Split name: output coco-{split}-{split}-vN.hdf5.")
@click.option("--min-area", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop masks with fewer pixels (0 = keep all, as the official converter).")
@_common
def coco(src: Path, annotations: Path, split: str, min_area: int, out_dir: Path, limit: int | None, seed: int,
         workers: int, progress: bool) -> None:
    """COCO instances: SRC is the image folder (e.g. val2017/).

    Same output as the official convert_coco_to_hdf5.py: iscrowd=1 skipped, polygons with < 3 points dropped,
    empty masks and images without instances skipped, native resolution. Protocol: objascale/converters/coco.py.
    """
    from objascale.converters.coco import CocoSource

    _run(lambda: CocoSource(src, annotations, split=split, min_area=min_area), out_dir, limit, seed, workers,
         progress)


@convert_cmd.command("lvis")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LVIS v1 JSON, e.g. lvis_v1_val.json.")
@click.option("--split", default="val", show_default=True, help="Split name: output lvis-v1-{split}-{split}-vN.hdf5.")
@click.option("--min-area", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop masks with fewer pixels (0 = keep all).")
@_common
def lvis(src: Path, annotations: Path, split: str, min_area: int, out_dir: Path, limit: int | None, seed: int,
         workers: int, progress: bool) -> None:
    """LVIS v1: SRC is the COCO root holding train2017/ and val2017/ (images found via coco_url).

    Protocol as COCO (LVIS has no crowd annotations): objascale/converters/lvis.py.
    """
    from objascale.converters.lvis import LvisSource

    _run(lambda: LvisSource(src, annotations, split=split, min_area=min_area), out_dir, limit, seed, workers,
         progress)


@convert_cmd.command("openimages")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="validation", show_default=True, help="Open Images split name.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Segmentation CSV (default SRC/{split}-annotations-object-segmentation.csv).")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Image folder (default SRC/{split}).")
@_common
def openimages(src: Path, split: str, annotations: Path | None, images_dir: Path | None, out_dir: Path,
               limit: int | None, seed: int, workers: int, progress: bool) -> None:
    """Open Images V7 segmentation: SRC holds the CSV, mask zips/PNGs and {split}/ JPEGs.

    Each full-image mask PNG is resized (nearest, pixel centres aligned) to its JPEG.
    Protocol: objascale/converters/openimages.py.
    """
    from objascale.converters.openimages import OpenImagesSource

    _run(lambda: OpenImagesSource(src, split=split, annotations=annotations, images_dir=images_dir), out_dir,
         limit, seed, workers, progress)


@convert_cmd.command("kitti360")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--frames", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Frame list (default SRC/data_2d_semantics/train/2013_05_28_drive_val_frames.txt).")
@click.option("--classes", type=click.Choice(["all", "eval"]), default="all", show_default=True,
              help="all hasInstances classes, or only the 9 of the 2D instance benchmark.")
@_common
def kitti360(src: Path, frames: Path | None, classes: str, out_dir: Path, limit: int | None, seed: int, workers: int,
             progress: bool) -> None:
    """KITTI-360: SRC is the KITTI-360 root (data_2d_raw/, data_2d_semantics/).

    Instance PNG values >= 1000 are semanticId*1000+instanceId; classes with hasInstances are kept.
    Protocol: objascale/converters/kitti360.py.
    """
    from objascale.converters.kitti360 import Kitti360Source

    _run(lambda: Kitti360Source(src, frames=frames, classes=classes), out_dir, limit, seed, workers, progress)


@convert_cmd.command("hypersim")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="val", show_default=True, help="Partition of the split file.")
@click.option("--split-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="metadata_images_split_scene_v1.csv (ml-hypersim); without it every frame under SRC.")
@_common
def hypersim(src: Path, split: str, split_csv: Path | None, out_dir: Path, limit: int | None, seed: int, workers: int,
             progress: bool) -> None:
    """Hypersim: SRC holds the extracted scenes ai_VVV_NNN/.

    Colour: the official Hypersim tone mapping of the HDR image; objects: semantic_instance ids (-1 is
    background). Protocol: objascale/converters/hypersim.py.
    """
    from objascale.converters.hypersim import HypersimSource

    _run(lambda: HypersimSource(src, split=split, split_csv=split_csv), out_dir, limit, seed, workers, progress)
