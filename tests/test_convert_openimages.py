"""Open Images V7 converter on a synthetic source that follows the documented file formats."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmark.cli import main as cli
from objascale.converters.common import convert
from objascale.converters.openimages import OpenImagesSource
from objascale.hdf5_format import FlipDataset

SPLIT = "validation"
CC_BY = "https://creativecommons.org/licenses/by/2.0/"


def ellipse(h, w, cx, cy, rx, ry):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def png(mask: np.ndarray) -> bytes:
    return cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()


def make_source(root):
    """Two images: 0a.. (60x80 JPEG, masks stored at 120x160 in a zip) and 1b.. (50x40, masks extracted).

    Rows: 3 good masks, 1 missing mask file, 1 corrupt mask, 1 mask that is empty after resizing.
    """
    (root / SPLIT).mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"0a1b2c3d4e5f6a7b": (60, 80), "1b2c3d4e5f6a7b8c": (50, 40)}
    for image_id, (h, w) in sizes.items():
        cv2.imwrite(str(root / SPLIT / f"{image_id}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    big = {  # masks at the masks' own resolution (twice the JPEG's for the first image)
        "0a1b2c3d4e5f6a7b_m0k4j_aaa.png": ellipse(120, 160, 40, 60, 20, 30),
        "0a1b2c3d4e5f6a7b_m01g317_bbb.png": ellipse(120, 160, 120, 30, 25, 12),
        "0a1b2c3d4e5f6a7b_m01g317_ddd.png": np.pad(np.ones((1, 1), bool), ((0, 119), (0, 159))),  # 1 px -> lost?
    }
    small = {"1b2c3d4e5f6a7b8c_m0k4j_ccc.png": ellipse(50, 40, 20, 25, 10, 20)}
    with zipfile.ZipFile(root / f"{SPLIT}-masks-0.zip", "w") as zf:
        for name, m in big.items():
            zf.writestr(name, png(m))
        zf.writestr("0a1b2c3d4e5f6a7b_m01g317_eee.png", b"corrupt")
    (root / f"{SPLIT}-masks").mkdir()
    for name, m in small.items():
        (root / f"{SPLIT}-masks" / name).write_bytes(png(m))
    rows = [
        ("0a1b2c3d4e5f6a7b_m0k4j_aaa.png", "0a1b2c3d4e5f6a7b", "/m/0k4j", "aaa", "0.9"),
        ("0a1b2c3d4e5f6a7b_m01g317_bbb.png", "0a1b2c3d4e5f6a7b", "/m/01g317", "bbb", "0.8"),
        ("0a1b2c3d4e5f6a7b_m01g317_zzz.png", "0a1b2c3d4e5f6a7b", "/m/01g317", "zzz", "0.5"),  # missing
        ("0a1b2c3d4e5f6a7b_m01g317_eee.png", "0a1b2c3d4e5f6a7b", "/m/01g317", "eee", "0.5"),  # corrupt
        ("1b2c3d4e5f6a7b8c_m0k4j_ccc.png", "1b2c3d4e5f6a7b8c", "/m/0k4j", "ccc", ""),
    ]
    table = pd.DataFrame(rows, columns=["MaskPath", "ImageID", "LabelName", "BoxID", "PredictedIoU"])
    for col in ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"):
        table[col] = 0.5
    table["Clicks"] = ""
    table.to_csv(root / f"{SPLIT}-annotations-object-segmentation.csv", index=False)
    (root / "oidv7-class-descriptions.csv").write_text("LabelName,DisplayName\n/m/0k4j,Car\n/m/01g317,Person\n")
    pd.DataFrame({"ImageID": list(sizes), "Subset": SPLIT, "OriginalURL": ["https://x/a.jpg", "https://x/b.jpg"],
                  "OriginalLandingURL": ["https://flickr/a", "https://flickr/b"], "License": [CC_BY, CC_BY],
                  "AuthorProfileURL": "", "Author": ["Ann", "Bob"], "Title": "", "Rotation": "0"}
                 ).to_csv(root / f"{SPLIT}-images-with-rotation.csv", index=False)
    return big, small


def test_openimages_conversion(tmp_path):
    big, small = make_source(tmp_path / "oi")
    source = OpenImagesSource(tmp_path / "oi")
    report = convert(source, tmp_path / "out", progress=False)
    assert source.masks._open == {}  # the mask archives read from were closed when the conversion ended
    assert any(member is not None for _, member in source.masks._where.values())
    ds = FlipDataset(report.output)
    assert report.output.endswith("openimages-v7-validation-validation-v1.hdf5")
    assert (ds.num_images, ds.num_instances) == (2, 3)
    assert dict(report.skipped_instances) == {"missing mask file": 1, "unreadable mask file": 1}
    # full-image masks resized to the JPEG size: nearest neighbour, pixel centres aligned (NEAREST_EXACT)
    for j, m in enumerate([big["0a1b2c3d4e5f6a7b_m0k4j_aaa.png"], big["0a1b2c3d4e5f6a7b_m01g317_bbb.png"]]):
        expected = cv2.resize(m.astype(np.uint8), (80, 60), interpolation=cv2.INTER_NEAREST_EXACT) > 0
        np.testing.assert_array_equal(ds.mask(j), expected)
    np.testing.assert_array_equal(ds.mask(2), small["1b2c3d4e5f6a7b8c_m0k4j_ccc.png"])
    info = ds.image_info(0)
    assert info["categories"] == ["Car", "Person"] and info["box_ids"] == ["aaa", "bbb"]
    assert info["license"]["url"] == CC_BY and info["author"] == "Ann" and info["flickr_url"] == "https://flickr/a"
    assert info["license_url"] == CC_BY
    assert info["image_id"] == "0a1b2c3d4e5f6a7b" and ds.image_info(1)["predicted_iou"] == [None]
    assert [ds.instance_meta(j) for j in range(3)] == [
        {"category": "Car", "category_id": "/m/0k4j", "source_id": "box aaa"},
        {"category": "Person", "category_id": "/m/01g317", "source_id": "box bbb"},
        {"category": "Car", "category_id": "/m/0k4j", "source_id": "box ccc"}]


def test_openimages_missing_image_and_cli_errors(tmp_path):
    make_source(tmp_path / "oi")
    (tmp_path / "oi" / SPLIT / "1b2c3d4e5f6a7b8c.jpg").unlink()
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", "openimages", str(tmp_path / "oi"), "--out", str(tmp_path / "out"),
                              "--no-progress", "--workers", "2"])  # masks read from the zip in forked workers
    assert res.exit_code == 0, res.output
    assert "missing image file" in res.output
    ds = FlipDataset(tmp_path / "out" / "openimages-v7-validation-validation-v1.hdf5")
    assert ds.num_instances == 2 and ds.mask(1).shape == (60, 80)
    res = runner.invoke(cli, ["convert", "openimages", str(tmp_path), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "segmentation CSV" in res.output


def test_openimages_bad_zip(tmp_path):
    make_source(tmp_path / "oi")
    (tmp_path / "oi" / f"{SPLIT}-masks-1.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid zip"):
        OpenImagesSource(tmp_path / "oi")


def test_more_licence_urls_than_uint8_ids(tmp_path):
    """License ids are uint8 in the format: URLs beyond the 255th get id 0 and stay in each image's extra."""
    make_source(tmp_path / "oi")
    source = OpenImagesSource(tmp_path / "oi")
    ids = [f"{i:016x}" for i in range(300)]
    pd.DataFrame({"ImageID": ids, "License": [f"https://licence/{i}" for i in range(300)]}
                 ).to_csv(tmp_path / "oi" / f"{SPLIT}-images-with-rotation.csv", index=False)
    source.rows = {i: [] for i in ids}
    info, table = source._read_attribution(SPLIT)
    assert len(table) == 255 and [e["id"] for e in table] == list(range(1, 256))
    assert info[ids[254]]["license_id"] == 255 and info[ids[255]]["license_id"] == 0
