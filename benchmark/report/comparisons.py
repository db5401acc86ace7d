"""Report tables that compare rows object by object: IoU per category and paired differences between rows.

Both use the image-clustered bootstrap of :mod:`benchmark.report.bootstrap` (``n_boot`` replicates, seeded) and
only objects with a score (non-empty ground truth, valid prompt). Paired rows are compared on the objects both
scored, never on different subsets.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from benchmark.report.bootstrap import DEFAULT_BOOTSTRAP, holm, iou_interval, paired_comparison
from benchmark.report.runs import RANDOM_INIT, Combined
from benchmark.report.tables import MISSING, Table, fmt_num, fmt_signed

#: categories with fewer scored objects than this are pooled as "other"
MIN_CATEGORY_OBJECTS = 5
OTHER = "other"
CI_NOTE = ("[a, b]: 95 % percentile interval from an image-clustered bootstrap ({n_boot} replicates resampling "
           "images, seed {seed}; objects of one image are not independent).")


def _fmt_ci(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    if np.isnan(mean):
        return MISSING
    f = fmt_signed if signed else fmt_num
    return f"{f(mean)} [{f(lo)}, {f(hi)}]" if not np.isnan(lo) else f(mean)


def _scored(combined: Combined) -> pd.DataFrame:
    r = combined.records
    return r[~r["iou"].isna()]


def category_table(combined: Combined, dataset: str, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                   stem: str | None = None) -> Table:
    """Mean IoU (%) with its 95 % interval per category (rows, by object count) and model row (columns) on
    ``dataset``, the best row per category, and a note naming the categories where a weight-free reference beats
    every learned row. Categories with fewer than :data:`MIN_CATEGORY_OBJECTS` objects are pooled as "other"."""
    part = _scored(combined)
    part = part[part["dataset"] == dataset]
    labels = [lab for lab in combined.labels if (part["label"] == lab).any()]
    objects = part.drop_duplicates("instance_index").groupby("category").size().sort_values(
        ascending=False, kind="stable")
    small = set(objects[objects < MIN_CATEGORY_OBJECTS].index)
    part = part.assign(cat=part["category"].where(~part["category"].isin(small), OTHER))
    order = [c for c in objects.index if c not in small] + ([OTHER] if small else [])
    counts = part.drop_duplicates("instance_index").groupby("cat").size()
    kinds = {lab: combined.models[lab]["weights_kind"] for lab in labels}
    learned = combined.learned_labels(labels)
    free = combined.weight_free_labels(labels)
    data_rows, display_rows, beaten = [], [], []
    for cat in order:
        rows = part[part["cat"] == cat]
        row = {"dataset": dataset, "category": cat, "objects": int(counts.get(cat, 0)),
               "pooled": sorted(small) if cat == OTHER else []}
        shown = {"Category": cat + (f" ({len(small)} categories < {MIN_CATEGORY_OBJECTS} objects)"
                                    if cat == OTHER else ""), "Objects": str(row["objects"])}
        means = {}
        for lab in labels:
            ci = iou_interval(rows[rows["label"] == lab], n_boot, seed)
            means[lab] = ci.mean
            row |= {f"{lab} mean": ci.mean, f"{lab} lo": ci.lo, f"{lab} hi": ci.hi, f"{lab} n": ci.n}
            shown[lab] = (_fmt_ci(ci.mean, ci.lo, ci.hi) + (" (1 image: no interval)" if ci.clusters == 1 else "")
                          + (f" (n={ci.n})" if ci.n != row["objects"] and ci.n else ""))
        ranked = [lab for lab in labels if kinds[lab] != RANDOM_INIT and not combined.is_oracle(lab)
                  and not np.isnan(means[lab])]
        best = max(ranked, key=lambda lab: means[lab]) if ranked else None
        row["best"] = best
        shown["Best row"] = best or MISSING
        if learned and free and cat != OTHER:
            top_free = max(free, key=lambda lab: np.nan_to_num(means[lab], nan=-1))
            if all(means[top_free] > np.nan_to_num(means[lab], nan=-1) for lab in learned):
                beaten.append(f"{cat} ({top_free} {fmt_num(means[top_free])} vs best learned "
                              f"{fmt_num(max(means[lab] for lab in learned))})")
        data_rows.append(row)
        display_rows.append(shown)
    notes = ["Mean IoU (%) per category over the category's scored objects; " + CI_NOTE.format(n_boot=n_boot,
                                                                                               seed=seed),
             "Best row: highest mean among the rows with trained or no weights (random-init rows and oracle upper "
             "bounds are not ranked)."]
    if small:
        notes.append(f"other: {', '.join(sorted(small))}.")
    if learned and free:
        notes.append("A weight-free reference beats every learned row on: " + ("; ".join(beaten) if beaten
                                                                               else "no category") + ".")
    if objects.index.tolist() == ["unknown"]:
        notes.append("The dataset records no categories (converted by an older flipbench or the official "
                     "converter); re-convert it to see them.")
    return Table(name=f"categories_{stem or dataset}", title=f"IoU per category: {dataset}",
                 data=pd.DataFrame(data_rows), display=pd.DataFrame(display_rows), notes=notes)


def paired_table(combined: Combined, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Table:
    """Every pair of rows evaluated on the same dataset, on the objects both scored: mean IoU difference A − B
    (points) with its 95 % image-clustered interval, the share of objects where A or B is better, and the Wilcoxon
    signed-rank p-value over per-image mean differences, Holm-adjusted across all pairs of the table."""
    scored = _scored(combined)
    data_rows = []
    for dataset in combined.datasets:
        part = scored[scored["dataset"] == dataset]
        labels = [lab for lab in combined.labels if (part["label"] == lab).any()]
        wide = part.pivot_table(index="instance_index", columns="label", values="iou", aggfunc="first")
        images = part.drop_duplicates("instance_index").set_index("instance_index")["image_index"]
        for a, b in combinations(labels, 2):
            both = wide[[a, b]].dropna()
            res = paired_comparison(both[a].to_numpy() * 100, both[b].to_numpy() * 100,
                                    images.loc[both.index].to_numpy(), n_boot, seed)
            data_rows.append({"dataset": dataset, "a": a, "b": b, "objects": res.diff.n, "images": res.diff.clusters,
                              "objects_a": int(wide[a].notna().sum()), "objects_b": int(wide[b].notna().sum()),
                              "diff": res.diff.mean, "diff_lo": res.diff.lo, "diff_hi": res.diff.hi,
                              "a_wins": res.a_wins, "b_wins": res.b_wins, "p": res.p_value})
    data = pd.DataFrame(data_rows, columns=["dataset", "a", "b", "objects", "images", "objects_a", "objects_b",
                                            "diff", "diff_lo", "diff_hi", "a_wins", "b_wins", "p"])
    data["p_holm"] = holm(data["p"].tolist()) if len(data) else []
    display = pd.DataFrame([{
        "Dataset": r.dataset, "A": r.a, "B": r.b,
        "Shared objects": f"{r.objects}" + ("" if r.objects == r.objects_a == r.objects_b
                                            else f" (of {r.objects_a} / {r.objects_b})"),
        "A − B (IoU points)": _fmt_ci(r.diff, r.diff_lo, r.diff_hi, signed=True),
        "A better": f"{100 * r.a_wins:.1f} %" if not np.isnan(r.a_wins) else MISSING,
        "B better": f"{100 * r.b_wins:.1f} %" if not np.isnan(r.b_wins) else MISSING,
        "p (Holm)": _fmt_p(r.p_holm),
    } for r in data.itertuples()])
    random = {lab for lab in combined.labels if combined.models[lab]["weights_kind"] == RANDOM_INIT}
    notes = ["Each pair on the objects both rows scored (same dataset, same objects); A − B: mean of per-object "
             "IoU differences in points; " + CI_NOTE.format(n_boot=n_boot, seed=seed),
             "A/B better: share of shared objects where that row's IoU is higher (ties are the rest). p: Wilcoxon "
             "signed-rank test on per-image mean differences (images are the independent units), Holm-adjusted "
             f"across the {len(data)} pair(s) of this table."]
    if random:
        notes.append("⚠ random-init rows (" + ", ".join(sorted(random)) + ") are compared for completeness only.")
    flagged = [bool({r.a, r.b} & random) for r in data.itertuples()]
    return Table(name="paired_comparisons", title="Paired comparisons of rows on shared objects", data=data,
                 display=display, notes=notes, flagged=flagged)


def _fmt_p(p: float) -> str:
    if np.isnan(p):
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


#: COCO / LVIS object-size classes by absolute mask area (COCO detection evaluation; see :func:`coco_size_bin`)
COCO_SIZE_CLASSES = ("small", "medium", "large")


def coco_size_bin(mask_pixels: np.ndarray) -> np.ndarray:
    """``"small"`` / ``"medium"`` / ``"large"`` per object by absolute mask area (pixels), as COCO defines them
    (an area of exactly 32² is medium, exactly 96² is medium)."""
    area = np.asarray(mask_pixels, dtype=np.float64)
    return np.where(area < 32**2, "small", np.where(area <= 96**2, "medium", "large"))


def coco_size_table(combined: Combined, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Table:
    """Mean IoU (%) with its 95 % image-clustered interval per row, dataset and COCO size class (absolute mask
    area: small < 32² px, medium 32²–96², large > 96²), beside the relative-size bins of the other tables."""
    scored = _scored(combined)
    scored = scored.assign(coco_bin=coco_size_bin(scored["mask_pixels"].to_numpy()))
    data_rows, display_rows = [], []
    for label in combined.labels:
        shown = {"Model": label}
        for dataset in combined.datasets:
            part = scored[(scored["label"] == label) & (scored["dataset"] == dataset)]
            for name in COCO_SIZE_CLASSES:
                ci = iou_interval(part[part["coco_bin"] == name], n_boot, seed)
                data_rows.append({"label": label, "dataset": dataset, "size": name, "mean": ci.mean, "lo": ci.lo,
                                  "hi": ci.hi, "n": ci.n, "images": ci.clusters})
                column = f"{dataset} {name}" if len(combined.datasets) > 1 else name
                shown[column] = MISSING if ci.n == 0 else f"{_fmt_ci(ci.mean, ci.lo, ci.hi)} (n={ci.n})"
        display_rows.append(shown)
    notes = ["COCO size classes by absolute ground-truth mask area: small < 32² = 1,024 px, medium 32²–96², large "
             "> 96² = 9,216 px (as COCO and LVIS define them); the relative-size bins are in the tables above and "
             "the curves. " + CI_NOTE.format(n_boot=n_boot, seed=seed)]
    random = [lab for lab in combined.labels if combined.models[lab]["weights_kind"] == RANDOM_INIT]
    if random:
        notes.append("⚠ random-init weights: " + ", ".join(random) + " — IoUs are meaningless.")
    return Table(name="coco_size_bins", title="IoU by COCO size class (absolute mask area)",
                 data=pd.DataFrame(data_rows), display=pd.DataFrame(display_rows), notes=notes,
                 flagged=[lab in random for lab in combined.labels])
