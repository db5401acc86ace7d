"""``flipbench report RUN... --out DIR``: tables, heat maps, timing report and one HTML page from eval runs."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.commands.errors import user_errors
from benchmark.report.timing import DEFAULT_REFERENCE


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (created). Default: <first run>/report.")
@click.option("--allow-mixed-protocols", is_flag=True,
              help="Show runs evaluated with different protocols side by side, flagged, instead of refusing.")
@click.option("--reference", default=DEFAULT_REFERENCE, show_default=True,
              help="Model name or row label (e.g. 'flip-tiny (window)') the speed-ups are relative to; when it is "
                   "not in the runs, the largest model present.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Replicates of the image-clustered bootstrap behind every 95 % interval (0: no intervals).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--gallery-pairs", default=None, metavar="A:B[,C:D]",
              help="Row pairs whose largest disagreements the gallery shows, by row label (e.g. "
                   "'flip-tiny (window):sam-b'). Default: pairs of learned rows (FLIP modes included).")
def report_cmd(runs: tuple[Path, ...], out_dir: Path | None, allow_mixed_protocols: bool, reference: str,
               n_boot: int, seed: int, gallery_pairs: str | None) -> None:
    """Turn evaluation runs (directories written by `flipbench eval`, or folders of them) into a report.

    Writes Table 1 style IoU per dataset, Table 3 style small-object IoU, both next to the paper's Tables 1
    and 3 per dataset and FLIP mode, parameters, times and speed-ups next to the paper's, a per-stage timing
    table, IoU per category and paired comparisons of rows with image-clustered bootstrap intervals
    (Markdown, CSV, LaTeX), IoU heat maps and IoU-versus-size curves (PNG, SVG), a gallery of the stored
    masks (PNG) and one self-contained report.html. Runs that differ only in the FLIP mode report together.
    """
    from benchmark.report.build import build_report
    from benchmark.report.runs import ReportInputError

    out_dir = out_dir or runs[0] / "report"
    _check_out_dir(out_dir)
    with user_errors(ReportInputError):
        result = build_report(list(runs), out_dir, allow_mixed=allow_mixed_protocols, reference=reference,
                              n_boot=n_boot, seed=seed, gallery_pairs=gallery_pairs)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"wrote {len(result.files)} files to {result.out_dir}")
    click.echo(f"open {result.out_dir / 'report.html'}")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a non-empty ``--out`` that is not an earlier report (its ``summary.json`` lists the files it wrote):
    a report overwrites only its own files."""
    import json

    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    if not (isinstance(summary, dict) and "flipbench" in summary and isinstance(summary.get("files"), list)):
        raise click.ClickException(f"{out_dir} is not empty and holds no earlier report (summary.json); flipbench "
                                   "never overwrites files it did not create: choose another (new or empty) --out")
