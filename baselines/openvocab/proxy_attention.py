"""ProxyCLIP's proxy attention (Lan et al., "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary
Segmentation", ECCV 2024; mc-lan/ProxyCLIP) on **open_clip**'s modules.

ProxyCLIP replaces CLIP's last residual block by one attention whose weights come from a vision foundation model
(VFM, DINO ViT-B/8 by default) and whose values are CLIP's: with ``f`` the VFM patch features (``[C', H*W]``,
L2-normalised per patch), ``S = f^T f`` (cosine similarities, ``[H*W, H*W]``),
``A = softmax( where(S' < 0, -inf, S') )`` with ``S' = (S - beta * mean(S)) * gamma``, and the output
``out_proj(A v)`` where ``v`` is the last block's value projection of ``ln_1(x)`` for the patch tokens, upsampled
bilinearly from CLIP's ``h x w`` grid to the VFM's ``H x W`` grid per head. No residual, no MLP, no CLS token: the
output has the VFM's resolution. This is ``VisionTransformer.custom_attn`` and the last-block branch of
``VisionTransformer.forward`` in ``open_clip/transformer.py`` of mc-lan/ProxyCLIP (commit e7b767f).

Interface (open_clip 3.x modules, batch-first; ProxyCLIP's own code is sequence-first, converted here):

* ``block``: CLIP's last ``open_clip.transformer.ResidualAttentionBlock`` (``visual.transformer.resblocks[-1]``);
* ``x``: ``[N, 1 + h*w, C]`` float32, the residual stream **entering** that block (CLS first, ``h x w`` patches
  row-major); ``clip_hw = (h, w)``;
* ``vfm_feats``: ``[N, C', H, W]`` float32 VFM patch features. For the default DINO ViT-B/8 ProxyCLIP takes the
  **output tokens of the last block after the final norm** (``get_intermediate_layers(img)[0][:, 1:]`` of
  facebookresearch/dino, i.e. timm ``vit_base_patch8_224.dino`` ``forward_features(img)[:, 1:]``: CLS dropped,
  no registers), reshaped row-major to ``[N, 768, H, W]``; its input is the same crop renormalised from CLIP's
  mean/std to ImageNet's (``0.485, 0.456, 0.406`` / ``0.229, 0.224, 0.225``); a 336 px crop gives ``H = W = 42``
  (CLIP ViT-B/16: ``h = w = 21``). The last block's q/k/v of DINO are hooked in the official code but unused;
* :func:`proxy_attention` returns ``[N, H*W, C]``; ProxyCLIP's dense features are ``visual.ln_post(out) @
  visual.proj`` (``[N, H*W, D]``), L2-normalised.

Hyperparameters: ``beta = 1.2``, ``gamma = 3.0`` (``ProxyCLIPSegmentation.__init__`` defaults; no config of the
repository overrides them). ``mean(S)`` is taken per image here; the official code takes it over the whole batch,
which is the same for its batch of one (it always runs one crop at a time). Like the official code, a row whose
every similarity falls below the threshold is all ``-inf`` and gives NaN (only if ``beta * mean(S) > 1``).
The attention weights are the same for all heads, so they are kept once per image (``[N, M, M]``), not per head.
Grids need not be square here; the official code assumes square crops (its ``token_size`` is ``(W/p, H/p)``, i.e.
transposed for a non-square window, and FSA's ``compute_logits`` reshapes to ``sqrt(L) x sqrt(L)``), which is all
its sliding windows produce (336 x 336 after the resize of the short side to 336), so square inputs are where the
two are compared.

Positional embeddings at other grids (ProxyCLIP's 336 px crops: CLIP ViT-B/16 21x21 instead of 14x14, DINO ViT-B/8
42x42 instead of 28x28): :func:`interpolate_pos_embed` is the resampling of the official code, the same function in
facebookresearch/dino ``vision_transformer.py``, ProxyCLIP's and FSA's ``open_clip/transformer.py`` and SCLIP's
``clip/model.py`` (``interpolate_pos_encoding``: bicubic, ``align_corners=False``, no antialiasing, scale factor
``(g + 0.1) / sqrt(N)``). open_clip does not resample at all, and timm's ``resample_abs_pos_embed`` resamples with
``antialias=True`` to a target size, a different kernel (PyTorch's antialiased bicubic has ``a = -0.5``, not -0.75).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ``ProxyCLIPSegmentation`` defaults (mc-lan/ProxyCLIP ``proxyclip_segmentor.py``; no config overrides them)
BETA = 1.2
GAMMA = 3.0


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """The official ``interpolate_pos_encoding`` of a class-first positional embedding to a ``rows x cols`` grid.

    ``pos_embed``: ``[1 + N, C]`` (open_clip ``visual.positional_embedding``) or ``[1, 1 + N, C]`` (timm / DINO
    ``pos_embed``), ``N`` a square grid; returns the same layout with ``1 + rows*cols`` tokens (row-major).
    """
    flat = pos_embed.ndim == 2
    pe = pos_embed.unsqueeze(0) if flat else pos_embed
    n, dim = pe.shape[1] - 1, pe.shape[2]
    side = int(round(n ** 0.5))
    rows, cols = grid_hw
    if side * side != n:
        raise ValueError(f"interpolate_pos_embed: {n} patch positions are not a square grid")
    if rows * cols == n and rows == cols:
        return pos_embed
    grid = pe[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic")
    if tuple(grid.shape[-2:]) != (rows, cols):
        raise ValueError(f"interpolate_pos_embed: resampling gave {tuple(grid.shape[-2:])}, not {(rows, cols)}")
    out = torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)
    return out[0] if flat else out


def vfm_affinity(vfm_feats: torch.Tensor, beta: float = BETA, gamma: float = GAMMA) -> torch.Tensor:
    """Proxy attention weights ``[N, M, M]`` (``M = H*W``, rows sum to 1) from VFM features ``[N, C', H, W]``."""
    if vfm_feats.ndim != 4:
        raise ValueError(f"vfm_affinity: VFM features must be [N, C', H, W], got shape {tuple(vfm_feats.shape)}")
    f = F.normalize(vfm_feats.flatten(2), dim=1)  # [N, C', M]
    sim = f.transpose(1, 2) @ f  # [N, M, M]
    sim = (sim - sim.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    return sim.masked_fill(sim < 0.0, float("-inf")).softmax(dim=-1)


def proxy_values(block: nn.Module, x: torch.Tensor, clip_hw: tuple[int, int],
                 vfm_hw: tuple[int, int]) -> torch.Tensor:
    """CLIP's last-block values of the patch tokens, upsampled to the VFM grid: ``[N, heads, H*W, head_dim]``.

    ``x``: ``[N, 1 + h*w, C]`` entering ``block``; bilinear, ``align_corners=False``, per head, as ProxyCLIP.
    """
    n, length, dim = x.shape
    h, w = clip_hw
    if length != 1 + h * w:
        raise ValueError(f"proxy_values: {length} tokens do not make CLS + a {h}x{w} grid")
    attn = block.attn
    heads, head_dim = attn.num_heads, dim // attn.num_heads
    v = F.linear(block.ln_1(x)[:, 1:], attn.in_proj_weight[2 * dim:], attn.in_proj_bias[2 * dim:])  # [N, h*w, C]
    v = v.reshape(n, h, w, heads, head_dim).permute(0, 3, 4, 1, 2).reshape(n * heads, head_dim, h, w)
    v = F.interpolate(v, size=tuple(vfm_hw), mode="bilinear", align_corners=False)
    return v.reshape(n, heads, head_dim, -1).transpose(-1, -2)


def attend(weights: torch.Tensor, values: torch.Tensor, out_proj: nn.Module) -> torch.Tensor:
    """``out_proj`` of per-image weights ``[N, M, M']`` applied to every head of ``values`` ``[N, heads, M', hd]``.

    Returns ``[N, M, heads*hd]``.
    """
    n, heads, _, head_dim = values.shape
    out = weights.unsqueeze(1) @ values  # [N, heads, M, hd]
    return out_proj(out.transpose(1, 2).reshape(n, -1, heads * head_dim))


def proxy_attention(block: nn.Module, x: torch.Tensor, vfm_feats: torch.Tensor, clip_hw: tuple[int, int],
                    beta: float = BETA, gamma: float = GAMMA) -> torch.Tensor:
    """ProxyCLIP's replacement of CLIP's last block: ``x [N, 1+h*w, C]``, ``vfm_feats [N, C', H, W]`` ->
    ``[N, H*W, C]`` (VFM grid, row-major, no CLS; apply ``ln_post`` and ``proj`` next)."""
    weights = vfm_affinity(vfm_feats, beta, gamma)
    values = proxy_values(block, x, clip_hw, vfm_feats.shape[-2:])
    return attend(weights, values, block.attn.out_proj)
