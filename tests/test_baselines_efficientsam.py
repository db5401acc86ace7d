"""EfficientSAM: official checkpoint layout, box -> corner points, best-of-3 selection, geometry, loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from _baselines_helpers import box_mask, iou, prompts_for, random_image
from baselines.base import WeightsInfo
from baselines.efficientsam import build_efficientsam_s, build_efficientsam_t
from baselines.efficientsam.modeling import ImageEncoder, build_efficient_sam
from baselines.efficientsam.predictor import EfficientSamPredictor

# sha256 over the sorted "key:shape" lines of the state dict of the official implementation
# (github.com/yformer/EfficientSAM, efficient_sam/efficient_sam.py, build_efficient_sam(192, 3) / (384, 6)):
# the official checkpoints load strictly iff our module tree has exactly these keys and shapes.
OFFICIAL_LAYOUT = {
    "efficientsam-t": (278, "6b06a3620aeea7bea18b17e05fa5ed4043268a2be898007a38d18d4b78b514bb"),
    "efficientsam-s": (278, "a3ad7740e371d433b96abb09f444137861bec5633440a45b8774da4197744ad0"),
}


def layout(state_dict) -> tuple[int, str]:
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state_dict.items()))
    return len(state_dict), hashlib.sha256(lines.encode()).hexdigest()


@pytest.mark.parametrize("variant", sorted(OFFICIAL_LAYOUT))
def test_state_dict_layout_matches_the_official_implementation(variant):
    with torch.device("meta"):
        model = build_efficient_sam(variant)
    assert layout(model.state_dict()) == OFFICIAL_LAYOUT[variant]


@pytest.mark.parametrize(("variant", "paper_millions"), [("efficientsam-t", 10.2), ("efficientsam-s", 26.4)])
def test_parameter_counts_match_the_paper(variant, paper_millions):
    with torch.device("meta"):
        model = build_efficient_sam(variant)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == paper_millions


def small_predictor() -> EfficientSamPredictor:
    """EfficientSAM-T's prompt encoder and decoder with a 1-block encoder (same 1024 input and 64x64 grid)."""
    torch.manual_seed(0)
    model = build_efficient_sam("efficientsam-t")
    model.image_encoder = ImageEncoder(embed_dim=32, num_heads=2, depth=1)
    return EfficientSamPredictor(model.eval(), WeightsInfo("random-init", "test"))


def test_box_becomes_corner_points_scaled_per_axis(monkeypatch):
    predictor = small_predictor()
    seen = {}
    original = predictor.model.prompt_encoder.forward

    def spy(points, labels):
        seen["points"], seen["labels"] = points.clone(), labels.clone()
        return original(points, labels)

    monkeypatch.setattr(predictor.model.prompt_encoder, "forward", spy)
    predictor.set_image(random_image(480, 640))
    predictor.predict(prompts_for([[10, 20, 300, 400]]))
    # image stretched to 1024x1024: x * 1024/640, y * 1024/480; padded to 6 points with (-1, -1) / label -1
    expected = torch.tensor([[[16.0, 20 * 1024 / 480], [480.0, 400 * 1024 / 480]] + [[-1.0, -1.0]] * 4])
    torch.testing.assert_close(seen["points"], expected)
    assert seen["labels"].tolist() == [[2, 3, -1, -1, -1, -1]]


def test_mask_with_highest_predicted_iou_is_returned(monkeypatch):
    predictor = small_predictor()
    predictor.set_image(random_image(64, 64))
    logits = torch.full((1, 3, 256, 256), -5.0)
    logits[0, 0, :128] = 5.0  # top half
    logits[0, 1, :, :128] = 5.0  # left half
    logits[0, 2, 200:] = 5.0
    monkeypatch.setattr(predictor.model, "decode", lambda emb, pts, lab: (logits, torch.tensor([[0.2, 0.9, 0.5]])))
    mask = predictor.predict(prompts_for([[0, 0, 63, 63]]))[0]
    expected = np.zeros((64, 64), bool)
    expected[:, :32] = True
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize("hw", [(480, 640), (600, 400), (333, 517)])
def test_stub_decoder_mask_covers_the_prompted_box(hw, monkeypatch):
    """An ideal decoder (logits > 0 on the cells inside the corner points) maps the box back onto itself."""
    h, w = hw
    predictor = small_predictor()

    def paint(embedding, points, labels):
        centres = torch.arange(256, dtype=torch.float32) * 4 + 1.5  # pixel-index centre of each 256-grid cell
        (x0, y0), (x1, y1) = points[:, 0].T, points[:, 1].T
        inside_x = (centres >= x0[:, None]) & (centres <= x1[:, None])
        inside_y = (centres >= y0[:, None]) & (centres <= y1[:, None])
        good = torch.where(inside_y[:, :, None] & inside_x[:, None, :], 10.0, -10.0)
        return torch.stack([-good, good, -good], dim=1), torch.tensor([[0.1, 0.8, 0.1]]).expand(len(points), 3)

    monkeypatch.setattr(predictor.model, "decode", paint)
    predictor.set_image(random_image(h, w))
    boxes = [[w // 10, h // 8, w // 2, h // 2], [w // 2, h // 2, w - 6, h - 4], [5, h - 90, 120, h - 1]]
    for box, mask in zip(boxes, predictor.predict(prompts_for(boxes))):
        assert iou(mask, box_mask(box, (h, w))) > 0.93, box


def test_checkpoint_round_trip_and_bad_file(tmp_path):
    torch.manual_seed(3)
    reference = build_efficient_sam("efficientsam-t")
    path = tmp_path / "efficient_sam_vitt.pt"
    torch.save({"model": reference.state_dict()}, path)
    predictor = build_efficientsam_t(checkpoint=str(path))
    assert predictor.weights.kind == "pretrained" and len(predictor.weights.sha256) == 64
    for key, value in reference.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[key], value), key
    bad = tmp_path / "bad.pt"
    torch.save(reference.state_dict(), bad)  # a bare state dict is not the official format
    with pytest.raises(ValueError, match="'model'"):
        build_efficientsam_t(checkpoint=str(bad))


def test_random_init_full_size_end_to_end():
    predictor = build_efficientsam_t(allow_random=True)
    assert predictor.weights.kind == "random-init"
    predictor.set_image(random_image(480, 640))
    masks = predictor.predict(prompts_for([[100, 80, 400, 300], [0, 0, 639, 479], [3, 3, 3, 3]]))
    assert [m.shape for m in masks] == [(480, 640)] * 3 and all(m.dtype == bool for m in masks)
    stages = predictor.timer.pop()
    assert set(stages) == {"preprocess", "encoder", "decoder", "postprocess"} and all(v > 0 for v in stages.values())


@pytest.mark.slow
def test_efficientsam_s_random_init_full_size():
    predictor = build_efficientsam_s(allow_random=True)
    predictor.set_image(random_image(480, 640))
    assert predictor.predict(prompts_for([[10, 10, 200, 100]]))[0].shape == (480, 640)
