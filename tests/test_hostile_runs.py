"""Hostile and careless inputs around outputs (issue 15, items 5, 7, 8, 10, 11): no user file is deleted or
overwritten, a full or read-only output is a one-line error that leaves no temporary behind and marks the run,
impossible prompts are counted instead of scored, a broken HDRI is skipped, damaged run files name themselves.

Full and read-only file systems are real: a small tmpfs mounted in a private mount namespace (``unshare -m``, as
root); those tests skip with the reason when the namespace or the mount cannot be made.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from _shared import REPO_ROOT
from benchmark.cli import main
from benchmark.evaluation.accumulate import load_manifest, load_records
import benchmark.evaluation.evaluate as evaluate
import benchmark.evaluation.store as store
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from benchmark.models import build_model
from objascale.hdf5_format import FlipDataset, FlipH5Writer, mask_to_rho

# ------------------------------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------------------------------
#: instance -> stored positions no mask can have (rows of a 5-image, 10-instance dataset)
BAD_POSITIONS = {
    1: [0.0, 0.0, -0.02, 0.01, 0.0],  # negative variance
    3: [0.0, 0.0, 0.01, 0.01, 0.05],  # covariance not positive semi-definite
    5: [np.nan, 0.0, 0.01, 0.01, 0.0],
    6: [0.0, 0.0, np.inf, 0.01, 0.0],
    8: [1.7, 0.0, 0.01, 0.01, 0.0],  # mean outside the image
}


def _make_dataset(path: Path, bad: dict[int, list[float]] | None = None) -> Path:
    """5 images (40x56) with 2 discs each; ``bad`` rows are written into ``positions`` afterwards."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:40, :56]
    with FlipH5Writer(path, dataset_name="hostile", dataset_type="test", bbox_convention="tight") as writer:
        for i in range(5):
            image = rng.integers(0, 60, (40, 56, 3), dtype=np.uint8)
            masks = []
            for cx in (14, 40):
                disc = (xx - cx) ** 2 + (yy - 20) ** 2 <= (4 + i) ** 2
                image[disc] = 230
                masks.append(disc)
            writer.add_image(image, masks, {"file_name": f"img{i}.png"})
    if bad:
        with h5py.File(path, "r+") as h5:
            for j, row in bad.items():
                h5["positions"][j] = np.asarray(row, dtype=np.float32)
    return path


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("hostile") / "clean.hdf5")


