"""Catalogue entries of the official FLIP checkpoints (added to :data:`baselines.weights.CATALOG` on import).

URLs: the "Checkpoints" column of the official README (CognitiveModeling/FLIP, commit a8dc2a5), Nextcloud public
shares of the University of Tuebingen; ``/download`` is Nextcloud's direct-download form of a share link. The
publishers give no size or digest (``flipbench weights verify`` prints the digest it computes).
"""

from __future__ import annotations

from baselines.weights import CATALOG, WeightFile

_SHARE = "https://nc.mlcloud.uni-tuebingen.de/index.php/s/"

#: registry name -> (Nextcloud share token, parameters as listed by the official README)
_SHARES = {
    "flip-tiny": ("YPdFxPHsTGEkNwz", "0.51M"),
    "flip-small": ("Zj3xDBXrZcSMtoy", "2.3M"),
    "flip-middle": ("Cx4kTMbRrD5DCmt", "11.5M"),
    "flip-large": ("57NXrqrxmzjxzoX", "96.6M"),
}

FLIP_WEIGHTS: dict[str, WeightFile] = {
    name: WeightFile(
        model=name,
        filename=f"{name}.ckpt",
        url=f"{_SHARE}{token}/download",
        note=f"official FLIP Lightning checkpoint ({params} parameters); share page {_SHARE}{token}",
    )
    for name, (token, params) in _SHARES.items()
}

#: file name of the real FLIP-Tiny weights shipped as the official browser demo's ONNX graph
DEMO_ONNX_FILENAME = "flip-tiny-demo.onnx"

CATALOG.update(FLIP_WEIGHTS)
