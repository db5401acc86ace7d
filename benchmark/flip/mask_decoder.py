"""FLIP pixel predictor ("mask extractor"): a cross-attention from query points to an object's encoded tokens.

A query point is a model-frame coordinate; its only input is its Gaussian-relative embedding w.r.t. the object's
position, so any set of points (a full pixel grid, a window, the uncertain cells of a coarse level) can be asked
for independently. Keys and values depend only on the encoded tokens, so they are computed once per object
(:meth:`MaskExtractor.prepare`) and reused for every chunk of queries (:meth:`MaskExtractor.logits`).

Two exact shortcuts keep the per-point cost down (results equal the direct evaluation up to float32 rounding):

* the embedding of a point is clipped to [-5, 5]^2, so every point at least 5 sigmas away from the object along
  both axes has one of the four embeddings (+-5, +-5); their logits are computed once per object in
  :meth:`MaskExtractor.prepare` (``ObjectMemory.saturated``) and looked up instead of being decoded (more than
  half of the pixels in ``full`` mode);
* the read-out ``to_mask(x + alpha * (W2 h + b2))`` is linear after the feed-forward's hidden layer ``h``, so
  ``to_mask`` is folded into ``W2`` (one dot product per point instead of a ``hidden x C`` product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.flip.attention import FeedForward, merge_heads, output_projection, split_heads
from benchmark.flip.embeddings import EMBEDDING_CLIP, coordinate_mlp, gaussian_relative_embedding


@dataclass
class ObjectMemory:
    """Per-object keys and values for the pixel predictor.

    keys: float32 [B, H, T, Dk]; values: float32 [B, H, T, Dv] (T = longest token sequence; object ``b`` uses the
    first ``lengths[b]`` entries); position: float32 [B, 6] model-frame Gaussians; lengths: host list of B ints;
    saturated: float32 [B, 4] logits of the clipped embeddings ``(-5, -5), (-5, 5), (5, -5), (5, 5)`` (index
    ``2 * (z_x > 0) + (z_y > 0)``), or None (then every point is decoded).
    """

    keys: torch.Tensor
    values: torch.Tensor
    position: torch.Tensor
    lengths: list[int]
    saturated: torch.Tensor | None = None
    #: per compute dtype, the fast path's layout of keys and values (:mod:`benchmark.flip.fast_decoder`)
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_objects(self) -> int:
        return len(self.lengths)

    @property
    def device(self) -> torch.device:
        return self.keys.device


#: the four embeddings of points beyond the clipping bound along both axes, in ``ObjectMemory.saturated`` order
_SATURATED = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]) * EMBEDDING_CLIP


class MaskAttention(nn.Module):
    """Cross-attention of the pixel predictor (official ``SparseMaskAttention``; same parameter names).

    key = ``k_mlp([k(x), key(embedding)])``, value = ``v(x) + value(embedding)``, query = ``query(embedding of the
    point)``; no residual gate.
    """

    def __init__(self, channels: int, num_heads: int, kq_expansion: int, v_expansion: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        wide_v, wide_kq = channels * v_expansion, channels * kq_expansion
        self.key = coordinate_mlp(wide_v)
        self.query = coordinate_mlp(wide_kq)
        self.value = coordinate_mlp(wide_v)
        self.k = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, wide_v))
        self.v = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, wide_v))
        self.k_mlp = nn.Sequential(nn.Linear(2 * wide_v, wide_v), nn.SiLU(), nn.Linear(wide_v, wide_kq))
        self.out = output_projection(wide_v, channels)

    def keys_values(self, x: torch.Tensor, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, C] tokens, embedding: [B, T, 2] -> keys [B, H, T, Dk], values [B, H, T, Dv]."""
        keys = self.k_mlp(torch.cat((self.k(x), self.key(embedding)), dim=-1))
        values = self.v(x) + self.value(embedding)
        return split_heads(keys, self.num_heads), split_heads(values, self.num_heads)


#: implementations of the per-point computation: the fast path (default) and the reference it must equal
IMPLEMENTATIONS = ("fast", "reference")


