"""FLIP pixel predictor ("mask extractor"): a cross-attention from query points to an object's encoded tokens.

A query point is a model-frame coordinate; its only input is its Gaussian-relative embedding w.r.t. the object's
position, so any set of points (a full pixel grid, a window, the uncertain cells of a coarse level) can be asked
for independently. Keys and values depend only on the encoded tokens, so they are computed once per object
(:meth:`MaskExtractor.prepare`) and reused for every chunk of queries (:meth:`MaskExtractor.logits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.flip.attention import FeedForward, merge_heads, output_projection, split_heads
from benchmark.flip.embeddings import coordinate_mlp, gaussian_relative_embedding


@dataclass
class ObjectMemory:
    """Per-object keys and values for the pixel predictor.

    keys: float32 [B, H, T, Dk]; values: float32 [B, H, T, Dv] (T = longest token sequence; object ``b`` uses the
    first ``lengths[b]`` entries); position: float32 [B, 6] model-frame Gaussians; lengths: host list of B ints.
    """

    keys: torch.Tensor
    values: torch.Tensor
    position: torch.Tensor
    lengths: list[int]

    @property
    def num_objects(self) -> int:
        return len(self.lengths)


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


class MaskExtractor(nn.Module):
    """Pre-process tokens, attend from query points, post-process and project to one logit per point."""

    def __init__(self, channels: int, num_heads: int, kq_expansion: int, v_expansion: int, mlp_expansion: int,
                 alpha: float) -> None:
        super().__init__()
        self.preprocess = FeedForward(channels, mlp_expansion, alpha)
        self.attention = MaskAttention(channels, num_heads, kq_expansion, v_expansion)
        self.postprocess = FeedForward(channels, mlp_expansion, alpha)
        self.to_mask = nn.Linear(channels, 1)

    def prepare(self, latent: torch.Tensor, embedding: torch.Tensor, position: torch.Tensor,
                lengths: Sequence[int]) -> ObjectMemory:
        """latent: [B, T, C] encoder output; embedding: [B, T, 2]; position: [B, 6]; lengths: tokens per object."""
        x = latent + self.preprocess(latent)
        keys, values = self.attention.keys_values(x, embedding)
        return ObjectMemory(keys, values, position, list(lengths))

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
        attention = self.attention
        q = split_heads(attention.query(gaussian_relative_embedding(point_position, coords)), attention.num_heads)
        outputs, start = [], 0
        for b, count in segments:
            if count:
                t = memory.lengths[b]
                # 4-D inputs select PyTorch's fused (flash) kernels; 3-D ones fall back to the slow math path
                outputs.append(F.scaled_dot_product_attention(
                    q[None, :, start:start + count], memory.keys[b:b + 1, :, :t], memory.values[b:b + 1, :, :t]
                )[0])
            start += count
        x = attention.out(merge_heads(outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)))
        return self.to_mask(x + self.postprocess(x)).squeeze(-1)
