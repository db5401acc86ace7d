"""Per-object mask metrics at native resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskOverlap:
    """Pixel counts of one predicted vs ground-truth mask pair.

    ``iou`` is ``intersection / union`` for a non-empty ground truth and NaN when the ground truth is empty
    (such an object is not scored; the official script skips it). With a non-empty ground truth the union is
    never 0.
    """

    pred_pixels: int
    gt_pixels: int
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        if self.gt_pixels == 0:
            return float("nan")
        return self.intersection / self.union


def mask_overlap(pred: np.ndarray, gt: np.ndarray) -> MaskOverlap:
    """Counts for ``bool [H, W]`` masks of the same shape (raises ``ValueError`` otherwise).

    A prediction that is not boolean is refused rather than thresholded: predictors return binary masks.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.dtype != np.bool_ or gt.dtype != np.bool_:
        raise ValueError(f"masks must be bool, got prediction {pred.dtype} and ground truth {gt.dtype}")
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be [H, W] of one size")
    pred_pixels = int(np.count_nonzero(pred))
    gt_pixels = int(np.count_nonzero(gt))
    intersection = int(np.count_nonzero(pred & gt))
    return MaskOverlap(pred_pixels, gt_pixels, intersection, pred_pixels + gt_pixels - intersection)
