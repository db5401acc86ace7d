"""Replay of the official FLIP reference cases (../shared/fixtures/flip-reference, README sections 5.4 / 5.5):
the same patches through our encoder must give the official intermediate tokens, full-image logits and
hierarchical refinement (per-level logits, probabilities, mask)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.flip import inference
from benchmark.flip.checkpoint import load_checkpoint
from benchmark.flip.config import load_config_json
from benchmark.flip.tokens import TokenBatch
from _shared import FLIP_REFERENCE, require

CASES = ["flip-reduced_medium", "flip-reduced_elongated", "flip-tiny_small", "flip-tiny_elongated"]
SIZES = (1, 2, 4, 8, 16)


@pytest.fixture(scope="module")
def replay():
    """case name -> (model, npz arrays, TokenBatch of the stored patches); models loaded once."""
    models, cache = {}, {}

    def get(case: str):
        if case not in cache:
            config_name = case.split("_")[0]
            if config_name not in models:
                config = load_config_json(require(FLIP_REFERENCE / "models" / f"{config_name}.json"))
                models[config_name] = load_checkpoint(FLIP_REFERENCE / "models" / f"{config_name}.ckpt", config)
            z = dict(np.load(require(FLIP_REFERENCE / "cases" / f"{case}.npz")))
            sample = SimpleNamespace(patches=[z[f"patches_p{p}"] for p in SIZES],
                                     coords=[z[f"coords_p{p}"] for p in SIZES],
                                     target_indices=[z[f"target_indices_p{p}"] for p in SIZES])
            batch = TokenBatch.from_samples([sample], torch.from_numpy(z["position_model"]))
            cache[case] = (models[config_name], z, batch)
        return cache[case]

    return get


@pytest.mark.parametrize("case", CASES)
def test_position_and_tokens_match_official(replay, case):
    model, z, batch = replay(case)
    position = inference.model_position(torch.from_numpy(z["position"])[None], *z["image"].shape[:2])
    np.testing.assert_array_equal(position.numpy(), z["position_model"])
    with torch.no_grad():
        tokens = model.sparsify(batch)
        assert tokens.lengths == [int(z["dbg_segment_lengths"][0])]
        assert tokens.key_mask.all() and tokens.attention_mask() is None
        registers = np.arange(tokens.lengths[0]) < model.config.num_registers
        np.testing.assert_array_equal(registers, z["dbg_register_mask"])
        np.testing.assert_allclose(tokens.x[0].numpy(), z["dbg_tokens"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(tokens.embedding[0].numpy(), z["dbg_token_embedding"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(tokens.coordinates[0].numpy(), z["dbg_token_coordinates"], atol=1e-6, rtol=0)
        x = tokens.x
        for k, layer in enumerate(model.layers):
            x = layer(x, tokens.embedding, tokens.attention_mask())
            np.testing.assert_allclose(x[0].numpy(), z["dbg_layer_outputs"][k], atol=1e-4, rtol=0,
                                       err_msg=f"layer {k}")


@pytest.mark.parametrize("case", CASES)
def test_full_image_logits_match_official(replay, case):
    model, z, batch = replay(case)
    height, width = z["image"].shape[:2]
    xs, ys = inference.full_grid(height, width, "cpu")
    # float32 linspace: equal up to rounding on any CPU; the (W - 1) convention itself differs by ~1/128
    np.testing.assert_allclose(xs.numpy(), z["full_mask_x"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ys.numpy(), z["full_mask_y"], atol=1e-6, rtol=0)
    with torch.no_grad():
        logits = inference.full_logits(model, model.encode(batch), height, width)
    assert logits.shape == (1, height, width)
    np.testing.assert_allclose(logits[0].numpy(), z["full_logits"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_hierarchical_refinement_matches_official(replay, case):
    model, z, batch = replay(case)
    height, width = z["image"].shape[:2]
    threshold = float(z["hier_uncertain_threshold"])
    plan = inference.hierarchical_plan(z["position"], height, width, int(z["hier_num_mask_tokens"]),
                                       float(z["hier_scale_factor"]))
    assert plan.box_px == tuple(z["hier_bbox_px"].tolist())
    assert plan.bbox == tuple(z["hier_mask_bbox"].tolist())
    assert plan.sizes == [tuple(s) for s in z["hier_sizes"].tolist()]
    with torch.no_grad():
        memory = model.encode(batch)
        (result,) = inference.refine(model, memory, [0], [plan], threshold)
        if case == CASES[0]:  # the mask-level wrapper (same computation; once, it is slow for large boxes)
            mask = inference.hierarchical_masks(model, memory, z["position"][None], height, width)[0].numpy()
        else:
            x_min, y_min, x_max, y_max = plan.box_px
            mask = np.zeros((height, width), bool)
            mask[y_min:y_max, x_min:x_max] = (result.probs > 0.5).view(y_max - y_min, x_max - x_min).numpy()
    assert sum(len(i) > 0 for i, _ in result.levels) == int(z["hier_num_levels_queried"])

    # per level: the official logits at the official query coordinates, and the same cells queried up to cells
    # whose upsampled probability lies within float noise of a threshold (README 5.5)
    any_differing = False
    for k, (indices, logits) in enumerate(result.levels):
        if len(indices) == 0:
            continue
        ours, theirs = indices.numpy(), z[f"hier_level{k}_query_indices"].astype(np.int64)
        coords = torch.from_numpy(z[f"hier_level{k}_query_coordinates"])
        with torch.no_grad():
            official_points = model.decode(memory, coords, [(0, len(coords))]).numpy()
        np.testing.assert_allclose(official_points, z[f"hier_level{k}_logits"], atol=1e-3, rtol=0)
        _, ia, ib = np.intersect1d(ours, theirs, return_indices=True)
        np.testing.assert_allclose(logits.numpy()[ia], z[f"hier_level{k}_logits"][ib], atol=1e-3, rtol=0)
        differing = np.setxor1d(ours, theirs).size
        assert differing <= max(4, len(theirs) // 10_000), f"level {k}: {differing} queried cells differ"
        any_differing |= differing > 0
    off = np.abs(result.probs.numpy() - z["hier_probs"]) > 1e-4
    assert off.mean() < 1e-4 if any_differing else not off.any()

    x_min, y_min, x_max, y_max = plan.box_px
    near_half = np.zeros((height, width), bool)
    near_half[y_min:y_max, x_min:x_max] = (np.abs(z["hier_probs"] - 0.5) < 1e-4).reshape(y_max - y_min,
                                                                                          x_max - x_min)
    assert not ((mask != z["hier_mask"]) & ~near_half).any()


def test_window_mode_queries_the_inclusive_sigma_box(replay):
    """Official ``predict_mask_optimized``: pixels x_min..x_max, y_min..y_max (inclusive) of the 5-sigma box (the
    hierarchical path's box, checked above) at ``(x / (W/2) - 1) * W/256``; background elsewhere."""
    model, z, batch = replay("flip-tiny_small")
    height, width = z["image"].shape[:2]
    x_min, y_min, x_max, y_max = z["hier_bbox_px"].tolist()
    ys, xs = np.mgrid[y_min:y_max + 1, x_min:x_max + 1].astype(np.float32)
    coords = np.stack([(xs / (width / 2) - 1) * (width / 256), (ys / (height / 2) - 1) * (height / 256)], -1)
    with torch.no_grad():
        memory = model.encode(batch)
        mask = inference.window_masks(model, memory, z["position"][None], height, width)[0].numpy()
        logits = model.decode(memory, torch.from_numpy(coords.reshape(-1, 2)), [(0, coords[..., 0].size)]).numpy()
    inside = np.zeros((height, width), bool)
    inside[y_min:y_max + 1, x_min:x_max + 1] = True
    assert not mask[~inside].any()
    expected = logits.reshape(xs.shape) > 0
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(mask[inside].reshape(xs.shape), expected)
