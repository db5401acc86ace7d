"""Patch extraction in torch, on the device where the image lives (CPU or GPU), given sampled centres.

Sampling the centres is sequential and cheap (:func:`benchmark.flip.sampler.sample_patches`); reading the patches
is the part that benefits from the device holding the image. These functions apply exactly the official bilinear
rule of :func:`benchmark.flip.sampler.extract_patches` (float32, one rounding per operation: eager torch runs each
operation as its own kernel, so nothing is fused; ``roundf`` half away from zero), so the patches are
bit-identical to the native / numpy ones (tested on CPU).

Frames: ``centers_px`` float32 [n, 2] (x, y) in the C-sampler pixel frame (pixel (row i, col j) at (x=j, y=i));
model-frame coordinates are ``(x / 128 - W / 256, y / 128 - H / 256)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.dim() != 3 or min(image.shape) < 1:
        got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a uint8 tensor [H, W, C] with non-zero sizes, got {got}")


def extract_patches_torch(
    image: torch.Tensor, centers_px: torch.Tensor, patch_size: int, *, check: bool = True
) -> torch.Tensor:
    """Bilinear patches uint8 [n, p, p, C] (row, col, channel) of ``image`` uint8 [H, W, C] at ``centers_px``.

    ``centers_px`` is moved to the image's device as float32. With ``check`` (default) centres must satisfy the
    sampler's rule ``c - p/2 >= 0`` and ``c + p/2 < size - 1`` (ValueError otherwise; this synchronises a GPU);
    without it, out-of-range centres are clamped into the image instead of failing (never an out-of-bounds read).
    """
    _check_image(image)
    p = int(patch_size)
    if p != patch_size or not 1 <= p <= 1024:
        raise ValueError(f"patch_size must be an integer in [1, 1024], got {patch_size!r}")
    dev = image.device
    c = torch.as_tensor(centers_px).to(device=dev, dtype=torch.float32)
    if c.dim() != 2 or c.shape[1] != 2:
        raise ValueError(f"centers_px must have shape [n, 2], got {tuple(c.shape)}")
    h, w, ch = image.shape
    n = c.shape[0]
    if n == 0:
        return torch.zeros((0, p, p, ch), dtype=torch.uint8, device=dev)
    hp = p / 2.0  # exact in float32
    if check:
        ok = (c[:, 0] - hp >= 0) & (c[:, 0] + hp < float(w - 1)) & (c[:, 1] - hp >= 0) & (c[:, 1] + hp < float(h - 1))
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0, 0])
            raise ValueError(
                f"centre {bad} = {c[bad].tolist()} puts a {p}px patch outside the image {w}x{h} "
                f"(need c - p/2 >= 0 and c + p/2 < size - 1)"
            )
    offs = (torch.arange(p, dtype=torch.float32, device=dev) - hp) + 0.5  # [p]
    xs = c[:, 0:1] + offs[None, :]  # [n, p] columns
    ys = c[:, 1:2] + offs[None, :]  # [n, p] rows
    if not check:  # keep every read inside the image (0 <= x0 <= W-2) whatever the centres
        xs = xs.nan_to_num(0.0).clamp(0.0, max(float(w) - 2.0, 0.0))
        ys = ys.nan_to_num(0.0).clamp(0.0, max(float(h) - 2.0, 0.0))
    x0 = xs.to(torch.int64)  # trunc == floor for x >= 0
    y0 = ys.to(torch.int64)
    x1 = (x0 + 1).clamp(max=w - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    dx = (xs - x0.to(torch.float32))[:, None, :, None]  # [n, 1, p, 1]
    dy = (ys - y0.to(torch.float32))[:, :, None, None]  # [n, p, 1, 1]
    rows0, rows1 = y0[:, :, None], y1[:, :, None]
    cols0, cols1 = x0[:, None, :], x1[:, None, :]
    f00 = image[rows0, cols0].to(torch.float32)  # [n, p, p, C]
    f01 = image[rows0, cols1].to(torch.float32)
    f10 = image[rows1, cols0].to(torch.float32)
    f11 = image[rows1, cols1].to(torch.float32)
    v = f00 * (1.0 - dx) * (1.0 - dy)
    v = v + f01 * dx * (1.0 - dy)
    v = v + f10 * (1.0 - dx) * dy
    v = v + f11 * dx * dy
    fl = torch.floor(v)
    out = fl + ((v - fl) >= 0.5).to(torch.float32)  # roundf for v >= 0 (torch.round is half-to-even)
    return out.to(torch.uint8)


def model_frame_coords_torch(centers_px: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centres float32 [n, 2] (C-sampler pixel frame) -> model frame (x/128 - W/256, y/128 - H/256), float32."""
    c = torch.as_tensor(centers_px).to(torch.float32)
    off = torch.tensor([width / 256.0, height / 256.0], dtype=torch.float32, device=c.device)
    return c / 128.0 - off


def extract_all_torch(
    image: torch.Tensor, centers_px: Sequence[torch.Tensor], patch_sizes: Sequence[int]
) -> list[torch.Tensor]:
    """One :func:`extract_patches_torch` call per patch size (e.g. ``PatchSample.centers_px`` and its sizes)."""
    if len(centers_px) != len(patch_sizes):
        raise ValueError(f"{len(centers_px)} centre arrays for {len(patch_sizes)} patch sizes")
    return [extract_patches_torch(image, c, p) for c, p in zip(centers_px, patch_sizes)]
