"""Several objects in one forward pass (padded token segments, per-object query segments) give what each object
gives alone, and query chunking neither changes results nor lets a chunk grow beyond its bound."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _shared import FLIP_REFERENCE, require
from benchmark.flip import inference
from benchmark.flip.checkpoint import load_checkpoint
from benchmark.flip.config import load_config_json
from benchmark.flip.tokens import TokenBatch

SIZES = (1, 2, 4, 8, 16)
H, W = 512, 800


@pytest.fixture(scope="module")
def setup():
    """FLIP-Tiny (fixture weights) and three objects with 478, 476 and 14 patch tokens."""
    config = load_config_json(require(FLIP_REFERENCE / "models" / "flip-tiny.json"))
    model = load_checkpoint(FLIP_REFERENCE / "models" / "flip-tiny.ckpt", config)
    samples, positions = [], []
    for case in ("flip-tiny_small", "flip-tiny_elongated"):
        z = np.load(FLIP_REFERENCE / "cases" / f"{case}.npz")
        samples.append(SimpleNamespace(patches=[z[f"patches_p{p}"] for p in SIZES],
                                       coords=[z[f"coords_p{p}"] for p in SIZES],
                                       target_indices=[z[f"target_indices_p{p}"] for p in SIZES]))
        positions.append(z["position"])
    only_p4 = [samples[0].patches[2] if p == 4 else samples[0].patches[k][:0] for k, p in enumerate(SIZES)]
    samples.append(SimpleNamespace(
        patches=only_p4,
        coords=[samples[0].coords[2] if p == 4 else samples[0].coords[k][:0] for k, p in enumerate(SIZES)],
        target_indices=[np.arange(len(x), dtype=np.int32) for x in only_p4],
    ))
    positions.append(positions[0] * np.float32([1, 1, 3, 3, 1, 1]))
    positions = np.stack(positions)
    model_positions = inference.model_position(torch.from_numpy(positions), H, W)

    def batch(indices):
        return TokenBatch.from_samples([samples[i] for i in indices], model_positions[list(indices)])

    return model, batch, positions


def test_batched_encoding_equals_one_by_one(setup):
    model, batch, _ = setup
    with torch.no_grad():
        together = model.encode(batch([0, 1, 2]))
        assert together.lengths == [486, 484, 22]
        for b in range(3):
            alone = model.encode(batch([b]))
            t = alone.lengths[0]
            torch.testing.assert_close(together.keys[b, :, :t], alone.keys[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(together.values[b, :, :t], alone.values[0], atol=1e-5, rtol=1e-5)


def test_segmented_queries_equal_separate_queries(setup):
    model, batch, _ = setup
    rng = np.random.default_rng(1)
    counts = [700, 1100, 300]
    coords = [torch.from_numpy(rng.uniform(-2.5, 2.5, (n, 2)).astype(np.float32)) for n in counts]
    with torch.no_grad():
        memory = model.encode(batch([0, 1, 2]))
        joint = model.decode(memory, torch.cat(coords), list(enumerate(counts)))
        for b, c in enumerate(coords):
            alone = model.decode(model.encode(batch([b])), c, [(0, len(c))])
            torch.testing.assert_close(joint[sum(counts[:b]):sum(counts[:b + 1])], alone, atol=1e-4, rtol=0)
    # an object may appear in several runs and objects in any order
    with torch.no_grad():
        shuffled = model.decode(memory, torch.cat([coords[2], coords[0]]), [(2, 300), (0, 700)])
    torch.testing.assert_close(shuffled, torch.cat([joint[1800:], joint[:700]]), atol=1e-5, rtol=0)


def test_chunking_is_exact_and_bounded(setup, monkeypatch):
    model, batch, _ = setup
    with torch.no_grad():
        memory = model.encode(batch([0, 2]))
        reference = inference.full_logits(model, memory, 40, 60, chunk_size=10_000)
        calls = []
        decode = model.decode

        def recording_decode(memory, coords, segments):
            calls.append((coords.shape[0], list(segments)))
            return decode(memory, coords, segments)

        monkeypatch.setattr(model, "decode", recording_decode)
        chunked = inference.full_logits(model, memory, 40, 60, chunk_size=997)
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)
    assert max(n for n, _ in calls) <= 997 and sum(n for n, _ in calls) == 2 * 40 * 60
    assert any(len(segments) == 2 for _, segments in calls)  # a chunk spanning both objects


def test_batched_modes_equal_one_by_one(setup):
    model, batch, positions = setup
    with torch.no_grad():
        memory = model.encode(batch([0, 1, 2]))
        # smaller output grids than the image keep this fast; the positions are in the normalized frame
        full = inference.full_logits(model, memory, 64, 100)
        window = inference.window_masks(model, memory, positions, 160, 250)
        plans = [inference.hierarchical_plan(p, 160, 250, num_mask_tokens=256) for p in positions]
        refined = inference.refine(model, memory, [0, 1, 2], plans)
        for b in range(3):
            alone = model.encode(batch([b]))
            torch.testing.assert_close(full[b], inference.full_logits(model, alone, 64, 100)[0], atol=1e-4, rtol=0)
            window_alone = inference.window_masks(model, alone, positions[b:b + 1], 160, 250)[0]
            assert (window[b] != window_alone).float().mean() < 1e-4
            (single,) = inference.refine(model, alone, [0], [plans[b]])
            assert len(single.levels) == len(refined[b].levels)
            for (i_joint, _), (i_single, _) in zip(refined[b].levels, single.levels):
                assert abs(len(i_joint) - len(i_single)) <= 2
            assert (refined[b].probs - single.probs).abs().gt(1e-4).float().mean() < 1e-4
