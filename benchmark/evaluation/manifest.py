"""The shape of a ``run.json``, checked before any field is used (eval's resume, report, view, export).

A run manifest can be edited or damaged after the run; every reader relies on the same fields, so one function
checks them and answers in one line naming the file and the field:

* the document: a JSON object of at most :data:`MAX_MANIFEST_BYTES`, nesting at most :data:`MAX_DEPTH` deep;
* ``protocol`` (object), ``protocol_hash`` (string), ``models`` (object of objects: model name -> its
  ``describe()``), and when present ``run_id``/``format``/``created`` (strings), ``dataset`` (object: ``path`` a
  string or null, ``name``/``fingerprint`` strings, ``num_images``/``num_instances`` non-negative integers,
  ``metadata`` an object), ``sessions`` (a list of objects whose ``status`` is a string and ``environment`` an
  object), ``counts`` (object), ``files`` (list of strings).

Fields this version does not know are left alone (later versions may add some).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from objascale.json_depth import json_depth_ok

MAX_MANIFEST_BYTES = 64 << 20
MAX_DEPTH = 32


class ManifestError(ValueError):
    """A ``run.json`` that is not a run manifest of the shape readers rely on (one line, naming file and field)."""


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), f"a {type(value).__name__}")


def manifest_problem(meta: Any) -> str | None:
    """What is wrong with the parsed ``run.json`` ``meta`` (``"'dataset.num_instances' is a string, not a
    non-negative integer"``), or None when it has the shape readers rely on."""
    if not isinstance(meta, dict):
        return f"it holds {_kind(meta)}, not a run manifest (a JSON object)"
    if not json_depth_ok(meta, MAX_DEPTH):
        return f"it nests deeper than {MAX_DEPTH} levels"
    for key, kind, name in (("protocol", dict, "an object"), ("protocol_hash", str, "a string"),
                            ("models", dict, "an object")):
        if key not in meta:
            return f"key {key!r} is missing"
        if not isinstance(meta[key], kind):
            return f"{key!r} is {_kind(meta[key])}, not {name}"
    for key in ("run_id", "format", "created"):
        if key in meta and not isinstance(meta[key], str):
            return f"{key!r} is {_kind(meta[key])}, not a string"
    for name, entry in meta["models"].items():
        if not isinstance(entry, dict):
            return f"'models.{name}' is {_kind(entry)}, not an object"
    dataset = meta.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, dict):
            return f"'dataset' is {_kind(dataset)}, not an object"
        if dataset.get("path") is not None and not isinstance(dataset["path"], str):
            return f"'dataset.path' is {_kind(dataset['path'])}, not a string"
        for key in ("name", "fingerprint"):
            if key in dataset and not isinstance(dataset[key], str):
                return f"'dataset.{key}' is {_kind(dataset[key])}, not a string"
        for key in ("num_images", "num_instances"):
            if key in dataset and dataset[key] is not None and not _is_count(dataset[key]):
                return f"'dataset.{key}' is {dataset[key]!r}, not a non-negative integer"
        if "metadata" in dataset and not isinstance(dataset["metadata"], dict):
            return f"'dataset.metadata' is {_kind(dataset['metadata'])}, not an object"
    sessions = meta.get("sessions", [])
    if not isinstance(sessions, list):
        return f"'sessions' is {_kind(sessions)}, not a list"
    for k, session in enumerate(sessions):
        if not isinstance(session, dict):
            return f"'sessions[{k}]' is {_kind(session)}, not an object"
        if "status" in session and not isinstance(session["status"], str):
            return f"'sessions[{k}].status' is {_kind(session['status'])}, not a string"
        if session.get("environment") is not None and not isinstance(session["environment"], dict):
            return f"'sessions[{k}].environment' is {_kind(session['environment'])}, not an object"
    if "counts" in meta and not isinstance(meta["counts"], dict):
        return f"'counts' is {_kind(meta['counts'])}, not an object"
    files = meta.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return "'files' is not a list of strings"
    return None


def load_manifest(path: Path, check: bool = True):
    """The checked ``run.json`` at ``path``; :class:`ManifestError` naming it otherwise (``OSError`` passes).
    ``check=False``: only the bounds on size and nesting (the caller checks the shape)."""
    path = Path(path)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {path.stat().st_size} bytes, larger than any run manifest "
                            f"({MAX_MANIFEST_BYTES} bytes at most); refused")
    try:
        meta = json.loads(path.read_bytes())
    except RecursionError:
        raise ManifestError(f"{path}: it nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ManifestError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from None
    if not check:
        if not json_depth_ok(meta, MAX_DEPTH):
            raise ManifestError(f"{path}: it nests deeper than {MAX_DEPTH} levels")
        return meta
    problem = manifest_problem(meta)
    if problem:
        raise ManifestError(f"{path}: {problem}")
    return meta
