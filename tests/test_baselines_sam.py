"""SAM / MobileSAM adapters: box transform, mask geometry with a stubbed decoder, shapes, timing, parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.base import ObjectPrompt
from baselines.sam import SamBoxPredictor, build_sam_model
from _baselines_helpers import box_mask, iou, prompts_for, random_image
from _float_masks import assert_logits_and_masks_close

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def tiny_sam() -> torch.nn.Module:
    """A SAM with SAM's exact pre/post-processing but a 1-block, 32-channel network (fast on CPU)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim = 32
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=1024, patch_size=16, embed_dim=dim, depth=1, num_heads=2, out_chans=dim, window_size=14
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=4
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            iou_head_depth=2,
            iou_head_hidden_dim=dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def tiny_predictor() -> SamBoxPredictor:
    from segment_anything.utils.transforms import ResizeLongestSide

    from baselines.base import WeightsInfo

    return SamBoxPredictor(tiny_sam(), ResizeLongestSide(1024), WeightsInfo("random-init", "test"))


class BoxSpy:
    """Wraps the prompt encoder's forward and records the boxes the model receives."""

    def __init__(self, prompt_encoder, monkeypatch):
        self.boxes: list[torch.Tensor] = []
        original = prompt_encoder.forward

        def forward(points, boxes, masks):
            self.boxes.append(boxes.clone())
            return original(points=points, boxes=boxes, masks=masks)

        monkeypatch.setattr(prompt_encoder, "forward", forward)


class PaintBoxDecoder(torch.nn.Module):
    """Stub mask decoder of an ideal model: logits > 0 exactly on the 256x256 cells inside the prompted box.

    SAM's coordinates are pixel indices of the 1024 input frame (the prompt encoder adds 0.5 for the centre);
    low-res cell j covers input pixels 4j..4j+3, so its centre is pixel index 4j + 1.5.
    """

    def __init__(self, spy: BoxSpy):
        super().__init__()
        self.spy = spy

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        boxes = self.spy.boxes[-1]
        centres = torch.arange(256, dtype=torch.float32) * 4 + 1.5
        inside_x = (centres >= boxes[:, 0:1]) & (centres <= boxes[:, 2:3])  # [B, 256]
        inside_y = (centres >= boxes[:, 1:2]) & (centres <= boxes[:, 3:4])
        logits = torch.where(inside_y[:, :, None] & inside_x[:, None, :], 10.0, -10.0)[:, None]
        return logits, torch.ones(len(boxes), 1)


def test_box_reaches_the_model_in_the_resized_frame(monkeypatch):
    predictor = tiny_predictor()
    spy = BoxSpy(predictor.model.prompt_encoder, monkeypatch)
    predictor.set_image(random_image(480, 640))
    # 640 x 480 -> 1024 x 768: factor 1.6 on both axes, inclusive pixel indices passed as-is
    predictor.predict(prompts_for([[10, 20, 300, 400], [0, 0, 639, 479]]))
    expected = torch.tensor([[16.0, 32.0, 480.0, 640.0], [0.0, 0.0, 1022.4, 766.4]])
    torch.testing.assert_close(spy.boxes[-1], expected)


def test_portrait_image_box_transform(monkeypatch):
    predictor = tiny_predictor()
    spy = BoxSpy(predictor.model.prompt_encoder, monkeypatch)
    predictor.set_image(random_image(512, 256))  # longest side is the height: factor 2
    predictor.predict(prompts_for([[3, 5, 100, 500]]))
    torch.testing.assert_close(spy.boxes[-1], torch.tensor([[6.0, 10.0, 200.0, 1000.0]]))


