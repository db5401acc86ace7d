"""``flipbench quickstart``: the README's main job (offline, except one 2.2 MB download of FLIP-Tiny's weights).

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


#: seconds the quick start waits for the 2.2 MB FLIP-Tiny demo weights before going on without them
DEMO_DOWNLOAD_DEADLINE_S = 90.0


def _flip_tiny_available() -> bool:
    """Whether real FLIP-Tiny weights are at hand: found locally (``flip-tiny.ckpt`` or the demo ONNX graph in
    ``$FLIPBENCH_HOME``, or the project's ``../shared/weights``), or else downloaded now (the official demo graph,
    2.2 MB, size and SHA-256 pinned) unless ``FLIPBENCH_OFFLINE=1``. When neither works, says exactly which file to
    put where and returns False."""
    import os

    from baselines.weights import ChecksumMismatchError, download, weights_home
    from benchmark.flip.predictor import find_flip_weights
    from benchmark.flip.weights_catalog import FLIP_DEMO_ONNX

    if find_flip_weights("flip-tiny") is not None:
        return True
    home = weights_home()
    reason = "FLIPBENCH_OFFLINE is set"
    if os.environ.get("FLIPBENCH_OFFLINE", "") in ("", "0"):
        click.echo(f"FLIP-Tiny weights not found: downloading the official demo weights ({FLIP_DEMO_ONNX.url}, "
                   f"{FLIP_DEMO_ONNX.num_bytes:,} bytes) into {home}")
        try:
            download("flip-tiny-demo", timeout=20.0, deadline=DEMO_DOWNLOAD_DEADLINE_S)
            return True
        except (ChecksumMismatchError, OSError) as err:
            reason = " ".join(str(err).split())
    click.secho(f"FLIP-Tiny weights not found and not downloaded ({reason}): evaluating the weight-free references "
                f"only. To include FLIP, save {FLIP_DEMO_ONNX.url} as {home / FLIP_DEMO_ONNX.filename} (file "
                f"{FLIP_DEMO_ONNX.filename} in the directory {home}; set FLIPBENCH_HOME to use another), or run "
                "`flipbench weights download flip-tiny-demo`, then run quickstart again.", fg="yellow")
    return False


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
    click.secho(f"[2/3] evaluating {', '.join(models)} into {run_dir}", bold=True)
    ctx.invoke(eval_cmd, dataset_path=dataset_dir, models=(",".join(models),), out_dir=run_dir, seed=seed)

    click.secho(f"[3/3] writing the report into {report_dir}", bold=True)
    ctx.invoke(report_cmd, runs=(run_dir,), out_dir=report_dir)
    click.secho(f"done: open {report_dir / 'report.html'}", fg="green", bold=True)
