"""FlipPredictor end to end (random ``flip-test`` model, real sampler): shapes, determinism, batching,
degenerate prompts and images, protocol configuration, and the builders' weights lookup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _flip_inputs import PROMPTS, flip_image, flip_prompt
from _shared import FLIP_REFERENCE, FLIP_TINY_ONNX, require
from benchmark.evaluation.params import EvalParams
from benchmark.flip.predictor import build_flip, build_flip_test
from benchmark.models import build_model
from baselines.weights import CATALOG, MissingCheckpointError




@pytest.fixture(scope="module")
def predictor():
    return build_flip_test()


@pytest.mark.parametrize("mode", ["window", "full", "hierarchical"])
def test_end_to_end_in_every_mode(predictor, mode):
    predictor.mode = mode
    predictor.set_seed(7)
    predictor.set_image(flip_image())
    masks = predictor.predict(PROMPTS)
    assert len(masks) == 3 and all(m.dtype == bool and m.shape == (96, 128) for m in masks)
    assert len(predictor.last_input_tokens) == 3 and all(0 < n <= 128 for n in predictor.last_input_tokens)
    assert set(predictor.timer.pop()) == {"preprocess", "encoder", "decoder", "postprocess"}
    again = predictor.predict(PROMPTS)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))


def test_batched_prediction_equals_one_by_one(predictor):
    predictor.mode = "full"
    predictor.set_seed(11)
    predictor.set_image(flip_image())
    together = predictor.predict(PROMPTS)
    tokens = list(predictor.last_input_tokens)
    for prompt, mask, n in zip(PROMPTS, together, tokens):
        (alone,) = predictor.predict([prompt])
        assert predictor.last_input_tokens == [n]
        assert (alone != mask).mean() < 1e-3  # equal up to pixels whose logit is float noise away from 0


def test_seed_changes_sampling_but_prompt_order_does_not(predictor):
    predictor.set_image(flip_image())
    predictor.set_seed(1)
    seeds = [predictor.prompt_seed(p) for p in PROMPTS]
    assert len(set(seeds)) == 3
    predictor.set_seed(2)
    assert [predictor.prompt_seed(p) for p in PROMPTS] != seeds


@pytest.mark.parametrize("mode", ["window", "full", "hierarchical"])
def test_degenerate_prompts_and_images_do_not_crash(predictor, mode):
    predictor.mode = mode
    cases = {
        (96, 128): [flip_prompt(0.1, 0.1, 0.0, 0.0), flip_prompt(-1.0, -1.0, 1e-4, 1e-4),
                    flip_prompt(1.0, 1.0, 0.0, 0.3), flip_prompt(0.0, 0.0, 5.0, 5.0),
                    flip_prompt(0.3, 0.0, 0.01, 0.01, 0.01)],
        (12, 9): [flip_prompt(0.0, 0.0, 0.1, 0.1)],
        (1, 1): [flip_prompt(0.0, 0.0, 0.0, 0.0)],
        (3, 40): [flip_prompt(0.5, 0.0, 0.05, 0.0)],
    }
    for (height, width), prompts in cases.items():
        predictor.set_image(flip_image(height, width))
        masks = predictor.predict(prompts)
        assert [m.shape for m in masks] == [(height, width)] * len(prompts)


def test_bad_inputs_raise_clear_errors():
    predictor = build_flip_test()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(PROMPTS)
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(np.zeros((8, 8, 3), np.float32))
    predictor.set_image(flip_image())
    with pytest.raises(ValueError, match="finite rho"):
        predictor.predict([flip_prompt(np.nan, 0, 0.1, 0.1)])
    with pytest.raises(ValueError, match="mode"):
        predictor.mode = "fast"
    assert predictor.predict([]) == []


def test_configure_takes_the_evaluation_protocol():
    predictor = build_flip_test()
    predictor.configure(EvalParams(flip_num_tokens=64, flip_mode="hierarchical", flip_coverage=1.0, seed=5))
    assert (predictor.num_tokens, predictor.mode, predictor.coverage, predictor.seed) == (64, "hierarchical", 1.0, 5)
    predictor.configure(EvalParams())
    assert predictor.num_tokens == predictor.config.avg_num_tokens and predictor.mode == "window"
    described = predictor.describe()
    assert described["weights_kind"] == "random-init" and described["parameters"] == predictor.num_parameters()


def test_builders_resolve_weights_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    assert CATALOG["flip-large"].url.startswith("https://nc.mlcloud.uni-tuebingen.de/")
    explicit = build_flip("flip-tiny", checkpoint=require(FLIP_REFERENCE / "models" / "flip-tiny.ckpt"))
    assert explicit.weights.kind == "pretrained" and explicit.weights.source.endswith("flip-tiny.ckpt")
    assert len(explicit.weights.sha256) == 64
    demo = build_model("flip-tiny")  # nothing in FLIPBENCH_HOME: the shared demo ONNX graph
    assert demo.weights.source == str(require(FLIP_TINY_ONNX).resolve()) and demo.name == "flip-tiny"
    with pytest.raises(MissingCheckpointError, match="flipbench weights download flip-small"):
        build_flip("flip-small")
    assert build_flip("flip-small", allow_random=True).weights.kind == "random-init"
    cached = tmp_path / "flip-tiny.ckpt"
    cached.write_bytes((FLIP_REFERENCE / "models" / "flip-tiny.ckpt").read_bytes())
    assert build_flip("flip-tiny").weights.source == str(cached)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    cpu, cuda = build_flip_test(), build_flip_test(device="cuda")
    for p in (cpu, cuda):
        p.mode = "full"
        p.set_image(flip_image())
    masks_cpu, masks_cuda = cpu.predict(PROMPTS), cuda.predict(PROMPTS)
    assert all((a != b).mean() < 1e-3 for a, b in zip(masks_cpu, masks_cuda))
