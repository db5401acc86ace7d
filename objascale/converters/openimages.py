"""Open Images V7 instance segmentation -> FLIP HDF5.

Source layout (the files as Google distributes them; V7 reuses the V5 segmentation files), ``SRC`` holding:

* ``{split}-annotations-object-segmentation.csv`` with columns ``MaskPath, ImageID, LabelName, BoxID, BoxXMin,
  BoxXMax, BoxYMin, BoxYMax, PredictedIoU, Clicks`` (boxes normalized to [0, 1]; one row per mask);
* the masks, either the zips ``{split}-masks-{0..f}.zip`` or their extracted PNGs in ``{split}-masks/`` (or
  anywhere under it), named by ``MaskPath``;
* the images ``{split}/{ImageID}.jpg``;
* optional: a class list (``oidv7-class-descriptions.csv``, ``class-descriptions-boxable.csv`` or
  ``oidv6-class-descriptions.csv``: MID, display name) and per-image attribution
  (``{split}-images-with-rotation.csv`` or ``image_ids_and_rotation.csv``: ``ImageID, OriginalURL,
  OriginalLandingURL, License, Author, ...``).

Protocol: each CSV row is one instance; its mask PNG covers the **whole image at the mask's own resolution**
(not the JPEG's), so it is binarised (``> 127``, or ``> 0`` for 0/1 PNGs) and resized to the JPEG size with
pixel-centre-aligned nearest-neighbour interpolation (:func:`objascale.mask_resize.resize_mask`; OpenCV's
``INTER_NEAREST`` would shift every mask by up to half a pixel). Images in CSV first-appearance order, instances
in CSV order; the JPEG is used as stored (no EXIF rotation). Missing/corrupt masks and masks empty after
resizing are skipped and reported; images with no instance left are skipped. Licence: annotations CC BY 4.0
(Google); images are listed as CC BY 2.0; the per-image licence URL and author are kept when the attribution CSV
is given.

Hostile inputs: an ``ImageID`` that would name a file outside the image folder, a mask PNG (or symlink) outside
the mask folder, a corrupt zip member, a zip member or PNG whose declared size is over the limits are skipped
and reported (never decoded); an unreadable CSV is a one-line error naming the file.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from objascale.codecs import CodecError, imdecode_checked, max_image_pixels
from objascale.converters.common import Loaded, SkipImage, inside, load_rgb, regular_file, require_file
from objascale.hdf5_reader import file_sha256
from objascale.mask_resize import resize_mask

__all__ = ["OpenImagesSource", "MaskStore"]

CSV_COLUMNS = ["MaskPath", "ImageID", "LabelName", "BoxID", "PredictedIoU"]
CLASS_FILES = ("oidv7-class-descriptions.csv", "class-descriptions-boxable.csv", "oidv6-class-descriptions.csv")
DEFAULT_LICENCE = {"id": 1, "name": "CC BY 2.0 (as listed by Open Images)",
                   "url": "https://creativecommons.org/licenses/by/2.0/"}
LICENCE_NOTE = ("annotations: CC BY 4.0 (Google LLC); images: listed by Open Images as CC BY 2.0, per-image licence "
                "and author in the attribution CSV (kept per image when given)")
PROTOCOL = {
    "instances": "one per row of the segmentation CSV",
    "mask_resize": "full-image mask PNG binarised (>127, or >0 for 0/1) and resized to the JPEG size, nearest "
                   "neighbour, pixel-centre aligned (cv2.INTER_NEAREST_EXACT)",
    "empty_masks": "skipped",
    "images_without_instances": "skipped",
    "resolution": "native JPEG resolution",
    "bbox_convention": "official (column/row 0 never count)",
}


#: errors of reading a (corrupt) zip archive or member
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
               struct.error)


def max_mask_bytes() -> int:
    """Largest mask PNG read into memory: a PNG of the largest accepted image, stored uncompressed (generous)."""
    return 4 * max_image_pixels() + (1 << 20)


class MaskStore:
    """Find mask PNGs by file name in zips and/or a directory tree (indexed once, read on demand).

    Zip members are read by name (nothing is extracted, so member paths cannot escape); a member whose declared
    uncompressed size is over :func:`max_mask_bytes` is refused unread. Directory files must be regular files
    inside ``directory`` (a symlink leading out is refused)."""

    def __init__(self, zips: list[Path], directory: Path | None) -> None:
        self._where: dict[str, tuple[Path, str | None]] = {}
        self.directory = directory
        for z in zips:
            require_file(z, "mask archive")
            try:
                with zipfile.ZipFile(z) as zf:
                    for member in zf.namelist():
                        self._where.setdefault(Path(member).name, (z, member))
            except _ZIP_ERRORS as exc:
                raise ValueError(f"mask archive {z} is not a valid zip ({type(exc).__name__}: {exc}); "
                                 "re-download it or remove it") from exc
        if directory is not None and directory.is_dir():
            for p in directory.rglob("*.png"):
                self._where.setdefault(p.name, (p, None))
        self._open: dict[Path, zipfile.ZipFile] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._where)

    def read(self, name: str) -> bytes | None:
        """PNG bytes of mask ``name`` or None when it is in no zip/directory. Raises :class:`SkipImage` (used as
        "reason: detail" of the skipped instance) for a file outside the mask folder, a corrupt or oversized
        zip member or file."""
        hit = self._where.get(Path(name).name)
        if hit is None:
            return None
        path, member = hit
        limit = max_mask_bytes()
        if member is None:
            inside(self.directory, path.relative_to(self.directory), "mask")
            regular_file(path, "mask")
            if path.stat().st_size > limit:
                raise SkipImage("mask file over the size limit", f"{path}: {path.stat().st_size} > {limit} bytes")
            return path.read_bytes()
        if self._pid != os.getpid():  # a forked worker: never share the parent's zip file offsets
            self._open, self._pid = {}, os.getpid()
        try:
            if path not in self._open:
                self._open[path] = zipfile.ZipFile(path)
            zf = self._open[path]
            size = zf.getinfo(member).file_size
            if size > limit:  # zipfile stops at the declared size, so this bounds the read
                raise SkipImage("mask file over the size limit", f"{path}:{member}: declares {size} > {limit} bytes")
            return zf.read(member)
        except _ZIP_ERRORS as exc:
            raise SkipImage("unreadable mask file", f"{path}:{member}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the zip files opened by :meth:`read` in this process (they re-open on the next read)."""
        if self._pid == os.getpid():
            for zf in self._open.values():
                zf.close()
        self._open = {}


