"""Catalogue entries of the official FLIP weights (added to :data:`baselines.weights.CATALOG` on import).

* ``flip-tiny|small|middle|large``: the Lightning checkpoints of the "Checkpoints" column of the official README
  (CognitiveModeling/FLIP, commit a8dc2a5), Nextcloud public shares of the University of Tuebingen; ``/download``
  is Nextcloud's direct-download form of a share link. The publishers give no size or digest: a download is
  checked by a tensors-only load instead, and ``flipbench weights download|verify`` print the SHA-256.
* ``flip-tiny-demo``: the real FLIP-Tiny weights as the official browser demo shipped them, one ONNX graph
  (``docs/flipencoder.onnx`` at commit 59375b6 of the official repository; removed from the tree in 5b15a01, so
  the URL pins the commit). Size and SHA-256 are those of that blob. ``flip-tiny`` loads it when no
  ``flip-tiny.ckpt`` is present (:mod:`benchmark.flip.onnx_import`).
* ``flip-encoder-<size>`` / ``flip-predictor-<size>``: the per-size ONNX pairs of the README's "ONNX Encoder" and
  "ONNX Predictor" columns (hosted on manuel-traub.de, added in commit 6672114). ``flip-<size>`` loads a pair
  found in ``$FLIPBENCH_HOME`` (:mod:`benchmark.flip.onnx_import`); see :data:`ONNX_PAIR_NOTE` for how far
  that is established.
"""

from __future__ import annotations

from pathlib import Path

from baselines.weights import CATALOG, WeightFile

_SHARE = "https://nc.mlcloud.uni-tuebingen.de/index.php/s/"
_REPO_RAW = "https://raw.githubusercontent.com/CognitiveModeling/FLIP/"
_ONNX_HOST = "https://manuel-traub.de/onnx/"

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
#: the commit of CognitiveModeling/FLIP whose docs/flipencoder.onnx is the demo graph
DEMO_ONNX_COMMIT = "59375b6c1744b9c9d23cf350843cf132896071a4"

FLIP_DEMO_ONNX = WeightFile(
    model="flip-tiny-demo",
    filename=DEMO_ONNX_FILENAME,
    url=f"{_REPO_RAW}{DEMO_ONNX_COMMIT}/docs/flipencoder.onnx",
    num_bytes=2_225_417,
    sha256="ef53c2774528f23bba55864809f79ad75e493af07b0d25c1987e86f1b3e6d6a5",
    note="real FLIP-Tiny weights: the official browser demo's ONNX graph (docs/flipencoder.onnx at commit 59375b6); "
         "used by flip-tiny when flip-tiny.ckpt is absent",
    kind="onnx",
)

#: what is known of the per-size ONNX pairs (their files could not be inspected offline)
ONNX_PAIR_NOTE = (
    "the encoder graph runs prepare_kv_cache, the predictor graph forward_with_cache (official "
    "inference/export_to_onnx.py); flip-<size> loads the two together. The import was established on pairs "
    "made by that script from checkpoints of the official code; the published files were not available offline, "
    "so if they name their weights otherwise, loading stops with a clear error (every key and shape is checked)"
)

FLIP_ONNX_PAIRS: dict[str, WeightFile] = {
    f"flip-{part}-{size}": WeightFile(
        model=f"flip-{part}-{size}",
        filename=f"flip-{part}-{size}.onnx",
        url=f"{_ONNX_HOST}flip-{part}-{size}.onnx",
        note=f"official FLIP-{size.capitalize()} ONNX {part} (README, commit 6672114; no published size or "
             f"digest); {ONNX_PAIR_NOTE}",
        kind="onnx",
    )
    for size in ("tiny", "small", "middle", "large")
    for part in ("encoder", "predictor")
}

CATALOG.update(FLIP_WEIGHTS)
CATALOG["flip-tiny-demo"] = FLIP_DEMO_ONNX
CATALOG.update(FLIP_ONNX_PAIRS)

#: the project's shared reference weights (``../shared/weights`` next to the repository), searched after the home
SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"


def present_path(entry: WeightFile, home: Path) -> Path | None:
    """Where the file of ``entry`` is found: ``home`` (``$FLIPBENCH_HOME``), or for the demo graph also
    :data:`SHARED_WEIGHTS`; ``None`` when absent."""
    folders = (home, SHARED_WEIGHTS) if entry.filename == DEMO_ONNX_FILENAME else (home,)
    for folder in folders:
        path = folder / entry.filename
        if path.is_file():
            return path.resolve()
    return None
