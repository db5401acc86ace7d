"""FSA, feedback self-adaptive attention (Chi et al., "Plug-in Feedback Self-adaptive Attention in CLIP for
Training-free Open-Vocabulary Segmentation", ICCV 2025; chi-chi-zx/FSA) on ProxyCLIP's proxy attention.

FSA feeds the class predictions of ProxyCLIP's output back into its attention (``VisionTransformer.custom_attn``,
``FSA``, ``kl_divergence``, ``SparseAtten``, ``attend_v_ens`` and ``compute_logits`` in ``open_clip/transformer.py``
of chi-chi-zx/FSA, commit dbd2da5). With ``A`` the proxy attention weights, ``v`` the upsampled CLIP values
(:mod:`baselines.openvocab.proxy_attention`) and ``logits(o) = normalize(ln_post(o) @ proj) @ T^T`` (``T`` the
L2-normalised text embeddings, one row per class name):

1. ``P = 20 * logits(out_proj(A v))`` (ProxyCLIP's patch logits) and ``U = 35 * logits(out_proj(mean(v)))`` (the
   logits of uniform attention, the same for every patch);
2. ``p_i = softmax_k(P_i - U)``; ``KL_ij = max(0, sum_k p_ik (log(p_ik + 1e-10) - log(p_jk + 1e-10)))``;
   ``s_ij = 1 / (1 + KL_ij)``;
3. sparse: per row keep the largest ``s_ij`` whose cumulative ``softmax`` (in decreasing order) is ``<= 0.45``
   (always the first), the others ``-inf``; ``A' = softmax_j(s_ij * exp(lambda * s_ij))``;
4. ensemble ``E = (A' A + A A' + A') / 3``; output ``out_proj(E v)``.

The KL matrix is computed as ``sum_k p_ik log p_ik - (p log p^T)_ij``, which is the official sum rearranged: memory
``[N, M, M]`` instead of the official ``[N, M, M, K]`` (for a 42x42 grid and 80 classes, 1 GB per temporary).
The attention weights are the same for all heads, so FSA's matrices are built once per image, not per head.

Interface: as :mod:`baselines.openvocab.proxy_attention` (batch-first open_clip modules, ``x [N, 1+h*w, C]``
entering the last block, VFM features ``[N, C', H, W]``), plus ``text_features [K, D]`` float32 (the classifier,
rows L2-normalised; SCLIP/ProxyCLIP average the 80 ImageNet templates per name), ``ln_post = visual.ln_post``,
``proj = visual.proj`` (``[C, D]``). :func:`fsa_proxy_attention` returns ``[N, H*W, C]`` like
:func:`~baselines.openvocab.proxy_attention.proxy_attention` (apply ``ln_post`` and ``proj`` next).

``lambda`` (the authors' ``hyper_param.txt``; the same for every dataset): 3.0 with SAM, DINO or DINOv2 as VFM and
CLIP ViT-B/16 or ViT-L/14; 2.3 with ViT-H/14; 4.5 with MAE as VFM for all CLIP models (:data:`LAMBDA_BY_VFM`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.openvocab.proxy_attention import BETA, GAMMA, attend, proxy_values, vfm_affinity

#: FSA ``hyper_param.txt``: lambda for SAM / DINO / DINOv2 VFMs with CLIP ViT-B/16 (the default set-up)
LAMBDA = 3.0
#: (VFM, CLIP model) -> lambda, from ``hyper_param.txt`` (not per dataset)
LAMBDA_BY_VFM = {
    **{(vfm, clip): 3.0 for vfm in ("sam", "dino", "dinov2") for clip in ("ViT-B-16", "ViT-L-14")},
    **{(vfm, "ViT-H-14"): 2.3 for vfm in ("sam", "dino", "dinov2")},
    **{("mae", clip): 4.5 for clip in ("ViT-B-16", "ViT-L-14", "ViT-H-14")},
}
#: ``compute_logits`` scales of the proxy output and of the uniform-attention output (``custom_attn``)
PATCH_LOGIT_SCALE = 20.0
UNIFORM_LOGIT_SCALE = 35.0
#: ``SparseAtten`` cumulative-probability cut
TOP_P = 0.45


def class_logits(tokens: torch.Tensor, text_features: torch.Tensor, ln_post: nn.Module, proj: torch.Tensor,
                 scale: float) -> torch.Tensor:
    """``scale * normalize(ln_post(tokens) @ proj) @ text_features^T``: ``[N, M, C] -> [N, M, K]``."""
    emb = F.normalize(ln_post(tokens) @ proj, dim=-1)
    return emb @ text_features.T * scale


def kl_similarity(probs: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + max(0, KL(p_i || p_j)))`` for class distributions ``probs [N, M, K]`` -> ``[N, M, M]``."""
    logp = torch.log(probs + 1e-10)
    self_term = (probs * logp).sum(-1, keepdim=True)  # [N, M, 1]
    kl = (self_term - probs @ logp.transpose(1, 2)).clamp(min=0.0)
    return 1.0 / (kl + 1.0)


def sparse_top_p(sim: torch.Tensor, p: float = TOP_P) -> torch.Tensor:
    """FSA's ``SparseAtten``: per row, entries outside the top-p set (by ``softmax`` of the row) become ``-inf``."""
    ordered, order = torch.sort(sim, descending=True, dim=-1)
    keep_sorted = ordered.softmax(-1).cumsum(-1) <= p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return sim.masked_fill(~keep, float("-inf"))


def fsa_feedback(weights: torch.Tensor, values: torch.Tensor, out_proj: nn.Module, text_features: torch.Tensor,
                 ln_post: nn.Module, proj: torch.Tensor, lamda: float = LAMBDA) -> torch.Tensor:
    """FSA on given proxy attention ``weights [N, M, M]`` and ``values [N, heads, M, hd]`` -> ``[N, M, C]``."""
    proxy_out = attend(weights, values, out_proj)  # [N, M, C]
    patch = class_logits(proxy_out, text_features, ln_post, proj, PATCH_LOGIT_SCALE)  # [N, M, K]
    n, heads, m, head_dim = values.shape
    uniform_out = out_proj(values.mean(dim=2).reshape(n, 1, heads * head_dim))  # [N, 1, C]
    uniform = class_logits(uniform_out, text_features, ln_post, proj, UNIFORM_LOGIT_SCALE)  # [N, 1, K]
    sim = sparse_top_p(kl_similarity((patch - uniform).softmax(-1)))
    pruned = torch.isinf(sim)
    adaptive = (sim * torch.exp(lamda * sim)).masked_fill(pruned, float("-inf")).softmax(-1)  # [N, M, M]
    ensemble = (adaptive @ weights + weights @ adaptive + adaptive) / 3.0
    return attend(ensemble, values, out_proj)


def fsa_proxy_attention(block: nn.Module, x: torch.Tensor, vfm_feats: torch.Tensor, clip_hw: tuple[int, int],
                        text_features: torch.Tensor, ln_post: nn.Module, proj: torch.Tensor,
                        lamda: float = LAMBDA, beta: float = BETA, gamma: float = GAMMA) -> torch.Tensor:
    """ProxyCLIP + FSA in place of CLIP's last block: ``x [N, 1+h*w, C]``, ``vfm_feats [N, C', H, W]`` ->
    ``[N, H*W, C]`` (apply ``ln_post`` and ``proj`` next)."""
    weights = vfm_affinity(vfm_feats, beta, gamma)
    values = proxy_values(block, x, clip_hw, vfm_feats.shape[-2:])
    return fsa_feedback(weights, values, block.attn.out_proj, text_features, ln_post, proj, lamda)
