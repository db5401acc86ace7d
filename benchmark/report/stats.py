"""Statistics behind the tables and figures.

Conventions (stated in every output):

* IoU is reported in percent (IoU x 100), over scored objects only (``gt_empty`` objects have IoU NaN and are
  counted separately);
* ``std`` is the sample standard deviation (``ddof=1``) over objects; NaN for a single object;
* the *average* column is the unweighted mean of a model's per-dataset means (each dataset counts once, as in
  the paper's "mean IoU over six datasets"), over the datasets that model was evaluated on;
* confidence bands are two-sided 95 % Student-t intervals of the mean per bin: mean +- t(0.975, n-1) * s / sqrt(n).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.evaluation.params import EvalParams

DDOF = 1
CONFIDENCE = 0.95


def iou_summary(records: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1) and count of IoU in percent per group, plus the number of empty-GT objects skipped.

    Returns columns ``by + [mean, std, n, n_gt_empty]``; groups keep first-appearance order.
    """
    scored = records.assign(iou_pct=records["iou"].astype(float) * 100.0)
    grouped = scored.groupby(by, sort=False)
    out = grouped["iou_pct"].agg(mean="mean", std=lambda s: s.std(ddof=DDOF), n="count")
    out["n_gt_empty"] = grouped["gt_empty"].sum().astype(int)
    return out.reset_index()


def per_dataset_table(records: pd.DataFrame, labels: list[str], datasets: list[str]) -> dict[str, pd.DataFrame]:
    """Wide tables (rows: labels, columns: datasets) of mean, std and n, plus the average of means.

    Returns {"mean", "std", "n", "n_gt_empty"} -> DataFrame; "mean" has an extra column ``"average"``
    (unweighted mean over the datasets the label has) and ``"datasets"`` counts them.
    """
    summary = iou_summary(records, ["label", "dataset"])
    wide = {
        key: summary.pivot(index="label", columns="dataset", values=key).reindex(index=labels, columns=datasets)
        for key in ("mean", "std", "n", "n_gt_empty")
    }
    wide["mean"]["average"] = wide["mean"][datasets].mean(axis=1, skipna=True)
    wide["mean"]["datasets"] = wide["mean"][datasets].notna().sum(axis=1)
    return wide


def small_objects(records: pd.DataFrame, params: EvalParams) -> pd.DataFrame:
    """Objects whose relative mask area is strictly below ``params.small_object_threshold``."""
    return records[records["relative_mask_size"].astype(float) < params.small_object_threshold]


def absolute_size_bin(mask_pixels: np.ndarray, params: EvalParams) -> np.ndarray:
    """Bin index of the absolute mask size in pixels over ``params.absolute_size_edges``.

    Same convention as :meth:`EvalParams.relative_size_bin`: bin k holds edges[k] <= x < edges[k+1];
    -1 below the first edge, len(edges) - 1 at or above the last edge.
    """
    return np.digitize(np.asarray(mask_pixels, dtype=float), params.absolute_size_edges) - 1


def add_size_bins(records: pd.DataFrame, params: EvalParams) -> pd.DataFrame:
    """Copy of ``records`` with integer columns ``rel_bin`` and ``abs_bin`` (see the bin functions)."""
    return records.assign(
        rel_bin=params.relative_size_bin(records["relative_mask_size"].to_numpy(dtype=float)),
        abs_bin=absolute_size_bin(records["mask_pixels"].to_numpy(dtype=float), params),
    )


def in_range(binned: pd.DataFrame, params: EvalParams) -> pd.Series:
    """True where both size bins fall inside the edges (objects outside are not drawn, but counted)."""
    n_rel, n_abs = len(params.relative_size_edges) - 1, len(params.absolute_size_edges) - 1
    return binned["rel_bin"].between(0, n_rel - 1) & binned["abs_bin"].between(0, n_abs - 1)


