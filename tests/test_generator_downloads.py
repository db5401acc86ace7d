"""Poly Haven HDRIs and Objaverse objects over HTTP, against a server on 127.0.0.1 that serves recorded-shape
fixtures (tests/data/polyhaven, tests/data/objaverse: JSON written from the APIs' specs, not fetched)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from objascale.generator import download as dl
from objascale.generator import objects as ob
from objascale.generator import polyhaven as ph
from objascale.generator.backgrounds import list_hdris
from objascale.generator.objaverse_http import ObjaverseHttp
from _local_server import cube_glb, serve

DATA = Path(__file__).parent / "data"
MUG, BALL = "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "3d4e5f60718293a4b5c6d7e8f90a1b2c"
BROKEN = "2c3d4e5f60718293a4b5c6d7e8f90a1b"  # in object-paths.json, but no GLB on the server


@pytest.fixture()
def polyhaven(tmp_path, monkeypatch):
    with serve(DATA / "polyhaven") as server:
        monkeypatch.setenv(ph.API_ENV, server.base)
        monkeypatch.setenv(ph.CACHE_ENV, str(tmp_path / "cache"))
        yield server


def test_polyhaven_source_parsing():
    assert ph.parse_source("polyhaven") == ("4k", 16)
    assert ph.parse_source("polyhaven:1k") == ("1k", 16)
    assert ph.parse_source("polyhaven:8k:3") == ("8k", 3)
    for bad in ("polyhaven:big", "polyhaven:1k:0", "polyhaven:1k:2:x", "polyheaven"):
        with pytest.raises(ValueError, match="polyhaven"):
            ph.parse_source(bad)


def test_polyhaven_list_choose_download_cache(polyhaven, tmp_path):
    assets = ph.list_assets()
    assert sorted(assets) == ["brown_photostudio_02", "kloppenheim_06", "rural_asphalt_road"]
    chosen = ph.choose_assets(list(assets), 2, seed=0)
    assert len(chosen) == 2 and chosen == ph.choose_assets(list(reversed(list(assets))), 2, seed=0)
    assert {tuple(ph.choose_assets(list(assets), 2, seed=s)) for s in range(20)} != {tuple(chosen)}  # seed matters

    specs = list_hdris("polyhaven:1k:2", seed=0)
    assert [s.name for s in specs] == chosen
    for s in specs:
        local = Path(s.path)
        assert local.parent == tmp_path / "cache" / "polyhaven" / "1k" and local.suffix == ".hdr"
        assert local.read_bytes() == (DATA / "polyhaven" / "dl" / local.name).read_bytes()
        assert s.license == "CC0 (Poly Haven)" and s.source == f"https://polyhaven.com/a/{s.name}"
        assert s.author == ", ".join(sorted(json.loads((DATA / "polyhaven" / "assets.json").read_text())[s.name]
                                            ["authors"]))
    assert ("/assets?t=hdris", None) in polyhaven.requests
    downloads = [p for p, _ in polyhaven.requests if p.startswith("/dl/")]
    assert len(downloads) == 2
    # cached: a second listing downloads nothing again (size and MD5 verified on the cached files)
    list_hdris("polyhaven:1k:2", seed=0)
    assert len([p for p, _ in polyhaven.requests if p.startswith("/dl/")]) == 2


@pytest.fixture()
def polyhaven_2k(tmp_path, monkeypatch):
    """The Poly Haven fixture with real 2k files for the two assets that list one (rural_asphalt_road has none)."""
    root = tmp_path / "ph"
    shutil.copytree(DATA / "polyhaven", root)
    for asset in ("brown_photostudio_02", "kloppenheim_06"):
        data = (root / "dl" / f"{asset}_1k.hdr").read_bytes()
        (root / "dl" / f"{asset}_2k.hdr").write_bytes(data)
        doc = json.loads((root / "files" / f"{asset}.json").read_text())
        doc["hdri"]["2k"]["hdr"].update(md5=hashlib.md5(data).hexdigest(), size=len(data))
        (root / "files" / f"{asset}.json").write_text(json.dumps(doc))
    with serve(root) as server:
        monkeypatch.setenv(ph.API_ENV, server.base)
        monkeypatch.setenv(ph.CACHE_ENV, str(tmp_path / "cache"))
        yield server


def test_polyhaven_asset_without_the_resolution_is_skipped(polyhaven_2k, capsys):
    """An asset that lacks RES is skipped with a warning; its slot takes the next candidate of the seeded order and
    every other slot keeps its asset (the images that draw those are unchanged)."""
    order = ph.candidate_order(["brown_photostudio_02", "kloppenheim_06", "rural_asphalt_road"], 0)
    seed = next(s for s in range(50) if "rural_asphalt_road" in ph.candidate_order(list(order), s)[:2])
    slots = ph.choose_assets(list(order), 2, seed)
    specs = list_hdris("polyhaven:2k:2", seed=seed)
    spare = ph.candidate_order(list(order), seed)[2]
    assert [s.name for s in specs] == [spare if n == "rural_asphalt_road" else n for n in slots]
    assert all(Path(s.path).name.endswith("_2k.hdr") and Path(s.path).is_file() for s in specs)
    err = capsys.readouterr().err
    assert "warning: Poly Haven HDRI rural_asphalt_road is skipped: no 2k HDRI (available: 1k)" in err
    # the slots keep their positions: the same seed at 1k (every asset has it) differs only in that slot
    same = [s.name for s in list_hdris("polyhaven:1k:2", seed=seed)]
    assert [a == b for a, b in zip(same, [s.name for s in specs])].count(False) == 1
    # no candidate left for a slot: it takes the next usable slot, the list keeps its length
    three = list_hdris("polyhaven:2k:3", seed=0)
    assert len(three) == 3 and "rural_asphalt_road" not in {s.name for s in three}


def test_polyhaven_no_asset_with_the_resolution_is_a_clear_error(polyhaven):
    with pytest.raises(ValueError, match=r"no Poly Haven HDRI offers 8k \(3 tried: brown_photostudio_02, "
                                               r"kloppenheim_06, rural_asphalt_road\); choose another RES"):
        list_hdris("polyhaven:8k:2", seed=0)


def test_polyhaven_auto_resolution_matches_the_frame():
    # equirect width needed = 360 / horizontal FOV x long side; 24 mm on a 36 mm sensor sees 73.7 degrees
    assert ph.resolution_for_frame(4096, 24.0, 36.0) == "16k"  # needs 20,000 px: the largest there is
    assert ph.resolution_for_frame(2048, 24.0, 36.0) == "16k"  # 10,000 px
    assert ph.resolution_for_frame(1024, 24.0, 36.0) == "8k"  # 5,000 px
    assert ph.resolution_for_frame(512, 24.0, 36.0) == "4k"  # 2,500 px
    assert ph.resolution_for_frame(256, 70.0, 36.0) == "4k"  # 28.8 degrees: 3,200 px
    assert ph.parse_source("polyhaven:auto:16") == ("auto", 16)
    with pytest.raises(ValueError, match="auto needs the frame"):
        ph.polyhaven_hdris("polyhaven:auto")


def test_offline_refuses_remote_urls_but_not_local_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("FLIPBENCH_OFFLINE", "1")
    with pytest.raises(dl.DownloadError, match="not fetched, FLIPBENCH_OFFLINE is set"):
        dl.fetch_json("https://api.polyhaven.com/assets?t=hdris")
    (tmp_path / "a.json").write_text("[1]")
    assert dl.fetch_json((tmp_path / "a.json").as_uri()) == [1]
    dl.check_online("http://127.0.0.1:9/x")  # the tests' servers


def test_download_resumes_and_verifies(tmp_path):
    with serve(DATA / "polyhaven") as server:
        name = "kloppenheim_06_1k.hdr"
        data = (DATA / "polyhaven" / "dl" / name).read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        dest = tmp_path / name
        dest.with_name(name + ".part").write_bytes(data[:30])  # an interrupted download
        dl.download_file(f"{server.base}/dl/{name}", dest, size=len(data), md5=md5)
        assert dest.read_bytes() == data and server.requests[-1] == (f"/dl/{name}", "bytes=30-")
        assert not dest.with_name(name + ".part").exists()
        # a server that ignores Range answers 200: the file is read from the start, not appended
        server.ignore_range = True
        dest2 = tmp_path / "again.hdr"
        dest2.with_name("again.hdr.part").write_bytes(b"garbage")
        dl.download_file(f"{server.base}/dl/{name}", dest2, size=len(data), md5=md5)
        assert dest2.read_bytes() == data
        # wrong MD5: no file is left behind, not even the partial one
        bad = tmp_path / "bad.hdr"
        with pytest.raises(dl.DownloadError, match="MD5 .* does not match"):
            dl.download_file(f"{server.base}/dl/{name}", bad, size=len(data), md5="0" * 32)
        assert not bad.exists() and not bad.with_name("bad.hdr.part").exists()
        with pytest.raises(dl.DownloadError, match="got 77 bytes, expected 78"):
            dl.download_file(f"{server.base}/dl/{name}", bad, size=78)
        with pytest.raises(dl.DownloadError, match="404"):
            dl.download_file(f"{server.base}/dl/nothing.hdr", bad)
        # size unknown and the .part already complete: the server answers 416 to the range; start again
        server.ignore_range = False
        whole = tmp_path / "whole.hdr"
        whole.with_name("whole.hdr.part").write_bytes(data)
        assert dl.download_file(f"{server.base}/dl/{name}", whole).read_bytes() == data
        assert server.requests[-2:] == [(f"/dl/{name}", f"bytes={len(data)}-"), (f"/dl/{name}", None)]


@pytest.fixture()
def objaverse_server(tmp_path, monkeypatch):
    """The recorded-shape Objaverse fixture plus cube GLBs for every uid but BROKEN; env points the client at it."""
    root = tmp_path / "hf"
    shutil.copytree(DATA / "objaverse", root)
    for uid, rel in json.loads((root / "object-paths.json").read_text()).items():
        if uid != BROKEN:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(cube_glb())
    with serve(root) as server:
        monkeypatch.setenv("FLIPBENCH_OBJAVERSE_URL", server.base)
        monkeypatch.setenv("FLIPBENCH_OBJAVERSE_CACHE", str(tmp_path / "objaverse-cache"))
        yield server


def test_objaverse_http_has_the_package_shapes(objaverse_server, tmp_path):
    api = ObjaverseHttp()
    lvis = api.load_lvis_annotations()
    assert lvis == json.loads((DATA / "objaverse" / "lvis-annotations.json").read_text())
    assert ("/lvis-annotations.json.gz", None) in objaverse_server.requests
    # cached as the package caches it: gzip files under hf-objaverse-v1 layout
    cached = tmp_path / "objaverse-cache" / "lvis-annotations.json.gz"
    assert json.loads(gzip.decompress(cached.read_bytes())) == lvis
    meta = api.load_annotations([MUG, BALL, "unknown"])
    assert set(meta) == {MUG, BALL} and meta[MUG]["license"] == "by" and meta[BALL]["name"] == "Football"
    paths = api.load_objects([MUG, BROKEN, "unknown"], download_processes=1)
    assert list(paths) == [MUG] and paths[MUG].endswith(f"glbs/000-023/{MUG}.glb")
    assert Path(paths[MUG]).read_bytes()[:4] == b"glTF"
    assert "404" in api.errors[BROKEN] and "object-paths" in api.errors["unknown"]


def test_objaverse_source_uses_http_client(objaverse_server):
    src = ob.ObjaverseSource(["mug", "ball", "sofa"], per_category=5, retries=2, sleep=lambda s: None)
    assert isinstance(src.api, ObjaverseHttp)
    cat = src.catalog()
    assert sorted((s.category, s.uid) for s in cat) == sorted(
        [("mug", u) for u in json.loads((DATA / "objaverse" / "lvis-annotations.json").read_text())["mug"]]
        + [("ball", u) for u in json.loads((DATA / "objaverse" / "lvis-annotations.json").read_text())["ball"]])
    licences = {s.uid: s.license for s in cat}
    assert licences[MUG] == "by" and licences[BALL] == "cc0"
    mug = next(s for s in cat if s.uid == MUG)  # attribution from the Sketchfab metadata
    assert mug.author == "Potter" and mug.url == f"https://sketchfab.com/3d-models/{MUG}"
    assert src.download(MUG).endswith(".glb")
    with pytest.raises(ob.DownloadError, match=f"{BROKEN} after 2 tries.*404"):
        src.download(BROKEN)


def test_objaverse_package_missing_falls_back_to_http(monkeypatch):
    monkeypatch.delenv("FLIPBENCH_OBJAVERSE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "objaverse", None)  # import fails as if it were not installed
    assert isinstance(ob.ObjaverseSource(["mug"], 1).api, ObjaverseHttp)


def test_cli_download_errors_are_one_line_and_leave_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchmark.cli import main

    out = tmp_path / "run"
    monkeypatch.setenv(ph.API_ENV, "http://127.0.0.1:9")  # nothing listens there
    for hdris, message in (("polyhaven:xx", "RES must look like 1k"), ("polyhaven", "Connection refused")):
        res = CliRunner().invoke(main, ["generate", "objascale", "--out", str(out), "--hdris", hdris])
        assert res.exit_code == 1 and res.output.startswith("Error: ") and message in res.output, res.output
        assert not out.exists()
    res = CliRunner().invoke(main, ["generate", "objascale", "--out", str(out), "--count", "2", "--per-category", "1"])
    assert res.exit_code == 2 and "give --count or --per-category, not both" in res.output


# -- issue 21 item 3: every JSON answer is checked before use -----------------------------------------------------
@pytest.mark.parametrize("files, field", [
    ({"hdri": [["1k"]]}, "field 'hdri' is a JSON list"),
    ({"hdri": {"1k": ["hdr"]}}, "field 'hdri.1k' is a JSON list"),
    ({"hdri": {"1k": {"hdr": {"url": "http://127.0.0.1/x.hdr", "size": "12"}}}}, "field 'hdri.1k.hdr.size'"),
    ({"hdri": {"1k": {"hdr": {"url": 7}}}}, "field 'hdri.1k.hdr.url'"),
    (["not", "an", "object"], "JSON list, not an object"),
])
def test_polyhaven_files_of_the_wrong_shape_name_the_field(files, field):
    # before: AttributeError (a list where a dict is read) and TypeError (a size given as a string) tracebacks
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ph.hdri_file(files, "1k")


def test_json_bodies_too_deep_or_too_large_are_refused(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json before
    (tmp_path / "nested.json").write_text("[" * 80 + "]" * 80)  # parses, but deeper than any answer we read
    (tmp_path / "big.json").write_text(json.dumps({"x": "a" * 5000}))
    with serve(tmp_path) as server:
        for name in ("deep.json", "nested.json"):
            with pytest.raises(dl.DownloadError, match=f"{name}: the JSON answer nests deeper than"):
                dl.fetch_json(f"{server.base}/{name}")
        with pytest.raises(dl.DownloadError, match="big.json: the JSON answer is larger than 1000 bytes"):
            dl.fetch_json(f"{server.base}/big.json", max_bytes=1000)
        assert dl.fetch_json(f"{server.base}/big.json")["x"] == "a" * 5000


@pytest.mark.parametrize("document, change, message", [
    ("object-paths.json", lambda d: {**d, next(iter(d)): 42}, "is a int \\(42\\), not a string"),
    ("object-paths.json", lambda d: list(d), "expected .*got a list"),
    ("lvis-annotations.json", lambda d: {**d, "mug": 7}, "category 'mug' must map to a list of uid strings"),
    ("lvis-annotations.json", lambda d: {**d, "mug": [1, 2]}, "category 'mug' must map to a list of uid strings"),
])
def test_objaverse_documents_of_another_shape_are_one_line_errors(objaverse_server, document, change, message):
    """A server answering with ints for paths or uids (or another shape) is a DownloadError naming the file."""
    path = Path(objaverse_server.root) / document
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    api = ObjaverseHttp()
    with pytest.raises(dl.DownloadError, match=message) as err:
        api.load_lvis_annotations() if document.startswith("lvis") else api.load_objects([MUG])
    assert document.replace(".json", ".json.gz") in str(err.value) and "\n" not in str(err.value)


def test_objaverse_uids_that_are_not_strings_are_refused(objaverse_server):
    with pytest.raises(dl.DownloadError, match="uids must be strings; got a int"):
        ObjaverseHttp().load_objects([MUG, 5])
