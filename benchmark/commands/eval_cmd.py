"""``flipbench eval``: run models over a FLIP HDF5 dataset into a resumable run directory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from benchmark.commands.errors import user_errors
from benchmark.evaluation.params import FLIP_PRECISIONS, PROMPT_KINDS, SELECTION_RULES, UPSAMPLERS, EvalParams

_DEFAULTS = EvalParams()


@click.command("eval")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="FLIP HDF5 file or directory of *.hdf5 shards.")
@click.option("--model", "models", required=True, multiple=True,
              help="Comma-separated models, each NAME or NAME:CHECKPOINT (e.g. flip-tiny,box,ellipse,grabcut). "
                   "Repeatable.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (created; an existing run there is resumed).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N objects (global instance order). A later run without it continues.")
@click.option("--seed", type=click.IntRange(min=0), default=_DEFAULTS.seed, show_default=True,
              help="Seed of FLIP's patch sampling and GrabCut (per object: derived from seed and object index).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--flip-mode", type=click.Choice(["window", "full", "hierarchical"]), default=_DEFAULTS.flip_mode,
              show_default=True, help="FLIP inference: 5-sigma window (official --optimized), every pixel, or "
                                      "coarse-to-fine.")
@click.option("--flip-precision", type=click.Choice(list(FLIP_PRECISIONS)), default=_DEFAULTS.flip_precision,
              show_default=True, help="Compute precision of FLIP's pixel predictor: fp32 (the official outputs "
                                      "within float32 rounding) or bf16 (bfloat16 matrix multiplies; recorded in "
                                      "every record and in the protocol hash).")
@click.option("--flip-tokens", type=click.IntRange(min=1), default=None,
              help="FLIP token budget (default: the model config's avg_num_tokens).")
@click.option("--prompt", type=click.Choice(list(PROMPT_KINDS)), default=_DEFAULTS.prompt, show_default=True,
              help="Prompt of every model: native (each its own: box for SAM-family models, the Gaussian for FLIP), "
                   "box, gaussian, point (1 click at the mask's interior-most pixel), clicks (RITM's simulation, "
                   "--max-clicks) or text (the object's category name, the dataset's category names as the class "
                   "list; text models only, with --select box|point|oracle). A model that cannot take it is refused.")
@click.option("--select", type=click.Choice(list(SELECTION_RULES)), default=_DEFAULTS.select, show_default=True,
              help="How candidate-mask models (FastSAM, EoMT, the text models) pick a mask per object: by the prompt "
                   "(box or point rule), box, point, or oracle (closest to the ground truth: an upper bound, labelled "
                   "so). Text prompts need box, point or oracle (among the candidates of the object's category).")
@click.option("--upsampler", type=click.Choice(list(UPSAMPLERS)), default=_DEFAULTS.upsampler, show_default=True,
              help="How sclip and sclip-sam2.1 bring CLIP's 14x14 patch features to pixels: bilinear (SCLIP's) or "
                   "loftup (the LoftUp upsampler for CLIP). proxyclip and proxyclip-fsa refuse loftup; models without "
                   "text prompts ignore it.")
@click.option("--max-clicks", type=click.IntRange(min=1), default=_DEFAULTS.max_clicks, show_default=True,
              help="Clicks of the --prompt clicks simulation.")
@click.option("--allow-random-weights", is_flag=True,
              help="Build models without a checkpoint with random weights (labelled random-init in every result).")
@click.option("--force-new", is_flag=True, help="Discard an existing run in --out and start afresh.")
@click.option("--official-csv", is_flag=True,
              help="Also write official/<model>.csv with the columns of the official evaluate_single_hdf5.py.")
@click.option("--chunk-images", type=click.IntRange(min=1), default=25, show_default=True,
              help="Images per records part file (the most work an interruption can lose).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--timing", type=click.Choice(["sequential", "interleaved"]), default="sequential", show_default=True,
              help="sequential: each model over all images in turn; interleaved: per image every model in turn "
                   "(all built once), so a change of machine load hits every model alike. Records are the same.")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run on the Ray cluster at HOST:PORT ('auto': the cluster this machine belongs to); the dataset "
                   "must be at the same path on every node. Needs pip install -e \".[cluster]\".")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --ray: worker actors, each building every model once [default: one per cluster CPU, or per "
                   "--gpus-per-worker GPUs].")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --ray: GPUs each worker reserves (> 0: models run on CUDA there).")
def eval_cmd(dataset_path, models, out_dir, limit, seed, device, flip_mode, flip_precision, flip_tokens, prompt,
             select, upsampler, max_clicks, allow_random_weights,
             force_new, official_csv, chunk_images, progress, timing, ray_address, workers, gpus_per_worker) -> None:
    """Evaluate models on every object of a dataset; writes records/, run.json, summary.csv and summary.md.

    Each object is prompted with the tight box of its ground-truth mask (box models) or its stored Gaussian
    (FLIP), or with --prompt's kind, and scored by IoU at native resolution. Interrupted runs resume when the command is repeated.
    """
    from benchmark.evaluation.runner import run_evaluation, split_model_specs
    from benchmark.evaluation.store import RunLockedError, RunMismatchError
    from benchmark.evaluation.summarize import summary_markdown
    from baselines.weights import MissingCheckpointError
    from objascale.cluster import ClusterError
    from objascale.hdf5_format import FlipDataset, FlipFormatError

    if ray_address is None and (workers is not None or gpus_per_worker):
        raise click.UsageError("--workers and --gpus-per-worker need --ray ADDRESS")
    cluster = None if ray_address is None else {"address": ray_address, "workers": workers,
                                                "gpus_per_worker": gpus_per_worker}
    if cluster is not None and gpus_per_worker > 0:
        device = "cuda"  # the workers run on their GPUs: run.json and the summaries say so (records carry it too)
    if device == "cuda" and cluster is None:  # on a cluster, the workers' GPUs count (--gpus-per-worker)
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter("CUDA is not available in this torch build / machine; use --device cpu",
                                     param_hint="--device")
    try:
        params = EvalParams(seed=seed, flip_mode=flip_mode, flip_num_tokens=flip_tokens, prompt=prompt, select=select,
                            max_clicks=max_clicks, upsampler=upsampler,
                            flip_precision=flip_precision)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    try:
        with user_errors(RunMismatchError, RunLockedError, MissingCheckpointError, FlipFormatError, ClusterError,
                         FileNotFoundError, KeyError, ValueError, ImportError, message=_message):
            specs = split_model_specs(models)
            dataset = FlipDataset(dataset_path)
            outcome = run_evaluation(
                dataset, dataset_path, specs, out_dir, params, device=device, limit=limit,
                allow_random=allow_random_weights, force_new=force_new, chunk_images=chunk_images,
                official_csv=official_csv, progress=progress, timing=timing, cluster=cluster,
            )
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; completed images are saved in {out_dir}. Re-run the same command to resume.",
                   err=True)
        sys.exit(130)
    click.echo(summary_markdown(outcome.summary, outcome.manifest, params))
    click.echo(f"{outcome.objects_evaluated} objects evaluated in this session; results in {outcome.run_dir}")
    for problem in outcome.manifest.get("record_problems", []):
        click.secho(f"warning: {problem} (left out of the counts and summaries)", fg="yellow", err=True)
    _warn_invalid_prompts(outcome.manifest.get("counts", {}), dataset, dataset_path)


def _warn_invalid_prompts(counts: dict, dataset, dataset_path: Path) -> None:
    """Name the objects whose stored positions no mask can have (not prompted, not scored), with the reason."""
    from benchmark.evaluation.evaluate import prompt_problem

    listed = counts.get("invalid_prompt_instances") or []
    if not listed:
        return
    per_model = counts.get("per_model") or {}
    total = max((c.get("invalid_prompt", 0) for c in per_model.values()), default=len(listed))
    examples = "; ".join(f"instance {j} (image {dataset.image_of(j)}): {prompt_problem(dataset.rho(j))}"
                         for j in listed[:3])
    click.secho(f"warning: {total} object(s) of {dataset_path} have invalid stored positions and were given to no "
                f"model nor scored (prompt_invalid in the records, invalid_prompt in the summary), e.g. {examples}",
                fg="yellow", err=True)


def _message(exc: BaseException) -> str:
    """KeyError's text without the quotes its str() adds."""
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
