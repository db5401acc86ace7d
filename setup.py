"""Builds the optional native extensions (C++ / pybind11); the package works without either (pure-Python / PyTorch
fallbacks):

* ``benchmark.flip._sampler_native`` (``native/sampler.cpp``): FLIP's patch sampler, bit-exact with the numpy
  reference (no implicit fused multiply-add);
* ``benchmark.flip._attention_native`` (``native/attention.cpp``): the fused attention of the fast pixel predictor
  on CPUs with AVX2 + FMA. Those instructions are enabled per function and checked at run time (no ``-march``
  flag, so the build runs on any x86-64 CI machine); it may fuse multiply-adds but is never built with
  ``-ffast-math``.
"""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "benchmark.flip._sampler_native",
            sources=["native/sampler.cpp"],
            depends=[
                "native/flip_extract.hpp", "native/flip_extract_simd.hpp", "native/flip_patch_weights.hpp", "native/flip_mask.hpp", "native/flip_overlap.hpp",
                "native/flip_params.hpp", "native/flip_rng.hpp", "native/flip_sampler.hpp",
            ],
            cxx_std=17,
            # -ffp-contract=off: no implicit fused multiply-add, so results equal the numpy reference bit-for-bit
            # (the core uses explicit std::fma where the official build fuses). Never add -ffast-math here.
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        Pybind11Extension(
            "benchmark.flip._attention_native",
            sources=["native/attention.cpp"],
            cxx_std=17,
            # AVX2 + FMA come from target pragmas in the source, checked at run time; no -march / -ffast-math.
            extra_compile_args=["-O3", "-fno-fast-math"],
            optional=True,
        ),
    ],
    cmdclass={"build_ext": build_ext},
)
