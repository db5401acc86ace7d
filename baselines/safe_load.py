"""Reading checkpoints without running code from them.

A ``.pt``/``.pth``/``.ckpt`` file is a pickle, and unpickling can call any importable function. Every checkpoint
flipbench loads goes through this module, which never lets a file choose what code runs:

* :func:`load_tensors` (SAM, MobileSAM, EfficientSAM, SAM 2.1, FLIP): ``torch.load(weights_only=True)``, PyTorch's
  restricted unpickler, with the globals registered by other libraries through
  ``torch.serialization.add_safe_globals`` removed for the duration of the load, so only PyTorch's own weights-only
  set applies (tensors, storages, dtypes, ``OrderedDict``, plain containers). Before that, the pickle of a zip
  checkpoint is scanned and every global it names must be in :data:`TENSOR_GLOBALS`, the explicit list of what a
  tensor checkpoint needs; the file is refused otherwise. The loaded object must be a tree of plain containers
  and tensors (:func:`check_plain`).
* :func:`load_module_tensors` (FastSAM: ultralytics pickles the whole ``nn.Module``): the pickle is read with an
  unpickler whose ``find_class`` hands out inert placeholders (:class:`Inert`) for every global outside
  :data:`INERT_REAL_GLOBALS` (the tensor rebuild functions and containers). A placeholder records the arguments
  it is called or built with and runs nothing, so a pickled module comes back as a tree of records from which
  only the parameter and buffer tensors are taken; the caller builds its own module and loads them strictly.

Every failure is a :class:`CheckpointError` (a ``ValueError``) with a one-line message naming the file.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import pickletools
import threading
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from baselines.fetch import looks_like_html

#: globals a tensor-only checkpoint may name (``module.qualname``); storage classes match ``torch.*Storage``
TENSOR_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",  # how torch pickles a Parameter or a tensor carrying attributes
    "torch.nn.parameter.Parameter",
    "torch.Size",
    "torch.device",
    "builtins.set",
    "builtins.frozenset",
})

#: the real objects :func:`load_module_tensors` lets a pickle call; every other global becomes an :class:`Inert`
INERT_REAL_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "builtins.set",
    "builtins.frozenset",
})

#: how deep :func:`module_tensors` / :func:`check_plain` follow nesting (ultralytics nets are < 10 deep)
MAX_MODULE_DEPTH = 64
#: most containers (or modules) a checkpoint may hold; bounds the walk over a crafted, self-referencing pickle
MAX_NODES = 1_000_000
_HEAD_BYTES = 512
_LOCK = threading.Lock()


class CheckpointError(ValueError):
    """A weights file cannot be used; the message is one line and names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A weights file would need code (non-tensor globals) to load; it was not loaded."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as a single line of at most ``limit`` characters (for error messages quoting other errors)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- sniffing -------------------------------------------------------------------------------------------------
def sniff_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is certainly not a weights file (empty, an HTML/XML page, a directory...), or ``None``."""
    path = Path(path)
    if not path.is_file():
        return "is not a regular file"
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head:
        return "is empty"
    if looks_like_html(head):
        return "is an HTML/XML page (a login, error or share page saved instead of the weights)"
    return None


def _require_file(path: Path) -> None:
    problem = sniff_problem(path)
    if problem:
        raise CheckpointError(f"checkpoint {path} {problem}")


# -- pickle scanning ------------------------------------------------------------------------------------------
def pickle_globals(data: bytes) -> set[str]:
    """Every ``module.name`` the pickle ``data`` refers to (``GLOBAL``, ``INST`` and ``STACK_GLOBAL``), read with
    :mod:`pickletools` (parsing only; nothing is executed). A ``STACK_GLOBAL`` whose operands are not two literal
    strings pushed just before it is reported as ``"?.?"``, an ``EXT*`` code as ``copyreg-extension.<code>``
    (neither is ever allowlisted)."""
    found: set[str] = set()
    strings: list[str | None] = []
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.add(python3_name(module, name))
        elif op.name == "STACK_GLOBAL":
            last = strings[-2:]
            found.add(python3_name(last[0], last[1]) if len(last) == 2 and None not in last else "?.?")
        elif op.name in ("EXT1", "EXT2", "EXT4"):  # a global by copyreg extension code: never allowlisted
            found.add(f"copyreg-extension.{arg}")
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            strings.append(str(arg))
        elif op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            strings.append(None)
    return found


def python3_name(module: str, name: str) -> str:
    """``module.name`` with protocol-2 pickles' Python 2 names (``__builtin__``, ``copy_reg``) mapped as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _is_allowed_tensor_global(name: str) -> bool:
    return name in TENSOR_GLOBALS or (name.startswith("torch.") and name.endswith("Storage") and name.count(".") == 1)


