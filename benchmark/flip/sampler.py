"""FLIP foveal patch sampler: public API (native C++ extension when built, pure numpy fallback otherwise).

Both back ends give bit-identical results for the same inputs and seed (tested); ``native_available()`` says
which one runs. The algorithm is the official FLIP sampler (CognitiveModeling/FLIP ``ext/``), re-implemented.

Coordinate frames
-----------------
* **normalized frame** (``rho``, ``position``): x in [-1, 1] left to right, y in [-1, 1] top to bottom. Datasets
  measure masks with ``linspace(-1, 1, W)`` (column j at ``-1 + 2j/(W-1)``).
* ``rho`` = (mu_x, mu_y, var_x, var_y, cov_xy) float32 [..., 5]; ``position`` = (mu_x, mu_y, sigma_minor,
  sigma_major, rot_a, rot_b) float32 [..., 6] (:func:`rho_to_position`; ``sigma_x``/``sigma_y`` officially).
* **C-sampler pixel frame** (``centers_px``): continuous pixel coordinates, pixel (row i, col j) at (x=j, y=i);
  the sampler maps the normalized position with ``mu_px = (mu + 1) * W / 2`` (so +1 maps to W, not W-1),
  ``sigma_px = sigma * sqrt(2) * W / 2`` (``H / 2`` for y) and negates ``rot_a`` (:func:`sampler_params_px`).
  A sample (z_x, z_y) ~ N(0, I) becomes ``x = rot_a z_x s_x - rot_b z_y s_y + mu_x``,
  ``y = rot_b z_x s_x + rot_a z_y s_y + mu_y`` with those pixel-frame values.
* **model frame** (``coords``): 1 unit = 128 px, origin at the image centre: ``u = cx / 128 - W / 256``,
  ``v = cy / 128 - H / 256``.

Official behaviours kept for compatibility (all tested)
-------------------------------------------------------
* ``cov_xy == 0``: the rotation is (0, 1) whichever axis is wider, so a taller-than-wide prompt is sampled as
  wider-than-tall (``rho_to_position(..., fix_axis_aligned=True)`` orients it correctly; off by default).
* The eigen-sigmas are scaled by ``W / 2`` and ``H / 2`` as if they were axis-aligned, so on non-square images a
  rotated prompt is sampled with a covariance other than the prompt's (exactly ``2 D Sigma_rho D`` only when
  ``W == H``).
* ``mu_px = (mu + 1) * W / 2`` while datasets measure ``mu`` with ``linspace(-1, 1, W)``: up to 1 px shift.
* The overlap test sums areas with the multiplicities of the official hash lists, whose single ``next`` link per box
  can also drop earlier boxes from some cells; hence the threshold 2.67 > 1, and at small thresholds a few
  accepted patches (~0.1%) overlap more than the threshold says.

Randomness
----------
``seed`` (int in [0, 2**32)) is mixed into the 4-word state of a KISS + ziggurat generator (the official
generator, :class:`~benchmark.flip.sampler_reference.KissZiggurat`); ``rng_state=(jsr, jcong, w, z)`` sets the
state directly (e.g. the ``rng_state`` of a reference case, which replays the official candidate stream). Calls
share no state: the same arguments give the same result in any thread, in any order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmark.flip import sampler_reference as _ref
from benchmark.flip.sampler_reference import (
    MASK_GROUP_BOUNDS,
    PATCH_SIZES,
    MaskSamplingError,
    boundary_distance_map,
    seed_to_state,
)

try:  # the optional C++ extension (setup.py builds it when a compiler is present)
    from benchmark.flip import _sampler_native as _native
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _native = None

__all__ = [
    "MASK_GROUP_BOUNDS",
    "PATCH_SIZES",
    "MaskSamplingError",
    "PatchSample",
    "boundary_distance_groups",
    "boundary_distance_map",
    "extract_patches",
    "native_available",
    "plan_patches",
    "rho_to_position",
    "sample_mask_pixels",
    "sample_patches",
    "sample_patches_batch",
    "sampler_params_px",
    "seed_to_state",
]

F32 = np.float32
_FORCE_FALLBACK = False  # tests flip this to compare the two back ends


def native_available() -> bool:
    """True when the compiled extension ``benchmark.flip._sampler_native`` is importable (and not disabled)."""
    return _native is not None and not _FORCE_FALLBACK


def _use_native() -> bool:
    return native_available()


@dataclass
class PatchSample:
    """Patches of one object, one entry per patch size (sizes ascending, e.g. 1, 2, 4, 8, 16).

    patches: uint8 [n_p, p, p, C] per size, (row, col, channel) as the C code writes them; the model input is
        ``patches.transpose(0, 3, 1, 2).astype(float32) / 255``.
    coords: float32 [n_p, 2] patch centres in the model frame (cx/128 - W/256, cy/128 - H/256).
    target_indices: int32 [n_p] index of each patch in the token sequence without registers: sizes concatenated
        in the given order, each in acceptance order (so size i starts at sum of n_q for q before i).
    centers_px: float32 [n_p, 2] the same centres in the C-sampler pixel frame (x, y).
    planned: int32 [num sizes] per-size targets before rejection (:func:`plan_patches`).
    patch_sizes: the patch sizes, same order as the lists.
    """

    patches: list[np.ndarray]
    coords: list[np.ndarray]
    target_indices: list[np.ndarray]
    centers_px: list[np.ndarray]
    planned: np.ndarray
    patch_sizes: tuple[int, ...] = field(default=PATCH_SIZES)

    @property
    def seq_lengths(self) -> np.ndarray:
        """int64 [num sizes]: accepted patches per size."""
        return np.array([len(c) for c in self.coords], dtype=np.int64)

    @property
    def num_patches(self) -> int:
        return int(sum(len(c) for c in self.coords))


# ----------------------------------------------------------------------------------------------------------------
# Deterministic helpers
# ----------------------------------------------------------------------------------------------------------------
def rho_to_position(rho: np.ndarray, *, fix_axis_aligned: bool = False) -> np.ndarray:
    """rho float32 [..., 5] -> position float32 [..., 6] (normalized frame). See
    :func:`benchmark.flip.sampler_reference.rho_to_position` for the arithmetic and the ``cov_xy == 0`` caveat:
    by default the official behaviour (rotation (0, 1) whichever axis is wider) is kept; ``fix_axis_aligned=True``
    orients the major axis along y when ``var_y > var_x`` and ``cov_xy == 0``."""
    arr = np.asarray(rho)
    if arr.ndim == 0 or arr.shape[-1] != 5:
        raise ValueError(f"rho must have shape [..., 5], got {arr.shape}")
    flat = np.ascontiguousarray(arr, dtype=F32).reshape(-1, 5)
    if not np.all(np.isfinite(flat)):
        raise ValueError("rho contains NaN or inf")
    if _use_native():
        out = _native.rho_to_position(flat, fix_axis_aligned)
    else:
        out = _ref.rho_to_position(flat, fix_axis_aligned=fix_axis_aligned)
    if not np.all(np.isfinite(out)):
        raise ValueError("rho too large: the conversion overflows float32")
    return out.reshape(arr.shape[:-1] + (6,))


def sampler_params_px(position: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized position [6] -> float32 [6] (mu_x, mu_y, s_x, s_y, rot_a, rot_b) in the C-sampler pixel frame:
    ``(mu + 1) * W / 2``, ``sigma * sqrt(2) * W / 2`` (H for y), rot_a negated, rotation normalised."""
    pos = _check_position(position)
    return _ref.sampler_params_px(pos, int(height), int(width))


