"""``flipbench quickstart``: the README's main job, offline.

1. render the embedded ObjaScale mini set (procedural objects over the CC0 HDRIs bundled with ``bpy``);
2. evaluate FLIP-Tiny and the weight-free references on it;
3. write the report (tables, heat maps, HTML page).

Every step resumes: running the command again after an interruption continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.commands.eval_cmd import eval_cmd
from benchmark.commands.generate_cmd import objascale_cmd
from benchmark.commands.report_cmd import report_cmd

REFERENCE_MODELS = ("grabcut", "ellipse", "box")


def _flip_tiny_available() -> bool:
    """Whether real FLIP-Tiny weights can be found without downloading anything."""
    from benchmark.flip.predictor import find_flip_weights

    return find_flip_weights("flip-tiny") is not None


@click.command("quickstart")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/quickstart"),
              show_default=True, help="Where the dataset, the evaluation run and the report go.")
@click.option("--count", type=click.IntRange(min=1), default=24, show_default=True, help="Images to render.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator and the evaluation.")
@click.pass_context
def quickstart(ctx: click.Context, out: Path, count: int, seed: int) -> None:
    """Render ObjaScale mini, evaluate FLIP-Tiny and the references on it, and write the report."""
    dataset_dir = out / "objascale-mini"
    run_dir = out / "run"
    report_dir = out / "report"

    click.secho(f"[1/3] rendering {count} ObjaScale mini images into {dataset_dir}", bold=True)
    ctx.invoke(objascale_cmd, out=dataset_dir, preset_name="mini", count=count, seed=seed)

    models = list(REFERENCE_MODELS)
    if _flip_tiny_available():
        models.insert(0, "flip-tiny")
    else:
        click.secho("FLIP-Tiny weights not found: evaluating the weight-free references only. Put flip-tiny.ckpt "
                    "(`flipbench weights list`) or flip-tiny-demo.onnx into $FLIPBENCH_HOME to include FLIP.",
                    fg="yellow")
    click.secho(f"[2/3] evaluating {', '.join(models)} into {run_dir}", bold=True)
    ctx.invoke(eval_cmd, dataset_path=dataset_dir, models=(",".join(models),), out_dir=run_dir, seed=seed)

    click.secho(f"[3/3] writing the report into {report_dir}", bold=True)
    ctx.invoke(report_cmd, runs=(run_dir,), out_dir=report_dir)
    click.secho(f"done: open {report_dir / 'report.html'}", fg="green", bold=True)
