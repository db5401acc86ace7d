"""Import the weights of an official FLIP ONNX graph (the browser demo's ``flipencoder.onnx``, FLIP-Tiny) into a
:class:`FlipEncoder` state dict.

Most initializers carry the official parameter names. The feed-forward weights (``*.weight1`` / ``*.weight2``)
and the weight of the first ``Linear`` of the 8 and 16 px patch embeddings (applied to a 4-D tensor, hence
exported as ``MatMul`` + ``Add``) appear as anonymous
``onnx::MatMul_*`` tensors, stored transposed (``[in, out]``); each is named here by the node that consumes it:
the node's scope (e.g. ``/layers/layers.0/mlp/MatMul_1``) gives the module, and for feed-forward blocks the first
``MatMul`` is ``weight1``, ``MatMul_1`` is ``weight2``.

The per-size pairs of the README (``flip-encoder-<size>.onnx`` + ``flip-predictor-<size>.onnx``, made by the
official ``inference/export_to_onnx.py``) split the same parameters between two graphs (the encoder graph runs
``prepare_kv_cache``: patch embedding, transformer layers and the key/value side of the mask extractor; the
predictor graph runs ``forward_with_cache``: the query side). Their names carry the wrapper's ``flip_encoder.``
prefix (initializers) or ``/flip_encoder`` scope (nodes); otherwise they are named as in the demo graph, so the
union of both graphs is read the same way.

Not in the graph: the ``patch_sizes`` buffer (taken from the config) and ``sparsify.register_coordinates``, which
no output depends on (the exporter dropped them); they are set to 5.0, the mean of the official initialisation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from baselines.safe_load import CheckpointError, load_onnx_model, one_line
from benchmark.flip.checkpoint import CheckpointMismatchError, load_state_dict_strict
from benchmark.flip.config import FlipConfig, get_config
from benchmark.flip.encoder import FlipEncoder

#: value given to ``sparsify.register_coordinates`` (absent from the ONNX graph, unused by every output)
REGISTER_COORDINATE_FILL = 5.0
#: prefix of every name in the per-size pairs (``inference/export_to_onnx.py`` wraps the encoder as ``flip_encoder``)
WRAPPER_PREFIX = "flip_encoder."
#: file names of the official per-size pairs
PAIR_NAME = re.compile(r"flip-(?:encoder|predictor)-(?P<size>[a-z]+)\.onnx")


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
    """The parameter an anonymous MatMul weight is, from its node's scope. A scope may lack the outer modules
    whose *methods* (not ``forward``) the exporter traced (the pairs' ``mask_extractor.prepare_kv_cache`` gives
    ``/preprocess/MatMul``); such a scope names the parameter when exactly one expected key ends with it."""
    module = _module_path(node_name)
    slot = {"MatMul": "weight1", "MatMul_1": "weight2"}.get(op_name)
    for leaf in ("weight", slot):
        if leaf is None:
            continue
        if f"{module}.{leaf}" in expected:
            return f"{module}.{leaf}"
        within = [key for key in expected if key.endswith(f".{module}.{leaf}")]
        if len(within) == 1:
            return within[0]
    raise CheckpointMismatchError(f"cannot name the ONNX MatMul weight consumed by node {node_name!r}")


def _graph_state(path: Path, expected: set[str]) -> dict[str, torch.Tensor]:
    """Parameters held by the initializers of one ONNX graph, named as :class:`FlipEncoder` names them."""
    from onnx import numpy_helper

    try:
        graph = load_onnx_model(path).graph
    except CheckpointError as err:
        raise CheckpointMismatchError(str(err)) from None
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
        if array.dtype.kind not in "fiub":  # strings, objects: no parameter of the graph has them
            raise CheckpointMismatchError(f"{path}: not a FLIP-Tiny demo graph: initializer {init.name!r} holds "
                                          f"{array.dtype} data, not numbers")
        if not init.name.startswith("onnx::"):
            key = init.name.removeprefix(WRAPPER_PREFIX)
        else:
            nodes = [n for n in consumers.get(init.name, []) if n.op_type == "MatMul"]
            malformed = [n for n in nodes if len(n.input) != 2]
            if malformed:
                raise CheckpointMismatchError(f"{path}: not a FLIP-Tiny demo graph: MatMul node {malformed[0].name!r} "
                                              f"has {len(malformed[0].input)} inputs, not 2")
            nodes = [n for n in nodes if n.input[1] == init.name]
            if len(nodes) != 1:
                if init.name.startswith("onnx::MatMul"):
                    raise CheckpointMismatchError(f"{path}: {init.name} has {len(nodes)} MatMul consumers, need 1")
                continue  # constants folded by the exporter (shapes, scalars), not parameters
            scope = nodes[0].name.removeprefix("/" + WRAPPER_PREFIX.rstrip("."))
            key = _name_matmul_weight(scope, scope.rsplit("/", 1)[-1], expected)
            array = array.T
        if key in state:
            raise CheckpointMismatchError(f"{path}: two initializers map to {key}")
        state[key] = torch.tensor(array)
    return state


def onnx_state_dict(paths: str | os.PathLike | Sequence[str | os.PathLike],
                    config: FlipConfig) -> dict[str, torch.Tensor]:
    """The :class:`FlipEncoder` state dict for ``config`` held by one ONNX graph (the demo) or by the graphs of an
    encoder/predictor pair together (each parameter must be in exactly one of them, or equal in both)."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    expected = set(FlipEncoder(config).state_dict())
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        for key, tensor in _graph_state(path, expected).items():
            if key in state and not torch.equal(state[key], tensor):
                raise CheckpointMismatchError(f"{path}: {key} differs from the one in {paths[0]}; not one model")
            state[key] = tensor
    state.setdefault("sparsify.patch_sizes", torch.tensor(config.patch_sizes, dtype=torch.float32))
    registers = state.get("sparsify.registers")
    if registers is not None:
        state.setdefault("sparsify.register_coordinates",
                         torch.full((registers.shape[0], 2), REGISTER_COORDINATE_FILL, dtype=torch.float32))
    return state


def pair_paths(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(encoder, predictor)`` when ``path`` is one file of an official pair (``flip-encoder-<size>.onnx`` or
    ``flip-predictor-<size>.onnx``): the other is looked up next to it. ``None`` for any other name."""
    path = Path(path)
    match = PAIR_NAME.fullmatch(path.name)
    if match is None:
        return None
    size = match.group("size")
    return path.with_name(f"flip-encoder-{size}.onnx"), path.with_name(f"flip-predictor-{size}.onnx")


def load_onnx(path: str | os.PathLike, config: FlipConfig | None = None) -> FlipEncoder:
    """A :class:`FlipEncoder` (CPU, eval mode) with the weights of official FLIP ONNX graphs (default config:
    FLIP-Tiny): the demo's single graph, or, when ``path`` names one file of an encoder/predictor pair, both files
    of the pair (the other must lie next to it)."""
    config = config or get_config("flip-tiny")
    pair = pair_paths(path)
    if pair is not None:
        missing = [p for p in pair if not p.is_file()]
        if missing:
            raise CheckpointMismatchError(f"{path} is half of an ONNX pair; its other half {missing[0]} is missing "
                                          f"(`flipbench weights download {missing[0].stem}`)")
    state = onnx_state_dict(pair or path, config)
    model = FlipEncoder(config)
    load_state_dict_strict(model, state, source=" + ".join(str(p) for p in pair) if pair else str(path))
    return model.eval()
