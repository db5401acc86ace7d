"""`flipbench view`'s web API (through Starlette's test client): filters, sorting, pictures, errors, read-only."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the view extra is not installed (pip install -e '.[view]')")
pytest.importorskip("httpx", reason="httpx (the test client's transport) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from _view_fixture import HOSTILE, make_runs  # noqa: E402

from benchmark.view.app import create_app  # noqa: E402
from benchmark.view.index import open_index  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    dataset, runs = make_runs(root)
    index = open_index(runs)
    return root, dataset, runs, index, TestClient(create_app(index))


def test_meta_lists_rows_categories_and_bins(setup):
    _, _, _, index, client = setup
    meta = client.get("/api/meta").json()
    assert [r["label"] for r in meta["rows"]] == ["box", "ellipse"]
    assert meta["categories"] == sorted(["cat", "dog", HOSTILE]) and meta["objects"] == 18
    assert meta["coco_sizes"] == ["small"] and meta["size_bins"]


def test_filters_and_sorts_agree_with_the_records(setup):
    _, _, _, index, client = setup
    o = index.objects
    got = client.get("/api/objects", params={"category": "dog"}).json()
    assert got["total"] == (o["category"] == "dog").sum() == 6
    got = client.get("/api/objects", params={"label": "box", "iou_min": 50, "sort": "iou", "descending": True}).json()
    expected = (o["iou:box"] * 100 >= 50).sum()
    assert got["total"] == expected > 0
    values = [i["iou"]["box"] for i in got["items"]]
    assert values == sorted(values, reverse=True)
    got = client.get("/api/objects", params={"sort": "diff", "a": "box", "b": "ellipse"}).json()
    diffs = [i["iou"]["box"] - i["iou"]["ellipse"] for i in got["items"]]
    assert diffs == sorted(diffs) and got["total"] == 18
    got = client.get("/api/objects", params={"sort": "size", "limit": 5, "offset": 15}).json()
    assert got["total"] == 18 and len(got["items"]) == 3


def test_category_and_size_tables(setup):
    _, _, _, index, client = setup
    table = client.get("/api/categories").json()
    dog = next(r for r in table["rows"] if r["group"] == "dog")
    assert dog["objects"] == 6 and dog["iou"]["box"] == pytest.approx(
        index.objects.loc[index.objects["category"] == "dog", "iou:box"].mean() * 100)
    sizes = client.get("/api/sizes", params={"by": "coco_size"}).json()
    assert [r["group"] for r in sizes["rows"]] == ["small"]


def test_pictures_are_jpegs_of_the_crop_the_image_and_the_difference(setup):
    _, _, _, index, client = setup
    for path, params in (("/api/crop/4.jpg", {}), ("/api/crop/4.jpg", {"label": "box"}),
                         ("/api/image/4.jpg", {"a": "box", "b": "ellipse"}), ("/api/image/4.jpg", {"scale": 2})):
        resp = client.get(path, params=params)
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.std() > 5
        if path.startswith("/api/crop"):
            assert max(img.shape[:2]) == 160
    o = index.object(4)
    full = cv2.imdecode(np.frombuffer(client.get("/api/image/4.jpg", params={"scale": 2}).content, np.uint8), 1)
    assert full.shape[:2] == (2 * o["image_height"], 2 * o["image_width"])
    # the difference view colours pixels only A has (box minus ellipse: orange)
    diff = cv2.imdecode(np.frombuffer(client.get("/api/image/2.jpg", params={"a": "box", "b": "ellipse"}).content,
                                      np.uint8), 1)[..., ::-1].astype(int)
    orange = (diff[..., 0] > 140) & (diff[..., 0] > diff[..., 1] + 50) & (diff[..., 1] > diff[..., 2] + 30)
    assert orange.sum() > 5  # the box's corners outside the disc-shaped ellipse


def test_bad_requests_are_one_line_errors(setup):
    _, _, _, _, client = setup
    for path, params in (("/api/objects", {"label": "nope"}), ("/api/objects", {"sort": "iou"}),
                         ("/api/objects", {"sort": "diff", "a": "box", "b": "box"}), ("/api/object/99", {}),
                         ("/api/crop/3.jpg", {"label": "nope"}), ("/api/sizes", {"by": "colour"})):
        resp = client.get(path, params=params)
        assert resp.status_code == 400, path
        error = resp.json()["error"]
        assert "\n" not in error and "Traceback" not in error
    assert client.get("/api/objects", params={"limit": 10**6}).status_code == 422
    assert client.get("/static/../index.py").status_code == 404


def test_a_missing_dataset_is_a_visible_message(setup, tmp_path):
    root, dataset, runs, _, _ = setup
    import shutil

    moved = tmp_path / "runs"
    shutil.copytree(runs[0], moved / "r")
    index = open_index([moved / "r"])
    index.combined.runs[0].meta["dataset"]["path"] = str(tmp_path / "gone.hdf5")
    client = TestClient(create_app(index))
    resp = client.get("/api/crop/0.jpg")
    assert resp.status_code == 400 and "not on this machine" in resp.json()["error"]
    assert client.get("/api/objects").json()["total"] == 18  # the tables still work


def test_the_viewer_writes_nothing(setup):
    root, dataset, runs, index, client = setup

    def snapshot():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    for key in range(0, 18, 5):
        client.get(f"/api/crop/{key}.jpg", params={"label": "ellipse"})
        client.get(f"/api/image/{key}.jpg", params={"a": "box", "b": "ellipse"})
        client.get(f"/api/object/{key}")
    client.get("/api/categories")
    assert snapshot() == before
