"""`flipbench eval --ray` on a real 2-node Ray cluster (127.0.0.1, private network namespace; see _ray_cluster).

One cluster serves the default tests: the COCO sample through the cluster with 2 workers, and a run whose worker
process is killed mid-run; a second one (slow) resumes a run with a different number of workers. Each is compared
record for record with a local run of the same seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from _ray_cluster import REPO_ROOT, require_cluster, run_in_cluster
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.evaluation.accumulate import load_records
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from objascale.hdf5_format import FlipDataset

pytestmark = pytest.mark.cluster

DATASET = REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"
MODELS = "box,ellipse,grabcut,flip-test"
#: columns that say when/where a record was made, not what it is
WHERE_AND_WHEN = ("run_id", "warmup", "device", "node")

PRELUDE = """
set -u
OUT={out}
eval_ray() {{ "$PYTHON" -m benchmark.cli eval --dataset {dataset} --no-progress --chunk-images 1 --ray "$RAY_ADDRESS" "$@"; }}
"""
DRIVER = PRELUDE + """
eval_ray --model {models} --workers 2 --out $OUT/two > $OUT/two.log 2>&1; echo "two $?"
# kill one worker while it evaluates an image (its process title is ray::_EvalActor.run then)
eval_ray --model grabcut --workers 2 --out $OUT/killed > $OUT/killed.log 2>&1 &
job=$!
for _ in $(seq 1200); do
    pid=$(pgrep -f '^ray::_EvalActor[.]run' | head -n 1)
    if [ -n "$pid" ]; then kill -9 "$pid" && echo "$pid" > $OUT/killed.pid; break; fi
    sleep 0.05
done
wait $job; echo "killed $?"
"""
RESUME_DRIVER = PRELUDE + """
eval_ray --model {models} --workers 1 --limit 15 --out $OUT/resumed > $OUT/resumed1.log 2>&1; echo "resumed1 $?"
eval_ray --model {models} --workers 2 --out $OUT/resumed > $OUT/resumed2.log 2>&1; echo "resumed2 $?"
"""


def _run_steps(out: Path, driver: str, steps: tuple[str, ...]) -> Path:
    require_cluster()
    run = run_in_cluster(driver.format(out=out, dataset=DATASET, models=MODELS), timeout=540)
    print(run.output[-3000:], file=sys.stderr)
    print(f"cluster start: {run.seconds_to_start} s", file=sys.stderr)
    assert run.returncode == 0, run.output[-3000:]
    for step in steps:
        assert f"{step} 0" in run.output, (step, run.output[-3000:],
                                           (out / f"{step}.log").read_text()[-3000:] if (out / f"{step}.log").exists()
                                           else "")
    return out


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory) -> Path:
    return _run_steps(tmp_path_factory.mktemp("cluster-eval"), DRIVER, ("two", "killed"))


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory) -> Path:
    return _run_steps(tmp_path_factory.mktemp("cluster-resume"), RESUME_DRIVER, ("resumed1", "resumed2"))


@pytest.fixture(scope="module")
def local_records(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("local-eval") / "run"
    run_evaluation(FlipDataset(DATASET), DATASET, MODELS.split(","), out, EvalParams(), progress=False,
                   chunk_images=1)
    return load_records(out)


def _what(records: pd.DataFrame) -> pd.DataFrame:
    """The records without the columns of when and where they were made (times, warm-up, device, node, run id)."""
    keep = [c for c in records.columns if not c.startswith("t_") and c not in WHERE_AND_WHEN]
    return records[keep].reset_index(drop=True)


def _raw_rows(run_dir: Path) -> pd.DataFrame:
    """Every row of every part file, before load_records deduplicates (duplicates would show here)."""
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted(run_dir.glob("records/*/part-*.parquet"))])


def _sessions(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "run.json").read_text())["sessions"]


def test_eval_on_two_nodes_gives_the_local_records(cluster_runs, local_records):
    run_dir = cluster_runs / "two"
    records = load_records(run_dir)
    pd.testing.assert_frame_equal(_what(records), _what(local_records))
    assert len(_raw_rows(run_dir)) == len(records) == 4 * 36
    # the images were shared between the two nodes, and each record names its node and device
    assert records["node"].nunique() == 2
    assert set(records["device"]) == {"cpu"}
    executor = _sessions(run_dir)[-1]["executor"]
    assert executor["kind"] == "ray" and executor["workers"] == 2
    assert executor["cluster"]["num_nodes"] == 2 and executor["cluster"]["cpus"] == 2
    assert executor["cluster"]["ray_version"] == "2.60.0"
    assert sorted(executor["worker_nodes"]) == sorted(records["node"].unique())


@pytest.mark.slow  # a second cluster
def test_resume_with_another_number_of_workers(resumed_runs, local_records):
    run_dir = resumed_runs / "resumed"
    first, second = _sessions(run_dir)
    assert first["executor"]["workers"] == 1 and second["executor"]["workers"] == 2
    assert first["objects_evaluated"] == 4 * 15 and second["objects_evaluated"] == 4 * (36 - 15)
    records = load_records(run_dir)
    assert len(_raw_rows(run_dir)) == len(records)
    pd.testing.assert_frame_equal(_what(records), _what(local_records))


def test_a_killed_worker_loses_and_duplicates_nothing(cluster_runs, local_records):
    run_dir = cluster_runs / "killed"
    assert (cluster_runs / "killed.pid").exists(), "no worker was seen evaluating an image"
    (session,) = _sessions(run_dir)
    assert session["status"] == "completed"
    executor = session["executor"]
    assert executor["restarted_workers"] + executor["resubmitted_tasks"] >= 1, executor
    records = load_records(run_dir)
    raw = _raw_rows(run_dir)
    assert len(raw) == len(records) == 36 and raw["instance_index"].is_unique
    expected = local_records[local_records["model"] == "grabcut"]
    pd.testing.assert_frame_equal(_what(records), _what(expected))


def test_unreachable_cluster_is_one_line_error(tmp_path):
    require_cluster()
    result = CliRunner().invoke(main, ["eval", "--dataset", str(DATASET), "--model", "box", "--out",
                                       str(tmp_path / "run"), "--ray", "127.0.0.1:1", "--no-progress"])
    assert result.exit_code == 1
    assert "Error: cannot reach a Ray cluster at '127.0.0.1:1'" in result.output


def test_without_ray_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = CliRunner().invoke(main, ["eval", "--dataset", str(DATASET), "--model", "box", "--out",
                                       str(tmp_path / "run"), "--ray", "auto", "--no-progress"])
    assert result.exit_code == 1
    assert 'pip install -e ".[cluster]"' in result.output
    assert "--workers and --gpus-per-worker need --ray" in CliRunner().invoke(
        main, ["eval", "--dataset", str(DATASET), "--model", "box", "--out", str(tmp_path / "r2"),
               "--workers", "2"]).output
    assert "--cpus-per-render and --gpus-per-render need --ray" in CliRunner().invoke(
        main, ["generate", "objascale", "--out", str(tmp_path / "g"), "--gpus-per-render", "1"]).output


@pytest.mark.slow  # its own cluster
def test_a_node_that_cannot_see_the_shared_path_is_named(tmp_path):
    """The second node starts with a tmpfs over ``hidden/``: it lacks the "shared filesystem" the driver has."""
    require_cluster()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / DATASET.name).write_bytes(DATASET.read_bytes())
    driver = f"""
