"""Reader of FLIP HDF5 datasets: one file, or a directory of shards read as one dataset.

Indices are global: images and instances of the shards (sorted by file name) follow each other. HDF5 handles are
opened lazily on first data access and re-opened in a new process (the pid is tracked), so a dataset object can be
handed to ``torch.utils.data.DataLoader`` workers or ``multiprocessing`` (fork or spawn: pickling drops handles).

Decoding follows the official evaluation (see ``objascale/codecs.py``): images -> uint8 RGB, masks -> bool with
``> 128`` (``> 0`` for 0/1 masks). Raw-array entries are accepted as the official loader accepts them. Nothing is
decoded before its header passed the size checks: an image at most ``codecs.max_image_pixels()``, a mask exactly
its image's size (read from the image's header). Decoding errors (:class:`~objascale.codecs.CodecError`) name the
file and the image/instance index.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from objascale import hdf5_schema as schema
from objascale.checksums import file_sha256
from objascale.codecs import CodecError, check_declared_size, decode_image, decode_mask, header_size

__all__ = ["FlipDataset", "FlipFormatError", "list_shards", "file_sha256"]

SHARD_SUFFIXES = (".hdf5", ".h5")
#: image sizes remembered by a dataset (masks are checked against their image's header)
_SHAPE_CACHE = 4096


class FlipFormatError(ValueError):
    """The file is not a readable FLIP HDF5 dataset (corrupt, truncated, missing datasets, inconsistent indices)."""


def list_shards(path: str | os.PathLike) -> list[Path]:
    """The HDF5 files of a dataset: ``[path]`` for a file, the sorted ``*.hdf5`` / ``*.h5`` files of a directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset {p} does not exist (expected a .hdf5 file or a directory of shards)")
    if p.is_file():
        return [p]
    if not p.is_dir():  # never open a FIFO (it would block) or a device
        raise FlipFormatError(f"dataset {p} is {_file_kind(p)}, not a .hdf5 file or a directory of shards")
    named = sorted(q for q in p.iterdir() if q.suffix in SHARD_SUFFIXES and not q.is_dir())
    odd = [q for q in named if not q.is_file()]  # a FIFO, device or dangling link named like a shard
    if odd:
        raise FlipFormatError(f"{odd[0]} is {_file_kind(odd[0])}, not a regular .hdf5 file; remove it from {p}")
    shards = named
    partial = sorted(q.name for q in p.iterdir() if q.name.endswith(".partial"))
    if partial:
        warnings.warn(f"{p} holds unfinished shards {partial[:3]}{'...' if len(partial) > 3 else ''} "
                      "(a writer was interrupted or is still running); they are not read", stacklevel=3)
    if not shards:
        raise FileNotFoundError(f"directory {p} holds no *.hdf5 / *.h5 shard")
    return shards


def _file_kind(p: Path) -> str:
    """'a FIFO (named pipe)', 'a character device', ... for a path that is not a regular file."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return "unreadable (a dangling link?)"
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FlipFormatError(f"{path} cannot be opened as HDF5 (not an HDF5 file, truncated or corrupt): {exc}. "
                              "Re-download or re-convert it.") from exc


def _refuse_foreign_storage(path: Path, h5: h5py.File) -> None:
    """A dataset file must hold its own data: no external link, external raw storage or virtual dataset (each
    would make the reader open another file, e.g. one the user never named)."""
    for name in h5.keys():
        link = h5.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise FlipFormatError(f"{path}: {name!r} is a link to another file ({link.filename}); a FLIP dataset "
                                  "must hold its own data")
        try:
            obj = h5.get(name)
        except (KeyError, OSError, RuntimeError) as exc:  # e.g. a dangling soft link
            raise FlipFormatError(f"{path}: {name!r} cannot be opened ({exc})") from exc
        if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            raise FlipFormatError(f"{path}: {name!r} stores its data in other files (external or virtual "
                                  "dataset); a FLIP dataset must hold its own data")


def _attr_text(value: Any) -> Any:
    """HDF5 attribute/string value -> str for bytes, Python scalar for numpy scalars, else unchanged."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


