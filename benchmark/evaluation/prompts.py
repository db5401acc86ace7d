"""Point prompts derived from the ground truth: SAM's 1-point protocol and RITM's click simulation.

Frames: masks are ``bool [H, W]``; a click is ``(x, y)`` in **pixel indices** (``x`` the column, ``y`` the row), as
boxes are (see :mod:`baselines.base`).

* :func:`farthest_interior_point`: the pixel of the mask farthest from its boundary (the image border counts as
  boundary): the maximum of the Euclidean distance transform of the mask padded by one background pixel, ties broken
  by the first pixel in row-major order. This is the first click of RITM's simulation (Sofiiuk et al., "Reviving
  Iterative Training with Mask Guidance for Interactive Segmentation", 2022) and SAM's single "center" point
  (Kirillov et al., "Segment Anything", 2023, where points are placed at the interior-most point of the error region).
* :func:`next_click`: RITM's ``Clicker._get_next_click`` (also used by SimpleClick, Liu et al. ICCV 2023): the false
  negatives ``gt & ~pred`` and the false positives ``~gt & pred`` each get the distance transform above, pixels
  clicked before are excluded, and the click goes to the error whose maximum distance is larger (positive for a false
  negative, negative for a false positive; a tie is negative, as RITM's ``fn_max > fp_max``), at the first pixel of
  that maximum in row-major order. When no unclicked error pixel is left the simulation has nothing to click (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    """One simulated click: pixel indices ``x`` (column), ``y`` (row); ``positive`` (object) or negative."""

    x: int
    y: int
    positive: bool


def _interior_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each mask pixel to the nearest non-mask pixel, the image border counting as non-mask
    (``float32 [H, W]``, 0 outside the mask); the exact transform (``cv2.DIST_MASK_PRECISE``)."""
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _first_argmax(values: np.ndarray) -> tuple[int, int]:
    """``(y, x)`` of the first maximum of ``values`` in row-major order."""
    flat = int(np.argmax(values))  # numpy returns the first occurrence
    return divmod(flat, values.shape[1])


def farthest_interior_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` pixel of a non-empty ``bool [H, W]`` mask farthest from its boundary (see the module docstring)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError(f"expected a non-empty 2-D mask, got shape {mask.shape} with {int(mask.sum())} pixels")
    y, x = _first_argmax(_interior_distance(mask))
    return x, y


def next_click(gt: np.ndarray, pred: np.ndarray | None, clicked: np.ndarray | None = None) -> Click | None:
    """RITM's next click for prediction ``pred`` (None: nothing predicted yet) of ``gt``, both ``bool [H, W]``.

    ``clicked``: ``bool [H, W]`` of pixels clicked before (never clicked again). Returns None when no unclicked
    error pixel is left (the prediction equals the ground truth there).
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.zeros_like(gt) if pred is None else np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    fn = _interior_distance(gt & ~pred)
    fp = _interior_distance(~gt & pred)
    if clicked is not None:
        fn[clicked] = 0
        fp[clicked] = 0
    fn_max, fp_max = float(fn.max()), float(fp.max())
    if fn_max == 0 and fp_max == 0:
        return None
    positive = fn_max > fp_max
    y, x = _first_argmax(fn if positive else fp)
    return Click(x=x, y=y, positive=positive)


def click_arrays(clicks: list[Click]) -> tuple[np.ndarray, np.ndarray]:
    """``(points float64 [K, 2] as (x, y) pixel indices, labels int64 [K]: 1 positive, 0 negative)``."""
    points = np.array([[c.x, c.y] for c in clicks], dtype=np.float64).reshape(-1, 2)
    labels = np.array([1 if c.positive else 0 for c in clicks], dtype=np.int64)
    return points, labels


def clicks_to_reach(ious: np.ndarray, threshold: float, max_clicks: int) -> tuple[float, bool]:
    """Number of clicks (NoC) until IoU >= ``threshold`` in ``ious`` (IoU after click 1, 2, ...), and whether it was
    reached; an object that never reaches it counts ``max_clicks`` (RITM's convention) and ``False``."""
    ious = np.asarray(ious, dtype=np.float64)[:max_clicks]
    hits = np.flatnonzero(ious >= threshold)
    if hits.size:
        return float(hits[0] + 1), True
    return float(max_clicks), False
