"""The one interface every segmentation model of the benchmark implements.

Coordinate conventions (used across flipbench):

* images are ``uint8 [H, W, 3]`` RGB, row-major ``[y, x, channel]``;
* masks are ``bool [H, W]`` at the image's native resolution;
* boxes are ``XYXY`` in **pixels**, inclusive pixel indices of the tight box of the ground-truth mask
  (``x_max`` is the last column that holds a mask pixel), as floats;
* ``rho`` is the Gaussian of the ground-truth mask in the FLIP HDF5 ``positions`` convention:
  ``[mu_x, mu_y, var_x, var_y, cov_xy]`` (float32) in the normalized frame where pixel column ``j`` sits at
  ``x = -1 + 2 j / (W - 1)`` and row ``i`` at ``y = -1 + 2 i / (H - 1)``.

A predictor sees one image at a time (``set_image``) and then any number of object prompts of that image
(``predict``). Models with an image encoder compute the embedding once in ``set_image`` and reuse it for all
objects; object-centric models (FLIP) do all their work in ``predict``. Stage timings go to ``self.timer``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from baselines.timing import StageTimer


@dataclass(frozen=True)
class ObjectPrompt:
    """Prompt for one object, derived from its ground-truth mask.

    box_xyxy: float64 [4], tight inclusive XYXY pixel box of the mask.
    rho: float32 [5], Gaussian moments of the mask (normalized frame, see module docstring).
    """

    box_xyxy: np.ndarray
    rho: np.ndarray


@dataclass(frozen=True)
class WeightsInfo:
    """Where a predictor's weights came from; recorded in every result.

    kind: ``"pretrained"`` (a real checkpoint), ``"random-init"`` (no checkpoint: numbers are meaningless
    except for shapes and timing) or ``"none"`` (weight-free reference predictor).
    source: file path or description; sha256: of the file when there is one.
    """

    kind: str
    source: str = ""
    sha256: str = ""


class Predictor(abc.ABC):
    """Box- or Gaussian-promptable single-object segmenter."""

    #: registry name, e.g. ``"sam-b"``
    name: str = ""

    def __init__(self) -> None:
        self.timer = StageTimer()
        self.weights = WeightsInfo(kind="none")

    @abc.abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Take the image ``uint8 [H, W, 3]`` RGB that the next ``predict`` calls refer to."""

    @abc.abstractmethod
    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        """Return one ``bool [H, W]`` mask per prompt, at the native resolution of the current image."""

    def num_parameters(self) -> int:
        """Number of model parameters (0 for weight-free references)."""
        return 0

    @property
    def device(self) -> str:
        return "cpu"

    def describe(self) -> dict:
        """Provenance of this predictor for result files."""
        return {
            "name": self.name,
            "parameters": self.num_parameters(),
            "weights_kind": self.weights.kind,
            "weights_source": self.weights.source,
            "weights_sha256": self.weights.sha256,
            "device": self.device,
        }
