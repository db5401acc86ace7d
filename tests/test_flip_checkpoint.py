"""Official FLIP checkpoints and configs: strict key/shape check against ``models/*.state_dict.tsv`` (including
the float64 sums), bookkeeping keys ignored, clear errors for weights of another configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _shared import FLIP_REFERENCE, require
from baselines.safe_load import CheckpointError
from benchmark.flip.checkpoint import (
    BOOKKEEPING_KEYS,
    CheckpointMismatchError,
    load_checkpoint,
    load_state_dict_strict,
    read_encoder_state_dict,
    strip_lightning_keys,
)
from benchmark.flip.config import CONFIGS, config_from_dict, get_config, load_config_json
from benchmark.flip.encoder import FlipEncoder

MODELS = ["flip-reduced", "flip-tiny"]


def _tsv(name: str) -> dict[str, tuple[str, list[int], float]]:
    rows = {}
    lines = require(FLIP_REFERENCE / "models" / f"{name}.state_dict.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["key", "dtype", "shape", "sum_float64"]
    for line in lines[1:]:
        key, dtype, shape, total = line.split("\t")
        rows[key] = (dtype, json.loads(shape), float(total))
    return rows


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_loads_strictly_and_matches_tsv(name):
    table = _tsv(name)
    config = load_config_json(FLIP_REFERENCE / "models" / f"{name}.json")
    model = load_checkpoint(FLIP_REFERENCE / "models" / f"{name}.ckpt", config)
    loaded = model.state_dict()
    assert set(table) == {f"net.encoder.{k}" for k in loaded} | BOOKKEEPING_KEYS
    for key, tensor in loaded.items():
        dtype, shape, total = table[f"net.encoder.{key}"]
        assert str(tensor.dtype) == f"torch.{dtype}" and list(tensor.shape) == shape, key
        assert tensor.double().sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9), key
    assert not model.training


def test_tiny_fixture_config_equals_builtin_official_config():
    assert load_config_json(require(FLIP_REFERENCE / "models" / "flip-tiny.json")) == get_config("flip-tiny")
    reduced = load_config_json(FLIP_REFERENCE / "models" / "flip-reduced.json")
    assert (reduced.layers, reduced.channels, reduced.head_size, reduced.avg_num_tokens) == (1, 32, 16, 256)


def test_official_parameter_counts_of_builtin_configs():
    # README of the official repository: 0.51M, 2.3M, 11.5M, 96.6M parameters
    expected = {"flip-tiny": (0.51, 2), "flip-small": (2.3, 1), "flip-middle": (11.5, 1), "flip-large": (96.6, 1)}
    for name, (millions, decimals) in expected.items():
        with torch.device("meta"):  # shapes only, no memory
            params = sum(p.numel() for p in FlipEncoder(CONFIGS[name]).parameters())
        assert round(params / 1e6, decimals) == millions, name


def test_weights_of_another_config_are_rejected_with_the_differences_on_one_line():
    config = load_config_json(require(FLIP_REFERENCE / "models" / "flip-reduced.json"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(FLIP_REFERENCE / "models" / "flip-tiny.ckpt", config)
    message = str(err.value)
    assert "\n" not in message and "flip-tiny.ckpt" in message
    assert "82 unexpected (layers.1.alpha" in message
    assert "84 wrong shape" in message and "(64, 64) vs (32, 32)" in message


def test_missing_and_foreign_keys_are_reported():
    state = read_encoder_state_dict(require(FLIP_REFERENCE / "models" / "flip-reduced.ckpt"))
    config = load_config_json(FLIP_REFERENCE / "models" / "flip-reduced.json")
    model = FlipEncoder(config)
    del state["mask_extractor.to_mask.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"1 missing \(mask_extractor.to_mask.bias\)"):
        load_state_dict_strict(model, state)
    with pytest.raises(CheckpointMismatchError, match="net.other.weight"):
        strip_lightning_keys({"net.encoder.a": torch.zeros(1), "net.other.weight": torch.zeros(1)})


def test_unreadable_file_gives_clear_error(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        read_encoder_state_dict(bad)


def test_config_parser_rejects_incomplete_or_unsupported_configs():
    with pytest.raises(ValueError, match="lacks the field"):
        config_from_dict({"model": {"encoder": {"channels": 64}}})
    with pytest.raises(ValueError, match="patch sizes"):
        get_config("flip-tiny", max_patch_size=32)
    with pytest.raises(KeyError, match="known"):
        get_config("flip-huge")
    assert np.array_equal(get_config("flip-tiny").patch_sizes, (1, 2, 4, 8, 16))
