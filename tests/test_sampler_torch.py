"""Torch patch extraction == numpy/native extraction (CPU here; the same code runs on the image's device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import benchmark.flip.sampler as S
from benchmark.flip.sampler_torch import extract_all_torch, extract_patches_torch, model_frame_coords_torch


def test_torch_extraction_matches_sampler():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(180, 240, 3), dtype=np.uint8)
    pos = S.rho_to_position(np.array([0.1, -0.1, 0.08, 0.05, 0.02], np.float32))
    res = S.sample_patches(img, pos, 1024, seed=5)
    got = extract_all_torch(torch.from_numpy(img), [torch.from_numpy(c) for c in res.centers_px], res.patch_sizes)
    for a, b in zip(got, res.patches):
        assert a.dtype == torch.uint8
        np.testing.assert_array_equal(a.numpy(), b)
    for c, coords in zip(res.centers_px, res.coords):
        np.testing.assert_array_equal(model_frame_coords_torch(torch.from_numpy(c), 180, 240).numpy(), coords)


def test_torch_extraction_random_centres_and_rounding():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(40, 50, 4), dtype=np.uint8)
    for p in (1, 2, 3, 8, 16):
        c = np.stack([rng.uniform(p / 2, 49 - p / 2 - 1e-3, 300), rng.uniform(p / 2, 39 - p / 2 - 1e-3, 300)], 1)
        c = c.astype(np.float32)
        c[:20] = np.floor(c[:20] * 2) / 2  # exact half-pixel centres: ties in the rounding
        np.testing.assert_array_equal(
            extract_patches_torch(torch.from_numpy(img), torch.from_numpy(c), p).numpy(), S.extract_patches(img, c, p)
        )


def test_torch_extraction_checks():
    img = torch.zeros((20, 20, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="outside the image"):
        extract_patches_torch(img, torch.tensor([[19.5, 5.0]]), 4)
    with pytest.raises(ValueError, match="uint8"):
        extract_patches_torch(img.float(), torch.tensor([[5.0, 5.0]]), 4)
    out = extract_patches_torch(img + 9, torch.tensor([[100.0, -50.0], [float("nan"), 3.0]]), 4, check=False)
    assert out.shape == (2, 4, 4, 3) and bool((out == 9).all())  # clamped, never out of bounds
    assert extract_patches_torch(img, torch.zeros((0, 2)), 8).shape == (0, 8, 8, 3)