def _cell_means(params: EvalParams, abs_bins: np.ndarray, rel_bins: np.ndarray, values: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` and their count per (absolute bin, relative bin) cell: float arrays
    [n_abs_bins, n_rel_bins], mean NaN where the count is 0."""
    n_rel, n_abs = len(params.relative_size_edges) - 1, len(params.absolute_size_edges) - 1
    total = np.zeros((n_abs, n_rel))
    count = np.zeros((n_abs, n_rel))
    np.add.at(total, (abs_bins, rel_bins), values)
    np.add.at(count, (abs_bins, rel_bins), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def heatmap_grid(binned: pd.DataFrame, params: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    """Mean IoU (%) and object count per (absolute bin, relative bin) cell for scored, in-range objects.

    Returns ``(mean, count)``, both float arrays [n_abs_bins, n_rel_bins]; mean is NaN where count is 0.
    """
    sel = binned[in_range(binned, params) & binned["iou"].notna()]
    return _cell_means(params, sel["abs_bin"].to_numpy(), sel["rel_bin"].to_numpy(),
                       sel["iou"].to_numpy(float) * 100.0)


def student_t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with integer ``df`` >= 1, for 0.5 < p < 1 (``scipy.stats.t.ppf``)."""
    if df < 1 or not 0.5 < p < 1:
        raise ValueError(f"need df >= 1 and 0.5 < p < 1, got df={df}, p={p}")
    from scipy.stats import t  # the report's only scipy user besides the bootstrap; imported when needed

    return float(t.ppf(p, df))


def paired_heatmap_grid(binned: pd.DataFrame, params: EvalParams, label: str, reference: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Mean paired IoU difference (percentage points, ``label`` minus ``reference``) and the number of objects
    both rows scored, per (absolute bin, relative bin) cell, over in-range objects of one dataset (``binned``
    rows are keyed by ``instance_index``). Returns ``(mean, count)`` float arrays [n_abs_bins, n_rel_bins];
    mean is NaN where count is 0."""
    sel = binned[in_range(binned, params) & binned["iou"].notna() & binned["label"].isin([label, reference])]
    wide = sel.pivot_table(index="instance_index", columns="label", values="iou", aggfunc="first")
    if label not in wide.columns or reference not in wide.columns:
        return _cell_means(params, np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    both = wide[[label, reference]].dropna()
    cells = sel.drop_duplicates("instance_index").set_index("instance_index").loc[both.index]
    return _cell_means(params, cells["abs_bin"].to_numpy(), cells["rel_bin"].to_numpy(),
                       (both[label] - both[reference]).to_numpy(float) * 100.0)


def mean_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, lower, upper, n) of ``values`` with a two-sided Student-t interval; bounds NaN when n < 2."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, 1
    half = student_t_quantile(0.5 + confidence / 2, n - 1) * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def size_curve(binned: pd.DataFrame, params: EvalParams, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """IoU (%) versus relative-size bin per label: columns label, rel_bin, lo_edge, hi_edge, centre, mean,
    ci_low, ci_high, n. ``centre`` is the geometric centre of the bin; out-of-range objects are dropped. The
    interval is the 95 % Student-t interval of the mean, or with ``n_boot`` > 0 the image-clustered bootstrap
    percentile interval (:func:`benchmark.report.bootstrap.iou_interval`)."""
    from benchmark.report.bootstrap import iou_interval  # noqa: PLC0415
    edges = np.asarray(params.relative_size_edges)
    n_rel = len(edges) - 1
    sel = binned[binned["rel_bin"].between(0, n_rel - 1) & binned["iou"].notna()]
    rows = []
    for label, group in sel.groupby("label", sort=False):
        for b, cell in group.groupby("rel_bin"):
            if n_boot > 0:
                ci = iou_interval(cell, n_boot, seed)
                mean, lo, hi, n = ci.mean, ci.lo, ci.hi, ci.n
            else:
                mean, lo, hi, n = mean_ci(cell["iou"].to_numpy(float) * 100.0)
            rows.append({"label": label, "rel_bin": int(b), "lo_edge": edges[b], "hi_edge": edges[b + 1],
                         "centre": math.sqrt(edges[b] * edges[b + 1]), "mean": mean, "ci_low": lo,
                         "ci_high": hi, "n": n})
    return pd.DataFrame(rows, columns=["label", "rel_bin", "lo_edge", "hi_edge", "centre", "mean", "ci_low",
                                       "ci_high", "n"])
