"""The paper's published tables (``paper_tables.csv``, provenance in ``paper_tables.json``) next to ours.

``paper_tables.csv`` holds every number of Tables 1-3 of arXiv 2502.02763: one row per (table, model, dataset)
with ``params_m``, ``time_ms`` (the authors' GPU timing), ``iou_mean`` and ``iou_std`` (%). ``paper_tables.json``
says where they come from, maps the paper's model rows to a registry model and FLIP mode (``FLIP-Tiny`` ->
``flip-tiny`` in ``window`` mode, ``FLIPh-Tiny`` -> ``flip-tiny`` in ``hierarchical`` mode) and our dataset names
(the HDF5 ``dataset_name``) to the paper's datasets by name prefix (``coco-val2017`` -> ``COCO``).

A difference (ours - paper) is only formed for the same model, mode and dataset; the paper's ``Average`` only
for a model we ran on all six of its datasets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_DIR = Path(__file__).parent
ALL_OBJECTS = "table1_all_objects"
SMALL_OBJECTS = "table3_small_objects"
CSV_COLUMNS = ("table", "model", "params_m", "time_ms", "dataset", "iou_mean", "iou_std")


@dataclass(frozen=True)
class PaperTables:
    """``rows``: the CSV (columns :data:`CSV_COLUMNS`) plus ``registry`` (our model name or None) and ``mode``
    (FLIP mode or None); ``meta``: ``paper_tables.json``."""

    rows: pd.DataFrame
    meta: dict

    @property
    def average(self) -> str:
        """The paper's name of its mean over the six datasets (``"Average"``)."""
        return str(self.meta["average"])

    @property
    def datasets(self) -> list[str]:
        """The paper's six datasets, in its column order."""
        return list(self.meta["datasets"])

    @property
    def citation(self) -> str:
        paper = self.meta["paper"]
        return f"arXiv {paper['arxiv']} {paper['version']} ({paper['url']})"

    def paper_label(self, model: str, mode: str | None) -> str | None:
        """The paper's row name for a registry model run in ``mode`` (None for models without modes), if any."""
        for label, entry in self.meta["models"].items():
            if entry["model"] == model and entry.get("mode") == mode:
                return label
        return None

    def label_for(self, info: dict) -> str | None:
        """:meth:`paper_label` of a report row's model entry (``{"model", "mode", ...}``, see ``Combined.models``);
        None for a row prompted otherwise than the paper prompted the model (the comparison stays on its prompts)."""
        if not info.get("native_prompt", True):
            return None
        return self.paper_label(info["model"], info.get("mode"))

    def paper_dataset(self, our_name: str) -> str | None:
        """The paper dataset an HDF5 ``dataset_name`` stands for (alias = case-insensitive name prefix)."""
        low = our_name.lower()
        for name, aliases in self.meta["datasets"].items():
            if any(low.startswith(alias) for alias in aliases):
                return name
        return None

    def row(self, table: str, paper_label: str, dataset: str) -> pd.Series | None:
        """The CSV row of ``paper_label`` on ``dataset`` (a paper dataset or :attr:`average`) in ``table``."""
        hit = self.rows[(self.rows["table"] == table) & (self.rows["model"] == paper_label)
                        & (self.rows["dataset"] == dataset)]
        return None if hit.empty else hit.iloc[0]

    def time_ms(self, table: str, paper_label: str | None) -> float:
        """The paper's time per object (ms, GPU) of a model in ``table``; NaN when it has no row."""
        row = self.row(table, paper_label, self.average) if paper_label else None
        return np.nan if row is None else float(row["time_ms"])

    def params_m(self, paper_label: str | None) -> float:
        row = self.row(ALL_OBJECTS, paper_label, self.average) if paper_label else None
        return np.nan if row is None else float(row["params_m"])


@cache
def load_paper_tables(directory: Path = PAPER_DIR) -> PaperTables:
    """Read and check ``paper_tables.csv`` and ``paper_tables.json`` of ``directory``."""
    meta = json.loads((directory / "paper_tables.json").read_text())
    rows = pd.read_csv(directory / meta["data_file"])
    if tuple(rows.columns) != CSV_COLUMNS:
        raise ValueError(f"{directory / meta['data_file']}: columns {list(rows.columns)}, expected {list(CSV_COLUMNS)}")
    unknown = set(rows["dataset"]) - set(meta["datasets"]) - {meta["average"]}
    if unknown:
        raise ValueError(f"paper tables name datasets without aliases in paper_tables.json: {sorted(unknown)}")
    models = meta["models"]
    rows["registry"] = rows["model"].map(lambda m: models.get(m, {}).get("model"))
    rows["mode"] = rows["model"].map(lambda m: models.get(m, {}).get("mode"))
    return PaperTables(rows=rows, meta=meta)


def comparison_rows(paper: PaperTables, table: str, models: dict[str, dict], ours: pd.DataFrame,
                    datasets: list[str]) -> pd.DataFrame:
    """Ours next to the paper per (label, dataset), for labels and datasets the paper has.

    ``models``: label -> {"model", "mode", ...} (:class:`benchmark.report.runs.Combined`); ``ours``: columns
    label, dataset, mean, std, n (IoU %, :func:`benchmark.report.stats.iou_summary`); ``datasets``: our dataset
    names in report order. Returns columns label, paper_label, dataset, paper_dataset, n, mean, std, paper_mean,
    paper_std, diff (ours - paper). A row ``dataset == paper_dataset == paper.average`` is added for a label whose
    datasets map one-to-one onto all six of the paper's (ours: unweighted mean of the six means, n = objects).
    """
    mapped = {d: paper.paper_dataset(d) for d in datasets}
    ours = ours.set_index(["label", "dataset"])
    rows = []
    for label, info in models.items():
        paper_label = paper.label_for(info)
        if paper_label is None:
            continue
        matched = []
        for dataset in datasets:
            p_row = paper.row(table, paper_label, mapped[dataset]) if mapped[dataset] else None
            if p_row is None or (label, dataset) not in ours.index or ours.at[(label, dataset), "n"] == 0:
                continue
            o = ours.loc[(label, dataset)]
            matched.append(mapped[dataset])
            rows.append({"label": label, "paper_label": paper_label, "dataset": dataset,
                         "paper_dataset": mapped[dataset], "n": int(o["n"]), "mean": float(o["mean"]),
                         "std": float(o["std"]), "paper_mean": float(p_row["iou_mean"]),
                         "paper_std": float(p_row["iou_std"]), "diff": float(o["mean"]) - float(p_row["iou_mean"])})
        if sorted(matched) == sorted(paper.datasets):
            mine = [r for r in rows if r["label"] == label]
            p_avg = paper.row(table, paper_label, paper.average)
            mean = float(np.mean([r["mean"] for r in mine]))
            rows.append({"label": label, "paper_label": paper_label, "dataset": paper.average,
                         "paper_dataset": paper.average, "n": sum(r["n"] for r in mine), "mean": mean, "std": np.nan,
                         "paper_mean": float(p_avg["iou_mean"]), "paper_std": float(p_avg["iou_std"]),
                         "diff": mean - float(p_avg["iou_mean"])})
    return pd.DataFrame(rows, columns=["label", "paper_label", "dataset", "paper_dataset", "n", "mean", "std",
                                       "paper_mean", "paper_std", "diff"])


def paper_speedup(paper: PaperTables, paper_label: str | None, reference_label: str | None,
                  table: str = ALL_OBJECTS) -> float:
    """The paper's speed-up of ``paper_label`` versus ``reference_label``: ratio of their published times."""
    return paper.time_ms(table, reference_label) / paper.time_ms(table, paper_label)
