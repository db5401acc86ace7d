"""Start-up: a process that evaluates only FLIP imports none of the other models' packages (SAM family,
ultralytics, Blender's bpy, transformers, timm, torchvision) nor flipbench's wrappers of them; checked in a fresh
interpreter that runs a real ``flipbench eval`` (and ``bench flip``) and then lists its ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys

from _shared import REPO_ROOT

#: top-level packages a FLIP-only process must not import
FOREIGN = ("segment_anything", "mobile_sam", "sam2", "ultralytics", "bpy", "transformers", "timm", "torchvision",
           "open_clip", "ray", "fastapi")
#: flipbench's own modules of the other models
WRAPPERS = ("baselines.sam", "baselines.sam2", "baselines.mobilesam", "baselines.efficientsam", "baselines.fastsam",
            "baselines.eomt", "objascale.generator")

_SCRIPT = """
import json, sys
from click.testing import CliRunner
from benchmark.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"exit_code": result.exit_code, "output": result.output[-2000:],
                  "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["exit_code"] == 0, report["output"]
    return report["modules"]


def _foreign(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in FOREIGN
            or any(m == w or m.startswith(w + ".") for w in WRAPPERS)]


def test_flip_only_eval_imports_no_other_model_package(tmp_path):
    modules = _modules_after("eval", "--dataset", str(REPO_ROOT / "tests" / "data" / "coco_val2017_mini.hdf5"),
                             "--model", "flip-test", "--limit", "2", "--out", str(tmp_path / "run"),
                             "--no-progress")
    assert "benchmark.flip.predictor" in modules and "torch" in modules  # it did evaluate FLIP
    assert _foreign(modules) == []


def test_bench_flip_imports_no_other_model_package():
    modules = _modules_after("bench", "flip", "--model", "flip-test", "--no-dataset", "--sizes", "32",
                             "--objects", "1", "--modes", "window", "--no-import-time")
    assert "benchmark.flip.fast_decoder" in modules
    assert _foreign(modules) == []
