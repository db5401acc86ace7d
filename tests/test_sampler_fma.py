"""The numpy float32 fused multiply-add emulation is correctly rounded (the C++ side calls std::fma)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from benchmark.flip.sampler_reference import fma_f32


def _exact_fma32(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    lo = np.float32(float(exact))  # within one float32 step of the exact value
    cands = [np.nextafter(lo, np.float32(-np.inf)), lo, np.nextafter(lo, np.float32(np.inf))]
    errs = [abs(Fraction(float(x)) - exact) for x in cands]
    best = min(errs)
    ties = [x for x, e in zip(cands, errs) if e == best]
    if len(ties) == 1:
        return ties[0]
    return next(x for x in ties if int(np.float32(x).view(np.int32)) % 2 == 0)  # ties to even


def test_fma_f32_correctly_rounded():
    rng = np.random.default_rng(0)
    a = rng.normal(size=3000).astype(np.float32) * np.float32(2.0) ** rng.integers(-20, 20, 3000).astype(np.float32)
    b = rng.normal(size=3000).astype(np.float32)
    c = -(a * b)  # massive cancellation
    c[::3] = rng.normal(size=1000).astype(np.float32)
    # constructed ties: a*b exactly half an ulp away from c, plus a tiny extra term of either sign
    a[1::7] = np.float32(1.0) + np.float32(2.0**-12)
    b[1::7] = np.float32(1.0) + np.float32(2.0**-12)
    c[1::7] = np.float32(1.0)
    got = fma_f32(a, b, c)
    for x, y, z, g in zip(a, b, c, got):
        assert g == _exact_fma32(x, y, z), (x, y, z)
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is exactly halfway between two float32 values; a tiny c decides
    q = np.float32(1.0 + 2.0**-12)
    for tiny in (2.0**-70, -(2.0**-70), 0.0):
        c0 = np.float32(tiny)
        assert fma_f32(q, q, c0) == _exact_fma32(q, q, c0)
    assert fma_f32(q, q, np.float32(2.0**-70)) > fma_f32(q, q, np.float32(-(2.0**-70)))
    assert fma_f32(np.float32(1.0), np.float32(np.inf), np.float32(1.0)) == np.inf
