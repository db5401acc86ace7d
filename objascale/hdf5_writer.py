"""Writer of FLIP HDF5 files in the exact official layout, plus flipbench provenance.

Layout, dtypes, chunking and compression are those of the official ``convert_coco_to_hdf5.py`` (see
``objascale/hdf5_schema.py``). Additions, ignored by the official code:

* ``/metadata`` attributes ``flipbench_provenance`` (JSON: source, licence, generator parameters, flipbench
  version, bbox convention), ``flipbench_bbox_convention`` and ``flipbench_format_version``;
* dataset ``flipbench_image_info``: one JSON text per image with the caller's per-image ``extra`` fields;
* datasets ``flipbench_instance_category`` / ``_category_id`` / ``_source_id``: one text per instance, the source's
  category name and id and the instance's id in the source (``instances=`` of :meth:`FlipH5Writer.add_image`).

Boxes (``instance_mask_bboxes``): ``bbox_convention="official"`` (default) stores what the official converter
stores, including its quirk that pixel column/row 0 never counts (see
:func:`objascale.moments.mask_to_bbox_official`), so a COCO conversion agrees with official files;
``"tight"`` stores the true tight box. Official readers only use the box for a coordinate conversion during
training; flipbench's evaluation always recomputes the tight box from the decoded mask. The choice is recorded
in ``/metadata`` so readers can tell.

Writes are crash-safe: data goes to ``<path>.partial``, renamed to ``<path>`` only when the writer is closed
without error; on an exception inside the ``with`` block the partial file is removed.

A full disk: once the HDF5 library itself fails a write, its metadata cache is inconsistent and closing the file,
or merely garbage-collecting its objects at exit, crashes the process (SIGSEGV in ``H5Fclose``, h5py 3.16 / HDF5
2.0, on a full tmpfs; a leaked handle crashes at interpreter exit). So HDF5 must never see a failed write. Before
each append the writer reserves the bytes it is about to write plus a margin past HDF5's end of file with
``posix_fallocate`` (:meth:`FlipH5Writer._reserve`); when that fails the append raises ``OSError(ENOSPC)`` naming
the file before HDF5 writes anything, and the partial file is deleted. HDF5 then writes only into allocated
blocks; the unused reservation is cut off after closing, at the end-of-file address of the HDF5 superblock
(:func:`_hdf5_end_address`), so the published file is byte-identical to one written without reservations.
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import h5py
import numpy as np

from objascale import hdf5_schema as schema
from objascale.codecs import encode_jpeg, encode_mask_png
from objascale.moments import as_bool_mask, mask_to_bbox, mask_to_bbox_official, mask_to_rho

__all__ = ["FlipH5Writer", "EncodedImage", "encode_image", "official_file_name", "INFO_KEYS"]

#: bytes reserved beyond those of an append (HDF5 metadata: chunk indexes, heaps, the flush on close)
RESERVE_MARGIN = 1 << 20

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
        try:
            self._h5 = h5py.File(self.partial_path, "w")
        except OSError as exc:
            self._h5 = None
            self.partial_path.unlink(missing_ok=True)
            raise _write_error(exc, self.partial_path) from exc
        try:
            self._reserve(len(licenses_json) + len(prov_json))
            schema.create_datasets(self._h5, schema.OFFICIAL_DATASETS + schema.FLIPBENCH_DATASETS)
            meta = self._h5.create_group("metadata")
            meta.attrs["dataset_name"] = dataset_name
            meta.attrs["type"] = dataset_type
            meta.attrs["coco_licenses"] = licenses_json
            meta.attrs[schema.PROVENANCE_ATTR] = prov_json
            meta.attrs[schema.BBOX_CONVENTION_ATTR] = bbox_convention
            meta.attrs[schema.FORMAT_VERSION_ATTR] = schema.FORMAT_VERSION
        except OSError as exc:
            self.abort()
            raise _write_error(exc, self.partial_path) from exc
        except BaseException:
            self.abort()
            raise
        self.num_images = 0
        self.num_instances = 0
        self._buf: dict[str, list] = {}
        self._reset_buffer()

    # -- public API -------------------------------------------------------------------------------------------
    def add_image(self, rgb: np.ndarray, masks: Sequence[np.ndarray], info: Mapping[str, Any] | None = None,
                  instances: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Append one image and its instances; returns the image's index in this file.

        ``rgb``: uint8 ``[H, W, 3]`` RGB (JPEG-encoded here). ``masks``: one or more bool ``[H, W]`` non-empty
        masks (PNG-encoded; box and Gaussian moments computed here). ``info`` keys (all optional): ``file_name``
        (str), ``source_id`` (int, stored in ``coco_image_ids``), ``license`` (int id into ``licenses``),
        ``flickr_url``, ``coco_url`` (str), ``transform_note`` (str, default the official note), ``extra``
        (JSON-serialisable dict stored in ``flipbench_image_info``). ``instances``: one dict per mask with the
        optional keys ``category`` (name), ``category_id`` and ``source_id`` (the instance's id in the source, e.g.
        ``"annotation 1234"``), stored as text; a missing category reads ``"unknown"``.
        """
        info = _check_info(info)  # fail before the expensive encoding
        meta = _check_instances(instances, len(masks))
        return self.add_encoded(encode_image(rgb, masks, self.bbox_convention), info, meta)

    def add_encoded(self, encoded: "EncodedImage", info: Mapping[str, Any] | None = None,
                    instances: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Append an image prepared by :func:`encode_image` (e.g. in a worker process); see :meth:`add_image`."""
        info = _check_info(info)
        meta = _check_instances(instances, len(encoded.masks))
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
        for key, name in schema.INSTANCE_META.items():
            b[name].extend(m[key] for m in meta)
        self.num_images += 1
        self.num_instances += n
        if len(b["rgb_images"]) >= self._flush_every:
            self.flush()
        return image_index

    def update_provenance(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into ``flipbench_provenance`` (e.g. conversion statistics known only at the end)."""
        attrs = self._h5["metadata"].attrs
        prov = {**json.loads(attrs[schema.PROVENANCE_ATTR]), **dict(fields)}
        text = json.dumps(prov, sort_keys=True, default=_json_default)
        with self._writing(len(text)):
            attrs[schema.PROVENANCE_ATTR] = text

    def flush(self) -> None:
        """Append the buffered images/instances to the (still partial) file.

        Raises ``OSError(ENOSPC)`` (the partial file deleted) when the output file system lacks the room."""
        with self._writing(_buffer_bytes(self._buf)):
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
            with self._writing(0):
                self._h5.close()
                self._h5 = None
                with open(self.partial_path, "rb+") as f:
                    end = _hdf5_end_address(f)
                    if end is not None and end < os.fstat(f.fileno()).st_size:
                        f.truncate(end)  # the unused reservation
                    os.fsync(f.fileno())  # data on disk before the name says "complete"
        except BaseException:
            self.abort()
            raise
        os.replace(self.partial_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (nothing is published); never raises for a failing close.

        The file is truncated before HDF5 closes it: after a failed write HDF5 still flushes its metadata cache on
        close, which needs room (and crashed the process when the disk stayed full)."""
        h5, self._h5 = self._h5, None
        if h5 is not None:
            try:
                os.truncate(self.partial_path, 0)
            except OSError:
                pass
            try:
                h5.close()
            except (OSError, RuntimeError, ValueError):
                pass  # the file is discarded anyway
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> "FlipH5Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals --------------------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, nbytes: int):
        """Guard an HDF5 write of about ``nbytes``: reserve the space first (:meth:`_reserve`); on a failure abort
        (the partial file is deleted) and raise a plain ``OSError`` naming the file."""
        try:
            if self._h5 is not None:
                self._reserve(nbytes)
            yield
        except OSError as exc:
            self.abort()
            raise _write_error(exc, self.partial_path) from exc

    def _reserve(self, nbytes: int) -> None:
        """Allocate ``nbytes`` + :data:`RESERVE_MARGIN` bytes past HDF5's end of the partial file, so the HDF5
        writes that follow cannot run out of space (see the module docstring). Raises ``OSError(ENOSPC)``; a file
        system without ``fallocate`` support passes unreserved."""
        start = int(self._h5.id.get_filesize())  # HDF5's own end of file (it does not see the reservation)
        fd = os.open(self.partial_path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, start, int(nbytes) + RESERVE_MARGIN)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise OSError(exc.errno, f"{os.strerror(exc.errno)} (could not reserve "
                                         f"{(int(nbytes) + RESERVE_MARGIN) / 2**20:.1f} MiB)",
                              str(self.partial_path)) from exc
        finally:
            os.close(fd)

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


def _hdf5_end_address(f) -> int | None:
    """End-of-file address of a closed HDF5 file (open binary file ``f``, no user block) from its superblock
    (versions 0-3, as HDF5 format specification section II.A lays them out), or None when it cannot be read."""
    f.seek(0)
    head = f.read(64)
    if len(head) < 64 or head[:8] != b"\x89HDF\r\n\x1a\n":
        return None
    version = head[8]
    if version in (0, 1):
        size, first = head[13], 24 if version == 0 else 28  # addresses: base, free space, end of file, driver
    elif version in (2, 3):
        size, first = head[9], 12  # addresses: base, superblock extension, end of file, root object header
    else:
        return None
    if size not in (2, 4, 8) or first + 3 * size > len(head):
        return None
    base = int.from_bytes(head[first:first + size], "little")
    end = int.from_bytes(head[first + 2 * size:first + 3 * size], "little")
    return base + end if end != (1 << 8 * size) - 1 else None


def _buffer_bytes(buf: Mapping[str, list]) -> int:
    """Bytes of the buffered rows as stored (encoded images and masks dominate), an upper-bound estimate."""
    total = 0
    for values in buf.values():
        for value in values:
            if isinstance(value, np.ndarray):
                total += value.nbytes
            else:
                total += len(value) if isinstance(value, (bytes, str)) else 64
    return total


def _write_error(exc: OSError, path: Path) -> OSError:
    """A plain ``OSError`` with the errno and file name of a failed HDF5 write (h5py's text is a multi-line dump
    of HDF5 internals); an ``OSError`` that already names its file is returned as it is."""
    if exc.filename is not None:
        return exc
    code = exc.errno
    if code is None:  # h5py: "[Errno 28] ... errno = 28, error message = 'No space left on device' ..."
        for candidate in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO):
            if os.strerror(candidate) in str(exc):
                code = candidate
                break
    if code is None:
        return exc
    return OSError(code, os.strerror(code), str(path))


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


def _check_instances(instances: Sequence[Mapping[str, Any]] | None, n: int) -> list[dict[str, str]]:
    """Per-instance source facts as text, one dict per mask (``category`` defaults to ``"unknown"``)."""
    if instances is None:
        instances = [{}] * n
    if len(instances) != n:
        raise ValueError(f"{len(instances)} instance entries for {n} masks")
    out = []
    for k, entry in enumerate(instances):
        unknown = set(entry) - set(schema.INSTANCE_META)
        if unknown:
            raise ValueError(f"instance {k}: unknown keys {sorted(unknown)}; allowed: {', '.join(schema.INSTANCE_META)}")
        values = {}
        for key in schema.INSTANCE_META:
            value = entry.get(key)
            text = "" if value is None else str(value)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a hostile annotation file
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
            values[key] = text
        values["category"] = values["category"] or schema.UNKNOWN
        out.append(values)
    return out


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
