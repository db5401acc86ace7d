"""Hostile weights files: no checkpoint may run code, every refusal is a one-line error naming the file.

A malicious pickle here is one whose ``__reduce__`` opens (creates) a marker file when unpickled. It is offered to
every model of the registry, explicitly (``NAME:/path``) and as the cached official file in ``$FLIPBENCH_HOME``,
in the formats a checkpoint comes in (torch zip, legacy torch, bare pickle, ultralytics-shaped dict).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from baselines import weights as W
from baselines.safe_load import CheckpointError, UnsafeCheckpointError, load_inert, load_tensors, pickle_globals
from benchmark.models import MODEL_REGISTRY, build_model

DATA = Path(__file__).parent / "data"
#: registry entries that take no weights at all (a checkpoint given to them is refused unopened)
WEIGHT_FREE = {"box", "ellipse", "grabcut"}
#: the text rows read several catalogued checkpoints from $FLIPBENCH_HOME: NAME:PATH is refused unopened
COMPOSITE = {name for name, target in MODEL_REGISTRY.items() if target.startswith("baselines.openvocab")}


class Evil:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): stands for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _poisoned(kind: str, path: Path, marker: Path) -> Path:
    evil = Evil(marker)
    if kind == "zip":
        torch.save({"model": evil, "state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "legacy":
        torch.save({"model": evil}, path, _use_new_zipfile_serialization=False)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"model": evil}, protocol=2))
    elif kind == "ultralytics":  # the shape of an ultralytics checkpoint, with a poisoned "model"
        torch.save({"model": evil, "ema": None, "train_args": {"task": "segment"}}, path)
    elif kind == "nested":  # the payload hidden one level down inside a module-like record
        torch.save({"model": torch.nn.Sequential(), "ema": {"_parameters": evil}}, path)
    assert not marker.exists()
    return path


KINDS = ["zip", "legacy", "pickle", "ultralytics"]


def _model_names() -> list[str]:
    return sorted(MODEL_REGISTRY)


def _have(package: str) -> None:
    """Skip unless ``package`` is installed; found without importing it (segment_anything and friends must be
    imported after :mod:`baselines.torchvision_compat`, which the adapters do)."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"optional package {package} is not installed")


