"""The paper's published numbers (``paper_results.json``, data with sources) next to ours.

Only values read from a public source are stored; the file's ``unverified`` list names what could not be read
(the per-dataset Table 1 and the small-object Table 3 of arXiv 2502.02763), and the report shows those as
missing. Paper model labels are mapped to registry names (``"SAM-H" -> "sam-h"``); our dataset names (the
HDF5 ``dataset_name``) are matched to the paper's datasets by the aliases in the file (name prefixes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_FILE = Path(__file__).with_name("paper_results.json")
ALL_SIX = "all-six"


@dataclass(frozen=True)
class PaperResults:
    """Parsed ``paper_results.json``: ``values`` is a DataFrame (model, paper_label, dataset, metric, value,
    source); ``sources`` maps a source key to {url, what, retrieved}."""

    values: pd.DataFrame
    sources: dict[str, dict]
    datasets: dict[str, dict]
    unverified: list[str]
    paper: dict

    def value(self, model: str, metric: str, dataset: str = ALL_SIX) -> tuple[float, str | None]:
        """(value, source key) or (NaN, None) when the paper number is not stored."""
        hit = self.values[(self.values["model"] == model) & (self.values["metric"] == metric)
                          & (self.values["dataset"] == dataset)]
        if hit.empty:
            return np.nan, None
        return float(hit["value"].iloc[0]), str(hit["source"].iloc[0])

    def paper_label(self, model: str) -> str | None:
        hit = self.values.loc[self.values["model"] == model, "paper_label"]
        return None if hit.empty else str(hit.iloc[0])

    def paper_dataset(self, our_name: str) -> str | None:
        """The paper dataset an HDF5 ``dataset_name`` stands for (alias = case-insensitive name prefix)."""
        low = our_name.lower()
        for name, entry in self.datasets.items():
            if any(low.startswith(alias) for alias in entry.get("aliases", [])):
                return name
        return None


@cache
def load_paper_results(path: Path = PAPER_FILE) -> PaperResults:
    data = json.loads(Path(path).read_text())
    values = pd.DataFrame(data["values"])
    unknown = set(values["source"]) - set(data["sources"])
    if unknown:
        raise ValueError(f"{path}: values cite unknown sources {sorted(unknown)}")
    return PaperResults(values=values, sources=data["sources"], datasets=data["datasets"],
                        unverified=list(data.get("unverified", [])), paper=data["paper"])


def comparison_table(models: dict[str, dict], ours_means: pd.DataFrame, ours_datasets: list[str],
                     ours_time_ms: pd.Series, ours_speedup: pd.Series | None = None,
                     paper: PaperResults | None = None) -> pd.DataFrame:
    """One row per label: our IoUs / parameters / median time next to the paper's, with differences (ours - paper).

    ``ours_means``: label x (datasets + ``"average"``) mean IoU (%), the average being our unweighted mean of
    per-dataset means; ``ours_datasets``: the report's dataset names; ``ours_time_ms``: label -> our median total
    time per object (ms); ``ours_speedup``: label -> our speed-up versus SAM-H (see
    :func:`benchmark.report.timing.speedup_versus`), when SAM-H was run.
    Columns ``iou[<dataset>]``, ``paper_iou[<dataset>]`` and ``diff_iou[<dataset>]`` appear for each of our
    datasets that maps to a paper dataset (NaN where the paper value is not stored). ``coverage``
    says how many of the paper's six datasets our average spans: the average difference is like-for-like only
    at 6/6.
    """
    paper = paper or load_paper_results()
    mapped = {d: paper.paper_dataset(d) for d in ours_datasets}
    members = paper.datasets[ALL_SIX]["members"]
    covered = {p for p in mapped.values() if p in members}
    rows = []
    for label, info in models.items():
        name = info["model"]
        ours_par = info.get("parameters")
        ours_par_m = float(ours_par) / 1e6 if ours_par is not None else np.nan
        row = {"label": label, "paper_label": paper.paper_label(name),
               "random_init": info.get("weights_kind") == "random-init"}
        used = []
        for ours_key, paper_key in [(d, p) for d, p in mapped.items() if p] + [("average", ALL_SIX)]:
            p_val, src = paper.value(name, "iou_mean_pct", paper_key)
            o_val = float(ours_means.at[label, ours_key]) if label in ours_means.index else np.nan
            row[f"iou[{ours_key}]"], row[f"paper_iou[{ours_key}]"] = o_val, p_val
            row[f"diff_iou[{ours_key}]"] = o_val - p_val
            used.append(src)
        row["coverage"] = f"{len(covered)}/{len(members)}"
        p_par, s_par = paper.value(name, "params_m")
        p_time, s_time = paper.value(name, "time_ms")
        p_speed, s_speed = paper.value(name, "speedup_vs_sam_h")
        ours_t = float(ours_time_ms.get(label, np.nan))
        ours_speed = float(ours_speedup.get(label, np.nan)) if ours_speedup is not None else np.nan
        row |= {"ours_params_m": ours_par_m, "paper_params_m": p_par, "diff_params_m": ours_par_m - p_par,
                "ours_time_ms": ours_t, "paper_time_ms": p_time, "diff_time_ms": ours_t - p_time,
                "ours_speedup_vs_sam_h": ours_speed, "paper_speedup_vs_sam_h": p_speed,
                "sources": ", ".join(sorted({s for s in used + [s_par, s_time, s_speed] if s}))}
        rows.append(row)
    return pd.DataFrame(rows)
