"""MobileSAM (package ``mobilesam-mirror``, module ``mobile_sam``; needs ``timm``) as a box predictor.

MobileSAM is SAM with the ViT image encoder replaced by a TinyViT distilled from SAM-H; prompt encoder, mask
decoder, preprocessing (longest side 1024 + pad, SAM mean/std) and postprocessing are SAM's, so the adapter is
:class:`baselines.sam.SamBoxPredictor` with MobileSAM's model (see :mod:`baselines.sam` for the protocol).
"""

from __future__ import annotations

import warnings

import baselines.torchvision_compat  # noqa: F401  (must precede mobile_sam / torchvision)
import torch

from baselines._common import resolve_weights
from baselines.safe_load import load_strict
from baselines.sam import SamBoxPredictor, load_state_dict


def build_mobilesam_model(state_dict: dict | None = None) -> torch.nn.Module:
    """MobileSAM (``vit_t``) in eval mode; random init unless ``state_dict`` is given (strict load)."""
    with warnings.catch_warnings():
        # timm >= 1.0 warns about MobileSAM's deprecated imports and re-registered model names
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        from mobile_sam import sam_model_registry

        model = sam_model_registry["vit_t"](checkpoint=None)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def build_mobilesam(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> SamBoxPredictor:
    path, weights = resolve_weights("mobilesam", checkpoint, allow_random)
    state = load_state_dict(path) if path is not None else None  # refused before anything is built
    model = build_mobilesam_model()
    if state is not None:
        load_strict(model, state, path, "MobileSAM (vit_t)")
    from mobile_sam.utils.transforms import ResizeLongestSide  # after build_mobilesam_model silenced timm

    return SamBoxPredictor(model, ResizeLongestSide(model.image_encoder.img_size), weights, device)
