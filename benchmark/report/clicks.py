"""The interactive-segmentation table of rows evaluated with ``--prompt clicks`` (RITM / SimpleClick metrics).

Per row and dataset, over the objects scored: mIoU after 1, 3 and 5 clicks, the mean number of clicks (NoC) to reach
IoU 85 % and 90 % (an object that never reaches it within ``max_clicks`` counts ``max_clicks``, RITM's convention), and
how many objects never reach each threshold (RITM's "NoF"). Every mean has its 95 % image-clustered bootstrap
interval (:mod:`benchmark.report.bootstrap`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.evaluation.prompts import clicks_to_reach
from benchmark.report.bootstrap import DEFAULT_BOOTSTRAP, cluster_bootstrap
from benchmark.report.comparisons import CI_NOTE, _fmt_ci
from benchmark.report.runs import RANDOM_INIT, Combined
from benchmark.report.tables import MISSING, Table

#: mIoU after this many clicks, and the NoC thresholds (IoU fractions), as RITM and SimpleClick report them
CLICKS_SHOWN = (1, 3, 5)
NOC_THRESHOLDS = (0.85, 0.90)


def click_metrics(click_ious: list, max_clicks: int) -> dict[str, float]:
    """IoU after each of :data:`CLICKS_SHOWN` clicks and NoC / reached per :data:`NOC_THRESHOLDS` of one object
    (``click_ious``: IoU after click 1, 2, ...)."""
    ious = np.asarray(click_ious, dtype=np.float64)
    out: dict[str, float] = {}
    for k in CLICKS_SHOWN:
        out[f"miou_{k}"] = float(ious[k - 1]) if len(ious) >= k else np.nan
    for thr in NOC_THRESHOLDS:
        noc, reached = clicks_to_reach(ious, thr, max_clicks)
        out[f"noc_{round(thr * 100)}"] = noc
        out[f"reached_{round(thr * 100)}"] = float(reached)
    return out


def clicks_table(combined: Combined, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Table | None:
    """The NoC table of the report's clicks rows (None when there are none)."""
    labels = combined.prompted_labels("clicks")
    if not labels:
        return None
    records = combined.records
    data_rows, display_rows = [], []
    for label in labels:
        max_clicks = int(combined.models[label].get("max_clicks", 20))
        for dataset in combined.datasets:
            part = records[(records["label"] == label) & (records["dataset"] == dataset) & records["iou"].notna()]
            part = part[part["click_ious"].map(lambda v: v is not None and len(v) > 0)]
            if part.empty:
                continue
            metrics = pd.DataFrame([click_metrics(v, max_clicks) for v in part["click_ious"]], index=part.index)
            images = part["image_index"].to_numpy()
            row = {"label": label, "dataset": dataset, "objects": len(part), "max_clicks": max_clicks}
            shown = {"Model": label, "Dataset": dataset, "Objects": str(len(part))}
            for k in CLICKS_SHOWN:
                ci = cluster_bootstrap(metrics[f"miou_{k}"].to_numpy() * 100, images, n_boot, seed)
                row |= {f"miou_{k}": ci.mean, f"miou_{k}_lo": ci.lo, f"miou_{k}_hi": ci.hi}
                shown[f"mIoU@{k} (%)"] = _fmt_ci(ci.mean, ci.lo, ci.hi)
            for thr in NOC_THRESHOLDS:
                t = round(thr * 100)
                ci = cluster_bootstrap(metrics[f"noc_{t}"].to_numpy(), images, n_boot, seed)
                failed = int((metrics[f"reached_{t}"] == 0).sum())
                row |= {f"noc_{t}": ci.mean, f"noc_{t}_lo": ci.lo, f"noc_{t}_hi": ci.hi, f"never_{t}": failed}
                shown[f"NoC@{t}"] = _fmt_ci(ci.mean, ci.lo, ci.hi)
                shown[f"Never {t} %"] = f"{failed} of {len(part)}"
            data_rows.append(row)
            display_rows.append(shown)
    random = [lab for lab in labels if combined.models[lab]["weights_kind"] == RANDOM_INIT]
    notes = [f"Clicks simulated as RITM does (each at the interior-most pixel of the larger error, positive in a "
             f"missed region, negative in a false one; the model gets its previous logits where it takes them), up to "
             f"the run's maximum (20 unless the row says otherwise). mIoU@k: mean IoU after k clicks. NoC@t: mean "
             f"number of clicks to reach IoU t %; an object that never does counts the maximum. Never t %: objects "
             f"that never reach it. "
             + CI_NOTE.format(n_boot=n_boot, seed=seed),
             "The other tables show these rows' IoU after the last click."]
    if random:
        notes.append("⚠ random-init weights: " + ", ".join(random) + " — the numbers test the pipeline only.")
    display = pd.DataFrame(display_rows) if display_rows else pd.DataFrame([{"Model": MISSING}])
    return Table(name="clicks_noc", title="Interactive segmentation: mIoU after k clicks and NoC", data=pd.DataFrame(
        data_rows), display=display, notes=notes, flagged=[r["label"] in random for r in data_rows] or [False])
