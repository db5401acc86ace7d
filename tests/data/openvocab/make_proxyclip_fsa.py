"""Make ``proxyclip_official_reference.npz`` and ``fsa_official_reference.npz`` from the official ProxyCLIP
(mc-lan/ProxyCLIP) and FSA (chi-chi-zx/FSA) code (not run by CI).

Each repository ships its own modified copy of open_clip; only its ``open_clip/transformer.py`` is imported (with the
``utils.py`` and ``pos_embed.py`` it imports relatively; the package ``__init__`` is not run). Its ``VisionTransformer``
is built at a tiny configuration (32 px input, patch 8 -> a 4x4 CLIP grid, width 32, 2 blocks of 4 heads, output 16)
with seeded random weights (the same for both repositories) and run on CPU through its own ``forward``:

* ProxyCLIP: ``forward(img, ex_feats, beta=1.2, gamma=3.0)`` (the ``ProxyCLIPSegmentation`` defaults);
* FSA: ``forward(img, text_feature, ex_feats, beta=1.2, gamma=3.0, lamda=3.0, is_FSA=True)`` (the
  ``FSAProxySegmentation`` defaults; lambda 3.0 is ``hyper_param.txt``'s value for DINO with ViT-B/16),

with random VFM features ``[1, 24, 8, 8]`` (an 8x8 VFM grid: the CLIP values are upsampled 2x) and, for FSA, 5 random
L2-normalised text embeddings. Each image is run as a batch of one, as both official pipelines do (their similarity
mean is taken over the batch). Saved: the weights (``w/<key>``, open_clip's ``VisionTransformer`` keys), the inputs,
the residual stream entering the last block (hook on its ``ln_1``, batch-first ``[N, 17, 32]``), the output of
``custom_attn`` (batch-first ``[N, 64, 32]``) and the final output (``[N, 64, 16]``). Only this data is committed.

Usage (PROXYCLIP and FSA = extracts of the two repositories)::

    PYTHONPATH=.:/tmp/ov_pkgs python tests/data/openvocab/make_proxyclip_fsa.py PROXYCLIP FSA tests/data/openvocab
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import baselines.torchvision_compat  # noqa: F401  (the official utils.py imports torchvision)
import numpy as np
import torch

from _official import SEED, load_official, randomise  # noqa: E402  (beside this script)

IMG, PATCH, WIDTH, LAYERS, HEADS, OUT_DIM = 32, 8, 32, 2, 4, 16
VFM_DIM, VFM_GRID, CLASSES, BATCH = 24, 8, 5, 2
BETA, GAMMA, LAMDA = 1.2, 3.0, 3.0


def build(transformer_py: types.ModuleType, state: dict | None) -> torch.nn.Module:
    vit = transformer_py.VisionTransformer(IMG, PATCH, WIDTH, LAYERS, HEADS, mlp_ratio=4.0, output_dim=OUT_DIM).eval()
    if state is None:
        randomise(vit)
    else:
        vit.load_state_dict(state, strict=True)
    return vit


def run(vit: torch.nn.Module, call) -> dict[str, np.ndarray]:
    """Run ``call(vit, i)`` for each image; capture the last block's input and ``custom_attn``'s output."""
    captured: dict[str, torch.Tensor] = {}
    vit.transformer.resblocks[-1].ln_1.register_forward_pre_hook(lambda m, a: captured.setdefault("block_in", a[0]))
    official_attn = vit.custom_attn

    def custom_attn(*args, **kwargs):
        out = official_attn(*args, **kwargs)
        captured["attn_out"] = out
        return out

    vit.custom_attn = custom_attn
    rows: dict[str, list[np.ndarray]] = {"block_in": [], "attn_out": [], "final": []}
    with torch.no_grad():
        for i in range(BATCH):
            captured.clear()
            final = call(vit, i)
            rows["block_in"].append(captured["block_in"].permute(1, 0, 2).numpy())  # sequence-first -> batch-first
            rows["attn_out"].append(captured["attn_out"].permute(1, 0, 2).numpy())
            rows["final"].append(final.numpy())
    return {k: np.concatenate(v) for k, v in rows.items()}


def main(proxyclip: Path, fsa: Path, out_dir: Path) -> None:
    proxy_py = load_official("proxyclip_official_open_clip", proxyclip / "open_clip", "transformer")
    fsa_py = load_official("fsa_official_open_clip", fsa / "open_clip", "transformer")
    torch.manual_seed(SEED)
    proxy_vit = build(proxy_py, None)
    images = torch.randn(BATCH, 3, IMG, IMG)
    vfm = torch.randn(BATCH, VFM_DIM, VFM_GRID, VFM_GRID) + 0.5  # a shared component: mean similarity > 0
    text = torch.nn.functional.normalize(torch.randn(CLASSES, OUT_DIM), dim=-1)
    state = proxy_vit.state_dict()
    common = dict(images=images.numpy(), vfm_feats=vfm.numpy(), torch_version=np.array(torch.__version__),
                  config=np.array([IMG, PATCH, WIDTH, LAYERS, HEADS, OUT_DIM]), beta=np.array(BETA),
                  gamma=np.array(GAMMA), **{f"w/{k}": v.numpy() for k, v in state.items()})

    proxy = run(proxy_vit, lambda vit, i: vit(images[i:i + 1], vfm[i:i + 1], beta=BETA, gamma=GAMMA))
    out = out_dir / "proxyclip_official_reference.npz"
    np.savez_compressed(out, **common, **proxy)
    print(f"wrote {out} ({out.stat().st_size} bytes); final {proxy['final'].shape}")

    fsa_vit = build(fsa_py, state)
    fsa_out = run(fsa_vit, lambda vit, i: vit(images[i:i + 1], text, vfm[i:i + 1], beta=BETA, gamma=GAMMA,
                                              lamda=LAMDA, is_FSA=True))
    out = out_dir / "fsa_official_reference.npz"
    np.savez_compressed(out, **common, **fsa_out, text_features=text.numpy(), lamda=np.array(LAMDA))
    print(f"wrote {out} ({out.stat().st_size} bytes); final {fsa_out['final'].shape}; "
          f"max |FSA - ProxyCLIP| {np.abs(fsa_out['final'] - proxy['final']).max():.3g}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
