"""Per-category tables and paired comparisons in the report: on real runs of the COCO mini fixture and on
synthetic runs whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.report.synthetic import make_records, write_run

COCO_MINI = Path(__file__).parent / "data" / "coco_val2017_mini.hdf5"


def test_report_on_coco_mini_has_categories_and_a_paired_table(tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["eval", "--dataset", str(COCO_MINI), "--model", "box,ellipse", "--out", str(run)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "300"])
    assert res.exit_code == 0, res.output
    rep = tmp_path / "rep"
    cats = pd.read_csv(rep / "categories_coco-val2017.csv")
    # 15 COCO categories; book (13), person (4)...: only book has >= 5 objects, the rest are pooled
    assert cats["category"].tolist() == ["book", "other"] and cats["objects"].tolist() == [13, 23]
    records = pd.read_parquet(run / "records" / "box")
    book = records[records["category"] == "book"]
    assert cats.loc[0, "box mean"] == pytest.approx(100 * book["iou"].mean())
    assert np.isnan(cats.loc[0, "box lo"])  # all 13 books lie in one image: no interval from one cluster
    assert cats.loc[1, "box lo"] < cats.loc[1, "box mean"] < cats.loc[1, "box hi"]
    paired = pd.read_csv(rep / "paired_comparisons.csv")
    assert paired[["a", "b", "objects", "images"]].values.tolist() == [["box", "ellipse", 36, 3]]
    md = (rep / "report.md").read_text()
    assert "## Accuracy per category" in md and "## Paired comparisons on shared objects" in md
    assert "other (14 categories < 5 objects)" in md and "(1 image: no interval)" in md
    assert "image-clustered bootstrap (300 replicates" in md
    html = (rep / "report.html").read_text()
    assert "IoU per category: coco-val2017" in html
    # three 640-px-wide images: relative and absolute size say the same, so no 2-D heat map, one line instead
    assert not (rep / "heatmap_coco-val2017.png").exists()
    assert "no relative × absolute size heat map — its image sizes span only 1.18x" in md  # 640x480 / 640x408


def test_known_answers_best_row_and_a_reference_beating_learned_rows(tmp_path):
    """Row "good" is 10 points above "ref" on cars, "ref" is 5 above "good" on cups."""
    objects = []
    rng = np.random.default_rng(0)
    for image in range(20):
        for cat in ["car", "car", "cup"]:
            base = float(rng.uniform(0.3, 0.6))
            ious = {"good": base + 0.1, "ref": base} if cat == "car" else {"good": base, "ref": base + 0.05}
            for model, iou in ious.items():
                objects.append({"model": model, "dataset": "d", "iou": iou, "mask_pixels": 400, "image_index": image,
                                "category": cat, "weights_kind": "none" if model == "ref" else "pretrained"})
    run = write_run(tmp_path / "run", make_records(objects))
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    cats = pd.read_csv(tmp_path / "rep" / "categories_d.csv").set_index("category")
    assert cats.loc["car", "best"] == "good" and cats.loc["cup", "best"] == "ref"
    assert cats.loc["car", "objects"] == 40 and cats.loc["cup", "objects"] == 20
    assert cats.loc["car", "good mean"] - cats.loc["car", "ref mean"] == pytest.approx(10.0)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "A weight-free reference beats every learned row on: cup (ref" in md
    paired = pd.read_csv(tmp_path / "rep" / "paired_comparisons.csv").set_index(["a", "b"])
    good_ref = paired.loc[("good", "ref")]
    assert good_ref["objects"] == 60 and good_ref["diff"] == pytest.approx((40 * 10 - 20 * 5) / 60)
    assert good_ref["a_wins"] == pytest.approx(40 / 60) and good_ref["b_wins"] == pytest.approx(20 / 60)
    assert good_ref["diff_lo"] < good_ref["diff"] < good_ref["diff_hi"]
    assert good_ref["p_holm"] >= good_ref["p"]


def _run_with(tmp_path, name, models, objects, status="completed", total=None):
    rows = [{"model": m, "dataset": "d", "iou": 0.5 + 0.01 * (k % 7), "mask_pixels": 300, "image_index": k // 3}
            for m in models for k in range(objects)]
    run = write_run(tmp_path / name, make_records(rows))
    import json

    meta = json.loads((run / "run.json").read_text())
    meta["sessions"][-1]["status"] = status
    meta["dataset"]["num_instances"] = total or objects
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_a_stopped_run_is_flagged_and_rows_are_compared_on_shared_objects(tmp_path):
    """A run left 'running' by a dead process, covering 12 of 30 objects, beside a complete one: the report says
    so, calls it interrupted, and every number is on the 12 shared objects."""
    full = _run_with(tmp_path, "full", ["box"], 30)
    part = _run_with(tmp_path, "part", ["ellipse"], 12, status="running", total=30)
    res = CliRunner().invoke(main, ["report", str(full), str(part), "--out", str(tmp_path / "rep"),
                                    "--bootstrap", "50"])
    assert res.exit_code == 0, res.output
    assert "interrupted (process gone)" in res.output
    assert "rows cover different objects (ellipse: 12 of 30)" in res.output
    assert "computed on the 12 objects all rows cover" in res.output
    table1 = pd.read_csv(tmp_path / "rep" / "table1_iou.csv").set_index("label")
    assert table1.loc["box", "d n"] == 12 == table1.loc["ellipse", "d n"]
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv").set_index("Run")
    assert runs.loc[str(part), "Objects"] == "12 of 30" and runs.loc[str(part), "Records"] == 12
    assert runs.loc[str(part), "Status"] == "interrupted (process gone)"
    assert runs.loc[str(full), "Status"] == "completed"


def test_datasets_of_few_images_say_their_intervals_are_rough(tmp_path):
    from benchmark.report.runs import FEW_IMAGES, load_runs

    few = load_runs([_run_with(tmp_path, "few", ["box"], 3 * (FEW_IMAGES - 1))])  # 3 objects per image
    assert [w for w in few.warnings if "rest on" in w] == [
        f"d: the 95 % intervals and paired tests rest on {FEW_IMAGES - 1} image(s) (objects of one image are "
        f"resampled together); with fewer than {FEW_IMAGES} images they understate the uncertainty: read them as "
        "rough."]
    enough = load_runs([_run_with(tmp_path, "enough", ["box"], 3 * FEW_IMAGES)])
    assert not [w for w in enough.warnings if "rest on" in w]


def test_a_run_killed_before_its_first_records_is_one_line_naming_its_status(tmp_path):
    part = _run_with(tmp_path, "part", ["ellipse"], 12, status="running", total=30)
    for file in (part / "records").rglob("*.parquet"):
        file.unlink()
    res = CliRunner().invoke(main, ["report", str(part), "--out", str(tmp_path / "rep")])
    assert res.exit_code != 0
    assert res.output.strip().splitlines() == [
        f"Error: {part}: holds no records yet (its last session is 'interrupted (process gone)'); resume it with "
        f"the same `flipbench eval ... --out {part}` command, or leave it out of the report"]
    assert not (tmp_path / "rep").exists()


def test_gallery_names_objects_and_pairs_learned_rows_by_default(tmp_path):
    from benchmark.report.gallery import default_pairs, object_name, parse_pairs
    from benchmark.report.runs import load_runs

    rows = [{"model": m, "dataset": "d", "iou": 0.5, "mask_pixels": 300, "image_index": 0,
             "weights_kind": "none" if m in ("box", "ellipse") else "pretrained"}
            for m in ("net-a", "box", "net-b", "ellipse") for _ in range(3)]
    combined = load_runs([write_run(tmp_path / "run", make_records(rows))])
    assert default_pairs(combined, combined.labels) == [("net-a", "net-b")]
    assert default_pairs(combined, ["box", "ellipse", "net-a"]) == []  # never a learned row against a reference
    assert default_pairs(combined, ["box", "ellipse"]) == [("box", "ellipse")]  # only references: theirs
    assert parse_pairs("net-a:box", combined.labels) == [("net-a", "box")]
    with pytest.raises(ValueError, match="no row 'sam' in these runs"):
        parse_pairs("net-a:sam", combined.labels)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "rep"),
                                    "--gallery-pairs", "box"])
    assert res.exit_code != 0 and "Error: --gallery-pairs: 'box' is not A:B" in res.output
    record = pd.Series({"category": "book", "source_id": "000000255165.jpg annotation 1999"})
    assert object_name(record, 12, 1) == "book: 000000255165.jpg annotation 1999 (object 12, image 1)"
    assert object_name(pd.Series({"category": "unknown", "source_id": "unknown"}), 3, 0) == "object 3, image 0"


def test_gallery_zooms_into_objects_smaller_than_the_crop(tmp_path, monkeypatch):
    """A 3 x 3 px object: its gallery panels get a zoom inset of its box (the figure renders with it)."""
    from benchmark.report import gallery
    from objascale.hdf5_format import FlipH5Writer

    rgb = (np.random.default_rng(0).uniform(0, 255, (120, 160, 3))).astype(np.uint8)
    tiny, big = np.zeros((120, 160), bool), np.zeros((120, 160), bool)
    tiny[50:53, 70:73] = True
    big[10:90, 20:120] = True
    data = tmp_path / "tiny.hdf5"
    with FlipH5Writer(data, dataset_name="tiny", dataset_type="val") as w:
        w.add_image(rgb, [tiny, big], instances=[{"category": "speck", "source_id": "annotation 1"},
                                                 {"category": "slab", "source_id": "annotation 2"}])
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["eval", "--dataset", str(data), "--model", "box,ellipse",
                                     "--out", str(run)]).exit_code == 0
    zoomed = []
    real = gallery._zoom_inset
    monkeypatch.setattr(gallery, "_zoom_inset", lambda ax, image, pred, gt, rec, colour: (
        zoomed.append(int(rec["mask_pixels"])), real(ax, image, pred, gt, rec, colour)))
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert zoomed == [9, 9, 9]  # ground truth + two rows, only for the 3 x 3 object
    assert (tmp_path / "rep" / "gallery_tiny.png").stat().st_size > 0
    # the figure's own title is the gallery's, not a copy of its last row's object name
    built = []
    real_figure = gallery.gallery_figure
    monkeypatch.setattr(gallery, "gallery_figure", lambda *a, **k: built.append(real_figure(*a, **k)) or built[-1])
    assert CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep2"),
                                     "--bootstrap", "20"]).exit_code == 0
    assert [fig.get_suptitle() for fig in built] == ["Gallery — tiny"]


def test_coco_size_classes_follow_the_coco_definition(tmp_path):
    from benchmark.report.comparisons import coco_size_bin

    assert coco_size_bin(np.array([1, 1023, 1024, 9216, 9217])).tolist() == [
        "small", "small", "medium", "medium", "large"]
    rows = [{"model": "box", "dataset": "d", "iou": iou, "mask_pixels": px, "image_index": k}
            for k, (iou, px) in enumerate([(0.2, 100), (0.4, 500), (0.6, 2000), (0.9, 20000)])]
    run = write_run(tmp_path / "run", make_records(rows))
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "100"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "rep" / "coco_size_bins.csv").set_index("size")
    assert table["mean"].to_dict() == pytest.approx({"small": 30.0, "medium": 60.0, "large": 90.0})
    assert table["n"].to_dict() == {"small": 2, "medium": 1, "large": 1}
    assert "## Accuracy by COCO size class" in (tmp_path / "rep" / "report.md").read_text()


def test_table1_and_the_paper_comparison_carry_intervals(tmp_path):
    from benchmark.report.synthetic import random_records

    run = write_run(tmp_path / "run", random_records(["sam-h", "box"], "coco-val2017", images=30))
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    t1 = pd.read_csv(tmp_path / "rep" / "table1_iou.csv").set_index("label")
    for label in ("sam-h", "box"):
        assert t1.loc[label, "coco-val2017 lo"] < t1.loc[label, "coco-val2017 mean"] < t1.loc[label, "coco-val2017 hi"]
    paper = pd.read_csv(tmp_path / "rep" / "paper_comparison.csv")
    row = paper[(paper["label"] == "sam-h") & (paper["dataset"] == "coco-val2017")].iloc[0]
    assert row["paper_inside"] == ("yes" if row["lo"] <= row["paper_mean"] <= row["hi"] else "no")
    assert "Paper inside our 95 % interval" in (tmp_path / "rep" / "paper_comparison.md").read_text()
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep0"), "--bootstrap", "0"])
    assert res.exit_code == 0 and "Paper inside" not in (tmp_path / "rep0" / "paper_comparison.md").read_text()


@pytest.mark.parametrize("device, shown", [("cpu", False), ("cuda", True)])
def test_paper_speedups_stand_only_beside_gpu_runs(tmp_path, device, shown):
    from benchmark.report.synthetic import random_records

    run = write_run(tmp_path / "run", random_records(["sam-h", "flip-tiny"], "coco-val2017", images=6),
                    device=device)
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    costs = (tmp_path / "rep" / "costs.md").read_text()
    header = costs.splitlines()[2]
    assert ("Speed-up vs sam-h: paper" in header) is shown
    assert ("speed-ups do not carry across devices" in costs) is not shown
    assert "Speed-up vs sam-h: ours (same runs)" in header


def test_flip_in_bf16_is_its_own_row_beside_fp32():
    """Runs that differ only in FLIP's precision are reported together (flip_precision is a mode field), the bf16
    row named so; fp32 rows keep their old names."""
    from types import SimpleNamespace

    import pandas as pd

    from benchmark.evaluation.params import EvalParams
    from benchmark.report.runs import model_label, model_mode

    assert EvalParams(flip_precision="bf16").comparison_hash() == EvalParams().comparison_hash()
    records = pd.DataFrame({"input_tokens": [512]})
    bf16 = SimpleNamespace(models={"flip-tiny": {"mode": "window", "precision": "bf16"}}, flip_mode="window")
    fp32 = SimpleNamespace(models={"flip-tiny": {"mode": "window", "precision": "fp32"}}, flip_mode="window")
    assert model_label("flip-tiny", model_mode(bf16, "flip-tiny", records), False) == "flip-tiny (window, bf16)"
    assert model_label("flip-tiny", model_mode(fp32, "flip-tiny", records), False) == "flip-tiny (window)"
