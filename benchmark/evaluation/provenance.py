"""Provenance of an evaluation session: software versions, code revision, machine."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmark import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
#: distributions whose versions a session records (the baselines' model packages included: they define the models)
_PACKAGES = ("h5py", "opencv-python-headless", "pandas", "pyarrow", "onnxruntime", "torchvision",
             "segment-anything", "mobilesam-mirror", "timm", "sam2", "ultralytics")


def utc_now() -> str:
    """ISO 8601 UTC time stamp with seconds, e.g. ``2026-11-22T05:30:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_revision(repo: Path = REPO_ROOT) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the flipbench checkout, or None outside a git work tree."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict:
    """Versions, code revision and machine of this process; ``device`` is the device the models run on."""
    import numpy
    import torch

    env = {
        "flipbench_version": __version__,
        "git": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "packages": {p: _version(p) for p in _PACKAGES},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda"] = {"runtime": torch.version.cuda, "device_name": torch.cuda.get_device_name(device)}
    return env
