"""On-demand pictures for the viewer: object crops and full images with the ground truth and predicted masks.

Everything is drawn from the dataset (image, ground-truth mask) and the stored RLE masks of the records; nothing is
pre-rendered. Colours: ground truth = green outline, a row's mask = a translucent blue fill with a blue outline; the
difference of rows A and B: only A = orange, only B = blue, both = white (translucent), the ground truth outlined
green. Images are ``uint8 [H, W, 3]`` RGB; masks ``bool [H, W]``; boxes inclusive XYXY pixels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np


GT = (40, 220, 60)
PRED = (40, 120, 255)
ONLY_A = (255, 140, 0)
ONLY_B = (40, 120, 255)
BOTH = (255, 255, 255)


class LruCache:
    """A small thread-safe LRU of decoded images (they are large: keep few)."""

    def __init__(self, size: int) -> None:
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def crop_window(box: tuple[float, float, float, float], height: int, width: int, context: float = 0.6,
                min_side: int = 48) -> tuple[int, int, int, int]:
    """A square-ish window ``[x0, x1) x [y0, y1)`` around an inclusive pixel box: the box plus ``context`` of its
    larger side on every side, at least ``min_side`` pixels, clipped to the image."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2
    side = max(x1 - x0 + 1, y1 - y0 + 1) * (1 + 2 * context)
    side = max(side, min_side)
    wx0, wy0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
    wx1, wy1 = int(min(width, np.ceil(cx + side / 2))), int(min(height, np.ceil(cy + side / 2)))
    return wx0, wy0, max(wx1, wx0 + 1), max(wy1, wy0 + 1)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, thickness)


def _fill(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.45) -> None:
    if mask.any():
        canvas[mask] = (canvas[mask] * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)


def overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray | None = None, other: np.ndarray | None = None,
            scale: float = 1.0) -> np.ndarray:
    """``image`` (a crop) resized by ``scale`` with ``pred`` filled (or, with ``other``, the A/B difference of
    ``pred`` = A and ``other`` = B) and the ground truth outlined; masks are cropped like the image."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    canvas = np.ascontiguousarray(cv2.resize(image, size, interpolation=interp) if scale != 1 else image.copy())

    def resized(m: np.ndarray) -> np.ndarray:
        if scale == 1:
            return m
        return cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    if pred is not None and other is not None:
        a, b = resized(pred), resized(other)
        _fill(canvas, a & ~b, ONLY_A, 0.6)
        _fill(canvas, b & ~a, ONLY_B, 0.6)
        _fill(canvas, a & b, BOTH, 0.35)
    elif pred is not None:
        p = resized(pred)
        _fill(canvas, p, PRED)
        _outline(canvas, p, PRED)
    _outline(canvas, resized(gt), GT, 1 if max(size) < 400 else 2)
    return canvas


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
