"""Predicted masks stored with their records: COCO run-length encoding (pycocotools), compact.

A record keeps only the RLE ``counts`` bytes (pycocotools' compressed string form, column ``pred_rle``); the
mask's size is the record's ``(image_height, image_width)``, so ``{"size": [h, w], "counts": counts}`` is the
full COCO RLE. Masks are ``bool [H, W]`` at the image's native resolution (the frame the IoU is scored in).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask


def encode_mask(mask: np.ndarray) -> bytes:
    """COCO RLE ``counts`` (compressed bytes) of a ``bool [H, W]`` mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a [H, W] mask, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
    return bytes(rle["counts"])


def decode_mask(counts: bytes, height: int, width: int) -> np.ndarray:
    """The ``bool [height, width]`` mask of COCO RLE ``counts`` (inverse of :func:`encode_mask`)."""
    rle = {"size": [int(height), int(width)], "counts": bytes(counts)}
    return coco_mask.decode(rle).astype(bool)
