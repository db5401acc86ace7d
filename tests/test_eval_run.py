"""`flipbench eval` end to end on a tiny HDF5 dataset: records, summaries, empty GT, resume, refusals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from _shared import FLIP_TINY_ONNX, REPO_ROOT, require
from click.testing import CliRunner

from baselines.reference import BoxPredictor
from benchmark.cli import main
from benchmark.evaluation.accumulate import load_manifest, load_records
from benchmark.evaluation.metrics import mask_overlap
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from benchmark.evaluation.schema import OFFICIAL_CSV_COLUMNS, RECORD_COLUMNS
from benchmark.evaluation.store import RunMismatchError
from benchmark.models import build_model
from objascale.hdf5_format import FlipDataset, FlipH5Writer, encode_mask_png, mask_to_bbox

NUM_IMAGES = 8
EMPTY_INSTANCE = 4  # its mask is overwritten with an empty one after writing


def _make_dataset(path: Path) -> Path:
    """8 noisy images (sizes vary) with 1-3 bright discs each, one of them tiny (< 1 % of the image)."""
    rng = np.random.default_rng(123)
    with FlipH5Writer(path, dataset_name="tiny-discs", dataset_type="test", bbox_convention="tight") as writer:
        for i in range(NUM_IMAGES):
            h, w = 48 + 8 * i, 64 + 4 * i
            image = rng.integers(0, 70, (h, w, 3), dtype=np.uint8)
            yy, xx = np.mgrid[:h, :w]
            masks = []
            for k in range(1 + i % 3):
                r = 2 if (i, k) == (1, 0) else int(rng.integers(5, 12))
                cx, cy = int(rng.integers(r + 1, w - r - 1)), int(rng.integers(r + 1, h - r - 1))
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                for m in masks:
                    m &= ~disc
                image[disc] = 220
                masks.append(disc)
            writer.add_image(image, masks, {"file_name": f"img{i}.png"})
    with h5py.File(path, "r+") as h5:  # an empty ground truth, as a corrupt or over-thresholded mask gives
        shape = FlipDataset(path).mask(EMPTY_INSTANCE).shape
        h5["instance_masks"][EMPTY_INSTANCE] = encode_mask_png(np.zeros(shape, bool))
    return path


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("evaldata") / "tiny.hdf5")


def _eval(*args: str):
    result = CliRunner().invoke(main, ["eval", *args], catch_exceptions=False)
    return result


def test_cli_writes_records_summaries_and_official_csv(dataset_path, tmp_path):
    out = tmp_path / "run"
    result = _eval("--dataset", str(dataset_path), "--model", "box,ellipse", "--out", str(out), "--official-csv")
    assert result.exit_code == 0, result.output
    assert "| box |" in result.output and "| ellipse |" in result.output

    ds = FlipDataset(dataset_path)
    records = load_records(out)
    assert tuple(records.columns) == RECORD_COLUMNS
    assert len(records) == 2 * ds.num_instances
    assert not records.duplicated(["model", "instance_index"]).any()

    box = records[records.model == "box"].set_index("instance_index")
    for j in range(ds.num_instances):  # IoU and prompt recomputed independently from the file
        gt = ds.mask(j)
        row = box.loc[j]
        assert row.image_index == ds.image_of(j) and row.mask_pixels == gt.sum()
        if j == EMPTY_INSTANCE:
            assert row.gt_empty and math.isnan(row.iou) and math.isnan(row.t_total)
            continue
        x0, y0, x1, y1 = mask_to_bbox(gt).astype(int)
        expected = np.zeros_like(gt)
        expected[y0 : y1 + 1, x0 : x1 + 1] = True
        assert row.iou == pytest.approx(mask_overlap(expected, gt).iou)
        assert [row.box_x0, row.box_y0, row.box_x1, row.box_y1] == [x0, y0, x1, y1]
        assert row.relative_mask_size == pytest.approx(gt.sum() / gt.size)
        assert row.t_total >= row.t_data > 0 and row.shard == "tiny.hdf5"
    assert records["input_tokens"].isna().all() and str(records["input_tokens"].dtype) == "Int64"
    warm = records[records.model == "box"].groupby("image_index")["warmup"].first()
    assert warm.tolist() == [i < EvalParams().timing_warmup_images for i in range(NUM_IMAGES)]

    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary.loc["box", "objects"] == ds.num_instances
    assert summary.loc["box", "empty_gt"] == 1 and summary.loc["box", "scored"] == ds.num_instances - 1
    assert summary.loc["box", "small_objects"] >= 1
    assert summary.loc["ellipse", "mean_iou"] > summary.loc["box", "mean_iou"]  # discs: the ellipse is near exact
    assert "empty GT" in (out / "summary.md").read_text()

    manifest = load_manifest(out)
    assert manifest["protocol_hash"] == EvalParams().protocol_hash()
    assert manifest["dataset"]["fingerprint"] == ds.fingerprint()
    assert manifest["counts"]["per_model"]["box"] == {"objects": ds.num_instances, "empty_gt": 1, "invalid_prompt": 0}
    session = manifest["sessions"][-1]
    assert session["status"] == "completed" and session["environment"]["torch"]
    assert set(manifest["models"]) == {"box", "ellipse"}

    official = pd.read_csv(out / "official" / "box.csv")
    assert list(official.columns) == list(OFFICIAL_CSV_COLUMNS)
    assert len(official) == ds.num_instances - 1  # the official script skips empty masks
    assert official["iou"].tolist() == pytest.approx(box[~box.gt_empty]["iou"].tolist())


class _FailingBox(BoxPredictor):
    """Box predictor that raises on its ``fail_at``-th image (simulates a crash mid-run)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.images = fail_at, 0

    def set_image(self, image):
        self.images += 1
        if self.images == self.fail_at:
            raise RuntimeError("simulated crash")
        super().set_image(image)