def _zip_pickle(path: Path) -> tuple[str, bytes] | None:
    """``(member, bytes)`` of the ``data.pkl`` of a torch zip checkpoint, or ``None`` for a non-zip file."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
                raise UnsafeCheckpointError(f"checkpoint {path} is a TorchScript archive (it holds code); refused")
            pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(f"checkpoint {path} is a zip file but not a PyTorch checkpoint (no single data.pkl)")
            info = zf.getinfo(pickles[0])
            if info.file_size > 256 << 20:
                raise CheckpointError(f"checkpoint {path}: its pickle is {info.file_size} bytes, far beyond a checkpoint's")
            return pickles[0], zf.read(pickles[0])
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
        raise CheckpointError(f"checkpoint {path} is a damaged zip archive: {one_line(err)}") from err


def _scan(path: Path, data: bytes, allowed) -> None:
    try:
        names = pickle_globals(data)
    except Exception as err:  # noqa: BLE001 - any parse error of an untrusted pickle
        raise CheckpointError(f"checkpoint {path} holds a malformed pickle: {one_line(err)}") from err
    refused = sorted(n for n in names if not allowed(n))
    if refused:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise UnsafeCheckpointError(
            f"checkpoint {path} refused: loading it would call {shown} (code, not tensors); flipbench loads only "
            "plain tensor checkpoints (re-download the official file with `flipbench weights download`)"
        )


# -- weights-only loading -------------------------------------------------------------------------------------
@contextmanager
def _torch_default_globals_only() -> Iterator[None]:
    """Remove the safe globals other libraries registered with torch for the duration (restored afterwards)."""
    import torch.serialization as ts

    with _LOCK:
        saved = ts.get_safe_globals()
        ts.clear_safe_globals()
        try:
            yield
        finally:
            ts.clear_safe_globals()
            if saved:
                ts.add_safe_globals(saved)


def _starts_like_a_pickle(path: Path) -> bool:
    """Whether the file starts with a pickle protocol marker (legacy ``torch.save`` files do)."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def _weights_only_reason(err: BaseException) -> str:
    """The informative line of torch's long weights-only error (the ``WeightsUnpickler error: ...`` line)."""
    for line in str(err).splitlines():
        if "WeightsUnpickler error" in line:
            return one_line(line.split("WeightsUnpickler error:", 1)[-1])
    return one_line(str(err).splitlines()[0] if str(err) else type(err).__name__)


def check_plain(obj: Any, path: Path) -> None:
    """Raise :class:`UnsafeCheckpointError` unless ``obj`` is built only of dicts, lists, tuples, sets, strings,
    numbers, booleans, ``None``, ``torch.Size``/``torch.device``/``torch.dtype`` and tensors. Shared references
    are visited once and the walk is bounded (:data:`MAX_MODULE_DEPTH` levels, :data:`MAX_NODES` containers), so
    a pickle that references one container many times cannot make it run for ever."""
    import torch

    seen: set[int] = set()
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, (str, bytes, int, float, complex, torch.Tensor, torch.device,
                                             torch.dtype)):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if depth > MAX_MODULE_DEPTH or len(seen) > MAX_NODES:
            raise CheckpointError(f"checkpoint {path} is nested too deeply or holds too many containers")
        if isinstance(item, Mapping):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((part, depth + 1) for part in item)
        else:
            raise UnsafeCheckpointError(f"checkpoint {path} holds a {type(item).__name__} object, not only tensors; "
                                        "refused")


