"""Make ``pos_embed_official_reference.npz``: the official positional-embedding resampling (not run by CI).

facebookresearch/dino ``vision_transformer.py`` (``VisionTransformer.interpolate_pos_encoding``, what ProxyCLIP's
DINO ViT-B/8 runs at 336 px) and mc-lan/ProxyCLIP ``open_clip/transformer.py`` (the same function on CLIP's
``positional_embedding``) are called on random embeddings of a 4x4 grid for target grids 6x6, 6x5, 3x7 and 4x4
(images of those many patches; the official ``x`` argument only supplies the token count). Only this data is
committed.

Usage (DINO = an extract of facebookresearch/dino: its ``vision_transformer.py`` imports its top-level ``utils.py``;
PROXYCLIP = an extract of mc-lan/ProxyCLIP)::

    PYTHONPATH=.:DINO python tests/data/openvocab/make_pos_embed.py PROXYCLIP tests/data/openvocab
"""

from __future__ import annotations

import sys
from pathlib import Path

import baselines.torchvision_compat  # noqa: F401  (the official modules import torchvision)
import numpy as np
import torch

from _official import SEED, load_official  # noqa: E402  (beside this script)

PATCH, GRID, DIM = 8, 4, 12
TARGETS = ((6, 6), (6, 5), (3, 7), (4, 4))


def main(proxyclip: Path, out_dir: Path) -> None:
    import vision_transformer as dino  # official, from DINO on PYTHONPATH

    proxy = load_official("proxyclip_official_open_clip", proxyclip / "open_clip", "transformer")
    torch.manual_seed(SEED)
    dino_vit = dino.VisionTransformer(img_size=[GRID * PATCH], patch_size=PATCH, embed_dim=DIM, depth=1, num_heads=2)
    clip_vit = proxy.VisionTransformer(GRID * PATCH, PATCH, DIM, 1, 2, mlp_ratio=4.0, output_dim=8)
    with torch.no_grad():
        dino_vit.pos_embed.normal_()
        clip_vit.positional_embedding.normal_()
    arrays = {"dino_pos_embed": dino_vit.pos_embed.detach().numpy(),
              "clip_pos_embed": clip_vit.positional_embedding.detach().numpy(),
              "targets": np.array(TARGETS), "torch_version": np.array(torch.__version__)}
    with torch.no_grad():
        for rows, cols in TARGETS:
            x = torch.zeros(1, 1 + rows * cols, DIM)
            arrays[f"dino_{rows}x{cols}"] = dino_vit.interpolate_pos_encoding(x, rows * PATCH, cols * PATCH).numpy()
            arrays[f"clip_{rows}x{cols}"] = clip_vit.interpolate_pos_encoding(x, rows * PATCH, cols * PATCH).numpy()
    out = out_dir / "pos_embed_official_reference.npz"
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