def plan_patches(
    sigma_x_px: float, sigma_y_px: float, num_tokens: int, patch_sizes=PATCH_SIZES, coverage: float = 1.44
) -> np.ndarray:
    """Patches per size (int32 [len(patch_sizes)]) for pixel sigmas (as the sampler uses them), coarse to fine:
    ``avg_p = trunc(float32(2 pi sx sy) * coverage / p**2)``, then from the largest size down
    ``n_p = max(0, min(remaining, avg_p))``. Matches the official table exactly."""
    return _ref.plan_patches(sigma_x_px, sigma_y_px, num_tokens, patch_sizes, coverage)


def extract_patches(image: np.ndarray, centers_px: np.ndarray, patch_size: int) -> np.ndarray:
    """Bilinear patches uint8 [n, p, p, C] of ``image`` uint8 [H, W, C] at ``centers_px`` float32 [n, 2] (x, y,
    C-sampler pixel frame). Exact official rule (float32, no FMA, roundf); centres must satisfy
    ``c - p/2 >= 0`` and ``c + p/2 < size - 1`` (ValueError otherwise)."""
    if _use_native():  # the extension checks shapes and bounds itself; the numpy checks cost more than it
        image = _ref.check_image(image)
        if isinstance(patch_size, bool) or int(patch_size) != patch_size:
            raise ValueError(f"patch_size must be an integer in [1, 1024], got {patch_size!r}")
        try:
            return _native.extract_patches(image, np.ascontiguousarray(centers_px, dtype=np.float32), int(patch_size))
        except ValueError:
            _ref._check_extract_args(image, centers_px, patch_size)  # the detailed message
            raise
    image, centers = _ref._check_extract_args(image, centers_px, patch_size)
    return _ref.extract_patches(image, centers, int(patch_size))


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------
def _check_position(position) -> np.ndarray:
    pos = np.asarray(position, dtype=F32)
    if pos.shape != (6,):
        raise ValueError(f"position must have shape [6], got {pos.shape}")
    vals = pos.tolist()
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"position contains NaN or inf: {vals}")
    if vals[2] < 0 or vals[3] < 0:
        raise ValueError(f"position sigmas must be >= 0, got {vals[2]}, {vals[3]}")
    return pos


