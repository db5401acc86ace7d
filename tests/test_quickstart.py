"""The README's main command, end to end on a tiny count: render -> evaluate -> report."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from benchmark.cli import main
from objascale.hdf5_format import FlipDataset


def test_quickstart_renders_evaluates_and_reports(tmp_path):
    out = tmp_path / "qs"
    result = CliRunner().invoke(main, ["quickstart", "--out", str(out), "--count", "2"])
    assert result.exit_code == 0, result.output

    dataset = FlipDataset(out / "objascale-mini")
    assert dataset.num_images == 2 and dataset.num_instances == 2

    manifest = json.loads((out / "run" / "run.json").read_text())
    assert manifest["dataset"]["fingerprint"] == dataset.fingerprint()
    summary = pd.read_csv(out / "run" / "summary.csv")
    assert {"grabcut", "ellipse", "box"} <= set(summary["model"])
    assert summary["objects"].eq(2).all()
    assert summary["mean_iou"].between(0, 100).all()

    html = (out / "report" / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html
