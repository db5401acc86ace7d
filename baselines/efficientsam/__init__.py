"""EfficientSAM-Ti / -S (Xiong et al., CVPR 2024): flipbench's own implementation, official checkpoints load.

See :mod:`baselines.efficientsam.modeling` (network) and :mod:`baselines.efficientsam.predictor` (protocol).
"""

from __future__ import annotations

from baselines.efficientsam.predictor import EfficientSamPredictor, build_predictor


def build_efficientsam_t(
    checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False
) -> EfficientSamPredictor:
    return build_predictor("efficientsam-t", checkpoint, device, allow_random)


def build_efficientsam_s(
    checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False
) -> EfficientSamPredictor:
    return build_predictor("efficientsam-s", checkpoint, device, allow_random)