@pytest.fixture(scope="module")
def bad_dataset_path(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("hostile-bad") / "bad.hdf5", BAD_POSITIONS)


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result, *needles: str) -> str:
    """The result is exit status 1 with exactly one ``Error:`` line (no traceback) containing ``needles``."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_files(root: Path) -> dict[str, bytes]:
    """A directory a user made, with the names a run writes: it must come out unchanged."""
    (root / "records" / "mine").mkdir(parents=True)
    (root / "records" / "mine" / "part-000000000-000000001-x.parquet").write_bytes(b"my own parquet")
    (root / "official").mkdir()
    (root / "official" / "box.csv").write_text("my,csv\n")
    (root / "summary.md").write_text("# my summary\n")
    (root / "summary.csv").write_text("my,summary\n")
    return _snapshot(root)


# ------------------------------------------------------------------------------------------------------------------
# item 5: a run deletes or overwrites only what it created
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force_new", [False, True])
def test_a_directory_that_is_not_a_run_is_refused_and_untouched(dataset_path, tmp_path, force_new):
    out = tmp_path / "mine"
    before = _user_files(out)
    args = ["eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out)]
    result = _cli(*args, *(["--force-new"] if force_new else []))
    _one_line_error(result, str(out), "not a flipbench run", "--out")
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["official", "records", "summary.csv", "summary.md"]


def test_force_new_deletes_only_the_files_the_run_created(dataset_path, tmp_path):
    out = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out),
                "--official-csv").exit_code == 0
    manifest = load_manifest(out)
    assert set(manifest["files"]) == {"run.json", "records", "summary.csv", "summary.md", "official", store.SPARE}
    (out / "notes.txt").write_text("my notes")
    (out / ".my.hidden.tmp").write_text("mine too")
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--seed", "3",
                  "--force-new")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "my notes" and (out / ".my.hidden.tmp").read_text() == "mine too"
    assert not (out / "official").exists()  # the earlier run's, discarded; this session did not ask for it
    assert load_manifest(out)["protocol"]["seed"] == 3 and len(load_records(out)) == 10


def test_a_users_summary_in_a_run_is_never_overwritten(dataset_path, tmp_path):
    """A run whose run.json does not list summary.md as its own (e.g. the first session failed before writing it,
    and the user put one there) refuses before evaluating anything."""
    out = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--limit", "2").exit_code == 0
    manifest = load_manifest(out)
    manifest["files"] = ["run.json", "records", store.SPARE]
    (out / "run.json").write_text(json.dumps(manifest))
    (out / "summary.md").write_text("# my own notes\n")
    parts = sorted(out.glob("records/box/*.parquet"))
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out))
    _one_line_error(result, str(out / "summary.md"), "not written by the run")
    assert (out / "summary.md").read_text() == "# my own notes\n"
    assert sorted(out.glob("records/box/*.parquet")) == parts  # nothing was evaluated


def test_a_lock_file_flipbench_did_not_write_is_not_deleted(dataset_path, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("my lock, not json")
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out))
    _one_line_error(result, str(out / ".lock"), "not a flipbench lock")
    assert (out / ".lock").read_text() == "my lock, not json" and sorted(p.name for p in out.iterdir()) == [".lock"]


def test_report_out_refuses_a_directory_that_is_not_a_report(dataset_path, tmp_path):
    run = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(run)).exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("<p>my page</p>")
    result = _cli("report", str(run), "--out", str(mine))
    _one_line_error(result, str(mine), "--out")
    assert sorted(p.name for p in mine.iterdir()) == ["report.html"]
    assert (mine / "report.html").read_text() == "<p>my page</p>"
    again = tmp_path / "again"
    assert _cli("report", str(run), "--out", str(again)).exit_code == 0
    assert _cli("report", str(run), "--out", str(again)).exit_code == 0  # an earlier report is replaced


def test_convert_never_replaces_an_existing_file(tmp_path):
    src = _coco_source(tmp_path / "coco", images=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "coco-val2017-val2017-v1.hdf5").write_bytes(b"my file")
    (out / "coco-val2017-val2017-v2.hdf5.partial").write_bytes(b"my partial")
    result = _cli("convert", "coco", str(src / "img"), "--annotations", str(src / "inst.json"), "--out", str(out),
                  "--no-progress")
    assert result.exit_code == 0, result.output
    assert (out / "coco-val2017-val2017-v1.hdf5").read_bytes() == b"my file"
    assert (out / "coco-val2017-val2017-v2.hdf5.partial").read_bytes() == b"my partial"
    assert FlipDataset(out / "coco-val2017-val2017-v3.hdf5").num_images == 3


def test_generator_overwrite_removes_only_what_a_generation_created(tmp_path):
    from objascale.generator import generate as gen
    from objascale.generator import shards as sh
    from objascale.generator.config import preset

    cfg = preset("mini")
    out = tmp_path / "run"
    gen._prepare_run_dir(out, cfg, 4, overwrite=False)
    for name in ("catalog.json", "hdris.json", "failed_uids.json", "manifest.jsonl"):
        (out / name).write_text("[]")
    sh.manifest_path(out, 0).parent.mkdir()
    sh.manifest_path(out, 0).write_text("")
    sh.shard_path(out, 0).write_bytes(b"shard")
    (out / ".work").mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "objascale-final.hdf5").write_bytes(b"my own export")
    gen._prepare_run_dir(out, cfg.with_overrides(seed=9), 4, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["generator_config.json", "notes.txt", "objascale-final.hdf5"]
    assert (out / "notes.txt").read_text() == "mine" and sh.read_json(out / "generator_config.json")["config"]["seed"] == 9
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("f")
    with pytest.raises(gen.GenerationError, match="not an ObjaScale run"):
        gen._prepare_run_dir(other, cfg, 4, overwrite=True)
    assert (other / "f").read_text() == "f"


# ------------------------------------------------------------------------------------------------------------------
# item 7 (and 11): full, read-only and unwritable outputs
# ------------------------------------------------------------------------------------------------------------------
_NAMESPACE_SKIP: list[str] = []


def _in_tmpfs(tmp_path: Path, script: str, size_kb: int, readonly: bool = False) -> dict:
    """Run python ``script`` in a private mount namespace with a ``size_kb`` tmpfs at ``$MNT`` (remounted read-only
    after creating ``$MNT/sub`` when ``readonly``); the script prints one JSON object, returned here. The mount
    vanishes with the namespace."""
    if _NAMESPACE_SKIP:
        pytest.skip(_NAMESPACE_SKIP[0])
    if shutil.which("unshare") is None:
        _NAMESPACE_SKIP.append("no unshare(1): cannot make a private tmpfs to fill")
        pytest.skip(_NAMESPACE_SKIP[0])
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    remount = 'mkdir "$MNT/sub" && mount -o remount,ro "$MNT" && ' if readonly else ""
    shell = f'mount -t tmpfs -o size={size_kb}k tmpfs "$MNT" && {remount}exec "$PY" -c "$SCRIPT"'
    env = {**os.environ, "MNT": str(mnt), "PY": sys.executable, "SCRIPT": textwrap.dedent(script),
           "PYTHONPATH": str(REPO_ROOT), "FLIPBENCH_DEBUG": "0"}
    probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$MNT"'], env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        _NAMESPACE_SKIP.append(f"cannot mount a tmpfs in a private mount namespace (needs root or user "
                               f"namespaces): {probe.stderr.strip()}")
        pytest.skip(_NAMESPACE_SKIP[0])
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode >= 0, f"the process was killed by signal {-proc.returncode}: {proc.stderr[-3000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: runs a CLI command inside the namespace, then reports its exit, output and what is left under $MNT
_CLI_IN_TMPFS = """
import json, os, sys
from pathlib import Path
from click.testing import CliRunner
from benchmark.cli import main
mnt = Path(os.environ["MNT"])
FILL = {fill}
if FILL:  # leave about FILL bytes free
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"x" * max(0, free - FILL))
res = CliRunner().invoke(main, {args!r})
files = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*") if p.is_file())
run_json = {{}}
for p in mnt.rglob("run.json"):
    run_json = json.loads(p.read_text())
