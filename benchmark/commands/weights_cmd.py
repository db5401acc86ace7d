"""``flipbench weights list|download NAME...|verify [NAME...]``: manage checkpoints in ``$FLIPBENCH_HOME``."""

from __future__ import annotations

import click


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


@weights_cmd.command("list")
def list_cmd() -> None:
    """Show every catalogued checkpoint, its size, and whether it is present."""
    from rich.console import Console
    from rich.table import Table

    from baselines.weights import full_catalog, weights_home

    catalog = full_catalog()
    home = weights_home()
    table = Table(title=f"checkpoints in {home}")
    for column in ("model", "file", "size", "sha256", "present", "url"):
        table.add_column(column, overflow="fold")
    for name in sorted(catalog):
        entry = catalog[name]
        present = (home / entry.filename).is_file()
        table.add_row(
            name,
            entry.filename,
            _human(entry.num_bytes),
            (entry.sha256[:12] + "...") if entry.sha256 else "unknown",
            "yes" if present else "no",
            entry.url,
        )
    Console().print(table)


@weights_cmd.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even if the file is present.")
def download_cmd(names: tuple[str, ...], force: bool) -> None:
    """Download the checkpoints of the given models (``all`` for every catalogued one)."""
    from tqdm import tqdm

    from baselines.weights import ChecksumMismatchError, catalog_entry, download, full_catalog

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
                path = download(name, force=force, progress=progress)
            except (ChecksumMismatchError, OSError) as err:
                raise click.ClickException(f"{name}: download from {entry.url} failed: {err}") from err
        click.echo(f"{name}: {path}")


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
