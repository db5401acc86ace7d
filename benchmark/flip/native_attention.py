"""The fused CPU attention kernel (``benchmark.flip._attention_native``, built from ``native/attention.cpp`` by
``setup.py``) on torch tensors, for the pixel predictor's cross-attention (:mod:`benchmark.flip.fast_decoder`) and
the encoder's self-attention (:mod:`benchmark.flip.attention`).

The kernel computes ``softmax(q . K^T * scale + bias) . V`` per object and head in float32 with AVX2 + FMA
(register-blocked products, an exponential within about 1 ulp), on ragged objects without padding work; results
equal PyTorch's SDPA up to float32 rounding. It is used where :func:`usable` holds: :data:`ENABLED`, built, a CPU
with AVX2 and FMA, float32 CPU tensors, head widths that are multiples of 8, no autograd graph to record.
Everything else (CUDA, ``meta``, float64, bf16, training) takes the SDPA code. ``ENABLED = False`` (or
``FLIPBENCH_NATIVE_ATTENTION=0`` in the environment at import) forces SDPA, e.g. for A/B timing.

Inputs reach the kernel as numpy views of contiguous tensors (no copy, no torch C++ linkage); it releases the GIL
and runs on :func:`kernel_threads` threads.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

#: use the native kernel where it can run (False: always SDPA); ``FLIPBENCH_NATIVE_ATTENTION=0`` at import
ENABLED = os.environ.get("FLIPBENCH_NATIVE_ATTENTION", "1") != "0"
#: threads of the kernel's calls (None: ``torch.get_num_threads()``); set by :func:`threads`
THREADS: int | None = None

try:
    from benchmark.flip import _attention_native as _native
except ImportError:  # not built (no compiler at install): SDPA only
    _native = None


def available() -> bool:
    """Whether the kernel is built and this CPU runs it (AVX2 + FMA); :data:`ENABLED` is not consulted."""
    return _native is not None and _native.supported()


def usable(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> bool:
    """Whether the kernel computes an attention of these queries, keys and values (see the module docstring)."""
    if not ENABLED or not available():
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in (q, keys, values)):
        return False
    if keys.shape[-1] % 8 or values.shape[-1] % 8:
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, keys, values)))


@contextmanager
def threads(count: int):
    """Run the kernel's calls in the enclosed block on ``count`` threads (process-wide setting, restored after)."""
    global THREADS
    previous, THREADS = THREADS, max(1, int(count))
    try:
        yield
    finally:
        THREADS = previous


def kernel_threads() -> int:
    """Threads of the next kernel call: :data:`THREADS`, else ``torch.get_num_threads()``."""
    return THREADS if THREADS is not None else torch.get_num_threads()


def layout(keys: torch.Tensor, values: torch.Tensor, lengths: Sequence[int],
           bias: torch.Tensor | None = None, scale: float | None = None) -> dict:
    """The kernel's inputs for keys ``[B, H, T, Dk]``, values ``[B, H, T, Dv]`` (object ``b`` uses its first
    ``lengths[b]`` entries), optional per-key ``bias`` ``[B, H, T]`` added to the scaled scores and ``scale``
    (default ``1 / sqrt(Dk)``): numpy arrays ``keys_t`` float32 [B, H, Dk, Tp] (keys transposed), ``values``
    [B, H, Tp, Dv], ``bias`` [B, H, Tp] or None, ``lengths`` int64 [B]; ``Tp`` = T rounded up to the kernel's
    key block (the kernel reads the padding but masks it); ``scale`` that of the kernel: 1 where a power-of-two
    scale (1/4 for 16-wide heads) is folded into ``keys_t``, which is exact."""
    b, h, t, dk = keys.shape
    block = _native.KEY_BLOCK
    tp = -(-t // block) * block
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(dk)
    keys_t = keys.new_zeros(b, h, dk, tp)
    if math.frexp(scale)[0] == 0.5:  # a power of two: exact in the keys, one multiply less per score
        keys_t[..., :t] = keys.transpose(-1, -2) * scale
        scale = 1.0
    else:
        keys_t[..., :t] = keys.transpose(-1, -2)
    padded_values = values.new_zeros(b, h, tp, values.shape[-1])
    padded_values[:, :, :t] = values
    padded_bias = None
    if bias is not None:
        padded_bias = bias.new_zeros(b, h, tp)
        padded_bias[..., :t] = bias
    return {
        "keys_t": keys_t.numpy(),
        "values": padded_values.numpy(),
        "bias": None if padded_bias is None else padded_bias.numpy(),
        "lengths": np.asarray(lengths, dtype=np.int64),
        "scale": scale,
        "width": h * values.shape[-1],
    }


def attend(q: torch.Tensor, head_stride: int, inputs: dict, segments: Sequence[tuple[int, int]]) -> torch.Tensor:
    """q: float32 [n, W] queries, rows in ``segments`` = ``[(object, count), ...]`` order (head ``h`` reads
    columns ``h * head_stride`` onwards; 0: one query shared by every head); ``inputs``: :func:`layout`. Returns
    float32 [n, H * Dv], heads merged (feature ``h * Dv + d``)."""
    out = torch.empty(q.shape[0], inputs["width"], dtype=torch.float32)
    _native.attend(q.contiguous().numpy(), head_stride, inputs["keys_t"], inputs["values"], inputs["bias"],
                   inputs["lengths"], np.asarray(segments, dtype=np.int64).reshape(-1, 2), inputs["scale"],
                   out.numpy(), kernel_threads())
    return out


def prefix_lengths(key_mask: torch.Tensor | None, batch: int, length: int) -> list[int] | None:
    """Keys per object of an attention mask ``bool [B, 1, 1, T]`` (None: all ``length``) when every row's real
    keys come first (the encoder's padding), else None."""
    if key_mask is None:
        return [length] * batch
    mask = key_mask.reshape(batch, length)
    counts = mask.sum(dim=1)
    if not torch.equal(mask, torch.arange(length, device=mask.device)[None, :] < counts[:, None]):
        return None
    return [int(c) for c in counts.tolist()]


def self_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   lengths: Sequence[int]) -> torch.Tensor:
    """Per-object self-attention: q [B, T, H * Dk] (contiguous), keys / values [B, H, T, D], object ``b``
    attending to its first ``lengths[b]`` keys (every query row, padding rows included, as SDPA with a key mask)
    -> [B, T, H * Dv]."""
    b, t = q.shape[:2]
    heads = keys.shape[1]
    out = attend(q.reshape(b * t, -1), q.shape[2] // heads, layout(keys, values, lengths), [(k, t) for k in range(b)])
    return out.view(b, t, -1)
