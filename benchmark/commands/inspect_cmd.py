"""``flipbench inspect PATH``: counts, size distributions, checks and provenance of a FLIP HDF5 dataset.

Exits with status 1 when a check fails (or the file cannot be read), 0 otherwise (warnings included).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmark.commands.errors import user_errors

_STATUS_STYLE = {"pass": "[green]PASS[/]", "warn": "[yellow]WARN[/]", "fail": "[bold red]FAIL[/]"}


def _bar(count: int, total: int, width: int = 30) -> str:
    return "█" * (round(width * count / total) if total else 0)


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--rho-sample", type=click.IntRange(min=1), default=200, show_default=True,
              help="Instances whose positions/boxes are recomputed from the mask and whose images are decoded.")
@click.option("--mask-sample", type=click.IntRange(min=1), default=None,
              help="Decode only this many random masks for the size statistics (default: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full result as JSON to this file.")
@click.option("--progress/--no-progress", default=False, show_default=True, help="Progress bar while decoding.")
def inspect_cmd(path: Path, rho_sample: int, mask_sample: int | None, seed: int, json_out: Path | None,
                progress: bool) -> None:
    """Print counts, image-size and relative-mask-size distributions, checks and provenance of PATH
    (a .hdf5 file or a directory of shards), and the dataset card of an ObjaScale run."""
    from rich.console import Console
    from rich.table import Table

    from objascale.codecs import CodecError
    from objascale.hdf5_reader import FlipDataset, FlipFormatError
    from objascale.inspection import inspect_dataset

    console = Console()
    # an unreadable image/mask header or HDF5 chunk: the file is not usable as is (exit status 1)
    with user_errors(FileNotFoundError, FlipFormatError, CodecError), FlipDataset(path) as ds:
        res = inspect_dataset(ds, rho_sample=rho_sample, mask_sample=mask_sample, seed=seed, progress=progress)

    head = Table(title=f"{path}", show_header=False)
    head.add_row("shards", str(len(res.shards)))
    head.add_row("images", str(res.num_images))
    head.add_row("instances", str(res.num_instances))
    ipi = res.instances_per_image
    if ipi:
        head.add_row("instances / image", f"min {ipi['min']:g}  median {ipi['median']:g}  mean {ipi['mean']:.2f}  "
                                          f"max {ipi['max']:g}")
    w, h = res.image_sizes["width"], res.image_sizes["height"]
    if w:
        head.add_row("image width", f"min {w['min']:g}  median {w['median']:g}  max {w['max']:g}")
        head.add_row("image height", f"min {h['min']:g}  median {h['median']:g}  max {h['max']:g}")
        head.add_row("most common sizes (WxH)", ", ".join(f"{s} ({n})" for s, n in res.image_sizes["most_common"]))
    head.add_row("empty masks", f"{res.empty_masks} of {res.masks_analysed} analysed")
    head.add_row("fingerprint", res.fingerprint)
    console.print(head)

    for title, hist, total in (("image size (pixels)", res.image_pixel_hist, res.num_images),
                               ("relative mask size (mask / image area)", res.relative_size_hist,
                                res.masks_analysed)):
        t = Table(title=title)
        t.add_column("bin")
        t.add_column("count", justify="right")
        t.add_column("%", justify="right")
        t.add_column("")
        for label, n in hist:
            t.add_row(label, str(n), f"{100 * n / total:.1f}" if total else "-", _bar(n, total))
        console.print(t)

    checks = Table(title="checks")
    checks.add_column("check")
    checks.add_column("status")
    checks.add_column("detail")
    for c in res.checks:
        checks.add_row(c.name, _STATUS_STYLE[c.status], c.detail)
    console.print(checks)

    meta = Table(title="metadata / provenance", show_header=False)
    for key, value in res.metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        meta.add_row(key, text if len(text) <= 2000 else text[:2000] + " ...")
    console.print(meta)

    if res.card is not None:
        from rich.markdown import Markdown

        from objascale.generator.card import card_markdown

        console.rule("dataset card (card.json / DATASET_CARD.md beside the shards)")
        console.print(Markdown(card_markdown(res.card, max_rows=20)))

    if json_out is not None:
        json_out.write_text(json.dumps(res.as_dict(), indent=1, default=str))
        console.print(f"wrote {json_out}")
    if res.failed:
        raise click.exceptions.Exit(1)
