"""KITTI-360 converter on a synthetic source following the documented layout (16-bit semantic*1000+instance)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.converters.common import convert
from objascale.converters.kitti360 import Kitti360Source, split_instance_ids
from objascale.hdf5_format import FlipDataset

DRIVE = "2013_05_28_drive_0003_sync"
H, W = 40, 64


def make_source(root, frames=(5, 7)):
    """Frames with: unlabeled 0, road 7 and vegetation 21 (no instances), cars 26001/26002, person 24005,
    pole 17003 (hasInstances but not in the instance benchmark)."""
    raw = root / "data_2d_raw" / DRIVE / "image_00" / "data_rect"
    sem = root / "data_2d_semantics" / "train" / DRIVE / "image_00"
    raw.mkdir(parents=True)
    (sem / "instance").mkdir(parents=True)
    rng = np.random.default_rng(0)
    inst = np.zeros((H, W), np.uint16)
    inst[20:, :] = 7
    inst[:10, 40:] = 21
    inst[22:30, 5:20] = 26001
    inst[25:35, 30:45] = 26002
    inst[5:25, 50:54] = 24005
    inst[0:20, 0:2] = 17003
    lines = []
    for f in frames:
        name = f"{f:010d}.png"
        cv2.imwrite(str(raw / name), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(sem / "instance" / name), inst)
        lines.append(f"data_2d_raw/{DRIVE}/image_00/data_rect/{name} data_2d_semantics/train/{DRIVE}/image_00/"
                     f"semantic/{name}")
    (root / "data_2d_semantics" / "train" / "2013_05_28_drive_val_frames.txt").write_text("\n".join(lines) + "\n")
    return inst


def test_split_instance_ids():
    sem, ins = split_instance_ids(np.array([0, 7, 999, 1000, 26001, 24005]))
    assert sem.tolist() == [0, 7, 999, 1, 26, 24] and ins.tolist() == [-1, -1, -1, 0, 1, 5]


@pytest.mark.parametrize("classes, expected", [("all", [17003, 24005, 26001, 26002]), ("eval", [24005, 26001, 26002])])
def test_kitti360_conversion(tmp_path, classes, expected):
    inst = make_source(tmp_path / "k")
    report = convert(Kitti360Source(tmp_path / "k", classes=classes), tmp_path / "out", progress=False)
    ds = FlipDataset(report.output)
    assert report.output.endswith("kitti360-val-val-v1.hdf5")
    assert ds.num_images == 2 and ds.num_instances == 2 * len(expected)
    info = ds.image_info(0)
    assert info["instance_values"] == expected and info["sequence"] == 3 and info["frame"] == 5
    assert info["source_id"] == 3 * 10**11 + 5 and info["license"]["name"].startswith("CC BY-NC-SA 3.0")
    for j, v in enumerate(expected):
        np.testing.assert_array_equal(ds.mask(j), inst == v)
    assert info["categories"][expected.index(26001)] == "car"
    meta = ds.instance_meta(expected.index(26001))
    assert meta == {"category": "car", "category_id": "26", "source_id": "instance 26001"}
    assert list(ds.categories())[:len(expected)] == info["categories"]


def test_kitti360_missing_label_and_bad_frame_list(tmp_path):
    make_source(tmp_path / "k")
    (tmp_path / "k" / "data_2d_semantics" / "train" / DRIVE / "image_00" / "instance" / "0000000007.png").unlink()
    res = CliRunner().invoke(cli, ["convert", "kitti360", str(tmp_path / "k"), "--out", str(tmp_path / "out"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "missing instance label file" in res.output
    bad = tmp_path / "frames.txt"
    bad.write_text("some/other/path.png\n")
    with pytest.raises(ValueError, match="frames.txt:1: not a KITTI-360 rectified image path"):
        Kitti360Source(tmp_path / "k", frames=bad)
    with pytest.raises(FileNotFoundError, match="frame list"):
        Kitti360Source(tmp_path)
