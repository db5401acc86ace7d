"""Side-by-side comparison of two datasets' inspections (``flipbench inspect A --compare B``).

For two :class:`~objascale.inspection.Inspection` results: the category, relative-mask-area and long-side
histograms of both with their shares, and the two-sample Kolmogorov-Smirnov statistic of the relative mask areas
(``scipy.stats.ks_2samp``: the largest distance between the two empirical CDFs, 0 = same distribution, with its
p-value). Meant for an ObjaScale run against the official release (or two runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from objascale.inspection import Inspection

__all__ = ["Comparison", "compare"]


@dataclass
class Comparison:
    a: str
    b: str
    #: rows ``(bin or category, count A, count B)`` per table
    categories: list[tuple[str, int, int]]
    relative_size: list[tuple[str, int, int]]
    long_side: list[tuple[str, int, int]]
    totals: dict[str, tuple[int, int]]  # table -> (total A, total B), the shares' denominators
    ks_statistic: float | None  # None when a side has no analysed mask
    ks_pvalue: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _side_by_side(a: list[tuple[str, int]], b: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Rows of both histograms by label, in A's order then B's new labels."""
    da, db = dict(a), dict(b)
    labels = list(dict.fromkeys([k for k, _ in a] + [k for k, _ in b]))
    return [(k, int(da.get(k, 0)), int(db.get(k, 0))) for k in labels]


def compare(a: Inspection, b: Inspection) -> Comparison:
    """Compare two inspections (see the module docstring)."""
    from scipy.stats import ks_2samp  # noqa: PLC0415

    ks = p = None
    if a.relative_sizes.size and b.relative_sizes.size:
        res = ks_2samp(a.relative_sizes, b.relative_sizes)
        ks, p = float(res.statistic), float(res.pvalue)
    cats = _side_by_side(a.category_counts, b.category_counts)
    return Comparison(
        a=a.path, b=b.path, categories=cats,
        relative_size=_side_by_side(a.relative_size_hist, b.relative_size_hist),
        long_side=_side_by_side(a.long_side_hist, b.long_side_hist),
        totals={"categories": (a.num_instances, b.num_instances),
                "relative_size": (a.masks_analysed, b.masks_analysed),
                "long_side": (a.num_images, b.num_images)},
        ks_statistic=ks, ks_pvalue=p)
