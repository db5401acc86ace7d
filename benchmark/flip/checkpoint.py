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

from benchmark.flip.config import FlipConfig
from benchmark.flip.encoder import FlipEncoder

PREFIX = "net.encoder."
BOOKKEEPING_KEYS = frozenset({"num_updates", "num_iterations", "time_counter", "samples_per_group"})


class CheckpointMismatchError(ValueError):
    """The weights do not fit the model configuration; the message lists every differing key."""


def read_encoder_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Encoder parameters of the checkpoint at ``path``, keys without ``net.encoder.``, tensors on the CPU."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unpickling / zip error with the file name
        raise CheckpointMismatchError(f"cannot read {path} as a PyTorch checkpoint: {err}") from err
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{path} holds no state dict (expected a Lightning checkpoint of FlipModule)")
    return strip_lightning_keys(state, source=str(path))


def strip_lightning_keys(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Drop the bookkeeping buffers and the ``net.encoder.`` prefix; other foreign keys are an error."""
    keys = [k for k in state if k not in BOOKKEEPING_KEYS]
    if not any(k.startswith(PREFIX) for k in keys):
        return {k: state[k] for k in keys}
    foreign = sorted(k for k in keys if not k.startswith(PREFIX))
    if foreign:
        raise CheckpointMismatchError(f"{source}: unexpected keys outside {PREFIX!r}: {', '.join(foreign)}")
    return {k[len(PREFIX):]: state[k] for k in keys}


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Raise :class:`CheckpointMismatchError` listing missing, unexpected and wrongly shaped keys (if any)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} in {source}, {tuple(expected[k].shape)} in the model"
        for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        lines = [f"{source} does not match the FLIP config {getattr(model, 'config', None)}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatchError("\n".join(lines))


def load_state_dict_strict(model: FlipEncoder, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | os.PathLike, config: FlipConfig) -> FlipEncoder:
    """Build a :class:`FlipEncoder` for ``config`` with the weights of the Lightning checkpoint ``path``
    (CPU, eval mode)."""
    model = FlipEncoder(config)
    load_state_dict_strict(model, read_encoder_state_dict(path), source=str(path))
    return model.eval()
