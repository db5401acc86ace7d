"""Step 3 of evaluate -> accumulate -> summarize: one row per model, as CSV and Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.prompts import clicks_to_reach
from benchmark.evaluation.store import write_atomic

#: summary.csv columns (IoU as a fraction in [0, 1], time in seconds)
SUMMARY_COLUMNS = (
    "model",
    "weights_kind",
    "parameters",
    "objects",  # records, including empty ground truths and invalid prompts
    "empty_gt",  # objects with an empty ground-truth mask (counted, not scored)
    "invalid_prompt",  # objects whose stored positions no mask can have (counted, not prompted, not scored)
    "scored",
    "mean_iou",
    "std_iou",  # sample standard deviation over scored objects
    "small_objects",  # scored objects with relative_mask_size < EvalParams.small_object_threshold
    "mean_iou_small",
    "timed_objects",  # scored objects outside the warm-up images
    "time_per_object_s",  # mean t_total over the timed objects
    "median_time_per_object_s",
    "iqr_time_per_object_s",  # interquartile range of t_total over the timed objects (the spread)
    "prompt",  # the prompt kind the model got (box, gaussian, point, clicks)
    "selection",  # candidate-mask models: the selection rule (box, point, oracle); empty otherwise
    "noc_90",  # clicks: mean number of clicks to reach IoU 0.9 (never: max_clicks); NaN for other prompts
)

RANDOM_NOTE = "random-init weights: these numbers test the pipeline, they say nothing about the model"


def summarize(records: pd.DataFrame, params: EvalParams, models: dict[str, dict] | None = None) -> pd.DataFrame:
    """Per-model summary (:data:`SUMMARY_COLUMNS`) of a records frame (see :mod:`.accumulate`).

    ``models``: ``run.json``'s ``models`` (name -> ``describe()``) for parameter counts; rows follow the
    order of the models in ``records``.
    """
    models = models or {}
    rows = []
    for model, group in records.groupby("model", sort=False):
        scored = group[~(group["gt_empty"] | group["prompt_invalid"])]
        iou = scored["iou"].to_numpy(dtype=np.float64)
        small = scored[scored["relative_mask_size"] < params.small_object_threshold]
        timed = scored[~scored["warmup"]]["t_total"].to_numpy(dtype=np.float64)
        description = models.get(model, {})
        prompts, selections = group["prompt"].dropna(), group["selection"].dropna()
        clicks = scored["click_ious"].dropna()
        noc = [clicks_to_reach(v, 0.90, params.max_clicks)[0] for v in clicks if len(v)]
        rows.append(
            {
                "model": model,
                "weights_kind": str(group["weights_kind"].iloc[0]),
                "parameters": description.get("parameters"),
                "objects": len(group),
                "empty_gt": int(group["gt_empty"].sum()),
                "invalid_prompt": int(group["prompt_invalid"].sum()),
                "scored": len(scored),
                "mean_iou": float(iou.mean()) if iou.size else math.nan,
                "std_iou": float(iou.std(ddof=1)) if iou.size > 1 else math.nan,
                "small_objects": len(small),
                "mean_iou_small": float(small["iou"].mean()) if len(small) else math.nan,
                "timed_objects": int(timed.size),
                "time_per_object_s": float(timed.mean()) if timed.size else math.nan,
                "median_time_per_object_s": float(np.median(timed)) if timed.size else math.nan,
                "iqr_time_per_object_s": float(np.subtract(*np.percentile(timed, [75, 25]))) if timed.size
                else math.nan,
                "prompt": str(prompts.iloc[0]) if len(prompts) else "",
                "selection": str(selections.iloc[0]) if len(selections) else "",
                "noc_90": float(np.mean(noc)) if noc else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def summary_markdown(summary: pd.DataFrame, manifest: dict, params: EvalParams) -> str:
    """Human-readable summary of a run: header with dataset and protocol, the table, footnotes."""
    dataset = manifest.get("dataset", {})
    devices = sorted({s.get("environment", {}).get("device", "?") for s in manifest.get("sessions", [])})
    timings = sorted({s.get("timing", "sequential") for s in manifest.get("sessions", [])})
    lines = [
        f"# flipbench evaluation `{manifest.get('run_id', '')}`",
        "",
        f"- dataset: {dataset.get('name')} (`{dataset.get('path')}`), {dataset.get('num_images')} images, "
        f"{dataset.get('num_instances')} objects, fingerprint `{dataset.get('fingerprint')}`",
        f"- protocol `{params.protocol_hash()}`: prompt {params.prompt}"
        + (f" ({params.max_clicks} clicks)" if params.prompt == "clicks" else "")
        + (f", selection {params.select}" if params.select != "prompt" else "")
        + (f", upsampler {params.upsampler}" if params.upsampler != "bilinear" else "")
        + f", FLIP mode {params.flip_mode}, seed {params.seed}; "
        f"small objects: relative mask size < {params.small_object_threshold:g}",
        f"- device(s): {', '.join(devices)}; timing: {', '.join(timings)} (interleaved: per image every model in "
        f"turn); time per object excludes the first {params.timing_warmup_images} images of each model (warm-up)",
        "",
        "| model | weights | parameters | objects | empty GT | invalid prompt | mean IoU ± std (%) "
        "| small objects: n, IoU (%) | ms / object (mean, median, IQR) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples(index=False):
        named = params.prompt != "native" or params.select != "prompt"  # as the report names rows
        kind = (row.selection + "-selected" if row.selection else row.prompt) if named else ""
        kind = f"text, {kind}" if named and row.prompt == "text" else kind
        kind += f", NoC@90 {row.noc_90:.2f}" if not math.isnan(row.noc_90) else ""
        name = f"{row.model} ({kind})" if kind else row.model
        name += " †" if row.weights_kind == "random-init" else ""
        weights = {"random-init": "**RANDOM INIT**", "none": "weight-free"}.get(row.weights_kind, row.weights_kind)
        lines.append(
            f"| {name} | {weights} | {_count(row.parameters)} | {row.objects} | {row.empty_gt} | {row.invalid_prompt} "
            f"| {_pct(row.mean_iou)} ± {_pct(row.std_iou)} | {row.small_objects}, {_pct(row.mean_iou_small)} "
            f"| {_ms(row.time_per_object_s)}, {_ms(row.median_time_per_object_s)}, "
            f"{_ms(row.iqr_time_per_object_s)} |"
        )
    lines.append("")
    lines.append("Objects with an empty ground-truth mask are counted in *empty GT* and not scored.")
    if (summary["selection"] == "oracle").any():
        lines.append("oracle-selected: the candidate closest to the ground truth, an upper bound, not a result.")
    if summary["invalid_prompt"].sum():
        lines.append("Objects whose stored positions no mask can have (negative variance, a covariance that is not "
                     "positive semi-definite, NaN/inf, a mean outside the image) are counted in *invalid prompt*, "
                     "given to no model and not scored; fix the dataset's `positions`.")
    if (summary["weights_kind"] == "random-init").any():
        lines.append(f"† {RANDOM_NOTE}.")
    return "\n".join(lines) + "\n"


def write_summary(summary: pd.DataFrame, manifest: dict, params: EvalParams, run_dir: Path) -> None:
    """Write ``summary.csv`` and ``summary.md`` into ``run_dir``, each atomically (a temporary file renamed; the
    temporary is removed when writing fails). The caller makes sure the run owns these names
    (:meth:`~benchmark.evaluation.store.RunStore.claim`)."""
    text = summary_markdown(summary, manifest, params)
    write_atomic(run_dir / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    write_atomic(run_dir / "summary.md", lambda tmp: tmp.write_text(text))


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _ms(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{1000 * value:.1f}"


def _count(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{int(value):,}"