def test_resume_after_a_crash_has_no_gaps_or_duplicates(dataset_path, tmp_path):
    ds = FlipDataset(dataset_path)
    out = tmp_path / "run"
    params = EvalParams()

    def failing(spec, device="cpu", allow_random=False):
        predictor = _FailingBox(fail_at=4)
        predictor.name = "box"
        return predictor

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_evaluation(ds, dataset_path, ["box"], out, params, chunk_images=2, builder=failing)
    partial = load_records(out)
    done_images = sorted(set(partial.image_index))
    assert done_images == [0, 1, 2]  # images before the crash are kept (2 in a part, 1 flushed on the way out)
    session = load_manifest(out)["sessions"][-1]
    assert session["status"] == "interrupted" and "simulated crash" in session["error"]
    assert session["objects_evaluated"] == len(partial)

    outcome = run_evaluation(ds, dataset_path, ["box"], out, params, chunk_images=2, builder=build_model)
    assert outcome.objects_evaluated == ds.num_instances - len(partial)
    records = load_records(out)
    assert sorted(records.instance_index) == list(range(ds.num_instances))
    # the resumed records equal those of an uninterrupted run
    fresh = run_evaluation(ds, dataset_path, ["box"], tmp_path / "fresh", params, builder=build_model)
    assert fresh.summary.loc[0, "mean_iou"] == pytest.approx(outcome.summary.loc[0, "mean_iou"])
    np.testing.assert_array_equal(load_records(tmp_path / "fresh")["iou"], records["iou"])


def test_a_failure_while_stopping_does_not_hide_the_original_error(dataset_path, tmp_path, monkeypatch):
    import benchmark.evaluation.runner as runner

    def failing(spec, device="cpu", allow_random=False):
        predictor = _FailingBox(fail_at=4)
        predictor.name = "box"
        return predictor

    def broken_finish(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runner, "_finish", broken_finish)
    with pytest.raises(RuntimeError, match="simulated crash") as info:
        run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], tmp_path / "run", EvalParams(),
                       chunk_images=2, builder=failing)
    assert any("disk full" in note for note in info.value.__notes__)
    with pytest.raises(OSError, match="disk full"):  # without an earlier error, the failure itself is reported
        run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], tmp_path / "run2", EvalParams(),
                       builder=build_model)


def test_limit_then_continue(dataset_path, tmp_path):
    ds = FlipDataset(dataset_path)
    out = tmp_path / "run"
    assert _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--limit", "3").exit_code == 0
    assert sorted(load_records(out).instance_index) == [0, 1, 2]
    assert _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out)).exit_code == 0
    assert sorted(load_records(out).instance_index) == list(range(ds.num_instances))


