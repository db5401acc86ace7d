"""Pure numpy/Python reference of the FLIP patch sampler (the fallback behind :mod:`benchmark.flip.sampler`).

Every function here is the executable specification that the C++ extension (``native/sampler.cpp``) reproduces
bit-for-bit; both follow the official ``ext/`` C code of CognitiveModeling/FLIP (re-stated, not copied). Use the
public API in :mod:`benchmark.flip.sampler`, which dispatches to the native code when it is built.

Frames (see the module docstring of :mod:`benchmark.flip.sampler` for the full statement):

* normalized frame: x in [-1, 1] left to right, y in [-1, 1] top to bottom (``rho`` and ``position``);
* C-sampler pixel frame: continuous pixel coordinates, pixel (row i, col j) at (x=j, y=i);
  ``x_px = (mu_x + 1) * W / 2``, ``sigma_px = sigma * sqrt(2) * W / 2`` (``H / 2`` for y), ``rot_a`` negated;
* model frame: ``u = x_px / 128 - W / 256``, ``v = y_px / 128 - H / 256``.

Random numbers come from :class:`KissZiggurat`: Marsaglia's KISS generator (MWC + CONG + SHR3, 32-bit) with the
Marsaglia-Tsang ziggurat for normals (128 strips), exactly the generator of the official extension, so that a
given 4-word state reproduces the official sampler's candidate stream.

All float arithmetic is float32 with one rounding per operation (no fused multiply-add) unless a comment says
otherwise; the rare ziggurat wedge/tail paths use float64 ``math.exp``/``math.log`` (the C library), as the C code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32
PATCH_SIZES = (1, 2, 4, 8, 16)
NUM_MASK_GROUPS = 7
_M32 = 0xFFFFFFFF
_GAUSS_BUFFER = 256  # candidate pairs generated per refill
_GAUSS_REFILL_AT = 240  # refill once this many have been used (the last 16 of each buffer are never used)
_BOX_EPS = F32(1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Random numbers: KISS + ziggurat (Marsaglia & Tsang 2000; Leong et al. 2005)
# ----------------------------------------------------------------------------------------------------------------
def _ziggurat_tables() -> tuple[list[int], np.ndarray, np.ndarray]:
    """kn (uint32), wn, fn (float32) for 128 strips, computed in float64 like the reference C setup."""
    dn = 3.442619855899
    tn = dn
    vn = 9.91256303526217e-03
    m1 = 2147483648.0
    kn = [0] * 128
    wn = np.zeros(128, dtype=F32)
    fn = np.zeros(128, dtype=F32)
    q = vn / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = F32(q / m1)
    wn[127] = F32(dn / m1)
    fn[0] = F32(1.0)
    fn[127] = F32(math.exp(-0.5 * dn * dn))
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = F32(math.exp(-0.5 * dn * dn))
        wn[i] = F32(dn / m1)
    return kn, wn, fn


_KN, _WN, _FN = _ziggurat_tables()
_WN_F = [float(v) for v in _WN]
_FN_F = [float(v) for v in _FN]


def _f32(x: float) -> float:
    """Round a Python float (float64) to the nearest float32 value (returned as a Python float)."""
    return float(F32(x))


def seed_to_state(seed: int) -> tuple[int, int, int, int]:
    """Mix an integer seed in [0, 2**32) into the 4-word KISS state (jsr, jcong, w, z).

    Same mixing as the official ``initialize_ziggurat(seed)``: ``jsr = seed ^ 0xCAFEBABE``,
    ``jcong = seed * 69069 + 1234567``, ``w = seed * 1664525 + 1013904223``, ``z = seed * 18000 + 987654321``
    (all mod 2**32).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _M32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return (
        (seed ^ 0xCAFEBABE) & _M32,
        (seed * 69069 + 1234567) & _M32,
        (seed * 1664525 + 1013904223) & _M32,
        (seed * 18000 + 987654321) & _M32,
    )


