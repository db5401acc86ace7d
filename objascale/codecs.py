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

Decoding bombs: a few hundred bytes can declare a 20000x20000 image that OpenCV would allocate gigabytes for.
Every byte stream is therefore decoded only after its header (read by Pillow's lazy ``Image.open``, no pixel
decoding) passed :func:`check_declared_size`: at most :func:`max_image_pixels` pixels (``FLIPBENCH_MAX_IMAGE_PIXELS``,
default 2**26 = 8192x8192) and, where the caller knows it, exactly the expected size (a mask: its image's size;
a converter's image: the annotation's), and after :func:`check_density`: a file too small to hold that many
pixels (a PNG below deflate's maximum ratio, a Huffman-coded JPEG below one bit per 8x8 block) is truncated or
a bomb. The decoded array must have the declared size too.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

__all__ = ["encode_jpeg", "encode_mask_png", "decode_image", "decode_mask", "CodecError", "header_size",
           "check_declared_size", "check_density", "imdecode_checked", "max_image_pixels", "DEFAULT_MAX_IMAGE_PIXELS"]

#: decoding limit in pixels (8192 x 8192) unless ``FLIPBENCH_MAX_IMAGE_PIXELS`` says otherwise
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26
MAX_PIXELS_ENV = "FLIPBENCH_MAX_IMAGE_PIXELS"
_HEADER_PLUGINS = ((b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
                   (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile))


class CodecError(ValueError):
    """Bytes that cannot be decoded (corrupt JPEG/PNG, or a header declaring a size over the limit or other than
    expected), or an array of the wrong shape/dtype to encode."""


def max_image_pixels() -> int:
    """The largest image/mask (pixels) any decoder here accepts: ``$FLIPBENCH_MAX_IMAGE_PIXELS`` or 2**26."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise CodecError(f"{MAX_PIXELS_ENV}={text!r} is not an integer number of pixels") from None
    if value < 1:
        raise CodecError(f"{MAX_PIXELS_ENV}={text!r} must be a positive number of pixels")
    return value


def header_size(data: bytes | np.ndarray | BinaryIO) -> tuple[int, int]:
    """``(H, W)`` declared by the header of encoded image bytes or an open binary file (JPEG, PNG or any format
    Pillow identifies), read by Pillow without decoding pixels (a file is read only as far as its header and
    left open). Raises :class:`CodecError` for an unidentifiable or corrupt header.

    JPEG and PNG are opened with their Pillow plugin class directly, which reads the header without Pillow's own
    decompression-bomb check (that check would hide the declared size; :func:`check_declared_size` judges it)."""
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        fp: BinaryIO = io.BytesIO(raw)
    else:
        fp = data
    start = fp.tell()
    prefix = fp.read(8)
    fp.seek(start)
    plugin = next((cls for signature, cls in _HEADER_PLUGINS if prefix.startswith(signature)), None)
    try:
        if plugin is not None:
            w, h = plugin(fp).size  # not closed: the caller's file stays open
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                w, h = Image.open(fp).size
    except Image.DecompressionBombError as exc:  # another format, over Pillow's (higher) limit: over ours too
        raise CodecError(f"header declares an oversized image ({exc})") from exc
    except Exception as exc:  # Pillow raises several types for unreadable headers
        raise CodecError(f"could not be decoded: unreadable image header ({type(exc).__name__}: {exc})") from exc
    finally:
        fp.seek(start)
    return int(h), int(w)


def check_declared_size(hw: tuple[int, int], expected: tuple[int, int] | None = None,
                        max_pixels: int | None = None) -> None:
    """Refuse a declared ``(H, W)`` that is empty, larger than ``max_pixels`` (default :func:`max_image_pixels`)
    or, when ``expected`` is given, different from it. Raises :class:`CodecError`."""
    h, w = (int(v) for v in hw)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    if h < 1 or w < 1:
        raise CodecError(f"header declares an empty {w}x{h} image")
    if h * w > limit:
        raise CodecError(f"header declares {w}x{h} = {h * w} pixels, over the limit of {limit} "
                         f"(a decompression bomb or a corrupt header; raise {MAX_PIXELS_ENV} if it is genuine)")
    if expected is not None and (h, w) != tuple(int(v) for v in expected):
        raise CodecError(f"header declares {w}x{h}, expected {int(expected[1])}x{int(expected[0])} (WxH)")


#: deflate cannot compress better than 1032:1 (a 258-byte match costs at least 2 bits)
_DEFLATE_MAX_RATIO = 1032
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
_JPEG_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3}  # baseline, extended, progressive, lossless (Huffman coding)
_JPEG_ALL_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: bytes of a file searched for the JPEG frame header
DENSITY_PREFIX = 1 << 20


def _jpeg_sof_marker(prefix: bytes) -> int | None:
    """The SOFn marker code of JPEG bytes (walking the marker segments after SOI), None if not found."""
    p = 2
    while p + 4 <= len(prefix):
        if prefix[p] != 0xFF:
            return None
        marker = prefix[p + 1]
        if marker == 0xFF:  # fill byte
            p += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD9:  # segments without a length
            p += 2
        elif marker in _JPEG_ALL_SOF:
            return marker
        else:
            p += 2 + int.from_bytes(prefix[p + 2:p + 4], "big")
    return None


def min_encoded_bytes(prefix: bytes, hw: tuple[int, int]) -> int:
    """A lower bound of the size of a complete PNG or Huffman-coded JPEG declaring ``hw`` (0 when no bound is
    known: other formats, arithmetic-coded JPEG). ``prefix``: the first bytes (PNG: 26; JPEG: up to its frame
    header)."""
    h, w = hw
    if prefix.startswith(b"\x89PNG\r\n\x1a\n") and len(prefix) >= 26:
        depth, channels = prefix[24], _PNG_CHANNELS.get(prefix[25], 1)
        raw = h * (1 + -(-w * channels * depth // 8))  # filter byte + packed samples per row
        return raw // _DEFLATE_MAX_RATIO
    if prefix.startswith(b"\xff\xd8") and _jpeg_sof_marker(prefix) in _JPEG_HUFFMAN_SOF:
        blocks = -(-h // 8) * -(-w // 8)  # of the full-resolution component; each costs >= 1 bit
        return blocks // 8
    return 0


def check_density(prefix: bytes, nbytes: int, hw: tuple[int, int]) -> None:
    """Refuse ``nbytes`` of PNG/JPEG data too few for the declared ``hw`` (see :func:`min_encoded_bytes`):
    truncated, or a decompression bomb. Raises :class:`CodecError`."""
    need = min_encoded_bytes(prefix, hw)
    if nbytes < need:
        raise CodecError(f"header declares {hw[1]}x{hw[0]} but the data holds {nbytes} bytes, fewer than the "
                         f"{need} any complete encoding needs (truncated, or a decompression bomb)")


def imdecode_checked(data: bytes | np.ndarray, flags: int, expected_hw: tuple[int, int] | None = None,
                     max_pixels: int | None = None) -> np.ndarray:
    """``cv2.imdecode(data, flags)`` after :func:`header_size`, :func:`check_declared_size` and
    :func:`check_density`; the decoded array must have the declared size. Raises :class:`CodecError` (never
    returns None)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else \
        np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    hw = header_size(buf)
    check_declared_size(hw, expected_hw, max_pixels)
    check_density(buf[:DENSITY_PREFIX].tobytes(), buf.size, hw)
    out = cv2.imdecode(buf, flags)
    if out is None:
        raise CodecError(f"bytes ({buf.size} bytes, header {hw[1]}x{hw[0]}) could not be decoded: corrupt data")
    if out.shape[:2] != hw:
        raise CodecError(f"decoded size {out.shape[1]}x{out.shape[0]} differs from the declared {hw[1]}x{hw[0]}")
    return out


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


def decode_image(entry: np.ndarray, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one ``rgb_images`` entry -> uint8 ``[H, W, 3]`` RGB.

    A 1-D uint8 entry is JPEG (or any OpenCV-readable) bytes; anything else is taken as a raw ``[H, W, 3]`` array
    (the official loader accepts both). Bytes are decoded only when the header passes
    :func:`check_declared_size` (``expected_hw``: the size the caller knows, or None). Raises :class:`CodecError`.
    """
    entry = np.asarray(entry)
    if not _is_byte_stream(entry):
        img = entry.astype(np.uint8, copy=False)
        if img.ndim != 3 or img.shape[2] != 3:
            raise CodecError(f"raw image entry has shape {img.shape}; expected [H, W, 3]")
        if expected_hw is not None and img.shape[:2] != tuple(expected_hw):
            raise CodecError(f"raw image entry has shape {img.shape}, expected {tuple(expected_hw)}")
        return img
    try:
        bgr = imdecode_checked(entry, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, expected_hw)
    except CodecError as exc:
        raise CodecError(f"image bytes: {exc}") from exc
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_mask(entry: np.ndarray, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one ``instance_masks`` entry -> bool ``[H, W]`` (official rule: ``> 128`` if max > 1 else ``> 0``).

    A 1-D uint8 entry is PNG bytes; anything else is a raw array (``[H, W]``, ``[1, H, W]`` or ``[H, W, 1]``).
    ``expected_hw``: the image's ``(H, W)``; the PNG header (checked before decoding) or the raw array must match.
    Raises :class:`CodecError`.
    """
    entry = np.asarray(entry)
    if _is_byte_stream(entry):
        try:
            m = imdecode_checked(entry, cv2.IMREAD_UNCHANGED, expected_hw)
        except CodecError as exc:
            raise CodecError(f"mask bytes: {exc}") from exc
    else:
        m = entry
    if m.ndim == 3:  # [1, H, W] raw, or [H, W, C] (C = 1, or a multi-channel PNG: use the first channel)
        m = m[0] if m.shape[0] == 1 and m.shape[-1] != 1 else m[..., 0]
    if m.ndim != 2:
        raise CodecError(f"mask entry has shape {np.shape(entry)}; expected a 2-D mask")
    if expected_hw is not None and m.shape != tuple(expected_hw):
        raise CodecError(f"mask has shape {m.shape}, its image is {tuple(expected_hw)}")
    return m > 128 if m.max(initial=0) > 1 else m > 0
