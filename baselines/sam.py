"""SAM ViT-H/L/B (package ``segment-anything``) as box-promptable :class:`~baselines.base.Predictor`.

Preprocessing exactly as ``segment_anything.SamPredictor``: resize the longest side to 1024 with PIL (aspect
kept, :class:`ResizeLongestSide`), normalise with SAM's pixel mean/std (0-255 scale), pad bottom/right to
1024x1024. The box (inclusive pixel indices, passed as-is; see :mod:`baselines._common`) is scaled by the same
resize factor; the decoder runs with ``multimask_output=False``; the 256x256 logits are upsampled to 1024,
the padding is cropped, the result is resized to the native image size and thresholded at 0
(``Sam.postprocess_masks``). :class:`SamBoxPredictor` also serves MobileSAM, which reuses SAM's code.
"""

from __future__ import annotations

import numpy as np

import baselines.torchvision_compat  # noqa: F401  (must precede segment_anything / torchvision)
import torch

from baselines._common import TorchPredictor, check_image, resolve_weights
from baselines.base import WeightsInfo
from baselines.safe_load import load_strict, load_tensors, state_dict_of

#: registry name -> segment_anything model type
SAM_VARIANTS = {"sam-h": "vit_h", "sam-l": "vit_l", "sam-b": "vit_b"}


class SamBoxPredictor(TorchPredictor):
    """Box and point prompts through a SAM-style model (``image_encoder``, ``prompt_encoder``, ``mask_decoder``).

    Points (pixel indices, as boxes: SAM adds 0.5 itself) are scaled by the resize factor; one click decodes with
    ``multimask_output=True`` and keeps the mask of highest predicted IoU (``SamPredictor``'s guidance for a single
    ambiguous point), more clicks decode one mask with the previous prediction's 256x256 logits as ``mask_input``
    (as SAM's interactive use and its simulated-click evaluation).

    model: a ``segment_anything.modeling.Sam`` (or MobileSAM's identical class), in eval mode;
    resize: the package's ``ResizeLongestSide(model.image_encoder.img_size)``.
    """

    prompt_kinds = ("box", "points")

    def __init__(self, model: torch.nn.Module, resize, weights: WeightsInfo, device: str = "cpu") -> None:
        super().__init__(model, weights, device)
        self.resize = resize
        self._features: torch.Tensor | None = None
        self._input_hw: tuple[int, int] = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        image = check_image(image)
        with self.timer.stage("preprocess"):
            resized = self.resize.apply_image(image)  # uint8 [h', w', 3], longest side 1024
            x = torch.as_tensor(resized, device=self._device).permute(2, 0, 1).contiguous()[None]
            x = self.model.preprocess(x)  # float [1, 3, 1024, 1024]: normalised, zero-padded bottom/right
        with self.timer.stage("encoder"), torch.inference_mode():
            self._features = self.model.image_encoder(x)
        self._orig_hw = (image.shape[0], image.shape[1])
        self._input_hw = (resized.shape[0], resized.shape[1])

    def model_boxes(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Inclusive pixel boxes ``float [N, 4]`` of the current image -> the model's 1024 input frame."""
        return self.resize.apply_boxes(np.asarray(boxes_xyxy, dtype=np.float64), self._orig_hw)

    def _decode(self, boxes_xyxy: np.ndarray) -> torch.Tensor:
        box_t = torch.as_tensor(self.model_boxes(boxes_xyxy), dtype=torch.float32, device=self._device)
        low_res, _ = self._mask_decoder(*self.model.prompt_encoder(points=None, boxes=box_t, masks=None), False)
        return low_res  # [Q, 1, 256, 256]

    def _mask_decoder(self, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool):
        """SAM's mask decoder on the current image's embedding: ``(low-res logits [Q, M, 256, 256], IoU [Q, M])``."""
        return self.model.mask_decoder(
            image_embeddings=self._features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def _decode_points(self, points_xy: np.ndarray, labels: np.ndarray, mask_input):
        coords = self.resize.apply_coords(np.asarray(points_xy, dtype=np.float64), self._orig_hw)
        coords_t = torch.as_tensor(coords, dtype=torch.float32, device=self._device)[None]
        labels_t = torch.as_tensor(labels, dtype=torch.int64, device=self._device)[None]
        sparse, dense = self.model.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=mask_input)
        multimask = len(points_xy) == 1
        low_res, iou = self._mask_decoder(sparse, dense, multimask)
        best = low_res[:, int(iou[0].argmax())][:, None] if multimask else low_res  # [1, 1, 256, 256]
        return best, best

    def _masks(self, low_res: torch.Tensor) -> np.ndarray:
        logits = self.model.postprocess_masks(low_res, self._input_hw, self._orig_hw)
        return (logits[:, 0] > self.model.mask_threshold).cpu().numpy()


def build_sam_model(variant: str, state_dict: dict | None = None) -> torch.nn.Module:
    """The ``segment_anything`` model of ``variant`` (``"sam-h"``, ``"sam-l"``, ``"sam-b"``), eval mode.

    Random initialisation unless ``state_dict`` is given (loaded strictly). Works under
    ``torch.device("meta")`` for parameter counting without allocating memory.
    """
    from segment_anything import sam_model_registry

    model = sam_model_registry[SAM_VARIANTS[variant]](checkpoint=None)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_state_dict(path) -> dict:
    """The state dict (CPU tensors) of a SAM-style ``.pth``/``.pt`` checkpoint, read without running code
    (:func:`baselines.safe_load.load_tensors`); :class:`~baselines.safe_load.CheckpointError` otherwise."""
    return state_dict_of(load_tensors(path), path)


def _build(variant: str, checkpoint: str | None, device: str, allow_random: bool) -> SamBoxPredictor:
    from segment_anything.utils.transforms import ResizeLongestSide

    path, weights = resolve_weights(variant, checkpoint, allow_random)
    state = load_state_dict(path) if path is not None else None  # refused before anything is built
    model = build_sam_model(variant)
    if state is not None:
        load_strict(model, state, path, f"{variant} ({SAM_VARIANTS[variant]})")
    return SamBoxPredictor(model, ResizeLongestSide(model.image_encoder.img_size), weights, device)


def build_sam_h(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> SamBoxPredictor:
    return _build("sam-h", checkpoint, device, allow_random)


def build_sam_l(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> SamBoxPredictor:
    return _build("sam-l", checkpoint, device, allow_random)


def build_sam_b(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> SamBoxPredictor:
    return _build("sam-b", checkpoint, device, allow_random)
