"""Mask statistics stored in FLIP HDF5 files: Gaussian moments (``positions``) and boxes (``instance_mask_bboxes``).

Frames (see ``baselines/base.py``):

* normalized frame: pixel column ``j`` of a ``W``-wide image sits at ``x = -1 + 2 j / (W - 1)``, row ``i`` at
  ``y = -1 + 2 i / (H - 1)`` (the official converter's ``linspace(-1, 1, W)`` / ``linspace(-1, 1, H)`` grid; x and y
  are scaled independently). A 1-pixel-wide (or tall) image has its single column (row) at -1, as
  ``linspace(-1, 1, 1)`` gives.
* pixel boxes: ``[x_min, y_min, x_max, y_max]`` inclusive pixel indices (XYXY), as the official file stores them.

Numerics of :func:`mask_to_rho`: the official converter computes the moments in float32 with torch
(``E[x^2] - E[x]^2`` after summing the whole image). Its last bits depend on the CPU's SIMD width (the golden file,
made on an AVX-512 machine, is not bit-reproduced by the same torch build on an AVX2 machine). We therefore compute
in float64 with centred sums (platform independent, more accurate) and round to float32. Against the official
values the difference is float32 rounding/cancellation noise: at most ~1.2e-7 absolute on the golden file
(e.g. a symmetric shape whose official covariance is 5.96e-08 gets ~0 here).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask_to_rho", "mask_to_bbox", "mask_to_bbox_official", "as_bool_mask"]


def as_bool_mask(mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array ``[H, W]``; accepts bool, or numbers (non-zero = object).

    Raises ``ValueError`` for anything that is not 2-D (a ``[H, W, 1]`` / ``[1, H, W]`` array is squeezed).
    """
    m = np.asarray(mask)
    if m.ndim == 3 and 1 in (m.shape[0], m.shape[-1]):
        m = m.reshape(m.shape[1:] if m.shape[0] == 1 else m.shape[:-1])
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D [H, W]; got shape {m.shape}")
    return m if m.dtype == np.bool_ else m != 0


def _normalized_grid(n: int) -> np.ndarray:
    """``linspace(-1, 1, n)`` in float64 (a single pixel sits at -1, as torch.linspace(-1, 1, 1) gives)."""
    return np.linspace(-1.0, 1.0, n, dtype=np.float64)


def mask_to_rho(mask: np.ndarray) -> np.ndarray:
    """Gaussian moments of a mask: float32 ``[mu_x, mu_y, var_x, var_y, cov_xy]`` in the normalized frame.

    ``mask``: bool (or 0/non-0) ``[H, W]``. Population moments (divide by the pixel count, no Bessel correction),
    the quantity the official COCO converter stores in ``positions``. A full-image mask gives
    ``mu = (0, 0)``, ``var ~= 1/3`` (exactly ``(W + 1) / (3 (W - 1))``), ``cov = 0``. An empty mask gives all zeros
    (as the official code does through its ``clip(sum, 1e-16)``); converters skip empty masks before this.
    """
    m = as_bool_mask(mask)
    h, w = m.shape
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return np.zeros(5, dtype=np.float32)
    r0, r1 = rows[0], rows[-1] + 1
    cols = np.flatnonzero(m[r0:r1].any(axis=0))
    # work on the bounding-box crop: cheap for small objects, exact for all
    c0, c1 = cols[0], cols[-1] + 1
    sub = m[r0:r1, c0:c1].astype(np.float64)
    col_counts, row_counts = sub.sum(axis=0), sub.sum(axis=1)  # exact integers in float64
    n = col_counts.sum()
    xs, ys = _normalized_grid(w)[c0:c1], _normalized_grid(h)[r0:r1]
    mu_x = float(col_counts @ xs) / n
    mu_y = float(row_counts @ ys) / n
    xc, yc = xs - mu_x, ys - mu_y
    var_x = float(col_counts @ (xc * xc)) / n
    var_y = float(row_counts @ (yc * yc)) / n
    cov = float(yc @ (sub @ xc)) / n  # sum_ij m_ij * yc_i * xc_j
    return np.array([mu_x, mu_y, var_x, var_y, cov], dtype=np.float32)


def mask_to_bbox(mask: np.ndarray) -> np.ndarray:
    """True tight box of a mask: float64 ``[x_min, y_min, x_max, y_max]``, inclusive pixel indices (XYXY).

    A single pixel at column 3, row 5 gives ``[3, 5, 3, 5]``. Raises ``ValueError`` for an empty mask (no box).
    This is the box the evaluation uses for box prompts (always recomputed from the decoded mask).
    """
    m = as_bool_mask(mask)
    cols = np.flatnonzero(m.any(axis=0))
    rows = np.flatnonzero(m.any(axis=1))
    if cols.size == 0:
        raise ValueError("mask_to_bbox: the mask is empty, it has no bounding box")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def mask_to_bbox_official(mask: np.ndarray) -> np.ndarray:
    """Box exactly as the official ``convert_coco_to_hdf5.py`` computes it (quirk included): float64 XYXY.

    The official code takes min/max over the coordinates of mask pixels that are ``> 0``, so column 0 and row 0
    never count: a mask touching the left (top) border gets ``x_min`` (``y_min``) of its first pixel column (row)
    after 0, and a mask lying entirely in column 0 (row 0) gets ``x_min = inf, x_max = -inf`` (likewise y).
    Otherwise it equals :func:`mask_to_bbox`. Raises ``ValueError`` for an empty mask (the official code returns
    None there and drops the instance).
    """
    m = as_bool_mask(mask)
    cols = np.flatnonzero(m.any(axis=0))
    rows = np.flatnonzero(m.any(axis=1))
    if cols.size == 0:
        raise ValueError("mask_to_bbox_official: the mask is empty, it has no bounding box")
    cols, rows = cols[cols > 0], rows[rows > 0]
    x_min, x_max = (float(cols[0]), float(cols[-1])) if cols.size else (np.inf, -np.inf)
    y_min, y_max = (float(rows[0]), float(rows[-1])) if rows.size else (np.inf, -np.inf)
    return np.array([x_min, y_min, x_max, y_max], dtype=np.float64)
