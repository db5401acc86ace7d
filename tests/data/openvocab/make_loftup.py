"""Make ``loftup_official_reference.npz`` from the official LoftUp code (andrehuang/loftup; not run by CI).

Only ``upsamplers/upsamplers.py`` and ``upsamplers/layers.py`` are imported (the package ``__init__`` and
``hubconf.py`` are not run: nothing is downloaded, ``torch.hub`` is never used). Two things are saved:

* the parameter/buffer names and shapes of ``hubconf.loftup_clip``'s model, i.e.
  ``UpsamplerwithChannelNorm(LoftUp(512, lr_pe_type="sine", lr_size=14), ChannelNorm(512))`` (the layout of the
  ``haiwen/loftup-clip`` checkpoint), built without weights;
* the same architecture at a tiny width (``dim = 16``: 36 channels with the sine positional code, 4 heads,
  2 cross-attention layers, 20 image frequencies) with seeded random weights and BatchNorm statistics, in eval mode,
  run on CPU as ``model(lr_feats, img)`` for two cases, each a batch of one as the official example runs it:
  a 4x4 grid to 24x24 px and a 3x5 grid to 22x27 px (non-square: rows and columns cannot be swapped unnoticed).

Usage (OFFICIAL = an extract of andrehuang/loftup; its upsamplers.py imports einops, installed into /tmp/ov_pkgs with
``pip install --target /tmp/ov_pkgs einops``)::

    PYTHONPATH=.:/tmp/ov_pkgs python tests/data/openvocab/make_loftup.py OFFICIAL tests/data/openvocab
"""

from __future__ import annotations

import sys
from pathlib import Path

import baselines.torchvision_compat  # noqa: F401  (the official modules import torchvision)
import numpy as np
import torch

from _official import SEED, load_official  # noqa: E402  (beside this script)

DIM, CASES = 16, (((4, 4), (24, 24)), ((3, 5), (22, 27)))


def randomise(model: torch.nn.Module) -> None:
    """Random O(1) parameters (norm weights near 1) and BatchNorm statistics, so no part is close to a no-op."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):
                p.normal_(1.0, 0.1)
            elif p.ndim == 1:
                p.normal_(0.0, 0.1)
            elif name.endswith("biases"):
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, 1.0 / max(1, p[0].numel()) ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)


def main(official: Path, out_dir: Path) -> None:
    up = load_official("loftup_official_upsamplers", official / "upsamplers", "upsamplers")
    layers = sys.modules["loftup_official_upsamplers.layers"]
    clip = up.UpsamplerwithChannelNorm(up.LoftUp(512, lr_pe_type="sine", lr_size=14), layers.ChannelNorm(512))
    clip_state = clip.state_dict()
    arrays = {
        "clip_keys": np.array(list(clip_state)),
        "clip_shapes": np.array([",".join(map(str, v.shape)) for v in clip_state.values()]),
        "torch_version": np.array(torch.__version__),
        "dim": np.array(DIM),
    }
    torch.manual_seed(SEED)
    model = up.UpsamplerwithChannelNorm(up.LoftUp(DIM, lr_pe_type="sine", lr_size=4), layers.ChannelNorm(DIM))
    randomise(model)
    model.eval()
    arrays.update({f"w/{k}": v.numpy() for k, v in model.state_dict().items()})
    with torch.no_grad():
        for i, (lr_hw, hr_hw) in enumerate(CASES):
            feats = torch.randn(1, DIM, *lr_hw)
            image = torch.randn(1, 3, *hr_hw)  # stands for an ImageNet-normalised image
            out = model(feats, image)
            arrays.update({f"case{i}_feats": feats.numpy(), f"case{i}_image": image.numpy(),
                           f"case{i}_out": out.numpy()})
            print(f"case {i}: {tuple(feats.shape)} -> {tuple(out.shape)}, max |out| {out.abs().max():.3g}")
    out_path = out_dir / "loftup_official_reference.npz"
    np.savez_compressed(out_path, **arrays)
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes); loftup_clip: {len(clip_state)} keys")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
