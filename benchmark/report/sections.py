"""The report's tables, built from combined runs: IoU per dataset (Table 1 style), small objects (Table 3
style), ours versus the paper's Tables 1 and 3 per dataset and mode, costs and speed-ups next to the paper's,
timing and the list of runs with their provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report.paper import (
    ALL_OBJECTS,
    SMALL_OBJECTS,
    PaperTables,
    comparison_rows,
    load_paper_tables,
    paper_speedup,
)
from benchmark.report.bootstrap import iou_interval
from benchmark.report.runs import RANDOM_INIT, Combined
from benchmark.report.stats import DDOF, iou_summary, per_dataset_table, small_objects
from benchmark.report.tables import MISSING, Table, fmt_mean_std, fmt_num, fmt_signed
from benchmark.report.timing import (
    STAGE_COLUMNS,
    choose_reference,
    overall_time_per_object,
    speedup_versus,
    timing_table,
)

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


def _time_column(combined: Combined, labels: list[str], what: str = "Time / object") -> tuple[str, dict[str, str]]:
    """Header of a column of our times, naming the device, and a per-label cell suffix when devices differ."""
    devices = {label: combined.device_text(label) for label in labels}
    if len(set(devices.values())) <= 1:
        return f"{what} (ms, ours: {next(iter(devices.values()), '?')})", dict.fromkeys(labels, "")
    return f"{what} (ms, ours)", {label: f" ({device})" for label, device in devices.items()}


def _with_n(text: str, n: float) -> str:
    """``"83.51 ± 7.52 (n=36)"``: every number of ours is shown with the number of objects behind it."""
    return text if text == MISSING else f"{text} (n={int(n)})"


def iou_table(combined: Combined, records: pd.DataFrame, name: str, title: str, with_costs: bool,
              n_boot: int = 0, seed: int = 0) -> Table:
    """Mean ± std IoU per label x dataset plus the average (and, ``with_costs``, parameters and time); with
    ``n_boot`` > 0 each mean also gets its 95 % image-clustered bootstrap interval ``[lo, hi]``."""
    labels, datasets = combined.labels, combined.datasets
    wide = per_dataset_table(records, labels, datasets)
    n_total = wide["n"].sum(axis=1, min_count=1)
    time_ms = overall_time_per_object(combined.records) if with_costs else None
    time_header, time_suffix = _time_column(combined, labels)
    data_rows, display_rows = [], []
    for label in labels:
        info = combined.models[label]
        row = {"label": label, "model": info["model"], "mode": info.get("mode"), "weights_kind": info["weights_kind"],
               "protocol_hash": info["protocol_hash"]}
        shown = {"Model": label}
        for d in datasets:
            mean, std, n = wide["mean"].at[label, d], wide["std"].at[label, d], wide["n"].at[label, d]
            row |= {f"{d} mean": mean, f"{d} std": std, f"{d} n": n, f"{d} gt_empty": wide["n_gt_empty"].at[label, d]}
            text = fmt_mean_std(mean, std)
            if n_boot > 0:
                mine = records[(records["label"] == label) & (records["dataset"] == d)]
                ci = iou_interval(mine, n_boot, seed)
                row |= {f"{d} lo": ci.lo, f"{d} hi": ci.hi}
                if not np.isnan(ci.lo):
                    text += f" [{fmt_num(ci.lo)}, {fmt_num(ci.hi)}]"
            shown[d] = _with_n(text, n)
        k = int(wide["mean"].at[label, "datasets"])
        avg = wide["mean"].at[label, "average"]
        row |= {"average": avg, "average_datasets": k, "objects": n_total.get(label, np.nan)}
        if len(datasets) > 1:
            shown["Average"] = fmt_num(avg) + ("" if k == len(datasets) or np.isnan(avg) else f" ({k}/{len(datasets)})")
        shown["Scored objects"] = fmt_num(n_total.get(label, np.nan), 0)
        if with_costs:
            params = info.get("parameters")
            row["params_m"] = params / 1e6 if params is not None else np.nan
            row["time_ms_median"] = time_ms.get(label, np.nan)
            row["time_device"] = combined.device_text(label)
            shown["Params (M)"] = fmt_num(row["params_m"])
            shown[time_header] = fmt_num(row["time_ms_median"]) + time_suffix[label]
        data_rows.append(row)
        display_rows.append(shown)
    notes = [IOU_NOTE + " (n=…): objects behind the number."]
    if n_boot > 0:
        notes.append(f"[a, b]: 95 % percentile interval of the mean from an image-clustered bootstrap ({n_boot} "
                     f"replicates resampling images, seed {seed}).")
    if len(datasets) > 1:
        notes.append(AVERAGE_NOTE)
    skipped = int(np.nansum(wide["n_gt_empty"].to_numpy(dtype=float)))
    if skipped:
        notes.append(f"{skipped} object(s) with an empty ground-truth mask are not scored.")
    if with_costs:
        notes.append("Time / object: median of t_total over all the model's objects (all datasets), warm-up and "
                     "empty-GT objects excluded, measured where the column says; see the timing table for stages.")
    notes += _flag_notes(combined, labels)
    return Table(name=name, title=title, data=pd.DataFrame(data_rows), display=pd.DataFrame(display_rows),
                 notes=notes, flagged=_flags(combined, labels))


def table1(combined: Combined, n_boot: int = 0, seed: int = 0) -> Table:
    return iou_table(combined, combined.records, "table1_iou",
                     "Table 1 style: mean ± std IoU (%) per dataset, parameters and time per object", True,
                     n_boot, seed)


def table3(combined: Combined, n_boot: int = 0, seed: int = 0) -> Table:
    threshold = combined.params.small_object_threshold
    table = iou_table(combined, small_objects(combined.records, combined.params), "table3_small_objects",
                      f"Table 3 style: small objects (relative mask area < {threshold:g}), mean ± std IoU (%)", False,
                      n_boot, seed)
    table.notes.insert(0, f"Small: relative mask area (mask pixels / image pixels) strictly below {threshold:g} "
                          "(EvalParams.small_object_threshold).")
    return table


def _reference(combined: Combined, reference: str, paper: PaperTables) -> tuple[str | None, str]:
    """The speed-up reference over all datasets (:func:`choose_reference`; labels the paper has a row for are
    preferred among equally large models) and its explanation."""
    overall = overall_time_per_object(combined.records)
    per_model = pd.DataFrame({"label": combined.labels,
                              "total_median_ms": [overall.get(lab, np.nan) for lab in combined.labels]})
    return choose_reference(per_model, combined.models, reference, _paper_labels(combined, paper))


def _paper_labels(combined: Combined, paper: PaperTables) -> set[str]:
    return {lab for lab, m in combined.models.items() if paper.label_for(m)}


def paper_table(combined: Combined, paper: PaperTables | None = None, small: bool = False, n_boot: int = 0,
                seed: int = 0) -> Table:
    """Ours next to the paper's Table 1 (all objects) or Table 3 (``small``), per dataset and mode; with ``n_boot``
    > 0 our mean gets its 95 % image-clustered interval and a column says whether the paper's mean lies in it."""
    paper = paper or load_paper_tables()
    records = small_objects(combined.records, combined.params) if small else combined.records
    table_key, name = (SMALL_OBJECTS, "paper_small_objects") if small else (ALL_OBJECTS, "paper_comparison")
    data = comparison_rows(paper, table_key, combined.models, iou_summary(records, ["label", "dataset"]),
                           combined.datasets)
    display_rows, lows, highs, inside = [], [], [], []
    for _, r in data.iterrows():
        average = r["dataset"] == paper.average
        ci = None
        if n_boot > 0 and not average:
            mine = records[(records["label"] == r["label"]) & (records["dataset"] == r["dataset"])]
            ci = iou_interval(mine, n_boot, seed)
        lo, hi = (ci.lo, ci.hi) if ci is not None else (np.nan, np.nan)
        ours = fmt_mean_std(r["mean"], r["std"]) + ("" if np.isnan(lo) else f" [{fmt_num(lo)}, {fmt_num(hi)}]")
        within = (MISSING if np.isnan(lo) or pd.isna(r["paper_mean"])
                  else "yes" if ci.contains(r["paper_mean"]) else "no")
        lows.append(lo)
        highs.append(hi)
        inside.append(within)
        shown = {
            "Model": r["label"], "Paper row": r["paper_label"],
            "Dataset": (f"{paper.average} of the six" if average else f"{r['dataset']} → {r['paper_dataset']}"),
            "Ours: mean ± std (%)": _with_n(ours, r["n"]),
            "Paper: mean ± std (%)": fmt_mean_std(r["paper_mean"], r["paper_std"]),
            "Δ mean (ours − paper)": fmt_signed(r["diff"]),
        }
        if n_boot > 0:
            shown["Paper inside our 95 % interval"] = within
        display_rows.append(shown)
    if n_boot > 0:
        data = data.assign(lo=lows, hi=highs, paper_inside=inside)
    which = ("Table 3 (small objects, below 1 % of the image area)" if small else "Table 1 (all objects)")
    notes = [
        f"Paper: {which} of {paper.citation}, stored in benchmark/report/paper_tables.csv "
        "(provenance: paper_tables.json).",
        "Δ only for the same model, FLIP mode and dataset: the paper's FLIPh rows are compared with hierarchical "
        "runs, its FLIP rows with window runs (the official reproduction command's --optimized mode); full-mode "
        "runs have no paper row. The paper's Average (six datasets) is compared only with a model run on all six.",
        "Our datasets are matched to the paper's by name; the paper evaluated its own splits, so a Δ on a small "
        "sample says little (see n).",
    ]
    if n_boot > 0:
        notes.append(f"[a, b]: 95 % percentile interval of our mean (image-clustered bootstrap, {n_boot} replicates, "
                     f"seed {seed}); 'Paper inside' says whether the paper's mean lies in it (a sampling check on "
                     "our objects, not a test on the paper's own split).")
    if small:
        notes.append(f"Ours: objects with relative mask area < {combined.params.small_object_threshold:g}.")
    without = [lab for lab in combined.labels if lab not in set(data["label"])]
    if without:
        notes.append("No paper row (or no matching dataset) for: " + ", ".join(without) + ".")
    unmatched = [d for d in combined.datasets if paper.paper_dataset(d) is None]
    if unmatched:
        notes.append("Datasets the paper does not have: " + ", ".join(unmatched) + ".")
    notes += _flag_notes(combined, list(data["label"]))
    title = ("Small objects: ours versus the paper's Table 3, per dataset" if small
             else "Ours versus the paper's Table 1, per dataset")
    columns = ["Model", "Paper row", "Dataset", "Ours: mean ± std (%)", "Paper: mean ± std (%)",
               "Δ mean (ours − paper)"] + (["Paper inside our 95 % interval"] if n_boot > 0 else [])
    return Table(name=name, title=title, data=data, display=pd.DataFrame(display_rows, columns=columns),
                 notes=notes, flagged=_flags(combined, list(data["label"])))