class MaskExtractor(nn.Module):
    """Pre-process tokens, attend from query points, post-process and project to one logit per point.

    ``implementation``: ``"fast"`` (:mod:`benchmark.flip.fast_decoder`, default) or ``"reference"``
    (:meth:`embedding_logits`, float32 only); ``precision``: ``"fp32"`` (default) or ``"bf16"`` (fast path only).
    """

    def __init__(self, channels: int, num_heads: int, kq_expansion: int, v_expansion: int, mlp_expansion: int,
                 alpha: float) -> None:
        super().__init__()
        self.implementation = "fast"
        self.precision = "fp32"
        self.preprocess = FeedForward(channels, mlp_expansion, alpha)
        self.attention = MaskAttention(channels, num_heads, kq_expansion, v_expansion)
        self.postprocess = FeedForward(channels, mlp_expansion, alpha)
        self.to_mask = nn.Linear(channels, 1)

    def prepare(self, latent: torch.Tensor, embedding: torch.Tensor, position: torch.Tensor,
                lengths: Sequence[int]) -> ObjectMemory:
        """latent: [B, T, C] encoder output; embedding: [B, T, 2]; position: [B, 6]; lengths: tokens per object."""
        x = latent + self.preprocess(latent)
        keys, values = self.attention.keys_values(x, embedding)
        memory = ObjectMemory(keys, values, position, list(lengths))
        b = memory.num_objects
        corners = _SATURATED.to(device=keys.device, dtype=keys.dtype).repeat(b, 1)
        memory.saturated = self.point_logits(memory, corners, [(k, 4) for k in range(b)]).view(b, 4)
        return memory

    def point_logits(self, memory: ObjectMemory, embedding: torch.Tensor,
                     segments: Sequence[tuple[int, int]]) -> torch.Tensor:
        """:meth:`embedding_logits` by the chosen :attr:`implementation` and :attr:`precision`."""
        if self.implementation == "reference":
            if self.precision != "fp32":
                raise ValueError(f"the reference pixel predictor is float32 only, not {self.precision!r}")
            return self.embedding_logits(memory, embedding, segments)
        if self.implementation != "fast":
            raise ValueError(f"unknown pixel predictor implementation {self.implementation!r}; "
                             f"expected one of {IMPLEMENTATIONS}")
        from benchmark.flip.fast_decoder import fast_embedding_logits

        return fast_embedding_logits(self, memory, embedding, segments, self.precision)

    def logits(self, memory: ObjectMemory, coords: torch.Tensor, segments: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Mask logits of query points.

        coords: float32 [n, 2] model-frame points; segments: host list of ``(object index, count)`` in the order of
        ``coords`` (consecutive runs, counts summing to n). Returns float32 [n] logits (before sigmoid).
        """
        counts = [c for _, c in segments]
        if sum(counts) != coords.shape[0]:
            raise ValueError(f"segments cover {sum(counts)} points but {coords.shape[0]} coordinates were given")
        if coords.shape[0] == 0:
            return coords.new_zeros((0,))
        if len(segments) == 1:  # broadcast the one position instead of repeating it per point
            point_position = memory.position[segments[0][0]][None]
        else:
            objects = torch.tensor([b for b, _ in segments], device=coords.device)
            repeats = torch.tensor(counts, device=coords.device)
            point_position = torch.repeat_interleave(memory.position[objects], repeats, dim=0,
                                                     output_size=coords.shape[0])
        embedding = gaussian_relative_embedding(point_position, coords)
        saturated = (embedding.abs() == EMBEDDING_CLIP).all(dim=1) if memory.saturated is not None else None
        if saturated is None or not bool(saturated.any()):
            return self.point_logits(memory, embedding, segments)
        out = torch.empty(coords.shape[0], dtype=embedding.dtype, device=embedding.device)
        decoded = torch.nonzero(~saturated).view(-1)
        kept = [int(c) for c in torch.stack([m.sum() for m in (~saturated).split(counts)]).tolist()]
        out[decoded] = self.point_logits(memory, embedding[decoded],
                                             [(b, k) for (b, _), k in zip(segments, kept)])
        looked_up = torch.nonzero(saturated).view(-1)
        owner = torch.repeat_interleave(torch.tensor([b for b, _ in segments], device=coords.device),
                                        torch.tensor(counts, device=coords.device), output_size=coords.shape[0])
        corner = (embedding[looked_up, 0] > 0).long() * 2 + (embedding[looked_up, 1] > 0).long()
        out[looked_up] = memory.saturated[owner[looked_up], corner]
        return out

    def embedding_logits(self, memory: ObjectMemory, embedding: torch.Tensor,
                         segments: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Reference: logits float32 [n] of points given by their Gaussian-relative embeddings ``embedding``
        [n, 2]; ``segments`` as in :meth:`logits`."""
        attention = self.attention
        q = split_heads(attention.query(embedding), attention.num_heads)
        outputs, start = [], 0
        for b, count in segments:
            if count:
                t = memory.lengths[b]
                # 4-D inputs select PyTorch's fused (flash) kernels; 3-D ones fall back to the slow math path
                outputs.append(F.scaled_dot_product_attention(
                    q[None, :, start:start + count], memory.keys[b:b + 1, :, :t], memory.values[b:b + 1, :, :t]
                )[0])
            start += count
        if not outputs:
            return embedding.new_zeros((0,))
        x = attention.out(merge_heads(outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)))
        # to_mask(x + alpha * (W2 h + b2)) = w.x + h.(alpha W2^T w) + (b + alpha w.b2), h = silu(W1 LN(x) + b1)
        post, w = self.postprocess, self.to_mask.weight[0]
        hidden = F.linear(post.norm(x), post.weight1, post.bias1)
        hidden = F.silu(hidden, inplace=not torch.is_grad_enabled())
        readout = (post.weight2.t() @ w) * post.alpha
        bias = self.to_mask.bias + (post.bias2 @ w) * post.alpha
        return torch.addmv(torch.addmv(bias, x, w), hidden, readout)