"$PYTHON" -m benchmark.cli eval --dataset {hidden / DATASET.name} --model box --out {tmp_path / 'run'} \\
    --ray "$RAY_ADDRESS" --no-progress > {tmp_path / 'eval.log'} 2>&1; echo "eval $?"
"$PYTHON" -m benchmark.cli generate objascale --preset mini --count 1 --quiet --out {hidden / 'gen'} \\
    --ray "$RAY_ADDRESS" > {tmp_path / 'gen.log'} 2>&1; echo "gen $?"
"""
    run = run_in_cluster(driver, timeout=400, node_mounts=f"mount -t tmpfs none {hidden}")
    assert run.returncode == 0, run.output[-3000:]
    assert "eval 1" in run.output and "gen 1" in run.output, run.output[-3000:]
    eval_log, gen_log = (tmp_path / "eval.log").read_text(), (tmp_path / "gen.log").read_text()
    assert f"Error: the dataset {hidden / DATASET.name} is not usable from node 127.0.0.1/" in eval_log, eval_log
    assert "FileNotFoundError" in eval_log and "shared filesystem" in eval_log
    assert f"--out {hidden / 'gen'} is not usable from node 127.0.0.1/" in gen_log, gen_log


def test_workers_with_other_weights_or_versions_are_refused():
    """Checked on the workers' own descriptions (no cluster needed): a node with another checkpoint at the same
    path, or another flipbench, must not add its records to the run."""
    from benchmark import __version__
    from benchmark.evaluation.ray_executor import _check_same_models
    from objascale.cluster import ClusterError

    model = {"weights_kind": "pretrained", "weights_sha256": "a" * 64, "parameters": 10, "device": "cpu"}
    worker = {"node": "10.0.0.1/n1", "flipbench": __version__, "models": {"flip-tiny": model}}
    _check_same_models([worker, {**worker, "node": "10.0.0.2/n2"}])
    other = {**worker, "node": "10.0.0.2/n2", "models": {"flip-tiny": {**model, "weights_sha256": "b" * 64}}}
    with pytest.raises(ClusterError, match=r"10\.0\.0\.2/n2 has other weights for \['flip-tiny'\]"):
        _check_same_models([worker, other])
    with pytest.raises(ClusterError, match="runs flipbench 0.0.0"):
        _check_same_models([worker, {**worker, "flipbench": "0.0.0"}])
