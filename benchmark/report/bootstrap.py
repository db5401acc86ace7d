"""Uncertainty of means and paired differences when objects come in images.

Objects of one image are not independent (same scene, lighting, clutter), so intervals resample **images**, not
objects: the cluster (case-resampling) bootstrap of Davison & Hinkley, *Bootstrap Methods and their
Application* (1997), section 3.8, and Field & Welsh, "Bootstrapping clustered data", JRSS B 69 (2007). One
replicate draws as many images as there are, with replacement, and takes the mean over all objects of the drawn
images (a ratio estimator: images with more objects weigh more, as they do in the point estimate). The interval
is the percentile interval of the replicates. Seeded: the same inputs, ``n_boot`` and ``seed`` give the same
interval.

Paired comparisons use the same images for both rows (the per-object differences are resampled by image) and a
Wilcoxon signed-rank test on the per-image mean differences (images are the independent units;
``scipy.stats.wilcoxon``), with Holm's step-down adjustment across the pairs of one report (Holm, "A simple
sequentially rejective multiple test procedure", Scand. J. Statist. 6, 1979).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_BOOTSTRAP = 2000
CONFIDENCE = 0.95
#: replicates drawn per block (bounds memory to about block x images x 8 bytes)
_BLOCK = 256


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap percentile interval (NaN bounds for fewer than two images or ``n_boot == 0``)."""

    mean: float
    lo: float
    hi: float
    n: int  # objects
    clusters: int  # images

    def contains(self, value: float) -> bool:
        return bool(self.lo <= value <= self.hi)


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                      confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` (float ``[n]``, NaN dropped) with a ``confidence`` percentile interval from ``n_boot``
    replicates resampling whole ``clusters`` (``[n]`` labels, e.g. image indices)."""
    values = np.asarray(values, dtype=np.float64)
    clusters = np.asarray(clusters)
    keep = ~np.isnan(values)
    values, clusters = values[keep], clusters[keep]
    n = int(values.size)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, 0)
    _, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    k = int(sums.size)
    mean = float(values.mean())
    if k < 2 or n_boot <= 0:
        return Interval(mean, float("nan"), float("nan"), n, k)
    rng = np.random.default_rng(seed)
    reps = np.empty(int(n_boot))
    for start in range(0, int(n_boot), _BLOCK):
        stop = min(int(n_boot), start + _BLOCK)
        draw = rng.integers(0, k, size=(stop - start, k))
        reps[start:stop] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return Interval(mean, float(lo), float(hi), n, k)


def iou_interval(records, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Interval:
    """Mean IoU in percent of ``records`` (a DataFrame with ``iou`` in 0..1, NaN for unscored objects, and
    ``image_index``) with its image-clustered interval (:func:`cluster_bootstrap`)."""
    return cluster_bootstrap(records["iou"].to_numpy(float) * 100.0, records["image_index"].to_numpy(), n_boot, seed)


@dataclass(frozen=True)
class Paired:
    """Row A minus row B on their shared objects: mean difference with its interval, the shares of objects where
    A or B is better (ties are the rest), and the Wilcoxon p-value over per-image mean differences."""

    diff: Interval
    a_wins: float
    b_wins: float
    p_value: float


def paired_comparison(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP,
                      seed: int = 0) -> Paired:
    """``a`` and ``b``: scores of the same objects (float ``[n]``, aligned; pairs with a NaN dropped);
    ``clusters``: their images."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    clusters = np.asarray(clusters)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b, clusters = a[keep], b[keep], clusters[keep]
    d = a - b
    interval = cluster_bootstrap(d, clusters, n_boot, seed)
    if d.size == 0:
        return Paired(interval, float("nan"), float("nan"), float("nan"))
    _, inverse = np.unique(clusters, return_inverse=True)
    per_image = np.bincount(inverse, weights=d) / np.bincount(inverse)
    if per_image.size < 2 or not np.any(per_image != 0):
        p = 1.0 if per_image.size and not np.any(per_image != 0) else float("nan")
    else:
        p = float(stats.wilcoxon(per_image, zero_method="wilcox").pvalue)
    return Paired(interval, float(np.mean(d > 0)), float(np.mean(d < 0)), p)


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out.tolist()
