"""COCO converter: agreement with the official converter's golden output, subsets, bad inputs, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.converters.coco import CocoSource
from objascale.converters.common import convert, select_subset
from objascale.hdf5_format import FlipDataset
from _shared import COCO_MINI, FLIP_REFERENCE, REPO_ROOT, require

HDF5_DIR = FLIP_REFERENCE / "hdf5"
COCO_INPUT = HDF5_DIR / "coco_input"
MINI_FIXTURE = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"


def convert_fixture(tmp_path, images=None, **kwargs):
    annotations = require(COCO_INPUT / "instances_fixture.json")
    src = CocoSource(images or COCO_INPUT / "images", annotations, split="fixture")
    return convert(src, tmp_path / "out", progress=False, **kwargs)


def test_agrees_with_official_golden_file(tmp_path):
    report = convert_fixture(tmp_path)
    ours, gold = FlipDataset(report.output), FlipDataset(require(HDF5_DIR / "coco-fixture-fixture-v1.hdf5"))
    contents = json.loads((HDF5_DIR / "hdf5_contents.json").read_text())
    assert report.output.endswith("coco-fixture-fixture-v1.hdf5")  # official naming
    assert (ours.num_images, ours.num_instances) == (gold.num_images, gold.num_instances) == (5, 17)
    for i in range(gold.num_images):
        assert ours.instance_indices(i) == gold.instance_indices(i)
        diff = np.abs(ours.image(i).astype(np.int16) - gold.image(i))
        assert diff.mean() < 0.5 and diff.max() <= 8  # JPEG re-encoding tolerance (identical with OpenCV 4.11)
        a, g = ours.image_info(i), gold.image_info(i)
        for key in ("file_name", "source_id", "license_id", "license", "flickr_url", "coco_url", "transform_note"):
            assert a[key] == g[key], key
    for j in range(gold.num_instances):
        np.testing.assert_array_equal(ours.mask(j), gold.mask(j))
        np.testing.assert_array_equal(ours.bbox(j), gold.bbox(j))  # official quirk included (instance 7)
        np.testing.assert_allclose(ours.rho(j), gold.rho(j), rtol=0, atol=2e-7)
    annotation_ids = [a for i in range(ours.num_images) for a in ours.image_info(i)["annotation_ids"]]
    assert annotation_ids == contents["instance_annotation_ids"]
    # per instance, in datasets the official code ignores (it read the same file above): category and annotation id
    categories = [c for i in range(ours.num_images) for c in ours.image_info(i)["categories"]]
    assert [ours.instance_meta(j) for j in range(ours.num_instances)] == [
        {"category": c, "category_id": str(cid), "source_id": f"annotation {a}"}
        for c, cid, a in zip(categories, [c for i in range(ours.num_images)
                                          for c in ours.image_info(i)["category_ids"]], annotation_ids)]
    assert "unknown" not in categories and list(ours.categories()) == categories
    assert all(gold.instance_meta(j)["category"] == "unknown" for j in range(gold.num_instances))  # official file
    for key in ("dataset_name", "type", "coco_licenses"):
        assert ours.metadata[key] == gold.metadata[key]
    assert dict(report.skipped_instances) == {"crowd annotation (iscrowd=1)": 1, "polygon with fewer than 3 points": 1}
    prov = ours.metadata["flipbench_provenance"]
    assert prov["source"] == "coco" and prov["protocol"]["crowd"] == "iscrowd=1 annotations skipped"
    assert prov["conversion"]["instances_written"] == 17


def test_conversion_is_reproducible_and_workers_change_nothing(tmp_path):
    a = convert_fixture(tmp_path / "a")
    b = convert_fixture(tmp_path / "b", workers=2)
    assert b.images_written == 5 and b.skipped_instances == a.skipped_instances
    assert FlipDataset(a.output).fingerprint() == FlipDataset(b.output).fingerprint()


def test_subset_selection():
    keys = list(range(100))
    assert select_subset(keys, None, 0) == keys and select_subset(keys, 500, 3) == keys
    s1 = select_subset(keys, 10, 1)
    assert s1 == select_subset(keys, 10, 1) and s1 == sorted(s1) and len(set(s1)) == 10
    assert s1 != select_subset(keys, 10, 2)


def test_limit_converts_a_subset(tmp_path):
    report = convert_fixture(tmp_path, limit=2, seed=5)
    ds = FlipDataset(report.output)
    assert report.images_selected == 2 and ds.num_images == 2
    ids = [ds.image_info(i)["source_id"] for i in range(2)]
    assert ids == sorted(ids, key=[101, 102, 103, 104, 105].index)
    assert ds.metadata["flipbench_provenance"]["subset"] == {"limit": 2, "seed": 5, "images_selected": 2}


def test_missing_and_corrupt_images_are_skipped(tmp_path):
    images = tmp_path / "images"
    shutil.copytree(require(COCO_INPUT) / "images", images)
    (images / "coffee.jpg").unlink()
    (images / "rocket.jpg").write_bytes(b"not a jpeg")
    report = convert_fixture(tmp_path, images=images)
    assert dict(report.skipped_images) == {"missing image file": 1, "unreadable image file": 1}
    ds = FlipDataset(report.output)
    assert [ds.image_info(i)["file_name"] for i in range(ds.num_images)] == [
        "demo-img-small.jpg", "astronaut.jpg", "chelsea.jpg"]
    assert ds.metadata["flipbench_provenance"]["conversion"]["skipped_images"] == dict(report.skipped_images)


def test_nothing_convertible_leaves_no_file(tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    with pytest.raises(ValueError, match="nothing was converted"):
        convert_fixture(tmp_path, images=empty)
    assert not any((tmp_path / "out").glob("*.hdf5*"))


def test_bad_annotation_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"images\": 3}")
    with pytest.raises(ValueError, match="not a COCO instances file"):
        CocoSource(tmp_path, bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CocoSource(tmp_path, bad)


def test_cli_convert_then_inspect(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(cli, ["convert", "coco", str(require(COCO_INPUT) / "images"), "--annotations",
                              str(COCO_INPUT / "instances_fixture.json"), "--split", "fixture", "--out", str(out),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "instances/s" in res.output and "crowd annotation" in res.output
    path = out / "coco-fixture-fixture-v1.hdf5"
    res = runner.invoke(cli, ["inspect", str(path), "--json", str(tmp_path / "inspect.json")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "inspect.json").read_text())
    assert summary["num_instances"] == 17 and all(c["status"] == "pass" for c in summary["checks"])
    res = runner.invoke(cli, ["convert", "coco", str(tmp_path), "--annotations", str(tmp_path / "inspect.json"),
                              "--out", str(out)])
    assert res.exit_code != 0 and "not a COCO instances file" in res.output


def test_committed_mini_fixture_matches_a_fresh_conversion(tmp_path):
    fixture = FlipDataset(MINI_FIXTURE)
    assert (fixture.num_images, fixture.num_instances) == (3, 36)
    assert {fixture.image_info(i)["license"]["name"] for i in range(3)} == {
        "Attribution License", "Attribution-ShareAlike License"}
    src = CocoSource(require(COCO_MINI) / "val2017", COCO_MINI / "annotations" / "instances_val2017_subset.json")
    fresh = FlipDataset(convert(src, tmp_path, progress=False).output)
    assert fresh.fingerprint() == fixture.fingerprint() or all(
        np.array_equal(fresh.mask(j), fixture.mask(j)) for j in range(36))
    np.testing.assert_array_equal(fresh.positions, fixture.positions)
    assert [fresh.instance_meta(j) for j in range(36)] == [fixture.instance_meta(j) for j in range(36)]
    assert fixture.instance_meta(0) == {"category": "bottle", "category_id": "44", "source_id": "annotation 91192"}


def test_an_image_with_thousands_of_annotations_is_not_held_decoded(tmp_path):
    """Masks stay compressed RLE until the writer encodes them one by one: loading an image with 2,000 one-pixel
    annotations (2,000 x 640 x 480 bytes = 614 MB if decoded) allocates a few MB, and each mask reads back exactly."""
    import tracemalloc

    import cv2

    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.jpg"), np.zeros((480, 640, 3), np.uint8))
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [k % 600, k // 600, 1, 1],
             "segmentation": [[k % 600, k // 600, k % 600 + 1, k // 600, k % 600 + 1, k // 600 + 1, k % 600,
                               k // 600 + 1]]} for k in range(2000)]
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 480, "width": 640}], "annotations": anns,
        "categories": [{"id": 1, "name": "dot"}]}))
    src = CocoSource(tmp_path / "img", tmp_path / "ann.json", split="dense")
    tracemalloc.start()
    loaded = src.load(src.image_keys()[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(loaded.masks) == 2000 and peak < 50e6, peak
    mask = loaded.masks[601]
    assert mask.shape == (480, 640) and mask.dtype == bool and mask.sum() >= 1 and mask[1, 1]
