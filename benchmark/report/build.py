"""Build a report directory from run directories.

Writes into ``out_dir``: ``table1_iou``, ``table3_small_objects``, ``paper_comparison``, ``timing`` and ``runs``
as ``.md`` / ``.csv`` / ``.tex``; per dataset ``heatmap_<dataset>`` and ``iou_vs_size_<dataset>`` as ``.png`` /
``.svg``; ``size_curves.csv`` and ``heatmap_cells.csv`` (the plotted numbers); ``report.md``; ``report.html``
(self-contained) and ``summary.json`` (inputs, protocol, warnings, files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmark import __version__
from benchmark.report import sections
from benchmark.report.figures import curve_figure, heatmap_figure, label_colours, save, unique_slugs
from benchmark.report.html import FigureRef, render_page
from benchmark.report.runs import RANDOM_INIT, Combined, load_runs
from benchmark.report.stats import add_size_bins, heatmap_grid
from benchmark.report.tables import Table, to_markdown
from benchmark.report.timing import DEFAULT_REFERENCE

TITLE = "flipbench report"


@dataclass
class ReportOutput:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)


def _figures(combined: Combined, out_dir: Path) -> tuple[list[tuple[str, list[FigureRef]]], list[Path]]:
    """Heat map and IoU-versus-size figure per dataset, plus CSVs of the plotted numbers."""
    params = combined.params
    binned = add_size_bins(combined.records, params)
    random_labels = {lab for lab, m in combined.models.items() if m["weights_kind"] == RANDOM_INIT}
    colours = label_colours(combined.labels)
    per_dataset, files, curves, cells = [], [], [], []
    stems = unique_slugs(combined.datasets)
    for dataset in combined.datasets:
        part = binned[binned["dataset"] == dataset]
        labels = [lab for lab in combined.labels if (part["label"] == lab).any()]
        stem = stems[dataset]
        fig = heatmap_figure(part, params, labels, dataset, random_labels)
        heat = save(fig, out_dir, f"heatmap_{stem}")
        fig, curve = curve_figure(part, params, labels, dataset, random_labels, colours)
        line = save(fig, out_dir, f"iou_vs_size_{stem}")
        files += heat + line
        curves.append(curve)
        for label in labels:
            mean, count = heatmap_grid(part[part["label"] == label], params)
            for i, j in zip(*count.nonzero(), strict=True):
                cells.append({"dataset": dataset, "label": label, "abs_bin": int(i), "rel_bin": int(j),
                              "abs_lo": params.absolute_size_edges[i], "abs_hi": params.absolute_size_edges[i + 1],
                              "rel_lo": params.relative_size_edges[j], "rel_hi": params.relative_size_edges[j + 1],
                              "mean_iou_pct": mean[i, j], "count": int(count[i, j])})
        per_dataset.append((dataset, [
            FigureRef(heat[0], f"{dataset}: mean IoU (%) over relative mask area (log bins) and absolute mask size "
                               "(pixels, log bins); one panel per model, shared colour scale; cell numbers are "
                               "object counts; hatched cells hold no objects."),
            FigureRef(line[0], f"{dataset}: mean IoU (%) per relative-size bin with 95 % Student-t intervals of the "
                               "mean; dashed lines are random-init weights."),
        ]))
    for name, frames in (("size_curves.csv", curves), ("heatmap_cells.csv", [pd.DataFrame(cells)])):
        path = out_dir / name
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
        files.append(path)
    return per_dataset, files


def build_report(run_dirs: list[str | Path], out_dir: str | Path, allow_mixed: bool = False,
                 reference: str = DEFAULT_REFERENCE) -> ReportOutput:
    """Load the runs and write every report output into ``out_dir`` (created)."""
    combined = load_runs(run_dirs, allow_mixed=allow_mixed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportOutput(out_dir=out_dir, warnings=list(combined.warnings))
    tables = [sections.table1(combined), sections.paper_table(combined), sections.table3(combined),
              sections.timing_section(combined, reference), sections.runs_table(combined)]
    for table in tables:
        result.files += table.write(out_dir)
        result.tables[table.name] = table
    per_dataset, figure_files = _figures(combined, out_dir)
    result.files += figure_files

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    protocols = sorted({r.protocol_hash for r in combined.runs})
    meta_lines = [f"Generated {generated} by flipbench {__version__} from {len(combined.runs)} run(s); "
                  f"protocol {', '.join(protocols)}; {len(combined.records)} records, "
                  f"{len(combined.labels)} model row(s), {len(combined.datasets)} dataset(s)."]
    by_name = result.tables
    page_sections = [
        ("Runs and provenance", [by_name["runs"]]),
        ("Accuracy per dataset (Table 1 style)", [by_name["table1_iou"]]),
        ("Comparison with the paper", [by_name["paper_comparison"]]),
        ("Small objects (Table 3 style)", [by_name["table3_small_objects"]]),
        ("Timing", [by_name["timing"]]),
    ] + [(f"Size-resolved accuracy: {dataset}", figs) for dataset, figs in per_dataset]
    html_path = out_dir / "report.html"
    html_path.write_text(render_page(TITLE, meta_lines, combined.warnings, page_sections,
                                     combined.params.to_dict()))
    md_path = out_dir / "report.md"
    md_path.write_text(_markdown(meta_lines, combined.warnings, page_sections))
    result.files += [html_path, md_path]

    summary = {
        "flipbench": __version__, "generated": generated, "runs": [str(r.path) for r in combined.runs],
        "protocol_hashes": protocols, "mixed_protocols": combined.mixed_protocols,
        "params": combined.params.to_dict(), "models": combined.models, "datasets": combined.datasets,
        "warnings": combined.warnings, "files": sorted(p.name for p in result.files),
    }
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    result.files.append(summary_path)
    return result


def _markdown(meta_lines: list[str], warnings: list[str], page_sections: list[tuple[str, list]]) -> str:
    parts = [f"# {TITLE}", ""] + meta_lines + [""]
    parts += [f"> **Warning:** {w}".replace("\n", "\n> ") + "\n" for w in warnings]
    for heading, items in page_sections:
        parts.append(f"## {heading}\n")
        for item in items:
            if isinstance(item, Table):
                parts.append(to_markdown(item, heading_level=3))
            else:
                parts.append(f"![{item.caption}]({item.png.name})\n\n{item.caption} "
                             f"(vector: [{item.png.with_suffix('.svg').name}]({item.png.with_suffix('.svg').name}))\n")
    return "\n".join(parts)
