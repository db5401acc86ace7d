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


def choose_reference(per_model: pd.DataFrame, models: dict[str, dict], reference: str = DEFAULT_REFERENCE
                     ) -> tuple[str | None, str]:
    """Pick the speed-up reference label among ``per_model`` rows (columns label, total_median_ms).

    The first label whose model name is ``reference`` wins; otherwise the slowest label (highest median total).
    Returns ``(label or None, explanation)`` where the explanation is printed next to the speed-up column.
    """
    available = per_model.dropna(subset=["total_median_ms"])
    for label in available["label"]:
        if models.get(label, {}).get("model") == reference:
            return label, f"speed-up versus {label}"
    if available.empty:
        return None, "no timed objects: speed-ups unavailable"
    slowest = available.loc[available["total_median_ms"].idxmax(), "label"]
    return slowest, f"speed-up versus the slowest model, {slowest} ({reference} is not in these runs)"


def timing_table(records: pd.DataFrame, models: dict[str, dict], reference: str = DEFAULT_REFERENCE
                 ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per (dataset, label) stage statistics with a ``speedup`` column computed within each dataset.

    Returns the table and {dataset: explanation of its speed-up reference}.
    """
    table = stage_stats(records, ["dataset", "label"])
    table["speedup"] = np.nan
    notes = {}
    for dataset, part in table.groupby("dataset", sort=False):
        ref_label, note = choose_reference(part, models, reference)
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