def costs_table(combined: Combined, reference: str, paper: PaperTables | None = None) -> Table:
    """Parameters, time per object and speed-ups: ours (same runs) next to the paper's, each with its device."""
    paper = paper or load_paper_tables()
    labels = combined.labels
    ref_label, ref_note = _reference(combined, reference, paper)
    speedup = speedup_versus(combined.records, ref_label) if ref_label else pd.Series(dtype=float)
    time_ms = overall_time_per_object(combined.records)
    ref_paper = paper.label_for(combined.models[ref_label]) if ref_label else None
    time_header, time_suffix = _time_column(combined, labels)
    device = paper.meta["time_device"]
    on_gpu = bool(labels) and all(combined.device_text(lab).startswith("GPU") for lab in labels)
    rows, display_rows = [], []
    for label in labels:
        info = combined.models[label]
        paper_label = paper.label_for(info)
        params = info.get("parameters")
        row = {"label": label, "paper_label": paper_label,
               "ours_params_m": params / 1e6 if params is not None else np.nan,
               "paper_params_m": paper.params_m(paper_label),
               "ours_time_ms": float(time_ms.get(label, np.nan)), "ours_time_device": combined.device_text(label),
               "paper_time_ms": paper.time_ms(ALL_OBJECTS, paper_label), "paper_time_device": device,
               "reference": ref_label, "ours_speedup": float(speedup.get(label, np.nan)),
               "paper_speedup": paper_speedup(paper, paper_label, ref_paper)}
        rows.append(row)
        display_rows.append({
            "Model": label, "Paper row": paper_label or MISSING,
            "Params (M): ours": fmt_num(row["ours_params_m"]), "Params (M): paper": fmt_num(row["paper_params_m"]),
            time_header: fmt_num(row["ours_time_ms"]) + time_suffix[label],
            f"Time / object (ms, paper: {device})": fmt_num(row["paper_time_ms"]),
            f"Speed-up vs {ref_label or MISSING}: ours (same runs)": _times(row["ours_speedup"]),
            **({f"Speed-up vs {ref_label or MISSING}: paper ({device})": _times(row["paper_speedup"])}
               if on_gpu else {}),
        })
    notes = [
        f"Reference: {ref_note}." if ref_label else ref_note,
        "Our speed-up: ratio of median times per object of the reference and the model, measured in the same runs "
        "on the datasets both ran on (warm-up and empty-GT objects excluded). The paper's speed-up: ratio of its "
        f"published times (Table 1, {device}) of the same two rows; shown only when the paper has both.",
        f"Milliseconds are not comparable across devices (ours: where the column says; the paper's: {device}).",
        ("The paper's speed-ups stand beside ours because every row here was timed on a GPU; they are still "
         "another GPU model and software stack." if on_gpu else
         f"The paper's speed-ups ({device}) are left out: these rows were not all timed on a GPU, and speed-ups "
         "do not carry across devices (a CPU and a GPU scale attention, memory traffic and batching differently), "
         "so our CPU ratio and the paper's GPU ratio measure different things. They are in costs.csv "
         "(paper_speedup); run on a GPU to compare them."),
    ]
    notes += _flag_notes(combined, labels)
    return Table(name="costs", title="Parameters, time per object and speed-ups: ours versus the paper",
                 data=pd.DataFrame(rows), display=pd.DataFrame(display_rows), notes=notes,
                 flagged=_flags(combined, labels))


