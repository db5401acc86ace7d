"""Loading official FLIP weights (PyTorch Lightning ``.ckpt`` of ``FlipModule``) into :class:`FlipEncoder`.

An official checkpoint is ``{"state_dict": {...}, ...}`` whose model keys start with ``net.encoder.`` and which
also holds LightningModule bookkeeping buffers (``num_updates``, ``num_iterations``, ``time_counter``,
``samples_per_group``) that inference ignores. A bare encoder state dict (keys without the prefix) loads too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from baselines.safe_load import CheckpointError, load_tensors, state_dict_mismatch, state_dict_of
from benchmark.flip.config import FlipConfig
from benchmark.flip.encoder import FlipEncoder

PREFIX = "net.encoder."
BOOKKEEPING_KEYS = frozenset({"num_updates", "num_iterations", "time_counter", "samples_per_group"})


class CheckpointMismatchError(CheckpointError):
    """The weights are not FLIP weights of the model configuration; the one-line message names the file and
    summarises the differing keys."""


def read_encoder_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Encoder parameters of the checkpoint at ``path``, keys without ``net.encoder.``, tensors on the CPU.

    The file is read without running code (:func:`baselines.safe_load.load_tensors`)."""
    path = Path(path)
    payload = load_tensors(path)
    inner = payload.get("state_dict", payload) if isinstance(payload, Mapping) else None
    try:
        state = state_dict_of(inner, path)
    except CheckpointError as err:
        raise CheckpointMismatchError(f"{err} (expected a Lightning checkpoint of FlipModule)") from None
    return strip_lightning_keys(state, source=str(path))


def strip_lightning_keys(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Drop the bookkeeping buffers and the ``net.encoder.`` prefix; other foreign keys are an error."""
    keys = [k for k in state if k not in BOOKKEEPING_KEYS]
    if not any(k.startswith(PREFIX) for k in keys):
        return {k: state[k] for k in keys}
    foreign = sorted(k for k in keys if not k.startswith(PREFIX))
    if foreign:
        shown = ", ".join(foreign[:4]) + (f", +{len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise CheckpointMismatchError(f"{source}: {len(foreign)} unexpected keys outside {PREFIX!r} ({shown})")
    return {k[len(PREFIX):]: state[k] for k in keys}


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Raise :class:`CheckpointMismatchError` (one line: counts and the first missing, unexpected and wrongly
    shaped keys) unless ``state`` fits ``model`` exactly."""
    problem = state_dict_mismatch(model, state)
    if problem:
        config = getattr(getattr(model, "config", None), "name", None) or "this FLIP config"
        raise CheckpointMismatchError(f"{source} is not a checkpoint of {config}: {problem}")


def load_state_dict_strict(model: FlipEncoder, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | os.PathLike, config: FlipConfig) -> FlipEncoder:
    """Build a :class:`FlipEncoder` for ``config`` with the weights of the Lightning checkpoint ``path``
    (CPU, eval mode)."""
    state = read_encoder_state_dict(path)  # refused before anything is built
    model = FlipEncoder(config)
    load_state_dict_strict(model, state, source=str(path))
    return model.eval()
