"""Fast path of FLIP's pixel predictor: the function of :meth:`MaskExtractor.embedding_logits` (the reference,
kept selectable) computed with fewer, larger operations. Results equal the reference up to float32 rounding in
``float32`` precision (tests: random configurations and the official fixtures, unchanged tolerances).

Per chunk of query points (embeddings ``[n, 2]``, runs of points per object ``segments``):

* query MLP on all points at once; its output is the ``[H, n, Dk]`` query of every head;
* attention: one :func:`~torch.nn.functional.scaled_dot_product_attention` call per object over all heads on the
  object's own keys and values (no padding), or one call for all objects of the chunk over a padded batch
  ``[S, H, L, D]`` with a key mask where the padding adds little work (``pad_limit``) or on an accelerator, where
  a call costs more than the padded arithmetic;
* the query MLP's last linear is folded into the keys, ``q_h . k = a . (W4_h^T k) + b4_h . k`` (``a``: the MLP's
  32-wide hidden layer, shared by the heads; the second term is a per-key bias), only when the head width ``Dk``
  exceeds the hidden width 32: otherwise the folded keys are as wide or wider than the heads and the fold adds
  work (the official configs have ``Dk`` = 16 (tiny) or 32, so the fold never pays for them);
* on the CPU in float32, the attention is instead one call of the fused native kernel for the whole chunk
  (:mod:`benchmark.flip.native_attention`: AVX2 + FMA, register-blocked q.K^T, softmax and P.V per object and
  head, ragged objects without padding, heads merged in its output) where it is built and the CPU supports it;
  ``native_attention.ENABLED = False`` (or ``FLIPBENCH_NATIVE_ATTENTION=0`` in the environment at import) forces
  the SDPA code above, e.g. for A/B timing;
* the post-process LayerNorm's gain and bias are folded into the feed-forward's first weight,
  ``W1 (g * n + b) + b1 = (W1 diag g) n + (W1 b + b1)``, and the read-out fold of the reference is kept.

Precision ``bf16``: the output projection and the feed-forward's first matrix multiply (a fifth of the work) take
bfloat16 inputs (float32 accumulation where the kernels do it: CPUs with AVX512-BF16, CUDA); the query MLP and the
attention stay float32, as do embeddings, LayerNorm statistics and the read-out. The attention cannot take
bfloat16: FLIP-Tiny's keys reach |k| ~ 500, and their bfloat16 rounding (relative 2^-9) moves attention scores by
whole units (a first trial with bfloat16 attention flipped 1.6 % of the full-image mask pixels and cost about
5 IoU points on the COCO mini set).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from benchmark.flip import native_attention
from benchmark.flip.attention import merge_heads, split_heads

#: precision name -> compute dtype of the fast path
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: hidden width of the coordinate MLPs (``coordinate_mlp``): the folded keys' width
QUERY_HIDDEN = 32


def fold_query(attention) -> bool:
    """Whether folding the query MLP's last linear into the keys reduces the work: head width > hidden width."""
    head_width = attention.query[4].out_features // attention.num_heads
    return head_width > QUERY_HIDDEN


def _memory_cache(memory, attention) -> dict:
    """Per-object tensors of ``memory`` in the fast path's layout, computed once per memory:
    ``keys`` / ``values`` lists of contiguous ``[H, T_b, D]``, ``key_bias`` (folded query: list of ``[H, 1, T_b]``
    scaled biases, else None), ``padded_keys`` / ``padded_values`` ``[B, H, T, D]`` and ``key_mask``
    ``bool [B, 1, 1, T]`` (None when no object is padded), ``scale``: the softmax scale to pass to SDPA (None: its
    default ``1 / sqrt(Dk)``)."""
    cache = memory.cache.get("fast")
    if cache is not None:
        return cache
    h = attention.num_heads
    keys, values = memory.keys, memory.values
    if fold_query(attention):
        last = attention.query[4]  # Linear(32, H * Dk)
        w = last.weight.view(h, -1, last.in_features)  # [H, Dk, 32]
        bias = last.bias.view(h, 1, -1)  # [H, 1, Dk]
        scale = 1.0 / math.sqrt(w.shape[1])  # the heads' softmax scale, not that of the 32-wide folded keys
        key_bias = (keys * bias[None]).sum(-1)[:, :, None, :] * scale  # [B, H, 1, T]; SDPA adds it after scaling
        keys = torch.einsum("bhtd,hdk->bhtk", keys, w)
    else:
        key_bias, scale = None, None
    t_max = keys.shape[2]
    lengths = memory.lengths
    key_mask = None
    if min(lengths) < t_max:
        key_mask = (torch.arange(t_max, device=keys.device)[None, :]
                    < torch.tensor(lengths, device=keys.device)[:, None])[:, None, None, :]
    cache = {
        "keys": [keys[b, :, :t].contiguous() for b, t in enumerate(lengths)],
        "values": [values[b, :, :t].contiguous() for b, t in enumerate(lengths)],
        "key_bias": None if key_bias is None else [key_bias[b, :, :, :t] for b, t in enumerate(lengths)],
        "padded_keys": keys,
        "padded_values": values,
        "padded_bias": key_bias,
        "key_mask": key_mask,
        "scale": scale,
    }
    memory.cache["fast"] = cache
    return cache


