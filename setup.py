"""Builds the optional native patch sampler (C++ / pybind11); the package works without it."""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "benchmark.flip._sampler_native",
            sources=["native/sampler.cpp"],
            cxx_std=17,
            extra_compile_args=["-O3"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": build_ext},
)
