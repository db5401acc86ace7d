"""Figures: IoU heat maps over relative x absolute mask size (Figure 7 style) and IoU-versus-size curves.

Figures are built with :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot state), saved as PNG
(150 dpi) and SVG with fixed metadata so re-running a report gives identical files.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from benchmark.evaluation.params import EvalParams
from benchmark.report.stats import heatmap_grid, in_range, paired_heatmap_grid, size_curve

CMAP = "viridis"
#: diverging colour map of paired differences (blue: the row is better than the reference)
DIFF_CMAP = "RdBu"
IOU_NORM = Normalize(vmin=0.0, vmax=100.0)
PNG_DPI = 150
RANDOM_COLOUR = "#b00020"
FEW_OBJECTS = 10  #: size bins with fewer objects are marked (hollow markers, red count bars)


def slug(text: str) -> str:
    """File-name-safe version of a dataset or model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def unique_slugs(names: Iterable[str]) -> dict[str, str]:
    """name -> file stem: :func:`slug`, with a short hash of the name added where two names would share a stem
    (e.g. ``coco/val`` and ``coco_val``), so no figure overwrites another. Independent of the names' order."""
    names = list(dict.fromkeys(names))
    stems = Counter(slug(n) for n in names)
    return {n: slug(n) if stems[slug(n)] == 1 else f"{slug(n)}-{hashlib.sha1(n.encode()).hexdigest()[:8]}"
            for n in names}


def save(fig: Figure, out_dir: Path, stem: str, svg: bool = True) -> list[Path]:
    """Write ``stem.png`` and (``svg``) ``stem.svg``; return the paths, PNG first."""
    png, vector = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=PNG_DPI, metadata={"Software": "flipbench report"})
    if not svg:
        return [png]
    fig.set_layout_engine("none")  # keep the layout just computed; the SVG need not solve it again
    with matplotlib.rc_context({"svg.hashsalt": "flipbench", "svg.fonttype": "none"}):
        fig.savefig(vector, metadata={"Date": None, "Creator": "flipbench report"})
    return [png, vector]


def _short_count(n: float) -> str:
    n = int(n)
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _sup(exponent: int) -> str:
    return str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def edge_label(value: float) -> str:
    """Compact tick label of a bin edge: ``10⁻⁴``, ``3.2·10⁻⁴``, ``0.25``, ``16k``, ``4.2M``."""
    if value >= 1:
        for unit, scale in (("M", 1e6), ("k", 1e3)):
            if value >= scale:
                text = f"{value / scale:.1f}".rstrip("0").rstrip(".")
                return text + unit
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    if abs(mantissa - 1) < 1e-6:
        return f"10{_sup(exponent)}"
    if exponent >= -1:
        return f"{value:g}"
    return f"{mantissa:.1f}·10{_sup(exponent)}"


def _grid_axes(n_panels: int) -> tuple[Figure, np.ndarray]:
    ncols = min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(4.6 * ncols + 0.8, 4.2 * nrows + 0.9), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()


def _cell_panel(ax, mean: np.ndarray, count: np.ndarray, params: EvalParams, cmap, norm, dark) -> object:
    """Draw one [n_abs, n_rel] grid of values with object counts in the cells (text white where ``dark(value)``)
    on hatched grey (cells without objects), bin edges as tick labels; returns the mesh for the colour bar."""
    ax.set_facecolor("#eeeeee")
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("#cccccc")
    mesh = ax.pcolormesh(np.ma.masked_invalid(mean), cmap=cmap, norm=norm, edgecolors="white", linewidth=0.3)
    for i, j in zip(*np.nonzero(count), strict=True):
        text = ax.text(j + 0.5, i + 0.5, _short_count(count[i, j]), ha="center", va="center", fontsize=5.5,
                       color="white" if dark(mean[i, j]) else "black")
        text.set_in_layout(False)  # inside the axes: the layout need not measure it
    for axis, edges in ((ax.xaxis, params.relative_size_edges), (ax.yaxis, params.absolute_size_edges)):
        ticks = sorted(set(range(0, len(edges), 2)) | {len(edges) - 1})
        axis.set_ticks(ticks, [edge_label(edges[k]) for k in ticks], fontsize=7)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("relative mask area (fraction of image)")
    ax.set_ylabel("mask size (pixels)")
    return mesh


def _panel_title(ax, label: str, text: str, random_labels: set[str]) -> None:
    is_random = label in random_labels
    ax.set_title(f"{label}\n{text}" + ("  — RANDOM-INIT WEIGHTS" if is_random else ""), fontsize=9,
                 color=RANDOM_COLOUR if is_random else "black")