class KissZiggurat:
    """Deterministic generator: 32-bit KISS integers, ziggurat normals, uniforms. State = (jsr, jcong, w, z).

    ``kiss()`` = ``(MWC ^ CONG) + SHR3``; ``shr3()`` advances only the SHR3 part; ``uniform()`` is
    ``0.5 + int32(kiss) * 0.2328306e-09`` (float64, rounded to float32); ``normal()`` is the 128-strip ziggurat
    returning float32. Instances are independent (no global state).
    """

    __slots__ = ("jsr", "jcong", "w", "z")

    def __init__(self, state: tuple[int, int, int, int]):
        self.jsr, self.jcong, self.w, self.z = (int(s) & _M32 for s in state)

    @classmethod
    def from_seed(cls, seed: int) -> KissZiggurat:
        return cls(seed_to_state(seed))

    def state(self) -> tuple[int, int, int, int]:
        return (self.jsr, self.jcong, self.w, self.z)

    def shr3(self) -> int:
        jz = self.jsr
        j = jz
        j ^= (j << 13) & _M32
        j ^= j >> 17
        j ^= (j << 5) & _M32
        self.jsr = j
        return (jz + j) & _M32

    def kiss(self) -> int:
        self.z = 36969 * (self.z & 65535) + (self.z >> 16)
        self.w = 18000 * (self.w & 65535) + (self.w >> 16)
        mwc = ((self.z << 16) + self.w) & _M32
        self.jcong = (69069 * self.jcong + 1234567) & _M32
        return ((mwc ^ self.jcong) + self.shr3()) & _M32

    def _kiss_i32(self) -> int:
        """The next KISS value read as a signed 32-bit integer."""
        k = self.kiss()
        return k - 0x100000000 if k >= 0x80000000 else k

    def _uni64(self) -> float:
        return 0.5 + self._kiss_i32() * 0.2328306e-09

    def uniform(self) -> float:
        """Uniform float32 in [0, 1] (as a Python float)."""
        return _f32(self._uni64())

    def normal(self) -> float:
        """Standard normal float32 (as a Python float): the official r4_nor and its r4_nor_fix loop in one loop
        (same draws in the same order)."""
        r = _f32(3.442620)
        while True:
            hz = self._kiss_i32()
            iz = hz & 127
            x = _f32(_f32(hz) * _WN_F[iz])
            if abs(hz) < _KN[iz]:
                return x
            if iz == 0:  # the base strip: a draw from the tail beyond r
                while True:
                    x = _f32(-math.log(self._uni64()) * 0.2904764)
                    y = _f32(-math.log(self._uni64()))
                    if not (_f32(y + y) < _f32(x * x)):
                        break
                return _f32(r + x) if hz > 0 else _f32(-r - x)
            if _FN_F[iz] + self._uni64() * _f32(_FN_F[iz - 1] - _FN_F[iz]) < math.exp(-0.5 * x * x):
                return x


