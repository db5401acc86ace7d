"""Per-stage wall-clock timing shared by every predictor and the evaluation loop.

Stages are named by the benchmark protocol: ``data`` (decode image and mask), ``preprocess`` (resizing,
normalisation, FLIP patch sampling), ``encoder`` (image / object encoder), ``decoder`` (prompt or mask decoder)
and ``postprocess`` (upsampling, thresholding). Times are seconds from :func:`time.perf_counter`; when the
timer is given a CUDA device it calls ``torch.cuda.synchronize`` before reading the clock, so asynchronous
kernels are charged to the stage that launched them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

STAGES = ("data", "preprocess", "encoder", "decoder", "postprocess")


class StageTimer:
    """Accumulates seconds per stage until :meth:`reset` (or :meth:`pop`) is called.

    >>> t = StageTimer()
    >>> with t.stage("encoder"):
    ...     pass
    >>> sorted(t.pop())
    ['encoder']
    """

    def __init__(self, device: object | None = None) -> None:
        self._sync = _cuda_sync_for(device)
        self._seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in STAGES:
            raise ValueError(f"unknown timing stage {name!r}; expected one of {STAGES}")
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._seconds[name] += time.perf_counter() - start

    def sync(self) -> None:
        """Wait for the timer's CUDA device (no-op elsewhere): call before reading a clock of your own."""
        self._sync()

    def add(self, name: str, seconds: float) -> None:
        """Charge ``seconds`` measured elsewhere to ``name`` (measure them between :meth:`sync` calls on CUDA)."""
        if name not in STAGES:
            raise ValueError(f"unknown timing stage {name!r}; expected one of {STAGES}")
        self._seconds[name] += seconds

    def pop(self) -> dict[str, float]:
        """Return the accumulated seconds per stage and start afresh."""
        out = dict(self._seconds)
        self._seconds.clear()
        return out

    def reset(self) -> None:
        self._seconds.clear()


def _cuda_sync_for(device: object | None):
    if device is None or "cuda" not in str(device):
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)
