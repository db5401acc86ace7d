"""Candidate masks + a selection rule: the one mechanism for models that take no prompt.

A candidate model (FastSAM's "segment everything", EoMT's instance queries, the text pipelines' regions) segments an
image **once** into ``N`` candidate masks (``set_image``: its stages ``preprocess`` / ``encoder`` / ``postprocess``,
shared by the image's objects); per object a rule then picks one (``predict``: the ``decoder`` stage, the selection):

* ``box`` (FastSAM's rule, ``FastSAMPredictor.prompt`` in ultralytics): the candidate of highest
  ``inside / (box_area + mask_area - inside)``, ``inside`` being its pixels within the box. FastSAM slices
  ``mask[y0:y1, x0:x1]`` half-open with a truncated integer box, so the inclusive pixel box ``[x0, y0, x1, y1]`` is
  read as ``[x0, y0, x1 + 1, y1 + 1)`` (:func:`selection_box`), exactly covering it. Ties: the first candidate.
* ``point`` (FastSAM's rule, same function): the candidates that contain a positive click and no negative one, merged
  into one mask (FastSAM returns that set; its original ``point_prompt`` merges it the same way). No such candidate:
  an empty mask.
* ``oracle`` (SAM's "oracle" rows): the candidate of highest IoU with the ground truth, ties to the first. It sees the
  answer, so its rows are an **upper bound** on what any selection could reach, labelled so in every table and
  figure and never ranked with prompted rows.

Without candidates (nothing detected) every rule gives an empty mask. Masks are ``bool [N, H, W]`` torch tensors at
the image's native resolution (on the model's device); boxes inclusive ``XYXY`` pixels, points ``(x, y)`` pixel
indices, as in :mod:`baselines.base`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Sequence

import numpy as np

from baselines.base import ObjectPrompt, Predictor, check_prompt_kinds
from baselines._common import check_image, prompt_boxes

if TYPE_CHECKING:
    import torch

def selection_box(box_xyxy: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box -> FastSAM's integer half-open ``[x0, y0, x1, y1)`` slice, clipped to the image
    (truncation, as ``torch.as_tensor(..., dtype=int32)`` in ultralytics)."""
    box = (np.asarray(box_xyxy, dtype=np.float64).reshape(4) + np.array([0, 0, 1, 1])).astype(np.int64)
    x0, x1 = np.clip(box[[0, 2]], 0, width)
    y0, y1 = np.clip(box[[1, 3]], 0, height)
    return int(x0), int(y0), int(x1), int(y1)


def select_by_box(masks: torch.Tensor, areas: torch.Tensor, box_xyxy: np.ndarray) -> int | None:
    """Index of the candidate FastSAM's box rule picks for an inclusive pixel box; None without candidates."""
    import torch

    if len(masks) == 0:
        return None
    x0, y0, x1, y1 = selection_box(box_xyxy, masks.shape[1], masks.shape[2])
    inside = masks[:, y0:y1, x0:x1].sum(dim=(1, 2))
    union = (y1 - y0) * (x1 - x0) + areas - inside
    return int(torch.argmax(inside / union))