# ----------------------------------------------------------------------------------------------------------------
# rho -> position
# ----------------------------------------------------------------------------------------------------------------
def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 fused multiply-add ``a * b + c`` (elementwise), emulated with float64.

    ``a * b`` is exact in float64; the float64 sum ``s`` and its exact error ``e`` (TwoSum) decide the one case
    where rounding ``s`` to float32 could differ from rounding the exact value: ``s`` exactly halfway between
    two float32 values.
    """
    a64, b64, c64 = (np.asarray(v, dtype=F32).astype(np.float64) for v in (a, b, c))
    p = a64 * b64
    with np.errstate(all="ignore"):
        s = p + c64
        bb = s - p
        e = (p - (s - bb)) + (c64 - bb)
        r = s.astype(F32)
        r64 = r.astype(np.float64)
        up = np.nextafter(r, F32(np.inf))
        down = np.nextafter(r, F32(-np.inf))
        half_up = (r64 + up.astype(np.float64)) * 0.5
        half_down = (r64 + down.astype(np.float64)) * 0.5
        r = np.where((s == half_up) & (e > 0), up, r)
        r = np.where((s == half_down) & (e < 0), down, r)
        # s == midpoint but rounded the other way by ties-to-even:
        r = np.where((s == half_up) & (e < 0) & (r == up), np.nextafter(up, F32(-np.inf)), r)
        r = np.where((s == half_down) & (e > 0) & (r == down), np.nextafter(down, F32(np.inf)), r)
        return np.where(np.isfinite(s), r, s.astype(F32)).astype(F32)


def rho_to_position(rho: np.ndarray, *, fix_axis_aligned: bool = False) -> np.ndarray:
    """Convert rho = (mu_x, mu_y, var_x, var_y, cov_xy) [..., 5] to position [..., 6] (float32, normalized frame).

    position = (mu_x, mu_y, sigma_minor, sigma_major, rot_a, rot_b): ``sigma_minor <= sigma_major`` are the square
    roots of the covariance eigenvalues (``sigma_x``/``sigma_y`` in the official naming) and (rot_a, rot_b) is a
    unit vector. Arithmetic (float32): ``d = vx - vy``, ``s = vx + vy``,
    ``term = sqrt(max(fma(d, d, 4 * cxy**2), 1e-16))``, ``sigma_minor = sqrt(max((s - term) * 0.5, 1e-16))``,
    ``sigma_major = sqrt(max((s + term) * 0.5, 1e-16))``, ``a0 = 2 cxy / max(d + term, 1e-16)``,
    ``scale = sqrt(max(fma(a0, a0, 1), 1e-16))``, ``rot_b = 1 / scale``, ``rot_a = a0 * rot_b``.

    Agreement with the official build: mu and sigma bit-exact; rot within 2 float32 ulps (the official build uses
    the CPU's approximate reciprocal, e.g. rot_b = 0.99999994 where we return 1.0).

    With ``cov_xy == 0`` the official code always returns rotation (0, 1) whichever axis is wider, so a mask taller
    than wide is treated as wider than tall. ``fix_axis_aligned=False`` (default) keeps that official behaviour;
    ``True`` returns rotation (1, 0) instead when ``cov_xy == 0`` and ``var_y > var_x`` (the true major axis).

    Raises ValueError for a last dimension other than 5 or non-finite values.
    """
    rho = np.asarray(rho)
    if rho.ndim == 0 or rho.shape[-1] != 5:
        raise ValueError(f"rho must have shape [..., 5], got {rho.shape}")
    rho = rho.astype(F32, copy=False)
    if not np.all(np.isfinite(rho)):
        raise ValueError("rho contains NaN or inf")
    vx, vy, cxy = rho[..., 2], rho[..., 3], rho[..., 4]
    tiny = F32(1e-16)
    with np.errstate(all="ignore"):  # absurdly large inputs overflow to inf / NaN like the C code
        d = vx - vy
        s = vx + vy
        term = np.sqrt(np.fmax(fma_f32(d, d, F32(4.0) * (cxy * cxy)), tiny))
        sigma_minor = np.sqrt(np.fmax((s - term) * F32(0.5), tiny))
        sigma_major = np.sqrt(np.fmax((s + term) * F32(0.5), tiny))
        a0 = (cxy + cxy) / np.fmax(d + term, tiny)
        scale = np.sqrt(np.fmax(fma_f32(a0, a0, F32(1.0)), tiny))
        rot_b = F32(1.0) / scale
        rot_a = a0 * rot_b
    if fix_axis_aligned:
        swap = (cxy == 0) & (vy > vx)
        rot_a = np.where(swap, F32(1.0), rot_a)
        rot_b = np.where(swap, F32(0.0), rot_b)
    out = np.stack([rho[..., 0], rho[..., 1], sigma_minor, sigma_major, rot_a, rot_b], axis=-1)
    return out.astype(F32, copy=False)


def sampler_params_px(position: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized position [6] -> C-sampler pixel-frame parameters float32 [6] (mu_x, mu_y, s_x, s_y, rot_a, rot_b).

    float32, in this order: ``s = sigma * sqrt(2)`` (sqrt(2) rounded to float32), ``mu_x = (mu_x + 1) * W / 2``,
    ``s_x = s * W / 2``, same with H for y, ``rot_a = -rot_a``; then (rot_a, rot_b) are divided by
    ``scale = sqrt(rot_a**2 + rot_b**2)`` (float32) when ``scale > 1e-16``.
    """
    p = np.asarray(position, dtype=F32)
    w, h = F32(width), F32(height)
    two = F32(2.0)
    sqrt2 = F32(math.sqrt(2.0))
    mu_x = (p[0] + F32(1.0)) * w / two
    mu_y = (p[1] + F32(1.0)) * h / two
    s_x = (p[2] * sqrt2) * w / two
    s_y = (p[3] * sqrt2) * h / two
    rot_a, rot_b = -p[4], p[5]
    scale = F32(math.sqrt(float(rot_a * rot_a + rot_b * rot_b)))
    if scale > F32(1e-16):
        rot_a, rot_b = rot_a / scale, rot_b / scale
    return np.array([mu_x, mu_y, s_x, s_y, rot_a, rot_b], dtype=F32)


# ----------------------------------------------------------------------------------------------------------------
# Patch budget
# ----------------------------------------------------------------------------------------------------------------
def plan_patches(
    sigma_x_px: float, sigma_y_px: float, num_tokens: int, patch_sizes=PATCH_SIZES, coverage: float = 1.44
) -> np.ndarray:
    """Number of patches per size (int32 [len(patch_sizes)]) before rejection, coarse to fine.

    ``area = float32(2 * pi * sigma_x_px * sigma_y_px)`` (product in float64), ``avg_i = trunc(area * coverage /
    p_i**2)`` in float32; then from the largest size down ``n_i = max(0, min(remaining, avg_i))``,
    ``remaining -= n_i``. Sigmas are pixel-frame sigmas as the sampler uses them (already times sqrt(2) * W / 2).
    """
    sizes = _check_patch_sizes(patch_sizes)
    sx, sy, cov = F32(sigma_x_px), F32(sigma_y_px), F32(coverage)
    if not (np.isfinite(sx) and np.isfinite(sy) and np.isfinite(cov)):
        raise ValueError("sigma_x_px, sigma_y_px and coverage must be finite")
    num_tokens = _check_num_tokens(num_tokens)
    area = F32(2.0 * math.pi * float(sx) * float(sy))
    out = np.zeros(len(sizes), dtype=np.int32)
    remaining = num_tokens
    for i in range(len(sizes) - 1, -1, -1):
        p = F32(sizes[i])
        with np.errstate(over="ignore"):
            avg = (area * cov) / (p * p)
        n = min(F32(remaining), avg)  # compared in float32; truncation happens after clamping
        n = int(n) if n > 0 else 0
        out[i] = n
        remaining -= n
    return out


def _check_patch_sizes(patch_sizes) -> tuple[int, ...]:
    if isinstance(patch_sizes, tuple) and patch_sizes == PATCH_SIZES:
        return PATCH_SIZES  # fast path for the default
    sizes = tuple(int(p) for p in patch_sizes)
    if len(sizes) == 0 or any(p != q for p, q in zip(sizes, patch_sizes)):
        raise ValueError(f"patch_sizes must be a non-empty sequence of integers, got {patch_sizes!r}")
    if any(p < 1 or p > 1024 for p in sizes) or any(a >= b for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"patch_sizes must be strictly increasing integers in [1, 1024], got {sizes}")
    return sizes


def _check_num_tokens(num_tokens) -> int:
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)):
        raise TypeError(f"num_tokens must be an int, got {type(num_tokens).__name__}")
    if not 0 <= int(num_tokens) <= 1 << 24:
        raise ValueError(f"num_tokens must be in [0, 2**24], got {num_tokens}")
    return int(num_tokens)


