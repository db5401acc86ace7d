"""The fast pixel predictor (benchmark.flip.fast_decoder, the default) equals the reference one (kept as
``implementation = "reference"``) on random configurations and weights, in every mode and for several objects at
once; it runs on a device other than the CPU (``meta``: the device plumbing without data); bf16 precision is
recorded in the protocol and in every record. The official fixtures (test_flip_fixtures.py) run the default, i.e.
the fast path, with their unchanged tolerances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _flip_inputs import PROMPTS, flip_image, flip_prompt
from _shared import REPO_ROOT
from benchmark.evaluation.params import FLIP_PRECISIONS, EvalParams
from benchmark.flip import fast_decoder, inference
from benchmark.flip.config import FlipConfig
from benchmark.flip.encoder import FlipEncoder
from benchmark.flip.fast_decoder import PRECISIONS, fast_embedding_logits, fold_query
from benchmark.flip.mask_decoder import ObjectMemory
from benchmark.flip.predictor import FlipPredictor, build_flip_test, random_model
from baselines.base import WeightsInfo

CONFIGS = [
    FlipConfig("tiny-like", channels=64, layers=1, head_size=16, avg_num_tokens=96),
    FlipConfig("wide-heads", channels=128, layers=1, head_size=64, avg_num_tokens=96),  # Dk 64 > 32: folded query
    FlipConfig("expanded", channels=32, layers=2, head_size=16, kq_expansion=2, v_expansion=2, mlp_expansion=2,
               num_registers=3, avg_num_tokens=64),
]


def _perturbed(config: FlipConfig, seed: int) -> FlipEncoder:
    """A random model whose every parameter (LayerNorm gains and biases, gates included) is perturbed, so no
    algebraic fold is exact by accident (unit gains, zero biases)."""
    model = random_model(config, seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def _memory(model: FlipEncoder, lengths, seed: int) -> ObjectMemory:
    generator = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    latent = torch.randn(b, t, model.config.channels, generator=generator)
    embedding = torch.randn(b, t, 2, generator=generator) * 2
    position = torch.tensor([[0.1, -0.2, 0.3, 0.2, 0.8, 0.6], [-0.4, 0.3, 0.05, 0.02, 1.0, 0.0],
                             [0.0, 0.1, 0.2, 0.5, 0.3, -0.9]])[:b]
    with torch.no_grad():
        return model.mask_extractor.prepare(latent, embedding, position, lengths)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("pad_limit", [0.0, 1e9], ids=["per-object", "padded"])
def test_fast_logits_equal_reference_on_random_configs(config, pad_limit):
    """In float64 the two paths agree to 1e-9 (the folds are exact algebra); in float32 the fast path is as close
    to the float64 result as the reference itself is (within 3x the reference's own rounding error)."""
    assert fold_query(_perturbed(config, 0).mask_extractor.attention) == (config.name == "wide-heads")
    model = _perturbed(config, 1)
    memory = _memory(model, [37, 20, 5], seed=2)
    generator = torch.Generator().manual_seed(3)
    embedding = (torch.rand(500, 2, generator=generator) * 12 - 6).clamp(-5, 5)  # some at the clipping bound
    segments = [(1, 120), (0, 200), (2, 30), (1, 0), (0, 150)]  # an object twice, an empty run
    wide = model.double()
    wide_memory = ObjectMemory(memory.keys.double(), memory.values.double(), memory.position.double(),
                               memory.lengths)
    with torch.no_grad():
        exact = wide.mask_extractor.embedding_logits(wide_memory, embedding.double(), segments)
        fast64 = fast_embedding_logits(wide.mask_extractor, wide_memory, embedding.double(), segments,
                                       pad_limit=pad_limit)
        model.float()
        reference = model.mask_extractor.embedding_logits(memory, embedding, segments)
        fast = fast_embedding_logits(model.mask_extractor, memory, embedding, segments, pad_limit=pad_limit)
    assert exact.abs().max() > 0.1
    torch.testing.assert_close(fast64, exact, atol=1e-9, rtol=1e-9)
    rounding = (reference.double() - exact).abs().max()
    assert (fast.double() - exact).abs().max() <= 3 * rounding + 1e-6


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", inference.MODES)
def test_fast_predictor_equals_reference_in_every_mode(config, mode):
    predictor = FlipPredictor(_perturbed(config, 4), WeightsInfo(kind="random-init", source="test"))
    predictor.mode = mode
    predictor.set_image(flip_image(80, 112))
    prompts = [*PROMPTS, flip_prompt(0.1, 0.3, 0.05, 0.01, -0.01)]
    results = {}
    for implementation in ("reference", "fast"):
        predictor.implementation = implementation
        results[implementation] = predictor.predict(prompts)
    for fast, reference in zip(results["fast"], results["reference"]):
        assert fast.shape == reference.shape == (80, 112)
        assert (fast != reference).mean() <= 1e-3  # pixels whose logit is within float rounding of 0 may differ
    assert any(m.any() for m in results["fast"])


def test_fast_full_logits_equal_reference_through_the_chunked_modes():
    model = _perturbed(CONFIGS[0], 5)
    memory = _memory(model, [30, 30, 12], seed=6)
    with torch.no_grad():
        fast = inference.full_logits(model, memory, 40, 56, chunk_size=333)
        model.mask_extractor.implementation = "reference"
        reference = inference.full_logits(model, dataclasses.replace(memory), 40, 56, chunk_size=333)
    torch.testing.assert_close(fast, reference, atol=2e-6, rtol=1e-5)


def test_defaults_are_the_fast_fp32_path():
    predictor = build_flip_test()
    assert predictor.implementation == "fast" and predictor.precision == "fp32"
    assert tuple(PRECISIONS) == FLIP_PRECISIONS
    assert predictor.describe()["precision"] == "fp32"
    predictor.configure(EvalParams(flip_precision="bf16"))
    assert predictor.precision == "bf16" and predictor.model.mask_extractor.precision == "bf16"
    with pytest.raises(ValueError, match="fp32 only"):
        predictor.implementation = "reference"
    with pytest.raises(ValueError, match="precision"):
        predictor.precision = "fp16"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_runs_on_another_device(config, precision):
    """On ``meta`` tensors (shapes and devices, no data) the fast path takes its accelerator branch (all objects
    of a chunk in one padded attention call) with no step that reads values or falls back to the host."""
    model = _perturbed(config, 7).to("meta")
    extractor = model.mask_extractor
    lengths = [40, 25, 9]
    b, t, c = len(lengths), max(lengths), config.channels
    with torch.no_grad():
        keys, values = extractor.attention.keys_values(torch.empty(b, t, c, device="meta"),
                                                       torch.empty(b, t, 2, device="meta"))
        memory = ObjectMemory(keys, values, torch.empty(b, 6, device="meta"), lengths)
        segments = [(2, 7), (0, 100), (1, 33)]
        logits = fast_embedding_logits(extractor, memory, torch.empty(140, 2, device="meta"), segments, precision)
    assert logits.device.type == "meta" and logits.shape == (140,) and logits.dtype == torch.float32
    assert memory.cache["fast"]["key_mask"].shape == (3, 1, 1, 40)


def test_bf16_stays_close_to_fp32():
    model = _perturbed(CONFIGS[0], 8)
    memory = _memory(model, [30, 17], seed=9)
    embedding = torch.rand(300, 2, generator=torch.Generator().manual_seed(10)) * 8 - 4
    with torch.no_grad():
        fp32 = fast_embedding_logits(model.mask_extractor, memory, embedding, [(0, 200), (1, 100)])
        bf16 = fast_embedding_logits(model.mask_extractor, memory, embedding, [(0, 200), (1, 100)], "bf16")
    error = (fp32 - bf16).abs().max()
    assert 0 < error < 0.02 * fp32.abs().max()


def test_precision_is_in_the_protocol_and_every_record(tmp_path):
    from benchmark.cli import main
    from benchmark.evaluation.accumulate import load_records

    assert EvalParams().protocol_hash() == "24e68483bf20c3d9"  # the default protocol keeps its hash
    assert EvalParams(flip_precision="bf16").protocol_hash() != EvalParams().protocol_hash()
    with pytest.raises(ValueError, match="flip_precision"):
        EvalParams(flip_precision="fp16")
    dataset = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"
    for precision in FLIP_PRECISIONS:
        out = tmp_path / precision
        result = CliRunner().invoke(main, ["eval", "--dataset", str(dataset), "--model", "flip-test,box", "--limit",
                                           "2", "--out", str(out), "--flip-precision", precision, "--no-progress"])
        assert result.exit_code == 0, result.output
        records = load_records(out)
        flip = records[records["model"] == "flip-test"]
        assert len(flip) == 2 and (flip["precision"] == precision).all()
        assert records.loc[records["model"] == "box", "precision"].isna().all()  # it states none


def test_fast_decoder_module_documents_its_precisions():
    assert "bf16" in fast_decoder.__doc__ and set(PRECISIONS) == {"fp32", "bf16"}
    assert np.isfinite(float(torch.finfo(PRECISIONS["bf16"]).eps))


def test_bench_flip_compares_with_the_reference_and_prints_the_bound():
    from benchmark.commands.bench_cmd import bench_cmd

    result = CliRunner().invoke(bench_cmd, ["flip", "--model", "flip-test", "--no-dataset", "--sizes", "40",
                                            "--objects", "2", "--modes", "window", "--repeat", "1", "--compare-ref",
                                            "--no-import-time"])
    assert result.exit_code == 0, result.output
    for text in ("GFLOP", "x bound", "ref wall", "speed-up (wall)", "matmul (fp32, 1024^3, best)"):
        assert text in result.output
