"""The report's tables, built from combined runs: IoU per dataset (Table 1 style), small objects (Table 3
style), paper comparison, timing and the list of runs with their provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report.paper import PaperResults, comparison_table, load_paper_results
from benchmark.report.runs import RANDOM_INIT, Combined
from benchmark.report.stats import DDOF, per_dataset_table, small_objects
from benchmark.report.tables import MISSING, Table, fmt_mean_std, fmt_num, fmt_signed
from benchmark.report.timing import STAGE_COLUMNS, overall_time_per_object, speedup_versus, timing_table

IOU_NOTE = (f"IoU in percent over objects with a non-empty ground-truth mask; mean ± sample std (ddof={DDOF}) "
            "over objects; a single object shows its value alone.")
AVERAGE_NOTE = ("Average: unweighted mean of the per-dataset means over the datasets the model was evaluated on "
                "(shown as k/N when it misses some).")


def _flags(combined: Combined, labels: list[str]) -> list[bool]:
    return [combined.models[lab]["weights_kind"] == RANDOM_INIT or combined.mixed_protocols for lab in labels]


def _flag_notes(combined: Combined, labels: list[str]) -> list[str]:
    notes = []
    random = [lab for lab in labels if combined.models[lab]["weights_kind"] == RANDOM_INIT]
    if random:
        notes.append("⚠ random-init weights (no checkpoint): " + ", ".join(random)
                     + " — IoUs are meaningless; only parameters and timing are informative.")
    if combined.mixed_protocols:
        notes.append("⚠ rows come from runs with different protocols ([protocol <hash>]); do not compare them "
                     "as equals.")
    return notes


def iou_table(combined: Combined, records: pd.DataFrame, name: str, title: str, with_costs: bool) -> Table:
    """Mean ± std IoU per label x dataset plus the average (and, ``with_costs``, parameters and time)."""
    labels, datasets = combined.labels, combined.datasets
    wide = per_dataset_table(records, labels, datasets)
    n_total = wide["n"].sum(axis=1, min_count=1)
    time_ms = overall_time_per_object(combined.records) if with_costs else None
    data_rows, display_rows = [], []
    for label in labels:
        info = combined.models[label]
        row = {"label": label, "model": info["model"], "weights_kind": info["weights_kind"],
               "protocol_hash": info["protocol_hash"]}
        shown = {"Model": label}
        for d in datasets:
            mean, std, n = wide["mean"].at[label, d], wide["std"].at[label, d], wide["n"].at[label, d]
            row |= {f"{d} mean": mean, f"{d} std": std, f"{d} n": n, f"{d} gt_empty": wide["n_gt_empty"].at[label, d]}
            shown[d] = fmt_mean_std(mean, std)
        k = int(wide["mean"].at[label, "datasets"])
        avg = wide["mean"].at[label, "average"]
        row |= {"average": avg, "average_datasets": k, "objects": n_total.get(label, np.nan)}
        shown["Average"] = fmt_num(avg) + ("" if k == len(datasets) or np.isnan(avg) else f" ({k}/{len(datasets)})")
        shown["Scored objects"] = fmt_num(n_total.get(label, np.nan), 0)
        if with_costs:
            params = info.get("parameters")
            row["params_m"] = params / 1e6 if params is not None else np.nan
            row["time_ms_median"] = time_ms.get(label, np.nan)
            shown["Params (M)"] = fmt_num(row["params_m"])
            shown["Time / object (ms)"] = fmt_num(row["time_ms_median"])
        data_rows.append(row)
        display_rows.append(shown)
    notes = [IOU_NOTE, AVERAGE_NOTE]
    skipped = int(np.nansum(wide["n_gt_empty"].to_numpy(dtype=float)))
    if skipped:
        notes.append(f"{skipped} object(s) with an empty ground-truth mask are not scored.")
    if with_costs:
        notes.append("Time / object: median of t_total over all the model's objects (all datasets), warm-up and "
                     "empty-GT objects excluded; see the timing table for per-dataset stages.")
    notes += _flag_notes(combined, labels)
    return Table(name=name, title=title, data=pd.DataFrame(data_rows), display=pd.DataFrame(display_rows),
                 notes=notes, flagged=_flags(combined, labels))


def table1(combined: Combined) -> Table:
    return iou_table(combined, combined.records, "table1_iou",
                     "Table 1 style: mean ± std IoU (%) per dataset, parameters and time per object", True)


def table3(combined: Combined) -> Table:
    threshold = combined.params.small_object_threshold
    table = iou_table(combined, small_objects(combined.records, combined.params), "table3_small_objects",
                      f"Table 3 style: small objects (relative mask area < {threshold:g}), mean ± std IoU (%)", False)
    table.notes.insert(0, f"Small: relative mask area (mask pixels / image pixels) strictly below {threshold:g} "
                          "(EvalParams.small_object_threshold).")
    table.notes.append("The paper's small-object numbers (its Table 3) could not be verified from a source and are "
                       "not shown (see paper_results.json, 'unverified').")
    return table


def paper_table(combined: Combined, paper: PaperResults | None = None) -> Table:
    """Ours next to the paper's published numbers with differences (ours - paper)."""
    paper = paper or load_paper_results()
    wide = per_dataset_table(combined.records, combined.labels, combined.datasets)["mean"]
    time_ms = overall_time_per_object(combined.records)
    sam_h = next((label for label, m in combined.models.items() if m["model"] == "sam-h"), None)
    speedup = speedup_versus(combined.records, sam_h) if sam_h else None
    data = comparison_table(combined.models, wide, combined.datasets, time_ms, speedup, paper)
    # a dataset column pair is shown only when the paper has a number for it (the average always)
    iou_keys = [c[len("iou["):-1] for c in data.columns if c.startswith("iou[")]
    iou_keys = [k for k in iou_keys if k == "average" or data[f"paper_iou[{k}]"].notna().any()]
    display_rows = []
    for _, r in data.iterrows():
        shown = {"Model": r["label"], "Paper row": MISSING if pd.isna(r["paper_label"]) else r["paper_label"]}
        for key in iou_keys:
            name = "Average" if key == "average" else key
            paper_val = r[f"paper_iou[{key}]"]
            shown[f"{name}: ours"] = fmt_num(r[f"iou[{key}]"])
            shown[f"{name}: paper"] = fmt_num(paper_val) if not np.isnan(paper_val) else "n/a"
            shown[f"{name}: Δ"] = fmt_signed(r[f"diff_iou[{key}]"])
        shown["Datasets covered"] = r["coverage"]
        shown["Params (M): ours / paper"] = f"{fmt_num(r['ours_params_m'])} / {fmt_num(r['paper_params_m'])}"
        shown["Time (ms): ours / paper"] = f"{fmt_num(r['ours_time_ms'])} / {fmt_num(r['paper_time_ms'])}"
        shown["Speed-up vs SAM-H: ours / paper"] = (f"{fmt_num(r['ours_speedup_vs_sam_h'], 1)} / "
                                                    f"{fmt_num(r['paper_speedup_vs_sam_h'], 1)}")
        shown["Source"] = r["sources"] or MISSING  # "" when the paper has no row for the model
        display_rows.append(shown)
    notes = [
        "Paper numbers: arXiv 2502.02763 v2 as published in the official README / project page (sources below); "
        "'n/a' = not stored because it could not be verified from a source.",
        "The paper's average is over six datasets (Hypersim, KITTI-360, OpenImages, COCO, LVIS, ObjaScale); "
        "'Datasets covered' says how many of them our average spans: the Δ of the average is like-for-like "
        "only at 6/6.",
        "Times were measured on different hardware; compare ratios (speed-ups), not milliseconds. Our time: median "
        "t_total per object over all the model's datasets, warm-up and empty-GT objects excluded; our speed-up "
        "versus SAM-H: ratio of "
        "median times over the datasets both were run on ("
        + (f"reference row: {sam_h})." if sam_h else "SAM-H is not in these runs, so — )."),
        "Per-dataset columns appear only where the paper's per-dataset number is stored; the CSV has ours for "
        "every dataset.",
    ] + [f"Unverified (missing here): {u}" for u in paper.unverified]
    notes += [f"Source {k}: {v['url']}" for k, v in paper.sources.items()]
    notes += _flag_notes(combined, combined.labels)
    return Table(name="paper_comparison", title="Ours versus the paper's published numbers",
                 data=data, display=pd.DataFrame(display_rows), notes=notes,
                 flagged=_flags(combined, combined.labels))


