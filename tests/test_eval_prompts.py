"""Prompt kinds end to end: point, clicks and candidate selection through `eval`, records, and the report's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_run import _make_dataset

from baselines.base import Predictor
from baselines.candidates import CandidatePredictor
from benchmark.evaluation.accumulate import load_records
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.prompts import farthest_interior_point
from benchmark.evaluation.rle import decode_mask
from benchmark.evaluation.runner import run_evaluation
from benchmark.models import build_model
from benchmark.report.build import build_report
from benchmark.report.runs import load_runs
from objascale.hdf5_format import FlipDataset


@pytest.fixture(autouse=True)
def stand_in_models(monkeypatch):
    """Register the stand-ins' names (``BUILD`` builds them; the registry entries are never imported)."""
    from benchmark.models import MODEL_REGISTRY

    for name in ("clicker", "cands"):
        monkeypatch.setitem(MODEL_REGISTRY, name, "tests:stand-in")


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    return _make_dataset(tmp_path_factory.mktemp("promptdata") / "tiny.hdf5")


class BrightClicker(Predictor):
    """Box: the bright pixels (the discs) inside the box. Points: bright pixels within radius 6 of a positive click,
    minus those within radius 6 of a negative one. Records each call's points and hands back a token as its previous logits."""

    prompt_kinds = ("box", "points")

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def set_image(self, image):
        self.bright = image[..., 0] > 150

    def predict(self, prompts):
        out = []
        for p in prompts:
            self.calls.append((p.kind, None if p.points is None else p.points.copy(), p.mask_input))
            h, w = self.bright.shape
            yy, xx = np.mgrid[:h, :w]
            if p.kind == "box":
                x0, y0, x1, y1 = p.box_xyxy.astype(int)
                keep = np.zeros((h, w), bool)
                keep[y0:y1 + 1, x0:x1 + 1] = True
            else:
                keep = np.zeros((h, w), bool)
                for (x, y), label in zip(p.points, p.point_labels):
                    near = (xx - x) ** 2 + (yy - y) ** 2 <= 36
                    keep = keep | near if label == 1 else keep & ~near
            out.append(self.bright & keep)
        self.last_mask_inputs = [len(self.calls)] * len(prompts)
        return out


class BrightCandidates(CandidatePredictor):
    """Candidates: each bright connected disc, plus the whole image."""

    def segment(self, image):
        import cv2

        n, labels = cv2.connectedComponents((image[..., 0] > 150).astype(np.uint8))
        masks = [labels == k for k in range(1, n)] + [np.ones(labels.shape, bool)]
        return torch.as_tensor(np.stack(masks)), None


def builder_for(models):
    def build(spec, device="cpu", allow_random=False):
        p = models[spec]()
        p.name = spec
        return p
    return build


BUILD = builder_for({"clicker": BrightClicker, "cands": BrightCandidates, "box": lambda: build_model("box")})


def run(dataset_path, out, models, **params):
    ds = FlipDataset(dataset_path)
    return run_evaluation(ds, dataset_path, models, out, EvalParams(**params), builder=BUILD, progress=False)


def test_point_prompt_is_the_interior_most_pixel_and_is_recorded(dataset_path, tmp_path):
    run(dataset_path, tmp_path / "point", ["clicker", "cands"], prompt="point")
    records = load_records(tmp_path / "point")
    ds = FlipDataset(dataset_path)
    scored = records[records["iou"].notna()]
    assert set(scored["prompt"]) == {"point"}
    selection = scored.groupby("model")["selection"].agg(lambda v: set(v.dropna()))
    assert selection.to_dict() == {"cands": {"point"}, "clicker": set()}
    for r in scored.itertuples():
        x, y = farthest_interior_point(ds.mask(r.instance_index))
        assert list(r.prompt_points) == [x, y, 1.0]
    # FastSAM's point rule: the selected candidates hold the click
    for r in scored[scored["model"] == "cands"].itertuples():
        mask = decode_mask(r.pred_rle, r.image_height, r.image_width)
        assert mask[int(r.prompt_points[1]), int(r.prompt_points[0])]


def test_clicks_record_every_iou_and_feed_back_the_logits(dataset_path, tmp_path):
    run(dataset_path, tmp_path / "clicks", ["clicker"], prompt="clicks", max_clicks=4)
    records = load_records(tmp_path / "clicks")
    scored = records[records["iou"].notna()]
    assert len(scored) > 5 and set(scored["prompt"]) == {"clicks"} and scored["selection"].isna().all()
    for r in scored.itertuples():
        assert len(r.click_ious) == 4 and r.iou == r.click_ious[-1]
        assert all(b >= a - 1e-12 for a, b in zip(r.click_ious, r.click_ious[1:]))
        points = np.asarray(r.prompt_points).reshape(-1, 3)
        assert 1 <= len(points) <= 4 and points[0, 2] == 1.0
    empty = records[records["gt_empty"]]
    assert empty["click_ious"].isna().all() and empty["prompt"].eq("clicks").all()


def test_refusals_leave_no_run(dataset_path, tmp_path):
    with pytest.raises(ValueError, match="box cannot take point prompts"):
        run(dataset_path, tmp_path / "refused", ["clicker", "box"], prompt="point")
    assert not (tmp_path / "refused" / "run.json").exists()


def test_report_names_rows_by_prompt_marks_oracle_and_tables_noc(dataset_path, tmp_path):
    run(dataset_path, tmp_path / "native", ["clicker", "cands", "box"])
    run(dataset_path, tmp_path / "point", ["clicker", "cands"], prompt="point")
    run(dataset_path, tmp_path / "clicks", ["clicker"], prompt="clicks")
    run(dataset_path, tmp_path / "oracle", ["cands"], select="oracle")
    dirs = [tmp_path / d for d in ("native", "point", "clicks", "oracle")]
    combined = load_runs(dirs)
    assert combined.labels == ["clicker (box)", "cands (box-selected)", "box (box)", "clicker (1 point)",
                               "cands (point-selected)", "clicker (clicks)", "cands (oracle: upper bound)"]
    assert combined.oracle_labels() == ["cands (oracle: upper bound)"]
    assert "cands (oracle: upper bound)" not in combined.learned_labels()
    assert any(w.startswith("ORACLE SELECTION") for w in combined.warnings)
    # the oracle is an upper bound of every selection among the same candidates, object by object
    wide = combined.records.pivot_table(index="instance_index", columns="label", values="iou")
    oracle = wide["cands (oracle: upper bound)"]
    assert (oracle >= wide["cands (box-selected)"]).all() and (oracle >= wide["cands (point-selected)"]).all()
    assert (oracle == 1.0).mean() > 0.8
    out = build_report(dirs, tmp_path / "report", n_boot=50)
    noc = out.tables["clicks_noc"].data
    assert noc["label"].tolist() == ["clicker (clicks)"] and (noc["max_clicks"] == 20).all()
    assert 1 <= noc["noc_85"].iloc[0] <= 20 and noc["miou_5"].iloc[0] >= noc["miou_1"].iloc[0]
    assert "Interactive segmentation" in (tmp_path / "report" / "report.md").read_text()


def test_runs_with_the_native_prompt_keep_their_row_names(dataset_path, tmp_path):
    run(dataset_path, tmp_path / "native", ["clicker", "box"])
    assert load_runs([tmp_path / "native"]).labels == ["clicker", "box"]
