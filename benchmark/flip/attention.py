"""Transformer blocks of the FLIP encoder: gated feed-forward block and the self-attention layer whose queries, keys
and values each add a learned function of the tokens' 2-D Gaussian-relative embedding.

Tokens of several objects are processed together as a padded batch ``[B, T, C]`` with a key mask ``bool [B, T]``
(True = real token); attention never crosses objects (the official model's block-diagonal mask) and padded keys
are ignored. Attention is :func:`torch.nn.functional.scaled_dot_product_attention` with the default scale
``1 / sqrt(head width)``, or the native CPU kernel computing the same (:mod:`benchmark.flip.native_attention`,
float32 on the CPU, masks whose real keys come first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.flip import native_attention
from benchmark.flip.embeddings import coordinate_mlp


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[..., L, H*D] -> [..., H, L, D]`` (feature index = head * D + d, as the official ``(h d)`` layout)."""
    *lead, length, width = x.shape
    return x.reshape(*lead, length, num_heads, width // num_heads).transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, L, D] -> [..., L, H*D]``."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


class FeedForward(nn.Module):
    """``alpha * (silu(LN(x) W1^T + b1) W2^T + b2)``: the official ``FeedForwardBlock`` (returns the residual
    branch only; callers add it). Weights ``weight1 [hidden, C]``, ``weight2 [C, hidden]``."""

    def __init__(self, channels: int, expansion: int, alpha: float) -> None:
        super().__init__()
        hidden = channels * expansion
        self.weight1 = nn.Parameter(torch.empty(hidden, channels))
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.weight2 = nn.Parameter(torch.empty(channels, hidden))
        self.bias2 = nn.Parameter(torch.zeros(channels))
        nn.init.xavier_uniform_(self.weight1)
        nn.init.xavier_uniform_(self.weight2)
        self.norm = nn.LayerNorm(channels)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(F.linear(self.norm(x), self.weight1, self.bias1))
        return F.linear(hidden, self.weight2, self.bias2) * self.alpha


def _norm_linear(channels: int, out_features: int) -> nn.Sequential:
    """``LayerNorm`` then ``Linear``: every token projection has its own norm (names ``0.*`` / ``1.*``)."""
    return nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, out_features))


def output_projection(in_features: int, out_features: int) -> nn.Sequential:
    """Linear layer after the attention, named ``1.*`` like the official model, whose slot ``0`` is the head
    merging reshape (:func:`merge_heads`, applied by the caller)."""
    return nn.Sequential(nn.Identity(), nn.Linear(in_features, out_features))


class SelfAttention(nn.Module):
    """Multi-head self-attention with Gaussian-relative position MLPs added to q, k and v; output scaled by
    ``alpha``. Parameter names as the official ``SparseSelfAttention``."""

    def __init__(self, channels: int, num_heads: int, kq_expansion: int, v_expansion: int, alpha: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = _norm_linear(channels, channels * kq_expansion)
        self.k = _norm_linear(channels, channels * kq_expansion)
        self.v = _norm_linear(channels, channels * v_expansion)
        self.query = coordinate_mlp(channels * kq_expansion)
        self.key = coordinate_mlp(channels * kq_expansion)
        self.value = coordinate_mlp(channels * v_expansion)
        self.out = output_projection(channels * v_expansion, channels)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, C]; embedding: [B, T, 2]; attn_mask: bool [B, 1, 1, T] or None. Returns [B, T, C]."""
        h = self.num_heads
        queries = self.q(x) + self.query(embedding)
        k = split_heads(self.k(x) + self.key(embedding), h)
        v = split_heads(self.v(x) + self.value(embedding), h)
        lengths = None
        if native_attention.usable(queries, k, v):
            lengths = native_attention.prefix_lengths(attn_mask, x.shape[0], x.shape[1])
        if lengths is not None:
            merged = native_attention.self_attention(queries, k, v, lengths)
        else:
            merged = merge_heads(F.scaled_dot_product_attention(split_heads(queries, h), k, v, attn_mask=attn_mask))
        return self.out(merged) * self.alpha


class SelfAttentionLayer(nn.Module):
    """``x += attention(x)``; ``x += alpha * feed_forward(x)`` (official ``SparseSelfAttentionLayer``)."""

    def __init__(self, channels: int, num_heads: int, kq_expansion: int, v_expansion: int, mlp_expansion: int,
                 alpha: float) -> None:
        super().__init__()
        self.attention = SelfAttention(channels, num_heads, kq_expansion, v_expansion, alpha)
        self.mlp = FeedForward(channels, mlp_expansion, alpha)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(x, embedding, attn_mask)
        return x + self.mlp(x) * self.alpha
