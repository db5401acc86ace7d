"""EfficientSAM network (Xiong et al., CVPR 2024), written for flipbench so the official checkpoints load.

There is no PyPI package of EfficientSAM (PyPI ``efficientsam`` is EfficientViT-SAM, a different model). This
module re-implements the architecture of github.com/yformer/EfficientSAM (``efficient_sam/``) with the same
module tree, so the official ``efficient_sam_vitt.pt`` / ``efficient_sam_vits.pt`` (a dict whose ``"model"``
entry is the state dict) load with ``strict=True``. Attention uses ``torch.nn.functional.scaled_dot_product_
attention`` (same math as the explicit softmax of the original, scale ``1/sqrt(head_dim)``).

Architecture: plain ViT encoder (patch 16, 12 blocks, no windows, absolute position embedding learned at 224 px
and resized bicubically to the 64x64 token grid) with a 2-conv neck to 256 channels; SAM-style prompt encoder
for points only (a box is two points with labels 2 = top-left and 3 = bottom-right; label -1 marks padding,
prompts are padded to 6 points); SAM-style two-way-transformer mask decoder with 3 (+1) mask tokens, producing
256x256 logits and predicted IoUs.

Coordinates: points are pixel indices in the 1024x1024 input frame; the prompt encoder adds 0.5 (pixel centre)
and divides by 1024, as SAM does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from baselines.layers import LayerNorm2d

IMG_SIZE = 1024
PATCH_SIZE = 16
PRETRAIN_IMG_SIZE = 224
PROMPT_DIM = 256
MAX_POINTS = 6
NUM_MULTIMASK = 3

#: registry name -> (encoder embedding dim, encoder heads)
VARIANTS = {"efficientsam-t": (192, 3), "efficientsam-s": (384, 6)}


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoder(nn.Module):
    """ViT encoder: ``float [B, 3, 1024, 1024]`` (normalised) -> ``float [B, 256, 64, 64]``."""

    def __init__(self, embed_dim: int, num_heads: int, depth: int = 12, img_size: int = IMG_SIZE) -> None:
        super().__init__()
        self.img_size = img_size
        self.grid = img_size // PATCH_SIZE
        self.patch_embed = PatchEmbed(embed_dim)
        pretrain_grid = PRETRAIN_IMG_SIZE // PATCH_SIZE
        self.pos_embed = nn.Parameter(torch.zeros(1, pretrain_grid * pretrain_grid + 1, embed_dim))  # + cls token
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, PROMPT_DIM, kernel_size=1, bias=False),
            LayerNorm2d(PROMPT_DIM),
            nn.Conv2d(PROMPT_DIM, PROMPT_DIM, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(PROMPT_DIM),
        )

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The learned 14x14 embedding (cls token dropped) resized to ``[1, h, w, C]``."""
        pos = self.pos_embed[:, 1:]
        size = math.isqrt(pos.shape[1])
        if (size, size) == (h, w):
            return pos.reshape(1, h, w, -1)
        grid = pos.reshape(1, size, size, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            size = self.img_size
            raise ValueError(f"EfficientSAM encoder expects {size}x{size} input, got {tuple(x.shape)}")
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # [B, h, w, C]
        b, h, w, c = x.shape
        x = (x + self.position_embedding(h, w)).reshape(b, h * w, c)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.reshape(b, h, w, c).permute(0, 3, 1, 2))


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of coordinates normalised to [0, 1] (SAM's prompt position encoding)."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * ((2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def dense(self, h: int, w: int) -> torch.Tensor:
        """``[C, h, w]`` encoding of the cell centres of an ``h x w`` grid."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [h, w, 2] as (x, y)
        return self.encode(grid).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points ``[Q, N, 2]`` (pixel indices, 1024 frame) + labels ``[Q, N]`` -> ``[Q, N, 256]``.

    Labels: 1 foreground point, 2 box top-left, 3 box bottom-right, -1 padding (the original adds no
    label embedding for 0).
    """

    def __init__(self, embed_dim: int = PROMPT_DIM, grid: int = IMG_SIZE // PATCH_SIZE, input_size: int = IMG_SIZE):
        super().__init__()
        self.grid = grid
        self.input_size = input_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer.dense(self.grid, self.grid)[None]

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = self.pe_layer.encode((points + 0.5) / self.input_size)
        for label, table in (
            (-1, self.invalid_points),
            (1, self.point_embeddings),
            (2, self.bbox_top_left_embeddings),
            (3, self.bbox_bottom_right_embeddings),
        ):
            emb = emb + table.weight[None] * (labels == label)[..., None]
        return emb


class MLPBlock(nn.Module):
    """``num_layers`` Linear+activation layers of width ``hidden`` then a Linear to ``out``."""

    def __init__(self, dim: int, hidden: int, out: int, num_layers: int) -> None:
        super().__init__()
        widths = [dim] + [hidden] * num_layers
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(widths, widths[1:]))
        self.fc = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class CrossAttention(nn.Module):
    """Attention with separate q/k/v projections to ``dim // downsample`` channels (SAM's decoder attention)."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = CrossAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = CrossAttention(dim, num_heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, dim, num_layers=1)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = CrossAttention(dim, num_heads, downsample=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        # unlike SAM, EfficientSAM keeps the residual in the first layer and adds the PE before it elsewhere
        if not self.skip_first_layer_pe:
            queries = queries + query_pe
        queries = self.norm1(queries + self.self_attn(queries, queries, queries))
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int = PROMPT_DIM, depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, skip_first_layer_pe=i == 0) for i in range(depth)
        )
        self.final_attn_token_to_image = CrossAttention(dim, num_heads, downsample=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class MaskDecoder(nn.Module):
    """Image embedding ``[1, C, 64, 64]`` + sparse prompts ``[Q, N, C]`` -> logits ``[Q, 4, 256, 256]``, IoU ``[Q, 4]``.

    Output 0 is the single-mask token, outputs 1..3 the multimask tokens.
    """

    def __init__(self, dim: int = PROMPT_DIM, upscale_dims: tuple[int, int] = (64, 32)) -> None:
        super().__init__()
        self.num_mask_tokens = NUM_MULTIMASK + 1
        self.transformer = TwoWayTransformer(dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        layers, prev = [], dim
        for i, width in enumerate(upscale_dims):
            norm = nn.GroupNorm(1, width) if i < len(upscale_dims) - 1 else nn.Identity()
            layers.append(nn.Sequential(nn.ConvTranspose2d(prev, width, kernel_size=2, stride=2), norm, nn.GELU()))
            prev = width
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(dim, dim, prev, num_layers=2) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLPBlock(dim, 256, self.num_mask_tokens, num_layers=2)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor):
        q = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(q, -1, -1), sparse], dim=1)
        image = image.expand(q, -1, -1, -1)
        b, c, h, w = image.shape
        hs, src = self.transformer(image, image_pe.expand(q, -1, -1, -1), tokens)
        up = src.transpose(1, 2).reshape(b, c, h, w)
        for layer in self.final_output_upscaling_layers:
            up = layer(up)
        hyper = torch.stack(
            [mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # [Q, 4, C']
        b, c, h, w = up.shape
        masks = (hyper @ up.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 0])


class EfficientSam(nn.Module):
    """The whole model; module names match the official checkpoints."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(embed_dim, num_heads)
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images01: torch.Tensor) -> torch.Tensor:
        """``float [B, 3, H, W]`` in [0, 1] -> bilinear stretch to 1024x1024 (no aspect keeping) -> ImageNet norm."""
        size = self.image_encoder.img_size
        if images01.shape[-2:] != (size, size):
            images01 = F.interpolate(images01, (size, size), mode="bilinear", align_corners=False)
        return (images01 - self.pixel_mean) / self.pixel_std

    def model_points(self, points: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
        """Pixel-index points ``[..., 2]`` (x, y) of an ``input_hw`` image -> the 1024 frame, per axis."""
        h, w = input_hw
        size = self.image_encoder.img_size
        return torch.stack([points[..., 0] * (size / w), points[..., 1] * (size / h)], dim=-1)

    def decode(self, embedding: torch.Tensor, points: torch.Tensor, labels: torch.Tensor):
        """Embedding ``[1, C, 64, 64]``, points ``[Q, N, 2]`` (1024 frame), labels ``[Q, N]`` (N <= 6).

        Returns the 3 multimask logits ``[Q, 3, 256, 256]`` and their predicted IoUs ``[Q, 3]``.
        """
        q, n, _ = points.shape
        if n > MAX_POINTS:
            raise ValueError(f"EfficientSAM takes at most {MAX_POINTS} points per prompt, got {n}")
        points = F.pad(points, (0, 0, 0, MAX_POINTS - n), value=-1.0)
        labels = F.pad(labels, (0, MAX_POINTS - n), value=-1)
        sparse = self.prompt_encoder(points, labels)
        masks, iou = self.mask_decoder(embedding, self.prompt_encoder.dense_pe(), sparse)
        return masks[:, 1:], iou[:, 1:]


def build_efficient_sam(variant: str) -> EfficientSam:
    """Randomly initialised EfficientSAM of ``variant`` (``"efficientsam-t"`` or ``"efficientsam-s"``), eval mode."""
    embed_dim, num_heads = VARIANTS[variant]
    return EfficientSam(embed_dim, num_heads).eval()