def heatmap_figure(binned: pd.DataFrame, params: EvalParams, labels: list[str], dataset: str,
                   random_labels: set[str]) -> Figure:
    """One panel per label: mean IoU (%) per (relative area, absolute pixels) cell, shared colour scale 0-100,
    empty cells hatched grey, object counts printed in each cell. ``binned`` has rel_bin/abs_bin columns.

    Cells are drawn in bin-index coordinates (every bin equally wide; the edges are logarithmic) with the bin
    edges as tick labels."""
    fig, axes = _grid_axes(len(labels))
    mesh = None
    outside = 0
    for ax, label in zip(axes, labels, strict=False):  # axes may outnumber labels
        part = binned[binned["label"] == label]
        outside += int((~in_range(part, params) & part["iou"].notna()).sum())
        mean, count = heatmap_grid(part, params)
        mesh = _cell_panel(ax, mean, count, params, CMAP, IOU_NORM, lambda v: v < 60)
        _panel_title(ax, label, f"{int(part['iou'].notna().sum())} objects", random_labels)
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes[: len(labels)].tolist(), label="mean IoU (%)", shrink=0.9)
    note = "numbers: objects per cell; hatched: no objects"
    if outside:
        note += f"; {outside} object(s) outside the bin edges (all panels) are not drawn"
    fig.suptitle(f"Mean IoU by relative and absolute mask size — {dataset}\n{note}", fontsize=10)
    return fig


def heatmap_difference_figure(binned: pd.DataFrame, params: EvalParams, labels: list[str], reference: str,
                              dataset: str, random_labels: set[str]) -> tuple[Figure, list[dict]]:
    """One panel per label other than ``reference``: per (relative area, absolute pixels) cell, the mean paired
    IoU difference (points, label minus reference) over the objects both rows scored, on a diverging scale
    symmetric about 0 shared by the panels (its limit is the largest |difference|, rounded up to 5 points).
    Returns the figure and the plotted cells (dicts: label, reference, abs_bin, rel_bin, mean_diff_pts, count)."""
    others = [lab for lab in labels if lab != reference]
    grids = {lab: paired_heatmap_grid(binned, params, lab, reference) for lab in others}
    largest = max((float(np.nanmax(np.abs(m))) for m, c in grids.values() if c.any()), default=0.0)
    limit = max(5.0, 5 * np.ceil(largest / 5))
    norm = Normalize(vmin=-limit, vmax=limit)
    fig, axes = _grid_axes(len(others))
    mesh = None
    cells = []
    for ax, label in zip(axes, others, strict=False):
        mean, count = grids[label]
        mesh = _cell_panel(ax, mean, count, params, DIFF_CMAP, norm, lambda v: abs(v) > 0.6 * limit)
        _panel_title(ax, label, f"minus {reference}: {int(count.sum())} paired objects", random_labels)
        for i, j in zip(*np.nonzero(count), strict=True):
            cells.append({"label": label, "reference": reference, "abs_bin": int(i), "rel_bin": int(j),
                          "mean_diff_pts": float(mean[i, j]), "count": int(count[i, j])})
    for ax in axes[len(others):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes[: len(others)].tolist(), label=f"mean IoU difference vs {reference} (points)",
                     shrink=0.9)
    fig.suptitle(f"Paired IoU difference against {reference} by relative and absolute mask size — {dataset}\n"
                 "blue: the row beats the reference in that cell; red: the reference wins; numbers: objects both "
                 "rows scored; hatched: none", fontsize=10)
    return fig, cells


def label_colours(labels: list[str]) -> dict[str, tuple]:
    """One tab10 colour per label, so a model has the same colour in every figure of a report."""
    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(k % 10) for k, label in enumerate(labels)}


