"""Point prompts from the ground truth (SAM's 1 point, RITM's clicks), NoC, and the prompt-kind contract."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.base import ObjectPrompt, Predictor, PromptKindError
from benchmark.evaluation.evaluate import _simulate_clicks, accepted_prompts, resolve_prompt
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.prompts import Click, clicks_to_reach, farthest_interior_point, next_click


def rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def test_farthest_interior_point_is_the_centre_and_the_border_counts_as_boundary():
    assert farthest_interior_point(rect(20, 30, 4, 2, 12, 10)) == (8, 6)  # odd 9x9 square: its centre
    assert farthest_interior_point(np.ones((5, 5), bool)) == (2, 2)  # whole image: the border bounds it
    # a 7-wide, 11-tall mask touching the left and top borders: the border is boundary, so column 3 (distance 4 to
    # both sides); rows 3..7 all lie 4 from the nearest boundary and the first of them wins
    assert farthest_interior_point(rect(11, 11, 0, 0, 6, 10)) == (3, 3)


def test_ties_go_to_the_first_pixel_in_row_major_order():
    # even 4x4 square: the four central pixels tie; the first in row-major order is the top-left one
    assert farthest_interior_point(rect(10, 10, 2, 2, 5, 5)) == (3, 3)
    # two equal disjoint squares: the upper one
    m = rect(20, 20, 10, 1, 14, 5) | rect(20, 20, 1, 12, 5, 16)
    assert farthest_interior_point(m) == (12, 3)


def test_empty_mask_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        farthest_interior_point(np.zeros((4, 4), bool))


def test_next_click_follows_ritm():
    gt = rect(40, 40, 5, 5, 15, 15)
    first = next_click(gt, None)
    assert first == Click(x=10, y=10, positive=True)  # the first click is the 1-point prompt
    # a false-positive blob larger than the missed part: negative click in the blob's centre
    pred = gt | rect(40, 40, 20, 20, 34, 34)
    assert next_click(gt, pred) == Click(x=27, y=27, positive=False)
    # a missed region deeper than the false one: positive
    pred = rect(40, 40, 5, 5, 15, 9) | rect(40, 40, 30, 30, 31, 31)
    click = next_click(gt, pred)
    assert click.positive and click.y >= 10 and 5 <= click.x <= 15
    assert next_click(gt, gt) is None  # nothing left to click


def test_clicked_pixels_are_not_clicked_again_and_a_tie_is_negative():
    gt = rect(9, 9, 0, 0, 0, 0)  # one pixel
    clicked = np.zeros((9, 9), bool)
    clicked[0, 0] = True
    assert next_click(gt, None, clicked) is None
    gt = rect(20, 20, 1, 1, 3, 3)
    pred = rect(20, 20, 10, 10, 12, 12)  # missed 3x3 and false 3x3: equal depth -> negative (fn > fp is False)
    assert next_click(gt, pred) == Click(x=11, y=11, positive=False)


def test_clicks_to_reach():
    assert clicks_to_reach([0.5, 0.86, 0.91], 0.85, 20) == (2.0, True)
    assert clicks_to_reach([0.5, 0.86, 0.91], 0.90, 20) == (3.0, True)
    assert clicks_to_reach([0.5, 0.6], 0.90, 20) == (20.0, False)  # never: counts max_clicks
    assert clicks_to_reach([0.95], 0.90, 20) == (1.0, True)


class DiskClicker(Predictor):
    """Predicts the ground truth within radius 4 of each positive click, minus radius 4 of each negative one; hands
    back a token as its 'logits' and records what it was given."""

    prompt_kinds = ("box", "points")

    def __init__(self, gt):
        super().__init__()
        self.gt = gt
        self.seen: list[ObjectPrompt] = []

    def set_image(self, image):
        pass

    def predict(self, prompts):
        (p,) = prompts
        self.seen.append(p)
        yy, xx = np.mgrid[: self.gt.shape[0], : self.gt.shape[1]]
        pos = np.zeros(self.gt.shape, bool)
        neg = np.zeros(self.gt.shape, bool)
        for (x, y), label in zip(p.points, p.point_labels):
            near = (xx - x) ** 2 + (yy - y) ** 2 <= 16
            (pos if label == 1 else neg)[near] = True
        self.last_mask_inputs = [f"logits after {len(p.points)} clicks"]
        return [self.gt & pos & ~neg]


def test_click_simulation_feeds_back_the_logits_and_improves():
    gt = rect(30, 60, 2, 2, 50, 20)
    model = DiskClicker(gt)
    prompt = ObjectPrompt(np.array([2.0, 2, 50, 20]), np.zeros(5, np.float32), kind="points")
    pred, ious, last = _simulate_clicks(model, prompt, gt, 20)
    assert len(ious) == 20
    assert all(b >= a for a, b in zip(ious, ious[1:]))  # each positive click adds a disk of the object
    assert ious[-1] > ious[0] > 0
    assert model.seen[0].mask_input is None
    assert model.seen[1].mask_input == "logits after 1 clicks"
    assert [len(p.points) for p in model.seen] == list(range(1, len(model.seen) + 1))
    assert np.array_equal(last.points, model.seen[-1].points)


def test_a_finished_simulation_repeats_its_last_iou():
    gt = rect(10, 10, 4, 4, 5, 5)  # 2x2: one disk covers it
    model = DiskClicker(gt)
    prompt = ObjectPrompt(np.array([4.0, 4, 5, 5]), np.zeros(5, np.float32), kind="points")
    _, ious, _ = _simulate_clicks(model, prompt, gt, 5)
    assert ious == [1.0] * 5 and len(model.seen) == 1


class Named(Predictor):
    def __init__(self, name, kinds, **attrs):
        super().__init__()
        self.name, self.prompt_kinds = name, kinds
        for k, v in attrs.items():
            setattr(self, k, v)

    def set_image(self, image):
        pass

    def predict(self, prompts):
        return []


def test_models_are_refused_prompts_they_cannot_take_in_one_line():
    flip = Named("flip-tiny", ("gaussian",))
    assert resolve_prompt(flip, EvalParams()) == ("gaussian", None)
    with pytest.raises(PromptKindError, match=r"^flip-tiny cannot take point prompts \(it takes gaussian\)"):
        resolve_prompt(flip, EvalParams(prompt="point"))
    sam = Named("sam-b", ("box", "points"))
    assert accepted_prompts(sam) == ("box", "point", "clicks")
    assert resolve_prompt(sam, EvalParams(prompt="clicks")) == ("clicks", None)
    assert resolve_prompt(sam, EvalParams(select="oracle")) == ("box", None)  # prompted models ignore --select
    esam = Named("efficientsam-t", ("box", "points"), max_points=6)
    with pytest.raises(PromptKindError, match="at most 6 clicks.*--max-clicks 6"):
        resolve_prompt(esam, EvalParams(prompt="clicks"))
    assert resolve_prompt(esam, EvalParams(prompt="clicks", max_clicks=6)) == ("clicks", None)


def test_candidate_models_take_box_point_and_oracle_selection():
    from baselines.candidates import CandidatePredictor

    class Cands(CandidatePredictor):
        name = "fastsam-s"

        def segment(self, image):
            raise AssertionError

    c = Cands()
    assert accepted_prompts(c) == ("box", "point")
    assert resolve_prompt(c, EvalParams()) == ("box", "box")
    assert resolve_prompt(c, EvalParams(prompt="point")) == ("point", "point")
    assert resolve_prompt(c, EvalParams(select="oracle")) == ("box", "oracle")
    with pytest.raises(PromptKindError, match="--select point .* use --prompt point"):
        resolve_prompt(c, EvalParams(select="point"))
    with pytest.raises(PromptKindError, match="cannot take clicks"):
        resolve_prompt(c, EvalParams(prompt="clicks"))


def test_the_default_protocol_keeps_its_hash_and_unused_fields_do_not_change_it():
    # the hash every run before prompt kinds recorded: they still resume and compare
    assert EvalParams().protocol_hash() == "24e68483bf20c3d9"
    assert EvalParams(max_clicks=5).protocol_hash() == EvalParams().protocol_hash()  # only clicks runs use it
    assert EvalParams(prompt="clicks", max_clicks=5).protocol_hash() != EvalParams(prompt="clicks").protocol_hash()
    assert EvalParams(prompt="point").comparison_hash() == EvalParams().comparison_hash()
    with pytest.raises(ValueError, match="prompt must be one of"):
        EvalParams(prompt="scribble")