def _resolve_state(seed, rng_state) -> tuple[int, int, int, int]:
    if rng_state is not None:
        if seed is not None:
            raise ValueError("give either seed or rng_state, not both")
        state = tuple(int(v) for v in rng_state)
        if len(state) != 4 or any(not 0 <= v <= 0xFFFFFFFF for v in state):
            raise ValueError(f"rng_state must be 4 integers in [0, 2**32), got {rng_state!r}")
        return state
    if seed is None:
        raise ValueError("a seed (int in [0, 2**32)) or an rng_state is required")
    return seed_to_state(seed)


def _check_sampling_args(num_tokens, patch_sizes, coverage, max_overlap_threshold):
    sizes = _ref._check_patch_sizes(patch_sizes)
    _ref._check_num_tokens(num_tokens)
    for name, val in (("coverage", coverage), ("max_overlap_threshold", max_overlap_threshold)):
        if not math.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {val}")
    return sizes


def _assemble(raw_centers, planned, image, sizes) -> PatchSample:
    h, w = image.shape[:2]
    patches, coords, indices = [], [], []
    start = 0
    for c, p in zip(raw_centers, sizes):
        patches.append(_ref.extract_patches(image, c, p))
        coords.append(_ref.model_frame_coords(c, h, w))
        indices.append(np.arange(start, start + len(c), dtype=np.int32))
        start += len(c)
    return PatchSample(patches, coords, indices, list(raw_centers), planned, tuple(sizes))


def _from_native(res, sizes) -> PatchSample:
    patches, coords, indices, centers, planned = res
    return PatchSample(list(patches), list(coords), list(indices), list(centers), planned, tuple(sizes))


def sample_patches(
    image: np.ndarray,
    position: np.ndarray,
    num_tokens: int,
    *,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    coverage: float = 1.44,
    max_overlap_threshold: float = 2.67,
    seed: int | None = None,
    rng_state: Sequence[int] | None = None,
) -> PatchSample:
    """Sample foveal patches of one object.

    image: uint8 [H, W, C] (RGB); position: float32 [6] normalized frame (:func:`rho_to_position`);
    num_tokens: token budget (sum of planned patches <= num_tokens). Candidates are drawn from the rotated
    Gaussian (pixel frame, see module docstring), rejected when the patch leaves the image
    (``c - p/2 < 0`` or ``c + p/2 >= size - 1``) or overlaps accepted patches by more than
    ``max_overlap_threshold * p**2`` (official spatial-hash semantics, see
    :class:`~benchmark.flip.sampler_reference.OverlapGrid`); at most 10x the planned count of candidates per size,
    sizes processed in the given (ascending) order. Deterministic given ``seed`` or ``rng_state``.
    Never reads outside the image: degenerate inputs give empty per-size arrays; NaN/inf raise ValueError.
    """
    img = _ref.check_image(image)
    pos = _check_position(position)
    sizes = _check_sampling_args(num_tokens, patch_sizes, coverage, max_overlap_threshold)
    state = _resolve_state(seed, rng_state)
    if _use_native():
        res = _native.sample_patches_batch(
            [img], pos[None], np.zeros(1, np.int64), np.array([state], dtype=np.uint32), int(num_tokens),
            list(sizes), float(coverage), float(max_overlap_threshold), 1,
        )[0]
        return _from_native(res, sizes)
    h, w = img.shape[:2]
    params = _ref.sampler_params_px(pos, h, w)
    raw = _ref.sample_centers(
        h, w, params, int(num_tokens), sizes, coverage, max_overlap_threshold, _ref.KissZiggurat(state)
    )
    return _assemble(raw.centers_px, raw.planned, img, sizes)