@pytest.mark.parametrize("hw", [(480, 640), (600, 400), (333, 517)])
def test_stub_decoder_mask_covers_the_prompted_box(hw, monkeypatch):
    """Whole chain (resize, pad, box transform, upsample, un-pad, resize back) maps the box onto itself."""
    h, w = hw
    predictor = tiny_predictor()
    spy = BoxSpy(predictor.model.prompt_encoder, monkeypatch)
    predictor.model.mask_decoder = PaintBoxDecoder(spy)
    predictor.set_image(random_image(h, w))
    boxes = [[w // 10, h // 8, w // 2, h // 2], [w // 2, h // 2, w - 6, h - 4], [5, h - 90, 120, h - 1]]
    masks = predictor.predict(prompts_for(boxes))
    for box, mask in zip(boxes, masks):
        assert iou(mask, box_mask(box, (h, w))) > 0.93, box


def test_shapes_timing_and_errors():
    predictor = tiny_predictor()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(prompts_for([[0, 0, 5, 5]]))
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(np.zeros((10, 10, 3), dtype=np.float32))
    predictor.set_image(random_image(96, 128))
    with pytest.raises(ValueError, match="inclusive XYXY"):
        predictor.predict(prompts_for([[10, 10, 5, 20]]))  # x1 < x0
    with pytest.raises(ValueError, match="inside"):
        predictor.predict(prompts_for([[0, 0, 128, 20]]))  # x1 = W
    masks = predictor.predict(prompts_for([[0, 0, 127, 95]] * 20))  # more prompts than one chunk
    assert len(masks) == 20 and all(m.shape == (96, 128) and m.dtype == bool for m in masks)
    assert predictor.predict([]) == []
    stages = predictor.timer.pop()
    assert set(stages) == {"preprocess", "encoder", "decoder", "postprocess"} and all(v > 0 for v in stages.values())


@pytest.mark.parametrize(("variant", "paper_millions"), [("sam-h", 641.1), ("sam-l", 312.3), ("sam-b", 93.7)])
def test_parameter_counts_match_the_paper(variant, paper_millions):
    with torch.device("meta"):
        model = build_sam_model(variant)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == paper_millions


def test_mobilesam_random_init_end_to_end():
    from benchmark.models import build_model

    predictor = build_model("mobilesam", allow_random=True)
    assert round(predictor.num_parameters() / 1e6, 1) == 10.1  # paper: 10.1 M
    assert predictor.weights.kind == "random-init" and predictor.describe()["weights_kind"] == "random-init"
    predictor.set_image(random_image(480, 640))
    masks = predictor.predict(prompts_for([[100, 80, 400, 300], [0, 0, 639, 479]]))
    assert [m.shape for m in masks] == [(480, 640)] * 2 and all(m.dtype == bool for m in masks)
    assert set(predictor.timer.pop()) == {"preprocess", "encoder", "decoder", "postprocess"}


def test_mobilesam_loads_a_checkpoint_file(tmp_path):
    from baselines.mobilesam import build_mobilesam, build_mobilesam_model
    from baselines.weights import sha256_of

    torch.manual_seed(1)
    reference = build_mobilesam_model()
    path = tmp_path / "mobile_sam.pt"
    torch.save(reference.state_dict(), path)
    predictor = build_mobilesam(checkpoint=str(path))
    assert predictor.weights.kind == "pretrained" and predictor.weights.sha256 == sha256_of(path)
    for key, value in reference.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[key], value), key


def test_missing_checkpoint_without_allow_random(tmp_path, monkeypatch):
    from benchmark.models import build_model
    from baselines.weights import MissingCheckpointError

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    with pytest.raises(MissingCheckpointError, match="flipbench weights download sam-b"):
        build_model("sam-b")


def test_object_prompt_boxes_accept_numpy_float32():
    predictor = tiny_predictor()
    predictor.set_image(random_image(64, 64))
    masks = predictor.predict([ObjectPrompt(np.array([1, 2, 30, 40], dtype=np.float32), np.zeros(5, np.float32))])
    assert masks[0].shape == (64, 64)


@pytest.mark.slow
def test_sam_b_random_init_full_size():
    from benchmark.models import build_model

    predictor = build_model("sam-b", allow_random=True)
    predictor.set_image(random_image(480, 640))
    masks = predictor.predict(prompts_for([[100, 80, 400, 300]]))
    assert masks[0].shape == (480, 640) and predictor.num_parameters() == sum(
        p.numel() for p in predictor.model.parameters()
    )


def test_masks_equal_segment_anything_sam_predictor():
    """Stage-split adapter == the package's own SamPredictor (box, multimask_output=False) on the same model, up to
    float32 noise: the two decode the boxes in batches of different shapes, so logits differ by ~1e-6 and a pixel
    whose logit is that close to 0 may flip (1 of 123,000 on some CPUs; see tests/_float_masks.py)."""
    from segment_anything import SamPredictor

    predictor = tiny_predictor()
    with torch.no_grad():  # sharpen the random decoder so that masks are neither empty nor full
        predictor.model.mask_decoder.output_hypernetworks_mlps[0].layers[-1].weight.mul_(30)
    image = random_image(300, 410, seed=5)
    boxes = [[20, 30, 200, 250], [150, 10, 409, 299]]
    predictor.set_image(image)
    ours = predictor.predict(prompts_for(boxes))
    with torch.inference_mode():  # the logits behind those masks (the adapter's own decode and upsampling)
        low_res = predictor._decode(np.array(boxes, dtype=np.float64))
        our_logits = predictor.model.postprocess_masks(low_res, predictor._input_hw, predictor._orig_hw)[:, 0]
    reference = SamPredictor(predictor.model)
    reference.set_image(image)
    expected = []
    for box in boxes:
        logits, _, _ = reference.predict(box=np.array(box, dtype=np.float64), multimask_output=False,
                                         return_logits=True)
        assert 0 < (logits[0] > 0).sum() < logits[0].size and logits[0].std() > 0.1
        expected.append(logits[0])
    assert_logits_and_masks_close(ours, our_logits.numpy(), expected)


def test_point_prompts_equal_segment_anything_sam_predictor():
    """Points through the adapter == ``SamPredictor.predict(point_coords, point_labels, ...)`` on the same model: one
    click with multimask output and the most confident mask, then three clicks with the previous low-res logits as
    ``mask_input`` and a single mask (the click simulation's calls)."""
    from segment_anything import SamPredictor

    predictor = tiny_predictor()
    with torch.no_grad():
        for mlp in predictor.model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30)
    image = random_image(300, 410, seed=7)
    predictor.set_image(image)
    reference = SamPredictor(predictor.model)
    reference.set_image(image)
    box, rho = np.array([20.0, 30, 200, 250]), np.zeros(5, np.float32)

    one = ObjectPrompt(box, rho, kind="points", points=np.array([[100.0, 120.0]]), point_labels=np.array([1]))
    (ours,) = predictor.predict([one])
    logits, scores, low_res = reference.predict(point_coords=one.points, point_labels=one.point_labels,
                                                multimask_output=True, return_logits=True)
    best = int(np.argmax(scores))
    assert np.mean(ours == (logits[best] > 0)) > 0.9999
    (fed,) = predictor.last_mask_inputs
    np.testing.assert_allclose(fed.numpy()[0, 0], low_res[best], atol=1e-4)

    three = ObjectPrompt(box, rho, kind="points", points=np.array([[100.0, 120.0], [300.0, 40.0], [150.0, 200.0]]),
                         point_labels=np.array([1, 0, 1]), mask_input=fed)
    (ours,) = predictor.predict([three])
    logits, _, _ = reference.predict(point_coords=three.points, point_labels=three.point_labels,
                                     mask_input=low_res[best][None], multimask_output=False, return_logits=True)
    assert 0 < (logits[0] > 0).sum() < logits[0].size
    assert np.mean(ours == (logits[0] > 0)) > 0.9999


def test_points_outside_the_image_or_with_other_labels_are_refused():
    predictor = tiny_predictor()
    predictor.set_image(random_image(60, 80))
    box, rho = np.array([1.0, 1, 10, 10]), np.zeros(5, np.float32)
    for points, labels in (([[80.0, 5.0]], [1]), ([[5.0, -1.0]], [1]), ([[5.0, 5.0]], [2])):
        prompt = ObjectPrompt(box, rho, kind="points", points=np.array(points), point_labels=np.array(labels))
        with pytest.raises(ValueError, match="not pixel indices inside the 80x60 image"):
            predictor.predict([prompt])
