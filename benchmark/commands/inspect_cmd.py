"""``flipbench inspect PATH``: counts, size distributions, checks and provenance of a FLIP HDF5 dataset.

``--compare OTHER`` then prints the category, relative-mask-area and long-side histograms of both datasets side
by side and the two-sample KS statistic of their areas (``objascale.comparison``). Exits with status 1 when a
check fails (or a file cannot be read), 0 otherwise (warnings included).
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
@click.option("--compare", "other", type=click.Path(path_type=Path), default=None,
              help="Another dataset (.hdf5 or shard folder, e.g. the official ObjaScale release): print both "
                   "datasets' category, area and resolution histograms side by side and the KS statistic of the "
                   "areas (same --mask-sample / --seed).")
def inspect_cmd(path: Path, rho_sample: int, mask_sample: int | None, seed: int, json_out: Path | None,
                progress: bool, other: Path | None) -> None:
    """Print counts, image-size and relative-mask-size distributions, checks and provenance of PATH
    (a .hdf5 file or a directory of shards), and the dataset card of an ObjaScale run; with --compare OTHER,
    both datasets' distributions side by side."""
    from rich.console import Console
    from rich.table import Table

    from objascale.codecs import CodecError
    from objascale.hdf5_reader import FlipDataset, FlipFormatError
    from objascale.inspection import inspect_dataset

    console = Console()
    # an unreadable image/mask header or HDF5 chunk: the file is not usable as is (exit status 1)
    with user_errors(FileNotFoundError, FlipFormatError, CodecError), FlipDataset(path) as ds:
        res = inspect_dataset(ds, rho_sample=rho_sample, mask_sample=mask_sample, seed=seed, progress=progress)
    res_b = None
    if other is not None:  # read both before printing: a bad OTHER is one Error line, not half a report
        with user_errors(FileNotFoundError, FlipFormatError, CodecError), FlipDataset(other) as ds:
            res_b = inspect_dataset(ds, rho_sample=rho_sample, mask_sample=mask_sample, seed=seed, progress=progress)

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

    comparison = None
    if res_b is not None:
        comparison = _print_comparison(console, res, res_b)
        for c in res_b.checks:
            if c.status == "fail":
                console.print(f"{other}: check {c.name} {_STATUS_STYLE[c.status]}: {c.detail}")

    if json_out is not None:
        doc = res.as_dict()
        if comparison is not None:
            doc = {**doc, "compare": comparison.as_dict()}
        json_out.write_text(json.dumps(doc, indent=1, default=str))
        console.print(f"wrote {json_out}")
    if res.failed or (comparison is not None and res_b.failed):
        raise click.exceptions.Exit(1)


def _print_comparison(console, a, b):
    """Side-by-side tables of two inspections; returns the :class:`~objascale.comparison.Comparison`."""
    from rich.table import Table

    from objascale.comparison import compare

    cmp = compare(a, b)
    console.rule(f"compare: A = {a.path}   B = {b.path}")
    for key, title, rows in (("categories", "instances per category", cmp.categories),
                             ("relative_size", "relative mask size (mask / image area)", cmp.relative_size),
                             ("long_side", "long image side (pixels)", cmp.long_side)):
        ta, tb = cmp.totals[key]
        t = Table(title=title)
        for col, justify in (("bin" if key != "categories" else "category", "left"), ("A", "right"),
                             ("A %", "right"), ("B", "right"), ("B %", "right")):
            t.add_column(col, justify=justify)
        for label, na, nb in rows:
            t.add_row(label, str(na), f"{100 * na / ta:.1f}" if ta else "-", str(nb),
                      f"{100 * nb / tb:.1f}" if tb else "-")
        console.print(t)
    if cmp.ks_statistic is None:
        console.print("two-sample KS statistic of the relative mask areas: - (a dataset has no analysed mask)")
    else:
        console.print(f"two-sample KS statistic of the relative mask areas: D = {cmp.ks_statistic:.4f} "
                      f"(p = {cmp.ks_pvalue:.3g}; {a.masks_analysed} vs {b.masks_analysed} masks)")
    return cmp