# ----------------------------------------------------------------------------------------------------------------
# Bilinear extraction
# ----------------------------------------------------------------------------------------------------------------
def round_half_away_f32(v: np.ndarray) -> np.ndarray:
    """``roundf`` for non-negative float32 values (half away from zero), without the ``floor(v + 0.5)`` pitfall."""
    fl = np.floor(v)
    return fl + ((v - fl) >= F32(0.5)).astype(F32)


def centers_in_bounds(centers_px: np.ndarray, patch_size: int, height: int, width: int) -> np.ndarray:
    """bool [n]: the sampler's acceptance rule ``c - p/2 >= 0`` and ``c + p/2 < W - 1`` (same for y), float32."""
    c = np.asarray(centers_px, dtype=F32)
    hp = F32(patch_size / 2.0)
    with np.errstate(invalid="ignore"):
        return (
            (c[:, 0] - hp >= F32(0)) & (c[:, 0] + hp < F32(width - 1))
            & (c[:, 1] - hp >= F32(0)) & (c[:, 1] + hp < F32(height - 1))
        )


def extract_patches(image: np.ndarray, centers_px: np.ndarray, patch_size: int) -> np.ndarray:
    """Bilinear patches uint8 [n, p, p, C] around centres float32 [n, 2] (x, y) in the C-sampler pixel frame.

    Patch pixel (row r, col c): ``x = cx + (c - p/2 + 0.5)``, ``y = cy + (r - p/2 + 0.5)``, ``x0 = trunc(x)``,
    ``dx = x - x0`` (same for y), ``v = I[y0,x0](1-dx)(1-dy) + I[y0,x0+1] dx(1-dy) + I[y0+1,x0](1-dx)dy +
    I[y0+1,x0+1] dx dy`` evaluated left to right in float32, output ``roundf(v)``. Centres must satisfy
    :func:`centers_in_bounds` (raises ValueError otherwise), which keeps every read inside the image.
    """
    image, centers = _check_extract_args(image, centers_px, patch_size)
    n, p = centers.shape[0], int(patch_size)
    c_count = image.shape[2]
    if n == 0:
        return np.zeros((0, p, p, c_count), dtype=np.uint8)
    hp = F32(p / 2.0)
    offs = (np.arange(p, dtype=F32) - hp) + F32(0.5)  # [p]
    xs = centers[:, 0, None] + offs[None, :]  # [n, p] (column offsets)
    ys = centers[:, 1, None] + offs[None, :]  # [n, p] (row offsets)
    x0 = xs.astype(np.int64)
    y0 = ys.astype(np.int64)
    dx = (xs - x0.astype(F32))[:, None, :, None]  # [n, 1, p, 1]
    dy = (ys - y0.astype(F32))[:, :, None, None]  # [n, p, 1, 1]
    yy, xx = y0[:, :, None], x0[:, None, :]
    f00 = image[yy, xx].astype(F32)
    f01 = image[yy, xx + 1].astype(F32)
    f10 = image[yy + 1, xx].astype(F32)
    f11 = image[yy + 1, xx + 1].astype(F32)
    one = F32(1.0)
    v = f00 * (one - dx) * (one - dy)
    v = v + f01 * dx * (one - dy)
    v = v + f10 * (one - dx) * dy
    v = v + f11 * dx * dy
    return round_half_away_f32(v).astype(np.uint8)


