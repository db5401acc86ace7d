"""Import the weights of an official FLIP ONNX graph (the browser demo's ``flipencoder.onnx``, FLIP-Tiny) into a
:class:`FlipEncoder` state dict.

Most initializers carry the official parameter names. The feed-forward weights (``*.weight1`` / ``*.weight2``)
and the weight of the first ``Linear`` of the 8 and 16 px patch embeddings (applied to a 4-D tensor, hence
exported as ``MatMul`` + ``Add``) appear as anonymous
``onnx::MatMul_*`` tensors, stored transposed (``[in, out]``); each is named here by the node that consumes it:
the node's scope (e.g. ``/layers/layers.0/mlp/MatMul_1``) gives the module, and for feed-forward blocks the first
``MatMul`` is ``weight1``, ``MatMul_1`` is ``weight2``.

Not in the graph: the ``patch_sizes`` buffer (taken from the config) and ``sparsify.register_coordinates``, which
no output depends on (the exporter dropped them); they are set to 5.0, the mean of the official initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from baselines.safe_load import CheckpointError, load_onnx_model, one_line
from benchmark.flip.checkpoint import CheckpointMismatchError, load_state_dict_strict
from benchmark.flip.config import FlipConfig, get_config
from benchmark.flip.encoder import FlipEncoder

#: value given to ``sparsify.register_coordinates`` (absent from the ONNX graph, unused by every output)
REGISTER_COORDINATE_FILL = 5.0


def _module_path(node_name: str) -> str:
    """``/sparsify/patch_embeddings.3/layers/layers.1/MatMul`` -> ``sparsify.patch_embeddings.3.layers.1``.

    Exported scopes repeat a container's name before each child (``layers/layers.0``); the child keeps it.
    """
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def _name_matmul_weight(node_name: str, op_name: str, expected: set[str]) -> str:
    module = _module_path(node_name)
    if f"{module}.weight" in expected:
        return f"{module}.weight"
    slot = {"MatMul": "weight1", "MatMul_1": "weight2"}.get(op_name)
    if slot and f"{module}.{slot}" in expected:
        return f"{module}.{slot}"
    raise CheckpointMismatchError(f"cannot name the ONNX MatMul weight consumed by node {node_name!r}")


def onnx_state_dict(path: str | os.PathLike, config: FlipConfig) -> dict[str, torch.Tensor]:
    """The :class:`FlipEncoder` state dict for ``config`` held by the ONNX file at ``path``."""
    from onnx import numpy_helper

    path = Path(path)
    try:
        graph = load_onnx_model(path).graph
    except CheckpointError as err:
        raise CheckpointMismatchError(str(err)) from None
    expected = set(FlipEncoder(config).state_dict())
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state: dict[str, torch.Tensor] = {}
    for init in graph.initializer:
        try:
            array = numpy_helper.to_array(init)
        except Exception as err:  # noqa: BLE001 - inconsistent dims / data of a damaged file
            raise CheckpointMismatchError(f"{path}: initializer {init.name!r} is damaged: {one_line(err)}") from err
        if not init.name.startswith("onnx::"):
            key = init.name
        else:
            nodes = [n for n in consumers.get(init.name, []) if n.op_type == "MatMul" and n.input[1] == init.name]
            if len(nodes) != 1:
                if init.name.startswith("onnx::MatMul"):
                    raise CheckpointMismatchError(f"{path}: {init.name} has {len(nodes)} MatMul consumers, need 1")
                continue  # constants folded by the exporter (shapes, scalars), not parameters
            key = _name_matmul_weight(nodes[0].name, nodes[0].name.rsplit("/", 1)[-1], expected)
            array = array.T
        if key in state:
            raise CheckpointMismatchError(f"{path}: two initializers map to {key}")
        state[key] = torch.tensor(array)
    state.setdefault("sparsify.patch_sizes", torch.tensor(config.patch_sizes, dtype=torch.float32))
    registers = state.get("sparsify.registers")
    if registers is not None:
        state.setdefault("sparsify.register_coordinates",
                         torch.full((registers.shape[0], 2), REGISTER_COORDINATE_FILL, dtype=torch.float32))
    return state


def load_onnx(path: str | os.PathLike, config: FlipConfig | None = None) -> FlipEncoder:
    """A :class:`FlipEncoder` (CPU, eval mode) with the weights of an official FLIP ONNX graph (default config:
    FLIP-Tiny, the only size published as a single ONNX graph)."""
    config = config or get_config("flip-tiny")
    model = FlipEncoder(config)
    load_state_dict_strict(model, onnx_state_dict(path, config), source=str(path))
    return model.eval()
