"""ObjaScale paper design (no bpy): presets, balanced categories, failed downloads that change no other draw,
the procedural category mapping, the run-time estimate and the dataset card built from a run directory."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from objascale.generator import card as cd
from objascale.generator import objects as ob
from objascale.generator import shards as sh
from objascale.generator.categories import OFFICIAL_RELEASE_URL
from objascale.generator.config import PRESET_COUNTS, GeneratorConfig, preset
from objascale.generator.estimate import SETUP_CPU_S, estimate, expected_megapixels
from objascale.generator.params import category_order, draw_object, draw_scene, image_category
from objascale.generator.scale import box_excess


def test_paper_preset_values():
    cfg = preset("paper")
    assert PRESET_COUNTS["paper"] == 68 * 150 == 10_200
    assert cfg.balanced and cfg.max_box_fraction == 1.0 and cfg.max_object_px == 2048
    assert (cfg.min_area, cfg.max_area) == (1e-6, 0.25) and cfg.long_side_max == 4096
    # the paper's sources, ground and resting poses by default; mini stays offline
    assert (cfg.objects, cfg.hdris, cfg.ground_plane, cfg.max_tilt_deg) == ("objaverse", "polyhaven:auto:16", True, 0)
    mini = preset("mini")
    assert (mini.objects, mini.hdris, mini.ground_plane) == ("procedural", "bundled", False)
    capped = cfg.capped(512)
    assert (capped.long_side_min, capped.long_side_max) == (512, 512) and capped.fingerprint() != cfg.fingerprint()
    assert cfg.capped(None) is cfg
    with pytest.raises(ValueError, match="max_box_fraction"):
        GeneratorConfig(max_box_fraction=0.0)


def test_box_limit():
    assert box_excess((-25, -10, 25, 10), 100, 80, 0.5) == pytest.approx(1.0)  # 50 px wide = half of 100
    assert box_excess((-26, -10, 25, 10), 100, 80, 0.5) == pytest.approx(51 / 50)
    assert box_excess((-5, -21, 5, 20), 100, 80, 0.5) == pytest.approx(41 / 40)  # too tall
    assert box_excess((-5, -5, 5, 5), 100, 80, 0.5) == pytest.approx(10 / 40)
    # in pixels (the paper's form): 60 px wide against a 40 px limit; the frame (less a 1 px margin) also counts
    assert box_excess((-30, -5, 30, 5), 1000, 800, 1.0, max_px=40) == pytest.approx(60 / 40)
    assert box_excess((-30, -5, 30, 5), 50, 800, 1.0, max_px=100) == pytest.approx(60 / 50)
    assert box_excess((-50, -5, 50, 5), 100, 80, 1.0, max_px=200, margin=1.0) == pytest.approx(100 / 98)


def test_procedural_catalogue_per_category():
    cats = ob.load_categories()
    cat = ob.build_catalog("procedural", balanced=True)
    assert [s.category for s in cat] == cats  # one entry per category, in file order
    kinds = ob.PROCEDURAL_KINDS
    for i, s in enumerate(cat):
        if s.category in ob.PROCEDURAL_CATEGORY.values():  # the 9 categories a procedural kind depicts
            assert s.name == s.category and s.uid == f"procedural:{s.name}" and not ob.is_stand_in(s)
        else:  # stand-in shape chosen by the category index, labelled with the category
            assert s.name == kinds[i % len(kinds)] and s.uid == f"procedural:{s.name}@{s.category}"
            assert ob.is_stand_in(s)
    assert sum(ob.is_stand_in(s) for s in cat) == 68 - 9
    assert ob.build_catalog("procedural") == ob.build_catalog("procedural", balanced=False)  # unchanged default


def test_balanced_draw_gives_each_category_the_same_count():
    cfg = preset("paper")
    catalog = [("mug", 0), ("ball", 1), ("mug", 2), ("book", 3), ("ball", 4)]
    categories, members = category_order([c for c, _ in catalog])
    assert categories == ["mug", "ball", "book"] and members == {"mug": [0, 2], "ball": [1, 4], "book": [3]}
    per_category = 7
    drawn = Counter()
    for k in range(per_category * len(categories)):
        c = categories[image_category(k, len(categories))]
        od = draw_object(cfg, k, 0, draw_scene(cfg, k, 8), len(catalog), (), members[c])
        assert catalog[od.object_index][0] == c
        drawn[c] += 1
    assert set(drawn.values()) == {per_category}


def _pose(od):
    d = od.to_dict()
    d.pop("object_index")
    return d


def test_failed_download_changes_no_other_draw():
    """Excluding an object (its download failed) leaves every other image's object and every image's pose as
    they were; and the result does not depend on when a worker learnt of the failure."""
    cfg = preset("full")
    n, failing = 12, {3, 7}
    for k in range(300):
        sd = draw_scene(cfg, k, 8)
        base = draw_object(cfg, k, 0, sd, n)
        ex = draw_object(cfg, k, 0, sd, n, excluded=sorted(failing))
        assert _pose(ex) == _pose(base)
        if base.object_index not in failing:
            assert ex.object_index == base.object_index
        else:
            assert ex.object_index not in failing
        # a worker that knows nothing yet discovers the failures one by one and ends at the same object
        known: set[int] = set()
        while (od := draw_object(cfg, k, 0, sd, n, excluded=sorted(known))).object_index in failing:
            known.add(od.object_index)
        assert od == ex
    with pytest.raises(ValueError, match="no usable object"):
        draw_object(cfg, 0, 0, draw_scene(cfg, 0, 8), 4, excluded=[1, 2], candidates=[1, 2])


def test_estimate_typical_and_measured(tmp_path):
    mini, paper = preset("mini"), preset("paper")
    # frames that hold the smallest areas are squares, so the mean lies between the aspect mean and a square
    mp = expected_megapixels(paper.capped(512))
    assert np.mean([512 * 512 / a for a in paper.aspects]) / 1e6 < mp < 512 * 512 / 1e6
    e = estimate(paper, 10_200, cores=2)
    # hundreds of CPU-s at up to 4K: the ground plane's shadow catcher costs about 4x the bare render
    assert e.basis.startswith("typical") and 300 < e.cpu_seconds_per_image < 600
    assert e.wall_seconds > 86400 * 15 and "days" in e.text()
    bare = estimate(paper.with_overrides(ground_plane=False), 10_200, cores=2)
    assert 50 < bare.cpu_seconds_per_image < 200 and bare.cpu_seconds_per_image < e.cpu_seconds_per_image / 3
    assert estimate(mini, 24, cores=2).wall_seconds < 20 * 60  # a first run finishes in minutes
    # a resumed run uses its own measured figures
    (tmp_path / "manifest").mkdir()
    rec = {"cpu_seconds": SETUP_CPU_S + 100.0 * 0.5, "width": 1000, "height": 500}  # 100 CPU-s per megapixel
    (tmp_path / "manifest" / "shard-00000.jsonl").write_text(json.dumps(rec) + "\n")
    m = estimate(paper.capped(1000), 1, tmp_path, cores=1)
    assert m.basis == "measured on 1 images of this run"
    assert m.cpu_seconds_per_image == pytest.approx(SETUP_CPU_S + 100.0 * expected_megapixels(paper.capped(1000)))


def _fake_run(out, cfg, n_per_cat=2):
    catalog = [s.to_dict() for s in ob.build_catalog("procedural", balanced=True)][:3]
    cfg = cfg.with_overrides(categories_file="")
    sh.write_json_atomic(out / "generator_config.json", {"config": cfg.to_dict(), "config_fingerprint":
                                                         cfg.fingerprint(), "count": 3 * n_per_cat,
                                                         "versions": {"bpy": "5.0.1"}})
    sh.write_json_atomic(out / "catalog.json", catalog)
    hdri = {"name": "kloppenheim_06", "path": "/x.hdr", "license": "CC0 (Poly Haven)", "author": "Greg Zaal",
            "source": "https://polyhaven.com/a/kloppenheim_06"}
    sh.write_json_atomic(out / "hdris.json", [hdri])
    recs = []
    for k in range(3 * n_per_cat):
        s = catalog[k % 3]
        recs.append({"image_index": k, "object_uid": s["uid"], "object_category": s["category"], "width": 640 + k,
                     "height": 480, "achieved_area": 10.0 ** -(k % 6), "target_area": 10.0 ** -(k % 6) * 0.99,
                     "hdri": "kloppenheim_06", "device": "CPU",
                     "ground_plane": k == 0})
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return catalog


def test_dataset_card(tmp_path):
    catalog = _fake_run(tmp_path, preset("paper"))
    json_path, md_path = cd.write_card(tmp_path)
    card = json.loads(json_path.read_text())
    assert card["images"] == 6 and card["generator"]["preset"] == "paper"
    d = card["design"]
    assert d["balanced"] and d["equal_count_per_category"] and d["categories_in_catalog"] == 3
    assert d["images_per_category"] == {s["category"]: 2 for s in catalog}
    assert d["categories_source"]["official"] is False
    assert d["stand_in_categories"] == sorted(s["category"] for s in catalog if ob.is_stand_in(s))
    assert sum(b["count"] for b in card["relative_area"]["histogram"]) == 6
    assert [b["count"] for b in card["relative_area"]["histogram"]] == [0, 0, 1, 1, 1, 1, 1, 1]  # 1e-5 .. 1
    assert sum(b["count"] for b in card["resolution"]["long_side_histogram"]) == 6
    # achieved and drawn areas against the log-uniform target on [1e-6, 0.25] (18.5 % per full decade)
    dist = card["relative_area"]["distribution"]
    assert [r["achieved"] for r in dist] == [0, 0, 1, 1, 1, 1, 1, 1] and sum(r["drawn"] for r in dist) == 6
    assert [r["target_pct"] for r in dist] == pytest.approx([0, 18.53, 18.53, 18.53, 18.53, 18.53, 7.37, 0], abs=0.01)
    assert sum(r["target"] for r in dist) == pytest.approx(6, abs=0.05)
    assert card["official_release"]["url"] == OFFICIAL_RELEASE_URL
    assert card["hdris"]["used"] == [{"name": "kloppenheim_06", "license": "CC0 (Poly Haven)", "author": "Greg Zaal",
                                      "source": "https://polyhaven.com/a/kloppenheim_06", "images": 6}]
    assert card["objects"]["licenses"] == {"procedural, CC0 (flipbench)": 3}
    assert card["rendering"]["images_with_ground_plane"] == 1
    md = md_path.read_text()
    assert "official: false" in md and "Greg Zaal" in md and "equal count per category: yes" in md
    assert "(stand-in)" in md and "## Relative mask area" in md and 'seed = 0' in md
    assert OFFICIAL_RELEASE_URL in md and "| [1e-06, 1e-05) | 0 | 1 | 1.1 | 0.0 | 18.5 |" in md
    assert cd.read_card(tmp_path) == card and cd.read_card(tmp_path / "objascale-00000.hdf5") == card
    # one category short: not balanced any more
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert cd.build_card(tmp_path)["design"]["equal_count_per_category"] is False
    with pytest.raises(FileNotFoundError, match="no finished ObjaScale run"):
        cd.build_card(tmp_path / "nothing")


def test_inspect_prints_the_card(tmp_path):
    """``flipbench inspect`` on a run directory prints its card (here: a real FLIP HDF5 file beside a card)."""
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from benchmark.cli import main

    _fake_run(tmp_path, preset("paper"))
    cd.write_card(tmp_path)
    shutil.copy(Path(__file__).parent / "data" / "coco_val2017_mini.hdf5", tmp_path / "objascale-00000.hdf5")
    res = CliRunner(env={"COLUMNS": "300"}).invoke(main, ["inspect", str(tmp_path), "--json",
                                                          str(tmp_path / "inspect.json")])
    assert res.exit_code == 0, res.output
    assert "dataset card" in res.output and "equal count per category: yes" in res.output
    assert "Greg Zaal" in res.output and "official: false" in res.output
    assert json.loads((tmp_path / "inspect.json").read_text())["card"]["images"] == 6
