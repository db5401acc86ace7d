"""FlipDataset: errors on bad files, shard directories, lazy/fork-safe handles, raw-array entries."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import shutil

import h5py
import numpy as np
import pytest

from objascale.hdf5_format import FlipDataset, FlipFormatError, FlipH5Writer
from test_format_writer import sample_images, write_sample


@pytest.fixture()
def sample(tmp_path):
    return write_sample(tmp_path / "sample.hdf5")


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FlipDataset(tmp_path / "nope.hdf5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.hdf5"):
        FlipDataset(tmp_path / "empty")


def test_not_hdf5(tmp_path):
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"this is not an HDF5 file" * 100)
    with pytest.raises(FlipFormatError, match="cannot be opened as HDF5"):
        FlipDataset(bad)


def test_truncated_file(sample, tmp_path):
    data = sample.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FlipFormatError, match="truncated or corrupt"):
        FlipDataset(cut)


def test_missing_required_dataset(sample):
    with h5py.File(sample, "a") as f:
        del f["positions"]
    with pytest.raises(FlipFormatError, match="lacks required dataset.*positions"):
        FlipDataset(sample)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("instance_masks_images", [[0], [0], [1], [1]], "instance 2 belongs to image 1"),
        ("instance_masks_images", [[0], [0], [0], [7]], "outside \\[0, 2\\)"),
        ("image_instance_indices", [[0, 3], [3, 2]], "sum to 5"),
    ],
)
def test_inconsistent_indices(sample, name, value, match):
    with h5py.File(sample, "a") as f:
        f[name][...] = np.asarray(value)
    with pytest.raises(FlipFormatError, match=match):
        FlipDataset(sample)


def test_wrong_lengths(sample):
    with h5py.File(sample, "a") as f:
        f["positions"].resize((3, 5))
    with pytest.raises(FlipFormatError, match="positions has shape \\(3, 5\\)"):
        FlipDataset(sample)


def test_index_out_of_range(sample):
    ds = FlipDataset(sample)
    for call, n in ((ds.mask, 4), (ds.rho, 4), (ds.image_of, 4), (ds.image, 2), (ds.instance_indices, 2)):
        with pytest.raises(IndexError, match=f"out of range \\[0, {n}\\)"):
            call(n)
        with pytest.raises(IndexError):
            call(-1)


def test_corrupt_mask_bytes(sample):
    with h5py.File(sample, "a") as f:
        f["instance_masks"][1] = np.frombuffer(b"garbage-bytes", np.uint8)
    ds = FlipDataset(sample)
    with pytest.raises(ValueError, match="could not be decoded"):
        ds.mask(1)
    assert ds.mask(0).any()  # the rest stays readable


def test_shard_directory_is_one_dataset(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    images = sample_images()
    for k, part in enumerate((images[:1], images[1:], images)):
        with FlipH5Writer(shards / f"part-{k:03d}.hdf5", dataset_name="unit", dataset_type="test") as w:
            for rgb, masks, info in part:
                w.add_image(rgb, masks, info)
    ds = FlipDataset(shards)
    assert [p.name for p in ds.shard_paths] == ["part-000.hdf5", "part-001.hdf5", "part-002.hdf5"]
    assert (ds.num_images, ds.num_instances) == (4, 8)
    order = [images[0], images[1], images[0], images[1]]
    j = 0
    for i, (_rgb, masks, info) in enumerate(order):
        assert ds.instance_indices(i) == range(j, j + len(masks))
        assert ds.image_info(i)["source_id"] == info["source_id"]
        for m in masks:
            np.testing.assert_array_equal(ds.mask(j), m)
            assert ds.image_of(j) == i
            j += 1
    assert ds.image_info(2)["shard"].endswith("part-002.hdf5") and ds.image_info(2)["local_index"] == 0
    fp = ds.fingerprint()
    assert fp.startswith("sha256:") and fp == FlipDataset(shards).fingerprint()
    shutil.copy(shards / "part-000.hdf5", shards / "part-003.hdf5")
    assert FlipDataset(shards).fingerprint() != fp


def test_partial_shards_are_ignored_with_a_warning(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write_sample(d / "a.hdf5")
    (d / "b.hdf5.partial").write_bytes(b"unfinished")
    with pytest.warns(UserWarning, match="unfinished"):
        assert FlipDataset(d).num_images == 2


def _child_reads(ds: FlipDataset, queue) -> None:
    queue.put((int(ds.mask(3).sum()), ds.image(1).shape))


def test_lazy_open_and_fork(sample):
    ds = FlipDataset(sample)
    assert ds._files == {}  # nothing opened by construction
    expected = (int(ds.mask(3).sum()), ds.image(1).shape)  # the parent opens a handle before forking
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_reads, args=(ds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [expected, expected]
    assert int(ds.mask(3).sum()) == expected[0]  # the parent's handle still works


def test_pickle_drops_handles(sample):
    ds = FlipDataset(sample)
    ds.image(0)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files == {}
    np.testing.assert_array_equal(clone.image(0), ds.image(0))
    item = clone[3]
    assert item["image_index"] == 1 and item["mask"].shape == item["image"].shape[:2]


def test_raw_array_entries(tmp_path):
    """Files holding raw arrays instead of JPEG/PNG bytes (the official loader accepts them)."""
    rgb, masks, _ = sample_images()[1]
    path = tmp_path / "raw.hdf5"
    with h5py.File(path, "w") as f:
        f["rgb_images"] = rgb[None]
        f["instance_masks"] = (masks[0][None, None] * 255).astype(np.uint8)  # [N, 1, H, W]
        f["instance_masks_images"] = np.zeros((1, 1), np.int64)
        f["image_instance_indices"] = np.array([[0, 1]], np.int64)
        f["positions"] = np.zeros((1, 5), np.float32)
    ds = FlipDataset(path)
    np.testing.assert_array_equal(ds.image(0), rgb)
    np.testing.assert_array_equal(ds.mask(0), masks[0])
    assert ds.image_shape(0) == rgb.shape[:2] and ds.mask_shape(0) == masks[0].shape
    assert ds.image_info(0)["index"] == 0 and ds.metadata == {}


def test_torch_dataloader_workers(sample):
    """FlipDataset works as a map-style dataset in DataLoader worker processes (lazy per-process handles)."""
    torch_data = pytest.importorskip("torch.utils.data")
    ds = FlipDataset(sample)
    loader = torch_data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    items = list(loader)
    assert [int(it["instance_index"]) for it in items] == list(range(len(ds)))
    for it in items:
        np.testing.assert_array_equal(np.asarray(it["mask"]), ds.mask(int(it["instance_index"])))


def test_counts_checked_when_there_are_no_instances(sample):
    """A file whose per-image counts promise instances that are not stored is refused, not read."""
    with h5py.File(sample, "a") as f:
        for name in ("instance_masks", "instance_masks_images", "positions", "instance_mask_bboxes"):
            f[name].resize((0, *f[name].shape[1:]))
    with pytest.raises(FlipFormatError, match="sum to"):
        FlipDataset(sample)
