"""Small helpers shared by the tests/test_baselines_*.py files (images, prompts, box masks, IoU)."""

from __future__ import annotations

import numpy as np

from baselines.base import ObjectPrompt


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 [h, w, 3] RGB noise."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def prompts_for(boxes) -> list[ObjectPrompt]:
    """ObjectPrompts from inclusive XYXY pixel boxes (rho is irrelevant to box models)."""
    return [ObjectPrompt(np.asarray(b, dtype=np.float64), np.zeros(5, np.float32)) for b in boxes]


def box_mask(box, hw: tuple[int, int]) -> np.ndarray:
    """bool [H, W], True on the inclusive pixel box ``[x0, y0, x1, y1]``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros(hw, dtype=bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
