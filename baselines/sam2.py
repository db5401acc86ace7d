"""SAM 2.1 Hiera-T/S/B+/L (package ``sam2``) as box :class:`~baselines.base.Predictor` (an extra table row).

Built with ``sam2.build_sam.build_sam2`` from the configs shipped in the package (``configs/sam2.1/...``) with
its defaults (including the dynamic multimask-via-stability fallback the authors enable for image prediction),
and run through ``sam2.sam2_image_predictor.SAM2ImagePredictor``: RGB resized to 1024x1024 **without keeping
the aspect ratio**, ImageNet mean/std; the box (inclusive pixel indices, passed as-is; see
:mod:`baselines._common`) is normalised by the image width/height and scaled to 1024; ``multimask_output=False``;
logits at native resolution thresholded at 0; hole/sprinkle filling off (the predictor's default).

Timing: ``SAM2ImagePredictor.set_image`` resizes and normalises the image inside the call that runs the
encoder, so its few milliseconds of preprocessing are charged to ``encoder``; likewise the upsampling of the
logits to native resolution is inside ``predict`` and charged to ``decoder`` (``postprocess`` is the
thresholding).
"""

from __future__ import annotations

import warnings
import numpy as np

import baselines.torchvision_compat  # noqa: F401  (must precede sam2 / torchvision)
import torch

from baselines._common import TorchPredictor, check_image, resolve_weights
from baselines.base import WeightsInfo
from baselines.safe_load import load_strict, load_tensors, state_dict_of

#: registry name -> config shipped in the sam2 package
SAM2_CONFIGS = {
    "sam2.1-t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1-s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1-b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1-l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


class Sam2BoxPredictor(TorchPredictor):
    """Box and point prompts through ``SAM2ImagePredictor``; ``model`` is a ``sam2`` ``SAM2Base`` in eval mode.

    Points (pixel indices) go to ``predict(point_coords=..., point_labels=...)``, which normalises them as it does
    boxes; one click: ``multimask_output=True`` and the mask of highest predicted IoU, more clicks: one mask with the
    previous prediction's low-resolution logits as ``mask_input``.
    """

    prompt_kinds = ("box", "points")

    def __init__(self, model: torch.nn.Module, weights: WeightsInfo, device: str = "cpu") -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        super().__init__(model, weights, device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # SAM2Transforms calls torch.jit.script
            self.predictor = SAM2ImagePredictor(self.model)

    def set_image(self, image: np.ndarray) -> None:
        image = check_image(image)
        with self.timer.stage("encoder"), torch.inference_mode():
            self.predictor.set_image(image)
        self._orig_hw = (image.shape[0], image.shape[1])

    def _decode(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        logits, _, _ = self.predictor.predict(box=boxes_xyxy, multimask_output=False, return_logits=True)
        return logits.reshape(len(boxes_xyxy), *self._orig_hw)

    def _decode_points(self, points_xy: np.ndarray, labels: np.ndarray, mask_input):
        multimask = len(points_xy) == 1
        logits, iou, low_res = self.predictor.predict(
            point_coords=np.asarray(points_xy, dtype=np.float32), point_labels=np.asarray(labels, dtype=np.int32),
            mask_input=mask_input, multimask_output=multimask, return_logits=True,
        )
        best = int(np.argmax(iou)) if multimask else 0
        return logits[best][None], low_res[best][None]  # [1, H, W] logits; [1, 256, 256] next mask_input

    def _masks(self, logits: np.ndarray) -> np.ndarray:
        return logits > self.predictor.mask_threshold


#: how to install the optional ``sam2`` package (pyproject.toml, extra ``sam2``)
SAM2_INSTALL = 'SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e ".[sam2]"'


def import_build_sam2(variant: str):
    """``sam2.build_sam.build_sam2``, or an ImportError that says how to install the optional package."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated in torch 2.13
            from sam2.build_sam import build_sam2
    except ImportError as err:
        raise ImportError(f"{variant} needs the optional sam2 package, which is not installed ({err}); install it "
                          f"from the flipbench checkout with: {SAM2_INSTALL}") from err
    return build_sam2


def build_sam2_model(variant: str, checkpoint=None, device: str = "cpu") -> torch.nn.Module:
    """SAM 2.1 model of ``variant`` from the package config, eval mode; random init without ``checkpoint``.

    The checkpoint (``{"model": state_dict}``) is read without running code and loaded strictly here rather than
    by ``build_sam2(ckpt_path=...)``.
    """
    build_sam2 = import_build_sam2(variant)
    state = None if checkpoint is None else state_dict_of(load_tensors(checkpoint), checkpoint, key="model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = build_sam2(SAM2_CONFIGS[variant], ckpt_path=None, device="cpu")
    if state is not None:
        load_strict(model, state, checkpoint, f"{variant} (SAM 2.1)")
    return model.to(device).eval()


def _build(variant: str, checkpoint: str | None, device: str, allow_random: bool) -> Sam2BoxPredictor:
    import_build_sam2(variant)  # a missing package is reported before a missing checkpoint
    path, weights = resolve_weights(variant, checkpoint, allow_random)
    return Sam2BoxPredictor(build_sam2_model(variant, path, device), weights, device)


def build_sam2_t(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> Sam2BoxPredictor:
    return _build("sam2.1-t", checkpoint, device, allow_random)


def build_sam2_s(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> Sam2BoxPredictor:
    return _build("sam2.1-s", checkpoint, device, allow_random)


def build_sam2_bplus(
    checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False
) -> Sam2BoxPredictor:
    return _build("sam2.1-b+", checkpoint, device, allow_random)


def build_sam2_l(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> Sam2BoxPredictor:
    return _build("sam2.1-l", checkpoint, device, allow_random)
