"""FlipH5Writer: official layout (vs the golden file), round trip, provenance, crash safety, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from objascale.hdf5_format import (
    FlipDataset,
    FlipH5Writer,
    mask_to_bbox,
    mask_to_bbox_official,
    mask_to_rho,
    official_file_name,
)
from _shared import FLIP_REFERENCE, require

GOLDEN = FLIP_REFERENCE / "hdf5" / "coco-fixture-fixture-v1.hdf5"
LICENSES = [{"id": 4, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/2.0/"}]


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth RGB gradient image (JPEG-friendly) with a little noise: uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([255 * xx / w, 255 * yy / h, 128 + 60 * np.sin(xx / 17.0)], axis=-1)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def sample_images():
    """Two images: 3 instances (one touching the left/top border) and 1 instance."""
    a = smooth_image(60, 80, 0)
    masks_a = [ellipse(60, 80, 20, 30, 10, 6), ellipse(60, 80, 60, 20, 8, 15), ellipse(60, 80, 0, 0, 5, 4)]
    b = smooth_image(50, 40, 1)
    masks_b = [ellipse(50, 40, 20, 25, 19, 24)]
    return [(a, masks_a, {"file_name": "a.jpg", "source_id": 11, "license": 4, "flickr_url": "http://f/a",
                          "coco_url": "http://c/a", "extra": {"attribution": "Jane Doe", "split": "val"}}),
            (b, masks_b, {"file_name": "b.jpg", "source_id": 12, "license": 4})]


def write_sample(path, **kwargs):
    with FlipH5Writer(path, dataset_name="unit", dataset_type="test", licenses=LICENSES,
                      provenance={"source": "synthetic", "generator": {"seed": 0}}, **kwargs) as w:
        for rgb, masks, info in sample_images():
            w.add_image(rgb, masks, info)
    return path


def describe(obj: h5py.Dataset) -> tuple:
    return (str(obj.dtype), h5py.check_vlen_dtype(obj.dtype), h5py.check_string_dtype(obj.dtype), obj.shape[1:],
            obj.maxshape, obj.chunks, obj.compression, obj.compression_opts, obj.shuffle, obj.fletcher32)


def test_layout_equals_golden(tmp_path):
    ours = write_sample(tmp_path / "ours.hdf5")
    with h5py.File(require(GOLDEN), "r") as g, h5py.File(ours, "r") as o:
        official = {k for k in g.keys() if isinstance(g[k], h5py.Dataset)}
        assert official <= set(o.keys())
        for name in sorted(official):
            assert describe(o[name]) == describe(g[name]), name
        assert set(g["metadata"].attrs) <= set(o["metadata"].attrs)
        for key in g["metadata"].attrs:
            assert type(o["metadata"].attrs[key]) is type(g["metadata"].attrs[key])
        assert set(o.keys()) - official - {"metadata"} == {
            "flipbench_image_info", "flipbench_instance_category", "flipbench_instance_category_id",
            "flipbench_instance_source_id"}
        np.testing.assert_array_equal(o["sequence_indices"][:], [[0, 1], [1, 1]])
        np.testing.assert_array_equal(o["image_instance_indices"][:], [[0, 3], [3, 1]])
        np.testing.assert_array_equal(o["instance_masks_images"][:], [[0], [0], [0], [1]])
        assert list(o["transform_notes"].asstr()[:]) == ["recompressed JPEG; no creative edits"] * 2
        assert o["license_ids"][:].tolist() == [4, 4]


def test_round_trip(tmp_path):
    ds = FlipDataset(write_sample(tmp_path / "rt.hdf5"))
    assert (ds.num_images, ds.num_instances) == (2, 4)
    j = 0
    for i, (rgb, masks, info) in enumerate(sample_images()):
        img = ds.image(i)
        assert img.shape == rgb.shape and img.dtype == np.uint8
        assert np.abs(img.astype(int) - rgb).mean() < 2.0  # JPEG quality 95
        for m in masks:
            np.testing.assert_array_equal(ds.mask(j), m)
            np.testing.assert_array_equal(ds.rho(j), mask_to_rho(m))
            np.testing.assert_array_equal(ds.bbox(j), mask_to_bbox_official(m).astype(np.float32))
            assert ds.image_of(j) == i
            j += 1
        got = ds.image_info(i)
        for key in ("file_name", "source_id", "flickr_url", "coco_url"):
            assert got.get(key, "") == info.get(key, "")
        assert got["license"] == LICENSES[0]
        for key, value in info.get("extra", {}).items():
            assert got[key] == value
    prov = ds.metadata["flipbench_provenance"]
    assert prov["source"] == "synthetic" and prov["generator"] == {"seed": 0}
    assert prov["bbox_convention"] == "official" and "flipbench_version" in prov
    assert ds.metadata["flipbench_bbox_convention"] == "official"


def test_tight_bbox_convention(tmp_path):
    ds = FlipDataset(write_sample(tmp_path / "tight.hdf5", bbox_convention="tight"))
    border = sample_images()[0][1][2]  # touches column 0 and row 0
    np.testing.assert_array_equal(ds.bbox(2), mask_to_bbox(border).astype(np.float32))
    assert ds.bbox(2)[0] == 0 and ds.bbox(2)[1] == 0
    assert ds.metadata["flipbench_bbox_convention"] == "tight"


def test_small_flush_batches_give_same_content(tmp_path):
    a = FlipDataset(write_sample(tmp_path / "a.hdf5", flush_every=1))
    b = FlipDataset(write_sample(tmp_path / "b.hdf5", flush_every=100))
    np.testing.assert_array_equal(a.positions, b.positions)
    for j in range(len(a)):
        np.testing.assert_array_equal(a.mask(j), b.mask(j))


def test_interrupted_write_leaves_no_complete_file(tmp_path):
    path = tmp_path / "x.hdf5"
    rgb, masks, info = sample_images()[0]
    with pytest.raises(RuntimeError, match="boom"):
        with FlipH5Writer(path, dataset_name="unit", dataset_type="test") as w:
            w.add_image(rgb, masks, info)
            assert w.partial_path.exists() and not path.exists()
            raise RuntimeError("boom")
    assert not path.exists() and not (tmp_path / "x.hdf5.partial").exists()


def test_refuses_to_overwrite_and_names_like_official(tmp_path):
    path = write_sample(tmp_path / "unit-test-v1.hdf5")
    with pytest.raises(FileExistsError, match="overwrite"):
        FlipH5Writer(path, dataset_name="unit", dataset_type="test")
    assert official_file_name(tmp_path, "unit", "test").name == "unit-test-v2.hdf5"


@pytest.mark.parametrize(
    "rgb, masks, info, match",
    [
        (np.zeros((8, 8, 3), np.uint8), [], {}, "at least one instance"),
        (np.zeros((8, 8, 3), np.uint8), [np.zeros((8, 8), bool)], {}, "empty"),
        (np.zeros((8, 8, 3), np.uint8), [np.ones((8, 9), bool)], {}, "shape"),
        (np.zeros((8, 8), np.uint8), [np.ones((8, 8), bool)], {}, "uint8 \\[H, W, 3\\]"),
        (np.zeros((8, 8, 3), np.uint8), [np.ones((8, 8), bool)], {"licence": 1}, "unknown info keys"),
        (np.zeros((8, 8, 3), np.uint8), [np.ones((8, 8), bool)], {"license": 300}, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), [np.ones((8, 8), bool)], {"extra": {"shard": 1}}, "clash"),
    ],
)
def test_bad_input_is_rejected_clearly(tmp_path, rgb, masks, info, match):
    w = FlipH5Writer(tmp_path / "bad.hdf5", dataset_name="unit", dataset_type="test")
    with pytest.raises(ValueError, match=match):
        w.add_image(rgb, masks, info)
    w.abort()
    assert not list(tmp_path.iterdir())


def test_writing_is_deterministic(tmp_path):
    a = write_sample(tmp_path / "a.hdf5")
    b = write_sample(tmp_path / "b.hdf5")
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(h5py.File(a, "r")["metadata"].attrs["flipbench_provenance"])["format_version"] == 1


def test_official_reader_access_pattern(tmp_path):
    """Read our file the way the official loader/evaluation do (h5py by name, JPEG bytes, PNG > 128)."""
    import cv2

    path = write_sample(tmp_path / "ours.hdf5")
    images = sample_images()
    with h5py.File(path, "r") as f:
        seq = f["sequence_indices"][:]
        ranges = f["image_instance_indices"][:]
        assert len(seq) == len(f["rgb_images"]) == 2
        for i, (start, count) in enumerate(ranges):
            rgb = cv2.cvtColor(cv2.imdecode(f["rgb_images"][seq[i][0]], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert rgb.shape == images[i][0].shape
            for k in range(count):
                j = start + k
                assert f["instance_masks_images"][j].item() == i
                raw = f["instance_masks"][j]
                assert raw.dtype == np.uint8 and raw.ndim == 1
                mask = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
                assert mask.max() == 255
                np.testing.assert_array_equal((mask > 128).squeeze(), images[i][1][k])
                assert f["positions"][j : j + 1].shape == (1, 5) and f["instance_mask_bboxes"][j].shape == (4,)


def test_instance_source_facts_round_trip_and_leave_the_official_layout_alone(tmp_path):
    """Per-instance category / id / source id live in datasets the official code never opens; the official
    datasets are the same bytes with or without them, and the reader gives them back ("unknown" where unset)."""
    images = sample_images()
    facts = [{"category": "dog", "category_id": 18, "source_id": "annotation 7"}, {"category": "café \ud800"}]
    plain, tagged = tmp_path / "plain.hdf5", tmp_path / "tagged.hdf5"
    for path, meta in ((plain, None), (tagged, facts)):
        with FlipH5Writer(path, dataset_name="t", dataset_type="val") as w:
            rgb, masks, _ = images[0]
            w.add_image(rgb, masks[:2], instances=meta)
            w.add_image(*images[1][:2])
    with h5py.File(plain, "r") as a, h5py.File(tagged, "r") as b:
        for name in ("rgb_images", "instance_masks", "positions", "instance_mask_bboxes", "image_instance_indices"):
            assert [np.asarray(x).tobytes() for x in a[name][:]] == [np.asarray(x).tobytes() for x in b[name][:]]
    ds = FlipDataset(tagged)
    assert ds.instance_meta(0) == {"category": "dog", "category_id": "18", "source_id": "annotation 7"}
    assert ds.instance_meta(1)["category"] == "café \\ud800"  # a lone surrogate is kept visibly, not an error
    assert ds.instance_meta(2) == {"category": "unknown", "category_id": "", "source_id": ""}
    assert list(ds.categories()) == ["dog", "café \\ud800"] + ["unknown"] * (ds.num_instances - 2)
    with pytest.raises(ValueError, match="1 instance entries for 2 masks"):
        with FlipH5Writer(tmp_path / "bad.hdf5", dataset_name="t", dataset_type="val") as w:
            w.add_image(images[0][0], images[0][1][:2], instances=facts[:1])
    assert not (tmp_path / "bad.hdf5").exists()


def test_identical_entries_in_one_flush_batch(tmp_path):
    """Equal-length vlen entries in one batch must not be broadcast into a 2-D array by h5py."""
    from objascale.hdf5_format import FlipDataset, FlipH5Writer

    mask = np.zeros((12, 16), bool)
    mask[2:5, 3:9] = True
    path = tmp_path / "same.hdf5"
    with FlipH5Writer(path, dataset_name="x", dataset_type="y") as writer:
        for _ in range(3):
            writer.add_image(np.zeros((12, 16, 3), np.uint8), [mask, mask])
    dataset = FlipDataset(path)
    assert dataset.num_images == 3 and dataset.num_instances == 6
    assert all((dataset.mask(j) == mask).all() for j in range(6))


def test_rejected_image_leaves_the_file_consistent(tmp_path):
    """An image whose info cannot be stored raises and is not half-written: the other images stay aligned."""
    from objascale.hdf5_format import FlipDataset, FlipH5Writer

    mask = np.zeros((12, 16), bool)
    mask[2:5, 3:9] = True
    path = tmp_path / "partial-failure.hdf5"
    with FlipH5Writer(path, dataset_name="x", dataset_type="y") as writer:
        writer.add_image(np.zeros((12, 16, 3), np.uint8), [mask], {"file_name": "a.jpg"})
        with pytest.raises(TypeError):
            writer.add_image(np.zeros((12, 16, 3), np.uint8), [mask], {"file_name": "bad.jpg", "extra": {"x": object()}})
        writer.add_image(np.zeros((12, 16, 3), np.uint8), [mask, mask], {"file_name": "b.jpg"})
    dataset = FlipDataset(path)
    assert (dataset.num_images, dataset.num_instances) == (2, 3)
    assert [dataset.image_info(i)["file_name"] for i in range(2)] == ["a.jpg", "b.jpg"]
    assert list(dataset.instance_indices(1)) == [1, 2]
