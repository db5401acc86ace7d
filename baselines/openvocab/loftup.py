"""LoftUp, the coordinate-based cross-attention feature upsampler (Huang et al., "LoftUp: Learning a
Coordinate-Based Feature Upsampler for Vision Foundation Models", ICCV 2025; andrehuang/loftup, MIT licence), in the
``loftup_clip`` configuration.

The module is a port of ``upsamplers/upsamplers.py`` (``LoftUp``, ``UpsamplerwithChannelNorm``) and
``upsamplers/layers.py`` (``ChannelNorm``, ``LayerNorm``, ``MinMaxScaler``, ``ImplicitFeaturizer``,
``CrossAttentionLayer``, ``FeedForward``, ``CATransformer``) of andrehuang/loftup (commit 6620d9b), with
``hubconf.loftup_clip``'s configuration (``dim = 512``, ``lr_pe_type = "sine"``, ``lr_size = 14``, 20 image
frequencies, 2 cross-attention layers of 4 heads). Every submodule keeps the official name, so
:meth:`LoftUp.state_dict` has exactly the keys of the official ``UpsamplerwithChannelNorm`` (``channelnorm.norm.*``,
``upsampler.*``), i.e. of the Hugging Face checkpoint ``haiwen/loftup-clip`` ``pytorch_model.bin``: load it as tensors
with :func:`baselines.safe_load.load_tensors` and ``load_state_dict(strict=True)`` (never ``torch.hub.load``).

Interface: ``LoftUp(...)(image, feats) -> [N, C, H, W]`` float32, where

* ``image`` ``[N, 3, H, W]``: the guidance image at the output resolution, RGB in [0, 1] normalised with
  **ImageNet's** mean/std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`; loftup's ``upsamplers.layers.norm``, used
  for every featurizer including CLIP);
* ``feats`` ``[N, C, h, w]``: the low-resolution features; the ``loftup_clip`` checkpoint was trained on CLIP
  ViT-B/16 patch embeddings after ``ln_post`` and ``proj`` (``C = 512``; MaskCLIP-style, 224 px -> ``14 x 14``).

Two deliberate differences from the official forward, both exact where the official code is defined the same way:

* ``MinMaxScaler`` scales each image by its own per-channel min/max; the official one pools min/max over the whole
  batch (identical for a batch of one, which is how the official example and evaluation run it), so here an output
  never depends on what else is in the batch;
* the output is computed in bands of rows (at most ``tile_pixels`` output pixels each, default 65,536), each with a
  2-row halo for the two 3x3 convolutions: everything else is per pixel (the cross-attention queries are the
  high-resolution pixels, keys/values the ``h*w`` low-resolution tokens), so the bands are exactly the full
  computation while the intermediate activations (``(C + 20)`` channels, and ``heads x pixels x h*w`` attention
  weights) stay bounded by the band size. The output itself is ``N x C x H x W`` floats (512 x 640 x 480 x 4 B =
  630 MB); :meth:`LoftUp.bands` yields it band by band for callers that reduce it (e.g. to class scores) on the fly.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from baselines.layers import LayerNorm2d

#: ImageNet normalisation of the guidance image (loftup ``upsamplers/layers.py``: ``norm``)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: output pixels per band (bounds the activations: ~ 532 x 65,536 floats = 140 MB each, attention ~ 200 MB)
TILE_PIXELS = 65_536
#: rows of context each band needs for ``first_conv``'s two 3x3 convolutions
HALO = 2


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of ``[N, C, H, W]`` (official ``ChannelNorm``: key ``norm``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MinMaxScaler(nn.Module):
    """Per image and channel, map ``[min, max]`` to ``[-0.5, 0.5]`` (scale clamped at 1e-4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo = x.amin(dim=(2, 3), keepdim=True)
        scale = x.amax(dim=(2, 3), keepdim=True) - lo
        return (x - lo) / scale.clamp_min(0.0001) - 0.5


class ImplicitFeaturizer(nn.Module):
    """Fourier features of the pixel coordinates (and colours): official ``ImplicitFeaturizer``, key ``biases``.

    Coordinates are ``linspace(-1, 1)`` over the **full** ``height x width``; :meth:`forward` may compute only the
    rows ``row0 .. row0 + rows`` of it (``image`` then holds just those rows).
    """

    def __init__(self, color_feats: bool, n_freqs: int):
        super().__init__()
        self.color_feats = color_feats
        self.n_freqs = n_freqs
        self.dim_multiplier = 5 if color_feats else 2
        self.biases = nn.Parameter(torch.randn(2, self.dim_multiplier, n_freqs))

    def forward(self, image: torch.Tensor, height: int | None = None, row0: int = 0) -> torch.Tensor:
        b, _, rows, w = image.shape
        height = rows if height is None else height
        grid_h = torch.linspace(-1, 1, height, device=image.device)[row0:row0 + rows]
        grid_w = torch.linspace(-1, 1, w, device=image.device)
        feats = torch.stack(torch.meshgrid(grid_h, grid_w, indexing="ij")).unsqueeze(0).expand(b, 2, rows, w)
        if self.color_feats:
            feats = torch.cat([feats, image], dim=1)
        freqs = torch.exp(torch.linspace(-2, 10, self.n_freqs, device=image.device)).reshape(1, self.n_freqs, 1, 1, 1)
        feats = feats.unsqueeze(1) * freqs  # [b, n_freqs, dim_multiplier, rows, w]
        shape = (1, self.n_freqs, self.dim_multiplier, 1, 1)  # the official reshape (not a transpose) of the biases
        sin_feats = (feats + self.biases[0].reshape(shape)).reshape(b, -1, rows, w)
        cos_feats = (feats + self.biases[1].reshape(shape)).reshape(b, -1, rows, w)
        out = [torch.sin(sin_feats), torch.cos(cos_feats)]
        if self.color_feats:
            out.append(image)
        return torch.cat(out, dim=1)


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention of pixel queries on low-resolution tokens (keys: norm_q, norm_kv, attention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(embed_dim=dim, num_heads=heads)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(query).transpose(0, 1)  # [L, N, C] (the official sequence-first attention)
        kv = self.norm_kv(key_value).transpose(0, 1)
        return self.attention(q, kv, kv, need_weights=False)[0].transpose(0, 1)


class FeedForward(nn.Module):
    """LayerNorm, Linear, GELU, Linear (official ``FeedForward``: ``net.0`` .. ``net.5``, dropouts at 0)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CATransformer(nn.Module):
    """``depth`` x (cross-attention + residual, feed-forward + residual), then LayerNorm (official keys)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([CrossAttentionLayer(dim, heads), FeedForward(dim, mlp_dim)]) for _ in range(depth))

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        for cross_attn, ff in self.layers:
            query = cross_attn(query, key_value) + query
            query = ff(query) + query
        return self.norm(query)


class LoftUpCore(nn.Module):
    """The official ``LoftUp`` module (``lr_pe_type="sine"``, ``color_feats=True``), key ``upsampler`` below."""

    def __init__(self, dim: int, n_freqs: int = 20, num_heads: int = 4, num_layers: int = 2):
        super().__init__()
        start_dim = 5 * n_freqs * 2 + 3
        self.lr_pe = ImplicitFeaturizer(color_feats=False, n_freqs=5)
        self.lr_pe_dim = 2 * 5 * 2
        width = dim + self.lr_pe_dim
        self.fourier_feat = nn.Sequential(MinMaxScaler(), ImplicitFeaturizer(color_feats=True, n_freqs=n_freqs))
        self.first_conv = nn.Sequential(
            ChannelNorm(start_dim),
            nn.Conv2d(start_dim, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.final_conv = nn.Sequential(nn.Conv2d(width, dim, kernel_size=1), LayerNorm2d(dim))
        self.ca_transformer = CATransformer(width, depth=num_layers, heads=num_heads, mlp_dim=dim)


class LoftUp(nn.Module):
    """LoftUp with its input ChannelNorm (official ``UpsamplerwithChannelNorm``): ``(image, feats) -> [N, C, H, W]``.

    ``dim``: feature channels C (512 for ``loftup_clip``); ``lr_size`` (14 for ``loftup_clip``) only documents the
    training grid: the sine positional code of the low-resolution tokens works at any ``h x w``.
    """

    def __init__(self, dim: int = 512, lr_size: int = 14, n_freqs: int = 20, num_heads: int = 4,
                 num_layers: int = 2, tile_pixels: int = TILE_PIXELS):
        super().__init__()
        self.lr_size = lr_size
        self.tile_pixels = tile_pixels
        self.channelnorm = ChannelNorm(dim)
        self.upsampler = LoftUpCore(dim, n_freqs=n_freqs, num_heads=num_heads, num_layers=num_layers)

    def _check(self, image: torch.Tensor, feats: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"LoftUp: image must be [N, 3, H, W], got shape {tuple(image.shape)}")
        dim = self.channelnorm.norm.normalized_shape[0]
        if feats.ndim != 4 or feats.shape[1] != dim or feats.shape[0] != image.shape[0]:
            raise ValueError(f"LoftUp: feats must be [{image.shape[0]}, {dim}, h, w], got shape {tuple(feats.shape)}")

    def bands(self, image: torch.Tensor, feats: torch.Tensor,
              tile_pixels: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(row0, row1, out[:, :, row0:row1])`` bands of the output, top to bottom."""
        self._check(image, feats)
        up = self.upsampler
        n, _, height, width = image.shape
        lr = self.channelnorm(feats)
        lr = torch.cat([lr, up.lr_pe(lr)], dim=1).flatten(2).transpose(1, 2)  # [N, h*w, C + 20]
        scaled = up.fourier_feat[0](image)
        rows = max(1, (tile_pixels or self.tile_pixels) // max(1, width))
        for row0 in range(0, height, rows):
            row1 = min(height, row0 + rows)
            lo, hi = max(0, row0 - HALO), min(height, row1 + HALO)
            x = up.first_conv(up.fourier_feat[1](scaled[:, :, lo:hi], height=height, row0=lo))
            x = x[:, :, row0 - lo:row0 - lo + (row1 - row0)]
            c = x.shape[1]
            x = up.ca_transformer(x.flatten(2).transpose(1, 2), lr)  # [N, rows*W, C + 20]
            yield row0, row1, up.final_conv(x.transpose(1, 2).reshape(n, c, row1 - row0, width))

    def forward(self, image: torch.Tensor, feats: torch.Tensor, tile_pixels: int | None = None) -> torch.Tensor:
        """``image [N, 3, H, W]`` (ImageNet-normalised), ``feats [N, C, h, w]`` -> upsampled ``[N, C, H, W]``."""
        return torch.cat([band for _, _, band in self.bands(image, feats, tile_pixels)], dim=2)