def curve_figure(binned: pd.DataFrame, params: EvalParams, labels: list[str], dataset: str,
                 random_labels: set[str], colours: dict[str, tuple] | None = None, n_boot: int = 0, seed: int = 0,
                 reference: str | None = None) -> tuple[Figure, pd.DataFrame]:
    """Mean IoU (%) per relative-size bin, one line per label with its 95 % interval band (image-clustered
    bootstrap with ``n_boot`` > 0, else Student-t), each label with its own marker and line style (random-init
    labels dashed); bins with fewer than :data:`FEW_OBJECTS` objects drawn with hollow markers. The y-range is
    fitted to the plotted intervals (stated in the title). A middle panel shows, per bin, the mean paired difference
    of each label against ``reference`` on the objects both scored (default: the first label); a lower panel the
    objects per bin. Returns the figure and the plotted numbers (see :func:`stats.size_curve`)."""
    curve = size_curve(binned, params, n_boot, seed)
    fig = Figure(figsize=(8.0, 7.5), layout="constrained")
    ax, diff_ax, counts_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [4, 2, 1]})
    colours = colours or label_colours(labels)
    reference = reference if reference in labels else (labels[0] if labels else None)
    for k, label in enumerate(labels):
        part = curve[curve["label"] == label].sort_values("rel_bin")
        if part.empty:
            continue
        colour = colours[label]
        is_random = label in random_labels
        marker, style = MARKERS[k % len(MARKERS)], LINESTYLES[k % len(LINESTYLES)]
        ax.plot(part["centre"], part["mean"], color=colour, linestyle="--" if is_random else style,
                label=label + (" — RANDOM-INIT" if is_random and "random-init" not in label else ""), marker=marker,
                ms=5, mfc=colour, mec=colour)
        few = part["n"] < FEW_OBJECTS
        ax.plot(part.loc[few, "centre"], part.loc[few, "mean"], marker, ms=5.5, mfc="white", mec=colour)
        ax.fill_between(part["centre"], part["ci_low"], part["ci_high"], color=colour, alpha=0.12, linewidth=0)
    _difference_panel(diff_ax, binned, params, labels, reference, colours, random_labels)
    ax.set_xscale("log")
    edges = params.relative_size_edges
    if curve.empty:
        ax.set_xlim(edges[0], edges[-1])
    else:
        ax.set_xlim(curve["lo_edge"].min(), curve["hi_edge"].max())
    y_lo, y_hi = _fitted_range(curve)
    ax.set_ylim(y_lo, y_hi)
    ax.set_ylabel("mean IoU (%)")
    ax.grid(True, which="major", alpha=0.3)
    band = ("image-clustered bootstrap" if n_boot > 0 else "Student-t") + " interval of the mean per bin"
    ax.set_title(f"IoU versus object size — {dataset}\nbands: 95 % {band}\nhollow markers: fewer than "
                 f"{FEW_OBJECTS} objects in the bin; y-range fitted to the data ({y_lo:g}–{y_hi:g} %)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no scored objects inside the size bins", transform=ax.transAxes, ha="center")
    per_bin = curve.groupby("rel_bin").agg(lo=("lo_edge", "first"), hi=("hi_edge", "first"), n=("n", "max"))
    for _, b in per_bin.iterrows():
        few = b["n"] < FEW_OBJECTS
        counts_ax.bar(b["lo"], b["n"], width=b["hi"] - b["lo"], align="edge", color="#d9a0a0" if few else "#a0b4d0",
                      edgecolor="white")
        counts_ax.text(np.sqrt(b["lo"] * b["hi"]), b["n"], str(int(b["n"])), ha="center", va="bottom", fontsize=7)
    counts_ax.set_ylim(0, max(1.0, float(per_bin["n"].max()) * 1.35) if len(per_bin) else 1.0)
    counts_ax.set_ylabel("objects", fontsize=8)
    counts_ax.set_xlabel("relative mask area (fraction of image; log bins, points at geometric centres)")
    ticks = [e for e in edges if ax.get_xlim()[0] <= e <= ax.get_xlim()[1]]
    counts_ax.set_xticks(ticks, [edge_label(e) for e in ticks], fontsize=7)
    counts_ax.minorticks_off()
    curve.insert(0, "dataset", dataset)
    return fig, curve


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: line styles of trained rows; plain dashes ("--") are kept for random-init rows
LINESTYLES = ("-", "-.", ":", (0, (8, 2, 1, 2, 1, 2)), (0, (1, 1)))


def _fitted_range(curve: pd.DataFrame) -> tuple[float, float]:
    """y-limits (IoU %) around the plotted means and intervals, padded by 5 points, in steps of 5, within 0..100."""
    values = pd.concat([curve["mean"], curve["ci_low"], curve["ci_high"]]).dropna() if len(curve) else pd.Series([])
    if values.empty:
        return 0.0, 100.0
    lo = max(0.0, 5 * np.floor((float(values.min()) - 5) / 5))
    hi = min(100.0, 5 * np.ceil((float(values.max()) + 5) / 5))
    return (lo, hi) if hi > lo else (0.0, 100.0)


def _difference_panel(ax, binned: pd.DataFrame, params: EvalParams, labels: list[str], reference: str | None,
                      colours: dict[str, tuple], random_labels: set[str]) -> None:
    """Per relative-size bin, mean IoU difference (points) of each label minus ``reference`` on the objects both
    scored (paired, like with like)."""
    n_rel = len(params.relative_size_edges) - 1
    edges = np.asarray(params.relative_size_edges)
    sel = binned[binned["rel_bin"].between(0, n_rel - 1) & binned["iou"].notna()]
    wide = sel.pivot_table(index="instance_index", columns="label", values="iou", aggfunc="first")
    bins = sel.drop_duplicates("instance_index").set_index("instance_index")["rel_bin"]
    ax.axhline(0, color="black", linewidth=0.8)
    drawn = False
    if reference is not None and reference in wide.columns:
        for k, label in enumerate(labels):
            if label == reference or label not in wide.columns:
                continue
            both = wide[[label, reference]].dropna()
            if both.empty:
                continue
            diff = (both[label] - both[reference]) * 100
            per_bin = diff.groupby(bins.loc[both.index]).mean()
            centres = [np.sqrt(edges[b] * edges[b + 1]) for b in per_bin.index]
            ax.plot(centres, per_bin.to_numpy(), color=colours[label], marker=MARKERS[k % len(MARKERS)], ms=4,
                    linestyle="--" if label in random_labels else LINESTYLES[k % len(LINESTYLES)])
            drawn = True
    ax.set_ylabel(f"Δ IoU vs\n{reference or '—'} (points)", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "one row only: no paired differences", transform=ax.transAxes, ha="center", fontsize=8)
