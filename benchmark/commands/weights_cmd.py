"""``flipbench weights list|download NAME...|verify [NAME...]``: manage checkpoints in ``$FLIPBENCH_HOME``."""

from __future__ import annotations

import json
import sys

import click

FORMATS = ("table", "tsv", "json")


def _human(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "?"
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@click.group("weights")
def weights_cmd() -> None:
    """List, download and verify model checkpoints (stored in $FLIPBENCH_HOME, default ~/.cache/flipbench)."""


def catalogue_rows() -> list[dict]:
    """One dict per catalogued file: name, file, bytes, sha256 (or None), present, path, url, note, licence."""
    from baselines.weights import full_catalog, weights_home
    from benchmark.flip.weights_catalog import present_path

    catalog = full_catalog()
    home = weights_home()
    rows = []
    for name in sorted(catalog):
        entry = catalog[name]
        found = present_path(entry, home)
        rows.append({
            "name": name, "file": entry.filename, "bytes": entry.num_bytes, "sha256": entry.sha256,
            "present": found is not None, "path": str(found or home / entry.filename),
            "url": entry.url, "note": entry.note, "licence": entry.licence,
        })
    return rows


@weights_cmd.command("list")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="table (default on a terminal), tsv (default otherwise: one whole row per line, for grep/cut) "
                   "or json.")
def list_cmd(fmt: str | None) -> None:
    """Show every catalogued file: size, sha256, whether it is present (and where), URL, licence; then the licences
    of the re-implemented methods that have no checkpoint of their own (on stderr off the table format)."""
    from baselines.weights import METHOD_LICENCES, weights_home

    rows = catalogue_rows()
    fmt = fmt or ("table" if sys.stdout.isatty() else "tsv")
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "tsv":
        columns = ("name", "file", "bytes", "sha256", "present", "path", "url", "licence")
        click.echo("\t".join(columns))
        for row in rows:
            values = {**row, "bytes": row["bytes"] or "", "sha256": row["sha256"] or "",
                      "present": "yes" if row["present"] else "no"}
            click.echo("\t".join(str(values[c]).replace("\t", " ") for c in columns))
        for model, text in METHOD_LICENCES:
            click.echo(f"method licence: {model}: {text}", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    terminal = sys.stdout.isatty()
    table = Table(title=f"checkpoints in {weights_home()}")
    for column in ("model", "file", "size", "sha256", "present", "url", "licence"):
        # on a terminal long URLs fold (names never split); elsewhere rows stay whole (one line each)
        table.add_column(column, overflow="fold" if terminal and column == "url" else "ignore",
                         no_wrap=not terminal or column != "url")
    for row in rows:
        table.add_row(
            row["name"], row["file"], _human(row["bytes"]),
            (row["sha256"][:12] + "...") if row["sha256"] else "unknown",
            ("yes" if row["path"].startswith(str(weights_home())) else f"yes ({row['path']})")
            if row["present"] else "no",
            row["url"], row["licence"] or "?",
        )
    Console(width=None if terminal else 100_000).print(table)
    for model, text in METHOD_LICENCES:
        click.echo(f"method licence: {model}: {text}")


@weights_cmd.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even if the file is present.")
@click.option("--deadline", type=click.FloatRange(min=1), default=None,
              help="Seconds allowed for each whole download (default: 5 min + the time at 200 kB/s for its size; "
                   "1 h when the size is unknown).")
def download_cmd(names: tuple[str, ...], force: bool, deadline: float | None) -> None:
    """Download the checkpoints of the given models (``all`` for every catalogued one)."""
    from tqdm import tqdm

    from baselines.weights import ChecksumMismatchError, catalog_entry, download, full_catalog, sha256_of

    catalog = full_catalog()
    selected = sorted(catalog) if names == ("all",) else list(names)
    for name in selected:
        try:
            entry = catalog_entry(name)
        except KeyError as err:
            raise click.BadParameter(str(err.args[0]), param_hint="NAME") from None
        with tqdm(unit="B", unit_scale=True, desc=entry.filename, total=entry.num_bytes) as bar:

            def progress(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                path = download(name, force=force, deadline=deadline, progress=progress)
            except (ChecksumMismatchError, OSError) as err:
                raise click.ClickException(f"{name}: download failed: {' '.join(str(err).split())}") from err
        line = f"{name}: {path}"
        if entry.sha256 is None:
            line += (f" sha256={sha256_of(path)} bytes={path.stat().st_size} (no published digest to compare with; "
                     "its content was checked, record the digest to compare later downloads)")
        click.echo(line)


@weights_cmd.command("verify")
@click.argument("names", nargs=-1)
def verify_cmd(names: tuple[str, ...]) -> None:
    """Hash present checkpoints and compare with the catalogue (all present ones when no NAME is given)."""
    from baselines.weights import full_catalog, verify, weights_home

    catalog = full_catalog()
    selected = list(names) or sorted(catalog)
    failed = False
    shown = 0
    for name in selected:
        if name not in catalog:
            raise click.BadParameter(f"unknown model {name!r}; known: {', '.join(sorted(catalog))}")
        result = verify(name)
        if result.status == "missing" and not names:
            continue
        line = f"{name}: {result.status} {result.path}"
        if result.sha256:
            line += f" sha256={result.sha256} bytes={result.num_bytes}"
        if result.message:
            line += f" ({result.message})"
        click.echo(line)
        shown += 1
        failed |= result.status in ("mismatch", "missing")
    if not shown:
        click.echo(f"no catalogued checkpoint present in {weights_home()} (see `flipbench weights list`)")
    if failed:
        raise click.ClickException("some checkpoints are missing or do not match the catalogue")
