"""Image and mask byte codecs of the FLIP HDF5 format (OpenCV, like the official converter).

* images: JPEG bytes from ``cv2.imencode(".jpg", BGR)`` at OpenCV's default quality (95); stored as a 1-D uint8
  array. Decoding: OpenCV's libjpeg-turbo, EXIF orientation ignored, returned as RGB. The official evaluation
  decodes with the ``turbojpeg`` pip package (libjpeg-turbo, default ISLOW IDCT + fancy upsampling, the defaults
  OpenCV and Pillow use too). Checked: OpenCV, Pillow and turbojpeg 0.0.2 decode the golden file and the mini
  fixture to identical pixels (``tests/test_format_golden.py``; the turbojpeg test runs when it is installed). A
  different libjpeg-turbo build could differ by a grey level or two at most.
* masks: PNG bytes of a single-channel uint8 image with values 0 / 255 (``cv2.imencode(".png")``). Decoding
  follows the official evaluation: ``IMREAD_UNCHANGED``, then ``> 128`` if the maximum is above 1, else ``> 0``.
* raw arrays (datasets that are not byte streams) are passed through, as the official loader does.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["encode_jpeg", "encode_mask_png", "decode_image", "decode_mask", "CodecError"]


class CodecError(ValueError):
    """Bytes that cannot be decoded (corrupt JPEG/PNG), or an array of the wrong shape/dtype to encode."""


def encode_jpeg(rgb: np.ndarray) -> np.ndarray:
    """JPEG-encode a uint8 ``[H, W, 3]`` RGB image (OpenCV default quality 95) -> 1-D uint8 byte array."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CodecError(f"an image must be uint8 [H, W, 3] RGB; got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CodecError(f"OpenCV could not JPEG-encode an image of shape {rgb.shape}")
    return buf.reshape(-1)


def encode_mask_png(mask: np.ndarray) -> np.ndarray:
    """PNG-encode a bool ``[H, W]`` mask as single-channel uint8 0/255 -> 1-D uint8 byte array."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise CodecError(f"a mask must be 2-D [H, W]; got shape {mask.shape}")
    ok, buf = cv2.imencode(".png", (mask != 0).astype(np.uint8) * np.uint8(255))
    if not ok:
        raise CodecError(f"OpenCV could not PNG-encode a mask of shape {mask.shape}")
    return buf.reshape(-1)


def _is_byte_stream(entry: np.ndarray) -> bool:
    return entry.dtype == np.uint8 and entry.ndim == 1


def decode_image(entry: np.ndarray) -> np.ndarray:
    """Decode one ``rgb_images`` entry -> uint8 ``[H, W, 3]`` RGB.

    A 1-D uint8 entry is JPEG (or any OpenCV-readable) bytes; anything else is taken as a raw ``[H, W, 3]`` array
    (the official loader accepts both). Raises :class:`CodecError` for undecodable bytes.
    """
    entry = np.asarray(entry)
    if not _is_byte_stream(entry):
        img = entry.astype(np.uint8, copy=False)
        if img.ndim != 3 or img.shape[2] != 3:
            raise CodecError(f"raw image entry has shape {img.shape}; expected [H, W, 3]")
        return img
    bgr = cv2.imdecode(entry, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise CodecError(f"image bytes ({entry.size} bytes) could not be decoded: corrupt or not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_mask(entry: np.ndarray) -> np.ndarray:
    """Decode one ``instance_masks`` entry -> bool ``[H, W]`` (official rule: ``> 128`` if max > 1 else ``> 0``).

    A 1-D uint8 entry is PNG bytes; anything else is a raw array (``[H, W]``, ``[1, H, W]`` or ``[H, W, 1]``).
    """
    entry = np.asarray(entry)
    if _is_byte_stream(entry):
        m = cv2.imdecode(entry, cv2.IMREAD_UNCHANGED)
        if m is None:
            raise CodecError(f"mask bytes ({entry.size} bytes) could not be decoded: corrupt or not a PNG")
    else:
        m = entry
    if m.ndim == 3:  # [1, H, W] raw, or [H, W, C] (C = 1, or a multi-channel PNG: use the first channel)
        m = m[0] if m.shape[0] == 1 and m.shape[-1] != 1 else m[..., 0]
    if m.ndim != 2:
        raise CodecError(f"mask entry has shape {np.shape(entry)}; expected a 2-D mask")
    return m > 128 if m.max(initial=0) > 1 else m > 0
