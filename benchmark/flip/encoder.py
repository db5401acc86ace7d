"""The FLIP encoder: foveal patch tokens + registers, self-attention layers, and the pixel predictor.

Parameter names equal the official ``nn/encoder_sparse.FlipEncoder`` state dict (a Lightning checkpoint's keys
without ``net.encoder.``), so official weights load strictly.

Usage (several objects of one image in one pass)::

    model = FlipEncoder(get_config("flip-tiny")).eval()
    memory = model.encode(batch)                      # TokenBatch -> per-object keys/values
    logits = model.decode(memory, coords, segments)   # any model-frame points, per object
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from benchmark.flip.attention import SelfAttentionLayer
from benchmark.flip.config import FlipConfig
from benchmark.flip.embeddings import PatchEmbedding, gaussian_relative_embedding
from benchmark.flip.mask_decoder import MaskExtractor, ObjectMemory
from benchmark.flip.tokens import TokenBatch


@dataclass
class Tokens:
    """Padded token sequences of B objects; per object the registers come first, then patch token ``i`` at row
    ``num_registers + target_index``.

    x: float32 [B, T, C]; embedding: float32 [B, T, 2] (Gaussian-relative, registers: learned);
    coordinates: float32 [B, T, 2] model frame (registers: learned, unused by the outputs);
    key_mask: bool [B, T] (True = real token); lengths: host list, tokens per object including registers.
    """

    x: torch.Tensor
    embedding: torch.Tensor
    coordinates: torch.Tensor
    key_mask: torch.Tensor
    lengths: list[int]

    def attention_mask(self) -> torch.Tensor | None:
        """bool [B, 1, 1, T] for scaled_dot_product_attention, or None when no sequence is padded."""
        if min(self.lengths) == self.x.shape[1]:
            return None
        return self.key_mask[:, None, None, :]


class FovealPatchSelection(nn.Module):
    """Embeds the sampled patches (one embedding per patch size) and adds the register tokens.

    ``register_coordinates`` exist for checkpoint compatibility only: no output depends on them.
    """

    def __init__(self, config: FlipConfig) -> None:
        super().__init__()
        c, r = config.channels, config.num_registers
        self.num_registers = r
        self.register_buffer("patch_sizes", torch.tensor(config.patch_sizes, dtype=torch.float32))
        self.patch_embeddings = nn.ModuleList(PatchEmbedding(p, c) for p in config.patch_sizes)
        self.registers = nn.Parameter(torch.randn(r, c))
        self.register_embeddings = nn.Parameter(torch.randn(r, 2) * 0.25 - 5)
        self.register_coordinates = nn.Parameter(torch.randn(r, 2) * 0.25 + 5)

    def forward(self, batch: TokenBatch) -> Tokens:
        if len(batch.patches) != len(self.patch_embeddings):
            raise ValueError(f"batch has {len(batch.patches)} patch sizes, model expects {len(self.patch_embeddings)}")
        device = batch.position.device
        r, b = self.num_registers, batch.num_objects
        lengths = [n + r for n in batch.tokens_per_object]
        t = max(lengths)
        channels = self.registers.shape[1]
        x = torch.zeros(b * t, channels, device=device, dtype=self.registers.dtype)
        embedding = torch.zeros(b * t, 2, device=device, dtype=self.registers.dtype)
        coordinates = torch.zeros(b * t, 2, device=device, dtype=self.registers.dtype)
        objects = torch.arange(b, device=device)
        for s, embed in enumerate(self.patch_embeddings):
            n = batch.patches[s].shape[0]
            if n == 0:
                continue
            owner = torch.repeat_interleave(
                objects, torch.tensor([c[s] for c in batch.counts], device=device), output_size=n
            )
            rows = owner * t + r + batch.target_indices[s]
            x[rows] = embed(batch.patches[s]).to(x.dtype)
            coordinates[rows] = batch.coords[s]
            embedding[rows] = gaussian_relative_embedding(batch.position[owner], batch.coords[s])
        x, embedding, coordinates = (v.view(b, t, -1) for v in (x, embedding, coordinates))
        x[:, :r] = self.registers
        embedding[:, :r] = self.register_embeddings
        coordinates[:, :r] = self.register_coordinates
        key_mask = torch.arange(t, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        return Tokens(x, embedding, coordinates, key_mask, lengths)


class FlipEncoder(nn.Module):
    """FLIP encoder and pixel predictor for one configuration (see :mod:`benchmark.flip.config`)."""

    def __init__(self, config: FlipConfig) -> None:
        super().__init__()
        self.config = config
        args = (config.channels, config.num_heads, config.kq_expansion, config.v_expansion)
        self.sparsify = FovealPatchSelection(config)
        self.mask_extractor = MaskExtractor(*args, config.mlp_expansion, config.alpha)
        self.layers = nn.ModuleList(
            SelfAttentionLayer(*args, config.mlp_expansion, config.alpha) for _ in range(config.layers)
        )

    def encode(self, batch: TokenBatch) -> ObjectMemory:
        """Run the transformer on every object's tokens and prepare the pixel predictor's keys and values."""
        tokens = self.sparsify(batch)
        mask = tokens.attention_mask()
        x = tokens.x
        for layer in self.layers:
            x = layer(x, tokens.embedding, mask)
        return self.mask_extractor.prepare(x, tokens.embedding, batch.position, tokens.lengths)

    def decode(self, memory: ObjectMemory, coords: torch.Tensor, segments: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Logits float32 [n] at model-frame points ``coords`` [n, 2]; ``segments``: ``(object, count)`` runs."""
        return self.mask_extractor.logits(memory, coords, segments)

    def forward(self, batch: TokenBatch, coords: torch.Tensor, segments: Sequence[tuple[int, int]]) -> torch.Tensor:
        return self.decode(self.encode(batch), coords, segments)
