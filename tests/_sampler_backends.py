"""Shared pytest fixture for the sampler tests: run a test once per back end (native C++ and numpy fallback)."""

from __future__ import annotations

import pytest

import benchmark.flip.sampler as sampler


@pytest.fixture(params=["native", "numpy"])
def backend(request, monkeypatch):
    """Selects the sampler back end for the test; skips 'native' when the extension is not built."""
    if request.param == "native" and sampler._native is None:
        pytest.skip("native extension benchmark.flip._sampler_native not built (pip install -e . with a compiler)")
    monkeypatch.setattr(sampler, "_FORCE_FALLBACK", request.param == "numpy")
    return request.param