print(json.dumps({{"exit": res.exit_code, "output": res.output, "files": files, "run_json": run_json,
                  "exception": repr(res.exception)}}))
"""


def _run_cli_in_tmpfs(tmp_path, args, size_kb, fill=0, readonly=False) -> dict:
    return _in_tmpfs(tmp_path, _CLI_IN_TMPFS.format(args=list(args), fill=fill), size_kb, readonly)


def _assert_one_line(state: dict, *needles: str) -> str:
    lines = [line for line in state["output"].splitlines() if line.strip()]
    assert state["exit"] == 1 and "Traceback" not in state["output"], state
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, state["output"]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_eval_on_a_full_disk(dataset_path, tmp_path):
    """The run is created, then its records parts stop fitting: one line naming the file and what to do, no
    temporary file left, the session marked interrupted with the error (not stuck at "running")."""
    out = tmp_path / "mnt" / "run"
    state = _run_cli_in_tmpfs(tmp_path, ["eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out),
                                         "--chunk-images", "1", "--no-progress"], size_kb=512,
                              fill=store.SPARE_BYTES + 24 * 1024)
    _assert_one_line(state, "No space left on device", "free some space")
    assert not [f for f in state["files"] if f.endswith(".tmp")], state["files"]
    sessions = state["run_json"]["sessions"]
    assert sessions and sessions[-1]["status"] == "interrupted" and "No space left" in sessions[-1]["error"]


def test_convert_on_a_full_disk_fails_cleanly_instead_of_crashing(tmp_path):
    """h5py crashed (SIGSEGV) when HDF5 hit a full disk; the writer reserves space first: exit 1, one line, no
    .partial left."""
    src = _coco_source(tmp_path / "coco", images=200, size=96)  # about 2.3 MB of JPEGs, appended 64 at a time
    for size_kb, fill in ((100, 0), (2048, 0), (8192, 1536 << 10)):
        state = _run_cli_in_tmpfs(tmp_path, ["convert", "coco", str(src / "img"), "--annotations",
                                             str(src / "inst.json"), "--out", str(tmp_path / "mnt" / "o"),
                                             "--no-progress"], size_kb=size_kb, fill=fill)
        _assert_one_line(state, "No space left on device", ".hdf5.partial", "free some space")
        assert [f for f in state["files"] if f != "filler"] == [], state["files"]


def test_eval_refuses_to_start_on_a_full_disk(dataset_path, tmp_path):
    out = tmp_path / "mnt" / "run"
    state = _run_cli_in_tmpfs(tmp_path, ["eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out),
                                         "--no-progress"], size_kb=512, fill=8 * 1024)
    _assert_one_line(state, str(out), "No space left on device")
    assert not [f for f in state["files"] if f.endswith(".tmp") or "records" in f], state["files"]


def test_read_only_out(dataset_path, tmp_path):
    ro = tmp_path / "mnt" / "sub"
    state = _run_cli_in_tmpfs(tmp_path, ["eval", "--dataset", str(dataset_path), "--model", "box", "--out",
                                         str(ro / "run")], size_kb=256, readonly=True)
    _assert_one_line(state, str(ro / "run"), "Read-only file system", "writable --out")
    src = _coco_source(tmp_path / "coco", images=2)
    state = _run_cli_in_tmpfs(tmp_path, ["convert", "coco", str(src / "img"), "--annotations", str(src / "inst.json"),
                                         "--out", str(ro), "--no-progress"], size_kb=256, readonly=True)
    _assert_one_line(state, str(ro), "Read-only file system")
    run = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(run)).exit_code == 0
    state = _run_cli_in_tmpfs(tmp_path, ["report", str(run), "--out", str(ro / "report")], size_kb=256,
                              readonly=True)
    _assert_one_line(state, str(ro / "report"), "Read-only file system")
    # any command, any output option: inspect --json
    state = _run_cli_in_tmpfs(tmp_path, ["inspect", str(dataset_path), "--json", str(ro / "x.json")], size_kb=256,
                              readonly=True)
    _assert_one_line(state, str(ro / "x.json"), "Read-only file system")
    # the generator (its own error line)
    state = _run_cli_in_tmpfs(tmp_path, ["generate", "objascale", "--preset", "mini", "--count", "1", "--out",
                                         str(ro / "gen"), "--quiet"], size_kb=256, readonly=True)
    assert state["exit"] == 1 and "Traceback" not in state["output"], state
    assert str(ro / "gen") in state["output"] and "Read-only file system" in state["output"], state["output"]


def test_unwritable_records_name_the_file_and_mark_the_session(dataset_path, tmp_path, monkeypatch):
    """Permission refused (root cannot be refused by chmod, so pyarrow's write is made to fail as it would):
    one line naming the temporary part, which is removed, and the session is interrupted with the error."""
    def refuse(table, where, **kwargs):
        Path(where).write_bytes(b"half a part")
        raise OSError(errno.EACCES, "Permission denied")  # pyarrow names no file

    monkeypatch.setattr(store.pq, "write_table", refuse)
    out = tmp_path / "run"
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--no-progress")
    _one_line_error(result, str(out / "records" / "box"), "Permission denied", "fix the permissions")
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
    session = load_manifest(out)["sessions"][-1]
    assert session["status"] == "interrupted" and "Permission denied" in session["error"]


def test_a_session_left_running_is_marked_when_the_run_is_next_opened(dataset_path, tmp_path, monkeypatch):
    """When even run.json cannot be written at the end (the disk stayed full), the session stays "running" on
    disk; the next session (holding the lock, so the old process is gone) marks it interrupted."""
    out = tmp_path / "run"
    real_write_part, real_save = store.RunStore.write_part, store.RunStore.save
    state = {"full": False}

    def write_part(self, model, table):
        state["full"] = True
        raise OSError(errno.ENOSPC, "No space left on device", str(self.model_dir(model) / ".part.tmp"))

    def save(self):
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "run.json"))
        real_save(self)

    monkeypatch.setattr(store.RunStore, "write_part", write_part)
    monkeypatch.setattr(store.RunStore, "save", save)
    with pytest.raises(OSError, match="No space left"):
        run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], out, EvalParams(), builder=build_model)
    assert load_manifest(out)["sessions"][-1]["status"] == "running"  # what the disk holds
    assert not list(out.glob(".run.json.*.tmp"))
    monkeypatch.setattr(store.RunStore, "write_part", real_write_part)
    state["full"] = False
    run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], out, EvalParams(), builder=build_model)
    first, second = load_manifest(out)["sessions"]
    assert first["status"] == "interrupted" and "ended without closing" in first["error"]
    assert second["status"] == "completed"


def test_the_hdf5_reservation_leaves_the_file_byte_identical(tmp_path, monkeypatch):
    """Space is reserved past HDF5's end before each append and cut off after closing: the published file equals
    one written without reservations."""
    import objascale.hdf5_writer as hw

    a = _make_dataset(tmp_path / "a.hdf5")
    monkeypatch.setattr(hw.os, "posix_fallocate", lambda fd, offset, length: None)
    b = _make_dataset(tmp_path / "b.hdf5")
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


# ------------------------------------------------------------------------------------------------------------------
# item 8: positions no mask can have are counted, never scored
# ------------------------------------------------------------------------------------------------------------------
def test_prompt_problem_accepts_every_real_mask_and_names_impossible_positions():
    masks = []
    for shape in ((1, 1), (1, 9), (9, 1), (7, 7), (30, 17)):
        m = np.zeros((32, 40), bool)
        m[3:3 + shape[0], 5:5 + shape[1]] = True
        masks.append(m)
    diagonal = np.eye(32, 40, dtype=bool)  # a line: singular covariance
    full = np.ones((32, 40), bool)
    for m in masks + [diagonal, full]:
        assert evaluate.prompt_problem(mask_to_rho(m)) is None
    assert evaluate.prompt_problem([0.1, 0.2, -5e-8, 0.01, 0.0]) is None  # float32 noise of the official converter
    assert "negative variance" in evaluate.prompt_problem(BAD_POSITIONS[1])
    assert "not positive semi-definite" in evaluate.prompt_problem(BAD_POSITIONS[3])
    assert "not finite" in evaluate.prompt_problem(BAD_POSITIONS[5]) and "not finite" in evaluate.prompt_problem(BAD_POSITIONS[6])
    assert "outside the image" in evaluate.prompt_problem(BAD_POSITIONS[8])
    assert "above 1" in evaluate.prompt_problem([0.0, 0.0, 1.5, 0.1, 0.0])
    assert "expected 5" in evaluate.prompt_problem([0.0, 0.0, 0.1])


def test_invalid_positions_are_counted_for_every_model_and_never_scored(bad_dataset_path, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "eval", "--dataset", str(bad_dataset_path), "--model", "box,flip-tiny", "--allow-random-weights",
        "--out", str(out), "--official-csv", "--no-progress"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "5 object(s)" in result.stderr and "instance 1 (image 0): positions" in result.stderr
    records = load_records(out)
    invalid = sorted(BAD_POSITIONS)
    for model in ("box", "flip-tiny"):  # like with like: the same objects for both models
        rec = records[records.model == model].set_index("instance_index")
        assert sorted(rec.index[rec.prompt_invalid]) == invalid
        bad = rec.loc[invalid]
        assert bad.iou.isna().all() and (bad.pred_pixels == 0).all() and (bad.mask_pixels > 0).all()
        assert bad.input_tokens.isna().all() and bad.t_total.isna().all()
        good = rec.drop(index=invalid)
        assert good.iou.notna().all() and not good.prompt_invalid.any()
        if model == "flip-tiny":
            assert (good.input_tokens > 0).all()
        official = pd.read_csv(out / "official" / f"{model}.csv")
        assert len(official) == 5 and official.iou.notna().all()
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary.loc["box", "invalid_prompt"] == summary.loc["flip-tiny", "invalid_prompt"] == 5
    assert (summary["scored"] == 5).all()
    counts = load_manifest(out)["counts"]
    assert counts["invalid_prompt"] == 10 and counts["invalid_prompt_instances"] == invalid
    assert counts["per_model"]["flip-tiny"]["invalid_prompt"] == 5
    assert "invalid prompt" in (out / "summary.md").read_text()


def test_prompt_errors_name_the_image_and_instance(dataset_path, tmp_path):
    from baselines.reference import BoxPredictor

    class Picky(BoxPredictor):
        def predict(self, prompts):
            raise ValueError("this prompt is not to my taste")

    def build(spec, device="cpu", allow_random=False):
        predictor = Picky()
        predictor.name = "box"
        return predictor

    with pytest.raises(ValueError, match=r"model 'box', image 0, instance 0: this prompt"):
        run_evaluation(FlipDataset(dataset_path), dataset_path, ["box"], tmp_path / "run", EvalParams(), builder=build)


# ------------------------------------------------------------------------------------------------------------------
# item 11: damaged run files name themselves
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"format": "flipbench-run/1"}'])
def test_a_damaged_run_json_is_named(dataset_path, tmp_path, content):
    out = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--limit", "2").exit_code == 0
    (out / "run.json").write_bytes(content)
    before = _snapshot(out)
    for force_new in ([], ["--force-new"]):
        result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), *force_new)
        _one_line_error(result, str(out / "run.json"))
        assert _snapshot(out) == before
    result = _cli("report", str(out), "--out", str(tmp_path / "report"))
    _one_line_error(result, str(out / "run.json"))


def test_a_damaged_parquet_part_is_named(dataset_path, tmp_path):
    out = tmp_path / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out),
                "--chunk-images", "2").exit_code == 0
    part = sorted(out.glob("records/box/part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    result = _cli("report", str(out), "--out", str(tmp_path / "report"))
    _one_line_error(result, str(part), "not a readable Parquet file")
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out))
    _one_line_error(result, str(part), "not a readable Parquet file")


def test_damaged_generator_state_is_named(tmp_path):
    from objascale.generator import shards as sh

    (tmp_path / "generator_config.json").write_text('{"config": ')
    with pytest.raises(ValueError, match="generator_config.json is damaged"):
        sh.read_json(tmp_path / "generator_config.json")


# ------------------------------------------------------------------------------------------------------------------
# item 10 (generator part): a broken HDRI is skipped, recorded, and used again once replaced
# ------------------------------------------------------------------------------------------------------------------
def _hdri_folder(root: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    root.mkdir(parents=True)
    for name, value in (("a", 0.5), ("b", 1.0), ("c", 2.0)):
        cv2.imwrite(str(root / f"{name}.hdr"), np.full((8, 16, 3), value, np.float32))
    return root


def test_a_broken_hdri_is_skipped_recorded_and_used_again_once_replaced(tmp_path, capsys):
    from objascale.generator import generate as gen
    from objascale.generator.backgrounds import list_hdris

    folder = _hdri_folder(tmp_path / "hdris")
    good_b = (folder / "b.hdr").read_bytes()
    hdris = [h.to_dict() for h in list_hdris(str(folder))]
    out = tmp_path / "run"
    out.mkdir()
    (folder / "b.hdr").write_bytes(good_b[:40])  # truncated
    usable, problems = gen._usable_hdris(out, hdris)
    assert [h["name"] for h in usable] == ["a", "c", "c"]  # same length: every image draws the same index
    assert list(problems) == [str(folder / "b.hdr")] and "decoded" in problems[str(folder / "b.hdr")]
    assert "HDRI" in capsys.readouterr().err
    assert json.loads((out / gen.HDRI_CHECKS).read_text())[str(folder / "b.hdr")]["problem"]
    (folder / "c.hdr").unlink()  # removed: the last entry wraps around to the first usable one
    usable, problems = gen._usable_hdris(out, hdris)
    assert [h["name"] for h in usable] == ["a", "a", "a"] and "does not exist" in problems[str(folder / "c.hdr")]
    (folder / "b.hdr").write_bytes(good_b)  # replaced: used again
    usable, problems = gen._usable_hdris(out, hdris)
    assert [h["name"] for h in usable] == ["a", "b", "a"] and list(problems) == [str(folder / "c.hdr")]
    (folder / "a.hdr").write_bytes(b"#?RADIANCE\n")
    (folder / "b.hdr").write_bytes(b"")
    with pytest.raises(gen.GenerationError, match="no usable HDRI"):
        gen._usable_hdris(out, hdris)


def test_an_hdri_blender_cannot_load_is_recorded_and_skipped_on_the_next_start(tmp_path):
    from objascale.generator import generate as gen
    from objascale.generator.backgrounds import list_hdris

    folder = _hdri_folder(tmp_path / "hdris")
    hdris = [h.to_dict() for h in list_hdris(str(folder))]
    b = str(folder / "b.hdr")
    failed = {"event": "failed", "index": 3, "rejects": [{"attempt": k, "reason": "missing textures: b.hdr"}
                                                         for k in range(3)]}
    assert gen._blamed_hdri(failed, hdris) == b
    assert gen._blamed_hdri({"event": "error", "error": f"RuntimeError: cannot read {b}"}, hdris) == b
    mixed = {"event": "failed", "rejects": [{"reason": "missing textures: b.hdr"}, {"reason": "empty mask"}]}
    assert gen._blamed_hdri(mixed, hdris) is None  # not only the HDRI: the object is to blame too
    assert gen._blamed_hdri({"event": "failed", "rejects": [{"reason": "missing textures: wood.png"}]}, hdris) is None
    out = tmp_path / "run"
    out.mkdir()
    gen._record_hdri_problem(out, b, "Blender could not load it")
    usable, problems = gen._usable_hdris(out, hdris)
    assert [h["name"] for h in usable] == ["a", "c", "c"] and "Blender" in problems[b]
    os.utime(b, ns=(1, 1))  # the file changed (replaced): checked again, and it decodes
    usable, problems = gen._usable_hdris(out, hdris)
    assert [h["name"] for h in usable] == ["a", "b", "c"] and problems == {}


@pytest.mark.slow
def test_generation_with_a_broken_hdri_completes_and_resumes(tmp_path):
    """End to end with Blender: one of two HDRIs is broken; the run completes with the other, records the skip,
    and resumes (with more images) after the file was replaced."""
    pytest.importorskip("bpy")
    pytest.importorskip("OpenEXR")
    from objascale.generator import generate as gen
    from objascale.generator.backgrounds import list_hdris
    from objascale.generator.config import preset

    bundled = [Path(h.path) for h in list_hdris("bundled")][:2]
    folder = tmp_path / "hdris"
    folder.mkdir()
    shutil.copy(bundled[0], folder / "a.exr")
    (folder / "b.exr").write_bytes(bundled[1].read_bytes()[:5000])
    cfg = preset("mini").with_overrides(long_side_min=64, long_side_max=64, aspects=(4 / 3,), portrait_prob=0.0,
                                        probe_size=128, samples=4, denoise="none", min_pixels=24, shard_size=2,
                                        hdris=str(folder))
    summary = gen.generate(tmp_path / "run", 4, cfg, workers=1, progress=False)
    assert summary.rendered == 4 and list(summary.skipped_hdris) == [str(folder / "b.exr")]
    manifest = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert {m["hdri"] for m in manifest} == {"a"}
    shutil.copy(bundled[1], folder / "b.exr")
    summary = gen.generate(tmp_path / "run", 8, cfg, workers=1, progress=False)
    assert summary.skipped_hdris == {} and summary.rendered == 4
    manifest = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert [m["image_index"] for m in manifest] == list(range(8))


# ------------------------------------------------------------------------------------------------------------------
def _coco_source(root: Path, images: int, size: int = 48) -> Path:
    """A COCO-style folder (``img/`` + ``inst.json``) of ``images`` noise JPEGs with one box polygon each."""
    from PIL import Image

    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries, annotations = [], []
    for i in range(images):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "img" / f"{i}.jpg",
                                                                                     quality=95)
        entries.append({"id": i + 1, "file_name": f"{i}.jpg", "width": size, "height": size, "license": 1})
        annotations.append({"id": 100 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": 100.0,
                            "segmentation": [[5, 5, 30, 5, 30, 25, 5, 25]], "bbox": [5, 5, 25, 20]})
    (root / "inst.json").write_text(json.dumps({
        "images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}],
        "licenses": [{"id": 1, "name": "test", "url": ""}]}))
    return root


@pytest.mark.parametrize("force_new", [False, True])
def test_a_run_json_of_another_tool_is_never_followed(dataset_path, tmp_path, force_new):
    """A ``run.json`` that is not a flipbench run (another tool's, or edited) must not steer deletions."""
    out = tmp_path / "other"
    (out / "mydata").mkdir(parents=True)
    (out / "mydata" / "precious.txt").write_text("keep me")
    (out / "run.json").write_text(json.dumps({"tool": "other", "files": ["mydata"]}))
    before = _snapshot(out)
    args = ["eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out)]
    result = _cli(*args, *(["--force-new"] if force_new else []))
    _one_line_error(result, "run.json", "not a flipbench run")
    assert _snapshot(out) == before


def test_force_new_clears_a_run_of_before_the_files_list(dataset_path, tmp_path):
    out = tmp_path / "old"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out)).exit_code == 0
    manifest = load_manifest(out)
    del manifest["files"]  # as runs written before the list existed (they had no space reserve either)
    (out / "run.json").write_text(json.dumps(manifest))
    (out / store.SPARE).unlink()
    (out / "notes.txt").write_text("my notes")
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out), "--force-new")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "my notes" and (out / "run.json").is_file()