def _attend(q: torch.Tensor, cache: dict, segments: Sequence[tuple[int, int]], pad_limit: float) -> torch.Tensor:
    """q: [H, n, Dq] queries of the points in ``segments`` order -> [H, n, Dv] attention outputs."""
    live = [(k, b, c) for k, (b, c) in enumerate(segments) if c]
    starts = [0]
    for _, c in segments:
        starts.append(starts[-1] + c)
    if len(live) > 1:
        longest = max(c for _, _, c in live)
        t_max = cache["padded_keys"].shape[2]
        padded_work = len(live) * longest * t_max
        real_work = sum(c * cache["keys"][b].shape[1] for _, b, c in live)
        if q.device.type != "cpu" or padded_work <= pad_limit * real_work:
            return _attend_padded(q, cache, live, starts, longest)
    outputs = []
    for k, b, c in live:
        bias = cache["key_bias"][b][None] if cache["key_bias"] is not None else None
        outputs.append(F.scaled_dot_product_attention(
            q[None, :, starts[k]:starts[k] + c], cache["keys"][b][None], cache["values"][b][None], attn_mask=bias,
            scale=cache["scale"])[0])
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def _attend_padded(q: torch.Tensor, cache: dict, live, starts, longest: int) -> torch.Tensor:
    """One SDPA call over the objects ``live`` = ``[(segment, object, count), ...]``: queries padded to
    ``longest`` points per object, keys to the longest sequence (masked). Index tensors are built from host
    counts, so no step depends on tensor values (it runs on any device, ``meta`` included)."""
    h, _, dq = q.shape
    s = len(live)
    device = q.device
    objects = torch.tensor([b for _, b, _ in live], device=device)
    rows = torch.cat([torch.arange(starts[k], starts[k] + c, device=device) for k, _, c in live])
    slots = torch.cat([torch.arange(c, device=device) + i * longest for i, (_, _, c) in enumerate(live)])
    padded_q = q.new_zeros(h, s * longest, dq)
    padded_q[:, slots] = q[:, rows]
    mask = cache["key_mask"]
    bias = cache["padded_bias"]
    if bias is not None:
        bias = bias[objects]
        if mask is not None:
            bias = bias.masked_fill(~mask[objects], float("-inf"))
        attn_mask = bias
    else:
        attn_mask = mask[objects] if mask is not None else None
    out = F.scaled_dot_product_attention(padded_q.view(h, s, longest, dq).transpose(0, 1),
                                         cache["padded_keys"][objects], cache["padded_values"][objects],
                                         attn_mask=attn_mask, scale=cache["scale"])  # [S, H, L, Dv]
    return out.transpose(0, 1).reshape(h, s * longest, -1)[:, slots]  # [H, n, Dv] in segment order


def _native_inputs(memory, cache: dict) -> dict:
    """The native kernel's layout (:func:`native_attention.layout`) of the cached keys, values and key bias,
    computed once per memory."""
    inputs = memory.cache.get("native")
    if inputs is None:
        bias = cache["padded_bias"]
        inputs = native_attention.layout(cache["padded_keys"], cache["padded_values"], memory.lengths,
                                         None if bias is None else bias[:, :, 0], cache["scale"])
        memory.cache["native"] = inputs
    return inputs


def fast_embedding_logits(extractor, memory, embedding: torch.Tensor, segments: Sequence[tuple[int, int]],
                          precision: str = "fp32", pad_limit: float = 1.25) -> torch.Tensor:
    """Logits float32 [n] of points given by their Gaussian-relative embeddings ``embedding`` float32 [n, 2] in
    the runs ``segments`` = ``[(object, count), ...]`` (as :meth:`MaskExtractor.embedding_logits`)."""
    dtype = embedding.dtype if precision == "fp32" else PRECISIONS[precision]  # "fp32": the model's own dtype
    attention = extractor.attention
    h = attention.num_heads
    if embedding.shape[0] == 0:
        return embedding.new_zeros((0,))
    cache = _memory_cache(memory, attention)
    mlp = attention.query
    folded = fold_query(attention)
    if folded:
        query = F.silu(mlp[2](F.silu(mlp[0](embedding))))  # [n, 32], shared by every head
    else:
        query = mlp(embedding)  # [n, H * Dk]
    if native_attention.usable(query, cache["padded_keys"], cache["padded_values"]):
        attended = native_attention.attend(query, 0 if folded else query.shape[1] // h,
                                           _native_inputs(memory, cache), segments)
    else:
        q = query[None].expand(h, -1, -1) if folded else split_heads(query, h)  # [H, n, Dq]
        attended = merge_heads(_attend(q, cache, segments, pad_limit))
    out = attention.out[1]
    x = F.linear(attended.to(dtype), out.weight.to(dtype), out.bias.to(dtype)).to(embedding.dtype)
    post, w = extractor.postprocess, extractor.to_mask.weight[0]
    norm = post.norm
    weight1 = post.weight1 * norm.weight[None, :]
    bias1 = post.bias1 + post.weight1 @ norm.bias
    normalized = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    hidden = F.linear(normalized.to(dtype), weight1.to(dtype), bias1.to(dtype)).to(embedding.dtype)
    hidden = F.silu(hidden, inplace=True)
    readout = (post.weight2.t() @ w) * post.alpha
    bias = extractor.to_mask.bias + (post.bias2 @ w) * post.alpha
    return torch.addmv(torch.addmv(bias, x, w), hidden, readout)
