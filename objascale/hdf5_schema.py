"""The official FLIP HDF5 layout (as ``convert_coco_to_hdf5.py`` writes it) plus flipbench's additions.

Every dataset is created empty and resizable along axis 0 (``maxshape`` None), so h5py picks the same automatic
chunk shapes as the official converter. Official readers open datasets by name and ignore anything else, so the
flipbench additions (a per-image JSON dataset, three per-instance source datasets, extra ``/metadata`` attributes)
do not break them.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

STR_DTYPE = h5py.string_dtype(encoding="utf-8")
BYTES_DTYPE = h5py.vlen_dtype(np.dtype("uint8"))

#: the per-image note the official converter stores
TRANSFORM_NOTE = "recompressed JPEG; no creative edits"

#: flipbench additions (ignored by the official code)
IMAGE_INFO = "flipbench_image_info"  # per-image JSON text (provenance, licence, source ids)
PROVENANCE_ATTR = "flipbench_provenance"  # /metadata attribute: JSON text
BBOX_CONVENTION_ATTR = "flipbench_bbox_convention"  # /metadata attribute: "official" | "tight"
FORMAT_VERSION_ATTR = "flipbench_format_version"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the layout: ``shape`` beyond axis 0, dtype, gzip level (None = uncompressed)."""

    name: str
    tail: tuple[int, ...]
    dtype: object
    gzip: int | None
    per: str  # "image" or "instance"


OFFICIAL_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("rgb_images", (), BYTES_DTYPE, None, "image"),
    DatasetSpec("instance_masks", (), BYTES_DTYPE, None, "instance"),
    DatasetSpec("sequence_indices", (2,), np.int64, 5, "image"),
    DatasetSpec("image_instance_indices", (2,), np.int64, 5, "image"),
    DatasetSpec("instance_masks_images", (1,), np.int64, 5, "instance"),
    DatasetSpec("instance_mask_bboxes", (4,), np.float32, 5, "instance"),
    DatasetSpec("coco_image_ids", (), np.int64, None, "image"),
    DatasetSpec("license_ids", (), np.uint8, None, "image"),
    DatasetSpec("positions", (5,), np.float32, 5, "instance"),
    DatasetSpec("file_names", (), STR_DTYPE, None, "image"),
    DatasetSpec("flickr_urls", (), STR_DTYPE, None, "image"),
    DatasetSpec("coco_urls", (), STR_DTYPE, None, "image"),
    DatasetSpec("transform_notes", (), STR_DTYPE, None, "image"),
)
#: per-instance source facts (flipbench addition, official readers ignore them): the source's category name, its
#: category id as text (COCO/LVIS category_id, Open Images label MID, KITTI-360 semantic id, Hypersim NYU40 id,
#: ObjaScale category) and the instance's id in the source ("annotation 1234", "box 0a1b2c", "instance 26012",
#: "object <uid>"); "unknown" / "" where the source has none
INSTANCE_CATEGORY = "flipbench_instance_category"
INSTANCE_CATEGORY_ID = "flipbench_instance_category_id"
INSTANCE_SOURCE_ID = "flipbench_instance_source_id"
#: key of ``instance_meta`` dicts -> dataset
INSTANCE_META = {"category": INSTANCE_CATEGORY, "category_id": INSTANCE_CATEGORY_ID, "source_id": INSTANCE_SOURCE_ID}
UNKNOWN = "unknown"

FLIPBENCH_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(IMAGE_INFO, (), STR_DTYPE, None, "image"),
    DatasetSpec(INSTANCE_CATEGORY, (), STR_DTYPE, None, "instance"),
    DatasetSpec(INSTANCE_CATEGORY_ID, (), STR_DTYPE, None, "instance"),
    DatasetSpec(INSTANCE_SOURCE_ID, (), STR_DTYPE, None, "instance"),
)

#: what a reader needs; everything else is optional (attribution datasets, sequence_indices, ...)
REQUIRED_DATASETS = ("rgb_images", "instance_masks", "instance_masks_images", "image_instance_indices", "positions")


def create_datasets(h5: h5py.File, specs: tuple[DatasetSpec, ...]) -> None:
    """Create each dataset empty and resizable, exactly as the official converter does."""
    for spec in specs:
        kwargs = {"compression": "gzip", "compression_opts": spec.gzip} if spec.gzip is not None else {}
        h5.create_dataset(spec.name, (0, *spec.tail), maxshape=(None, *spec.tail), dtype=spec.dtype, **kwargs)