def decode_full_image_mask(data: bytes, height: int, width: int) -> np.ndarray | None:
    """Open Images mask PNG bytes -> bool ``[height, width]`` (centre-aligned nearest resize), or None if
    undecodable or its header declares more pixels than the limit (checked before decoding)."""
    try:
        m = imdecode_checked(data, cv2.IMREAD_GRAYSCALE)
    except CodecError:
        return None
    binary = (m > 127) if m.max(initial=0) > 1 else (m > 0)
    return resize_mask(binary, height, width)


def _predicted_iou(row: dict[str, str], warned: list[tuple[str, str]]) -> float | None:
    """``PredictedIoU`` of a CSV row as a float in [0, 1] (None when empty; None and a warning when invalid)."""
    text = row["PredictedIoU"]
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        warned.append(("invalid PredictedIoU (stored as null)", f"mask {row['MaskPath']}: {text!r}"))
        return None
    return value


class OpenImagesSource:
    """Open Images V7 segmentation (``split`` = ``validation`` for the benchmark; see the module doc)."""

    def __init__(self, src: str | Path, *, split: str = "validation", annotations: str | Path | None = None,
                 images_dir: str | Path | None = None) -> None:
        self.src = Path(src)
        if not self.src.is_dir():
            raise FileNotFoundError(f"Open Images directory {self.src} does not exist")
        csv_path = Path(annotations) if annotations else self.src / f"{split}-annotations-object-segmentation.csv"
        if not csv_path.exists():
            raise FileNotFoundError(f"segmentation CSV {csv_path} not found (pass --annotations)")
        require_file(csv_path, "segmentation CSV")
        self.images_dir = Path(images_dir) if images_dir else self.src / split
        try:
            table = pd.read_csv(csv_path, usecols=CSV_COLUMNS, dtype=str, keep_default_na=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{csv_path} is not an Open Images segmentation CSV (needs {CSV_COLUMNS}): {exc}") \
                from exc
        self.rows: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
        for row in table.to_dict("records"):
            self.rows.setdefault(row["ImageID"], []).append(row)
        self.masks = MaskStore(sorted(self.src.glob(f"{split}-masks-*.zip")), self.src / f"{split}-masks")
        self.class_names = self._read_classes()
        self.attribution, self.licenses = self._read_attribution(split)
        # without an attribution CSV every image gets the listed CC BY 2.0; with one, unknown images get 0
        self._default_license_id = DEFAULT_LICENCE["id"] if self.licenses == [DEFAULT_LICENCE] else 0
        self.dataset_name = f"openimages-v7-{split}"
        self.dataset_type = split
        self.provenance = {
            "source": "openimages-v7",
            "split": split,
            "annotations": {"file": csv_path.name, "sha256": file_sha256(csv_path)},
            "masks_indexed": len(self.masks),
            "protocol": PROTOCOL,
            "license": LICENCE_NOTE,
        }

    def close(self) -> None:
        """Release open mask archives (called by :func:`~objascale.converters.common.convert` when done)."""
        self.masks.close()

    def image_keys(self) -> list[str]:
        return list(self.rows)

    def load(self, key: str) -> Loaded:
        rgb = load_rgb(inside(self.images_dir, f"{key}.jpg"))
        h, w = rgb.shape[:2]
        masks, kept, skipped, warned = [], [], [], []
        for row in self.rows[key]:
            where = f"mask {row['MaskPath']}"
            try:
                data = self.masks.read(row["MaskPath"])
            except SkipImage as exc:
                skipped.append((exc.reason, f"{where}: {exc.detail}"))
                continue
            if data is None:
                skipped.append(("missing mask file", where))
                continue
            mask = decode_full_image_mask(data, h, w)
            if mask is None:
                skipped.append(("unreadable mask file", where))
                continue
            if not mask.any():
                skipped.append(("empty mask", where))
                continue
            masks.append(mask)
            kept.append(row)
            if self.class_names and row["LabelName"] not in self.class_names:
                warned.append(("label not in the class list (kept)", f"{where}: {row['LabelName']}"))
        attribution = self.attribution.get(key, {})
        info = {
            "file_name": f"{key}.jpg",
            "source_id": -1,  # Open Images ids are hex strings; kept in extra["image_id"]
            "license": attribution.get("license_id", self._default_license_id),
            "flickr_url": attribution.get("OriginalLandingURL", "") or attribution.get("OriginalURL", ""),
            "extra": {
                "source": "openimages-v7", "image_id": key,
                "label_mids": [r["LabelName"] for r in kept],
                "categories": [self.class_names.get(r["LabelName"], r["LabelName"]) for r in kept],
                "box_ids": [r["BoxID"] for r in kept], "mask_paths": [r["MaskPath"] for r in kept],
                "predicted_iou": [_predicted_iou(r, warned) for r in kept],
                **({"author": attribution["Author"]} if attribution.get("Author") else {}),
                **({"license_url": attribution["License"]} if attribution.get("License") else {}),
            },
        }
        instances = [{"category": self.class_names.get(r["LabelName"], r["LabelName"]), "category_id": r["LabelName"],
                      "source_id": f"box {r['BoxID']}"} for r in kept]
        return Loaded(rgb, masks, info, skipped, warned, instances)

    def _read_classes(self) -> dict[str, str]:
        for name in CLASS_FILES:
            path = self.src / name
            if path.exists():
                require_file(path, "class list")
                try:
                    table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
                    pairs = list(table.iloc[:, :2].itertuples(index=False))
                    return {mid: label for mid, label in pairs if mid not in ("LabelName", "id")}
                except (ValueError, OSError) as exc:  # unpacking fails for a one-column file, too
                    raise ValueError(f"{path} is not a class list (MID, display name): {exc}") from exc
        return {}

    def _read_attribution(self, split: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """Per-image attribution and the licence table built from its licence URLs (ids in first-seen order)."""
        for name in (f"{split}-images-with-rotation.csv", "image_ids_and_rotation.csv"):
            path = self.src / name
            if not path.exists():
                continue
            require_file(path, "attribution CSV")
            try:
                table = pd.read_csv(path, dtype=str, keep_default_na=False)
                table = table[table["ImageID"].isin(list(self.rows))]
            except (ValueError, OSError, KeyError) as exc:
                raise ValueError(f"{path} is not an Open Images attribution CSV (needs an ImageID column): "
                                 f"{type(exc).__name__}: {exc}") from exc
            licences: dict[str, int] = {}
            info: dict[str, dict[str, Any]] = {}
            for rec in table.to_dict("records"):
                url = rec.get("License", "")
                if url and url not in licences and len(licences) < 255:  # ids are uint8 in the format;
                    licences[url] = len(licences) + 1  # any further URL gets id 0 (its URL stays in extra)
                info[rec["ImageID"]] = {**rec, "license_id": licences.get(url, 0)}
            return info, [{"id": i, "name": url, "url": url} for url, i in licences.items()]
        return {}, [DEFAULT_LICENCE]
