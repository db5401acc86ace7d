"""EoMT through Hugging Face transformers: the library's model on the official code's weights, the official instance
evaluation's candidates, the library's own post-processing, and the adapter end to end.

Fixture: ``tests/data/eomt_tiny.safetensors`` and ``eomt_official_reference.npz``, made by the official tue-mps/eomt
code on CPU with random weights (``tests/data/make_eomt_reference.py``; provenance in ``tests/data/README.md``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the eomt extra is not installed (pip install -e '.[eomt]')")

import torch  # noqa: E402

from baselines.base import ObjectPrompt  # noqa: E402
from baselines.eomt import (  # noqa: E402
    TEST_VARIANT, build_eomt_model, image_processor, instance_candidates, load_eomt_safetensors,
)
from baselines.safe_load import CheckpointError  # noqa: E402

DATA = Path(__file__).parent / "data"
WEIGHTS = DATA / "eomt_tiny.safetensors"


@pytest.fixture(scope="module")
def reference():
    return np.load(DATA / "eomt_official_reference.npz")


@pytest.fixture(scope="module")
def model():
    return build_eomt_model(TEST_VARIANT.config(), load_eomt_safetensors(WEIGHTS), str(WEIGHTS))


def official_masks(ref, tag, shape):
    return np.unpackbits(ref[f"{tag}_masks"], axis=-1)[..., : shape[1]].astype(bool)


@pytest.mark.parametrize("probs", [0, 1])
@pytest.mark.parametrize("n", [0, 1])
def test_transformers_model_equals_the_official_model(reference, model, probs, n):
    """Same weights, same pixels: mask and class logits of the last layer agree to float32 rounding, with masked
    attention off (trained checkpoints) and on in every masked block."""
    tag = f"p{probs}_img{n}"
    model.attn_mask_probs.fill_(float(probs))
    try:
        with torch.no_grad():
            out = model(pixel_values=torch.from_numpy(reference[f"{tag}_pixels"])[None])
    finally:
        model.attn_mask_probs.fill_(0.0)
    np.testing.assert_allclose(out.masks_queries_logits[0].numpy(), reference[f"{tag}_mask_logits"], atol=2e-5)
    np.testing.assert_allclose(out.class_queries_logits[0].numpy(), reference[f"{tag}_class_logits"], atol=2e-5)
    assert np.abs(reference[f"{tag}_mask_logits"]).max() > 1  # not a degenerate output


def _by_mask(masks: np.ndarray, scores: np.ndarray) -> dict[bytes, float]:
    out: dict[bytes, float] = {}
    for m, s in zip(masks, scores):
        out[m.tobytes()] = max(out.get(m.tobytes(), -1.0), float(s))
    return out


@pytest.mark.parametrize("probs", [0, 1])
@pytest.mark.parametrize("n", [0, 1])
def test_candidates_equal_the_official_instance_evaluation(reference, probs, n):
    """The official eval_step's top-100 (query, class) pairs, grouped by mask: exactly our candidates, each with its
    best pair's score (the same logits given to both; the masks at native resolution are bit-identical)."""
    tag = f"p{probs}_img{n}"
    image = reference[f"image{n}"]
    masks, scores, labels, queries = instance_candidates(
        torch.from_numpy(reference[f"{tag}_mask_logits"]), torch.from_numpy(reference[f"{tag}_class_logits"]),
        image.shape[:2], image_processor(TEST_VARIANT.image_size))
    theirs = _by_mask(official_masks(reference, tag, image.shape), reference[f"{tag}_scores"])
    ours = _by_mask(masks.numpy(), scores)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5)
    assert list(scores) == sorted(scores, reverse=True) and len(set(queries.tolist())) == len(queries)
    assert set(labels.tolist()) <= set(reference[f"{tag}_labels"].tolist())


