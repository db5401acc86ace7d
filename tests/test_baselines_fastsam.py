"""FastSAM adapter: box selection rule (inclusive box -> half-open slice), empty results, BGR input, threads."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _baselines_helpers import box_mask, prompts_for, random_image
from baselines.base import WeightsInfo
from baselines.fastsam import FastSamPredictor, build_segmentation_network


class FakeFastSAM:
    """Stands in for ``ultralytics.FastSAM``: returns fixed "segment everything" masks."""

    def __init__(self, masks: np.ndarray | None):
        self.masks = masks
        self.calls: list[dict] = []
        self.callbacks: dict[str, list] = {}
        self.model = torch.nn.Linear(2, 3)

    def add_callback(self, event, fn):
        self.callbacks.setdefault(event, []).append(fn)

    def predict(self, source, **kwargs):
        self.calls.append({"source": source, **kwargs})
        masks = None if self.masks is None else SimpleNamespace(data=torch.as_tensor(self.masks, dtype=torch.float32))
        return [SimpleNamespace(masks=masks, speed={"preprocess": 1.0, "inference": 5.0, "postprocess": 1.0})]


def make(masks, h=60, w=80) -> tuple[FastSamPredictor, FakeFastSAM]:
    fake = FakeFastSAM(masks)
    predictor = FastSamPredictor(fake, WeightsInfo("random-init", "test"))
    image = random_image(h, w)
    predictor.set_image(image)
    return predictor, fake


def test_inclusive_box_selects_the_mask_that_fills_it():
    """A is exactly the inclusive box; B is A without its last row and column (the half-open reading).

    With the correct ``[x0, y0, x1 + 1, y1 + 1)`` slice A scores IoU 1 and is chosen; an off-by-one (slicing
    ``[x0:x1]``) would pick B.
    """
    box = [10, 5, 40, 30]
    a = box_mask(box, (60, 80))
    b = box_mask([10, 5, 39, 29], (60, 80))
    predictor, _ = make(np.stack([b, a]))
    assert np.array_equal(predictor.predict(prompts_for([box]))[0], a)
    predictor, _ = make(np.stack([a, b]))
    assert np.array_equal(predictor.predict(prompts_for([box]))[0], a)


def test_selection_boxes_are_half_open_and_clipped():
    predictor, _ = make(np.zeros((1, 60, 80), bool))
    got = predictor.selection_boxes(np.array([[10, 5, 40, 30], [0, 0, 79, 59], [2.6, 3.2, 7.9, 8.5]]))
    assert got.tolist() == [[10, 5, 41, 31], [0, 0, 80, 60], [2, 3, 8, 9]]


def test_each_box_gets_its_own_mask_even_when_shared():
    left, right = box_mask([0, 0, 39, 59], (60, 80)), box_mask([40, 0, 79, 59], (60, 80))
    predictor, _ = make(np.stack([left, right]))
    masks = predictor.predict(prompts_for([[45, 0, 79, 59], [0, 0, 39, 59], [41, 1, 78, 58]]))
    assert [np.array_equal(m, right) for m in masks] == [True, False, True]
    assert np.array_equal(masks[1], left)


def test_no_detection_gives_empty_masks():
    predictor, _ = make(None)
    masks = predictor.predict(prompts_for([[1, 1, 20, 20], [0, 0, 79, 59]]))
    assert [m.shape for m in masks] == [(60, 80)] * 2 and not any(m.any() for m in masks)


def test_network_gets_bgr_and_the_authors_settings():
    predictor, fake = make(np.zeros((1, 60, 80), bool))
    call = fake.calls[-1]
    image = random_image(60, 80)
    assert np.array_equal(call["source"], image[..., ::-1])
    assert (call["imgsz"], call["conf"], call["iou"], call["retina_masks"]) == (1024, 0.4, 0.9, True)
    stages = predictor.timer.pop()
    assert set(stages) == {"preprocess", "encoder"} and stages["preprocess"] <= 0.001 + 1e-9


def test_callback_restores_torch_threads():
    predictor, fake = make(np.zeros((1, 60, 80), bool))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        for fn in fake.callbacks["on_predict_start"]:
            fn(None)
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_fastsam_x_parameter_count():
    """FastSAM-x builds 0.45 M (0.6 %) below the paper's 72.2 M, see baselines.fastsam (FastSAM-s: end-to-end test)."""
    count = sum(p.numel() for p in build_segmentation_network("fastsam-x").parameters())
    assert round(count / 1e6, 2) == 71.75 and abs(count / 1e6 - 72.2) / 72.2 < 0.01


