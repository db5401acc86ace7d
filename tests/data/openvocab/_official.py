"""What the ``make_*.py`` fixture scripts share: importing one official module without its package's ``__init__``,
the seed, and the random initialisation of the CLIP-style networks (not run by CI; see tests/data/README.md)."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch

SEED = 20261207


def load_official(package: str, folder: Path, module: str) -> types.ModuleType:
    """Import ``folder/module.py`` as ``package.module`` without running ``folder/__init__.py``."""
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]
    sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{module}")


def randomise(model: torch.nn.Module) -> None:
    """Every parameter random and O(1) (LayerNorm weights near 1), so no part of the network is close to a no-op."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "ln" in name:
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.1)
            elif p.ndim == 1:
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 1.0 / max(1, p.shape[-1]) ** 0.5)
