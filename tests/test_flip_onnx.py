"""Importing the real FLIP-Tiny weights from the official demo ONNX graph: run onnxruntime and our model on the
same inputs (every patch size non-empty: the graph cannot take an empty size)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _shared import FLIP_REFERENCE, FLIP_TINY_ONNX, require
from benchmark.flip.config import get_config
from benchmark.flip.onnx_import import REGISTER_COORDINATE_FILL, _module_path, load_onnx, onnx_state_dict
from benchmark.flip.tokens import TokenBatch

SIZES = (1, 2, 4, 8, 16)


def _inputs(image: np.ndarray, counts=(40, 30, 20, 10, 5), num_queries=4000, seed=0):
    """Patches cut at integer centres of ``image``, model-frame coordinates, a position and query points."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    sample = SimpleNamespace(patches=[], coords=[], target_indices=[])
    offset = 0
    for p, n in zip(SIZES, counts):
        cx, cy = rng.integers(200, width - 200, n), rng.integers(100, height - 100, n)
        sample.patches.append(np.stack([image[y - p // 2:y - p // 2 + p, x - p // 2:x - p // 2 + p]
                                        for x, y in zip(cx, cy)]))
        sample.coords.append(np.stack([cx / 128 - width / 256, cy / 128 - height / 256], 1).astype(np.float32))
        sample.target_indices.append(np.arange(offset, offset + n, dtype=np.int32))
        offset += n
    position = np.array([[0.3, -0.2, 0.4, 0.9, 0.6, 0.8]], np.float32)
    queries = np.stack([rng.uniform(-width / 256, width / 256, num_queries),
                        rng.uniform(-height / 256, height / 256, num_queries)], 1).astype(np.float32)
    return sample, position, queries


def test_anonymous_matmul_scopes_resolve_to_module_paths():
    assert _module_path("/sparsify/patch_embeddings.3/layers/layers.1/MatMul") == "sparsify.patch_embeddings.3.layers.1"
    assert _module_path("/layers/layers.0/mlp/MatMul_1") == "layers.0.mlp"
    assert _module_path("/mask_extractor/postprocess/MatMul") == "mask_extractor.postprocess"


def test_onnx_import_fills_every_parameter():
    config = get_config("flip-tiny")
    state = onnx_state_dict(require(FLIP_TINY_ONNX), config)
    model = load_onnx(FLIP_TINY_ONNX)
    assert set(state) == set(model.state_dict())
    # 197 initializers = 185 named + 12 anonymous MatMul weights; + patch_sizes and register_coordinates
    assert len(state) == 199
    assert sum(v.numel() for k, v in state.items() if k != "sparsify.patch_sizes") - 16 == 513_788
    assert torch.equal(state["sparsify.register_coordinates"], torch.full((8, 2), REGISTER_COORDINATE_FILL))
    # a feed-forward block's weights come back in [out, in] layout
    assert state["layers.0.mlp.weight1"].shape == (256, 64) and state["layers.0.mlp.weight2"].shape == (64, 256)


def test_imported_model_reproduces_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    image = np.load(require(FLIP_REFERENCE / "cases" / "flip-tiny_small.npz"))["image"]
    sample, position, queries = _inputs(image)
    feed = {f"patches_p{p}": x.transpose(0, 3, 1, 2).astype(np.float32) / 255 for p, x in zip(SIZES, sample.patches)}
    feed.update({f"coords_p{p}": c for p, c in zip(SIZES, sample.coords)})
    feed.update(position=position, mask_coordinates=queries)
    reference = ort.InferenceSession(str(require(FLIP_TINY_ONNX))).run(["mask_logits"], feed)[0]

    model = load_onnx(FLIP_TINY_ONNX)
    batch = TokenBatch.from_samples([sample], torch.from_numpy(position))
    with torch.no_grad():
        ours = model(batch, torch.from_numpy(queries), [(0, len(queries))]).numpy()
    # The trained model's mask attention is very sharp (scores in the thousands), so float32 rounding alone moves
    # logits by ~2e-3 (our float32 and onnxruntime each differ from a float64 run by that much); a wrong weight or
    # layout moves them by whole units.
    assert reference.std() > 1.0
    np.testing.assert_allclose(ours, reference, atol=1e-2, rtol=0)
    assert np.abs(ours - reference).mean() < 1e-3
    assert ((ours > 0) == (reference > 0)).mean() > 0.999
