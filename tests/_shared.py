"""Locate ../shared (reference fixtures) for tests; skip with a clear reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
FLIP_REFERENCE = SHARED / "fixtures" / "flip-reference"
COCO_MINI = SHARED / "fixtures" / "coco-val2017-mini"
FLIP_TINY_ONNX = SHARED / "weights" / "flip-tiny-demo.onnx"


def require(path: Path) -> Path:
    """Return ``path`` or skip the calling test when the shared fixture is not there."""
    if not path.exists():
        pytest.skip(f"shared fixture {path} not present (needs the project's ../shared directory)")
    return path
