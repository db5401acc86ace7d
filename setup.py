"""Builds the optional native patch sampler (C++ / pybind11); the package works without it."""

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
        )
    ],
    cmdclass={"build_ext": build_ext},
)
