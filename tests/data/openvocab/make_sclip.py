"""Make ``sclip_official_reference.npz`` from the official SCLIP code (wangf3014/SCLIP; not run by CI).

The official ``clip/model.py`` ``VisionTransformer`` (OpenAI CLIP's, with SCLIP's ``custom_attn``) is built at a
tiny configuration (32 px input, patch 8 -> a 4x4 grid, width 32, 2 blocks of 4 heads, output 16) with seeded random
weights, and run on CPU through its own ``forward(img, return_all=True, csa=True)``: blocks ``0 .. L-2`` as CLIP,
the last block with correlative self-attention, ``ln_post`` and ``proj`` on every token. Saved: the weights
(``w/<official state_dict key>``, the same keys as open_clip's ``VisionTransformer``), the images, the residual stream
entering the last block and leaving it (batch-first ``[N, 1+h*w, C]``, captured by hooks) and the final output.
Only this data is committed; the official code is not (see tests/data/README.md).

Usage (OFFICIAL = an extract of wangf3014/SCLIP; only ``clip/model.py`` is imported, without the package's
``__init__``, so the tokenizer and mmseg are not needed)::

    PYTHONPATH=. python tests/data/openvocab/make_sclip.py OFFICIAL tests/data/openvocab
"""

from __future__ import annotations

import sys
from pathlib import Path

import baselines.torchvision_compat  # noqa: F401  (the official model.py imports torchvision)
import numpy as np
import torch

from _official import SEED, load_official, randomise  # noqa: E402  (beside this script)

IMG, PATCH, WIDTH, LAYERS, HEADS, OUT_DIM, BATCH = 32, 8, 32, 2, 4, 16, 2


def main(official: Path, out_dir: Path) -> None:
    model_py = load_official("sclip_official_clip", official / "clip", "model")
    torch.manual_seed(SEED)
    vit = model_py.VisionTransformer(IMG, PATCH, WIDTH, LAYERS, HEADS, OUT_DIM).eval()
    randomise(vit)
    images = torch.randn(BATCH, 3, IMG, IMG)
    captured = {}
    # the last block's input (its ln_1's input, sequence-first) and output (ln_post's input, batch-first)
    vit.transformer.resblocks[-1].ln_1.register_forward_pre_hook(lambda m, a: captured.setdefault("block_in", a[0]))
    vit.ln_post.register_forward_pre_hook(lambda m, a: captured.setdefault("block_out", a[0]))
    with torch.no_grad():
        final = vit(images, return_all=True, csa=True)
    arrays = {f"w/{k}": v.numpy() for k, v in vit.state_dict().items()}
    arrays.update(
        images=images.numpy(),
        block_in=captured["block_in"].permute(1, 0, 2).numpy(),  # [L, N, C] -> batch-first
        block_out=captured["block_out"].numpy(),  # forward permutes LND -> NLD before ln_post
        final=final.numpy(),
        config=np.array([IMG, PATCH, WIDTH, LAYERS, HEADS, OUT_DIM]),
        torch_version=np.array(torch.__version__),
    )
    out = out_dir / "sclip_official_reference.npz"
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes); final {tuple(final.shape)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
