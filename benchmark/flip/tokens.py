"""Packing the sampled patches of several objects of one image into one model input.

Every object ``b`` contributes, per patch size ``p``, ``counts[b][s]`` patches (``s`` = index of ``p`` in the
config's patch sizes). Per size, the patches of all objects are concatenated in object order. ``target_indices``
give each patch's place in its object's token sequence without the registers (sizes concatenated smallest first,
as the official sampler returns them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch


class PatchSampleLike(Protocol):
    """What :func:`benchmark.flip.sampler.sample_patches` returns (only the fields the model needs)."""

    patches: list[np.ndarray]  # uint8 [n_p, p, p, 3] per patch size
    coords: list[np.ndarray]  # float32 [n_p, 2], model frame
    target_indices: list[np.ndarray]  # int32 [n_p]


@dataclass
class TokenBatch:
    """Model input for ``B`` objects of one image.

    patches: per patch size, float32 ``[N_p, 3, p, p]`` RGB in 0..1 (all objects, object order);
    coords: per patch size, float32 ``[N_p, 2]`` patch centres in the model frame;
    target_indices: per patch size, int64 ``[N_p]`` token index within the object (registers excluded);
    counts: host ``[B][S]`` patches per object and size; position: float32 ``[B, 6]`` model-frame Gaussians.
    """

    patches: list[torch.Tensor]
    coords: list[torch.Tensor]
    target_indices: list[torch.Tensor]
    counts: list[list[int]]
    position: torch.Tensor

    @property
    def num_objects(self) -> int:
        return len(self.counts)

    @property
    def tokens_per_object(self) -> list[int]:
        """Number of patch tokens of each object (registers excluded)."""
        return [sum(c) for c in self.counts]

    @classmethod
    def from_samples(
        cls, samples: Sequence[PatchSampleLike], position: torch.Tensor, device: torch.device | str | None = None
    ) -> "TokenBatch":
        """Pack ``samples`` (one per object, same patch sizes) with model-frame ``position`` ``[B, 6]``.

        Patches go to the device as uint8 and are converted there (``/ 255`` in float32).
        """
        if len(samples) != position.shape[0]:
            raise ValueError(f"{len(samples)} patch samples but {position.shape[0]} positions")
        if not samples:
            raise ValueError("TokenBatch needs at least one object")
        device = torch.device(device) if device is not None else position.device
        num_sizes = len(samples[0].patches)
        counts = [[int(s.patches[i].shape[0]) for i in range(num_sizes)] for s in samples]
        patches, coords, targets = [], [], []
        for i in range(num_sizes):
            pix = np.concatenate([s.patches[i] for s in samples], axis=0)
            patches.append(torch.from_numpy(pix).to(device).permute(0, 3, 1, 2).float().div_(255))
            coords.append(torch.from_numpy(np.concatenate([s.coords[i] for s in samples]).astype(np.float32))
                          .to(device))
            targets.append(torch.from_numpy(np.concatenate([s.target_indices[i] for s in samples])
                                            .astype(np.int64)).to(device))
        return cls(patches, coords, targets, counts, position.to(device=device, dtype=torch.float32))