def load_tensors(path: str | os.PathLike) -> Any:
    """The content of a tensor checkpoint at ``path`` (CPU tensors in plain containers), loaded without running
    code from the file; :class:`CheckpointError` otherwise (see the module docstring)."""
    import torch

    path = Path(path)
    _require_file(path)
    found = _zip_pickle(path)
    if found is not None:
        _scan(path, found[1], _is_allowed_tensor_global)
    elif not _starts_like_a_pickle(path):
        with open(path, "rb") as fh:
            damaged_zip = fh.read(2) == b"PK"
        raise CheckpointError(f"checkpoint {path} is a truncated or damaged zip archive" if damaged_zip else
                              f"checkpoint {path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with _torch_default_globals_only():
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(f"checkpoint {path} refused by PyTorch's weights-only loader: "
                                    f"{_weights_only_reason(err)}") from err
    except Exception as err:  # noqa: BLE001 - truncated zip, not a pickle, wrong magic number...
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {one_line(err)}") from err
    check_plain(payload, path)
    return payload


def state_dict_of(payload: Any, path: str | os.PathLike, key: str | None = None) -> dict:
    """``payload[key]`` (or ``payload`` when ``key`` is None) checked to be a ``{str: Tensor}`` mapping."""
    import torch

    state = payload.get(key) if key is not None and isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not state:
        where = f"a {key!r} entry holding " if key else ""
        raise CheckpointError(f"checkpoint {path} is not the expected file: expected {where}a state dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: entry {bad[0]!r} of the state dict is not a tensor")
    return dict(state)


# -- pickled modules (ultralytics) ----------------------------------------------------------------------------
class Inert:
    """Placeholder for a global a pickle names but may not use: constructing, calling or ``BUILD``-ing it only
    records ``args`` / ``state`` / appended ``items``. ``qualname`` is the name the pickle asked for."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Inert":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # state is recorded by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))


def _real_global(qualified: str):
    """The real object behind an allowed global. The torch helpers come as a fresh wrapper on every lookup: a pickle
    can BUILD (setattr) on what ``find_class`` returns, and on torch's own function that would change it for the
    rest of the process (e.g. its ``__defaults__``); the wrappers also drop hooks and metadata from the file."""
    import torch

    if qualified not in INERT_REAL_GLOBALS:
        return None
    if qualified == "torch._utils._rebuild_tensor_v2":
        def rebuild_tensor(storage, offset, size, stride, requires_grad=False, *_hooks_and_metadata):
            return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, bool(requires_grad), OrderedDict())

        return rebuild_tensor
    if qualified == "torch._utils._rebuild_parameter":
        def rebuild_parameter(data, requires_grad=True, *_hooks):
            return torch._utils._rebuild_parameter(data, bool(requires_grad), OrderedDict())

        return rebuild_parameter
    # classes of the standard library: a BUILD on them fails (built-in types take no attributes)
    return {"collections.OrderedDict": OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset}[qualified]


class _InertUnpickler(pickle.Unpickler):
    """``find_class`` returns the few real tensor helpers, an :class:`Inert` subclass for anything else."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        qualified = python3_name(str(module), str(name))
        real = _real_global(qualified)
        if real is not None:
            return real
        return type("Inert", (Inert,), {"qualname": qualified})


def _inert_load(*_args, **_kwargs):
    raise pickle.UnpicklingError("legacy (non-zip) checkpoints are not read by the inert unpickler")


#: passed to ``torch.load(pickle_module=...)``: torch adds tensor storage loading, we decide what globals mean
_INERT_PICKLE = types.ModuleType("flipbench_inert_pickle")
_INERT_PICKLE.Unpickler = _InertUnpickler
_INERT_PICKLE.load = _inert_load
_INERT_PICKLE.UnpicklingError = pickle.UnpicklingError


def load_inert(path: str | os.PathLike) -> Any:
    """The pickle of a torch zip checkpoint at ``path`` with every non-tensor global replaced by an :class:`Inert`
    record (see the module docstring); TorchScript archives and legacy (non-zip) files are refused."""
    import torch

    path = Path(path)
    _require_file(path)
    if _zip_pickle(path) is None:
        raise CheckpointError(f"checkpoint {path} is not a PyTorch zip checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_INERT_PICKLE, mmap=False)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure while reading an untrusted file
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {one_line(err)}") from err


def module_tensors(record: Any, path: Path) -> dict:
    """State dict (``{dotted name: tensor}``, persistent buffers included) of a pickled ``nn.Module`` read by
    :func:`load_inert`: walks ``_parameters``, ``_buffers`` and ``_modules`` of the recorded ``__dict__``s (at most
    :data:`MAX_MODULE_DEPTH` levels and :data:`MAX_NODES` module visits)."""
    import torch

    out: dict = {}
    stack = [(record, "", 0)]
    visits = 0
    while stack:
        item, prefix, depth = stack.pop()
        visits += 1
        if depth > MAX_MODULE_DEPTH or visits > MAX_NODES:
            raise CheckpointError(f"checkpoint {path}: modules nested deeper than {MAX_MODULE_DEPTH} levels or too many")
        state = item.state if isinstance(item, Inert) else None
        if not isinstance(state, dict) or not all(isinstance(state.get(k), Mapping)
                                                  for k in ("_parameters", "_buffers", "_modules")):
            what = f"a call of {item.qualname} (not run)" if isinstance(item, Inert) else f"a {type(item).__name__}"
            raise CheckpointError(f"checkpoint {path}: {prefix.rstrip('.') or 'the model'} is not a pickled torch "
                                  f"module but {what}; refused")
        skip = state.get("_non_persistent_buffers_set") or set()
        if not isinstance(skip, (set, frozenset)):
            raise CheckpointError(f"checkpoint {path}: malformed module {prefix.rstrip('.')!r}")
        for group in ("_parameters", "_buffers"):
            for name, tensor in state[group].items():
                if not isinstance(name, str) or (tensor is not None and not isinstance(tensor, torch.Tensor)):
                    raise CheckpointError(f"checkpoint {path}: {prefix}{name} is not a tensor")
                if tensor is not None and not (group == "_buffers" and name in skip):
                    out[prefix + name] = tensor.detach()
        stack.extend((child, f"{prefix}{name}.", depth + 1)
                     for name, child in reversed(list(state["_modules"].items())) if child is not None)
    return out


def load_module_tensors(path: str | os.PathLike, key: str = "model", fallback_key: str | None = None) -> dict:
    """State dict of the ``nn.Module`` pickled under ``payload[fallback_key] or payload[key]`` of the checkpoint at
    ``path`` (ultralytics: ``ema`` if present, else ``model``), without instantiating any class from the file."""
    path = Path(path)
    payload = load_inert(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} is not a dict of entries (expected an ultralytics checkpoint)")
    record = (payload.get(fallback_key) if fallback_key else None) or payload.get(key)
    if record is None:
        raise CheckpointError(f"checkpoint {path} has no {key!r} entry (expected an ultralytics checkpoint)")
    return module_tensors(record, path)


# -- ONNX --------------------------------------------------------------------------------------------------------
def load_onnx_model(path: str | os.PathLike):
    """The ``onnx.ModelProto`` at ``path``, parsed without following external-data references (every weight must be
    inside the file, so nothing outside it is read); :class:`CheckpointError` for anything unreadable or without
    weights. (An ONNX file holds no code; it is only data to flipbench, which never runs the graph.)"""
    import onnx
    from onnx import TensorProto

    path = Path(path)
    problem = sniff_problem(path)
    if problem:
        raise CheckpointError(f"ONNX file {path} {problem}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError and friends on a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable ONNX model: {one_line(err)}") from err
    if not model.graph.initializer:
        raise CheckpointError(f"{path} is not a weights file: its ONNX graph holds no weights (initializers)")
    external = [t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise CheckpointError(f"{path}: weight {external[0]!r} refers to an external data file; only "
                              "self-contained ONNX graphs are read")
    return model


# -- fitting a state dict ------------------------------------------------------------------------------------
def state_dict_mismatch(module, state: Mapping[str, Any], shown: int = 4) -> str | None:
    """One-line summary of how ``state`` differs from ``module.state_dict()`` (missing, unexpected and wrongly
    shaped keys, integer or boolean tensors for floating-point ones, tensors holding NaN; the first ``shown`` of
    each), or ``None`` when every key, shape and dtype kind matches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shared = sorted(set(state) & set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in shared if tuple(state[k].shape) != tuple(expected[k].shape)]
    # a float parameter given integers or booleans would be cast silently; NaN weights give NaN masks
    dtypes = [f"{k} {state[k].dtype} vs {expected[k].dtype}" for k in shared
              if expected[k].is_floating_point() and not state[k].is_floating_point()]
    nans = [k for k in shared if state[k].is_floating_point() and bool(state[k].isnan().any())]
    parts = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                         ("not floating-point", dtypes), ("holding NaN", nans)):
        if items:
            more = f", +{len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {title} ({', '.join(items[:shown])}{more})")
    return "; ".join(parts) or None


def load_strict(module, state: Mapping[str, Any], path: str | os.PathLike, what: str = "") -> None:
    """Load ``state`` into ``module`` with every key and shape matching, else :class:`CheckpointError` naming
    ``path`` (``what``: the expected kind of checkpoint, for the message)."""
    problem = state_dict_mismatch(module, state)
    if problem:
        kind = what or type(module).__name__
        raise CheckpointError(f"checkpoint {path} does not fit {kind}: {problem}")
    module.load_state_dict(state, strict=True)
