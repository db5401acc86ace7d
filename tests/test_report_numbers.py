"""Report numbers against a hand-computed example: 2 models x 2 datasets x 3 objects, 100 x 100 px images.

IoUs (percent)            coco-test            objascale-test
  sam-h                   50, 70, 90           20, 40, 90
  flip-tiny               80, 80, 80           60, 90, (empty GT)
Mask pixels (both models) 50, 100, 5000        10, 99, 2000 (flip-tiny: 10, 99, 0)
Encoder seconds           sam-h: 5.0 (warm-up), 0.2, 0.4 | 0.1 x3;  flip-tiny: 0.01, 0.02, 0.06 | 0.05 x3
(other stages 0)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.evaluation.params import EvalParams
from benchmark.report import sections
from benchmark.report.paper import ALL_OBJECTS, SMALL_OBJECTS, load_paper_tables
from benchmark.report.runs import combine_runs, load_run
from benchmark.report.stats import (
    absolute_size_bin,
    add_size_bins,
    heatmap_grid,
    mean_ci,
    paired_heatmap_grid,
    size_curve,
    student_t_quantile,
)
from benchmark.report.synthetic import make_records, write_run

ZERO = {"t_data": 0.0, "t_preprocess": 0.0, "t_decoder": 0.0, "t_postprocess": 0.0}
D1, D2 = "coco-test", "objascale-test"
FT = "flip-tiny (window)"  # FLIP rows are named by their inference mode


def _objects() -> list[dict]:
    spec = [
        ("sam-h", D1, [(0.5, 50, 5.0, True), (0.7, 100, 0.2, False), (0.9, 5000, 0.4, False)]),
        ("flip-tiny", D1, [(0.8, 50, 0.01, False), (0.8, 100, 0.02, False), (0.8, 5000, 0.06, False)]),
        ("sam-h", D2, [(0.2, 10, 0.1, False), (0.4, 99, 0.1, False), (0.9, 2000, 0.1, False)]),
        ("flip-tiny", D2, [(0.6, 10, 0.05, False), (0.9, 99, 0.05, False), (0.0, 0, 0.05, False)]),
    ]
    return [{"model": m, "dataset": d, "iou": iou, "mask_pixels": px, "t_encoder": enc, "warmup": warm,
             "image_width": 100, "image_height": 100, "image_index": k, **ZERO}
            for m, d, objs in spec for k, (iou, px, enc, warm) in enumerate(objs)]


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    records = make_records(_objects())
    dirs = [write_run(root / name, records[records["dataset"] == name], single_file=single)
            for name, single in ((D1, True), (D2, False))]
    return combine_runs([load_run(d) for d in dirs])


def test_single_file_and_part_files_round_trip(combined):
    assert len(combined.records) == 12
    assert combined.labels == ["sam-h", FT]
    assert combined.datasets == [D1, D2]


def test_table1_means_stds_average(combined):
    data = sections.table1(combined).data.set_index("label")
    assert data.at["sam-h", f"{D1} mean"] == pytest.approx(70.0)
    assert data.at["sam-h", f"{D1} std"] == pytest.approx(20.0)  # ddof=1: sqrt((400 + 0 + 400) / 2)
    assert data.at["sam-h", f"{D2} mean"] == pytest.approx(50.0)
    assert data.at["sam-h", f"{D2} std"] == pytest.approx(math.sqrt(2600 / 2))
    assert data.at[FT, f"{D1} std"] == pytest.approx(0.0)
    assert data.at[FT, f"{D2} mean"] == pytest.approx(75.0)  # empty GT not scored
    assert data.at[FT, f"{D2} n"] == 2
    assert data.at[FT, f"{D2} gt_empty"] == 1
    assert data.at["sam-h", "average"] == pytest.approx(60.0)
    assert data.at[FT, "average"] == pytest.approx(77.5)
    # median of t_total over non-warm-up objects of all datasets
    assert data.at["sam-h", "time_ms_median"] == pytest.approx(100.0)
    assert data.at[FT, "time_ms_median"] == pytest.approx(50.0)
    assert data.at["sam-h", "params_m"] == pytest.approx(641.090608)
    display = sections.table1(combined).display.set_index("Model")
    assert display.at["sam-h", D1] == "70.00 ± 20.00 (n=3)"
    assert display.at["sam-h", "Average"] == "60.00"


def test_table3_small_objects_strict_threshold(combined):
    data = sections.table3(combined).data.set_index("label")
    assert data.at["sam-h", f"{D1} mean"] == pytest.approx(50.0)  # 100 px = exactly 1 %: not small
    assert data.at["sam-h", f"{D1} n"] == 1
    assert math.isnan(data.at["sam-h", f"{D1} std"])
    assert data.at["sam-h", f"{D2} mean"] == pytest.approx(30.0)
    assert data.at["sam-h", f"{D2} std"] == pytest.approx(math.sqrt(200.0))
    assert data.at[FT, f"{D2} mean"] == pytest.approx(75.0)
    assert data.at["sam-h", "average"] == pytest.approx(40.0)
    assert data.at[FT, "average"] == pytest.approx(77.5)
    assert sections.table3(combined).display.set_index("Model").at["sam-h", D1] == "50.00 (n=1)"


def test_size_bins():
    params = EvalParams()
    rel = np.array([0.005, 0.01, 0.5, 0.001, 0.0099, 0.2, 0.0, 1e-6, 1.0])
    assert params.relative_size_bin(rel).tolist() == [7, 8, 11, 6, 7, 10, -1, 0, 11]  # whole image: last bin
    pixels = np.array([50, 100, 5000, 10, 99, 2000, 0, 1])
    assert absolute_size_bin(pixels, params).tolist() == [2, 3, 6, 1, 3, 5, -1, 0]


def test_heatmap_cells_and_curve(combined):
    params = combined.params
    binned = add_size_bins(combined.records, params)
    sam_d1 = binned[(binned["label"] == "sam-h") & (binned["dataset"] == D1)]
    mean, count = heatmap_grid(sam_d1, params)
    assert count.sum() == 3
    assert count[2, 7] == 1 and mean[2, 7] == pytest.approx(50.0)
    assert count[3, 8] == 1 and mean[3, 8] == pytest.approx(70.0)
    # 5000 px = 50 % of the image: last relative bin (0.25 .. 1), absolute bin 4^6 .. 4^7 px
    assert count[6, 11] == 1 and mean[6, 11] == pytest.approx(90.0)
    assert np.isnan(mean[0, 0])
    sam_d2 = binned[(binned["label"] == "sam-h") & (binned["dataset"] == D2)]
    curve = size_curve(sam_d2, params).set_index("rel_bin")
    # 10 px -> 1e-3 (bin 6), 99 px -> 0.0099 (bin 7), 2000 px -> 0.2 (bin 10)
    assert curve["mean"].to_dict() == pytest.approx({6: 20.0, 7: 40.0, 10: 90.0})
    assert curve["n"].tolist() == [1, 1, 1]


def test_paired_heatmap_cells_hold_the_mean_paired_difference(combined):
    params = combined.params
    binned = add_size_bins(combined.records, params)
    d1 = binned[binned["dataset"] == D1]
    mean, count = paired_heatmap_grid(d1, params, FT, "sam-h")
    # flip-tiny minus sam-h per object: 80-50, 80-70, 80-90 in the cells of test_heatmap_cells_and_curve
    assert count.sum() == 3
    assert mean[2, 7] == pytest.approx(30.0) and mean[3, 8] == pytest.approx(10.0)
    assert mean[6, 11] == pytest.approx(-10.0)
    d2 = binned[binned["dataset"] == D2]
    mean, count = paired_heatmap_grid(d2, params, FT, "sam-h")
    # the empty-GT object is scored by sam-h only: not paired, so not counted
    assert count.sum() == 2
    assert mean[1, 6] == pytest.approx(40.0) and mean[3, 7] == pytest.approx(50.0)
    swapped, _ = paired_heatmap_grid(d2, params, "sam-h", FT)
    np.testing.assert_allclose(swapped[count > 0], -mean[count > 0])
    _, none = paired_heatmap_grid(d2, params, FT, "no such row")
    assert none.sum() == 0


def test_timing_median_p90_speedup(combined):
    data = sections.timing_section(combined, "sam-h").data.set_index(["dataset", "label"])
    sam = data.loc[(D1, "sam-h")]
    assert sam["n_timed"] == 2 and sam["n_excluded"] == 1
    assert sam["encoder_median_ms"] == pytest.approx(300.0)  # warm-up 5.0 s excluded
    assert sam["encoder_p90_ms"] == pytest.approx(380.0)  # 200 + 0.9 * (400 - 200)
    flip = data.loc[(D1, FT)]
    assert flip["total_median_ms"] == pytest.approx(20.0)
    assert flip["total_p90_ms"] == pytest.approx(52.0)  # 20 + 0.8 * (60 - 20)
    assert flip["speedup"] == pytest.approx(15.0)
    assert data.loc[(D1, "sam-h"), "speedup"] == pytest.approx(1.0)
    assert data.loc[(D2, FT), "speedup"] == pytest.approx(2.0)
    assert data.loc[(D2, FT), "n_excluded"] == 1  # the empty-GT object is not timed


def test_speedup_reference_falls_back_to_the_largest_model(tmp_path):
    objs = [o | {"model": {"sam-h": "mobilesam"}.get(o["model"], o["model"])} for o in _objects() if o["dataset"] == D1]
    run = write_run(tmp_path / "r", make_records(objs))
    combined = combine_runs([load_run(run)])
    table = sections.timing_section(combined, "sam-h")
    data = table.data.set_index("label")
    assert data.at["mobilesam", "speedup"] == pytest.approx(1.0)
    assert data.at[FT, "speedup"] == pytest.approx(15.0)
    assert any("versus mobilesam, the largest model in these runs (10.13 M parameters); sam-h is not in these runs"
               in n for n in table.notes)


def test_speedup_reference_prefers_a_row_the_paper_has(tmp_path):
    # equally large: flip-tiny (full) is slower, but only the window mode has a paper row (FLIP-Tiny)
    runs = []
    for mode, encoder in (("window", 0.02), ("full", 0.08)):
        params = EvalParams(flip_mode=mode)
        records = make_records([{"model": "flip-tiny", "dataset": D1, "iou": 0.8, "mask_pixels": 100,
                                 "t_encoder": encoder, "image_width": 100, "image_height": 100, **ZERO}] * 3,
                               protocol_hash=params.protocol_hash())
        runs.append(load_run(write_run(tmp_path / mode, records, params=params)))
    combined = combine_runs(runs)
    costs = sections.costs_table(combined, "sam-h").data.set_index("label")
    assert costs.at["flip-tiny (full)", "reference"] == FT
    assert costs.at["flip-tiny (full)", "ours_speedup"] == pytest.approx(0.25)
    assert math.isnan(costs.at["flip-tiny (full)", "paper_speedup"])  # the paper has no full-mode row


def test_paper_tables_rows_and_mapping():
    paper = load_paper_tables()
    assert len(paper.rows) == 322
    sam_h = paper.row(ALL_OBJECTS, "SAM-H", paper.average)
    assert (sam_h["iou_mean"], sam_h["params_m"], sam_h["time_ms"]) == (75.41, 641.1, 232.04)
    assert paper.row(SMALL_OBJECTS, "FLIPh-Tiny", "COCO")["iou_mean"] == 74.72
    assert paper.paper_label("flip-tiny", "window") == "FLIP-Tiny"
    assert paper.paper_label("flip-tiny", "hierarchical") == "FLIPh-Tiny"
    assert paper.paper_label("flip-tiny", "full") is None
    assert paper.paper_label("sam-h", None) == "SAM-H"
    assert paper.paper_label("box", None) is None
    assert paper.paper_dataset("coco-val2017") == "COCO"
    assert paper.paper_dataset("ObjaScale-v1") == "ObjaScale"
    assert paper.paper_dataset("kitti360-val") == "KITTI-360"
    assert paper.paper_dataset("openimages-v7-validation") == "OpenImages"
    assert paper.paper_dataset("my-dataset") is None
    # every model of Tables 1 and 3 has all six datasets and the average, and a registry model
    for table in (ALL_OBJECTS, SMALL_OBJECTS):
        part = paper.rows[paper.rows["table"] == table]
        assert part.groupby("model")["dataset"].apply(set).map(len).eq(7).all()
        assert part["registry"].notna().all()
    assert paper.rows[["params_m", "time_ms", "iou_mean", "iou_std"]].notna().all().all()


def test_paper_tables_equal_the_shared_reference():
    from _shared import SHARED, require

    reference = require(SHARED / "reference" / "paper_tables.csv")
    ours = load_paper_tables().rows[["table", "model", "params_m", "time_ms", "dataset", "iou_mean", "iou_std"]]
    pd.testing.assert_frame_equal(ours, pd.read_csv(reference))


def test_paper_comparison_per_dataset_and_mode(combined):
    table = sections.paper_table(combined)
    data = table.data.set_index(["label", "dataset"])
    assert data.at[("sam-h", D1), "paper_label"] == "SAM-H"
    assert data.at[("sam-h", D1), "paper_dataset"] == "COCO"
    assert data.at[("sam-h", D1), "diff"] == pytest.approx(70.0 - 78.41)
    assert data.at[("sam-h", D1), "n"] == 3
    assert data.at[(FT, D2), "paper_mean"] == pytest.approx(87.76)  # FLIP-Tiny on ObjaScale
    assert data.at[(FT, D2), "n"] == 2  # the empty-GT object is not scored
    assert "Average" not in set(data.index.get_level_values("dataset"))  # 2 of the 6 datasets: no average
    shown = table.display.set_index("Model")
    assert shown.loc["sam-h", "Ours: mean ± std (%)"].iloc[0] == "70.00 ± 20.00 (n=3)"
    small = sections.paper_table(combined, small=True).data.set_index(["label", "dataset"])
    assert small.at[("sam-h", D1), "mean"] == pytest.approx(50.0)
    assert small.at[("sam-h", D1), "paper_mean"] == pytest.approx(75.62)  # Table 3, COCO
    assert small.at[("sam-h", D1), "n"] == 1


def test_paper_average_only_over_all_six_datasets(tmp_path):
    params = EvalParams(flip_mode="hierarchical")
    names = ["hypersim-val", "kitti360-val", "openimages-v7-val", "coco-val2017", "lvis-v1-val", "objascale-v1"]
    runs = []
    for k, name in enumerate(names):
        records = make_records([{"model": "flip-tiny", "dataset": name, "iou": 0.5 + 0.05 * k, "mask_pixels": 100}],
                               protocol_hash=params.protocol_hash())
        runs.append(load_run(write_run(tmp_path / name, records, params=params)))
    combined = combine_runs(runs)
    assert combined.labels == ["flip-tiny (hierarchical)"]
    data = sections.paper_table(combined).data.set_index("dataset")
    assert data.at["Average", "paper_label"] == "FLIPh-Tiny"
    assert data.at["Average", "mean"] == pytest.approx(62.5)
    assert data.at["Average", "diff"] == pytest.approx(62.5 - 76.77)
    assert data.at["Average", "n"] == 6


def test_costs_versus_the_paper(combined):
    table = sections.costs_table(combined, "sam-h")
    data = table.data.set_index("label")
    assert data.at["sam-h", "ours_params_m"] == pytest.approx(641.090608)
    assert data.at["sam-h", "paper_params_m"] == pytest.approx(641.1)
    # medians over both datasets: sam-h 100 ms, flip-tiny 50 ms (empty-GT and warm-up objects not timed)
    assert data.at[FT, "ours_speedup"] == pytest.approx(2.0)
    assert data.at[FT, "paper_speedup"] == pytest.approx(232.04 / 9.82)
    assert data.at[FT, "ours_time_device"] == "CPU, 2 threads"
    columns = list(table.display.columns)
    assert "Time / object (ms, ours: CPU, 2 threads)" in columns and "Time / object (ms, paper: GPU)" in columns
    assert not any("offline" in n or "could not" in n for n in table.notes)


def test_random_init_rows_are_labelled(tmp_path):
    objs = [o | {"weights_kind": "random-init"} if o["model"] == "flip-tiny" else o
            for o in _objects() if o["dataset"] == D1]
    combined = combine_runs([load_run(write_run(tmp_path / "r", make_records(objs)))])
    assert "flip-tiny (window, random-init)" in combined.labels
    assert any("RANDOM-INIT" in w for w in combined.warnings)
    for table in (sections.table1(combined), sections.table3(combined), sections.timing_section(combined, "sam-h"),
                  sections.paper_table(combined), sections.costs_table(combined, "sam-h")):
        shown = table.display.iloc[:, 0].tolist()
        flagged = [s for s, f in zip(shown, table.flagged, strict=True) if f]
        assert flagged == ["flip-tiny (window, random-init)"], table.name
        assert any("random-init" in n for n in table.notes), table.name


def test_duplicate_objects_are_refused(tmp_path):
    from benchmark.report.runs import ReportInputError

    records = make_records([o for o in _objects() if o["dataset"] == D1])
    a = write_run(tmp_path / "a", records)
    b = write_run(tmp_path / "b", records)
    with pytest.raises(ReportInputError, match="evaluated more than once"):
        combine_runs([load_run(a), load_run(b)])


def test_records_schema_is_validated(tmp_path):
    from benchmark.report.runs import ReportInputError

    records = make_records(_objects()[:3])
    run = write_run(tmp_path / "r", records)
    records.drop(columns=["t_total"]).to_parquet(run / "records.parquet", index=False)
    with pytest.raises(ReportInputError, match="t_total"):
        load_run(run)
    with pytest.raises(ReportInputError, match="run.json is missing"):
        load_run(tmp_path)


@pytest.mark.parametrize("df, expected", [(1, 12.7062047), (2, 4.3026527), (5, 2.5705818), (10, 2.2281389),
                                          (30, 2.0422725), (200, 1.9718962), (1000, 1.9623391)])
def test_student_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=2e-6)


def test_mean_ci_by_hand():
    mean, low, high, n = mean_ci(np.array([50.0, 70.0, 90.0]))  # s = 20, sem = 20 / sqrt(3), t(0.975, 2)
    half = 4.3026527 * 20 / math.sqrt(3)
    assert (mean, n) == (70.0, 3)
    assert (low, high) == pytest.approx((70 - half, 70 + half), abs=1e-5)
    assert math.isnan(mean_ci(np.array([42.0]))[1])


def test_rows_follow_the_evaluation_order(tmp_path):
    # run.json lists sam-h first although its part files (records/flip-tiny/, records/sam-h/) sort the other way
    run = write_run(tmp_path / "r", make_records([o for o in _objects() if o["dataset"] == D1]))
    assert sorted(p.name for p in (run / "records").iterdir()) == ["flip-tiny", "sam-h"]
    assert list(load_run(run).records["model"]) == ["sam-h"] * 3 + ["flip-tiny"] * 3
    assert combine_runs([load_run(run)]).labels == ["sam-h", FT]


def test_duplicate_records_within_a_run_keep_the_first(tmp_path):
    # a resumed run may hold an object twice; like `flipbench eval`'s summaries, the first record counts
    records = make_records([o for o in _objects() if o["dataset"] == D1])
    again = records.iloc[[0]].assign(iou=0.0)
    run = write_run(tmp_path / "r", pd.concat([records, again], ignore_index=True))
    loaded = load_run(run).records
    assert len(loaded) == len(records)
    assert loaded.loc[loaded["model"] == "sam-h", "iou"].tolist() == [0.5, 0.7, 0.9]


def test_times_name_their_device_in_every_time_column(tmp_path):
    # one run on the CPU, one on a GPU: the time columns say so per cell
    objs = [o for o in _objects() if o["dataset"] == D1]
    cpu = write_run(tmp_path / "cpu", make_records([o for o in objs if o["model"] == "sam-h"]))
    gpu = write_run(tmp_path / "gpu", make_records([o for o in objs if o["model"] != "sam-h"]), device="cuda")
    combined = combine_runs([load_run(cpu), load_run(gpu)])
    assert combined.device_text("sam-h") == "CPU, 2 threads" and combined.device_text(FT) == "GPU"
    table1 = sections.table1(combined).display.set_index("Model")
    assert table1.at["sam-h", "Time / object (ms, ours)"].endswith("(CPU, 2 threads)")
    assert table1.at[FT, "Time / object (ms, ours)"].endswith("(GPU)")
    costs = sections.costs_table(combined, "sam-h").display.set_index("Model")
    assert costs.at[FT, "Time / object (ms, ours)"].endswith("(GPU)")
    assert "Time / object (ms, paper: GPU)" in costs.columns
    timing = sections.timing_section(combined, "sam-h").data.set_index("label")
    assert timing.at[FT, "device"] == "GPU"


def test_reference_may_be_a_row_label(combined):
    table = sections.timing_section(combined, FT)
    data = table.data.set_index(["dataset", "label"])
    assert data.loc[(D1, FT), "speedup"] == pytest.approx(1.0)
    assert data.loc[(D1, "sam-h"), "speedup"] == pytest.approx(20.0 / 300.0)