def timing_section(combined: Combined, reference: str) -> Table:
    """Per dataset and model: median / p90 ms per object of each stage, speed-up within the dataset."""
    data, ref_notes = timing_table(combined.records, combined.models, reference)
    display_rows = []
    for _, r in data.iterrows():
        shown = {"Model": r["label"], "Dataset": r["dataset"], "Timed objects": str(int(r["n_timed"]))}
        for stage in STAGE_COLUMNS:
            shown[f"{stage} median / p90"] = f"{fmt_num(r[f'{stage}_median_ms'])} / {fmt_num(r[f'{stage}_p90_ms'])}"
        shown["Speed-up"] = (fmt_num(r["speedup"], 1) + "×") if not np.isnan(r["speedup"]) else MISSING
        display_rows.append(shown)
    envs = [run.environment() for run in combined.runs]
    devices = sorted({f"{e['device']} ({e['threads']} threads)" for e in envs})
    notes = [
        "Milliseconds per object: each image-level stage time is divided among the image's objects. "
        "median / p90 over objects (numpy linear interpolation); warm-up objects (first "
        f"{combined.params.timing_warmup_images} images of each model and session) and objects with an empty "
        "ground-truth mask (the model is not run) are excluded.",
        "Stages: data (decode), preprocess (resize, normalise, FLIP patch sampling), encoder, decoder, "
        "postprocess; total = t_total.",
        "Speed-up: reference median total / model median total, within the same dataset. "
        + "; ".join(f"{d}: {n}" for d, n in ref_notes.items()),
        "Device (torch threads): " + " | ".join(devices),
    ]
    all_warm = data[data["n_timed"] == 0]["label"].tolist()
    if all_warm:
        notes.append("No timed objects (all warm-up or empty GT) for: " + ", ".join(all_warm))
    notes += _flag_notes(combined, list(data["label"]))
    return Table(name="timing", title="Timing per object by stage (ms)", data=data,
                 display=pd.DataFrame(display_rows), notes=notes, flagged=_flags(combined, list(data["label"])))


def runs_table(combined: Combined) -> Table:
    """One row per run directory: dataset, models, device, threads, versions, protocol hash."""
    rows = []
    for run in combined.runs:
        env, dataset = run.environment(), run.meta.get("dataset") or {}
        models = ", ".join(f"{name} ({m.get('weights_kind')})" for name, m in run.models.items())
        rows.append({
            "Run": str(run.path), "Dataset": str(dataset.get("name", MISSING)),
            "File": str(dataset.get("path", MISSING)), "Fingerprint": str(dataset.get("fingerprint", MISSING))[:23],
            "Models": models, "Device": env["device"], "Threads": env["threads"], "Git": env["git"],
            "flipbench": env["flipbench"], "torch": env["torch"], "Protocol": run.protocol_hash,
            "Objects": str(len(run.records)),
        })
    frame = pd.DataFrame(rows)
    return Table(name="runs", title="Runs in this report (provenance)", data=frame, display=frame,
                 notes=["Protocol: hash of EvalParams (see the parameters below); runs with different hashes "
                        "are refused unless --allow-mixed-protocols."])
