"""The image-clustered bootstrap, paired comparisons and Holm's adjustment, on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.report.bootstrap import cluster_bootstrap, holm, paired_comparison


def test_constant_values_give_a_zero_width_interval():
    ci = cluster_bootstrap(np.full(30, 0.7), np.arange(30) // 3, n_boot=500)
    assert (ci.mean, ci.n, ci.clusters) == (pytest.approx(0.7), 30, 10)
    assert ci.lo == pytest.approx(0.7) and ci.hi == pytest.approx(0.7)


def test_one_object_per_image_matches_the_normal_interval_of_the_mean():
    """With independent objects the percentile interval approaches mean ± 1.96 s / sqrt(n)."""
    values = np.random.default_rng(1).normal(50.0, 10.0, 2000)
    ci = cluster_bootstrap(values, np.arange(2000), n_boot=4000, seed=3)
    half = 1.959964 * values.std(ddof=1) / math.sqrt(values.size)
    assert ci.mean == pytest.approx(values.mean())
    assert ci.lo == pytest.approx(values.mean() - half, abs=0.06 * half)
    assert ci.hi == pytest.approx(values.mean() + half, abs=0.06 * half)


def test_copies_within_an_image_do_not_narrow_the_interval():
    """Five identical objects per image carry the information of one: the interval is the one-per-image one
    (resampling objects would shrink it by sqrt(5))."""
    values = np.random.default_rng(2).uniform(0, 100, 60)
    single = cluster_bootstrap(values, np.arange(60), n_boot=1000, seed=7)
    copies = cluster_bootstrap(np.repeat(values, 5), np.repeat(np.arange(60), 5), n_boot=1000, seed=7)
    assert (copies.lo, copies.hi) == pytest.approx((single.lo, single.hi), rel=1e-12)
    assert copies.n == 300 and copies.clusters == 60


def test_seeded_and_nan_dropped_and_degenerate_cases():
    values, images = np.array([1.0, np.nan, 3.0, 5.0, 9.0]), np.array([0, 0, 1, 2, 2])
    a, b = cluster_bootstrap(values, images, 300, seed=4), cluster_bootstrap(values, images, 300, seed=4)
    assert a == b and a.n == 4 and a.mean == pytest.approx(4.5)
    one_image = cluster_bootstrap(np.array([1.0, 2.0]), np.array([5, 5]), 100)
    assert one_image.mean == 1.5 and math.isnan(one_image.lo)
    assert math.isnan(cluster_bootstrap(np.array([np.nan]), np.array([0]), 100).mean)


def test_paired_comparison_of_a_uniformly_better_row():
    rng = np.random.default_rng(5)
    b = rng.uniform(0, 90, 40)
    res = paired_comparison(b + 10.0, b, np.arange(40) // 2, n_boot=500)
    assert res.diff.mean == pytest.approx(10.0) and res.diff.lo == pytest.approx(10.0)
    assert (res.a_wins, res.b_wins) == (1.0, 0.0)
    assert res.p_value < 1e-3  # 20 images, all differences positive: exact two-sided p = 2 / 2**20
    same = paired_comparison(b, b, np.arange(40), n_boot=100)
    assert same.diff.mean == 0 and same.p_value == 1.0 and same.a_wins == same.b_wins == 0.0


def test_holm_adjustment_known_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])