def _check_extract_args(image, centers_px, patch_size) -> tuple[np.ndarray, np.ndarray]:
    image = check_image(image)
    if isinstance(patch_size, bool) or int(patch_size) != patch_size or not 1 <= int(patch_size) <= 1024:
        raise ValueError(f"patch_size must be an integer in [1, 1024], got {patch_size!r}")
    centers = np.ascontiguousarray(centers_px, dtype=F32)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError(f"centers_px must have shape [n, 2], got {centers.shape}")
    ok = centers_in_bounds(centers, int(patch_size), image.shape[0], image.shape[1])
    if not np.all(ok):
        bad = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"centre {bad} = {centers[bad].tolist()} puts a {patch_size}px patch outside the image "
            f"{image.shape[1]}x{image.shape[0]} (need c - p/2 >= 0 and c + p/2 < size - 1)"
        )
    return image, centers


def check_image(image) -> np.ndarray:
    """Validate an image: uint8 [H, W, C] with H, W, C >= 1; returns a C-contiguous array."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"image must be uint8 [H, W, C] with non-zero sizes, got {image.dtype} {image.shape}")
    if max(image.shape[:2]) > 1 << 20:
        raise ValueError(f"image too large: {image.shape}")
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------------------------------
# Overlap test (spatial hash grid, official semantics)
# ----------------------------------------------------------------------------------------------------------------
class OverlapGrid:
    """Spatial hash of accepted patch boxes with the official accept/reject semantics.

    Cells are squares of side ``cell_size`` (half the patch size with the largest planned count). A box is linked
    into every cell it touches through ONE ``next`` link per box (as in the official C code): after insertion all
    those cells start with the new box, followed by the previous content of the LAST cell touched (row-major
    order). The overlap of a candidate is the float32 sum, over the cells it touches (row-major) and the boxes
    reachable from each cell, of the intersection areas of boxes that overlap by more than 1e-6; the candidate is
    rejected as soon as the sum exceeds ``threshold * p**2``. Boxes can therefore count several times, which is why
    the official threshold (2.67) is above 1.
    """

    def __init__(self, cell_size: float):
        self.cell = F32(cell_size)
        self.heads: dict[tuple[int, int], int] = {}
        self.boxes: list[tuple[float, float, float, float]] = []
        self.next: list[int] = []

    def _cells(self, x_min, y_min, x_max, y_max):
        cs = self.cell
        cx0, cy0 = math.floor(x_min / cs), math.floor(y_min / cs)
        cx1, cy1 = math.floor(x_max / cs), math.floor(y_max / cs)
        for cy in range(int(cy0), int(cy1) + 1):
            for cx in range(int(cx0), int(cx1) + 1):
                yield cx, cy

    @staticmethod
    def _box(x, y, p):
        hs = F32(p / 2.0)
        return (x - hs, y - hs, x + hs, y + hs)

    def add(self, x: np.float32, y: np.float32, p: int) -> None:
        box = self._box(x, y, p)
        idx = len(self.boxes)
        self.boxes.append(box)
        self.next.append(-1)
        for key in self._cells(*box):
            self.next[idx] = self.heads.get(key, -1)
            self.heads[key] = idx

    def too_much_overlap(self, x: np.float32, y: np.float32, p: int, threshold: np.float32) -> bool:
        x_min, y_min, x_max, y_max = self._box(x, y, p)
        pa = F32(p) * F32(p)
        limit = pa * threshold
        total = F32(0.0)
        eps = _BOX_EPS
        for key in self._cells(x_min, y_min, x_max, y_max):
            b = self.heads.get(key, -1)
            while b != -1:
                bx0, by0, bx1, by1 = self.boxes[b]
                if not (x_max < bx0 + eps or x_min > bx1 - eps or y_max < by0 + eps or y_min > by1 - eps):
                    ow = (bx1 if x_max > bx1 else x_max) - (x_min if x_min > bx0 else bx0)
                    oh = (by1 if y_max > by1 else y_max) - (y_min if y_min > by0 else by0)
                    total = F32(total + ow * oh)
                    if total > limit:
                        return True
                b = self.next[b]
        return False


# ----------------------------------------------------------------------------------------------------------------
# Sampler
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RawSample:
    """Accepted centres (C-sampler pixel frame, float32 [n_p, 2]) per patch size and the planned counts."""

    centers_px: list[np.ndarray]
    planned: np.ndarray


def _fill_candidates(rng: KissZiggurat, params: np.ndarray) -> tuple[list[float], list[float]]:
    mu_x, mu_y, s_x, s_y, rot_a, rot_b = (F32(v) for v in params)
    zx = np.empty(_GAUSS_BUFFER, dtype=F32)
    zy = np.empty(_GAUSS_BUFFER, dtype=F32)
    for i in range(_GAUSS_BUFFER):
        zx[i] = rng.normal()
        zy[i] = rng.normal()
    zx = zx * s_x
    zy = zy * s_y
    # The fused multiply-adds reproduce the official (-O3 -march=native) build bit-for-bit on the fixtures.
    xs = fma_f32(-rot_b, zy, fma_f32(rot_a, zx, mu_x))
    ys = fma_f32(rot_b, zx, rot_a * zy) + mu_y
    return xs.tolist(), ys.tolist()


def sample_centers(
    height: int,
    width: int,
    params_px: np.ndarray,
    num_tokens: int,
    patch_sizes=PATCH_SIZES,
    coverage: float = 1.44,
    max_overlap_threshold: float = 2.67,
    rng: KissZiggurat | None = None,
) -> RawSample:
    """Sample accepted patch centres for one object (official algorithm, C-sampler pixel frame).

    ``params_px`` = :func:`sampler_params_px` output. Candidates come in buffers of 256 (z_x, z_y) normal pairs
    (``x = rot_a*z_x*s_x - rot_b*z_y*s_y + mu_x``, ``y = rot_b*z_x*s_x + rot_a*z_y*s_y + mu_y``); a buffer is
    refilled when 240 are used. Patch sizes are processed in the given order (fine to coarse), each with at most
    10x its planned count of candidates; a candidate is rejected outside the image (:func:`centers_in_bounds`) or
    when :class:`OverlapGrid` reports too much overlap.
    """
    sizes = _check_patch_sizes(patch_sizes)
    planned = plan_patches(params_px[2], params_px[3], num_tokens, sizes, coverage)
    grid = OverlapGrid(F32(sizes[int(np.argmax(planned))]) / F32(2.0))
    thr = F32(max_overlap_threshold)
    wl, hl = F32(width - 1), F32(height - 1)
    xs, ys = _fill_candidates(rng, params_px)
    pos = 0
    out = []
    for si, p in enumerate(sizes):
        hp = F32(p / 2.0)
        accepted: list[tuple[np.float32, np.float32]] = []
        attempts, target = 0, int(planned[si])
        while len(accepted) < target and attempts < 10 * target:
            attempts += 1
            if pos >= _GAUSS_REFILL_AT:
                xs, ys = _fill_candidates(rng, params_px)
                pos = 0
            x, y = F32(xs[pos]), F32(ys[pos])
            pos += 1
            if not (x - hp >= 0 and x + hp < wl and y - hp >= 0 and y + hp < hl):
                continue
            if grid.too_much_overlap(x, y, p, thr):
                continue
            grid.add(x, y, p)
            accepted.append((x, y))
        out.append(np.array(accepted, dtype=F32).reshape(-1, 2))
    return RawSample(centers_px=out, planned=planned)


def model_frame_coords(centers_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """C-sampler pixel centres float32 [n, 2] -> model frame (cx/128 - W/256, cy/128 - H/256), float32."""
    c = np.asarray(centers_px, dtype=F32).reshape(-1, 2)
    off = np.array([F32(width) / F32(256.0), F32(height) / F32(256.0)], dtype=F32)
    return (c / F32(128.0) - off).astype(F32)


# ----------------------------------------------------------------------------------------------------------------
# Training-side helpers: boundary-distance groups and sparse mask-pixel sampling
# ----------------------------------------------------------------------------------------------------------------
#: Inclusive upper bounds of the 7 (nested) boundary-distance groups; the last one is H*W (everything).
MASK_GROUP_BOUNDS = (2, 4, 8, 16, 32, 64)


class MaskSamplingError(ValueError):
    """The mask cannot provide the requested samples (e.g. no pixel inside, or none outside, the crop)."""


def boundary_distance_map(mask: np.ndarray) -> np.ndarray:
    """int32 [H, W]: L1 (4-connected) grid distance of every pixel to the nearest boundary pixel.

    A boundary pixel is one with a 4-neighbour of the other value (distance 0). With no boundary at all (constant
    mask) every pixel gets ``H + W``. Computed separably (exact L1 distance transform), equal to the official BFS.
    """
    m = _check_mask(mask)
    h, w = m.shape
    seed = np.zeros((h, w), dtype=bool)
    seed[1:, :] |= m[1:, :] != m[:-1, :]
    seed[:-1, :] |= m[:-1, :] != m[1:, :]
    seed[:, 1:] |= m[:, 1:] != m[:, :-1]
    seed[:, :-1] |= m[:, :-1] != m[:, 1:]
    inf = h + w
    if not seed.any():
        return np.full((h, w), inf, dtype=np.int32)
    big = np.int64(4 * (h + w) + 4)
    g = np.where(seed, 0, big).astype(np.int64)
    for j in range(1, w):  # along rows, forward and backward
        np.minimum(g[:, j], g[:, j - 1] + 1, out=g[:, j])
    for j in range(w - 2, -1, -1):
        np.minimum(g[:, j], g[:, j + 1] + 1, out=g[:, j])
    for i in range(1, h):  # then along columns
        np.minimum(g[i], g[i - 1] + 1, out=g[i])
    for i in range(h - 2, -1, -1):
        np.minimum(g[i], g[i + 1] + 1, out=g[i])
    return g.astype(np.int32)


def _check_mask(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or min(m.shape) < 1:
        raise ValueError(f"mask must be a 2-D array [H, W] with non-zero sizes, got shape {m.shape}")
    if m.dtype != bool:
        m = m != 0
    return np.ascontiguousarray(m)


def boundary_distance_groups(mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pixel coordinates grouped by distance to the mask boundary (official semantics).

    Returns ``(inside, outside)``, each a list of 7 float32 arrays [k_g, 2] of pixel coordinates (x=col, y=row),
    row-major order. Group g holds every pixel with distance <= bound_g, bounds 2, 4, 8, 16, 32, 64, H*W: the
    groups are NESTED (as in the official C code, whose comment describes disjoint ranges), group 6 = all pixels.
    """
    m = _check_mask(mask)
    dist = boundary_distance_map(m)
    bounds = MASK_GROUP_BOUNDS + (m.shape[0] * m.shape[1],)
    rows, cols = np.indices(m.shape)
    xy = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(F32)
    d, inside = dist.ravel(), m.ravel()
    ins, outs = [], []
    for b in bounds:
        sel = d <= b
        ins.append(xy[sel & inside])
        outs.append(xy[sel & ~inside])
    return ins, outs