def test_resume_is_refused_under_another_protocol_dataset_or_weights(dataset_path, tmp_path):
    out = tmp_path / "run"
    assert _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--limit", "2").exit_code == 0

    result = _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--seed", "5")
    assert result.exit_code != 0 and "protocol" in result.output and "'seed': (0, 5)" in result.output
    result = _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--flip-mode", "full")
    assert result.exit_code != 0 and "flip_mode" in result.output

    other = _make_dataset(tmp_path / "other.hdf5")
    with h5py.File(other, "r+") as h5:
        h5["positions"][0] = h5["positions"][0] * 0.5  # different data, same shape
    result = _eval("--dataset", str(other), "--model", "box", "--out", str(out))
    assert result.exit_code != 0 and "fingerprint" in result.output

    ds = FlipDataset(dataset_path)

    def reweighted(spec, device="cpu", allow_random=False):
        predictor = BoxPredictor()
        predictor.name = "box"
        predictor.weights = type(predictor.weights)(kind="pretrained", source="/x.ckpt", sha256="abc")
        return predictor

    with pytest.raises(RunMismatchError, match="weights"):
        run_evaluation(ds, dataset_path, ["box"], out, EvalParams(), builder=reweighted)

    result = _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--seed", "5", "--force-new")
    assert result.exit_code == 0, result.output
    assert len(load_records(out)) == ds.num_instances and load_manifest(out)["protocol"]["seed"] == 5


def test_unknown_model_and_duplicate_model_are_clear_errors(dataset_path, tmp_path):
    result = _eval("--dataset", str(dataset_path), "--model", "nonsense", "--out", str(tmp_path / "a"))
    assert result.exit_code != 0 and "unknown model 'nonsense'" in result.output
    result = _eval("--dataset", str(dataset_path), "--model", "box,box", "--out", str(tmp_path / "b"))
    assert result.exit_code != 0 and "given twice" in result.output


_SLOW_RUN = """
import sys, time
from baselines.reference import BoxPredictor
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from objascale.hdf5_format import FlipDataset

class SlowBox(BoxPredictor):
    def set_image(self, image):
        time.sleep(0.3)
        super().set_image(image)

def build(spec, device="cpu", allow_random=False):
    p = SlowBox(); p.name = "box"; return p

run_evaluation(FlipDataset(sys.argv[1]), sys.argv[1], ["box"], sys.argv[2], EvalParams(), chunk_images=1,
               builder=build, progress=False)
"""


def test_resume_after_the_process_is_killed(dataset_path, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(dataset_path), str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("records/box/part-*.parquet"))) < 2:
            assert proc.poll() is None, "the evaluation process ended before it could be killed"
            assert time.monotonic() < deadline, "no records appeared within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = load_records(out)
    assert 0 < len(killed) < len(FlipDataset(dataset_path))
    assert (out / ".lock").exists()  # left behind by the killed process; a resume takes it over

    result = _eval("--dataset", str(dataset_path), "--model", "box", "--out", str(out))
    assert result.exit_code == 0, result.output
    records = load_records(out)
    assert sorted(records.instance_index) == list(range(len(FlipDataset(dataset_path))))
    assert not list(out.glob("records/box/.*.tmp")) and not (out / ".lock").exists()
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    # the kill left "running"; the next session, holding the lock, marks it interrupted
    assert sessions[0]["status"] == "interrupted" and "ended without closing" in sessions[0]["error"]
    assert sessions[-1]["status"] == "completed"


def test_flip_records_tokens_and_is_reproducible_across_resumes(dataset_path, tmp_path):
    """flip-test (random weights, tiny): input_tokens recorded, random-init labelled, per-object seeding makes a
    resumed run equal to an uninterrupted one."""
    ds = FlipDataset(dataset_path)
    params = EvalParams(seed=11)
    whole = run_evaluation(ds, dataset_path, ["flip-test"], tmp_path / "whole", params, limit=3)
    run_evaluation(ds, dataset_path, ["flip-test"], tmp_path / "resumed", params, limit=1)
    run_evaluation(ds, dataset_path, ["flip-test"], tmp_path / "resumed", params, limit=3)
    a, b = load_records(tmp_path / "whole"), load_records(tmp_path / "resumed")
    assert len(a) == 3 and str(a["input_tokens"].dtype) == "Int64" and (a["input_tokens"] > 0).all()
    assert (a["weights_kind"] == "random-init").all() and whole.summary.loc[0, "weights_kind"] == "random-init"
    np.testing.assert_array_equal(a["input_tokens"].to_numpy(), b["input_tokens"].to_numpy())
    counts = ["pred_pixels", "intersection"]
    np.testing.assert_array_equal(a[counts].to_numpy(), b[counts].to_numpy())
    manifest = load_manifest(tmp_path / "whole")
    assert manifest["models"]["flip-test"]["weights_kind"] == "random-init"
    assert "RANDOM INIT" in (tmp_path / "whole" / "summary.md").read_text()