def test_a_run_that_cannot_start_leaves_no_empty_run(dataset_path, tmp_path, monkeypatch):
    """A missing checkpoint (or an unreachable cluster) fails before anything is evaluated: a new --out is left as it
    was, so the user's next command starts clean; an existing run is left as it was too."""
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "empty-home"))
    out = tmp_path / "run"
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box,sam-b", "--out", str(out))
    _one_line_error(result, "sam-b")
    assert not out.exists() or sorted(p.name for p in out.iterdir() if not p.name.startswith(".lock")) == []
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out)).exit_code == 0
    before = _snapshot(out)
    result = _cli("eval", "--dataset", str(dataset_path), "--model", "box,sam-b", "--out", str(out))
    assert result.exit_code == 1 and (out / "run.json").is_file()
    assert {k: v for k, v in _snapshot(out).items() if k != "run.json"} == {
        k: v for k, v in before.items() if k != "run.json"}


# ------------------------------------------------------------------------------------------------------------------
# issue 21 item 1: run folders with ordinary names (`seed=0`, spaces, `%`, non-ASCII)
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["seed=0", "lr=1e-4 run", "100% done", "läuft=ja/ünïcode"])
def test_eval_and_report_work_in_run_folders_named_like_hive_partitions(dataset_path, tmp_path, name):
    # pyarrow reads a Parquet path as a dataset by default: a directory named `seed=0` became a column `seed`, and
    # every later command stopped with "record columns differ from the schema: unexpected ['seed']"
    run = tmp_path / "runs" / name
    first = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(run))
    assert first.exit_code == 0, first.output
    again = _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--model", "ellipse", "--out", str(run))
    assert again.exit_code == 0, again.output
    assert "unexpected" not in again.output
    from benchmark.evaluation.accumulate import load_records

    frame = load_records(run)
    assert sorted(set(frame["model"])) == ["box", "ellipse"]
    assert "seed" not in frame.columns and "lr" not in frame.columns
    assert len(frame) == 2 * frame["instance_index"].nunique()
    report = _cli("report", str(run), "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "report.html").exists()


def test_records_of_other_objects_and_duplicates_are_dropped_and_named(tmp_path):
    """Issue 21 item 2: three records with object indices 1001+ and a copied part file are added to a run of the
    36-object COCO mini fixture. Resuming says what was dropped (naming the files) and counts 36 objects; the
    report leaves them out with a warning instead of an IndexError."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from benchmark.cli import main

    data = Path(__file__).parent / "data" / "coco_val2017_mini.hdf5"
    run = tmp_path / "run"
    args = ["eval", "--dataset", str(data), "--model", "box", "--out", str(run)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (part,) = sorted((run / "records" / "box").glob("part-*.parquet"))
    table = pq.read_table(part)
    foreign = table.slice(0, 3).set_column(
        table.schema.get_field_index("instance_index"), "instance_index", pa.array([1001, 1002, 1003], pa.int64()))
    pq.write_table(foreign, part.with_name("part-9001-9003-extra.parquet"))
    shutil.copy(part, part.with_name("part-zz-copy.parquet"))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "part-9001-9003-extra.parquet: dropped 3 record(s) whose object index lies outside the dataset's 36 " \
           "objects (e.g. 1001)" in res.output
    assert "part-zz-copy.parquet: dropped 36 duplicate record(s)" in res.output
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["counts"]["objects"] == 36 and len(manifest["record_problems"]) == 2
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "rep"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert "dropped 3 record(s)" in res.output and "Traceback" not in res.output
    table1 = (tmp_path / "rep" / "table1_iou.csv").read_text()
    assert ",36," in table1 or ",36.0," in table1


def _edit(manifest: dict, case: str):
    if case == "dataset path a number":
        manifest["dataset"]["path"] = 5
    elif case == "num_instances a string":
        manifest["dataset"]["num_instances"] = "abc"
    elif case == "num_instances negative":
        manifest["dataset"]["num_instances"] = -3
    elif case == "a model entry a string":
        manifest["models"]["box"] = "x"
    elif case == "sessions an object":
        manifest["sessions"] = {"a": 1}
    elif case == "dataset a string":
        manifest["dataset"] = "x"
    elif case == "protocol edges letters":
        manifest["protocol"]["relative_size_edges"] = "abc"
    elif case == "protocol seed a float":
        manifest["protocol"]["seed"] = 0.5
    return manifest


EDITED_MANIFESTS = {
    "dataset path a number": "'dataset.path' is an integer, not a string",
    "num_instances a string": "'dataset.num_instances' is 'abc', not a non-negative integer",
    "num_instances negative": "'dataset.num_instances' is -3, not a non-negative integer",
    "a model entry a string": "'models.box' is a string, not an object",
    "sessions an object": "'sessions' is an object, not a list",
    "dataset a string": "'dataset' is a string, not an object",
    "protocol edges letters": "protocol field 'relative_size_edges' is ('a', 'b', 'c'), not an increasing list",
    "protocol seed a float": "protocol field 'seed' is 0.5, not a non-negative integer",
    "deeply nested": "nests deeper than 32 levels",
}


@pytest.fixture(scope="module")
def finished_run(dataset_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("manifest") / "run"
    assert _cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(out)).exit_code == 0
    return out


@pytest.mark.parametrize("case", sorted(EDITED_MANIFESTS))
def test_an_edited_run_json_is_one_line_for_report_and_resume(finished_run, dataset_path, tmp_path, case):
    """Each field readers rely on is checked before use: a run.json edited into another shape (types, negative
    counts, a protocol field of the wrong type, nesting deep enough to exhaust a recursive parser) is one line
    naming the file and the field, for `report` and for resuming `eval`; nothing is written."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if case == "deeply nested":
        (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    else:
        (run / "run.json").write_text(json.dumps(_edit(json.loads((run / "run.json").read_text()), case)))
    before = _snapshot(run)
    reason = EDITED_MANIFESTS[case]
    _one_line_error(_cli("report", str(run), "--out", str(tmp_path / "report"), "--bootstrap", "10"),
                    "run.json", reason)
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())
    if not case.startswith("protocol"):  # resume compares the protocol by its hash, the edited field is not read
        _one_line_error(_cli("eval", "--dataset", str(dataset_path), "--model", "box", "--out", str(run)),
                        "run.json", reason)
    assert _snapshot(run) == before