def mask_crop_box(height: int, width: int, mu_x: float, mu_y: float, sigma_iso: float) -> tuple[int, int, int, int]:
    """Crop (x_min, y_min, x_max, y_max), inclusive, of the 5-sigma square used by the mask sampler (float32).

    ``x_min = max(0, floor(mu_x - 5 s))``, ``x_max = min(W - 1, ceil(mu_x + 5 s))`` (same for y); the crop is
    skipped (whole mask used) when it covers more than 90% of both dimensions. Raises MaskSamplingError when the
    box misses the image.
    """
    mu_x, mu_y, s = F32(mu_x), F32(mu_y), F32(sigma_iso)
    five = F32(5.0)
    lo_x, lo_y = np.floor(mu_x - five * s), np.floor(mu_y - five * s)
    hi_x, hi_y = np.ceil(mu_x + five * s), np.ceil(mu_y + five * s)
    if not all(np.isfinite(v) for v in (lo_x, lo_y, hi_x, hi_y)):
        raise MaskSamplingError("non-finite crop box (check the position)")
    x_min = int(max(0.0, min(float(lo_x), float(width))))
    y_min = int(max(0.0, min(float(lo_y), float(height))))
    x_max = int(min(float(width - 1), max(float(hi_x), -1.0)))
    y_max = int(min(float(height - 1), max(float(hi_y), -1.0)))
    if x_max - x_min + 1 <= 0 or y_max - y_min + 1 <= 0:
        raise MaskSamplingError(f"the 5-sigma box around ({mu_x}, {mu_y}) misses the {width}x{height} mask")
    if x_max - x_min + 1 > width * 0.9 and y_max - y_min + 1 > height * 0.9:
        return 0, 0, width - 1, height - 1
    return x_min, y_min, x_max, y_max


