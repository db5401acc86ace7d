"""mask_to_rho / mask_to_bbox / mask_to_bbox_official against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from objascale.hdf5_format import mask_to_bbox, mask_to_bbox_official, mask_to_rho


def brute_rho(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    x = -1 + 2 * xs / max(w - 1, 1) if w > 1 else np.full(xs.shape, -1.0)
    y = -1 + 2 * ys / max(h - 1, 1) if h > 1 else np.full(ys.shape, -1.0)
    return np.array([x.mean(), y.mean(), x.var(), y.var(), np.mean((x - x.mean()) * (y - y.mean()))])


def test_full_image():
    h, w = 7, 11
    rho = mask_to_rho(np.ones((h, w), bool))
    assert rho.dtype == np.float32 and rho.shape == (5,)
    np.testing.assert_allclose(rho, [0, 0, (w + 1) / (3 * (w - 1)), (h + 1) / (3 * (h - 1)), 0], atol=1e-7)


def test_single_pixel_and_empty():
    m = np.zeros((5, 9), bool)
    m[4, 0] = True
    np.testing.assert_array_equal(mask_to_rho(m), np.array([-1, 1, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(mask_to_bbox(m), [0, 4, 0, 4])
    np.testing.assert_array_equal(mask_to_bbox_official(m), [np.inf, 4, -np.inf, 4])
    np.testing.assert_array_equal(mask_to_rho(np.zeros((3, 3), bool)), np.zeros(5, np.float32))
    for fn in (mask_to_bbox, mask_to_bbox_official):
        with pytest.raises(ValueError, match="empty"):
            fn(np.zeros((3, 3), bool))


def test_accepts_numeric_and_singleton_channel_masks():
    m = np.zeros((6, 6), np.uint8)
    m[1:3, 2:5] = 255
    expected = mask_to_rho(m > 0)
    np.testing.assert_array_equal(mask_to_rho(m), expected)
    np.testing.assert_array_equal(mask_to_rho(m[None]), expected)
    np.testing.assert_array_equal(mask_to_bbox(m[..., None]), [2, 1, 4, 2])
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rho(np.zeros((2, 3, 3), bool))


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_matches_brute_force(mask):
    assume(mask.any())
    np.testing.assert_allclose(mask_to_rho(mask), brute_rho(mask), rtol=0, atol=1e-6)
    ys, xs = np.nonzero(mask)
    np.testing.assert_array_equal(mask_to_bbox(mask), [xs.min(), ys.min(), xs.max(), ys.max()])
    off = mask_to_bbox_official(mask)
    nx, ny = xs[xs > 0], ys[ys > 0]
    assert off[0] == (nx.min() if nx.size else np.inf) and off[2] == (nx.max() if nx.size else -np.inf)
    assert off[1] == (ny.min() if ny.size else np.inf) and off[3] == (ny.max() if ny.size else -np.inf)
