"""SCLIP's correlative self-attention (Wang et al., "SCLIP: Rethinking Self-Attention for Dense Vision-Language
Inference", ECCV 2024; wangf3014/SCLIP) on **open_clip**'s modules.

SCLIP changes only the last residual block of CLIP's vision transformer: its attention weights are
``softmax(q q^T * s) + softmax(k k^T * s)`` (``s = head_dim ** -0.5``, per head) instead of ``softmax(q k^T * s)``;
the residual connections and the MLP stay. This is ``VisionTransformer.custom_attn(..., csa=True)`` and the last-block
loop of ``VisionTransformer.forward`` in ``clip/model.py`` of wangf3014/SCLIP (commit b56bd30).

Interface (open_clip 3.x, ``open_clip.create_model("ViT-B-16-quickgelu")`` for the OpenAI weights: OpenAI's CLIP uses
QuickGELU, ``"ViT-B-16"`` without a pretrained tag builds GELU):

* tokens are **batch-first** ``[N, 1 + h*w, C]`` float32, CLS first, then the ``h x w`` patch grid in row-major
  order (open_clip's ``visual.transformer`` is ``batch_first=True``; SCLIP's own code is sequence-first, converted
  here). ``x`` is the residual stream entering the last block (after ``ln_pre`` and blocks ``0 .. L-2``).
* :func:`sclip_last_block` returns the block's output ``[N, 1 + h*w, C]``, the same layout; SCLIP's dense features
  are then ``visual.ln_post(out) @ visual.proj`` (``[N, 1 + h*w, D]``, D = 512 for ViT-B/16), L2-normalised, CLS
  dropped (``clip_segmentor.py``: ``encode_image(img, return_all=True, csa=True)`` then ``[:, 1:]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def correlative_self_attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """SCLIP's attention ``out_proj(( softmax(q q^T s) + softmax(k k^T s) ) v)`` of ``attn``'s weights.

    ``attn``: the block's ``nn.MultiheadAttention`` (packed ``in_proj_weight`` [3C, C], ``in_proj_bias``, ``out_proj``);
    ``x``: ``[N, L, C]`` batch-first tokens **after** the block's ``ln_1``. Returns ``[N, L, C]``.
    """
    n, length, dim = x.shape
    heads = attn.num_heads
    head_dim = dim // heads
    scale = head_dim ** -0.5
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))  # [N, heads, L, hd]
    weights = (q @ q.transpose(-1, -2) * scale).softmax(-1) + (k @ k.transpose(-1, -2) * scale).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(n, length, dim)
    return attn.out_proj(out)


def sclip_last_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SCLIP's modified last block on an open_clip ``ResidualAttentionBlock``: ``[N, 1+h*w, C] -> [N, 1+h*w, C]``.

    ``x + ls_1(CSA(ln_1(x)))`` then ``+ ls_2(mlp(ln_2(.)))`` (``ls_*`` are identities in CLIP ViT-B/16).
    """
    if x.ndim != 3:
        raise ValueError(f"sclip_last_block: tokens must be [N, 1+h*w, C], got shape {tuple(x.shape)}")
    x = x + block.ls_1(correlative_self_attention(block.attn, block.ln_1(x)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