def select_by_points(masks: torch.Tensor, points: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """``bool [H, W]``: the union of the candidates holding a positive point and no negative one (FastSAM's rule)."""
    import torch

    height, width = masks.shape[1:]
    if len(masks) == 0:
        return torch.zeros((height, width), dtype=torch.bool, device=masks.device)
    coords = np.asarray(points, dtype=np.float64).reshape(-1, 2).astype(np.int64)
    coords[:, 0] = coords[:, 0].clip(0, width - 1)
    coords[:, 1] = coords[:, 1].clip(0, height - 1)
    labels = np.asarray(labels).reshape(-1)
    hold = masks[:, coords[:, 1], coords[:, 0]]  # [N, K]
    positive, negative = torch.as_tensor(labels == 1), torch.as_tensor(labels == 0)
    chosen = hold[:, positive].any(dim=1) if positive.any() else torch.ones(len(masks), dtype=torch.bool)
    chosen = chosen & ~hold[:, negative].any(dim=1)
    return masks[chosen.to(masks.device)].any(dim=0)


def select_by_oracle(masks: torch.Tensor, areas: torch.Tensor, gt: np.ndarray) -> int | None:
    """Index of the candidate of highest IoU with the ground truth ``bool [H, W]`` (ties: the first); None without
    candidates."""
    import torch

    if len(masks) == 0:
        return None
    truth = torch.as_tensor(np.asarray(gt, dtype=bool), device=masks.device)
    inter = (masks & truth).sum(dim=(1, 2))
    union = areas + truth.sum() - inter
    return int(torch.argmax(inter / union.clamp(min=1)))


class CandidatePredictor(Predictor):
    """A model that segments an image once into candidate masks; a selection rule picks one per object.

    Subclasses implement :meth:`segment` (charging their own stages to ``self.timer``). Box prompts select by the
    box rule, point prompts by the point rule; :meth:`predict_oracle` is the oracle rule (the evaluation calls it,
    with the ground truth, for ``--select oracle``).
    """

    prompt_kinds = ("box", "points")

    def __init__(self) -> None:
        super().__init__()
        self._candidates: torch.Tensor | None = None  # bool [N, H, W]
        self._areas: torch.Tensor | None = None  # int64 [N]
        self._scores: np.ndarray | None = None  # float [N] or None
        self._orig_hw: tuple[int, int] = (0, 0)

    @abc.abstractmethod
    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray | None]:
        """Candidates of ``image`` (``uint8 [H, W, 3]`` RGB): masks ``bool [N, H, W]`` at native resolution and their
        scores ``float [N]`` (None when the model gives none)."""

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = check_image(image)
        h, w = image.shape[:2]
        masks, scores = self.segment(image)
        if masks.dtype != torch.bool or masks.ndim != 3 or tuple(masks.shape[1:]) != (h, w):
            raise RuntimeError(f"{self.name or type(self).__name__} returned candidates {masks.dtype} "
                               f"{tuple(masks.shape)} for a {w}x{h} image; expected bool [N, {h}, {w}]")
        self._candidates, self._areas, self._scores = masks, masks.sum(dim=(1, 2)), scores
        self._orig_hw = (h, w)

    @property
    def candidates(self) -> torch.Tensor:
        """``bool [N, H, W]`` candidates of the current image."""
        if self._candidates is None:
            raise RuntimeError("call set_image(image) before selecting")
        return self._candidates

    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        masks = self.candidates
        kind = check_prompt_kinds(self, prompts)
        if kind == "box":
            boxes = prompt_boxes(prompts, self._orig_hw)
        out: list[np.ndarray] = []
        for i, prompt in enumerate(prompts):
            with self.timer.stage("decoder"):
                if kind == "box":
                    choice = select_by_box(masks, self._areas, boxes[i])
                    mask = None if choice is None else masks[choice]
                else:
                    mask = select_by_points(masks, prompt.points, prompt.point_labels)
            out.append(self._to_numpy(mask))
        return out

    def predict_oracle(self, gt: np.ndarray) -> np.ndarray:
        """The candidate of highest IoU with ``gt`` (the oracle rule: an upper bound)."""
        masks = self.candidates
        if np.asarray(gt).shape != self._orig_hw:
            raise ValueError(f"ground truth {np.asarray(gt).shape} does not match the image {self._orig_hw}")
        with self.timer.stage("decoder"):
            choice = select_by_oracle(masks, self._areas, gt)
        return self._to_numpy(None if choice is None else masks[choice])

    def _to_numpy(self, mask: torch.Tensor | None) -> np.ndarray:
        with self.timer.stage("postprocess"):
            if mask is None:
                return np.zeros(self._orig_hw, dtype=bool)
            return mask.cpu().numpy().copy()