def _installed(name: str) -> bool:
    """Whether the optional package of model ``name`` is installed (without it the builder fails before reading
    anything; those models are left out, the rest are still tested)."""
    module = {"sam-": "segment_anything", "mobilesam": "mobile_sam", "fastsam": "ultralytics", "sam2": "sam2",
              "sclip": "open_clip", "proxyclip": "open_clip"}
    return all(importlib.util.find_spec(package) is not None
               for prefix, package in module.items() if name.startswith(prefix))


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_pickle_never_runs_for_any_model(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    marker = tmp_path / "PWNED"
    refused, expected = [], []
    for name in _model_names():
        if not _installed(name):
            continue
        expected += [] if name in WEIGHT_FREE else [name]
        path = _poisoned(kind, tmp_path / f"{name}-{kind}.pt", marker)
        if name in WEIGHT_FREE:
            with pytest.raises(ValueError, match="takes no checkpoint"):
                build_model(f"{name}:{path}")
        elif name in COMPOSITE:
            with pytest.raises(ValueError, match="checkpoint"):
                build_model(f"{name}:{path}")
            expected.remove(name)
        else:
            with pytest.raises(CheckpointError) as err:
                build_model(f"{name}:{path}")
            message = str(err.value)
            assert str(path) in message and "\n" not in message, (name, message)
            refused.append(name)
        assert not marker.exists(), f"{name} ran code from a {kind} checkpoint"
    assert refused == expected and len(expected) >= 5  # the FLIP models need no optional package


def test_poisoned_files_in_the_weights_home_never_run(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FLIPBENCH_HOME", str(home))
    marker = tmp_path / "PWNED"
    catalog = W.full_catalog()
    for name in _model_names():
        entry = catalog.get(name)
        if entry is None or entry.filename.endswith(".onnx") or not _installed(name):
            continue
        target = _poisoned("ultralytics" if name.startswith("fastsam") else "zip", home / entry.filename, marker)
        with pytest.raises(CheckpointError, match=str(target)):
            build_model(name)
        assert not marker.exists(), name


def test_refusal_names_the_offending_global_without_loading(tmp_path):
    marker = tmp_path / "PWNED"
    path = _poisoned("zip", tmp_path / "x.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"would call io\.open"):
        load_tensors(path)
    assert not marker.exists()


def test_inert_reader_turns_every_foreign_global_into_a_record(tmp_path):
    marker = tmp_path / "PWNED"
    payload = load_inert(_poisoned("ultralytics", tmp_path / "u.pt", marker))
    assert type(payload["model"]).qualname == "io.open" and payload["model"].args == (str(marker), "w")
    nested = load_inert(_poisoned("nested", tmp_path / "n.pt", marker))
    assert nested["ema"]["_parameters"].qualname == "io.open"
    assert not marker.exists()


def test_pickle_scan_sees_protocol_2_and_4_globals():
    assert "io.open" in pickle_globals(pickle.dumps(Evil(Path("x")), protocol=2))
    assert "io.open" in pickle_globals(pickle.dumps(Evil(Path("x")), protocol=4))
    assert "builtins.set" in pickle_globals(pickle.dumps({1}, protocol=2))  # __builtin__.set in the stream
    assert "collections.OrderedDict" in pickle_globals(pickle.dumps(__import__("collections").OrderedDict(a=1), 2))


def test_torchscript_archives_are_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        load_tensors(path)
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        load_inert(path)


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML"),
    (b"\n  <html><head><title>Nextcloud</title>", "HTML"),
    (b"PK\x03\x04truncated zip", "truncated or damaged zip"),
    (b"\x00\x01 random bytes", "not a PyTorch checkpoint"),
    (b"\x80\x02}q\x00.", "cannot read"),  # a bare pickle of an empty dict, not a torch file
])
def test_non_checkpoints_are_one_line_errors(tmp_path, content, reason):
    _have("segment_anything")
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        build_model(f"sam-b:{path}")
    assert reason in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_sam_checkpoint_given_to_flip_is_a_one_line_error(tmp_path):
    path = tmp_path / "mobile_sam.pt"
    torch.save({"image_encoder.patch_embed.weight": torch.zeros(3, 3), "mask_decoder.iou_token.weight": torch.zeros(1)},
               path)
    with pytest.raises(CheckpointError) as err:
        build_model(f"flip-tiny:{path}")
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "2 unexpected" in message
    lightning_like = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model": {"w": torch.zeros(1)}}}, lightning_like)
    with pytest.raises(CheckpointError, match="not a tensor"):
        build_model(f"flip-small:{lightning_like}")


def _onnx_with(tmp_path: Path, name: str, initializers) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=initializers)
    path = tmp_path / name
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_problems_are_one_line_errors(tmp_path):
    _have("onnx")
    from onnx import TensorProto, helper

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0f not protobuf")
    html = tmp_path / "page.onnx"
    html.write_bytes(b"<!doctype html><title>404</title>")
    empty_graph = _onnx_with(tmp_path, "empty.onnx", [])
    foreign = _onnx_with(tmp_path, "foreign.onnx", [helper.make_tensor("fc.weight", TensorProto.FLOAT, [2], [1, 2])])
    external = helper.make_tensor("sparsify.registers", TensorProto.FLOAT, [2], [0, 0])
    external.data_location = TensorProto.EXTERNAL
    entry = external.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    del external.float_data[:]
    outside = _onnx_with(tmp_path, "outside.onnx", [external])
    for path, reason in [(garbage, "not a readable ONNX"), (html, "HTML"), (empty_graph, "no weights"),
                         (foreign, "1 unexpected"), (outside, "external data")]:
        with pytest.raises(CheckpointError) as err:
            build_model(f"flip-tiny:{path}")
        message = str(err.value)
        assert reason in message and str(path) in message and "\n" not in message, message


def test_cli_prints_one_line_and_runs_nothing(tmp_path, monkeypatch):
    from benchmark.cli import main

    _have("ultralytics")
    monkeypatch.delenv("FLIPBENCH_DEBUG", raising=False)
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    marker = tmp_path / "PWNED"
    evil = _poisoned("ultralytics", tmp_path / "FastSAM-s.pt", marker)
    for spec in (f"fastsam-s:{evil}", f"flip-tiny:{evil}", f"sam-b:{evil}"):
        result = CliRunner().invoke(main, ["eval", "--dataset", str(DATA / "coco_val2017_mini.hdf5"), "--model", spec,
                                           "--out", str(tmp_path / "run")])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert str(evil) in lines[0] and "Traceback" not in result.output
    assert not marker.exists()


def test_fastsam_safe_load_builds_the_network_ultralytics_would(tmp_path):
    """On a checkpoint we wrote ourselves in ultralytics' format (so its unsafe loader may read it), the safe path
    (YAML-built network + tensors read inertly) gives the same weights, classes, stride and task."""
    import copy

    _have("ultralytics")
    from baselines.fastsam import _import_ultralytics, build_fastsam_s, build_segmentation_network

    torch.manual_seed(1)
    network = build_segmentation_network("fastsam-s")
    network.names = {0: "object"}
    path = tmp_path / "FastSAM-s.pt"
    torch.save({"date": "test", "model": copy.deepcopy(network).half(), "ema": None, "optimizer": None,
                "train_args": {"task": "segment", "imgsz": 1024}}, path)
    theirs = _import_ultralytics().FastSAM(str(path)).model
    ours = build_fastsam_s(checkpoint=str(path)).fastsam
    assert ours.task == "segment" and ours.model.names == theirs.names == {0: "object"}
    assert torch.equal(ours.model.stride, theirs.stride)
    mine, reference = ours.model.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[k], reference[k]) for k in reference)


