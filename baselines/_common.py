"""Helpers shared by the baseline adapters: input checks, checkpoint resolution, parameter counting.

Box-prompt protocol shared by every baseline (the lead copies this to the README):

* **Prompt**: the tight box of the ground-truth mask, ``XYXY`` inclusive pixel indices (``x1`` is the last
  column holding a mask pixel), as in :mod:`baselines.base`. One prompt per object, no noise, no points.
* **One embedding per image**: ``set_image`` runs preprocessing + image encoder once; ``predict`` decodes all
  objects of that image (in chunks of :data:`PROMPT_CHUNK`).
* **Single mask**: ``multimask_output=False`` where the model offers it (SAM, MobileSAM, SAM 2.1: the authors
  recommend it for unambiguous prompts such as boxes); EfficientSAM always predicts 3 masks and the one with
  the highest predicted IoU is taken (the authors' example); FastSAM has no prompt decoder and selects one
  mask of its "segment everything" output (see :mod:`baselines.fastsam`).
* **Box coordinates**: SAM-family prompt encoders add ``0.5`` to incoming coordinates ("shift to center of
  pixel"), i.e. they interpret a coordinate as a *pixel index*. An inclusive pixel-index box is therefore
  passed unchanged, and each model's own transform maps it to its input frame, exactly as the authors' demos do
  with user-drawn pixel boxes: SAM/MobileSAM multiply by the resize factor ``1024 / max(H, W)`` (aspect kept,
  padding at bottom/right), EfficientSAM and SAM 2.1 scale each axis to 1024 separately (image stretched to
  1024x1024). FastSAM selects masks with array slices ``[y0:y1, x0:x1]`` (half-open), so it receives
  ``[x0, y0, x1 + 1, y1 + 1]``, which covers exactly the inclusive box.
* **Preprocessing**: each model's own (see the adapters); masks are returned at the native image resolution,
  thresholded as the authors do (logit > 0, EfficientSAM >= 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from baselines.base import ObjectPrompt, Predictor, WeightsInfo, check_prompt_kinds
from baselines.timing import StageTimer
from baselines.weights import find_checkpoint, require_checkpoint, sha256_of

#: prompts decoded together; bounds memory of the full-resolution mask upsampling
PROMPT_CHUNK = 16


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an ``uint8 [H, W, 3]`` RGB image and return it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an RGB image uint8 [H, W, 3], got {type(image).__name__} with shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an uint8 image, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


def prompt_boxes(prompts: Sequence[ObjectPrompt], image_hw: tuple[int, int]) -> np.ndarray:
    """Stack the prompts' inclusive XYXY pixel boxes into ``float64 [N, 4]``, checking they are valid.

    A valid box is finite, has ``x0 <= x1`` and ``y0 <= y1`` and lies inside the image
    (``0 <= x <= W - 1``, ``0 <= y <= H - 1``).
    """
    h, w = image_hw
    if len(prompts) == 0:
        return np.zeros((0, 4), dtype=np.float64)
    boxes = np.stack([np.asarray(p.box_xyxy, dtype=np.float64).reshape(4) for p in prompts])
    bad = (
        ~np.isfinite(boxes).all(axis=1)
        | (boxes[:, 0] > boxes[:, 2])
        | (boxes[:, 1] > boxes[:, 3])
        | (boxes[:, :2] < 0).any(axis=1)
        | (boxes[:, 2] > w - 1)
        | (boxes[:, 3] > h - 1)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"prompt {i}: box {boxes[i].tolist()} is not an inclusive XYXY pixel box inside the {w}x{h} image "
            "(expected 0 <= x0 <= x1 <= W-1, 0 <= y0 <= y1 <= H-1)"
        )
    return boxes


def resolve_weights(model: str, checkpoint: str | None, allow_random: bool) -> tuple[Path | None, WeightsInfo]:
    """Find the checkpoint of ``model`` (explicit path or cached official file).

    Returns ``(path, WeightsInfo("pretrained", path, sha256))``; without a checkpoint and with
    ``allow_random`` returns ``(None, WeightsInfo("random-init", ...))``; otherwise raises
    :class:`baselines.weights.MissingCheckpointError` saying what to download.
    """
    path = find_checkpoint(model, checkpoint)
    if path is None:
        if not allow_random:
            require_checkpoint(model)  # raises with download instructions
        source = "random initialisation (no checkpoint; results meaningless)"
        return None, WeightsInfo(kind="random-init", source=source)
    return path, WeightsInfo(kind="pretrained", source=str(path), sha256=sha256_of(path))


def count_parameters(module) -> int:
    """Number of parameters of a torch module (works on the meta device)."""
    return int(sum(p.numel() for p in module.parameters()))


class TorchPredictor(Predictor):
    """A :class:`Predictor` around one ``torch.nn.Module`` (moved to ``device``, eval mode).

    Subclasses implement ``set_image`` (which must set ``_orig_hw``), :meth:`_decode` and :meth:`_masks`;
    :meth:`predict` runs them over box prompts in chunks of :data:`PROMPT_CHUNK`. Subclasses that list ``"points"`` in
    ``prompt_kinds`` implement :meth:`_decode_points`, run once per points prompt. The timer synchronises CUDA when
    the model lives there, so stage times include the kernels.
    """

    def __init__(self, model, weights: WeightsInfo, device: str = "cpu") -> None:
        import torch

        super().__init__()
        self._device = torch.device(device)
        self.timer = StageTimer(self._device)
        self.model = model.to(self._device).eval()
        self.weights = weights
        self._orig_hw: tuple[int, int] | None = None  # (H, W) of the image given to set_image

    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        """One ``bool [H, W]`` mask per prompt (native resolution of the current image)."""
        import torch

        if self._orig_hw is None:
            raise RuntimeError("call set_image(image) before predict(prompts)")
        if check_prompt_kinds(self, prompts) == "points":
            return self._predict_points(prompts)
        boxes = prompt_boxes(prompts, self._orig_hw)
        masks: list[np.ndarray] = []
        for start in range(0, len(boxes), PROMPT_CHUNK):
            chunk = boxes[start : start + PROMPT_CHUNK]
            with self.timer.stage("decoder"), torch.inference_mode():
                decoded = self._decode(chunk)
            with self.timer.stage("postprocess"), torch.inference_mode():
                masks.extend(self._masks(decoded))
        return masks

    def _predict_points(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        """One mask per points prompt; :attr:`last_mask_inputs` gets each prompt's logits for its next click."""
        import torch

        h, w = self._orig_hw
        masks: list[np.ndarray] = []
        inputs: list = []
        for i, prompt in enumerate(prompts):
            points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
            labels = np.asarray(prompt.point_labels, dtype=np.int64).reshape(-1)
            if not np.isfinite(points).all() or (points < 0).any() or (points[:, 0] > w - 1).any() \
                    or (points[:, 1] > h - 1).any() or not np.isin(labels, (0, 1)).all():
                raise ValueError(f"prompt {i}: points {points.tolist()} / labels {labels.tolist()} are not pixel "
                                 f"indices inside the {w}x{h} image with labels 1 (positive) or 0 (negative)")
            with self.timer.stage("decoder"), torch.inference_mode():
                decoded, mask_input = self._decode_points(points, labels, prompt.mask_input)
            with self.timer.stage("postprocess"), torch.inference_mode():
                masks.extend(self._masks(decoded))
            inputs.append(mask_input)
        self.last_mask_inputs = inputs
        return masks

    def _decode_points(self, points_xy: np.ndarray, labels: np.ndarray, mask_input):
        """Decode one object's clicks (``float64 [K, 2]`` pixel indices, labels ``int64 [K]``) with the model's logits
        of its previous prediction (``mask_input``, or None); returns ``(what _masks takes for this one object, the
        logits to pass as the next mask_input or None)``. One click: the model's multimask output and its most
        confident mask (SAM's protocol for an ambiguous prompt); more: a single mask."""
        raise NotImplementedError

    def _decode(self, boxes_xyxy: np.ndarray):
        """Prompt encoder + mask decoder for inclusive pixel boxes ``float64 [Q, 4]`` of the current image; returns
        whatever :meth:`_masks` takes (low-resolution logits)."""
        raise NotImplementedError

    def _masks(self, decoded) -> list[np.ndarray] | np.ndarray:
        """Output of :meth:`_decode` -> ``Q`` masks ``bool [H, W]`` at the native resolution."""
        raise NotImplementedError

    @property
    def device(self) -> str:
        return str(self._device)

    def num_parameters(self) -> int:
        return count_parameters(self.model)