class _StagedBox(BoxPredictor):
    """Box predictor that charges fixed stage times: 0.6 s encoder per image, 0.1 s decoder per object."""

    def set_image(self, image):
        super().set_image(image)
        self.timer.add("encoder", 0.6)

    def predict(self, prompts):
        masks = super().predict(prompts)
        self.timer.reset()
        self.timer.add("decoder", 0.1)
        return masks


def test_image_level_times_are_shared_among_the_predicted_objects(dataset_path):
    from benchmark.evaluation.evaluate import RecordContext, evaluate_image

    ds = FlipDataset(dataset_path)
    image = ds.image_of(EMPTY_INSTANCE)
    instances = list(ds.instance_indices(image))
    assert len(instances) == 3
    context = RecordContext("r", "box", "none", "d", "f", "h")
    records = evaluate_image(ds, _StagedBox(), image, instances, context, EvalParams(), warmup=False)
    assert [r["instance_index"] for r in records] == instances
    assert tuple(records[0]) == RECORD_COLUMNS
    predicted = [r for r in records if not r["gt_empty"]]
    assert len(predicted) == 2
    for r in predicted:
        assert r["t_encoder"] == pytest.approx(0.3) and r["t_decoder"] == pytest.approx(0.1)
        assert r["t_total"] >= r["t_data"] > 0
    (empty,) = [r for r in records if r["gt_empty"]]
    assert empty["t_data"] > 0 and math.isnan(empty["t_encoder"]) and math.isnan(empty["t_total"])


def test_a_run_held_by_a_live_process_is_refused(dataset_path, tmp_path):
    import socket

    from benchmark.evaluation.store import RunLockedError

    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(RunLockedError, match="being written by process"):
        run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], out, EvalParams())
    assert not (out / "run.json").exists() and (out / ".lock").exists()
    assert [p.name for p in out.iterdir()] == [".lock"]  # nothing else was written


@pytest.mark.slow
def test_flip_tiny_beats_the_weight_free_references_on_coco_mini(tmp_path):
    """The real FLIP-Tiny (official demo weights) on 36 real COCO objects: better than box and ellipse."""
    require(FLIP_TINY_ONNX)
    mini = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"
    outcome = run_evaluation(FlipDataset(mini), mini, ["flip-tiny", "box", "ellipse"], tmp_path / "run", EvalParams())
    iou = outcome.summary.set_index("model")["mean_iou"]
    assert outcome.summary.set_index("model").loc["flip-tiny", "weights_kind"] == "pretrained"
    assert iou["flip-tiny"] > iou["ellipse"] > iou["box"]


def test_records_carry_category_and_source_id_and_older_records_read_unknown(tmp_path):
    """COCO mini fixture: every record names its object's category and "<file name> annotation <id>" as the
    dataset stores them; a record file without those columns (an older run) reads "unknown"."""
    import pyarrow.parquet as pq

    data = Path(__file__).parent / "data" / "coco_val2017_mini.hdf5"
    out = tmp_path / "run"
    result = _eval("--dataset", str(data), "--model", "box", "--out", str(out))
    assert result.exit_code == 0, result.output
    ds = FlipDataset(data)
    records = load_records(out).set_index("instance_index")
    for j in range(ds.num_instances):
        meta, name = ds.instance_meta(j), ds.image_info(ds.image_of(j))["file_name"]
        assert records.loc[j, "category"] == meta["category"] != "unknown"
        assert records.loc[j, "source_id"] == f"{name} {meta['source_id']}"
    assert records.loc[0, "source_id"] == "000000229358.jpg annotation 91192"
    for part in out.glob("records/*/part-*.parquet"):  # as an older flipbench wrote them
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["category", "source_id"]), part)
    old = load_records(out)
    assert set(old["category"]) == {"unknown"} and set(old["source_id"]) == {"unknown"}
