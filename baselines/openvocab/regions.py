"""From a class's pixels to candidate masks (``sclip``, ``proxyclip``, ``proxyclip-fsa``) or prompt points
(``sclip-sam2.1``).

* :func:`components`: the connected components (8-connectivity) of a boolean map, largest first, as ``bool [n, H, W]``.
  A class's components in the semantic map are the candidates of the component models.
* :func:`region_points`: the prompt points of ``sclip-sam2.1``: the components of the pixels where the class's
  probability is at least :data:`POINT_CONFIDENCE` (0.7), those of at least :data:`MIN_REGION_PIXELS` (100) pixels,
  one positive point each at the region's interior-most pixel (maximum of the Euclidean distance transform of the
  region padded by one background pixel, ties to the first pixel in row-major order: the rule of the project's
  ``point`` prompt, so the point lies inside even a non-convex region).

The candidate stack of one class is bounded to :data:`MAX_CANDIDATE_BYTES` booleans: a map fragmented into more
components than that keeps its largest ones (a warning says so). Sizes are native-resolution pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import ndimage

#: prompt points of sclip-sam2.1: regions where the class's probability is at least this ...
POINT_CONFIDENCE = 0.7
#: ... with at least this many pixels
MIN_REGION_PIXELS = 100
#: largest candidate stack of one class (booleans), 512 MB
MAX_CANDIDATE_BYTES = 1 << 29

_EIGHT = np.ones((3, 3), dtype=bool)


def component_labels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels int32 [H, W], areas int64 [n])`` of the 8-connected components of ``bool [H, W]`` (label ``i + 1``
    is component ``i``, numbered in row-major order of their first pixel)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    return labels.astype(np.int32, copy=False), areas


def components(mask: np.ndarray, device="cpu", min_pixels: int = 1) -> torch.Tensor:
    """The 8-connected components of ``bool [H, W]`` with at least ``min_pixels`` pixels, largest first (ties in
    row-major order of their first pixel): ``bool [n, H, W]``."""
    labels, areas = component_labels(mask)
    height, width = labels.shape
    order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] >= min_pixels]
    limit = max(1, MAX_CANDIDATE_BYTES // max(1, height * width))
    if len(order) > limit:
        warnings.warn(f"{len(order)} components of a {width}x{height} class map: kept the {limit} largest "
                      f"(MAX_CANDIDATE_BYTES)", stacklevel=2)
        order = order[:limit]
    out = torch.zeros((len(order), height, width), dtype=torch.bool, device=device)
    lab = torch.from_numpy(labels).to(device)
    for i, k in enumerate(order):
        out[i] = lab == k + 1
    return out


def interior_point(region: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the pixel of ``bool [H, W]`` farthest from its boundary (exact Euclidean distance transform of the
    region padded by one background pixel; ties: the first pixel in row-major order)."""
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.pad(region[y0:y1, x0:x1], 1)
    distance = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x0 + x), int(y0 + y)


def region_points(probability: np.ndarray, confidence: float = POINT_CONFIDENCE,
                  min_pixels: int = MIN_REGION_PIXELS) -> np.ndarray:
    """``float64 [n, 2]`` prompt points ``(x, y)`` of a class's probability map ``[H, W]``: one per region of at least
    ``min_pixels`` pixels with probability ``>= confidence``, largest region first."""
    labels, areas = component_labels(np.asarray(probability) >= confidence)
    points = []
    for k in np.argsort(-areas, kind="stable"):
        if areas[k] < min_pixels:
            break
        points.append(interior_point(labels == k + 1))
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