class _Shard:
    """Index arrays of one file, validated (read once, handles closed afterwards)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.instance_meta: dict[str, np.ndarray] | None = None  # per-instance source facts, read on first use
        with _open(path) as h5:
            missing = [n for n in schema.REQUIRED_DATASETS if n not in h5]
            if missing:
                raise FlipFormatError(f"{path} lacks required dataset(s) {missing}; it holds {sorted(h5.keys())}. "
                                      "Is it a FLIP HDF5 file (see objascale/hdf5_schema.py)?")
            _refuse_foreign_storage(path, h5)
            try:
                self.num_images = int(h5["rgb_images"].shape[0])
                self.num_instances = int(h5["instance_masks"].shape[0])
                self.instance_image = np.asarray(h5["instance_masks_images"][:], dtype=np.int64).reshape(-1)
                self.image_ranges = np.asarray(h5["image_instance_indices"][:], dtype=np.int64)
                self.positions = np.asarray(h5["positions"][:], dtype=np.float32)
                self.bboxes = (np.asarray(h5["instance_mask_bboxes"][:], dtype=np.float32)
                               if "instance_mask_bboxes" in h5 else None)
                self.metadata = {k: _attr_text(v) for k, v in h5["metadata"].attrs.items()} if "metadata" in h5 else {}
                self.optional = {n for n in h5.keys() if isinstance(h5[n], h5py.Dataset)}
            except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise FlipFormatError(f"{path}: reading the index datasets failed (corrupt file?): {exc}") from exc
        for key in ("coco_licenses", schema.PROVENANCE_ATTR):
            if isinstance(self.metadata.get(key), str):
                try:
                    self.metadata[key] = json.loads(self.metadata[key])
                except json.JSONDecodeError:
                    pass  # keep the text as stored
        self._validate()

    def _validate(self) -> None:
        p, n_img, n_inst = self.path, self.num_images, self.num_instances
        if self.image_ranges.shape != (n_img, 2):
            raise FlipFormatError(f"{p}: image_instance_indices has shape {self.image_ranges.shape}, "
                                  f"expected ({n_img}, 2) for {n_img} rgb_images")
        for name, arr, tail in (("instance_masks_images", self.instance_image, ()),
                                ("positions", self.positions, (5,)), ("instance_mask_bboxes", self.bboxes, (4,))):
            if arr is not None and arr.shape != (n_inst, *tail):
                raise FlipFormatError(f"{p}: {name} has shape {arr.shape}, expected {(n_inst, *tail)} "
                                      f"for {n_inst} instance_masks")
        total = int(self.image_ranges[:, 1].sum())
        if total != n_inst:
            raise FlipFormatError(f"{p}: image_instance_indices counts sum to {total}, "
                                  f"but there are {n_inst} instance_masks")
        if n_inst == 0:
            return
        img = self.instance_image
        bad = np.flatnonzero((img < 0) | (img >= n_img))
        if bad.size:
            raise FlipFormatError(f"{p}: instance {bad[0]} points to image {img[bad[0]]}, "
                                  f"outside [0, {n_img}) (instance_masks_images is inconsistent)")
        start, count = self.image_ranges[img, 0], self.image_ranges[img, 1]
        j = np.arange(n_inst)
        bad = np.flatnonzero((j < start) | (j >= start + count))
        if bad.size:
            k = bad[0]
            raise FlipFormatError(f"{p}: instance {k} belongs to image {img[k]} whose instance range is "
                                  f"[{start[k]}, {start[k] + count[k]}) (image_instance_indices and "
                                  "instance_masks_images disagree)")


class FlipDataset:
    """A FLIP HDF5 dataset (one ``.hdf5`` file or a directory of shards); ``len(ds) == ds.num_instances``.

    Global indices: image ``i`` in ``[0, num_images)``, instance ``j`` in ``[0, num_instances)``.
    Construction reads and checks the small index arrays of every shard (raises :class:`FlipFormatError` with the
    reason for corrupt/truncated files, missing datasets or inconsistent indices; ``FileNotFoundError`` for a
    missing path); pixel data is read lazily. ``ds.positions``: float32 ``[num_instances, 5]``, the stored rho of
    every instance (in memory).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._shards = [_Shard(p) for p in list_shards(self.path)]
        self._img_offsets = np.cumsum([0] + [s.num_images for s in self._shards])
        self._inst_offsets = np.cumsum([0] + [s.num_instances for s in self._shards])
        self.num_images = int(self._img_offsets[-1])
        self.num_instances = int(self._inst_offsets[-1])
        self._instance_image = np.concatenate(
            [s.instance_image + off for s, off in zip(self._shards, self._img_offsets[:-1])])
        self._image_first = np.concatenate(
            [s.image_ranges[:, 0] + off for s, off in zip(self._shards, self._inst_offsets[:-1])])
        self._image_count = np.concatenate([s.image_ranges[:, 1] for s in self._shards])
        self.positions = np.concatenate([s.positions for s in self._shards])
        self._pid = os.getpid()
        self._files: dict[int, h5py.File] = {}
        self._shapes: dict[int, tuple[int, int]] = {}  # image index -> (H, W) from its header

    # -- sizes and indices --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_instances

    @property
    def shard_paths(self) -> list[Path]:
        return [s.path for s in self._shards]

    def instance_indices(self, i: int) -> range:
        """Global instance indices of image ``i`` (contiguous)."""
        i = self._check(i, self.num_images, "image")
        first = int(self._image_first[i])
        return range(first, first + int(self._image_count[i]))

    def image_of(self, j: int) -> int:
        """Global image index of instance ``j``."""
        return int(self._instance_image[self._check(j, self.num_instances, "instance")])

    # -- pixel data ---------------------------------------------------------------------------------------------
    def image(self, i: int) -> np.ndarray:
        """Image ``i`` decoded: uint8 ``[H, W, 3]`` RGB. Raises :class:`CodecError` (naming file and image) for
        undecodable bytes or a header over ``codecs.max_image_pixels()``, checked before decoding."""
        s, k = self._locate(i, self._img_offsets, self.num_images, "image")
        entry = self._read(s, "rgb_images", k)
        try:
            rgb = decode_image(entry)
        except CodecError as exc:
            raise CodecError(f"{self._shards[s].path}: image {int(i)}: {exc}") from exc
        if len(self._shapes) < _SHAPE_CACHE:  # its masks are checked against it next: save a header read
            self._shapes[int(i)] = rgb.shape[:2]
        return rgb

    def mask(self, j: int) -> np.ndarray:
        """Mask of instance ``j`` decoded: bool ``[H, W]`` (image size). Raises :class:`CodecError` (naming file,
        instance and image) when its header declares another size than its image's (checked before decoding)
        or the bytes are undecodable."""
        s, k = self._locate(j, self._inst_offsets, self.num_instances, "instance")
        i = self.image_of(j)
        where = f"{self._shards[s].path}: instance {int(j)} (image {i})"
        try:
            expected = self._image_hw(i)
        except CodecError as exc:
            raise CodecError(f"{where}: its image's header: {exc}") from exc
        entry = self._read(s, "instance_masks", k)
        try:
            return decode_mask(entry, expected_hw=expected)
        except CodecError as exc:
            raise CodecError(f"{where}: {exc}") from exc

    def rho(self, j: int) -> np.ndarray:
        """Stored Gaussian moments of instance ``j``: float32 ``[mu_x, mu_y, var_x, var_y, cov_xy]`` (normalized)."""
        return self.positions[self._check(j, self.num_instances, "instance")].copy()

    def bbox(self, j: int) -> np.ndarray:
        """Stored box of instance ``j``: float32 XYXY inclusive pixels (see ``metadata['flipbench_bbox_convention']``;
        files from the official converter never count column/row 0). Use ``mask_to_bbox(ds.mask(j))`` for the
        tight box."""
        s, k = self._locate(j, self._inst_offsets, self.num_instances, "instance")
        if self._shards[s].bboxes is None:
            raise FlipFormatError(f"{self._shards[s].path} has no instance_mask_bboxes dataset")
        return self._shards[s].bboxes[k].copy()

    def image_shape(self, i: int) -> tuple[int, int]:
        """``(H, W)`` of image ``i`` from the JPEG header (no decoding); :class:`FlipFormatError` if unreadable."""
        try:
            return self._image_hw(i)
        except CodecError as exc:
            s, _ = self._locate(i, self._img_offsets, self.num_images, "image")
            raise FlipFormatError(f"{self._shards[s].path}: image {int(i)}: {exc}") from exc

    def mask_shape(self, j: int) -> tuple[int, int]:
        """``(H, W)`` of instance ``j``'s mask from the PNG header (no decoding); :class:`FlipFormatError` if
        unreadable."""
        s, k = self._locate(j, self._inst_offsets, self.num_instances, "instance")
        entry = np.asarray(self._read(s, "instance_masks", k))
        if entry.dtype == np.uint8 and entry.ndim == 1:
            try:
                return header_size(entry)
            except CodecError as exc:
                raise FlipFormatError(f"{self._shards[s].path}: instance {int(j)}: {exc}") from exc
        shape = entry.shape  # raw array: [H, W], [1, H, W] or [H, W, C]
        return tuple(shape[1:]) if len(shape) == 3 and shape[0] == 1 and shape[-1] != 1 else tuple(shape[:2])

    def _image_hw(self, i: int) -> tuple[int, int]:
        """``(H, W)`` declared by image ``i``'s header (raw arrays: their shape), checked against the pixel limit;
        cached. Raises :class:`CodecError`."""
        i = self._check(i, self.num_images, "image")
        hw = self._shapes.get(i)
        if hw is None:
            s, k = self._locate(i, self._img_offsets, self.num_images, "image")
            entry = np.asarray(self._read(s, "rgb_images", k))
            hw = header_size(entry) if entry.dtype == np.uint8 and entry.ndim == 1 else tuple(entry.shape[:2])
            if len(self._shapes) >= _SHAPE_CACHE:
                self._shapes.clear()
            self._shapes[i] = hw
        check_declared_size(hw)
        return hw

    def __getitem__(self, j: int) -> dict[str, Any]:
        """Instance ``j`` as ``{"image": uint8 [H,W,3], "mask": bool [H,W], "rho": float32 [5],
        "image_index": int, "instance_index": int}``."""
        i = self.image_of(j)
        return {"image": self.image(i), "mask": self.mask(j), "rho": self.rho(j), "image_index": i,
                "instance_index": int(j)}

    # -- source facts per instance ------------------------------------------------------------------------------
    def instance_meta(self, j: int) -> dict[str, str]:
        """Source facts of instance ``j``: ``{"category", "category_id", "source_id"}`` as text (the source's
        category name and id, the instance's id in the source, e.g. ``"annotation 1234"``). Files written before
        flipbench stored them (or by the official converter) read ``category="unknown"`` and empty ids."""
        s, k = self._locate(j, self._inst_offsets, self.num_instances, "instance")
        columns = self._instance_columns(s)
        return {key: str(values[k]) for key, values in columns.items()}

    def categories(self) -> np.ndarray:
        """Category name of every instance: object array ``[num_instances]`` of str (``"unknown"`` where absent)."""
        return np.concatenate([self._instance_columns(s)["category"] for s in range(len(self._shards))])

    def _instance_columns(self, s: int) -> dict[str, np.ndarray]:
        """The per-instance source datasets of shard ``s`` (read once): key -> object array of str."""
        shard = self._shards[s]
        if shard.instance_meta is not None:
            return shard.instance_meta
        n = shard.num_instances
        columns: dict[str, np.ndarray] = {}
        for key, name in schema.INSTANCE_META.items():
            default = schema.UNKNOWN if key == "category" else ""
            values = np.full(n, default, dtype=object)
            if name in shard.optional:
                ds = self._file(s)[name]
                if ds.shape != (n,):
                    raise FlipFormatError(f"{shard.path}: {name} has shape {ds.shape}, expected ({n},) for "
                                          f"{n} instance_masks")
                try:
                    raw = ds.asstr(errors="replace")[:] if ds.dtype.kind == "O" else ds[:]
                except (OSError, RuntimeError, TypeError, ValueError) as exc:
                    raise FlipFormatError(f"{shard.path}: reading {name} failed (corrupt file?): {exc}") from exc
                values[:] = [str(v) if str(v) else default for v in raw]
            columns[key] = values
        shard.instance_meta = columns
        return columns

    # -- provenance ---------------------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """``/metadata`` attributes of the first shard (``coco_licenses`` and ``flipbench_provenance`` parsed from
        JSON); ``shard_metadata(k)`` gives another shard's."""
        return dict(self._shards[0].metadata)

    def shard_metadata(self, k: int) -> dict[str, Any]:
        return dict(self._shards[k].metadata)

    def image_info(self, i: int) -> dict[str, Any]:
        """Attribution and provenance of image ``i``: ``file_name``, ``source_id`` (coco_image_ids), ``license_id``,
        ``license`` (entry of the licence table or None), ``flickr_url``, ``coco_url``, ``transform_note``,
        ``shard`` (file path), ``local_index``, plus the writer's per-image ``extra`` fields when present."""
        s, k = self._locate(i, self._img_offsets, self.num_images, "image")
        shard = self._shards[s]
        info: dict[str, Any] = {"index": int(i), "shard": str(shard.path), "local_index": k}
        for key, name in (("file_name", "file_names"), ("flickr_url", "flickr_urls"), ("coco_url", "coco_urls"),
                          ("transform_note", "transform_notes")):
            if name in shard.optional:
                info[key] = _attr_text(self._read(s, name, k))
        if "coco_image_ids" in shard.optional:
            info["source_id"] = int(self._read(s, "coco_image_ids", k))
        if "license_ids" in shard.optional:
            lid = int(self._read(s, "license_ids", k))
            table = shard.metadata.get("coco_licenses")
            entries = [e for e in table if isinstance(e, dict) and e.get("id") == lid] \
                if isinstance(table, list) else []
            info["license_id"] = lid
            info["license"] = entries[0] if entries else None
        if schema.IMAGE_INFO in shard.optional:
            text = _attr_text(self._read(s, schema.IMAGE_INFO, k)) or "{}"
            try:
                extra = json.loads(text)
            except (json.JSONDecodeError, TypeError) as exc:
                raise FlipFormatError(f"{shard.path}: image {int(i)}: {schema.IMAGE_INFO} is not JSON ({exc})") \
                    from exc
            if not isinstance(extra, dict):
                raise FlipFormatError(f"{shard.path}: image {int(i)}: {schema.IMAGE_INFO} is not a JSON object")
            info.update(extra)
        return info

    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the data: the file's sha256 for one file; for shards, sha256 over the lines
        ``"<file name> <file sha256>\\n"`` in shard order. File digests are cached across processes
        (:mod:`objascale.checksums`), so only new or changed files are read."""
        if self.path.is_file():
            return "sha256:" + file_sha256(self.path)
        h = hashlib.sha256()
        for s in self._shards:
            h.update(f"{s.path.name} {file_sha256(s.path)}\n".encode())
        return "sha256:" + h.hexdigest()

    # -- handles ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the open HDF5 handles (they re-open on the next access)."""
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def __enter__(self) -> "FlipDataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self, s: int) -> h5py.File:
        if self._pid != os.getpid():  # forked: never share the parent's HDF5 handles
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(s)
        if f is None:
            f = self._files[s] = _open(self._shards[s].path)
        return f

    def _read(self, s: int, name: str, k: int) -> Any:
        try:
            return self._file(s)[name][k]
        except (OSError, RuntimeError) as exc:
            raise FlipFormatError(f"{self._shards[s].path}: reading {name}[{k}] failed (corrupt file?): {exc}") from exc

    @staticmethod
    def _check(idx: int, n: int, what: str) -> int:
        idx = int(idx)
        if not 0 <= idx < n:
            raise IndexError(f"{what} index {idx} out of range [0, {n})")
        return idx

    def _locate(self, idx: int, offsets: np.ndarray, n: int, what: str) -> tuple[int, int]:
        idx = self._check(idx, n, what)
        s = int(np.searchsorted(offsets, idx, side="right") - 1)
        return s, idx - int(offsets[s])
