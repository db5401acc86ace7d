"""ObjaScale generator: object catalogues (procedural, folder, Objaverse with a stand-in API), HDRIs, shards."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from objascale.generator import objects as ob
from objascale.generator import shards as sh
from objascale.generator.backgrounds import list_hdris


def test_shipped_categories():
    cats = ob.load_categories()
    assert len(cats) == 68 and len(set(cats)) == 68
    assert set(ob.PROCEDURAL_CATEGORY.values()) <= set(cats)
    doc = json.loads(ob.DEFAULT_CATEGORIES_FILE.read_text())
    assert doc["official"] is False and "not published" in doc["note"]


def test_procedural_catalog():
    cat = ob.build_catalog("procedural")
    assert [s.name for s in cat] == list(ob.PROCEDURAL_CATEGORY)
    assert all(s.license == "procedural, CC0 (flipbench)" and s.path is None for s in cat)


def test_folder_catalog(tmp_path):
    (tmp_path / "mug").mkdir()
    (tmp_path / "mug" / "a.glb").write_bytes(b"glTF")
    (tmp_path / "b.obj").write_text("v 0 0 0\n")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "objects.json").write_text(json.dumps({"b.obj": {"category": "box", "license": "CC-BY 4.0"}}))
    cat = ob.build_catalog(f"folder:{tmp_path}")
    assert [(s.uid, s.category, s.license) for s in cat] == [
        ("folder:b.obj", "box", "CC-BY 4.0"), ("folder:mug/a.glb", "mug", "unknown (local file)")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ob.build_catalog(f"folder:{tmp_path / 'x'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .glb"):
        ob.build_catalog(f"folder:{tmp_path / 'empty'}")


class FakeObjaverse:
    """Stand-in for the objaverse module: a pre-populated cache; ``flaky`` uids fail ``fail_times`` times."""

    def __init__(self, cache, flaky=(), fail_times=0):
        self.cache, self.flaky, self.fail_times, self.calls = cache, set(flaky), fail_times, []

    def load_lvis_annotations(self):
        return {"mug": ["u1", "u2", "u3"], "ball": ["u4"], "not_wanted": ["u9"]}

    def load_annotations(self, uids):
        return {u: {"name": f"object {u}", "license": "by"} for u in uids}

    def load_objects(self, uids, download_processes=1):
        (uid,) = uids
        self.calls.append(uid)
        if uid in self.flaky and self.calls.count(uid) <= self.fail_times:
            raise ConnectionError("simulated network error")
        path = self.cache / f"{uid}.glb"
        if not path.exists():
            raise FileNotFoundError(path)
        return {uid: str(path)}


def test_objaverse_catalog_and_downloads(tmp_path, caplog):
    for u in ("u1", "u2", "u4"):
        (tmp_path / f"{u}.glb").write_bytes(b"glTF")
    api = FakeObjaverse(tmp_path, flaky={"u2"}, fail_times=2)
    src = ob.ObjaverseSource(["mug", "ball", "sofa"], per_category=2, retries=3, api=api, sleep=lambda s: None)
    with caplog.at_level(logging.WARNING):
        cat = src.catalog()
    assert "sofa" in caplog.text
    assert sorted(s.category for s in cat) == ["ball", "mug", "mug"]
    assert all(s.source == "objaverse" and s.license == "by" for s in cat)
    assert src.download("u1") == str(tmp_path / "u1.glb")
    assert src.download("u2") == str(tmp_path / "u2.glb")  # succeeded on the third try
    assert api.calls.count("u2") == 3
    with pytest.raises(ob.DownloadError, match="u3 after 3 tries"):
        src.download("u3")
    assert ob.resolve_path(cat[0], src).endswith(".glb")
    with pytest.raises(ValueError, match="ObjaverseSource is needed"):
        ob.resolve_path(cat[0], None)


def test_bundled_hdris():
    pytest.importorskip("bpy")
    hdris = list_hdris("bundled")
    assert [h.name for h in hdris] == ["city", "courtyard", "forest", "interior", "night", "studio", "sunrise",
                                       "sunset"]
    assert all("CC0" in h.license for h in hdris)


def test_hdri_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_hdris(str(tmp_path / "nope"))
    (tmp_path / "a.hdr").write_bytes(b"#?RADIANCE")
    (tmp_path / "licenses.json").write_text(json.dumps({"a.hdr": "CC0 (me)"}))
    assert list_hdris(str(tmp_path))[0].license == "CC0 (me)"


def _result(k):
    rng = np.random.default_rng(k)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), bool)
    mask[2:5, 3:9] = True  # equal masks: equal-length PNGs in one shard
    return rgb, mask, {"image_index": k, "object_license": "procedural, CC0 (flipbench)", "target_area": 0.1}


def test_shards_finalize_resume_state_and_manifest(tmp_path):
    pytest.importorskip("h5py")
    from objascale.hdf5_format import FlipDataset

    plans = sh.plan_shards(5, 2)
    assert [(p.start, p.stop) for p in plans] == [(0, 2), (2, 4), (4, 5)]
    lic = sh.license_table(["procedural, CC0 (flipbench)", "by"])
    assert [e["id"] for e in lic] == [1, 2]
    assert not sh.shard_complete(tmp_path, plans[0])
    with pytest.raises(ValueError, match="do not match"):
        sh.finalize_shard(tmp_path, plans[0], [_result(1), _result(0)], {}, lic, "test")
    for p in plans:
        sh.finalize_shard(tmp_path, p, [_result(k) for k in p.images], {"x": 1}, lic, "test")
        assert sh.shard_complete(tmp_path, p)
    # a shard written for another range (count changed) is not complete for the new plan
    assert not sh.shard_complete(tmp_path, sh.ShardPlan(2, 4, 6))
    ds = FlipDataset(tmp_path)
    assert ds.num_images == 5 and ds.num_instances == 5
    assert [ds.image_info(i)["image_index"] for i in range(5)] == list(range(5))
    assert ds.image_info(3)["license"]["name"] == "procedural, CC0 (flipbench)"
    np.testing.assert_array_equal(ds.mask(3), _result(3)[1])
    jsonl, parquet = sh.write_run_manifest(tmp_path, plans)
    import pandas as pd

    df = pd.read_parquet(parquet)
    assert list(df["image_index"]) == list(range(5)) and list(df["shard"]) == [0, 0, 1, 1, 2]
    assert len(jsonl.read_text().splitlines()) == 5
