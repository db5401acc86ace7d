"""The decoder's speed-ups are exact: saturated-embedding look-ups, the folded read-out, threaded chunk decoding and
single-threaded ops give what the plain per-point evaluation gives (float32 rounding aside); ``bench flip`` runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from baselines.base import ObjectPrompt
from benchmark.commands.bench_cmd import bench_cmd
from benchmark.flip import inference
from benchmark.flip.attention import merge_heads, split_heads
from benchmark.flip.embeddings import EMBEDDING_CLIP, gaussian_relative_embedding
from benchmark.flip.predictor import build_flip_test
from benchmark.flip.sampler import rho_to_position, sample_patches_batch
from benchmark.flip.tokens import TokenBatch

H, W = 72, 96
# a small round object, an elongated rotated one, and one covering the image
RHO = np.array([[0.3, -0.2, 0.004, 0.003, 0.0], [-0.4, 0.3, 0.02, 0.002, 0.005], [0.0, 0.0, 0.3, 0.2, 0.0]],
               np.float32)


@pytest.fixture(scope="module")
def setup():
    predictor = build_flip_test()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    positions = rho_to_position(RHO)
    samples = sample_patches_batch([image], positions, 64, image_index=[0] * len(RHO), seeds=[1, 2, 3],
                                   patch_sizes=predictor.config.patch_sizes)
    batch = TokenBatch.from_samples(samples, inference.model_position(torch.from_numpy(positions), H, W))
    with torch.no_grad():
        memory = predictor.model.encode(batch)
    return predictor, image, positions, memory


def _plain_logits(model, memory, coords, obj):
    """The pixel predictor as the official model computes it, without any shortcut: float32 [n]."""
    extractor = model.mask_extractor
    attention = extractor.attention
    embedding = gaussian_relative_embedding(memory.position[obj][None], coords)
    q = split_heads(attention.query(embedding), attention.num_heads)[None]
    t = memory.lengths[obj]
    o = F.scaled_dot_product_attention(q, memory.keys[obj:obj + 1, :, :t], memory.values[obj:obj + 1, :, :t])[0]
    x = attention.out(merge_heads(o))
    return extractor.to_mask(x + extractor.postprocess(x)).squeeze(-1)


def test_decoder_equals_plain_evaluation_and_uses_saturated_lookups(setup):
    predictor, _, _, memory = setup
    model = predictor.model
    xs, ys = inference.full_grid(H, W, "cpu")
    coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        fast = inference.full_logits(model, memory, H, W, chunk_size=1000)
        for b in range(memory.num_objects):
            plain = _plain_logits(model, memory, coords, b).view(H, W)
            torch.testing.assert_close(fast[b], plain, atol=1e-5, rtol=1e-5)
        embedding = gaussian_relative_embedding(memory.position[0][None], coords)
        saturated = (embedding.abs() == EMBEDDING_CLIP).all(dim=1)
        assert saturated.float().mean() > 0.3  # the small object's far pixels take the look-up path
        without_lookup = dataclasses.replace(memory, saturated=None)
        torch.testing.assert_close(inference.full_logits(model, without_lookup, H, W, chunk_size=1000), fast,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", inference.MODES)
def test_threaded_chunks_equal_sequential(setup, mode):
    predictor, _, positions, memory = setup
    with torch.inference_mode():
        one = inference.predict_masks(predictor.model, memory, positions, H, W, mode, chunk_size=257)
        three = inference.predict_masks(predictor.model, memory, positions, H, W, mode, chunk_size=257, workers=3)
    assert torch.equal(one, three)
    with pytest.raises(ValueError, match="workers"):
        inference.predict_masks(predictor.model, memory, positions, H, W, mode, workers=0)


def test_decoding_pool_is_kept_and_chunks_are_balanced_over_the_threads():
    assert inference._pool(2) is inference._pool(2)
    assert inference.balanced_chunk_size(52_000, 8192, 1) == 8192  # one worker: unchanged
    # (points, workers) -> chunk size: a multiple of the workers' count of chunks, none under 512 points
    expected = {(52_000, 2): 6500, (9_000, 2): 4500, (1_100, 2): 550, (600, 2): 600, (100_000, 3): 6667}
    assert {(n, w): inference.balanced_chunk_size(n, 8192, w) for n, w in expected} == expected


def test_predictor_thread_settings_do_not_change_masks_and_are_restored(setup):
    predictor, image, _, _ = setup
    prompts = [ObjectPrompt(np.zeros(4), rho) for rho in RHO]
    predictor.set_image(image)
    before = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            predictor.num_threads = threads
            results[threads] = predictor.predict(prompts)
            assert torch.get_num_threads() == before
    finally:
        predictor.num_threads = before
    assert all(np.array_equal(a, b) for a, b in zip(results[1], results[2]))


def test_bench_flip_runs_and_rejects_unknown_modes():
    runner = CliRunner()
    result = runner.invoke(bench_cmd, ["flip", "--model", "flip-test", "--no-dataset", "--sizes", "48",
                                       "--objects", "2", "--modes", "window,hierarchical"])
    assert result.exit_code == 0, result.output
    assert "48x48" in result.output and "window" in result.output and "hierarchical" in result.output
    bad = runner.invoke(bench_cmd, ["flip", "--model", "flip-test", "--no-dataset", "--modes", "fast"])
    assert bad.exit_code != 0 and "unknown mode" in bad.output
