"""``flipbench export fiftyone RUN ... --name NAME --out DIR``: runs as a FiftyOne dataset (benchmark.export)."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.commands.errors import user_errors


@click.group("export")
def export_cmd() -> None:
    """Export evaluation runs to other tools."""


@export_cmd.command("fiftyone")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the (persistent) FiftyOne dataset to create.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New or empty folder for the images FiftyOne's samples point at.")
@click.option("--overwrite", is_flag=True, help="Replace an existing FiftyOne dataset of that name.")
@click.option("--allow-mixed-protocols", is_flag=True, help="Export runs of different protocols together.")
def fiftyone_cmd(runs, name, out_dir, overwrite, allow_mixed_protocols) -> None:
    """One sample per image: the ground truth and one Detections field per row (instance masks, IoU, areas,
    category, prompt, times), for FiftyOne's App and evaluation panel."""
    try:
        import fiftyone  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"export fiftyone needs the optional fiftyone extra ({exc}): "
                                   'pip install -e ".[fiftyone]"') from exc
    from benchmark.export.fiftyone_export import export_fiftyone
    from benchmark.report.runs import ReportInputError

    with user_errors(ReportInputError):
        dataset = export_fiftyone(list(runs), out_dir, name, overwrite, allow_mixed_protocols)
    for warning in dataset.info.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"FiftyOne dataset {name!r}: {len(dataset)} samples, fields "
               + ", ".join(f for f in dataset.get_field_schema() if f not in ("id", "filepath", "tags", "metadata")))
