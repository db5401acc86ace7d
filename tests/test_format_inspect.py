"""`flipbench inspect`: statistics and checks on the committed mini fixture and on damaged copies."""

from __future__ import annotations

import json
import shutil

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.hdf5_format import FlipDataset
from objascale.inspection import inspect_dataset
from _shared import FLIP_REFERENCE, REPO_ROOT, require

MINI = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"


@pytest.fixture()
def mini_copy(tmp_path):
    path = tmp_path / "mini.hdf5"
    shutil.copy(MINI, path)
    return path


def run_inspect(path, tmp_path, *args):
    out = tmp_path / "inspect.json"
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json", str(out), *args])
    return res, (json.loads(out.read_text()) if out.exists() else None)


def statuses(summary):
    return {c["name"]: c["status"] for c in summary["checks"]}


def test_inspect_mini_fixture(tmp_path):
    res, summary = run_inspect(MINI, tmp_path)
    assert res.exit_code == 0, res.output
    assert summary["num_images"] == 3 and summary["num_instances"] == 36
    assert set(statuses(summary).values()) == {"pass"}
    rel = dict(summary["relative_size_hist"])
    assert sum(rel.values()) == 36 and sum(dict(summary["image_pixel_hist"]).values()) == 3
    ds = FlipDataset(MINI)  # histogram agrees with the decoded masks
    small = sum(ds.mask(j).mean() < 0.01 for j in range(36))
    assert sum(n for label, n in rel.items() if float(label.split(",")[1].strip(" )")) <= 0.01) == small
    assert summary["metadata"]["flipbench_provenance"]["source"] == "coco"
    for word in ("relative mask size", "checks", "PASS", "instances / image"):
        assert word in res.output


def test_inspect_fails_on_wrong_positions(mini_copy, tmp_path):
    with h5py.File(mini_copy, "a") as f:
        f["positions"][5] = f["positions"][5] + np.float32(0.01)
    res, summary = run_inspect(mini_copy, tmp_path, "--rho-sample", "36")
    assert res.exit_code == 1
    assert statuses(summary)["positions = moments of masks"] == "fail" and "[5]" in res.output


def test_inspect_fails_on_mask_size_mismatch_and_warns_on_empty(mini_copy, tmp_path):
    with h5py.File(mini_copy, "a") as f:
        f["instance_masks"][3] = cv2.imencode(".png", np.full((10, 10), 255, np.uint8))[1].reshape(-1)
        f["instance_masks"][7] = cv2.imencode(".png", np.zeros((423, 640), np.uint8))[1].reshape(-1)
    res, summary = run_inspect(mini_copy, tmp_path)
    assert res.exit_code == 1
    s = statuses(summary)
    assert s["masks match image size"] == "fail" and s["empty masks"] == "warn"
    assert summary["empty_masks"] == 1


def test_inspect_unreadable_file(tmp_path):
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"garbage")
    res = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert res.exit_code == 1 and "cannot be opened as HDF5" in res.output
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "missing.hdf5")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_inspect_official_file_without_convention_and_mask_sample():
    """The golden file (official converter: no flipbench attributes) passes; sampling limits the decoding."""
    ds = FlipDataset(require(FLIP_REFERENCE / "hdf5" / "coco-fixture-fixture-v1.hdf5"))
    assert "flipbench_bbox_convention" not in ds.metadata
    result = inspect_dataset(ds, rho_sample=17, mask_sample=10, seed=1)
    assert result.masks_analysed == 10 and not result.failed
    assert {c.name: c.status for c in result.checks}["boxes = boxes of masks"] == "pass"


def test_inspect_shard_directory(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(2):
        shutil.copy(MINI, shards / f"part-{k}.hdf5")
    res, summary = run_inspect(shards, tmp_path, "--rho-sample", "10")
    assert res.exit_code == 0, res.output
    assert summary["num_images"] == 6 and summary["num_instances"] == 72 and len(summary["shards"]) == 2
