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
    slowest = timing["total_median_ms"].idxmax()  # no sam-h, no model with parameters: versus the slowest
    expected = timing.at[slowest, "total_median_ms"] / timing["total_median_ms"]
    assert timing["speedup"].to_numpy() == pytest.approx(expected.to_numpy())


def test_stored_masks_rescore_to_the_recorded_iou(real_report):
    # the masks in the records (pred_rle) are the predictions: re-scored against the dataset, they give the IoUs
    from benchmark.evaluation.accumulate import load_records
    from benchmark.evaluation.metrics import mask_overlap
    from benchmark.evaluation.rle import decode_mask
    from objascale.hdf5_format import FlipDataset

    records = load_records(real_report / "run")
    assert records["pred_rle"].notna().all()  # no empty-GT objects in the sample
    with FlipDataset(MINI) as dataset:
        for _, r in records.iloc[::7].iterrows():
            pred = decode_mask(r["pred_rle"], r["image_height"], r["image_width"])
            overlap = mask_overlap(pred, dataset.mask(int(r["instance_index"])))
            assert (overlap.iou, overlap.pred_pixels) == (pytest.approx(r["iou"]), r["pred_pixels"])


def test_gallery_shows_the_stored_masks(real_report):
    html = (real_report / "report" / "report.html").read_text()
    gallery = html[html.index('<section id="gallery">'):]
    gallery = gallery[:gallery.index("</section>")]
    assert gallery.count("data:image/png;base64,") == 1  # one dataset
    assert (real_report / "report" / "gallery_coco-val2017.png").stat().st_size > 10_000


def test_gallery_says_when_the_dataset_file_is_missing(real_report, tmp_path):
    import json
    import shutil

    moved = tmp_path / "run"
    shutil.copytree(real_report / "run", moved)
    meta = json.loads((moved / "run.json").read_text())
    meta["dataset"]["path"] = str(tmp_path / "gone.hdf5")
    (moved / "run.json").write_text(json.dumps(meta))
    done = CliRunner().invoke(main, ["report", str(moved), "--out", str(tmp_path / "report")])
    assert done.exit_code == 0, done.output
    html = (tmp_path / "report" / "report.html").read_text()
    assert "The dataset file is not on this machine" in html and "gone.hdf5" in html
    assert not (tmp_path / "report" / "gallery_coco-val2017.png").exists()


def test_records_of_runs_without_masks_stay_readable(real_report, tmp_path):
    # runs written before pred_rle existed: eval's reader and the report read them, the gallery says why it is empty
    import shutil

    import pyarrow.parquet as pq

    from benchmark.evaluation.accumulate import load_records

    old = tmp_path / "old"
    shutil.copytree(real_report / "run", old)
    for part in old.glob("records/*/part-*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["pred_rle"]), part)
    records = load_records(old)
    assert records["pred_rle"].isna().all() and len(records) == len(load_records(real_report / "run"))
    done = CliRunner().invoke(main, ["report", str(old), "--out", str(tmp_path / "report")])
    assert done.exit_code == 0, done.output
    assert "No predicted masks are stored in these runs" in (tmp_path / "report" / "report.html").read_text()
