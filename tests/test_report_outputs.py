"""Report outputs: mixed protocols, escaping in every format, the CLI and the files it writes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.evaluation.params import EvalParams
from benchmark.report.runs import MixedProtocolError, load_runs
from benchmark.report.build import build_report
from benchmark.report.figures import unique_slugs
from benchmark.report.synthetic import random_records, write_run
from benchmark.report.tables import Table, latex_escape, to_html, to_latex, to_markdown


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = write_run(root / "coco", random_records(["sam-h", "flip-tiny", "box"], "coco-val2017", images=8, seed=1))
    b = write_run(root / "obja", random_records(["sam-h", "flip-tiny"], "objascale-v1", images=8, seed=2,
                                                random_init=("flip-tiny",)), single_file=True)
    return a, b


@pytest.fixture(scope="module")
def other_protocol_run(tmp_path_factory):
    params = EvalParams(seed=1)
    root = tmp_path_factory.mktemp("other")
    return write_run(root / "seed1", random_records(["flip-tiny"], "lvis-val", images=4, seed=3, params=params),
                     params=params)


def test_mixed_protocols_refused_with_the_difference(two_runs, other_protocol_run):
    with pytest.raises(MixedProtocolError) as info:
        load_runs([two_runs[0], other_protocol_run])
    message = str(info.value)
    assert "seed" in message and "0 | 1" in message
    assert "--allow-mixed-protocols" in message


def test_mixed_protocols_allowed_are_flagged(two_runs, other_protocol_run):
    combined = load_runs([two_runs[0], other_protocol_run], allow_mixed=True)
    other_hash = EvalParams(seed=1).comparison_hash()[:8]
    assert f"flip-tiny (window) [protocol {other_hash}]" in combined.labels
    assert all("[protocol " in label for label in combined.labels)
    assert combined.mixed_protocols and any("MIXED PROTOCOLS" in w for w in combined.warnings)


def test_flip_modes_report_together_named_by_mode(tmp_path):
    runs = []
    for mode in ("window", "hierarchical", "full"):
        params = EvalParams(flip_mode=mode)
        runs.append(write_run(tmp_path / mode, random_records(["flip-tiny"], "coco-val2017", images=4, seed=5,
                                                              params=params), params=params))
    out = build_report(runs, tmp_path / "out")
    combined = load_runs(runs)
    assert not combined.mixed_protocols
    assert combined.warnings == ["coco-val2017: the 95 % intervals and paired tests rest on 4 image(s) (objects of "
                                 "one image are resampled together); with fewer than 20 images they understate the "
                                 "uncertainty: read them as rough."]
    assert combined.labels == ["flip-tiny (window)", "flip-tiny (hierarchical)", "flip-tiny (full)"]
    paper = out.tables["paper_comparison"].data.set_index("label")
    assert paper.at["flip-tiny (window)", "paper_label"] == "FLIP-Tiny"
    assert paper.at["flip-tiny (hierarchical)", "paper_label"] == "FLIPh-Tiny"
    assert "flip-tiny (full)" not in paper.index
    runs_shown = out.tables["runs"].display
    assert runs_shown["FLIP mode"].tolist() == ["window", "hierarchical", "full"]
    assert runs_shown["Model rows"].tolist() == combined.labels
    summary = json.loads((out.out_dir / "summary.json").read_text())
    assert summary["flip_modes"] == ["full", "hierarchical", "window"] and len(summary["comparison_hashes"]) == 1
    # a different protocol beyond the mode is still refused
    other = EvalParams(flip_mode="full", seed=2)
    odd = write_run(tmp_path / "odd", random_records(["flip-tiny"], "lvis-val", images=4, params=other), params=other)
    with pytest.raises(MixedProtocolError, match="seed"):
        load_runs([runs[0], odd])


def test_escaping_in_every_format():
    nasty = "a_b & 50% #1 {x} ~ ^ \\ | <tag> ±"
    assert latex_escape(nasty) == (r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} "
                                   r"\textbackslash{} | \textless{}tag\textgreater{} $\pm$")
    table = Table(name="t", title="T & <b>", data=pd.DataFrame({"x": [1]}),
                  display=pd.DataFrame({"Model": [nasty], "v": ["1 | 2"]}), notes=["n_1 <i>"], flagged=[True])
    md = to_markdown(table)
    assert r"1 \| 2" in md and "**" in md
    tex = to_latex(table)
    assert r"a\_b \&" in tex and r"$^{\dagger}$" in tex and "n\\_1" in tex
    page = to_html(table)
    assert "&lt;tag&gt;" in page and "<b>" not in page and 'class="flagged"' in page


@pytest.fixture(scope="module")
def cli_report(two_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    result = CliRunner().invoke(main, ["report", str(two_runs[0]), str(two_runs[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_cli_writes_every_output(cli_report):
    out = cli_report
    names = {p.name for p in out.iterdir()}
    for stem in ("table1_iou", "table3_small_objects", "paper_comparison", "paper_small_objects", "costs", "timing",
                 "runs"):
        assert {f"{stem}.md", f"{stem}.csv", f"{stem}.tex"} <= names
    for stem in ("heatmap", "heatmap_difference", "iou_vs_size"):
        for ds in ("coco-val2017", "objascale-v1"):
            assert {f"{stem}_{ds}.png", f"{stem}_{ds}.svg"} <= names
    assert {"report.html", "report.md", "summary.json", "size_curves.csv", "heatmap_cells.csv",
            "heatmap_difference_cells.csv"} <= names
    differences = pd.read_csv(out / "heatmap_difference_cells.csv")
    assert len(differences) and (differences["label"] != differences["reference"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol_hashes"] == [EvalParams().protocol_hash()]
    assert "flip-tiny (window, random-init)" in summary["models"]
    table1 = pd.read_csv(out / "table1_iou.csv")
    assert set(table1["label"]) == {"sam-h", "flip-tiny (window)", "box", "flip-tiny (window, random-init)"}
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://cdn" not in html and "<script" not in html
    assert "RANDOM-INIT" in html
    assert '<section id="gallery">' in html and "No predicted masks are stored" in html  # synthetic: no masks
    comparison = (out / "paper_comparison.md").read_text()
    assert "| sam-h | SAM-H | coco-val2017 → COCO |" in comparison
    assert "| flip-tiny (window) | FLIP-Tiny | coco-val2017 → COCO |" in comparison
    assert "| **flip-tiny (window, random-init)** ⚠ | FLIP-Tiny | objascale-v1 → ObjaScale |" in comparison
    assert "No paper row (or no matching dataset) for: box." in comparison  # box: no paper row
    assert not re.search(r"\bnan\b", comparison.lower())
    for tex in out.glob("*.tex"):  # every symbol mapped to LaTeX: compiles without Unicode set-up
        assert tex.read_text().isascii(), tex.name
    costs = (out / "costs.md").read_text()
    assert "Time / object (ms, paper: GPU)" in costs and "Time / object (ms, ours: CPU, 2 threads)" in costs


def test_cli_refuses_mixed_protocols(two_runs, other_protocol_run, tmp_path):
    args = ["report", str(two_runs[0]), str(other_protocol_run), "--out", str(tmp_path / "r")]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "different protocols" in refused.output
    allowed = CliRunner().invoke(main, args + ["--allow-mixed-protocols"])
    assert allowed.exit_code == 0, allowed.output
    assert "MIXED PROTOCOLS" in (tmp_path / "r" / "report.md").read_text()


def test_cli_bad_directory(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "run.json is missing" in result.output


def test_folder_of_runs_is_expanded(two_runs, tmp_path):
    from benchmark.report.runs import expand_run_dirs

    parent = two_runs[0].parent
    assert parent == two_runs[1].parent
    assert expand_run_dirs([parent]) == sorted(p.resolve() for p in two_runs)
    assert expand_run_dirs([two_runs[0], parent]) == [two_runs[0].resolve(), two_runs[1].resolve()]


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_tables_compile(cli_report, tmp_path):
    inputs = "\n".join(rf"\input{{{p.as_posix()}}}" for p in sorted(cli_report.glob("*.tex")))
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n"
                   "\\begin{document}\n" + inputs + "\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_datasets_whose_names_slug_alike_get_separate_figures(tmp_path):
    a = write_run(tmp_path / "a", random_records(["box"], "coco/val", images=4, seed=1))
    b = write_run(tmp_path / "b", random_records(["box"], "coco_val", images=4, seed=2))
    build_report([a, b], tmp_path / "out")
    heatmaps = sorted(p.name for p in (tmp_path / "out").glob("heatmap_*.png"))
    assert len(heatmaps) == 2 and all(name.startswith("heatmap_coco_val-") for name in heatmaps)
    assert unique_slugs(["coco/val", "other"]) == {"coco/val": "coco_val", "other": "other"}
