"""``scripts/gpu-check``: on a machine without CUDA it stops cleanly with "no CUDA device"; ``--dry-run`` runs
every step on the CPU with tiny sizes and prints the table (slow: builds MobileSAM, renders two images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check"


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run scripts/gpu-check itself")
def test_without_cuda_reports_no_device_and_exits_2(tmp_path):
    res = _run("--out", str(tmp_path), timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("no CUDA device: torch.cuda.is_available() is False")
    assert "Traceback" not in res.stderr and not any(tmp_path.iterdir())  # stopped before any step


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run scripts/gpu-check itself")
def test_dry_run_exercises_every_step_on_cpu(tmp_path):
    pytest.importorskip("bpy")
    res = _run("--dry-run", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "gpu-check.json").read_text())
    assert res.returncode == 0, res.stdout + res.stderr
    steps = {r["step"] for r in rows}
    assert steps == {"environment", "cuda tests", "flip-tiny", "sam family", "cycles"}
    assert [r["item"].split()[0] for r in rows if r["step"] == "flip-tiny"] == ["window", "full", "hierarchical"]
    assert all(r["value"].endswith("ms/object") for r in rows if r["step"] in ("flip-tiny", "sam family"))
    assert sum(r["step"] == "cycles" for r in rows) == 2 and "flipbench GPU check" in res.stdout