def mask_sampler_params(position: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    """(mu_x, mu_y, sigma_x, sigma_y) in pixels for the mask sampler: ``(mu + 1) * W / 2`` and ``sigma * W / 2``
    computed in float64 from the float32 position and rounded to float32 (no sqrt(2) factor here)."""
    p = np.asarray(position, dtype=F32)
    vals = ((float(p[0]) + 1) * width / 2, (float(p[1]) + 1) * height / 2, float(p[2]) * width / 2,
            float(p[3]) * height / 2)
    return tuple(_f32(v) for v in vals)


def sample_mask_pixels(
    mask: np.ndarray, position: np.ndarray, samples_per_group, rng: KissZiggurat
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse training targets: (values uint8 [n] in {0, 1}, coords float32 [n, 2] model frame), n = sum(groups).

    Official algorithm: crop the mask to :func:`mask_crop_box` (sigma_iso = max of the pixel sigmas), group the
    crop's pixels with :func:`boundary_distance_groups`, then for each group g with ``k = samples_per_group[g]``
    draw ``k // 2`` inside and ``k - k // 2`` outside samples. Each sample picks a pixel uniformly
    (``shr3() % count``) and jitters it by ``uniform() - 0.5`` in x then y; an empty group borrows from groups
    g-1, g+1, g-2, g+2, ... . Coordinates: ``(x + x_min) / 128 - W / 256`` (same for y). Raises MaskSamplingError
    when no pixel of the needed kind exists in the crop.
    """
    m = _check_mask(mask)
    h, w = m.shape
    spg = [int(v) for v in samples_per_group]
    if len(spg) != NUM_MASK_GROUPS or any(v < 0 for v in spg):
        raise ValueError(f"samples_per_group must be 7 non-negative integers, got {samples_per_group!r}")
    mu_x, mu_y, s_x, s_y = mask_sampler_params(position, h, w)
    x_min, y_min, x_max, y_max = mask_crop_box(h, w, mu_x, mu_y, s_x if s_x > s_y else s_y)
    ins, outs = boundary_distance_groups(m[y_min:y_max + 1, x_min:x_max + 1])
    values: list[int] = []
    xs: list[float] = []
    ys: list[float] = []
    half = F32(0.5)
    for g, need in enumerate(spg):
        for is_inside, groups in ((1, ins), (0, outs)):
            todo = need // 2 if is_inside else need - need // 2
            got = 0
            offset = 0
            while offset < NUM_MASK_GROUPS and got < todo:
                for src in (g - offset, g + offset):
                    if not 0 <= src < NUM_MASK_GROUPS or got >= todo or len(groups[src]) == 0:
                        continue
                    pts = groups[src]
                    for _ in range(todo - got):
                        base = pts[rng.shr3() % len(pts)]
                        px = F32(rng.uniform()) - half
                        py = F32(rng.uniform()) - half
                        xs.append(base[0] + px)
                        ys.append(base[1] + py)
                        values.append(is_inside)
                    got = todo
                offset += 1
            if got < todo:
                kind = "inside" if is_inside else "outside"
                raise MaskSamplingError(f"no mask pixel {kind} the object in the sampling crop")
    x = np.array(xs, dtype=F32) + F32(x_min)
    y = np.array(ys, dtype=F32) + F32(y_min)
    coords = model_frame_coords(np.stack([x, y], axis=1), h, w)
    return np.array(values, dtype=np.uint8), coords
