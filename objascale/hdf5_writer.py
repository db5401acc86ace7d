"""Writer of FLIP HDF5 files in the exact official layout, plus flipbench provenance.

Layout, dtypes, chunking and compression are those of the official ``convert_coco_to_hdf5.py`` (see
``objascale/hdf5_schema.py``). Additions, ignored by the official code:

* ``/metadata`` attributes ``flipbench_provenance`` (JSON: source, licence, generator parameters, flipbench
  version, bbox convention), ``flipbench_bbox_convention`` and ``flipbench_format_version``;
* dataset ``flipbench_image_info``: one JSON text per image with the caller's per-image ``extra`` fields.

Boxes (``instance_mask_bboxes``): ``bbox_convention="official"`` (default) stores what the official converter
stores, including its quirk that pixel column/row 0 never counts (see
:func:`objascale.moments.mask_to_bbox_official`), so a COCO conversion agrees with official files;
``"tight"`` stores the true tight box. Official readers only use the box for a coordinate conversion during
training; flipbench's evaluation always recomputes the tight box from the decoded mask. The choice is recorded
in ``/metadata`` so readers can tell.

Writes are crash-safe: data goes to ``<path>.partial``, renamed to ``<path>`` only when the writer is closed
without error; on an exception inside the ``with`` block the partial file is removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import h5py
import numpy as np

from objascale import hdf5_schema as schema
from objascale.codecs import encode_jpeg, encode_mask_png
from objascale.moments import as_bool_mask, mask_to_bbox, mask_to_bbox_official, mask_to_rho

__all__ = ["FlipH5Writer", "EncodedImage", "encode_image", "official_file_name", "INFO_KEYS"]

#: keys accepted in ``add_image(..., info=)``
INFO_KEYS = ("file_name", "source_id", "license", "flickr_url", "coco_url", "transform_note", "extra")
_RESERVED_EXTRA = {"index", "shard", "local_index", "file_name", "source_id", "license_id", "license",
                   "flickr_url", "coco_url", "transform_note"}


def official_file_name(out_dir: str | os.PathLike, dataset_name: str, dataset_type: str) -> Path:
    """``out_dir/{dataset_name}-{dataset_type}-v{N}.hdf5`` with the first N >= 1 not yet taken (official naming)."""
    n = 1
    while True:
        path = Path(out_dir) / f"{dataset_name}-{dataset_type}-v{n}.hdf5"
        if not path.exists() and not Path(str(path) + ".partial").exists():
            return path
        n += 1


class FlipH5Writer:
    """Append images with their instance masks to a new FLIP HDF5 file.

    ``path``: the final file name (written as ``<path>.partial`` until closed). ``dataset_name`` / ``dataset_type``
    go to ``/metadata`` attributes ``dataset_name`` / ``type``. ``licenses``: the licence table (list of
    ``{"id": int, "name": str, "url": str}``) stored as ``coco_licenses`` JSON; per-image ``info["license"]`` is an
    id into it (uint8, 0 = unknown). ``provenance``: JSON-serialisable dict merged into ``flipbench_provenance``.
    ``flush_every``: images buffered in memory before they are appended to the file (bounded memory).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dataset_name: str,
        dataset_type: str,
        provenance: Mapping[str, Any] | None = None,
        licenses: Sequence[Mapping[str, Any]] = (),
        bbox_convention: Literal["official", "tight"] = "official",
        overwrite: bool = False,
        flush_every: int = 64,
    ) -> None:
        if bbox_convention not in ("official", "tight"):
            raise ValueError(f"bbox_convention must be 'official' or 'tight', not {bbox_convention!r}")
        self.path = Path(path)
        self.partial_path = Path(str(self.path) + ".partial")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (or --overwrite) to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.bbox_convention = bbox_convention
        self._flush_every = max(1, int(flush_every))
        prov = {
            "flipbench_version": _flipbench_version(),
            "format_version": schema.FORMAT_VERSION,
            "bbox_convention": bbox_convention,
            **dict(provenance or {}),
        }
        # serialise first: a bad licence table / provenance must fail before any file is created
        licenses_json = json.dumps(list(map(dict, licenses)), default=_json_default)
        prov_json = json.dumps(prov, sort_keys=True, default=_json_default)
        self._h5 = h5py.File(self.partial_path, "w")
        try:
            schema.create_datasets(self._h5, schema.OFFICIAL_DATASETS + schema.FLIPBENCH_DATASETS)
            meta = self._h5.create_group("metadata")
            meta.attrs["dataset_name"] = dataset_name
            meta.attrs["type"] = dataset_type
            meta.attrs["coco_licenses"] = licenses_json
            meta.attrs[schema.PROVENANCE_ATTR] = prov_json
            meta.attrs[schema.BBOX_CONVENTION_ATTR] = bbox_convention
            meta.attrs[schema.FORMAT_VERSION_ATTR] = schema.FORMAT_VERSION
        except BaseException:
            self.abort()
            raise
        self.num_images = 0
        self.num_instances = 0
        self._buf: dict[str, list] = {}
        self._reset_buffer()

    # -- public API -------------------------------------------------------------------------------------------
    def add_image(self, rgb: np.ndarray, masks: Sequence[np.ndarray], info: Mapping[str, Any] | None = None) -> int:
        """Append one image and its instances; returns the image's index in this file.

        ``rgb``: uint8 ``[H, W, 3]`` RGB (JPEG-encoded here). ``masks``: one or more bool ``[H, W]`` non-empty
        masks (PNG-encoded; box and Gaussian moments computed here). ``info`` keys (all optional): ``file_name``
        (str), ``source_id`` (int, stored in ``coco_image_ids``), ``license`` (int id into ``licenses``),
        ``flickr_url``, ``coco_url`` (str), ``transform_note`` (str, default the official note), ``extra``
        (JSON-serialisable dict stored in ``flipbench_image_info``).
        """
        info = _check_info(info)  # fail before the expensive encoding
        return self.add_encoded(encode_image(rgb, masks, self.bbox_convention), info)

    def add_encoded(self, encoded: "EncodedImage", info: Mapping[str, Any] | None = None) -> int:
        """Append an image prepared by :func:`encode_image` (e.g. in a worker process); see :meth:`add_image`."""
        info = _check_info(info)
        if encoded.bbox_convention != self.bbox_convention:
            raise ValueError(f"image encoded with bbox convention {encoded.bbox_convention!r}, the file uses "
                             f"{self.bbox_convention!r}")
        image_index = self.num_images
        n = len(encoded.masks)
        # convert every field before touching the buffer: a failure must not leave the datasets misaligned
        row = {
            "rgb_images": encoded.jpeg,
            "coco_image_ids": int(info.get("source_id", -1)),
            "license_ids": int(info.get("license") or 0),
            "file_names": str(info.get("file_name", "")),
            "flickr_urls": str(info.get("flickr_url", "")),
            "coco_urls": str(info.get("coco_url", "")),
            "transform_notes": str(info.get("transform_note", schema.TRANSFORM_NOTE)),
            schema.IMAGE_INFO: json.dumps(info.get("extra") or {}, sort_keys=True, default=_json_default),
        }
        b = self._buf
        for name, value in row.items():
            b[name].append(value)
        b["image_instance_indices"].append((self.num_instances, n))
        b["sequence_indices"].append((image_index, 1))
        b["instance_masks"].extend(encoded.masks)
        b["instance_mask_bboxes"].extend(encoded.boxes)
        b["positions"].extend(encoded.rhos)
        b["instance_masks_images"].extend([(image_index,)] * n)
        self.num_images += 1
        self.num_instances += n
        if len(b["rgb_images"]) >= self._flush_every:
            self.flush()
        return image_index

    def update_provenance(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into ``flipbench_provenance`` (e.g. conversion statistics known only at the end)."""
        attrs = self._h5["metadata"].attrs
        prov = {**json.loads(attrs[schema.PROVENANCE_ATTR]), **dict(fields)}
        attrs[schema.PROVENANCE_ATTR] = json.dumps(prov, sort_keys=True, default=_json_default)

    def flush(self) -> None:
        """Append the buffered images/instances to the (still partial) file."""
        for name, values in self._buf.items():
            if not values:
                continue
            ds = self._h5[name]
            start = ds.shape[0]
            ds.resize((start + len(values), *ds.shape[1:]))
            if ds.dtype.kind == "O":
                # vlen bytes / str, element-wise: h5py turns an object array of equal-length entries into a
                # 2-D array and mis-broadcasts a 1-element slice
                for k, value in enumerate(values):
                    ds[start + k] = value
            else:
                ds[start:] = np.asarray(values, dtype=ds.dtype).reshape(len(values), *ds.shape[1:])
        self._reset_buffer()

    def close(self) -> Path:
        """Flush, close and publish the file under its final name; returns that path."""
        if self._h5 is None:
            return self.path
        if self.num_images == 0:
            self.abort()
            raise ValueError(f"no image was added; {self.path} was not written")
        try:
            self.flush()
            self._h5.close()
            self._h5 = None
            with open(self.partial_path, "rb+") as f:  # data on disk before the name says "complete"
                os.fsync(f.fileno())
        except BaseException:
            self.abort()
            raise
        os.replace(self.partial_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (nothing is published)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> "FlipH5Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals --------------------------------------------------------------------------------------------
    def _reset_buffer(self) -> None:
        self._buf = {s.name: [] for s in schema.OFFICIAL_DATASETS + schema.FLIPBENCH_DATASETS}


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to append: JPEG bytes, PNG bytes per mask, boxes (float64 [4]) and rhos (float32 [5])."""

    jpeg: np.ndarray
    masks: list[np.ndarray]
    boxes: list[np.ndarray]
    rhos: list[np.ndarray]
    bbox_convention: str


def encode_image(rgb: np.ndarray, masks: Sequence[np.ndarray], bbox_convention: str = "official") -> EncodedImage:
    """Validate and encode one image with its masks (the CPU-heavy part of writing; picklable result).

    ``rgb``: uint8 ``[H, W, 3]``; ``masks``: one or more non-empty bool ``[H, W]``. Raises ``ValueError``.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB; got {rgb.dtype} {rgb.shape}")
    if len(masks) == 0:
        raise ValueError("an image needs at least one instance mask (the official loader samples masks per "
                         "image and cannot handle images without any); skip such images")
    box_fn = {"official": mask_to_bbox_official, "tight": mask_to_bbox}[bbox_convention]
    h, w = rgb.shape[:2]
    enc_masks, boxes, rhos = [], [], []
    for k, mask in enumerate(masks):
        m = as_bool_mask(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask {k} has shape {m.shape}, the image is {(h, w)}")
        if not m.any():
            raise ValueError(f"mask {k} is empty; converters must skip empty masks (the official one does)")
        enc_masks.append(encode_mask_png(m))
        boxes.append(box_fn(m))
        rhos.append(mask_to_rho(m))
    return EncodedImage(encode_jpeg(rgb), enc_masks, boxes, rhos, bbox_convention)


def _check_info(info: Mapping[str, Any] | None) -> dict[str, Any]:
    info = dict(info or {})
    unknown = set(info) - set(INFO_KEYS)
    if unknown:
        raise ValueError(f"unknown info keys {sorted(unknown)}; allowed: {', '.join(INFO_KEYS)}")
    license_id = int(info.get("license") or 0)
    if not 0 <= license_id <= 255:
        raise ValueError(f"license id {license_id} does not fit the official uint8 license_ids")
    clash = _RESERVED_EXTRA & set(info.get("extra") or {})
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} clash with fields the reader fills in; rename them")
    return info


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _flipbench_version() -> str:
    from benchmark import __version__

    return __version__
