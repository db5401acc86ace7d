"""Training-side helpers: boundary-distance groups and sparse mask-pixel sampling (official semantics)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from _sampler_backends import backend  # noqa: F401  (pytest fixture)

import benchmark.flip.sampler as S


def _bfs_distance(mask: np.ndarray) -> np.ndarray:
    """Independent BFS (the official algorithm): boundary pixels = a 4-neighbour differs; INF = H + W."""
    h, w = mask.shape
    dist = np.full((h, w), h + w, np.int64)
    q = deque()
    for i in range(h):
        for j in range(w):
            if any(0 <= i + di < h and 0 <= j + dj < w and mask[i + di, j + dj] != mask[i, j]
                   for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))):
                dist[i, j] = 0
                q.append((i, j))
    while q:
        i, j = q.popleft()
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < w and dist[a, b] > dist[i, j] + 1:
                dist[a, b] = dist[i, j] + 1
                q.append((a, b))
    return dist


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_map_equals_bfs(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((23, 31)) < [0.02, 0.3, 0.7][seed]
    np.testing.assert_array_equal(S.boundary_distance_map(mask), _bfs_distance(mask))
    np.testing.assert_array_equal(S.boundary_distance_map(np.ones((5, 7), bool)), np.full((5, 7), 12))


def test_groups_nested_and_complete(backend):
    yy, xx = np.mgrid[:80, :100]
    mask = (xx - 40) ** 2 + (yy - 35) ** 2 < 25**2
    inside, outside = S.boundary_distance_groups(mask)
    dist = _bfs_distance(mask)
    bounds = list(S.MASK_GROUP_BOUNDS) + [mask.size]
    for g, bound in enumerate(bounds):
        for arr, want in ((inside[g], mask), (outside[g], ~mask)):
            assert arr.dtype == np.float32 and arr.shape[1] == 2
            expected = np.argwhere(want & (dist <= bound))[:, ::-1].astype(np.float32)  # (x, y), row-major
            np.testing.assert_array_equal(arr, expected)
    assert len(inside[6]) == mask.sum() and len(outside[6]) == (~mask).sum()


def test_sample_mask_pixels(backend):
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    mask = ((xx - 70) / 30.0) ** 2 + ((yy - 60) / 20.0) ** 2 < 1
    pos = S.rho_to_position(np.array([-0.12, 0.0, 0.04, 0.03, 0.0], np.float32))
    spg = [10, 10, 10, 10, 10, 10, 11]
    values, coords = S.sample_mask_pixels(mask, pos, spg, seed=4)
    assert values.dtype == np.uint8 and coords.dtype == np.float32 and coords.shape == (71, 2)
    # per group: k // 2 inside first, then the rest outside
    expected = np.concatenate([[1] * (k // 2) + [0] * (k - k // 2) for k in spg])
    np.testing.assert_array_equal(values, expected)
    px = (coords + [w / 256, h / 256]) * 128  # back to pixel coordinates (x, y)
    cols, rows = np.rint(px[:, 0]).astype(int), np.rint(px[:, 1]).astype(int)
    assert np.all(np.abs(px - np.rint(px)) <= 0.5 + 1e-4)  # jitter within half a pixel
    np.testing.assert_array_equal(mask[rows, cols], values.astype(bool))
    again = S.sample_mask_pixels(mask, pos, spg, seed=4)
    np.testing.assert_array_equal(again[1], coords)


def test_sample_mask_pixels_errors(backend):
    pos = S.rho_to_position(np.array([0, 0, 0.01, 0.01, 0], np.float32))
    with pytest.raises(S.MaskSamplingError, match="inside"):
        S.sample_mask_pixels(np.zeros((50, 50), bool), pos, [2, 0, 0, 0, 0, 0, 0], seed=1)
    far = S.rho_to_position(np.array([5.0, 5.0, 1e-4, 1e-4, 0], np.float32))
    with pytest.raises(S.MaskSamplingError, match="misses"):
        S.sample_mask_pixels(np.ones((50, 50), bool), far, [2, 0, 0, 0, 0, 0, 0], seed=1)
    with pytest.raises(ValueError, match="7 non-negative"):
        S.sample_mask_pixels(np.ones((50, 50), bool), pos, [1, 2], seed=1)
    # only outside samples requested from an empty mask: fine
    values, _ = S.sample_mask_pixels(np.zeros((50, 50), bool), pos, [0, 0, 0, 0, 0, 0, 1], seed=1)
    assert values.tolist() == [0]
