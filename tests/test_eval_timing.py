"""`eval --timing interleaved`: per image every model in turn, same records as sequential, spread in the summary."""

from __future__ import annotations

import json

import pandas as pd
from _shared import REPO_ROOT
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.evaluation.accumulate import load_records
from benchmark.evaluation.executors import ImageTask, plan_tasks
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from benchmark.models import build_model
from objascale.hdf5_format import FlipDataset

DATASET = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"
MODELS = ["box", "ellipse", "flip-test"]  # grabcut takes about a second per object: not needed for the order


def test_plan_orders():
    pending = {"a": [(0, [0, 1]), (2, [5])], "b": [(0, [1]), (1, [3])]}
    key = [(t.model, t.image_index) for t in plan_tasks(pending, "sequential")]
    assert key == [("a", 0), ("a", 2), ("b", 0), ("b", 1)]
    tasks = plan_tasks(pending, "interleaved")
    assert [(t.model, t.image_index) for t in tasks] == [("a", 0), ("b", 0), ("b", 1), ("a", 2)]
    assert tasks[0] == ImageTask("a", 0, (0, 1))


def test_interleaved_alternates_models_and_gives_the_sequential_records(tmp_path):
    calls: list[tuple[str, int]] = []

    def logging_builder(spec, **kwargs):
        predictor = build_model(spec, **kwargs)
        set_image = predictor.set_image

        def logged(image):
            calls.append((spec, image.shape[0]))
            return set_image(image)

        predictor.set_image = logged
        return predictor

    dataset = FlipDataset(DATASET)
    runs = {}
    for timing in ("sequential", "interleaved"):
        calls.clear()
        run_evaluation(dataset, DATASET, MODELS, tmp_path / timing, EvalParams(), progress=False, timing=timing,
                       builder=logging_builder)
        runs[timing] = list(calls)
    heights = [dataset.image(i).shape[0] for i in range(dataset.num_images)]
    assert runs["sequential"] == [(m, h) for m in MODELS for h in heights]
    assert runs["interleaved"] == [(m, h) for h in heights for m in MODELS]  # built once, alternating per image

    sequential, interleaved = load_records(tmp_path / "sequential"), load_records(tmp_path / "interleaved")
    keep = [c for c in sequential.columns if not c.startswith("t_") and c != "run_id"]
    pd.testing.assert_frame_equal(sequential[keep], interleaved[keep])
    manifest = json.loads((tmp_path / "interleaved" / "run.json").read_text())
    assert manifest["sessions"][-1]["timing"] == "interleaved"
    summary = pd.read_csv(tmp_path / "interleaved" / "summary.csv")
    assert (summary["iqr_time_per_object_s"] >= 0).all()
    assert "timing: interleaved" in (tmp_path / "interleaved" / "summary.md").read_text()


def test_cli_timing_option(tmp_path):
    result = CliRunner().invoke(main, ["eval", "--dataset", str(DATASET), "--model", "box,ellipse", "--out",
                                       str(tmp_path / "run"), "--timing", "interleaved", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "IQR" in result.output
