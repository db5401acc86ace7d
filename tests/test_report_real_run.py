"""End to end: `flipbench eval` on the committed COCO mini file (weight-free models), then `flipbench report`;
the report's numbers must agree with the evaluation's own summary.csv (two independent computations)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from benchmark.cli import main

MINI = Path(__file__).resolve().parent / "data" / "coco_val2017_mini.hdf5"


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    if not MINI.exists():
        pytest.skip(f"{MINI} not present")
    root = tmp_path_factory.mktemp("real")
    runner = CliRunner()
    done = runner.invoke(main, ["eval", "--dataset", str(MINI), "--model", "box,ellipse", "--out", str(root / "run"),
                                "--no-progress"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(main, ["report", str(root / "run"), "--out", str(root / "report")])
    assert done.exit_code == 0, done.output
    return root


def test_report_agrees_with_eval_summary(real_report):
    summary = pd.read_csv(real_report / "run" / "summary.csv").set_index("model")
    table1 = pd.read_csv(real_report / "report" / "table1_iou.csv").set_index("label")
    table3 = pd.read_csv(real_report / "report" / "table3_small_objects.csv").set_index("label")
    dataset = "coco-val2017"  # the HDF5 metadata dataset_name
    for model in ("box", "ellipse"):
        assert table1.at[model, f"{dataset} mean"] == pytest.approx(100 * summary.at[model, "mean_iou"])
        assert table1.at[model, f"{dataset} std"] == pytest.approx(100 * summary.at[model, "std_iou"])
        assert table1.at[model, f"{dataset} n"] == summary.at[model, "scored"]
        assert table1.at[model, "time_ms_median"] == pytest.approx(1000 * summary.at[model, "median_time_per_object_s"])
        assert table3.at[model, f"{dataset} mean"] == pytest.approx(100 * summary.at[model, "mean_iou_small"])
        assert table3.at[model, f"{dataset} n"] == summary.at[model, "small_objects"]
    timing = pd.read_csv(real_report / "report" / "timing.csv").set_index("label")
    assert (timing["n_timed"] == summary.loc[timing.index, "timed_objects"]).all()
    slowest = timing["total_median_ms"].idxmax()  # no sam-h: speed-ups are versus the slowest model
    expected = timing.at[slowest, "total_median_ms"] / timing["total_median_ms"]
    assert timing["speedup"].to_numpy() == pytest.approx(expected.to_numpy())
