"""The reader and the mask statistics against the official converter's golden file (../shared fixtures)."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from objascale.hdf5_format import FlipDataset, mask_to_bbox, mask_to_bbox_official, mask_to_rho
from _shared import FLIP_REFERENCE, require

HDF5_DIR = FLIP_REFERENCE / "hdf5"
GOLDEN = HDF5_DIR / "coco-fixture-fixture-v1.hdf5"
# README section 10 lists the golden file's sha256 prefix
GOLDEN_SHA_PREFIX = "855077c7159b02df"
# float32 cancellation noise of the official torch computation (see objascale/moments.py)
RHO_ATOL = 2e-7


@pytest.fixture(scope="module")
def golden():
    return FlipDataset(require(GOLDEN))


@pytest.fixture(scope="module")
def contents():
    return json.loads(require(HDF5_DIR / "hdf5_contents.json").read_text())


def test_counts_and_indices(golden, contents):
    assert golden.num_images == len(contents["coco_image_ids"]) == 5
    assert golden.num_instances == len(golden) == len(contents["positions"]) == 17
    for i, (first, count) in enumerate(contents["image_instance_indices"]):
        assert golden.instance_indices(i) == range(first, first + count)
    assert [golden.image_of(j) for j in range(17)] == [row[0] for row in contents["instance_masks_images"]]


def test_stored_arrays_read_exactly(golden, contents):
    np.testing.assert_array_equal(golden.positions, np.asarray(contents["positions"], dtype=np.float32))
    for j, box in enumerate(contents["instance_mask_bboxes"]):
        np.testing.assert_array_equal(golden.bbox(j), np.asarray(box, dtype=np.float32))
        np.testing.assert_array_equal(golden.rho(j), np.asarray(contents["positions"][j], dtype=np.float32))


def test_image_info_and_metadata(golden, contents):
    for i in range(golden.num_images):
        info = golden.image_info(i)
        assert info["source_id"] == contents["coco_image_ids"][i]
        assert info["license_id"] == contents["license_ids"][i]
        assert info["license"]["id"] == contents["license_ids"][i]
        assert info["file_name"] == contents["file_names"][i]
        assert info["flickr_url"] == contents["flickr_urls"][i]
        assert info["coco_url"] == contents["coco_urls"][i]
        assert info["transform_note"] == contents["transform_notes"][i]
    meta = golden.metadata
    assert meta["dataset_name"] == "coco-fixture" and meta["type"] == "fixture"
    assert meta["coco_licenses"] == json.loads(contents["metadata_attrs"]["coco_licenses"])


def test_fingerprint_is_file_sha256(golden):
    assert golden.fingerprint().startswith("sha256:" + GOLDEN_SHA_PREFIX)


def test_masks_decode_and_statistics_reproduce_official(golden, contents):
    for j in range(golden.num_instances):
        mask = golden.mask(j)
        h, w = golden.image_shape(golden.image_of(j))
        assert mask.dtype == np.bool_ and mask.shape == (h, w) == golden.mask_shape(j)
        np.testing.assert_allclose(mask_to_rho(mask), contents["positions"][j], rtol=0, atol=RHO_ATOL)
        official_box = mask_to_bbox_official(mask).astype(np.float32)
        np.testing.assert_array_equal(official_box, contents["instance_mask_bboxes"][j])


def test_border_quirk_instance(golden, contents):
    """Instance 7 (the flag) touches row 0 and column 0: official stores 1, the tight box is 0."""
    mask = golden.mask(7)
    assert mask[:, 0].any() and mask[0, :].any()
    assert list(contents["instance_mask_bboxes"][7][:2]) == [1.0, 1.0]
    assert list(mask_to_bbox(mask)[:2]) == [0.0, 0.0]
    assert list(mask_to_bbox(mask)[2:]) == list(mask_to_bbox_official(mask)[2:])


def test_opencv_and_pillow_decode_identically(golden):
    """Our decoder (OpenCV) vs Pillow on the official JPEG bytes: both libjpeg-turbo with default settings."""
    with h5py.File(GOLDEN, "r") as f:
        for i in range(golden.num_images):
            pil = np.asarray(Image.open(io.BytesIO(f["rgb_images"][i].tobytes())).convert("RGB"))
            np.testing.assert_array_equal(golden.image(i), pil)


def test_official_decoder_turbojpeg_agrees(golden):
    """The official evaluation decodes with the `turbojpeg` pip package; our OpenCV decode must match it."""
    turbojpeg = pytest.importorskip("turbojpeg", reason="turbojpeg (the official decoder) is not installed")
    with h5py.File(GOLDEN, "r") as f:
        for i in range(golden.num_images):
            official = np.asarray(turbojpeg.decompress(f["rgb_images"][i])).astype(np.uint8)
            np.testing.assert_array_equal(golden.image(i), official)
