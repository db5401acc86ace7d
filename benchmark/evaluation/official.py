"""Export records in the CSV layout of the official ``model/scripts/evaluate_single_hdf5.py``.

One CSV per model with the official columns (:data:`benchmark.evaluation.schema.OFFICIAL_CSV_COLUMNS`), one row
per scored object in dataset order. Like the official script, objects with an empty ground-truth mask have no
row, nor do objects with invalid stored positions (not predicted). ``model_time`` is encoder + decoder time; ``input_tokens`` is empty for models other than FLIP.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.evaluation.schema import OFFICIAL_CSV_COLUMNS


def official_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Official-CSV columns for the records of one model (rows with an empty ground truth or an invalid prompt,
    which were not predicted, dropped)."""
    scored = records[~(records["gt_empty"] | records["prompt_invalid"])].sort_values("instance_index")
    out = pd.DataFrame(index=scored.index)
    for column, source in OFFICIAL_CSV_COLUMNS.items():
        if column == "model_time":
            out[column] = scored["t_encoder"] + scored["t_decoder"]
        else:
            out[column] = scored[source]
    return out.reset_index(drop=True)


def write_official_csvs(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``<out_dir>/<model>.csv`` for every model in ``records``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, group in records.groupby("model", sort=False):
        path = out_dir / f"{model}.csv"
        official_frame(group).to_csv(path, index=False)
        paths.append(path)
    return paths
