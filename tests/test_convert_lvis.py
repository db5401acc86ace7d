"""LVIS converter on the derived LVIS-format fixture (tests/data/lvis_v1_val_mini.json) of the 3 COCO mini images."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.converters.common import convert
from objascale.converters.lvis import LvisSource
from objascale.hdf5_format import FlipDataset
from _shared import COCO_MINI, REPO_ROOT, require

DATA = REPO_ROOT / "tests" / "data"


def coco_root_with_both_folders(tmp_path):
    """COCO root where image 229358 sits in train2017/ (its coco_url says so) and the others in val2017/."""
    root = tmp_path / "coco"
    (root / "train2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    for jpg in sorted((require(COCO_MINI) / "val2017").glob("*.jpg")):
        shutil.copy(jpg, root / ("train2017" if jpg.name == "000000229358.jpg" else "val2017") / jpg.name)
    blob = json.loads((DATA / "lvis_v1_val_mini.json").read_text())
    for img in blob["images"]:
        if img["id"] == 229358:
            img["coco_url"] = img["coco_url"].replace("/val2017/", "/train2017/")
    ann = tmp_path / "lvis_mini.json"
    ann.write_text(json.dumps(blob))
    return root, ann


def test_lvis_images_from_both_folders_match_coco(tmp_path):
    root, ann = coco_root_with_both_folders(tmp_path)
    report = convert(LvisSource(root, ann), tmp_path / "out", progress=False)
    ds, coco = FlipDataset(report.output), FlipDataset(DATA / "coco_val2017_mini.hdf5")
    assert report.output.endswith("lvis-v1-val-val-v1.hdf5")
    assert (ds.num_images, ds.num_instances) == (3, 36) and not report.skipped_instances
    for j in range(36):  # same polygons as the COCO fixture (crowd dropped there, absent here)
        np.testing.assert_array_equal(ds.mask(j), coco.mask(j))
    info = ds.image_info(0)
    assert info["file_name"] == "000000229358.jpg" and "/train2017/" in info["coco_url"]
    assert info["source"] == "lvis" and "neg_category_ids" in info and info["license"]["id"] == 4
    assert ds.metadata["flipbench_provenance"]["source"] == "lvis"
    # LVIS spells its names with underscores ("cell_phone")
    assert [ds.instance_meta(j)["category"].replace("_", " ") for j in range(36)] == list(coco.categories())
    assert ds.instance_meta(0)["source_id"].startswith("annotation ") and ds.instance_meta(0)["category_id"] == "44"


def test_lvis_missing_image_is_skipped_via_cli(tmp_path):
    root, ann = coco_root_with_both_folders(tmp_path)
    (root / "val2017" / "000000205401.jpg").unlink()
    res = CliRunner().invoke(cli, ["convert", "lvis", str(root), "--annotations", str(ann), "--out",
                                   str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "missing image file" in res.output
    ds = FlipDataset(tmp_path / "out" / "lvis-v1-val-val-v1.hdf5")
    assert ds.num_images == 2 and ds.num_instances == 32
