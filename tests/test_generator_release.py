"""ObjaScale as published (no bpy): the paper preset's sources stop offline with the flag of the offline stand-in,
category lists read from files and datasets (``--categories-from``), ``inspect --compare`` on two datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark.cli import main
from objascale.generator.categories import OFFICIAL_RELEASE_URL, read_category_list

DATA = Path(__file__).parent / "data"
COCO = DATA / "coco_val2017_mini.hdf5"


def test_paper_preset_offline_is_one_line_naming_the_stand_in(tmp_path, monkeypatch):
    """Without the network (FLIPBENCH_OFFLINE=1, as in the suite) --preset paper stops before writing anything."""
    monkeypatch.setenv("FLIPBENCH_OFFLINE", "1")
    monkeypatch.delenv("FLIPBENCH_OBJAVERSE_URL", raising=False)
    monkeypatch.delenv("FLIPBENCH_POLYHAVEN_API", raising=False)
    monkeypatch.setenv("FLIPBENCH_OBJAVERSE_CACHE", str(tmp_path / "objaverse"))
    out = tmp_path / "run"
    for extra in ([], ["--objects", "procedural"]):  # Objaverse first; then the HDRIs alone
        res = CliRunner().invoke(main, ["generate", "objascale", "--preset", "paper", "--per-category", "1",
                                        "--out", str(out), *extra])
        assert res.exit_code == 1 and res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
        assert "FLIPBENCH_OFFLINE is set" in res.output and "--objects procedural --hdris bundled" in res.output
        assert ("--objects objaverse" in res.output) == (not extra) and "--hdris polyhaven:auto:16" in res.output
        assert not out.exists()


def test_category_lists_from_files_and_datasets(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"categories": ["mug", "ball", "mug"], "official": True}))
    cl = read_category_list(tmp_path / "c.json")
    assert cl.categories == ["mug", "ball"] and cl.official
    (tmp_path / "c.txt").write_text("# one per line\nmug\n\nteapot\n")
    assert read_category_list(tmp_path / "c.txt").categories == ["mug", "teapot"]
    # a FLIP HDF5 file not written by flipbench's generator: its instance categories, taken as official
    cl = read_category_list(COCO)
    assert cl.official and "person" in cl.categories and len(cl.categories) == len(set(cl.categories))
    # a file without per-instance categories (the official converter's): a one-line error naming it
    import h5py

    bare = tmp_path / "bare.hdf5"
    shutil.copy(COCO, bare)
    with h5py.File(bare, "a") as f:
        del f["flipbench_instance_category"]
    with pytest.raises(ValueError, match="bare.hdf5: holds no category names"):
        read_category_list(bare)
    for bad, message in (("[]", "expected"), ("{", "not valid JSON")):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(ValueError, match=message):
            read_category_list(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_category_list(tmp_path / "nothing.json")
    assert OFFICIAL_RELEASE_URL.startswith("https://nc.mlcloud.uni-tuebingen.de/")


def test_categories_from_and_categories_are_exclusive(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"categories": ["mug"]}))
    res = CliRunner().invoke(main, ["generate", "objascale", "--out", str(tmp_path / "r"), "--categories",
                                    str(tmp_path / "c.json"), "--categories-from", str(tmp_path / "c.json")])
    assert res.exit_code == 2 and "not both" in res.output


def test_inspect_compare_same_file_and_bins_from_1e7(tmp_path):
    res = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["inspect", str(COCO), "--compare", str(COCO), "--json",
                                                          str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    cmp = doc["compare"]
    assert cmp["ks_statistic"] == 0.0 and all(na == nb for _, na, nb in cmp["categories"])
    assert [r[0] for r in cmp["relative_size"]][:3] == ["[0, 1e-07)", "[1e-07, 1e-06)", "[1e-06, 1e-05)"]
    assert sum(n for _, n, _ in cmp["categories"]) == 36 and "D = 0.0000" in res.output
    res = CliRunner().invoke(main, ["inspect", str(COCO), "--compare", str(tmp_path / "missing.hdf5")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "missing.hdf5" in res.output
