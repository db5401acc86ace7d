"""Build a report directory from run directories.

Writes into ``out_dir``: ``table1_iou``, ``table3_small_objects``, ``paper_comparison`` (Table 1 per dataset),
``paper_small_objects`` (Table 3 per dataset), ``costs``, ``timing``, ``runs``, ``paired_comparisons``,
``coco_size_bins`` and per
dataset ``categories_<dataset>`` as ``.md`` / ``.csv`` / ``.tex``;
per dataset ``heatmap_<dataset>``, ``heatmap_difference_<dataset>`` (paired differences against the first learned
row; both heat maps only where image sizes vary enough) and ``iou_vs_size_<dataset>`` as ``.png`` / ``.svg`` and
``gallery_<dataset>.png`` (when masks and the dataset file are there); ``size_curves.csv``, ``heatmap_cells.csv`` and
``heatmap_difference_cells.csv`` (the plotted numbers);
``report.md``; ``report.html`` (self-contained) and ``summary.json`` (inputs, protocol, warnings, files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmark import __version__
from benchmark.report import sections
from benchmark.report.bootstrap import DEFAULT_BOOTSTRAP
from benchmark.report.clicks import clicks_table
from benchmark.report.comparisons import category_table, coco_size_table, paired_table
from benchmark.report.figures import (curve_figure, heatmap_difference_figure, heatmap_figure, label_colours, save,
                                      unique_slugs)
from benchmark.report.gallery import build_gallery, parse_pairs
from benchmark.report.html import FigureRef, Section, render_page
from benchmark.report.runs import RANDOM_INIT, Combined, ReportInputError, load_runs
from benchmark.report.stats import add_size_bins, heatmap_grid
from benchmark.report.tables import Table, to_markdown
from benchmark.report.timing import DEFAULT_REFERENCE

TITLE = "flipbench report"
#: the 2-D heat map separates relative from absolute size only when image areas differ at least this much
HEATMAP_MIN_SPREAD = 4.0


@dataclass
class ReportOutput:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)


def _figures(combined: Combined, out_dir: Path, n_boot: int = 0, seed: int = 0
             ) -> tuple[list[tuple[str, list[FigureRef]]], list[Path]]:
    """Heat map and IoU-versus-size figure per dataset, plus CSVs of the plotted numbers."""
    params = combined.params
    binned = add_size_bins(combined.records, params)
    random_labels = {lab for lab, m in combined.models.items() if m["weights_kind"] == RANDOM_INIT}
    colours = label_colours(combined.labels)
    per_dataset, files, curves, cells, difference_cells = [], [], [], [], []
    stems = unique_slugs(combined.datasets)
    for dataset in combined.datasets:
        part = binned[binned["dataset"] == dataset]
        labels = [lab for lab in combined.labels if (part["label"] == lab).any()]
        stem = stems[dataset]
        pixels = part["image_pixels"].astype(float)
        spread = float(pixels.max() / pixels.min()) if len(pixels) and pixels.min() > 0 else 1.0
        heat = heat_diff = None
        learned = combined.learned_labels(labels)
        reference = (learned or labels or [None])[0]
        if spread >= HEATMAP_MIN_SPREAD:
            fig = heatmap_figure(part, params, labels, dataset, random_labels)
            heat = save(fig, out_dir, f"heatmap_{stem}")
            if len(labels) > 1:
                fig, diff_cells = heatmap_difference_figure(part, params, labels, reference, dataset, random_labels)
                heat_diff = save(fig, out_dir, f"heatmap_difference_{stem}")
                difference_cells += [{"dataset": dataset, **cell} for cell in diff_cells]
        fig, curve = curve_figure(part, params, labels, dataset, random_labels, colours, n_boot, seed,
                                  reference=reference)
        line = save(fig, out_dir, f"iou_vs_size_{stem}")
        files += (heat or []) + (heat_diff or []) + line
        curves.append(curve)
        for label in labels:
            mean, count = heatmap_grid(part[part["label"] == label], params)
            for i, j in zip(*count.nonzero(), strict=True):
                cells.append({"dataset": dataset, "label": label, "abs_bin": int(i), "rel_bin": int(j),
                              "abs_lo": params.absolute_size_edges[i], "abs_hi": params.absolute_size_edges[i + 1],
                              "rel_lo": params.relative_size_edges[j], "rel_hi": params.relative_size_edges[j + 1],
                              "mean_iou_pct": mean[i, j], "count": int(count[i, j])})
        heat_item = (FigureRef(heat[0], f"{dataset}: mean IoU (%) over relative mask area (log bins) and absolute "
                                        "mask size (pixels, log bins); one panel per model, shared colour scale; "
                                        "cell numbers are object counts; hatched cells hold no objects.")
                     if heat else
                     f"{dataset}: no relative × absolute size heat map — its image sizes span only {spread:.2f}x in "
                     f"pixels (under {HEATMAP_MIN_SPREAD:g}x), so relative and absolute mask size carry the same "
                     "information here; see the curves and the COCO size classes.")
        diff_item = ([FigureRef(heat_diff[0], f"{dataset}: paired IoU difference (points) of each row minus "
                                              f"{reference} per relative × absolute size cell, on the objects both "
                                              "rows scored; blue: the row is better, red: the reference is; cell "
                                              "numbers are paired object counts.")] if heat_diff else [])
        per_dataset.append((dataset, [
            heat_item,
            *diff_item,
            FigureRef(line[0], f"{dataset}: mean IoU (%) per relative-size bin with 95 % intervals of the mean "
                               + ("(image-clustered bootstrap)" if n_boot > 0 else "(Student-t)")
                               + "; one marker and line style per row; hollow markers: bins with few objects; "
                               "y-range fitted to the data (see the title); middle panel: paired IoU difference "
                               "of each row against the first learned row on the objects both scored; lower "
                               "panel: objects per bin; dashed lines are random-init weights."),
        ]))
    for name, frames in (("size_curves.csv", curves), ("heatmap_cells.csv", [pd.DataFrame(cells)]),
                         ("heatmap_difference_cells.csv", [pd.DataFrame(difference_cells, columns=[
                             "dataset", "label", "reference", "abs_bin", "rel_bin", "mean_diff_pts", "count"])])):
        path = out_dir / name
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
        files.append(path)
    return per_dataset, files


def build_report(run_dirs: list[str | Path], out_dir: str | Path, allow_mixed: bool = False,
                 reference: str = DEFAULT_REFERENCE, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                 gallery_pairs: str | None = None) -> ReportOutput:
    """Load the runs and write every report output into ``out_dir`` (created). ``n_boot`` / ``seed``: the
    image-clustered bootstrap behind the intervals (:mod:`benchmark.report.bootstrap`). ``gallery_pairs``:
    ``"A:B,C:D"``, the row pairs whose disagreements the gallery shows."""
    combined = load_runs(run_dirs, allow_mixed=allow_mixed)
    try:
        pairs = parse_pairs(gallery_pairs, combined.labels)
    except ValueError as exc:
        raise ReportInputError(str(exc)) from exc
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportOutput(out_dir=out_dir, warnings=list(combined.warnings))
    tables = [sections.table1(combined, n_boot, seed), sections.paper_table(combined, n_boot=n_boot, seed=seed),
              sections.table3(combined, n_boot, seed),
              sections.paper_table(combined, small=True, n_boot=n_boot, seed=seed),
              sections.costs_table(combined, reference), sections.timing_section(combined, reference), sections.runs_table(combined),
              paired_table(combined, n_boot, seed), coco_size_table(combined, n_boot, seed)]
    noc = clicks_table(combined, n_boot, seed)
    tables += [noc] if noc is not None else []
    stems = unique_slugs(combined.datasets)
    category_tables = [category_table(combined, d, n_boot, seed, stems[d]) for d in combined.datasets]
    tables += category_tables
    for table in tables:
        result.files += table.write(out_dir)
        result.tables[table.name] = table
    per_dataset, figure_files = _figures(combined, out_dir, n_boot, seed)
    result.files += figure_files
    gallery, gallery_files = build_gallery(combined, out_dir, unique_slugs(combined.datasets),
                                           label_colours(combined.labels), pairs)
    result.files += gallery_files
    result.warnings += combined.warnings[len(result.warnings):]  # the gallery's: records that do not fit the dataset

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    protocols = sorted({r.protocol_hash for r in combined.runs})
    comparison = sorted({r.comparison_hash for r in combined.runs})
    modes = sorted({r.flip_mode for r in combined.runs if r.flip_mode})
    meta_lines = [f"Generated {generated} by flipbench {__version__} from {len(combined.runs)} run(s); "
                  f"protocol {', '.join(comparison)} (FLIP mode aside; run protocols {', '.join(protocols)}); "
                  f"{len(combined.records)} records, {len(combined.labels)} model row(s), "
                  f"{len(combined.datasets)} dataset(s)."]
    by_name = result.tables
    page_sections = [
        Section("Runs and provenance", [by_name["runs"]]),
        Section("Accuracy per dataset (Table 1 style)", [by_name["table1_iou"]]),
        Section("Comparison with the paper: all objects (Table 1)", [by_name["paper_comparison"]]),
        Section("Accuracy by COCO size class", [by_name["coco_size_bins"]]),
        Section("Small objects (Table 3 style)", [by_name["table3_small_objects"]]),
        Section("Paired comparisons on shared objects", [by_name["paired_comparisons"]]),
    ] + ([Section("Interactive segmentation: clicks (NoC)", [noc])] if noc is not None else []) + [
        Section("Accuracy per category", category_tables),
        Section("Comparison with the paper: small objects (Table 3)", [by_name["paper_small_objects"]]),
        Section("Parameters, time and speed-ups versus the paper", [by_name["costs"]]),
        Section("Timing", [by_name["timing"]]),
    ] + [Section(f"Size-resolved accuracy: {dataset}", figs) for dataset, figs in per_dataset]
    page_sections.append(Section("Gallery", [item for entry in gallery for item in (
        [FigureRef(entry.png, entry.caption)] if entry.png else [f"{entry.dataset}: {entry.message}"])],
        anchor="gallery"))
    params = combined.params.to_dict()
    if len(modes) > 1:
        params["flip_mode"] = modes  # the runs' protocols differ only here: one row per mode
    html_path = out_dir / "report.html"
    html_path.write_text(render_page(TITLE, meta_lines, combined.warnings, page_sections, params))
    md_path = out_dir / "report.md"
    md_path.write_text(_markdown(meta_lines, combined.warnings, page_sections))
    result.files += [html_path, md_path]

    summary = {
        "flipbench": __version__, "generated": generated, "runs": [str(r.path) for r in combined.runs],
        "protocol_hashes": protocols, "comparison_hashes": comparison, "flip_modes": modes,
        "mixed_protocols": combined.mixed_protocols, "params": params, "models": combined.models,
        "datasets": combined.datasets,
        "warnings": combined.warnings, "files": sorted(p.name for p in result.files),
    }
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    result.files.append(summary_path)
    return result


def _markdown(meta_lines: list[str], warnings: list[str], page_sections: list[Section]) -> str:
    parts = [f"# {TITLE}", ""] + meta_lines + [""]
    parts += [f"> **Warning:** {w}".replace("\n", "\n> ") + "\n" for w in warnings]
    for section in page_sections:
        parts.append(f"## {section.heading}\n")
        for item in section.items:
            if isinstance(item, Table):
                parts.append(to_markdown(item, heading_level=3))
            elif isinstance(item, FigureRef):
                vector = item.png.with_suffix(".svg")
                link = f" (vector: [{vector.name}]({vector.name}))" if vector.exists() else ""
                parts.append(f"![{item.caption}]({item.png.name})\n\n{item.caption}{link}\n")
            else:
                parts.append(f"{item}\n")
    return "\n".join(parts)
