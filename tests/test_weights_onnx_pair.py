"""The per-size ONNX pairs (``flip-encoder-<size>.onnx`` + ``flip-predictor-<size>.onnx``) load as one FLIP model.

``tests/data/flip-{encoder,predictor}-reduced.onnx`` were made by the official ``inference/export_to_onnx.py``
(CognitiveModeling/FLIP a8dc2a5, TorchScript exporter, opset 17) from the shared fixture ``flip-reduced.ckpt``
(an official-code checkpoint of a 1-layer, 32-channel FLIP); see ``tests/data/README.md``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from _shared import FLIP_REFERENCE, require
from baselines.safe_load import CheckpointError
from benchmark.flip.config import get_config
from benchmark.flip.onnx_import import load_onnx, pair_paths

DATA = Path(__file__).parent / "data"
ENCODER, PREDICTOR = DATA / "flip-encoder-reduced.onnx", DATA / "flip-predictor-reduced.onnx"
#: the official configs/flip-reduced.json of the fixture: 1 layer, 32 channels, 256 tokens
REDUCED = dataclasses.replace(get_config("flip-tiny"), name="flip-reduced", channels=32, layers=1, avg_num_tokens=256)


def _absolute_sum(model) -> float:
    return sum(float(v.double().abs().sum()) for k, v in model.state_dict().items()
               if k != "sparsify.register_coordinates")


@pytest.mark.parametrize("given", [ENCODER, PREDICTOR])
def test_either_half_loads_the_whole_pair_strictly(given):
    model = load_onnx(given, REDUCED)  # strict: every key and shape of the config
    assert sum(p.numel() for p in model.parameters()) == 112_278
    assert _absolute_sum(model) == pytest.approx(10826.190041635538, rel=1e-12)


def test_pair_weights_equal_the_checkpoint_they_were_exported_from():
    from benchmark.flip.checkpoint import load_checkpoint

    checkpoint = require(FLIP_REFERENCE / "models" / "flip-reduced.ckpt")
    ours, reference = load_onnx(ENCODER, REDUCED).state_dict(), load_checkpoint(checkpoint, REDUCED).state_dict()
    differing = [k for k in reference if not torch.equal(ours[k], reference[k])]
    assert differing == ["sparsify.register_coordinates"]  # not in the graphs, unused by every output


def test_a_missing_half_is_a_one_line_error(tmp_path):
    lone = tmp_path / "flip-encoder-reduced.onnx"
    shutil.copy(ENCODER, lone)
    with pytest.raises(CheckpointError) as err:
        load_onnx(lone, REDUCED)
    assert "flip-predictor-reduced.onnx is missing" in str(err.value) and "\n" not in str(err.value)


def test_pairs_of_another_size_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="is not a checkpoint of flip-tiny"):
        load_onnx(PREDICTOR, get_config("flip-tiny"))


def test_pair_names():
    assert pair_paths("/x/flip-predictor-large.onnx") == (Path("/x/flip-encoder-large.onnx"),
                                                          Path("/x/flip-predictor-large.onnx"))
    assert pair_paths("/x/flip-tiny-demo.onnx") is None


def test_flip_model_finds_a_pair_in_the_weights_home(tmp_path, monkeypatch):
    from benchmark.flip.predictor import find_flip_weights

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    assert find_flip_weights("flip-small") is None
    shutil.copy(ENCODER, tmp_path / "flip-encoder-small.onnx")
    assert find_flip_weights("flip-small") is None  # half a pair is not weights
    shutil.copy(PREDICTOR, tmp_path / "flip-predictor-small.onnx")
    assert find_flip_weights("flip-small") == (tmp_path / "flip-encoder-small.onnx").resolve()


def _tampered_pair(tmp_path: Path, change) -> Path:
    """A copy of the reduced pair whose predictor graph ``change(model)`` altered (issue 21 item 4)."""
    import onnx

    shutil.copy(ENCODER, tmp_path / ENCODER.name)
    model = onnx.load(str(PREDICTOR))
    change(model)
    onnx.save(model, str(tmp_path / PREDICTOR.name))
    return tmp_path / PREDICTOR.name


def _drop_second_matmul_input(model) -> None:
    inits = {i.name for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in inits)
    del node.input[0]  # one input left: the weight


def _string_initializer(model) -> None:
    from onnx import helper, TensorProto

    init = model.graph.initializer[0]
    model.graph.initializer.remove(init)
    model.graph.initializer.append(helper.make_tensor(init.name, TensorProto.STRING, [1], [b"x"]))


@pytest.mark.parametrize("change", [_drop_second_matmul_input, _string_initializer], ids=["matmul-1-input", "string"])
def test_a_malformed_graph_is_a_one_line_error(tmp_path, change):
    # before: IndexError (a MatMul with one input) and TypeError (a string initializer) tracebacks
    path = _tampered_pair(tmp_path, change)
    with pytest.raises(CheckpointError) as err:
        load_onnx(path, REDUCED)
    message = str(err.value)
    assert "not a FLIP-Tiny demo graph" in message and str(path) in message and "\n" not in message
