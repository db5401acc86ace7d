"""Stored masks (COCO RLE in the records), old records without them, the gallery's choice of objects and the
IoU-versus-size curve's counts and x-range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.rle import decode_mask, encode_mask
from benchmark.evaluation.schema import RECORD_SCHEMA, conform_table
from benchmark.report.figures import FEW_OBJECTS, curve_figure
from benchmark.report.gallery import MIN_CROP, crop_box, pick_objects
from benchmark.report.stats import add_size_bins
from benchmark.report.synthetic import make_records


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (480, 640)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(0)
    for mask in (np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.3):
        counts = encode_mask(mask)
        assert isinstance(counts, bytes)
        assert np.array_equal(decode_mask(counts, *shape), mask)


def test_rle_is_compact_for_object_masks():
    mask = np.zeros((1080, 1920), bool)
    mask[300:700, 500:1100] = True
    assert len(encode_mask(mask)) < 2000  # vs 2 MB of pixels


def test_conform_table_reads_records_without_masks_and_rejects_missing_columns():
    old_schema = pa.schema([f for f in RECORD_SCHEMA if f.name != "pred_rle"])
    old = pa.Table.from_pylist([{f.name: None for f in old_schema}], schema=old_schema)
    table = conform_table(old, "old.parquet")
    assert table.schema == RECORD_SCHEMA and table.column("pred_rle").null_count == 1
    with pytest.raises(ValueError, match=r"old.parquet: .*missing \['iou'\]"):
        conform_table(old.drop_columns(["iou"]), "old.parquet")
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        conform_table(table.append_column("extra", pa.array([1])), "new.parquet")


def _gallery_records() -> pd.DataFrame:
    # objects 0..4; IoUs of two models; object 3 is where they disagree most, object 4 the smallest
    ious = {"a": [1.0, 0.5, 0.125, 1.0, 0.625], "b": [0.75, 0.5, 0.25, 0.25, 0.625]}
    pixels = [500, 400, 300, 600, 20]
    objs = [{"model": m, "dataset": "d", "iou": iou, "mask_pixels": px} for m, values in ious.items()
            for iou, px in zip(values, pixels, strict=True)]
    return make_records(objs).assign(label=lambda f: f["model"])


def test_gallery_picks_best_median_worst_smallest_and_disagreement():
    picks = dict(pick_objects(_gallery_records(), ["a", "b"]))
    # mean IoUs 0.875, 0.5, 0.1875, 0.625, 0.625 -> best 0, median (rank 2 of 5, stable order) 3, worst 2
    assert picks[0].startswith("best") and picks[2].startswith("worst") and picks[4].startswith("smallest (20 px)")
    assert picks[3].startswith("median") and "disagree: a vs b, ΔIoU 75.0" in picks[3]
    assert "disagree: a vs b, ΔIoU 25.0" in picks[0]  # the second-largest gap
    assert list(picks) == [0, 3, 2, 4]


def test_crop_box_pads_and_clips():
    record = pd.Series({"box_x0": 30.0, "box_y0": 0.0, "box_x1": 79.0, "box_y1": 3.0})
    x0, y0, x1, y1 = crop_box(record, 100, 50)
    assert (x0, x1) == (5, 100)  # 50 px wide, padded by 25 each side, clipped at the right
    assert (y0, y1) == (0, 26)  # 4 px high -> at least MIN_CROP: padded by 22, clipped at the top
    assert MIN_CROP == 48


def test_curve_fits_its_x_range_and_counts_objects():
    params = EvalParams()
    objs = [{"model": "m", "dataset": "d", "iou": 0.5, "mask_pixels": px, "image_width": 100, "image_height": 100}
            for px in [50] * 12 + [2000] * 3]  # 12 objects at 0.5 %, 3 at 20 %
    binned = add_size_bins(make_records(objs).assign(label="m"), params)
    fig, curve = curve_figure(binned, params, ["m"], "d", set())
    ax, diff_ax, counts_ax = fig.axes
    assert ax.get_xlim() == pytest.approx((params.relative_size_edges[7], params.relative_size_edges[11]))
    assert curve["n"].tolist() == [12, 3]
    texts = [t.get_text() for t in counts_ax.texts]
    assert texts == ["12", "3"]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [curve["centre"].iloc[1]]  # 3 < FEW_OBJECTS
    assert FEW_OBJECTS == 10
    assert ax.get_ylim() == (45.0, 55.0) and "y-range fitted to the data (45–55 %)" in ax.get_title()
    assert [t.get_text() for t in diff_ax.texts] == ["one row only: no paired differences"]


def test_curve_rows_get_distinct_markers_and_a_paired_difference_panel():
    params = EvalParams()
    objs = [{"model": m, "dataset": "d", "iou": iou, "mask_pixels": 50, "image_width": 100, "image_height": 100,
             "image_index": k} for m, iou in (("a", 0.5), ("b", 0.7)) for k in range(12)]
    binned = add_size_bins(make_records(objs).assign(label=lambda f: f["model"]), params)
    fig, _ = curve_figure(binned, params, ["a", "b"], "d", set(), n_boot=100, reference="a")
    ax, diff_ax, _ = fig.axes
    styles = {(line.get_marker(), str(line.get_linestyle())) for line in ax.lines if line.get_label() in ("a", "b")}
    assert len(styles) == 2  # overlapping rows stay distinguishable
    (diff_line,) = [line for line in diff_ax.lines if len(line.get_xdata()) and line.get_marker() != "None"]
    assert list(diff_line.get_ydata()) == pytest.approx([20.0])  # b − a on the same 12 objects
    assert "image-clustered bootstrap" in ax.get_title()
