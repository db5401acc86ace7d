"""SAM 2.1 adapter (extra row): parameter counts, missing checkpoint, box transform (slow), point prompts equal to
``SAM2ImagePredictor``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "sam2", reason='sam2 is not installed: SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e ".[sam2]"'
)

from _baselines_helpers import prompts_for, random_image
from baselines.sam2 import SAM2_CONFIGS, build_sam2_model

# SAM 2.1 model card (github.com/facebookresearch/sam2): 38.9 M, 46 M, 80.8 M, 224.4 M
OFFICIAL_MILLIONS = {"sam2.1-t": 38.9, "sam2.1-s": 46.0, "sam2.1-b+": 80.8, "sam2.1-l": 224.4}


@pytest.mark.parametrize(
    "variant", [v if v == "sam2.1-t" else pytest.param(v, marks=pytest.mark.slow) for v in SAM2_CONFIGS]
)
def test_parameter_counts_match_the_model_card(variant):
    count = sum(p.numel() for p in build_sam2_model(variant).parameters())
    assert abs(count / 1e6 - OFFICIAL_MILLIONS[variant]) < 0.1


def test_missing_checkpoint_without_allow_random(tmp_path, monkeypatch):
    from benchmark.models import build_model
    from baselines.weights import MissingCheckpointError

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    with pytest.raises(MissingCheckpointError, match="sam2.1_hiera_tiny.pt"):
        build_model("sam2.1-t")


@pytest.mark.slow
def test_box_reaches_the_prompt_encoder_normalised_and_scaled(monkeypatch):
    from benchmark.models import build_model

    predictor = build_model("sam2.1-t", allow_random=True)
    seen = {}
    encoder = predictor.model.sam_prompt_encoder
    original = encoder.forward

    def spy(points, boxes, masks):
        seen["points"], seen["labels"] = points[0].clone(), points[1].clone()
        return original(points=points, boxes=boxes, masks=masks)

    monkeypatch.setattr(encoder, "forward", spy)
    predictor.set_image(random_image(480, 640))
    masks = predictor.predict(prompts_for([[10, 20, 300, 400], [0, 0, 639, 479]]))
    # stretched to 1024x1024: x * 1024/640, y * 1024/480, as two corner points labelled 2 and 3
    expected = torch.tensor(
        [[[16.0, 20 * 1024 / 480], [480.0, 400 * 1024 / 480]], [[0.0, 0.0], [1022.4, 479 * 1024 / 480]]]
    )
    torch.testing.assert_close(seen["points"], expected)
    assert seen["labels"].tolist() == [[2, 3], [2, 3]]
    assert [m.shape for m in masks] == [(480, 640)] * 2 and all(m.dtype == bool for m in masks)
    assert set(predictor.timer.pop()) == {"encoder", "decoder", "postprocess"}


def test_point_prompts_equal_sam2_image_predictor():
    """Points through the adapter == ``SAM2ImagePredictor.predict(point_coords, point_labels, ...)`` on the same
    model (random SAM 2.1-T): one click with multimask output and the most confident mask, then three clicks with
    the previous low-res logits as ``mask_input`` and a single mask (the click simulation's calls)."""
    import numpy as np
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from baselines.base import ObjectPrompt
    from benchmark.models import build_model

    torch.manual_seed(1)  # a seed whose most confident of the three masks is not the first: the choice is tested
    predictor = build_model("sam2.1-t", allow_random=True)
    with torch.no_grad():  # random hypernetworks give near-constant logits; scaled, the masks have edges
        for mlp in predictor.model.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30)
    image = random_image(300, 410, seed=7)
    predictor.set_image(image)
    reference = SAM2ImagePredictor(predictor.model)
    with torch.inference_mode():
        reference.set_image(image)
    box, rho = np.array([20.0, 30, 200, 250]), np.zeros(5, np.float32)

    one = ObjectPrompt(box, rho, kind="points", points=np.array([[100.0, 120.0]]), point_labels=np.array([1]))
    (ours,) = predictor.predict([one])
    logits, scores, low_res = reference.predict(point_coords=one.points.astype(np.float32),
                                                point_labels=one.point_labels.astype(np.int32),
                                                multimask_output=True, return_logits=True)
    best = int(np.argmax(scores))
    assert best != 0 and 0 < (logits[best] > 0).sum() < logits[best].size
    assert np.mean(ours == (logits[best] > 0)) > 0.9999
    (fed,) = predictor.last_mask_inputs
    np.testing.assert_allclose(np.asarray(fed).reshape(low_res[best].shape), low_res[best], atol=1e-4)

    three = ObjectPrompt(box, rho, kind="points", points=np.array([[100.0, 120.0], [300.0, 40.0], [150.0, 200.0]]),
                         point_labels=np.array([1, 0, 1]), mask_input=fed)
    (ours,) = predictor.predict([three])
    logits, _, _ = reference.predict(point_coords=three.points.astype(np.float32),
                                     point_labels=three.point_labels.astype(np.int32),
                                     mask_input=low_res[best][None], multimask_output=False, return_logits=True)
    assert 0 < (logits[0] > 0).sum() < logits[0].size
    assert np.mean(ours == (logits[0] > 0)) > 0.9999
