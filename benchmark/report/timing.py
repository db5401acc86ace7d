"""Timing statistics: per-stage median and p90 of the time per object, warm-up excluded, and speed-ups.

Records carry seconds per object for each stage (the image-level time of a stage divided among the image's
objects, see ``flipbench eval``). Percentiles use numpy's default linear interpolation. Speed-ups compare
median total times of models on the *same dataset* (image sizes change the cost): reference time / model time,
so > 1 means faster than the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselines.timing import STAGES

#: record column per stage, in protocol order, then the total
STAGE_COLUMNS: dict[str, str] = {stage: f"t_{stage}" for stage in STAGES} | {"total": "t_total"}
DEFAULT_REFERENCE = "sam-h"


def timed(records: pd.DataFrame) -> pd.DataFrame:
    """Records that count for timing: warm-up rows and empty-GT rows (the model is not run) removed."""
    return records[~records["warmup"].astype(bool) & ~records["gt_empty"].astype(bool)]


def stage_stats(records: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Median and p90 in milliseconds per stage and group, over the :func:`timed` objects.

    Returns columns ``by + [n_timed, n_excluded] + [<stage>_median_ms, <stage>_p90_ms for each stage and total]``.
    Groups without timed objects keep a row with NaN times.
    """
    rows = []
    for key, group in records.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        kept = timed(group)
        row = dict(zip(by, key, strict=True))
        row["n_timed"], row["n_excluded"] = len(kept), len(group) - len(kept)
        for stage, column in STAGE_COLUMNS.items():
            values = kept[column].to_numpy(dtype=float) * 1000.0
            values = values[~np.isnan(values)]
            row[f"{stage}_median_ms"] = float(np.median(values)) if values.size else np.nan
            row[f"{stage}_p90_ms"] = float(np.percentile(values, 90)) if values.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def choose_reference(per_model: pd.DataFrame, models: dict[str, dict], reference: str = DEFAULT_REFERENCE,
                     preferred: set[str] | None = None) -> tuple[str | None, str]:
    """Pick the speed-up reference label among ``per_model`` rows (columns label, total_median_ms).

    The first label that is, or whose model name is, ``reference`` (SAM-H by default) wins; otherwise the largest
    model present (most parameters), among equally large ones a ``preferred`` label (e.g. one the paper has a row
    for, so its ratios can be set beside the paper's), then the slowest. Returns ``(label or None, explanation)``; the
    explanation names the reference and why it was chosen.
    """
    available = per_model.dropna(subset=["total_median_ms"])
    for label in available["label"]:
        if reference in (label, models.get(label, {}).get("model")):
            return label, f"speed-up versus {label}"
    if available.empty:
        return None, "no timed objects: speed-ups unavailable"
    ranked = available.assign(
        params=[float(models.get(lab, {}).get("parameters") or 0) for lab in available["label"]],
        preferred=[lab in (preferred or set()) for lab in available["label"]],
    ).sort_values(["params", "preferred", "total_median_ms"], ascending=False, kind="stable")
    chosen = ranked.iloc[0]
    why = (f"the largest model in these runs ({chosen['params'] / 1e6:.2f} M parameters)" if chosen["params"] > 0
           else "the slowest model in these runs (none has parameters)")
    return str(chosen["label"]), f"speed-up versus {chosen['label']}, {why}; {reference} is not in these runs"


def timing_table(records: pd.DataFrame, models: dict[str, dict], reference: str = DEFAULT_REFERENCE,
                 preferred: set[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per (dataset, label) stage statistics with a ``speedup`` column computed within each dataset (reference:
    :func:`choose_reference`).

    Returns the table and {dataset: explanation of its speed-up reference}.
    """
    table = stage_stats(records, ["dataset", "label"])
    table["speedup"] = np.nan
    notes = {}
    for dataset, part in table.groupby("dataset", sort=False):
        ref_label, note = choose_reference(part, models, reference, preferred)
        notes[dataset] = note
        if ref_label is None:
            continue
        ref_time = part.loc[part["label"] == ref_label, "total_median_ms"].iloc[0]
        table.loc[part.index, "speedup"] = ref_time / part["total_median_ms"]
    return table, notes


def overall_time_per_object(records: pd.DataFrame) -> pd.Series:
    """Median total time per object (ms) per label over all its datasets, warm-up excluded."""
    kept = timed(records)
    return kept.groupby("label", sort=False)["t_total"].median() * 1000.0


def speedup_versus(records: pd.DataFrame, reference_label: str) -> pd.Series:
    """label -> median total time of ``reference_label`` / median total time of the label, both over the
    timed objects of the datasets the two share (NaN when they share none)."""
    kept = timed(records)
    ref = kept[kept["label"] == reference_label]
    out = {}
    for label, part in kept.groupby("label", sort=False):
        shared = set(part["dataset"]) & set(ref["dataset"])
        mine = part.loc[part["dataset"].isin(shared), "t_total"]
        theirs = ref.loc[ref["dataset"].isin(shared), "t_total"]
        out[label] = float(theirs.median() / mine.median()) if len(mine) and len(theirs) else np.nan
    return pd.Series(out, dtype=float)
