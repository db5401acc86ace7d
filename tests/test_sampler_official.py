"""Sampler vs the official FLIP outputs (../shared/fixtures/flip-reference, README sections 5 and 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _sampler_backends import backend  # noqa: F401  (pytest fixture)
from _shared import FLIP_REFERENCE, require

import benchmark.flip.sampler as S
from benchmark.flip.sampler_torch import extract_patches_torch

SIZES = (1, 2, 4, 8, 16)
CASES = ["flip-reduced_elongated", "flip-reduced_medium", "flip-tiny_elongated", "flip-tiny_small"]


def _table(name: str):
    return np.load(require(FLIP_REFERENCE / "tables" / name))


def _case(name: str):
    return np.load(require(FLIP_REFERENCE / "cases" / f"{name}.npz"))


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def key(x):
        i = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(key(a) - key(b))


def test_rho_to_position_table(backend):
    t = _table("rho_to_position.npz")
    got = S.rho_to_position(t["rho"])
    ref = t["position"]
    assert got.dtype == np.float32 and got.shape == (200, 6)
    np.testing.assert_array_equal(got[:, :2], ref[:, :2])  # mu copied
    np.testing.assert_array_equal(got[:, 2:4], ref[:, 2:4])  # sigmas bit-exact (same fma sequence)
    # rot: the official build uses the CPU's approximate reciprocal (RCPSS + Newton): <= 2 ulps apart
    assert _ulps(got[:, 4:], ref[:, 4:]).max() <= 2
    assert np.abs(got[:, 4:] - ref[:, 4:]).max() <= 1e-6


def test_rho_to_position_rules(backend):
    t = _table("rho_to_position.npz")
    rho, kind, ref = t["rho"], t["kind"], t["position"]
    got = S.rho_to_position(rho)
    # zero covariance: clamps give sigma_x = 1e-8, sigma_y = sqrt(0.5e-8) = 7.07e-5, rotation (0, 1)
    zero = np.flatnonzero(kind == "zero_covariance")
    assert len(zero) > 0
    for i in zero:
        if np.all(rho[i, 2:] == 0):
            assert got[i, 2] == np.float32(1e-8)
            assert got[i, 3] == pytest.approx(7.0710678e-5, rel=1e-6)
            assert (got[i, 4], got[i, 5]) == (0.0, 1.0)
            # official: rot_b = 0.99999994 from the approximate reciprocal; ours is correctly rounded (1 ulp)
            assert ref[i, 5] == np.float32(0.99999994)
    # cov_xy == 0: official rotation is (0, 1) whichever axis is wider, so swapped variances give equal output
    for a, b in [(3, 4), (5, 6), (11, 12), (25, 26)]:
        assert rho[a, 4] == 0 and rho[b, 4] == 0 and rho[a, 2] == rho[b, 3] and rho[a, 3] == rho[b, 2]
        np.testing.assert_array_equal(got[a, 2:], got[b, 2:])
        np.testing.assert_array_equal(ref[a, 2:], ref[b, 2:])


def test_fix_axis_aligned_flag(backend):
    rho = np.array([[0.1, -0.2, 0.01, 0.04, 0.0], [0.1, -0.2, 0.04, 0.01, 0.0]], dtype=np.float32)
    official = S.rho_to_position(rho)
    np.testing.assert_array_equal(official[0, 2:], official[1, 2:])  # ambiguity kept by default
    fixed = S.rho_to_position(rho, fix_axis_aligned=True)
    np.testing.assert_array_equal(fixed[:, :4], official[:, :4])
    np.testing.assert_array_equal(fixed[0, 4:], [1.0, 0.0])  # taller than wide: major axis along y
    np.testing.assert_array_equal(fixed[1], official[1])  # wider than tall: unchanged


def test_num_patches_table():
    t = _table("num_patches_per_resolution.npz")
    assert len(t["sigma_x"]) == 684
    sizes = tuple(int(p) for p in t["patch_sizes"])
    got = np.stack([
        S.plan_patches(sx, sy, int(n), sizes, float(t["coverage"]))
        for sx, sy, n in zip(t["sigma_x"], t["sigma_y"], t["num_tokens"])
    ])
    np.testing.assert_array_equal(got, t["num_patches"])


def test_bilinear_table(backend):
    t = _table("bilinear_patches.npz")
    total = 0
    for p in SIZES:
        for i in range(len(t[f"center_p{p}"])):
            img = t["image_%d" % t[f"image_index_p{p}"][i]]
            centre = t[f"center_p{p}"][i : i + 1]
            np.testing.assert_array_equal(S.extract_patches(img, centre, p)[0], t[f"pixels_p{p}"][i])
            torch_patch = extract_patches_torch(torch.from_numpy(img), torch.from_numpy(centre), p)
            np.testing.assert_array_equal(torch_patch.numpy()[0], t[f"pixels_p{p}"][i])
            total += 1
    assert total == 36


@pytest.mark.parametrize("name", CASES)
def test_case_position_and_params(name):
    d = _case(name)
    pos = S.rho_to_position(d["rho"])
    np.testing.assert_array_equal(pos[:2], d["position"][:2])
    np.testing.assert_allclose(pos[2:4], d["position"][2:4], rtol=2e-6)
    np.testing.assert_allclose(pos[4:], d["position"][4:], atol=1e-6)
    h, w = d["image"].shape[:2]
    params = S.sampler_params_px(d["position"], h, w)
    np.testing.assert_array_equal(params[:4], d["sampler_params_px"][:4])
    # the stored rotation is before the sampler's renormalisation; ours is after it (<= 2 ulps apart)
    assert _ulps(params[4:], d["sampler_params_px"][4:]).max() <= 2
    np.testing.assert_array_equal(
        S.plan_patches(params[2], params[3], int(d["num_tokens"]), SIZES, float(d["coverage"])),
        d["planned_patches_per_size"],
    )


@pytest.mark.parametrize("name", CASES)
def test_case_replay_from_rng_state(name, backend):
    """Replaying the official generator state reproduces the official patches (README 5.3 / 7.4)."""
    d = _case(name)
    res = S.sample_patches(
        d["image"], d["position"], int(d["num_tokens"]), rng_state=d["rng_state"],
        coverage=float(d["coverage"]), max_overlap_threshold=float(d["max_overlap_threshold"]),
    )
    np.testing.assert_array_equal(res.planned, d["planned_patches_per_size"])
    np.testing.assert_array_equal(res.seq_lengths, d["seq_lengths"])
    equal_coords = total = 0
    for i, p in enumerate(SIZES):
        np.testing.assert_array_equal(res.target_indices[i], d[f"target_indices_p{p}"])
        same = np.all(res.coords[i] == d[f"coords_p{p}"], axis=1)
        equal_coords += int(same.sum())
        total += len(same)
        # wherever the centre agrees, the patch agrees bit-for-bit
        np.testing.assert_array_equal(res.patches[i][same], d[f"patches_p{p}"][same])
    if name == "flip-tiny_small":
        # the official fast-math build rounds 4 of these 478 centres 1 ulp differently (README 7.4)
        assert equal_coords >= total - 4
    else:
        assert equal_coords == total