def sample_patches_batch(
    images: Sequence[np.ndarray],
    positions: np.ndarray,
    num_tokens: int,
    *,
    image_index: Sequence[int] | None = None,
    seeds: Sequence[int],
    patch_sizes: Sequence[int] = PATCH_SIZES,
    coverage: float = 1.44,
    max_overlap_threshold: float = 2.67,
    num_threads: int = 1,
) -> list[PatchSample]:
    """Sample many objects (possibly on several images) in one call; result i == ``sample_patches(images[
    image_index[i]], positions[i], num_tokens, seed=seeds[i], ...)``.

    positions: float32 [n, 6]; image_index: int [n] into ``images`` (default ``range(n)``); seeds: int [n].
    The native back end runs the objects on ``num_threads`` threads with the GIL released.
    """
    imgs = [_ref.check_image(im) for im in images]
    pos = np.asarray(positions, dtype=F32)
    if pos.ndim != 2 or pos.shape[1] != 6:
        raise ValueError(f"positions must have shape [n, 6], got {pos.shape}")
    n = pos.shape[0]
    idx = np.arange(n) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if idx.shape != (n,) or (n and (idx.min() < 0 or idx.max() >= len(imgs))):
        raise ValueError(f"image_index must be {n} integers in [0, {len(imgs)})")
    if len(seeds) != n:
        raise ValueError(f"need one seed per object: {len(seeds)} seeds for {n} objects")
    if not np.all(np.isfinite(pos)):
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise ValueError(f"positions[{bad}] contains NaN or inf: {pos[bad].tolist()}")
    if np.any(pos[:, 2:4] < 0):
        raise ValueError("position sigmas must be >= 0")
    sizes = _check_sampling_args(num_tokens, patch_sizes, coverage, max_overlap_threshold)
    if int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    states = np.array([seed_to_state(s) for s in seeds], dtype=np.uint32).reshape(n, 4)
    if _use_native():
        res = _native.sample_patches_batch(
            imgs, np.ascontiguousarray(pos), np.ascontiguousarray(idx), states, int(num_tokens), list(sizes),
            float(coverage), float(max_overlap_threshold), int(num_threads),
        )
        return [_from_native(r, sizes) for r in res]
    return [
        sample_patches(imgs[int(i)], p, num_tokens, patch_sizes=sizes, coverage=coverage,
                       max_overlap_threshold=max_overlap_threshold, seed=int(s))
        for i, p, s in zip(idx, pos, seeds)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Training-side helpers
# ----------------------------------------------------------------------------------------------------------------
def boundary_distance_groups(mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inside, outside): 7 float32 [k, 2] arrays (x=col, y=row) each, pixels whose L1 distance to the mask
    boundary is <= 2, 4, 8, 16, 32, 64, H*W (nested groups, official semantics), row-major order."""
    if _use_native():
        m = _ref._check_mask(mask).view(np.uint8)
        ins, outs = _native.boundary_distance_groups(m)
        return list(ins), list(outs)
    return _ref.boundary_distance_groups(mask)


def sample_mask_pixels(
    mask: np.ndarray,
    position: np.ndarray,
    samples_per_group: Sequence[int],
    *,
    seed: int | None = None,
    rng_state: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse mask supervision of one object: (values uint8 [n] in {0, 1}, coords float32 [n, 2] model frame).

    mask: bool/uint8 [H, W]; position: float32 [6] normalized frame; samples_per_group: 7 counts, each split
    half inside / half outside the mask (odd: one more outside). See
    :func:`benchmark.flip.sampler_reference.sample_mask_pixels` for the exact algorithm (5-sigma crop with pixel
    sigma = sigma * W / 2, no sqrt(2); nested distance groups; uniform pick + jitter in (-0.5, 0.5)).
    Raises MaskSamplingError when the crop holds no pixel of a needed kind.
    """
    m = _ref._check_mask(mask)
    pos = _check_position(position)
    spg = [int(v) for v in samples_per_group]
    if len(spg) != 7 or any(v < 0 for v in spg):
        raise ValueError(f"samples_per_group must be 7 non-negative integers, got {samples_per_group!r}")
    state = _resolve_state(seed, rng_state)
    if _use_native():
        try:
            return _native.sample_mask_pixels(m.view(np.uint8), pos, spg, np.array(state, dtype=np.uint32))
        except ValueError as exc:
            raise MaskSamplingError(str(exc)) from None
    return _ref.sample_mask_pixels(m, pos, spg, _ref.KissZiggurat(state))
