"""Input embeddings of FLIP: per-size foveal patch embeddings and the Gaussian-relative 2-D coordinate embedding.

Frames: token and query coordinates and the object position are in the **model frame** (1 unit = 128 pixels,
origin at the image centre, x right, y down). A position is ``float32 [..., 6]``:
``(mu_x, mu_y, sigma_minor, sigma_major, rot_a, rot_b)`` in that frame.
"""

from __future__ import annotations

import torch
from torch import nn

#: bound of the Gaussian-relative embedding (each component is clipped to [-EMBEDDING_CLIP, EMBEDDING_CLIP])
EMBEDDING_CLIP = 5.0


def gaussian_relative_embedding(position: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Whitened offset of ``coords`` from the object's Gaussian, as the official ``sparse_embedding`` computes it.

    position: float32 [N, 6] (or [1, 6], broadcast) model-frame position per point;
    coords: float32 [N, 2] model-frame (x, y).
    Returns float32 [N, 2]: ``(z_x, z_y)``, the offset rotated by the normalised ``(rot_a, rot_b)`` and divided by
    ``sigma_minor`` / ``sigma_major`` (each clipped to >= 1e-8), clipped to [-5, 5].
    """
    mu_x, mu_y, std_x, std_y, rot_a, rot_b = position.unbind(-1)
    scale = torch.sqrt(rot_a**2 + rot_b**2).clamp(min=1e-6)
    rot_a, rot_b = rot_a / scale, rot_b / scale
    std_x, std_y = std_x.clamp(min=1e-8), std_y.clamp(min=1e-8)
    dx = coords[:, 0] - mu_x
    dy = coords[:, 1] - mu_y
    z_x = (rot_a * dx - rot_b * dy) / std_x
    z_y = (rot_b * dx + rot_a * dy) / std_y
    return torch.stack((z_x, z_y), dim=1).clamp(-EMBEDDING_CLIP, EMBEDDING_CLIP)


def coordinate_mlp(out_features: int) -> nn.Sequential:
    """The small MLP ``2 -> 32 -> 32 -> out_features`` (SiLU) that maps a 2-D embedding to a token-wide vector.

    Parameter names ``0.*``, ``2.*``, ``4.*`` match the official ``query`` / ``key`` / ``value`` branches.
    """
    return nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, out_features))


class _SubPatchGrid(nn.Module):
    """``[n, c, 4*s, 4*s] -> [n, 4, 4, c*s*s]``: split a patch into a 4 x 4 grid of ``s x s`` cells, one vector per
    cell ordered (channel, cell row, cell column) (the official ``b c (h h1) (w w1) -> b h w (c h1 w1)``)."""

    def __init__(self, cell: int) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, s = x.shape[0], x.shape[1], self.cell
        x = x.reshape(n, c, 4, s, 4, s).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, 4, 4, c * s * s)


class PatchEmbedding(nn.Module):
    """Embed ``float32 [n, 3, p, p]`` patches (RGB in 0..1) into ``[n, C]`` tokens.

    p <= 4: flatten (channel, row, column) then ``Linear(3p^2, 4C)``, SiLU, ``Linear(4C, C)``.
    p in (8, 16): a shared ``Linear(3p^2/16, C/4)`` on each cell of a 4 x 4 grid, flatten (cell row, cell column,
    feature), SiLU, ``Linear(4C, 4C)``, SiLU, ``Linear(4C, C)``. ``layers`` indices match the official names.
    """

    def __init__(self, patch_size: int, channels: int) -> None:
        super().__init__()
        hidden = 4 * channels
        in_features = 3 * patch_size**2
        if patch_size <= 4:
            self.layers = nn.Sequential(
                nn.Flatten(1), nn.Linear(in_features, hidden), nn.SiLU(), nn.Linear(hidden, channels)
            )
        elif patch_size in (8, 16):
            self.layers = nn.Sequential(
                _SubPatchGrid(patch_size // 4),
                nn.Linear(in_features // 16, hidden // 16),
                nn.Flatten(1),
                nn.SiLU(),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Linear(hidden, channels),
            )
        else:
            raise ValueError(f"no FLIP patch embedding for patch size {patch_size}")

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.layers(patches)