def _times(value: float) -> str:
    return MISSING if np.isnan(value) else f"{value:.2f}×"


def timing_section(combined: Combined, reference: str, paper: PaperTables | None = None) -> Table:
    """Per dataset and model: median / p90 ms per object of each stage, speed-up within the dataset."""
    paper = paper or load_paper_tables()
    data, ref_notes = timing_table(combined.records, combined.models, reference, _paper_labels(combined, paper))
    data.insert(2, "device", [combined.device_text(lab) for lab in data["label"]])
    display_rows = []
    for _, r in data.iterrows():
        shown = {"Model": r["label"], "Dataset": r["dataset"], "Device": r["device"],
                 "Timed objects": str(int(r["n_timed"]))}
        for stage in STAGE_COLUMNS:
            shown[f"{stage} (ms) median / p90"] = (f"{fmt_num(r[f'{stage}_median_ms'])} / "
                                                   f"{fmt_num(r[f'{stage}_p90_ms'])}")
        shown["Speed-up"] = _times(r["speedup"])
        display_rows.append(shown)
    notes = [
        "Milliseconds per object on the device of each row: each image-level stage time is divided among the "
        "image's objects. median / p90 over objects (numpy linear interpolation); warm-up objects (first "
        f"{combined.params.timing_warmup_images} images of each model and session) and objects with an empty "
        "ground-truth mask (the model is not run) are excluded.",
        "Stages: data (decode), preprocess (resize, normalise, FLIP patch sampling), encoder, decoder, "
        "postprocess; total = t_total.",
        "Speed-up: reference median total / model median total, within the same dataset; "
        + "; ".join(f"{d}: {n}" for d, n in ref_notes.items()) + ".",
    ]
    all_warm = data[data["n_timed"] == 0]["label"].tolist()
    if all_warm:
        notes.append("No timed objects (all warm-up or empty GT) for: " + ", ".join(all_warm))
    notes += _flag_notes(combined, list(data["label"]))
    return Table(name="timing", title="Timing per object by stage (ms)", data=data,
                 display=pd.DataFrame(display_rows), notes=notes, flagged=_flags(combined, list(data["label"])))


