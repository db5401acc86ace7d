"""Small FLIP test inputs shared by the predictor tests: a synthetic image with one bright blob and prompts."""

from __future__ import annotations

import numpy as np

from baselines.base import ObjectPrompt


def flip_image(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: dark noise with a bright disc (centre at 60 % / 40 % of the width / height)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    blob = ((xx - 0.6 * width) ** 2 + (yy - 0.4 * height) ** 2 < (0.2 * height) ** 2)[..., None]
    return (rng.integers(0, 60, (height, width, 3)) + 150 * blob).astype(np.uint8)


def flip_prompt(mu_x, mu_y, var_x, var_y, cov=0.0) -> ObjectPrompt:
    """A FLIP prompt with the Gaussian ``rho`` (normalized frame) and an unused box."""
    return ObjectPrompt(box_xyxy=np.zeros(4), rho=np.array([mu_x, mu_y, var_x, var_y, cov], np.float32))


PROMPTS = [flip_prompt(0.2, -0.2, 0.02, 0.03, 0.005), flip_prompt(-0.5, 0.4, 0.004, 0.002),
           flip_prompt(0.0, 0.0, 0.2, 0.1)]