def test_candidates_equal_transformers_post_processing_on_a_random_config():
    """On a random tiny config the library's ``post_process_instance_segmentation`` (threshold 0) paints each query's
    mask in query order with its best class and score: painting our candidates the same way gives its map, labels and
    scores."""
    torch.manual_seed(3)
    model = build_eomt_model(TEST_VARIANT.config())
    model.attn_mask_probs.zero_()
    processor = image_processor(TEST_VARIANT.image_size)
    image = np.random.default_rng(1).integers(0, 256, (50, 77, 3), dtype=np.uint8)
    with torch.no_grad():
        out = model(**processor(images=image, return_tensors="pt"))
    (expected,) = processor.post_process_instance_segmentation(out, target_sizes=[image.shape[:2]], threshold=0.0)
    masks, scores, labels, queries = instance_candidates(out.masks_queries_logits[0], out.class_queries_logits[0],
                                                          image.shape[:2], processor, top_k=10**6)
    painted = -np.ones(image.shape[:2])
    info = []
    for rank in np.argsort(queries, kind="stable"):  # the library paints in query order
        mask = masks[rank].numpy()
        if not mask.any():
            continue
        painted[mask] = len(info)
        info.append((int(labels[rank]), float(scores[rank])))
    assert np.array_equal(painted, expected["segmentation"].numpy())
    assert [(s["label_id"], pytest.approx(s["score"], abs=1e-6)) for s in expected["segments_info"]] == info
    assert len(info) >= 3


def test_adapter_end_to_end_through_the_processor(reference):
    """The predictor on the raw image: the processor's bilinear resize differs from the official PIL resize by at
    most 0.0175 in normalised pixels (mean 2.5e-4), so candidates agree with the official ones on nearly all pixels;
    box, point and oracle selection return one of the candidates."""
    from benchmark.models import build_model

    predictor = build_model(f"eomt-test:{WEIGHTS}")
    assert predictor.weights.kind == "pretrained" and predictor.prompt_kinds == ("box", "points")
    image = reference["image0"]
    predictor.set_image(image)
    ours = predictor.candidates.numpy()
    theirs = official_masks(reference, "p0_img0", image.shape)
    agreement = (ours[:, None] == theirs[None]).mean(axis=(2, 3)).max(axis=1).min()
    assert agreement > 0.99  # measured: every candidate agrees with an official one on >= 99.79 % of pixels
    stages = predictor.timer.pop()
    assert {"preprocess", "encoder", "postprocess"} <= set(stages)
    box = ObjectPrompt(np.array([5.0, 5, 40, 30]), np.zeros(5, np.float32))
    point = ObjectPrompt(box.box_xyxy, box.rho, kind="points", points=np.array([[20.0, 20.0]]),
                         point_labels=np.array([1]))
    (by_box,) = predictor.predict([box])
    assert any(np.array_equal(by_box, c) for c in ours)
    (by_point,) = predictor.predict([point])
    assert by_point[20, 20] or not ours[:, 20, 20].any()
    gt = ours[3]
    assert np.array_equal(predictor.predict_oracle(gt), gt)


def test_eomt_l_architecture_and_safe_loading(tmp_path):
    """EoMT-L builds with the paper's 316 M parameters; a pickle renamed .safetensors or a checkpoint of another
    shape is refused naming the file."""
    from baselines.eomt import EOMT_VARIANTS

    with torch.device("meta"):
        model = build_eomt_model(EOMT_VARIANTS["eomt-l-640"].config())
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 316.6
    bad = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="evil.safetensors: not a safetensors checkpoint"):
        load_eomt_safetensors(bad)
    state = load_eomt_safetensors(WEIGHTS)
    state["query.weight"] = torch.zeros(3, 32)
    with pytest.raises(CheckpointError, match="does not fit EoMT"):
        build_eomt_model(TEST_VARIANT.config(), state, "shape.safetensors")


def test_without_weights_the_test_model_needs_allow_random():
    from baselines.weights import MissingCheckpointError
    from benchmark.models import build_model

    with pytest.raises(MissingCheckpointError, match="--allow-random-weights"):
        build_model("eomt-test")
    assert build_model("eomt-test", allow_random=True).weights.kind == "random-init"
