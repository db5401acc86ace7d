"""Hostile and careless dataset inputs (issue 15, items 3, 4, 6, 9, 10, 11, 12): decoding bombs, paths leading
out of the source directory, wrong-length RLEs, unknown categories and unlisted images, bad id/licence fields,
non-regular files given as datasets, and the centre alignment of every nearest-neighbour mask resize.

Every case is built here from synthetic data (no ../shared needed)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import zipfile
import zlib

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as coco_mask

from benchmark.cli import main as cli
from objascale import codecs
from objascale.codecs import CodecError
from objascale.converters.coco import CocoSource
from objascale.converters.common import convert
from objascale.converters.hypersim import HypersimSource
from objascale.converters.kitti360 import Kitti360Source
from objascale.converters.lvis import LvisSource
from objascale.converters.openimages import OpenImagesSource, decode_full_image_mask
from objascale.hdf5_format import FlipDataset, FlipFormatError, FlipH5Writer
from _shared import REPO_ROOT

H, W = 24, 32


# -- crafted bytes ------------------------------------------------------------------------------------------------
def png_declaring(mask: np.ndarray, height: int, width: int) -> bytes:
    """A valid small PNG whose IHDR is patched to declare ``height`` x ``width`` (CRC fixed): a decoding bomb."""
    data = bytearray(cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def jpeg_declaring(rgb: np.ndarray, height: int, width: int) -> bytes:
    """A small JPEG whose SOF0 header is patched to declare ``height`` x ``width`` (the issue's 629-byte bomb)."""
    data = bytearray(cv2.imencode(".jpg", rgb)[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def blob_mask(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[h // 4:3 * h // 4, w // 4:w // 2] = True
    return m


def small_dataset(path, n_images: int = 2):
    rng = np.random.default_rng(0)
    with FlipH5Writer(path, dataset_name="t", dataset_type="val") as w:
        for _ in range(n_images):
            w.add_image(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), [blob_mask(), ~blob_mask()])
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode anything (the checks must come first)."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("cv2.imdecode was called on bytes that should have been refused from the header")
    monkeypatch.setattr(codecs.cv2, "imdecode", refuse)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (a FIFO that blocks would hang the test run instead of failing it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)


# -- item 3: decoding bombs -----------------------------------------------------------------------------------------
def test_mask_bomb_is_refused_from_its_header(tmp_path, no_decoding):
    path = small_dataset(tmp_path / "d.hdf5")
    with h5py.File(path, "a") as f:
        f["instance_masks"][3] = np.frombuffer(png_declaring(blob_mask(), 30000, 30000), np.uint8)
        f["instance_masks"][1] = np.frombuffer(png_declaring(blob_mask(), 2000, 2000), np.uint8)  # under limit
    ds = FlipDataset(path)
    with pytest.raises(CodecError, match=r"d\.hdf5: instance 3 \(image 1\): .*declares 30000x30000.*over the limit"):
        ds.mask(3)
    # within the global limit but not its image's size: refused too, still before decoding
    with pytest.raises(CodecError, match=r"instance 1 \(image 0\): .*declares 2000x2000, expected 32x24"):
        ds.mask(1)
    assert ds.mask_shape(3) == (30000, 30000)  # inspect's header-only view of it


def test_inspect_reports_a_mask_bomb_without_decoding_it(tmp_path):
    path = small_dataset(tmp_path / "d.hdf5")
    with h5py.File(path, "a") as f:
        f["instance_masks"][3] = np.frombuffer(png_declaring(blob_mask(), 30000, 30000), np.uint8)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json", str(tmp_path / "i.json")])
    assert res.exit_code == 1, res.output
    checks = {c["name"]: c for c in json.loads((tmp_path / "i.json").read_text())["checks"]}
    assert checks["masks match image size"]["status"] == "fail" and "[3]" in checks["masks match image size"]["detail"]
    assert checks["masks decode"]["status"] == "fail"


def test_image_bomb_is_refused_from_its_header(tmp_path, no_decoding):
    path = small_dataset(tmp_path / "d.hdf5")
    bomb = jpeg_declaring(np.zeros((8, 8, 3), np.uint8), 20000, 20000)
    assert len(bomb) < 1000
    with h5py.File(path, "a") as f:
        f["rgb_images"][1] = np.frombuffer(bomb, np.uint8)
    ds = FlipDataset(path)
    with pytest.raises(CodecError, match=r"d\.hdf5: image 1: .*declares 20000x20000 = 400000000 pixels"):
        ds.image(1)
    with pytest.raises(CodecError, match=r"instance 2 \(image 1\): its image's header"):
        ds.mask(2)  # its mask is not decoded either: the image it must match is over the limit


def test_bombs_under_the_pixel_limit_are_refused_by_their_byte_count(tmp_path, no_decoding):
    """8000x8000 is within the limit, but a complete PNG/Huffman JPEG of that size needs far more bytes."""
    path = small_dataset(tmp_path / "d.hdf5")
    image_bomb = jpeg_declaring(np.zeros((8, 8, 3), np.uint8), 8000, 8000)
    with h5py.File(path, "a") as f:
        f["rgb_images"][0] = np.frombuffer(image_bomb, np.uint8)
    with pytest.raises(CodecError, match=r"image 0: .*declares 8000x8000 but the data holds \d+ bytes, fewer"):
        FlipDataset(path).image(0)
    assert decode_full_image_mask(png_declaring(blob_mask(), 8000, 8000), H, W) is None  # Open Images mask
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(image_bomb)
    blob = coco_blob([{"id": 1, "file_name": "a.jpg", "height": 8000, "width": 8000}], [polygon_ann(1, 1)])
    with pytest.raises(ValueError, match="nothing was converted.*unreadable image file"):
        convert(CocoSource(images, write_json(tmp_path / "a.json", blob)), tmp_path / "out", progress=False)


def test_genuine_sparse_images_pass_the_byte_count_check():
    """The byte-count bound holds for the most compressible genuine files (uniform, best compression)."""
    for n in (64, 1000, 3000):
        for data in (cv2.imencode(".png", np.zeros((n, n), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1],
                     cv2.imencode(".jpg", np.zeros((n, n, 3), np.uint8))[1],
                     cv2.imencode(".jpg", np.zeros((n, n), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                                                       cv2.IMWRITE_JPEG_OPTIMIZE, 1])[1]):
            assert codecs.imdecode_checked(data, cv2.IMREAD_UNCHANGED).shape[:2] == (n, n)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    ds = FlipDataset(small_dataset(tmp_path / "d.hdf5"))
    assert ds.image(0).shape == (H, W, 3)
    monkeypatch.setenv("FLIPBENCH_MAX_IMAGE_PIXELS", str(H * W - 1))
    with pytest.raises(CodecError, match="over the limit of 767"):
        ds.image(0)
    monkeypatch.setenv("FLIPBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(CodecError, match="not an integer"):
        ds.image(0)


def test_eval_on_a_jpeg_bomb_is_a_quick_one_line_error(tmp_path):
    path = small_dataset(tmp_path / "bomb.hdf5")
    with h5py.File(path, "a") as f:
        f["rgb_images"][0] = np.frombuffer(jpeg_declaring(np.zeros((8, 8, 3), np.uint8), 20000, 20000), np.uint8)
    res = CliRunner().invoke(cli, ["eval", "--dataset", str(path), "--model", "box", "--out", str(tmp_path / "run"),
                                   "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "Error: " in res.output and "bomb.hdf5: image 0:" in res.output and "20000x20000" in res.output
    assert "Traceback" not in res.output


def test_converters_check_headers_before_decoding(tmp_path, monkeypatch):
    # COCO: the file's header must declare the annotation's size; a 20000x20000 declaration is never decoded
    images = tmp_path / "images"
    images.mkdir()
    rgb = np.full((H, W, 3), 90, np.uint8)
    cv2.imwrite(str(images / "ok.jpg"), rgb)
    (images / "bomb.jpg").write_bytes(jpeg_declaring(rgb, 20000, 20000))
    (images / "bomb2.jpg").write_bytes(jpeg_declaring(rgb, 20000, 20000))
    entries = [("ok.jpg", H, W), ("bomb.jpg", H, W), ("bomb2.jpg", 20000, 20000)]
    blob = coco_blob([{"id": k + 1, "file_name": n, "height": h, "width": w} for k, (n, h, w) in enumerate(entries)],
                     [polygon_ann(k + 1, k + 1) for k in range(3)])
    report = convert(CocoSource(images, write_json(tmp_path / "a.json", blob)), tmp_path / "out", progress=False)
    assert report.images_written == 1
    assert report.skipped_images == {"image size differs from annotation": 1, "image over the pixel limit": 1}
    assert "declares 20000x20000" in report.examples["image over the pixel limit"][0]

    # Open Images: a mask PNG declaring 30000x30000 is refused unread
    assert decode_full_image_mask(png_declaring(blob_mask(), 30000, 30000), H, W) is None

    # Hypersim: a 20000x20000 colour dataset stored in a few hundred bytes (compressed, never written) is refused
    from test_convert_hypersim import make_scene

    make_scene(tmp_path / "hs", frames=(0, 3))
    color = tmp_path / "hs" / "ai_001_002" / "images" / "scene_cam_00_final_hdf5" / "frame.0003.color.hdf5"
    color.unlink()
    with h5py.File(color, "w") as f:
        f.create_dataset("dataset", (20000, 20000, 3), dtype=np.float16, chunks=(256, 256, 3), compression="gzip")
    assert color.stat().st_size < 10_000
    report = convert(HypersimSource(tmp_path / "hs"), tmp_path / "out-hs", progress=False)
    assert report.images_written == 1 and report.skipped_images == {"inconsistent array shapes": 1}


def test_kitti_label_with_another_size_is_not_decoded(tmp_path):
    from test_convert_kitti360 import DRIVE, make_source

    make_source(tmp_path / "k")
    label = tmp_path / "k" / "data_2d_semantics" / "train" / DRIVE / "image_00" / "instance" / "0000000007.png"
    label.write_bytes(png_declaring(blob_mask(), 30000, 30000))
    report = convert(Kitti360Source(tmp_path / "k"), tmp_path / "out", progress=False)
    assert report.images_written == 1 and report.skipped_images == {"instance label size differs from image": 1}


# -- item 4: paths out of the source directory ------------------------------------------------------------------
def test_coco_file_names_cannot_leave_the_image_directory(tmp_path):
    root = tmp_path / "data"
    images = root / "images"
    images.mkdir(parents=True)
    rgb = np.full((H, W, 3), 90, np.uint8)
    cv2.imwrite(str(images / "ok.jpg"), rgb)
    cv2.imwrite(str(root / "secret.jpg"), rgb)  # a readable image just outside the image directory
    (images / "link.jpg").symlink_to(root / "secret.jpg")
    names = ["ok.jpg", "../secret.jpg", str(root / "secret.jpg"), "link.jpg", "sub/../../secret.jpg"]
    blob = coco_blob([{"id": k + 1, "file_name": n, "height": H, "width": W} for k, n in enumerate(names)],
                     [polygon_ann(k + 1, k + 1) for k in range(len(names))])
    report = convert(CocoSource(images, write_json(tmp_path / "a.json", blob)), tmp_path / "out", progress=False)
    assert report.images_written == 1
    assert report.skipped_images == {"path outside the source directory": 4}
    ds = FlipDataset(report.output)
    assert ds.image_info(0)["file_name"] == "ok.jpg"
    assert ds.metadata["flipbench_provenance"]["conversion"]["skipped_images"] == {
        "path outside the source directory": 4}


def test_other_converters_refuse_paths_out_of_the_source(tmp_path):
    # LVIS: the folder comes from coco_url
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    rgb = np.full((H, W, 3), 90, np.uint8)
    cv2.imwrite(str(root / "val2017" / "a.jpg"), rgb)
    cv2.imwrite(str(tmp_path / "secret.jpg"), rgb)
    urls = ["http://images.cocodataset.org/val2017/a.jpg", "http://images.cocodataset.org/../secret.jpg"]
    blob = coco_blob([{"id": k + 1, "coco_url": u, "height": H, "width": W} for k, u in enumerate(urls)],
                     [polygon_ann(k + 1, k + 1) for k in range(2)])
    report = convert(LvisSource(root, write_json(tmp_path / "l.json", blob)), tmp_path / "o1", progress=False)
    assert report.images_written == 1 and report.skipped_images == {"path outside the source directory": 1}

    # Open Images: the image file name comes from ImageID; mask files may not be symlinks out of the mask folder
    from test_convert_openimages import SPLIT, make_source as make_oi

    oi = tmp_path / "oi"
    make_oi(oi)
    csv = oi / f"{SPLIT}-annotations-object-segmentation.csv"
    masks = oi / f"{SPLIT}-masks"
    (tmp_path / "outside.png").write_bytes((masks / "1b2c3d4e5f6a7b8c_m0k4j_ccc.png").read_bytes())
    (masks / "1b2c3d4e5f6a7b8c_m0k4j_ccc.png").unlink()
    (masks / "1b2c3d4e5f6a7b8c_m0k4j_ccc.png").symlink_to(tmp_path / "outside.png")
    csv.write_text(csv.read_text() + "x.png,../../secret,/m/x,q,0.5\n")
    report = convert(OpenImagesSource(oi), tmp_path / "o2", progress=False)
    assert report.skipped_images["path outside the source directory"] == 1  # ../../secret.jpg
    assert report.skipped_instances["path outside the source directory"] == 1  # the symlinked mask

    # KITTI-360: a rectified-image folder that is a symlink out of SRC
    from test_convert_kitti360 import DRIVE, make_source as make_kitti

    make_kitti(tmp_path / "k")
    cam = tmp_path / "k" / "data_2d_raw" / DRIVE / "image_00"
    (cam / "data_rect").rename(tmp_path / "rect-elsewhere")
    (cam / "data_rect").symlink_to(tmp_path / "rect-elsewhere")
    with pytest.raises(ValueError, match="nothing was converted.*path outside the source directory"):
        convert(Kitti360Source(tmp_path / "k"), tmp_path / "o3", progress=False)

    # Hypersim: scene names come from the split file
    from test_convert_hypersim import make_scene

    make_scene(tmp_path / "hs" / "data")
    make_scene(tmp_path / "hs", scene="ai_009_009")  # outside SRC = hs/data
    split = tmp_path / "split.csv"
    split.write_text("scene_name,camera_name,frame_id,included_in_public_release,exclude_reason,"
                     "split_partition_name\nai_001_002,cam_00,0,True,,val\n../ai_009_009,cam_00,0,True,,val\n")
    report = convert(HypersimSource(tmp_path / "hs" / "data", split_csv=split), tmp_path / "o4", progress=False)
    assert report.images_written == 1 and report.skipped_images == {"path outside the source directory": 1}


# -- item 6: wrong-length RLE -------------------------------------------------------------------------------------
def test_wrong_length_rles_are_skipped_and_conversion_is_deterministic(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.jpg"), np.full((H, W, 3), 90, np.uint8))
    good = coco_mask.encode(np.asfortranarray(blob_mask().astype(np.uint8)))
    counts = [H * W // 2, 40, H * W // 2 - 40]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": counts}},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 40]}},  # short
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 40, H * W]}},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, -3, 40]}},
        {"id": 5, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": "0a1"}},
        {"id": 6, "image_id": 1, "category_id": 1, "segmentation": {"size": [2 * H, W], "counts": [H * W * 2]}},
        {"id": 7, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W],
                                                                    "counts": good["counts"].decode()}},
        {"id": 8, "image_id": 1, "category_id": 1, "segmentation": [[1.0, 1.0, float("nan"), 5.0, 9.0, 9.0]]},
        {"id": 9, "image_id": 1, "category_id": 1, "segmentation": [[1.0, 1.0, 1e12, 5.0, 9.0, 9.0]]},
    ]
    blob = coco_blob([{"id": 1, "file_name": "a.jpg", "height": H, "width": W}], anns)
    ann_path = write_json(tmp_path / "a.json", blob)
    fingerprints = set()
    for k in range(3):
        report = convert(CocoSource(images, ann_path), tmp_path / f"out{k}", progress=False)
        fingerprints.add(FlipDataset(report.output).fingerprint())
    assert len(fingerprints) == 1
    assert report.instances_written == 2  # annotations 1 and 7
    reasons = report.skipped_instances
    assert sum(n for r, n in reasons.items() if "wrong length" in r) == 3  # 2, 3 and the corrupt string 5
    assert reasons["malformed RLE (counts are not non-negative integers)"] == 1
    assert reasons[f"segmentation size {(2 * H, W)} differs from the image size {(H, W)}"] == 1
    assert reasons["polygon coordinates not finite numbers or far outside the image"] == 2
    ds = FlipDataset(report.output)
    expected = np.zeros(H * W, bool)
    expected[H * W // 2:H * W // 2 + 40] = True
    np.testing.assert_array_equal(ds.mask(0), expected.reshape(W, H).T)  # column-major, as COCO RLE
    np.testing.assert_array_equal(ds.mask(1), blob_mask())


def test_compressed_rle_parser_matches_pycocotools():
    """The counts parsed from pycocotools' compressed strings are the mask's column-major run lengths."""
    from objascale.converters.coco import rle_string_counts

    rng = np.random.default_rng(3)
    for k in range(60):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        m = np.asfortranarray((rng.random((h, w)) < (0 if k % 7 == 0 else rng.random())).astype(np.uint8))
        flat = m.ravel(order="F")
        runs = [len(list(g)) for _, g in itertools.groupby(flat.tolist())]
        expected = [0, *runs] if flat[0] else runs
        assert rle_string_counts(coco_mask.encode(m)["counts"]) == expected
    assert rle_string_counts("\x7f") is None  # a character outside the alphabet
    assert rle_string_counts("P") is None  # continuation bit set on the last character: unfinished number


# -- items 9 and 10: silent drops, one bad field aborting everything ---------------------------------------------
def test_bad_entries_are_skipped_counted_and_recorded(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        cv2.imwrite(str(images / name), np.full((H, W, 3), 90, np.uint8))
    entries = [
        {"id": 1, "file_name": "a.jpg", "height": H, "width": W, "license": 1},
        {"id": 2, "file_name": "b.jpg", "height": H, "width": W, "license": "CC-BY"},  # bad licence field
        {"id": 3, "file_name": "c.jpg", "height": H, "width": W, "license": 300, "flickr_url": 5},
        {"id": "abc", "file_name": "d.jpg", "height": H, "width": W},  # bad id
        {"id": 2**70, "file_name": "d.jpg", "height": H, "width": W},  # does not fit coco_image_ids (int64)
        {"file_name": "d.jpg", "height": H, "width": W},  # no id
        {"id": 1, "file_name": "d.jpg", "height": H, "width": W},  # duplicate id
        "not an image entry",
    ]
    anns = [polygon_ann(1, 1), polygon_ann(2, 2, category=99), polygon_ann(3, 3), polygon_ann(4, 77),
            polygon_ann(5, "abc"), "not an annotation"]
    blob = coco_blob(entries, anns)
    blob["licenses"] = [{"id": 1, "name": "L1", "url": "u"}, "junk", {"id": "x"}, {"id": 1, "name": "dup"}]
    blob["categories"].append({"name": "no id"})
    res = CliRunner().invoke(cli, ["convert", "coco", str(images), "--annotations",
                                   str(write_json(tmp_path / "a.json", blob)), "--out", str(tmp_path / "out"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "annotation of an image not in 'images' (dropped)" in out and "unknown category id (kept)" in out
    ds = FlipDataset(tmp_path / "out" / "coco-val2017-val2017-v1.hdf5")
    assert ds.num_images == 3 and [ds.image_info(i)["license_id"] for i in range(3)] == [1, 0, 0]
    assert ds.metadata["coco_licenses"] == [{"id": 1, "name": "L1", "url": "u"}]
    conversion = ds.metadata["flipbench_provenance"]["conversion"]
    assert conversion["skipped_images"] == {"malformed image entry (no integer id)": 4,
                                            "duplicate image id (later entry ignored)": 1}
    assert conversion["skipped_instances"] == {"annotation of an image not in 'images' (dropped)": 2,
                                               "malformed annotation entry": 1}
    assert conversion["warnings"] == {
        "annotation with unknown category id (kept)": 1, "invalid licence id (stored as 0 = unknown)": 2,
        "flickr_url is not text (dropped)": 1, "malformed or duplicate licence entry (dropped)": 3,
        "malformed or duplicate category entry (ignored)": 1}
    assert ds.image_info(1)["category_ids"] == [99]


def test_other_converters_report_what_they_drop_or_keep_questionably(tmp_path):
    # KITTI-360: instance values of classes that are not kept are counted, not dropped silently
    from test_convert_kitti360 import make_source as make_kitti

    make_kitti(tmp_path / "k")
    report = convert(Kitti360Source(tmp_path / "k", classes="eval"), tmp_path / "o1", progress=False)
    assert report.skipped_instances == {"class not selected (--classes eval)": 2}  # the pole 17003, twice

    # Open Images: a label missing from the class list is kept with a warning; a bad PredictedIoU does not abort
    from test_convert_openimages import SPLIT, make_source as make_oi

    oi = tmp_path / "oi"
    make_oi(oi)
    (oi / "oidv7-class-descriptions.csv").write_text("LabelName,DisplayName\n/m/0k4j,Car\n")
    csv = oi / f"{SPLIT}-annotations-object-segmentation.csv"
    csv.write_text(csv.read_text().replace(",ccc,", ",ccc,lots"))
    report = convert(OpenImagesSource(oi), tmp_path / "o2", progress=False)
    assert report.images_written == 2
    assert report.warnings == {"label not in the class list (kept)": 1, "invalid PredictedIoU (stored as null)": 1}
    ds = FlipDataset(report.output)
    assert ds.image_info(1)["predicted_iou"] == [None]
    assert ds.metadata["flipbench_provenance"]["conversion"]["warnings"] == dict(report.warnings)


def test_unexpected_errors_skip_one_image_only(tmp_path):
    class Source:
        dataset_name, dataset_type, licenses, provenance = "stub", "val", [], {}

        def image_keys(self):
            return [0, 1]

        def load(self, key):
            from objascale.converters.common import Loaded

            if key == 1:
                raise KeyError("LabelName")
            return Loaded(np.zeros((H, W, 3), np.uint8), [blob_mask()], {})

    report = convert(Source(), tmp_path, progress=False)
    assert report.images_written == 1
    assert report.examples["unexpected error loading the image"] == ["1: KeyError: 'LabelName'"]


# -- item 11: one-line errors ---------------------------------------------------------------------------------------
def test_corrupt_zip_member_skips_that_mask(tmp_path):
    from test_convert_openimages import SPLIT, make_source as make_oi

    oi = tmp_path / "oi"
    make_oi(oi)
    archive = oi / f"{SPLIT}-masks-0.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("0a1b2c3d4e5f6a7b_m0k4j_aaa.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10:start + 20] = b"\x00" * 10  # corrupt the deflate stream: BadZipFile / zlib.error on read
    archive.write_bytes(bytes(data))
    report = convert(OpenImagesSource(oi), tmp_path / "out", progress=False)
    assert report.skipped_instances["unreadable mask file"] == 2
    assert any("aaa.png" in e for e in report.examples["unreadable mask file"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_or_device_as_dataset_is_a_one_line_error(tmp_path):
    fifo = tmp_path / "data.hdf5"
    os.mkfifo(fifo)
    shards = tmp_path / "shards"
    shards.mkdir()
    os.mkfifo(shards / "a.hdf5")
    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "a.jpg")  # an image file that is a FIFO: skipped, never opened
    ann = write_json(tmp_path / "a.json", coco_blob([{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
                                                    [polygon_ann(1, 1)]))
    for args in (["inspect", str(fifo)], ["eval", "--dataset", str(fifo), "--model", "box", "--out",
                                          str(tmp_path / "run")],
                 ["inspect", str(shards)], ["inspect", "/dev/null"],
                 ["convert", "coco", str(tmp_path), "--annotations", str(fifo), "--out", str(tmp_path / "o"),
                  "--no-progress"],
                 ["convert", "coco", str(images), "--annotations", str(ann), "--out", str(tmp_path / "o"),
                  "--no-progress"]):
        res = run_cli(*args)
        assert res.returncode != 0, (args, res.stdout)
        err = res.stderr.strip()
        assert err.startswith("Error:") and len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert "FIFO" in err or "device" in err or "not a regular file" in err, (args, err)


def test_dataset_files_may_not_pull_data_from_other_files(tmp_path):
    """External links, external raw storage and virtual datasets would read files the user never named."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"top secret" * 10)
    for kind in ("link", "external", "virtual"):
        path = small_dataset(tmp_path / f"{kind}.hdf5")
        with h5py.File(path, "a") as f:
            del f["positions"]
            if kind == "link":
                f["positions"] = h5py.ExternalLink(str(small_dataset(tmp_path / "other.hdf5")), "positions")
            elif kind == "external":
                f.create_dataset("positions", (4, 5), np.float32, external=[(str(secret), 0, 80)])
            else:
                layout = h5py.VirtualLayout((4, 5), np.float32)
                layout[:] = h5py.VirtualSource(str(tmp_path / "other.hdf5"), "positions", (4, 5))
                f.create_virtual_dataset("positions", layout)
        with pytest.raises(FlipFormatError, match="positions.*(link to another file|stores its data in other)"):
            FlipDataset(path)
    # the Hypersim converter reads HDF5 sources: the same refusal, as a skipped image
    from test_convert_hypersim import make_scene

    make_scene(tmp_path / "hs")
    color = tmp_path / "hs" / "ai_001_002" / "images" / "scene_cam_00_final_hdf5" / "frame.0003.color.hdf5"
    color.unlink()
    with h5py.File(color, "w") as f:
        f.create_dataset("dataset", (2, 2, 3), np.uint8, external=[(str(secret), 0, 12)])
    report = convert(HypersimSource(tmp_path / "hs"), tmp_path / "out", progress=False)
    assert report.images_written == 1 and report.skipped_images == {"unreadable color file": 1}


def test_unreadable_image_info_names_file_and_image(tmp_path):
    path = small_dataset(tmp_path / "d.hdf5")
    with h5py.File(path, "a") as f:
        f["flipbench_image_info"][1] = "{not json"
    with pytest.raises(FlipFormatError, match=r"d\.hdf5: image 1: flipbench_image_info is not JSON"):
        FlipDataset(path).image_info(1)


# -- item 12: centre-aligned mask resizing ------------------------------------------------------------------------
def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([(xs + 0.5).mean(), (ys + 0.5).mean()])  # pixel centres, in pixels from the corner


def _ellipses(rng, n, h=120, w=160):
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        rx, ry = rng.uniform(0.08, 0.25) * w, rng.uniform(0.08, 0.25) * h
        yield ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


@pytest.mark.parametrize("factor", [0.61, 1.37, 2.71])
def test_mask_resize_keeps_the_centroid(factor):
    """Resized by a non-integer factor, a mask keeps its area-weighted centroid (no systematic shift: the mean
    error over many masks is ~0, each one within quantisation); INTER_NEAREST shifts every one by ~+0.4 px."""
    from objascale.mask_resize import resize_mask

    rng = np.random.default_rng(7)
    errors, nearest = [], []
    for m in _ellipses(rng, 40):
        hh, ww = round(m.shape[0] * factor), round(m.shape[1] * factor * 1.05)
        scale = np.array([ww / m.shape[1], hh / m.shape[0]])
        expected = _centroid(m) * scale
        errors.append(_centroid(resize_mask(m, hh, ww)) - expected)
        old = cv2.resize(m.astype(np.uint8), (ww, hh), interpolation=cv2.INTER_NEAREST) > 0
        nearest.append(_centroid(old) - expected)
    errors, nearest = np.array(errors), np.array(nearest)
    assert np.all(np.abs(errors.mean(axis=0)) < 0.1), errors.mean(axis=0)
    assert np.all(np.abs(errors) < 0.3)
    assert np.all(nearest.mean(axis=0) > 0.3)  # the shift the issue measured on Open Images


def test_openimages_masks_keep_their_centroid():
    rng = np.random.default_rng(8)
    for m in _ellipses(rng, 20, 77, 101):  # mask PNG at another size than its 213x160 JPEG
        out = decode_full_image_mask(cv2.imencode(".png", m.astype(np.uint8) * 255)[1].tobytes(), 160, 213)
        err = _centroid(out) - _centroid(m) * np.array([213 / 101, 160 / 77])
        assert np.all(np.abs(err) < 0.3), err


# -- helpers for COCO-style files ---------------------------------------------------------------------------------
def polygon_ann(ann_id, image_id, category=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category, "iscrowd": 0,
            "segmentation": [[4.0, 4.0, 20.0, 4.0, 20.0, 16.0, 4.0, 16.0]]}


def coco_blob(images, annotations):
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}],
            "licenses": []}


def write_json(path, blob):
    path.write_text(json.dumps(blob))
    return path


# --- Objaverse over HTTP: server-given paths stay in the cache; a cut transfer is never taken as complete -----------


def test_objaverse_paths_from_the_server_cannot_leave_the_cache(tmp_path):
    from objascale.generator.download import DownloadError
    from objascale.generator.objaverse_http import ObjaverseHttp

    api = ObjaverseHttp("http://127.0.0.1:9", cache=tmp_path / "cache" / "x")
    api._paths = {"evil": "glbs/../../../pwned.glb", "abs": "/etc/passwd", "flat": "pwned.glb"}
    assert api.load_objects(["evil", "abs"]) == {}
    assert "refused dataset path" in api.errors["evil"] and "refused dataset path" in api.errors["abs"]
    assert api.load_annotations(["flat"]) == {}  # a path without a folder is skipped, not an IndexError
    assert not (tmp_path / "pwned.glb").exists() and not (tmp_path / "cache" / "pwned.glb").exists()
    with pytest.raises(DownloadError):
        api._local("metadata/../../x.json.gz")


def test_download_cut_short_is_not_kept_as_complete(tmp_path):
    import http.server
    import threading

    from objascale.generator.download import DownloadError, download_file

    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # announces 1000 bytes, sends 100, closes
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "obj.glb"
        with pytest.raises(DownloadError, match="100 of 1000"):
            download_file(f"http://127.0.0.1:{server.server_address[1]}/obj.glb", dest, timeout=10)
        assert not dest.exists()  # never renamed into place (the .part stays for a resume)
    finally:
        server.shutdown()


# -- issue 21 item 5: file names that are not valid UTF-8 --------------------------------------------------------
def test_coco_file_names_that_are_not_utf8_are_skipped_and_named(tmp_path):
    # a JSON "\udcff" escape parses to a lone surrogate; before, the conversion ended with
    # "Error: 'utf-8' codec can't encode character '\udcff'" without naming the file or the image
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "ok.jpg"), np.full((H, W, 3), 90, np.uint8))
    # the image exists under a name whose bytes are not UTF-8 (os reads it back as "bad\udcff.jpg")
    with open(os.fsencode(images) + b"/bad\xff.jpg", "wb") as f:
        f.write((images / "ok.jpg").read_bytes())
    blob = coco_blob([{"id": 1, "file_name": "ok.jpg", "height": H, "width": W},
                      {"id": 2, "file_name": "bad\udcff.jpg", "height": H, "width": W}],
                     [polygon_ann(1, 1), polygon_ann(2, 2)])
    path = tmp_path / "a.json"
    path.write_text(json.dumps(blob, ensure_ascii=True))  # the escape a producer of such names writes
    report = convert(CocoSource(images, path), tmp_path / "out", progress=False)
    assert report.images_written == 1
    assert report.skipped_images == {"malformed image entry": 1}
    assert FlipDataset(report.output).image_info(0)["file_name"] == "ok.jpg"
