"""ObjaScale generator with Blender: tiny Cycles renders in worker subprocesses.

* calibration renders (flat green emitter on black, linear view transform): the RGB is the coverage blend of
  the same render, so the binary mask must equal ``linear(G) >= 0.5`` and the RGB-derived coverage must sum to
  the Cryptomatte coverage; the achieved area must hit the target within the tolerance;
* an end-to-end run through the CLI that is killed after its first shard and resumed: no image lost or
  duplicated, and the result equals an uninterrupted run (determinism);
* the Objaverse path over HTTP against recorded-shape responses served on 127.0.0.1 (balanced paper preset, a
  uid whose download fails and is recorded without changing the image's pose), and Poly Haven HDRIs likewise.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")
pytest.importorskip("OpenEXR")

from objascale.generator.backgrounds import list_hdris  # noqa: E402
from objascale.generator.config import preset  # noqa: E402
from objascale.generator.objects import build_catalog  # noqa: E402
from objascale.generator.params import draw_object, draw_scene  # noqa: E402
from objascale.generator.pool import WorkerProcess  # noqa: E402

TINY = dict(long_side_min=64, long_side_max=64, aspects=(4 / 3,), portrait_prob=0.0, probe_size=128)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = c / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_calibration_mask_matches_rgb_and_area(tmp_path):
    cfg = preset("mini").with_overrides(**TINY, calibration=True, samples=64, denoise="none", min_pixels=60)
    init = {"cmd": "init", "config": cfg.to_dict(), "catalog": [s.to_dict() for s in build_catalog("procedural")],
            "hdris": [h.to_dict() for h in list_hdris("bundled")], "excluded": [], "work_dir": str(tmp_path),
            "threads": 0}
    events: queue.Queue = queue.Queue()
    w = WorkerProcess(0, init, tmp_path / "worker.log", events)
    done = {}
    try:
        _, msg = events.get(timeout=180)
        assert msg["event"] == "ready", msg
        w.render(0, 0)
        w.render(1, 0)  # queued on the worker's stdin, rendered in order
        while len(done) < 2:
            _, msg = events.get(timeout=180)
            assert msg["event"] not in ("failed", "error", "exit"), msg
            if msg["event"] == "done":
                done[msg["index"]] = msg
    finally:
        w.stop()
    for k, msg in done.items():
        with np.load(msg["file"]) as z:
            rgb, mask, info = z["rgb"], z["mask"], json.loads(str(z["info"]))
        assert rgb.shape == (48, 64, 3) and mask.shape == (48, 64) and mask.any()
        g = _srgb_to_linear(rgb[..., 1].astype(np.float64))
        assert rgb[..., [0, 2]].max() <= 1  # pure green emitter on black
        # binary mask == coverage >= 0.5 read back from the RGB, except pixels within 8-bit quantisation of 0.5
        decided = np.abs(g - 0.5) > 0.01
        assert np.array_equal(mask[decided], g[decided] >= 0.5)
        # RGB-derived coverage equals the Cryptomatte coverage sum (same samples)
        assert g.sum() == pytest.approx(info["coverage_pixels"], rel=0.01, abs=0.5)
        assert abs(info["coverage_error"]) <= cfg.area_tolerance
        assert info["mask_pixels"] == int(mask.sum())
        assert info["achieved_area"] == pytest.approx(mask.sum() / (64 * 48))


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", "generate", "objascale", "--preset", "mini", "--out", str(out),
            "--min-side", "64", "--max-side", "64", "--samples", "4", "--denoise", "none", "--min-pixels", "24",
            "--shard-size", "2", "--workers", "1", "--quiet", *extra]


def test_interrupt_resume_no_loss_no_duplicates_and_deterministic(tmp_path):
    from objascale.hdf5_format import FlipDataset

    run = tmp_path / "run"
    proc = subprocess.Popen(_cli(run, "--count", "3"), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = run / "objascale-00000.hdf5"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.exists(), proc.communicate()[0] if proc.poll() is not None else "timeout"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its bpy worker, mid-run
    proc.wait()
    mtime = first.stat().st_mtime_ns
    resumed = subprocess.run(_cli(run, "--count", "3"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 already complete" in resumed.stdout
    assert first.stat().st_mtime_ns == mtime  # the finished shard was not rewritten
    assert not list(run.glob("*.partial")) and not list((run / ".work").glob("img-*.npz"))

    ds = FlipDataset(run)
    infos = [ds.image_info(i) for i in range(ds.num_images)]
    assert [i["image_index"] for i in infos] == [0, 1, 2]  # every image exactly once, in order
    manifest = [json.loads(x) for x in (run / "manifest.jsonl").read_text().splitlines()]
    assert [m["image_index"] for m in manifest] == [0, 1, 2]
    for m in manifest:
        assert {"global_seed", "object_uid", "object_category", "object_license", "hdri", "hdri_heading_deg",
                "exposure_ev", "camera_lens_mm", "camera_quaternion_wxyz", "width", "height", "target_area",
                "achieved_area", "coverage_area", "samples"} <= set(m)
        assert abs(m["coverage_error"]) <= 0.1  # 4 spp on 24+ px objects; the tolerance test is the one above

    fresh = tmp_path / "fresh"
    full = subprocess.run(_cli(fresh, "--count", "3"), capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stdout + full.stderr
    ds2 = FlipDataset(fresh)
    for j in range(3):
        assert np.array_equal(ds.mask(j), ds2.mask(j))
        assert np.array_equal(ds.image(j), ds2.image(j))
    assert ds.fingerprint() == ds2.fingerprint()  # byte-identical shards (timings stay in the manifest)

    # a different config in the same folder is refused
    other = subprocess.run(_cli(run, "--count", "3", "--seed", "5"), capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "another config" in other.stderr


CUBE_OBJ = "\n".join(
    [f"v {x} {y} {z}" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    + ["f 1 3 4 2", "f 5 6 8 7", "f 1 2 6 5", "f 3 7 8 4", "f 1 5 7 3", "f 2 4 8 6"]) + "\n"


def _paper_cli(out: Path, *extra: str) -> list[str]:
    """The paper preset, shrunk for a test: 64 px, 4 spp, one worker, offline sources unless ``extra`` names others
    (a later option wins)."""
    return [sys.executable, "-m", "benchmark.cli", "generate", "objascale", "--preset", "paper", "--out", str(out),
            "--max-resolution", "64", "--samples", "4", "--denoise", "none", "--min-pixels", "24", "--workers", "1",
            "--quiet", "--objects", "procedural", "--hdris", "bundled", *extra]


def test_objaverse_over_http_balanced_and_failed_download(tmp_path, monkeypatch):
    """The Objaverse path end to end against recorded-shape responses on 127.0.0.1 (tests/data/objaverse): a
    balanced paper-preset run of 2 categories x 1 image whose first image draws an object that fails to download
    (404). The failure is recorded, the image keeps its pose and gets the first usable fallback, licences come
    from the metadata, and the card shows one image per category."""
    from _local_server import cube_glb, serve

    from objascale.generator.objects import ObjaverseSource
    from objascale.generator.params import category_order

    data = Path(__file__).parent / "data" / "objaverse"
    root = tmp_path / "hf"
    shutil.copytree(data, root)
    broken = "2c3d4e5f60718293a4b5c6d7e8f90a1b"
    for uid, rel in json.loads((root / "object-paths.json").read_text()).items():
        if uid != broken:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(cube_glb())
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({"categories": ["mug", "ball"]}))
    with serve(root) as server:
        monkeypatch.setenv("FLIPBENCH_OBJAVERSE_URL", server.base)
        monkeypatch.setenv("FLIPBENCH_OBJAVERSE_CACHE", str(tmp_path / "cache"))
        catalog = ObjaverseSource(["mug", "ball"], 50).catalog()
        _, members = category_order([s.category for s in catalog])
        idx = next(i for i, s in enumerate(catalog) if s.uid == broken)
        cfg = preset("paper").capped(64).with_overrides(min_pixels=24, samples=4, denoise="none")

        def first_draw(seed):
            c = cfg.with_overrides(seed=seed)
            return draw_object(c, 0, 0, draw_scene(c, 0, 8), len(catalog), (), members["mug"])

        seed = next(s for s in range(200) if first_draw(s).object_index == idx)
        out = tmp_path / "run"
        res = subprocess.run(_paper_cli(out, "--objects", "objaverse", "--categories", str(cats), "--per-category",
                                        "1", "--seed", str(seed), "--download-retries", "1"),
                             capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "estimate: 2 images" in res.stdout
    failed = json.loads((out / "failed_uids.json").read_text())
    assert list(failed) == [broken] and "404" in failed[broken]
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["image_index"], m["object_category"]) for m in manifest] == [(0, "mug"), (1, "ball")]
    m0 = manifest[0]
    assert m0["attempt"] == 0 and m0["rejected_attempts"][0]["object_uid"] == broken, m0["rejected_attempts"]
    expected = first_draw(seed)  # the pose drawn before the failure is the pose rendered
    assert m0["object_yaw_deg"] == expected.yaw_deg and m0["center_px_drawn"] == [expected.u, expected.v]
    meta = {**json.loads((data / "metadata" / "000-023.json").read_text()),
            **json.loads((data / "metadata" / "000-142.json").read_text())}
    for m in manifest:
        assert m["object_uid"] != broken and m["object_license"] == meta[m["object_uid"]]["license"]
        assert m["object_author"] == meta[m["object_uid"]]["user"]["displayName"]
        assert m["object_url"] == meta[m["object_uid"]]["viewerUrl"]
    from objascale.hdf5_reader import FlipDataset

    ds = FlipDataset(out)  # the shards of the run folder, one dataset
    assert [ds.instance_meta(j) for j in range(ds.num_instances)] == [
        {"category": m["object_category"], "category_id": m["object_category"],
         "source_id": f"object {m['object_uid']}"} for m in manifest]
    card = json.loads((out / "card.json").read_text())
    assert card["design"]["images_per_category"] == {"mug": 1, "ball": 1}
    assert card["design"]["equal_count_per_category"] and list(card["objects"]["failed_downloads"]) == [broken]


def test_polyhaven_hdris_end_to_end(tmp_path, monkeypatch):
    """--hdris polyhaven:1k:2 against recorded-shape API answers on 127.0.0.1: the chosen HDRIs are downloaded,
    verified and rendered, and every image records the HDRI's licence, author and page (manifest and card)."""
    from _local_server import serve

    monkeypatch.setenv("FLIPBENCH_HDRI_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    with serve(Path(__file__).parent / "data" / "polyhaven") as server:
        monkeypatch.setenv("FLIPBENCH_POLYHAVEN_API", server.base)
        res = subprocess.run(_paper_cli(out, "--count", "1", "--hdris", "polyhaven:1k:2"),
                             capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    hdris = json.loads((out / "hdris.json").read_text())
    assert len(hdris) == 2 and all(h["license"] == "CC0 (Poly Haven)" and h["author"] for h in hdris)
    (m,) = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    h = next(h for h in hdris if h["name"] == m["hdri"])
    assert (m["hdri_license"], m["hdri_author"], m["hdri_source"]) == (h["license"], h["author"], h["source"])
    assert "Poly Haven" in (out / "DATASET_CARD.md").read_text()


def test_worker_crash_is_recovered(tmp_path, monkeypatch):
    """A worker that dies while rendering image 1 (as a Blender crash would) is replaced; image 1 is re-drawn
    with the next attempt and the run completes with every image once."""
    from objascale.generator import generate as gen

    class CrashOnce(WorkerProcess):
        crashed = False

        def render(self, index, first_attempt):
            if index == 1 and not CrashOnce.crashed:
                CrashOnce.crashed = True
                self.job = self.busy = (index, first_attempt)
                self.proc.kill()
                return True
            return super().render(index, first_attempt)

    monkeypatch.setattr(gen, "WorkerProcess", CrashOnce)
    cfg = preset("mini").with_overrides(**TINY, samples=4, denoise="none", min_pixels=24, shard_size=3)
    summary = gen.generate(tmp_path / "run", 2, cfg, workers=1, progress=False)
    assert summary.crashes == 1 and summary.rendered == 2
    manifest = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert [m["image_index"] for m in manifest] == [0, 1]
    assert [m["attempt"] for m in manifest] == [0, 1]
    assert not list((tmp_path / "run" / ".work").glob("tmp-*"))


@pytest.mark.parametrize("bad_reads", [1, 99])
def test_unreadable_worker_result_is_rendered_again_then_given_up(tmp_path, monkeypatch, bad_reads):
    """Image 1's result file reads as corrupt: it is rendered again (run completes, every image once); a file that
    never becomes readable ends the run with a clear error instead of looping."""
    from objascale.generator import generate as gen
    from objascale.generator.worker import image_file

    real = gen.sh.load_image_result
    reads = {"bad": 0}

    def flaky(path):
        if path == image_file(tmp_path / "run" / ".work", 1) and path.is_file() and reads["bad"] < bad_reads:
            reads["bad"] += 1
            return None
        return real(path)

    monkeypatch.setattr(gen.sh, "load_image_result", flaky)
    cfg = preset("mini").with_overrides(**TINY, samples=4, denoise="none", min_pixels=24, shard_size=3)
    if bad_reads == 1:
        summary = gen.generate(tmp_path / "run", 2, cfg, workers=1, progress=False)
        assert summary.rendered == 3  # image 1 twice
        manifest = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
        assert [m["image_index"] for m in manifest] == [0, 1]
    else:
        with pytest.raises(gen.GenerationError, match="image 1 .* unreadable after 4 renders"):
            gen.generate(tmp_path / "run", 2, cfg, workers=1, progress=False)


def test_folder_source_rejects_missing_textures(tmp_path):
    """An OBJ whose material points at a missing texture is rejected (it would render magenta) and re-drawn."""
    objs = tmp_path / "objs" / "box"
    objs.mkdir(parents=True)
    (objs / "good.obj").write_text(CUBE_OBJ)
    (objs / "bad.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd missing_texture.png\n")
    (objs / "bad.obj").write_text("mtllib bad.mtl\nusemtl skin\n" + CUBE_OBJ)
    cfg = preset("mini").with_overrides(**TINY, objects=f"folder:{tmp_path / 'objs'}")
    catalog = build_catalog(cfg.objects)
    bad = next(i for i, s in enumerate(catalog) if s.name == "bad")
    seed = next(s for s in range(200) if draw_object(cfg.with_overrides(seed=s), 0, 0, draw_scene(
        cfg.with_overrides(seed=s), 0, 8), len(catalog)).object_index == bad)
    out = tmp_path / "run"
    res = subprocess.run(_cli(out, "--count", "1", "--objects", f"folder:{tmp_path / 'objs'}", "--seed", str(seed)),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (m,) = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert m["object_uid"] == "folder:box/good.obj" and m["object_category"] == "box"
    assert m["rejected_attempts"][0]["object_uid"] == "folder:box/bad.obj"
    assert "missing textures" in m["rejected_attempts"][0]["reason"]


def test_benchmark_report(tmp_path, monkeypatch, capsys):
    from objascale.generator import benchmark as bm

    monkeypatch.setattr(bm, "RESOLUTIONS", ((64, 48), (96, 72)))
    cfg = preset("mini").with_overrides(samples=4, denoise="none", min_pixels=24, probe_size=128)
    report = bm.run_benchmark(cfg, images=1, workers=1, out=tmp_path)
    text = capsys.readouterr().out
    assert "64x48:" in text and "96x72:" in text and "coverage area error" in text
    assert set(report["resolutions"]) == {"64x48", "96x72"}
    assert report["coverage_error"]["n"] == 2 and report["coverage_error"]["max_abs"] <= 0.1
    assert json.loads((tmp_path / "benchmark.json").read_text())["images_per_resolution"] == 1


def test_paper_box_limit_moves_a_too_large_object_back(tmp_path):
    """Paper preset with its width/height limit in pixels (``max_object_px``, here 24 px on 64 px frames, frames
    chosen for a full box): an image drawn near the top of its area range cannot keep its area with a box of at
    most 24 x 24 px; the object is moved back until it fits (no rejection), and the image records the lower
    effective target it then hits."""
    from objascale.generator.generate import generate
    from objascale.hdf5_format import FlipDataset

    cfg = preset("paper").capped(64).with_overrides(samples=4, denoise="none", min_pixels=24, probe_size=128,
                                                    objects="procedural", hdris="bundled", max_object_px=24,
                                                    object_box_fill=1.0)
    seed = next(s for s in range(500) if draw_scene(cfg.with_overrides(seed=s), 0, 8).target_area > 0.15)
    cfg = cfg.with_overrides(seed=seed)
    generate(tmp_path / "run", 1, cfg, workers=1, progress=False)
    (m,) = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert m["attempt"] == 0 and not m["rejected_attempts"]
    assert m["area_limited_by_box"] and m["target_area_effective"] < m["target_area"]
    assert abs(m["coverage_error"]) <= 0.1  # relative to the effective target
    mask = FlipDataset(tmp_path / "run").mask(0)
    ys, xs = np.nonzero(mask)
    assert xs.max() - xs.min() + 1 <= 24 + 2 and ys.max() - ys.min() + 1 <= 24 + 2
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["relative_area"]["images_limited_by_box"] == 1 and card["relative_area"]["max_object_px"] == 24


def test_inspect_compare_two_generated_runs_and_categories_from(tmp_path):
    """Two generated paper-preset runs (offline sources, 64 px) compared with ``inspect --compare``: categories, area
    and resolution histograms side by side and the KS statistic of the areas; then a third run takes its category
    list from the first run's shards (``--categories-from``), recorded as not official (a flipbench run)."""
    from click.testing import CliRunner

    from benchmark.cli import main

    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({"categories": ["mug", "ball"]}))
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, "0"), (b, "1")):
        res = subprocess.run(_paper_cli(out, "--per-category", "1", "--seed", seed, "--categories", str(cats)),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    res = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["inspect", str(a), "--compare", str(b), "--json",
                                                          str(tmp_path / "cmp.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "cmp.json").read_text())["compare"]
    assert [(c, na, nb) for c, na, nb in doc["categories"]] == [("ball", 1, 1), ("mug", 1, 1)]
    assert sum(r[1] for r in doc["relative_size"]) == 2 == sum(r[2] for r in doc["relative_size"])
    assert doc["relative_size"][0][0] == "[0, 1e-07)" and sum(r[1] for r in doc["long_side"]) == 2
    from scipy.stats import ks_2samp

    from objascale.hdf5_format import FlipDataset

    areas = [[FlipDataset(p).mask(j).mean() for j in range(2)] for p in (a, b)]
    assert doc["ks_statistic"] == pytest.approx(ks_2samp(*areas).statistic)
    for text in ("instances per category", "long image side", "two-sample KS statistic", "A %", "B %"):
        assert text in res.output

    c = tmp_path / "c"
    res = subprocess.run(_paper_cli(c, "--count", "1", "--categories-from", str(a)), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    frozen = json.loads((c / "categories.json").read_text())
    assert frozen["categories"] == ["mug", "ball"] and frozen["official"] is False
    card = json.loads((c / "card.json").read_text())
    assert card["design"]["categories_source"]["official"] is False
    assert card["design"]["categories_source"]["file"] == str(a)


def test_paper_defaults_render_objaverse_over_polyhaven_auto(tmp_path, monkeypatch):
    """--preset paper with its own sources (no --objects / --hdris): Objaverse objects and Poly Haven HDRIs at the
    ``auto`` resolution of the frame (64 px -> 1k), both served from 127.0.0.1, with the ground plane on; nothing
    else is fetched (FLIPBENCH_OFFLINE=1)."""
    from _local_server import cube_glb, serve

    data = Path(__file__).parent / "data"
    root = tmp_path / "hf"
    shutil.copytree(data / "objaverse", root)
    for uid, rel in json.loads((root / "object-paths.json").read_text()).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(cube_glb())
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps({"categories": ["mug", "ball"]}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "benchmark.cli", "generate", "objascale", "--preset", "paper", "--out", str(out),
           "--max-resolution", "64", "--samples", "4", "--denoise", "none", "--min-pixels", "24", "--workers", "1",
           "--quiet", "--categories", str(cats), "--per-category", "1"]
    with serve(root) as objaverse, serve(data / "polyhaven") as polyhaven:
        env = {**os.environ, "FLIPBENCH_OFFLINE": "1", "FLIPBENCH_OBJAVERSE_URL": objaverse.base,
               "FLIPBENCH_OBJAVERSE_CACHE": str(tmp_path / "oc"), "FLIPBENCH_POLYHAVEN_API": polyhaven.base,
               "FLIPBENCH_HDRI_CACHE": str(tmp_path / "hc")}
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    hdris = json.loads((out / "hdris.json").read_text())
    assert len(hdris) == 3 and all(Path(h["path"]).name.endswith("_1k.hdr") for h in hdris)  # 16 asked, 3 exist
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["object_category"] for m in manifest] == ["mug", "ball"]
    assert all(not m["object_uid"].startswith("procedural") and m["hdri_license"] == "CC0 (Poly Haven)"
               for m in manifest)
    card = json.loads((out / "card.json").read_text())
    assert card["rendering"]["ground_plane"] and card["objects"]["source"] == "objaverse"
    assert card["rendering"]["images_with_ground_plane"] == 2  # both objects stand below the camera, on the plane
    assert all(m["object_tilt_deg"] == 0.0 for m in manifest)  # upright: resting on it
    assert card["relative_area"]["max_object_px"] == 2048 and card["hdris"]["source"] == "polyhaven:auto:16"
