"""IoU on hand-made masks, per-object seeds, summaries and the official CSV layout on hand-made records."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.evaluation.evaluate import object_seed
from benchmark.evaluation.metrics import mask_overlap
from benchmark.evaluation.official import official_frame
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.schema import OFFICIAL_CSV_COLUMNS, RECORD_COLUMNS, records_to_table
from benchmark.evaluation.summarize import SUMMARY_COLUMNS, summarize, summary_markdown


def test_iou_of_overlapping_squares():
    gt = np.zeros((10, 10), bool)
    pred = np.zeros((10, 10), bool)
    gt[0:4, 0:4] = True  # 16 px
    pred[2:6, 2:6] = True  # 16 px, 4 shared
    o = mask_overlap(pred, gt)
    assert (o.pred_pixels, o.gt_pixels, o.intersection, o.union) == (16, 16, 4, 28)
    assert o.iou == pytest.approx(4 / 28)


def test_iou_perfect_disjoint_and_empty_prediction():
    gt = np.zeros((5, 7), bool)
    gt[1:3, 2:6] = True
    assert mask_overlap(gt.copy(), gt).iou == 1.0
    other = np.zeros_like(gt)
    other[4, 0] = True
    assert mask_overlap(other, gt).iou == 0.0
    assert mask_overlap(np.zeros_like(gt), gt).iou == 0.0


def test_iou_is_nan_for_an_empty_ground_truth():
    gt = np.zeros((4, 4), bool)
    pred = np.ones((4, 4), bool)
    o = mask_overlap(pred, gt)
    assert math.isnan(o.iou) and o.union == 16 and o.intersection == 0


def test_mask_overlap_rejects_wrong_shapes_and_dtypes():
    gt = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="must be bool"):
        mask_overlap(np.zeros((4, 4), np.uint8), gt)
    with pytest.raises(ValueError, match="one size"):
        mask_overlap(np.zeros((4, 5), bool), gt)


def test_object_seed_is_deterministic_and_distinct():
    seeds = [object_seed(0, j) for j in range(1000)]
    assert seeds == [object_seed(0, j) for j in range(1000)]
    assert len(set(seeds)) == 1000
    assert object_seed(1, 5) != object_seed(0, 5)
    assert all(0 <= s < 2**31 for s in seeds)


def _record(model: str, j: int, iou: float, rel: float, t: float, warmup: bool = False, empty: bool = False):
    nan = math.nan
    return {
        "run_id": "r", "model": model, "weights_kind": "random-init" if model == "rnd" else "none",
        "dataset": "d", "dataset_fingerprint": "f", "shard": "s.hdf5", "image_index": j, "instance_index": j,
        "image_width": 10, "image_height": 10, "image_pixels": 100, "objects_in_image": 1,
        "mask_pixels": 0 if empty else int(rel * 100), "relative_mask_size": 0.0 if empty else rel,
        "pred_pixels": 0, "pred_rle": None, "intersection": 0, "union": 0, "iou": nan if empty else iou,
        "gt_empty": empty, "prompt_invalid": False,
        "box_x0": nan, "box_y0": nan, "box_x1": nan, "box_y1": nan,
        "t_data": 0.001, "t_preprocess": 0.0, "t_encoder": 0.25 * t, "t_decoder": 0.5 * t, "t_postprocess": 0.0,
        "t_total": nan if empty else t, "warmup": warmup, "input_tokens": 7 if model == "rnd" else None,
        "protocol_hash": "h", "device": "cpu", "node": "test", "category": "unknown", "source_id": f"i{j}.jpg obj",
        "prompt": "box", "selection": None, "prompt_points": None, "click_ious": None, "precision": None,
    }


def _frame(records):
    frame = records_to_table(records).to_pandas()
    frame["input_tokens"] = frame["input_tokens"].astype("Int64")
    return frame


def test_summarize_counts_empty_gt_small_objects_and_warmup():
    params = EvalParams()
    records = [
        _record("box", 0, 0.2, 0.005, 9.0, warmup=True),  # small, warm-up: not timed
        _record("box", 1, 0.6, 0.5, 1.0),
        _record("box", 2, 1.0, 0.008, 3.0),  # small
        _record("box", 3, 0.0, 0.0, 0.0, empty=True),
        _record("rnd", 0, 0.5, 0.5, 2.0),
    ]
    summary = summarize(_frame(records), params, {"box": {"parameters": 0}, "rnd": {"parameters": 12345}})
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    box = summary.set_index("model").loc["box"]
    assert (box.objects, box.empty_gt, box.scored, box.small_objects, box.timed_objects) == (4, 1, 3, 2, 2)
    assert box.mean_iou == pytest.approx(0.6)
    assert box.std_iou == pytest.approx(np.std([0.2, 0.6, 1.0], ddof=1))
    assert box.mean_iou_small == pytest.approx(0.6)
    assert box.time_per_object_s == pytest.approx(2.0)
    rnd = summary.set_index("model").loc["rnd"]
    assert rnd.weights_kind == "random-init" and rnd.parameters == 12345 and math.isnan(rnd.std_iou)
    text = summary_markdown(summary, {"run_id": "r", "dataset": {"name": "d"}, "sessions": []}, params)
    assert "RANDOM INIT" in text and "rnd †" in text and "60.00" in text


def test_official_frame_has_the_official_columns_and_skips_empty_gt():
    records = [
        _record("box", 1, 0.6, 0.5, 1.0),
        _record("box", 0, 0.2, 0.3, 2.0),
        _record("box", 2, 0, 0, 0, empty=True),
    ]
    out = official_frame(_frame(records))
    assert list(out.columns) == list(OFFICIAL_CSV_COLUMNS)
    assert list(out.columns) == ["iou", "relative_mask_size", "mask_size", "img_width", "img_height", "img_size",
                                 "data_load_time", "preprocessing_time", "postprocessing_time", "model_time",
                                 "input_tokens"]
    assert out["iou"].tolist() == [0.2, 0.6]  # dataset order, empty GT dropped
    assert out["model_time"].tolist() == pytest.approx([1.5, 0.75])  # encoder + decoder
    assert out["mask_size"].tolist() == [30, 50]


def test_records_table_rejects_missing_columns():
    record = _record("box", 0, 0.5, 0.1, 1.0)
    assert set(record) == set(RECORD_COLUMNS)
    del record["iou"]
    with pytest.raises(ValueError, match="missing \\['iou'\\]"):
        records_to_table([record])


def test_summarize_of_no_records_is_empty():
    empty = pd.DataFrame({c: [] for c in RECORD_COLUMNS})
    assert summarize(empty, EvalParams()).empty
