"""EfficientSAM-Ti / -S box predictor on top of :mod:`baselines.efficientsam.modeling`.

Preprocessing as the authors' example (``EfficientSAM_example.py`` + ``EfficientSam.preprocess``): RGB to float
[0, 1] (``ToTensor``), bilinear stretch to 1024x1024 **without keeping the aspect ratio** and without padding,
ImageNet mean/std. The box (inclusive pixel indices, passed as-is; see :mod:`baselines._common`) becomes two
points labelled 2 (top-left) and 3 (bottom-right), each axis scaled to 1024 separately. The model always
predicts 3 masks; the one with the highest predicted IoU is kept (the authors' example), its 256x256 logits are
upsampled bicubically to the native image size and thresholded ``>= 0``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from baselines._common import TorchPredictor, check_image, resolve_weights
from baselines.base import WeightsInfo
from baselines.efficientsam.modeling import MAX_POINTS, EfficientSam, build_efficient_sam
from baselines.safe_load import load_strict, load_tensors, state_dict_of

#: point labels of a box prompt: top-left corner, bottom-right corner
BOX_LABELS = (2, 3)


class EfficientSamPredictor(TorchPredictor):
    """Box and point prompts through EfficientSAM; ``model`` is an :class:`EfficientSam` in eval mode.

    Points use the model's point API (labels 1 positive, 0 negative, each axis scaled to 1024), at most
    :data:`~baselines.efficientsam.modeling.MAX_POINTS` per object; the 3 masks' most confident one is kept, as for
    boxes. EfficientSAM takes no previous prediction, so a click simulation gives it the clicks alone.
    """

    prompt_kinds = ("box", "points")
    max_points = MAX_POINTS

    def __init__(self, model: EfficientSam, weights: WeightsInfo, device: str = "cpu") -> None:
        super().__init__(model, weights, device)
        self._embedding: torch.Tensor | None = None

    def set_image(self, image: np.ndarray) -> None:
        image = check_image(image)
        with self.timer.stage("preprocess"), torch.inference_mode():
            x = torch.from_numpy(image).to(self._device).permute(2, 0, 1)[None].float() / 255.0
            x = self.model.preprocess(x)  # [1, 3, 1024, 1024]
        with self.timer.stage("encoder"), torch.inference_mode():
            self._embedding = self.model.image_encoder(x)
        self._orig_hw = (image.shape[0], image.shape[1])

    def model_points(self, boxes_xyxy: np.ndarray) -> torch.Tensor:
        """Inclusive pixel boxes ``[N, 4]`` -> corner points ``float [N, 2, 2]`` in the 1024x1024 frame."""
        corners = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 2, 2), device=self._device)
        return self.model.model_points(corners, self._orig_hw)

    def _decode(self, boxes_xyxy: np.ndarray) -> torch.Tensor:
        points = self.model_points(boxes_xyxy)
        labels = torch.tensor(BOX_LABELS, device=self._device).expand(len(boxes_xyxy), -1)
        logits, iou = self.model.decode(self._embedding, points, labels)
        return logits[torch.arange(len(boxes_xyxy), device=logits.device), iou.argmax(dim=1)]  # [Q, 256, 256]

    def _decode_points(self, points_xy: np.ndarray, labels: np.ndarray, mask_input):
        points = torch.as_tensor(np.asarray(points_xy, dtype=np.float32)[None], device=self._device)
        logits, iou = self.model.decode(self._embedding, self.model.model_points(points, self._orig_hw),
                                        torch.as_tensor(labels, device=self._device)[None])
        return logits[:, int(iou[0].argmax())], None  # [1, 256, 256]

    def _masks(self, best: torch.Tensor) -> np.ndarray:
        full = F.interpolate(best[:, None], self._orig_hw, mode="bicubic", align_corners=False)
        return (full[:, 0] >= 0).cpu().numpy()


def load_efficientsam_state_dict(path) -> dict:
    """The state dict of an official EfficientSAM checkpoint (a dict with the weights under ``"model"``), read
    without running code (:func:`baselines.safe_load.load_tensors`)."""
    return state_dict_of(load_tensors(path), path, key="model")


def build_predictor(variant: str, checkpoint: str | None, device: str, allow_random: bool) -> EfficientSamPredictor:
    path, weights = resolve_weights(variant, checkpoint, allow_random)
    state = load_efficientsam_state_dict(path) if path is not None else None  # refused before anything is built
    model = build_efficient_sam(variant)
    if state is not None:
        load_strict(model, state, path, f"{variant} (EfficientSAM)")
    return EfficientSamPredictor(model, weights, device)