def test_bench_flip_refuses_a_poisoned_checkpoint_in_one_line(tmp_path, monkeypatch):
    from benchmark.cli import main

    monkeypatch.delenv("FLIPBENCH_DEBUG", raising=False)
    marker = tmp_path / "PWNED"
    evil = _poisoned("zip", tmp_path / "flip-tiny.ckpt", marker)
    result = CliRunner().invoke(main, ["bench", "flip", "--model", f"flip-tiny:{evil}", "--no-dataset"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and str(evil) in lines[0]
    assert not marker.exists()


def test_self_referencing_pickles_cannot_make_loading_run_for_ever(tmp_path):
    """A container referenced twice per level, 60 levels deep, is 2**60 visits to a naive walk."""
    import time

    nested: list = []
    for _ in range(60):
        nested = [nested, nested]
    path = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(1), "bomb": nested}, path)
    start = time.monotonic()
    load_tensors(path)  # visited once per distinct container
    assert time.monotonic() - start < 10
    deep: list = []
    for _ in range(200):
        deep = [deep]
    torch.save({"deep": deep}, path)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_tensors(path)


def test_module_bomb_is_bounded(tmp_path):
    import time

    child = torch.nn.Module()
    for _ in range(40):
        parent = torch.nn.Module()
        parent.a, parent.b = child, child
        child = parent
    path = tmp_path / "modbomb.pt"
    torch.save({"model": child}, path)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="too many"):
        __import__("baselines.safe_load").safe_load.load_module_tensors(path)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("name, wrap", [
    ("mobilesam", None),  # a bare state dict, as mobile_sam.pt
    ("efficientsam-t", "model"),  # {"model": state dict}, as the EfficientSAM files
    ("sam2.1-t", "model"),  # {"model": state dict}, as the SAM 2.1 files
])
def test_official_layouts_still_load_through_the_safe_path(tmp_path, name, wrap):
    """A checkpoint in each model's official layout (written here from a random model) loads strictly, with every
    tensor equal; the safe path refuses only what is not tensors."""
    if not _installed(name):
        pytest.skip(f"{name}: optional package not installed")
    torch.manual_seed(0)
    source = build_model(name, allow_random=True).model
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / "official.pt"
    torch.save(state if wrap is None else {wrap: state}, path)
    loaded = build_model(f"{name}:{path}")
    assert loaded.weights.kind == "pretrained"
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())


def _with_data_pkl(path: Path, data_pkl: bytes) -> Path:
    """A torch zip checkpoint at ``path`` whose pickle is replaced by ``data_pkl`` (storages etc. kept)."""
    import zipfile

    torch.save({"w": torch.ones(3)}, path)
    with zipfile.ZipFile(path) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data_pkl if name.endswith("/data.pkl") else data)
    return path


def test_a_pickle_cannot_change_torch_functions_for_later_loads(tmp_path):
    """BUILD on what find_class returns is setattr: on torch's own _rebuild_tensor_v2 it would flip the sign of
    every later load in the process (here through its ``metadata`` default). The inert reader must hand out copies."""
    import struct

    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    evil = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + b"N}" + text("__defaults__") + b"}" + text("neg")
            + b"\x88s\x85s\x86b.")  # BUILD(func, (None, {"__defaults__": ({"neg": True},)}))
    original = torch._utils._rebuild_tensor_v2.__defaults__
    clean = tmp_path / "clean.pt"
    torch.save({"w": torch.ones(3)}, clean)
    try:
        load_inert(_with_data_pkl(tmp_path / "evil.pt", evil))
        assert torch._utils._rebuild_tensor_v2.__defaults__ == original
        assert torch.equal(load_tensors(clean)["w"], torch.ones(3))
    finally:
        torch._utils._rebuild_tensor_v2.__defaults__ = original


@pytest.mark.parametrize("damage, reason", [
    ("ints", "not floating-point (attn_mask_probs torch.int32 vs torch.float32"),
    ("nan", "1 holding NaN (class_predictor.weight)"),
    ("missing", "1 missing (class_predictor.weight)"),
])
def test_damaged_tensors_are_refused_before_loading(tmp_path, damage, reason):
    """Weights of the right keys and shapes but integer dtype (silently cast by load_state_dict) or NaN values (NaN
    masks) are refused in one line naming the file, like missing keys (EoMT's safetensors path; every model that
    loads through ``load_strict`` gets the same check)."""
    pytest.importorskip("transformers", reason="the eomt extra is not installed")
    from safetensors.torch import load_file, save_file

    state = load_file(str(DATA / "eomt_tiny.safetensors"))
    if damage == "ints":
        state = {k: v.to(torch.int32) for k, v in state.items()}
    elif damage == "nan":
        state["class_predictor.weight"] = torch.full_like(state["class_predictor.weight"], float("nan"))
    else:
        del state["class_predictor.weight"]
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        build_model(f"eomt-test:{path}")
    message = str(err.value)
    assert "\n" not in message and str(path) in message and reason in message