def test_random_init_real_network_end_to_end():
    from benchmark.models import build_model

    threads = torch.get_num_threads()
    predictor = build_model("fastsam-s", allow_random=True)
    assert predictor.weights.kind == "random-init"
    assert round(predictor.num_parameters() / 1e6, 1) == 11.8  # paper: 11.8 M
    predictor.set_image(random_image(480, 640))
    masks = predictor.predict(prompts_for([[100, 80, 400, 300]]))
    assert masks[0].shape == (480, 640) and masks[0].dtype == bool
    assert set(predictor.timer.pop()) >= {"preprocess", "encoder"}
    assert torch.get_num_threads() == threads


def test_building_fastsam_leaves_pil_image_open_alone(tmp_path):
    """ultralytics patches PIL.Image.open at import; the adapter restores it so corrupt files still raise
    PIL's own UnidentifiedImageError (and no HEIF plugin install is attempted) elsewhere in the process."""
    from PIL import Image, UnidentifiedImageError

    from benchmark.models import build_model

    build_model("fastsam-s", allow_random=True)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)


def _ultralytics_prompt():
    """ultralytics' own ``FastSAMPredictor.prompt`` (the rules FastSAM's authors ship), on CPU."""
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam.predict import FastSAMPredictor as UltralyticsPredictor

    reference = UltralyticsPredictor.__new__(UltralyticsPredictor)
    reference.device = torch.device("cpu")

    def select(masks, **prompt):
        h, w = masks.shape[1:]
        result = Results(np.zeros((h, w, 3), np.uint8), path="x", names={0: "object"},
                         boxes=torch.zeros((len(masks), 6)), masks=torch.as_tensor(masks, dtype=torch.float32))
        (out,) = reference.prompt(result, **prompt)
        return out.masks.data.bool().numpy() if out.masks is not None else np.zeros((0, h, w), bool)

    return select


def test_box_and_point_rules_equal_ultralytics_fastsam_prompt():
    """The candidate mechanism's box rule picks ultralytics' mask for every box; its point rule merges exactly the
    masks ultralytics selects for the clicks (random overlapping masks, positive and negative clicks)."""
    from baselines.candidates import select_by_box, select_by_points

    select = _ultralytics_prompt()
    rng = np.random.default_rng(3)
    for trial in range(20):
        corners = [(*np.sort(rng.integers(0, 80, 2)), *np.sort(rng.integers(0, 60, 2))) for _ in range(6)]
        masks = np.stack([box_mask([x0, y0, x1, y1], (60, 80)) & (rng.random((60, 80)) > 0.2)
                          for x0, x1, y0, y1 in corners])
        t = torch.as_tensor(masks)
        box = np.array([*rng.integers(0, 30, 2), *rng.integers(40, 60, 2)], dtype=np.float64)
        (theirs,) = select(masks, bboxes=[[box[0], box[1], box[2] + 1, box[3] + 1]])  # their half-open slice
        ours = select_by_box(t, t.sum(dim=(1, 2)), box)
        assert np.array_equal(masks[ours], theirs), trial
        points = rng.integers(0, 60, (3, 2)).astype(np.float64)
        labels = np.array([1, 0, 1]) if trial % 2 else np.array([1, 1, 1])
        theirs = select(masks, points=points.astype(int).tolist(), labels=labels.tolist())
        expected = theirs.any(axis=0) if len(theirs) else np.zeros((60, 80), bool)
        assert np.array_equal(select_by_points(t, points, labels).numpy(), expected), trial


def test_point_and_oracle_selection_through_the_predictor():
    left, right = box_mask([0, 0, 39, 59], (60, 80)), box_mask([40, 0, 79, 59], (60, 80))
    predictor, _ = make(np.stack([left, right, left & box_mask([0, 0, 79, 29], (60, 80))]))
    from baselines.base import ObjectPrompt

    prompt = ObjectPrompt(np.array([0.0, 0, 10, 10]), np.zeros(5, np.float32), kind="points",
                          points=np.array([[50.0, 10.0]]), point_labels=np.array([1]))
    (got,) = predictor.predict([prompt])
    assert np.array_equal(got, right)
    prompt = ObjectPrompt(prompt.box_xyxy, prompt.rho, kind="points", points=np.array([[5.0, 10.0]]),
                          point_labels=np.array([1]))
    assert np.array_equal(predictor.predict([prompt])[0], left)  # left and its top half merge to left
    gt = box_mask([0, 0, 39, 31], (60, 80))
    assert np.array_equal(predictor.predict_oracle(gt), left & box_mask([0, 0, 79, 29], (60, 80)))
    empty, _ = make(None)
    assert not empty.predict_oracle(gt).any()
    assert {"decoder", "postprocess"} <= set(predictor.timer.pop())
