"""Matrix-multiply FLOPs of a piece of code, counted from the shapes of the operations it runs
(:class:`torch.utils.flop_counter.FlopCounterMode`), and this machine's measured matrix-multiply rate: together
they give a compute bound (``flops / rate``) to compare a measured time with.

PyTorch's counter knows ``mm``/``addmm``/``bmm``/``baddbmm``, convolutions and the CUDA attention kernels; this
module adds the CPU attention kernel (``_scaled_dot_product_flash_attention_for_cpu``: ``2 L S (Dk + Dv)`` per
batch and head, as PyTorch counts the CUDA ones) and ``addmv`` / ``mv`` (``2 m n``). Elementwise work (softmax
exponentials, activations, norms) is not counted: the bound is that of the matrix multiplies alone.
The counter is thread-local: run the counted code on the calling thread (e.g. ``workers=1``).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    aten = torch.ops.aten

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    @register_flop_formula([aten.addmv, aten.mv])
    def _mv(*shapes, out_shape=None, **kwargs) -> int:
        matrix = next(s for s in shapes if isinstance(s, (tuple, list, torch.Size)) and len(s) == 2)
        return 2 * matrix[0] * matrix[1]

    _REGISTERED = True


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """``(total, per operation)`` matrix-multiply FLOPs of running ``fn()`` once on this thread."""
    _register()
    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def matmul_rate(threads: int | None = None, size: int = 1024, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", seconds: float = 0.3) -> float:
    """Measured GFLOP/s of a ``size`` x ``size`` x ``size`` matrix product (best of repeated runs for about
    ``seconds``) with ``threads`` torch threads (default: the current setting; restored afterwards)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        a @ b
        sync()
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline or best == float("inf"):
            start = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9
