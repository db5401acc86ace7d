"""Hypersim converter on a synthetic scene following the documented layout; official tone mapping."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.converters.common import convert
from objascale.converters.hypersim import HypersimSource, tonemap
from objascale.hdf5_format import FlipDataset

H, W = 24, 32


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["dataset"] = array


def make_scene(root, scene="ai_001_002", cam="cam_00", frames=(0, 3)):
    rng = np.random.default_rng(1)
    inst = -np.ones((H, W), np.int16)
    inst[4:12, 4:14] = 7
    inst[14:22, 16:30] = 12
    sem = -np.ones((H, W), np.int16)
    sem[inst == 7] = 5  # chair
    sem[inst == 12] = 7  # table
    sem[14:16, 16:30] = 40  # a minority label inside instance 12
    entity = np.arange(H * W, dtype=np.int32).reshape(H, W)
    entity[:3, :] = -1  # no geometry (e.g. a window to the sky)
    images = root / scene / "images"
    for f in frames:
        yy, xx = np.mgrid[0:H, 0:W] / max(H, W)  # smooth HDR (JPEG-friendly) with a per-frame gain
        hdr = (np.stack([xx, yy, 0.5 + 0 * xx], -1) * 3 * (1 + rng.random())).astype(np.float16)
        hdr[0, 0] = 1000.0  # bright pixel outside the valid mask must not drive the exposure
        write(images / f"scene_{cam}_final_hdf5" / f"frame.{f:04d}.color.hdf5", hdr)
        geo = images / f"scene_{cam}_geometry_hdf5"
        write(geo / f"frame.{f:04d}.render_entity_id.hdf5", entity)
        write(geo / f"frame.{f:04d}.semantic_instance.hdf5", inst)
        write(geo / f"frame.{f:04d}.semantic.hdf5", sem)
    return inst, entity


def reference_tonemap(hdr, entity):
    """The documented formula, written out independently."""
    hdr = hdr.astype(np.float64)
    lum = 0.3 * hdr[..., 0] + 0.59 * hdr[..., 1] + 0.11 * hdr[..., 2]
    p90 = np.percentile(lum[entity != -1], 90)
    scale = 0.8**2.2 / p90
    return np.floor(np.clip((scale * np.maximum(hdr, 0)) ** (1 / 2.2), 0, 1) * 255).astype(np.uint8)


def test_tonemap_matches_documented_formula():
    rng = np.random.default_rng(0)
    hdr = (rng.random((16, 16, 3)) * 5).astype(np.float16)
    entity = np.zeros((16, 16), np.int32)
    entity[:4] = -1
    ours, ref = tonemap(hdr, entity), reference_tonemap(hdr, entity)
    assert np.abs(ours.astype(int) - ref).max() <= 1  # float32 vs float64 at truncation boundaries
    assert (tonemap(np.zeros((4, 4, 3)), np.zeros((4, 4))) == 0).all()  # p90 < eps -> scale 0
    nan = np.full((4, 4, 3), np.nan)
    assert (tonemap(nan, -np.ones((4, 4))) == 0).all()


def test_hypersim_conversion_all_frames(tmp_path):
    inst, entity = make_scene(tmp_path / "hs")
    report = convert(HypersimSource(tmp_path / "hs"), tmp_path / "out", progress=False)
    ds = FlipDataset(report.output)
    assert report.output.endswith("hypersim-all-all-v1.hdf5")
    assert (ds.num_images, ds.num_instances) == (2, 4)
    np.testing.assert_array_equal(ds.mask(0), inst == 7)
    np.testing.assert_array_equal(ds.mask(1), inst == 12)
    info = ds.image_info(1)
    assert info["frame"] == 3 and info["semantic_instance_ids"] == [7, 12]
    assert info["categories"] == ["chair", "table"] and info["nyu40_ids"] == [5, 7]
    assert [ds.instance_meta(j) for j in (2, 3)] == [
        {"category": "chair", "category_id": "5", "source_id": "semantic_instance 7"},
        {"category": "table", "category_id": "7", "source_id": "semantic_instance 12"}]
    assert info["source_id"] == 1 * 10**9 + 2 * 10**6 + 3 and info["license"]["name"].startswith("CC BY-SA 3.0")
    with h5py.File(tmp_path / "hs/ai_001_002/images/scene_cam_00_final_hdf5/frame.0003.color.hdf5") as f:
        expected = reference_tonemap(f["dataset"][:], entity)
    assert np.abs(ds.image(1).astype(int) - expected).mean() < 3  # JPEG of the tone-mapped image


def test_hypersim_split_csv_and_missing_files(tmp_path):
    make_scene(tmp_path / "hs")
    (tmp_path / "hs/ai_001_002/images/scene_cam_00_geometry_hdf5/frame.0003.semantic_instance.hdf5").unlink()
    split = tmp_path / "metadata_images_split_scene_v1.csv"
    split.write_text("scene_name,camera_name,frame_id,included_in_public_release,exclude_reason,split_partition_name\n"
                     "ai_001_002,cam_00,0,True,,val\nai_001_002,cam_00,3,True,,val\n"
                     "ai_001_002,cam_00,5,False,bad,val\nai_001_002,cam_00,9,True,,train\n")
    res = CliRunner().invoke(cli, ["convert", "hypersim", str(tmp_path / "hs"), "--split-csv", str(split),
                                   "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "missing semantic_instance file" in res.output
    ds = FlipDataset(tmp_path / "out" / "hypersim-val-val-v1.hdf5")
    assert ds.num_images == 1 and ds.image_info(0)["frame"] == 0
    split.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not metadata_images_split_scene_v1.csv"):
        HypersimSource(tmp_path / "hs", split_csv=split)