def _objects_text(run) -> str:
    """Distinct objects the run recorded, against the dataset's count: "596 of 1,408"."""
    done = int(run.records["instance_index"].nunique())
    total = run.dataset_objects
    return f"{done:,}" if total is None or total == done else f"{done:,} of {total:,}"


def runs_table(combined: Combined) -> Table:
    """One row per run directory: dataset, model rows, FLIP mode (of its FLIP rows), device, threads, versions,
    protocol hash."""
    rows = []
    for run in combined.runs:
        env, dataset = run.environment(), run.meta.get("dataset") or {}
        labels = pd.unique(combined.records.loc[combined.records["run_dir"] == str(run.path), "label"])
        modes = list(dict.fromkeys(combined.models[lab]["mode"] for lab in labels if combined.models[lab]["mode"]))
        rows.append({
            "Run": str(run.path), "Dataset": str(dataset.get("name", MISSING)),
            "File": str(dataset.get("path", MISSING)), "Fingerprint": str(dataset.get("fingerprint", MISSING))[:23],
            "Model rows": ", ".join(labels), "FLIP mode": ", ".join(modes) or MISSING, "Device": env["device"],
            "Threads": env["threads"], "Git": env["git"], "flipbench": env["flipbench"], "torch": env["torch"],
            "Protocol": run.protocol_hash, "Status": run.status,
            "Objects": _objects_text(run), "Records": str(len(run.records)),
        })
    frame = pd.DataFrame(rows)
    # the dataset file and fingerprint go below the table (full in runs.csv): the table fits a 1,400-px page
    display = frame
    if len(frame):
        display = frame.drop(columns=["File", "Fingerprint", "Threads", "flipbench", "torch", "Git"]).assign(
            Device=[f"{d}, {t} threads" for d, t in zip(frame["Device"], frame["Threads"])])
        display.insert(display.columns.get_loc("Device") + 1, "flipbench / torch / git",
                       [f"{f} / {t} / {g}" for f, t, g in zip(frame["flipbench"], frame["torch"], frame["Git"])])
    files = list(dict.fromkeys(f"{r['Dataset']}: {r['File']} ({r['Fingerprint']}…)" for r in rows))
    return Table(name="runs", title="Runs in this report (provenance)", data=frame, display=display,
                 notes=["Dataset files (fingerprint): " + "; ".join(files) + "." if files else "No runs.",
                        "Protocol: hash of EvalParams (see the parameters below). Runs whose protocols differ only "
                        "in the FLIP mode are reported together, each FLIP row named by its mode; other "
                        "differences are refused unless --allow-mixed-protocols.",
                        "Status: the run's last session (a session left running by a process that is gone reads "
                        "'interrupted (process gone)'). Objects: distinct objects recorded (of the dataset's); "
                        "Records: one per object and model row."])
