"""The run directory: ``run.json`` (provenance) and per-object records in atomically written Parquet parts.

Layout of ``--out DIR``::

    run.json                               protocol, dataset, models, sessions, counts (see RunStore)
    records/<model>/part-<first image>-<last image>-<token>.parquet
    summary.csv, summary.md                written by summarize after every session
    official/<model>.csv                   optional, the official evaluate_single_hdf5.py CSV columns

A part is written to a temporary name and renamed, so it is either complete or absent: an interrupted run
loses at most the images of the part being filled and resumes after the last complete part. Resuming into a
directory whose protocol hash, dataset fingerprint, model weights or device differ is refused
(:class:`RunMismatchError`); two processes writing one run are refused too (:func:`run_lock`,
:class:`RunLockedError`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.provenance import utc_now

RUN_FORMAT = "flipbench-run/1"
RUN_JSON = "run.json"
RECORDS_DIR = "records"
#: files and folders of a run that ``--force-new`` discards
RUN_ARTIFACTS = (RUN_JSON, RECORDS_DIR, "summary.csv", "summary.md", "official")
_LOCK = ".lock"


class RunMismatchError(RuntimeError):
    """The existing run in the output directory was made under another protocol, dataset or model weights."""


class RunLockedError(RuntimeError):
    """Another live process is writing to the run directory."""


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def _model_identity(description: dict) -> dict:
    """The fields of ``Predictor.describe()`` that must agree for records (and timings) to be comparable."""
    identity = {k: description.get(k) for k in ("weights_kind", "weights_sha256", "parameters", "device")}
    if not description.get("weights_sha256"):
        identity["weights_source"] = description.get("weights_source")
    return identity


class RunStore:
    """One run directory. Create or reopen it with :meth:`open`."""

    def __init__(self, root: Path, manifest: dict) -> None:
        self.root = root
        self.manifest = manifest

    # -- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike, params: EvalParams, dataset: dict, force_new: bool = False) -> RunStore:
        """Create the run in ``root`` or reopen it for resuming (call while holding :func:`run_lock`).

        ``dataset``: ``{"path", "name", "fingerprint", "num_images", "num_instances", "metadata"}``.
        Raises :class:`RunMismatchError` when ``root`` holds a run with another protocol hash or dataset
        fingerprint (``force_new`` discards that run's files first instead).
        """
        root = Path(root)
        if force_new:
            for name in RUN_ARTIFACTS:
                target = root / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        manifest_path = root / RUN_JSON
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            cls._check_compatible(root, manifest, params, dataset)
            manifest["dataset"]["path"] = dataset["path"]  # the file may have moved; the fingerprint matched
            return cls(root, manifest)
        if (root / RECORDS_DIR).exists():
            raise RunMismatchError(
                f"{root} holds records but no {RUN_JSON}; it is not a run this version can resume. "
                "Pass --force-new to discard it, or choose another --out."
            )
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": RUN_FORMAT,
            "run_id": root.resolve().name,
            "created": utc_now(),
            "protocol": params.to_dict(),
            "protocol_hash": params.protocol_hash(),
            "dataset": dict(dataset),
            "models": {},
            "sessions": [],
            "counts": {},
        }
        store = cls(root, manifest)
        store.save()
        return store

    @staticmethod
    def _check_compatible(root: Path, manifest: dict, params: EvalParams, dataset: dict) -> None:
        hint = "Pass --force-new to discard the existing run, or choose another --out."
        if manifest.get("format") != RUN_FORMAT:
            raise RunMismatchError(
                f"{root / RUN_JSON} has format {manifest.get('format')!r}, expected {RUN_FORMAT!r}. {hint}"
            )
        if manifest.get("protocol_hash") != params.protocol_hash():
            old = manifest.get("protocol", {})
            new = json.loads(json.dumps(params.to_dict()))  # tuples -> lists, as stored
            diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
            raise RunMismatchError(
                f"{root} was evaluated under protocol {manifest.get('protocol_hash')}, this invocation is "
                f"{params.protocol_hash()}; differing parameters (stored, requested): {diff}. {hint}"
            )
        stored = manifest.get("dataset", {})
        if stored.get("fingerprint") != dataset["fingerprint"]:
            raise RunMismatchError(
                f"{root} was evaluated on dataset {stored.get('path')} ({stored.get('fingerprint')}); "
                f"{dataset['path']} has fingerprint {dataset['fingerprint']}. {hint}"
            )

    # -- models ----------------------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    def register_model(self, name: str, spec: str, description: dict) -> None:
        """Record a model's ``describe()``; refuse one whose weights or device differ from its earlier records'."""
        stored = self.manifest["models"].get(name)
        if stored is not None and _model_identity(stored) != _model_identity(description):
            raise RunMismatchError(
                f"model {name!r} in {self.root} was evaluated with weights/device {_model_identity(stored)}, now "
                f"{_model_identity(description)}. Pass --force-new to discard the run, or choose another --out."
            )
        self.manifest["models"][name] = {"spec": spec, **description}
        self.save()

    # -- records ---------------------------------------------------------------------------------------------------
    def model_dir(self, model: str) -> Path:
        return self.root / RECORDS_DIR / model

    def part_paths(self, model: str | None = None) -> list[Path]:
        """Complete part files, of one model or of all, in name order."""
        base = self.model_dir(model) if model is not None else self.root / RECORDS_DIR
        pattern = "part-*.parquet" if model is not None else "*/part-*.parquet"
        return sorted(base.glob(pattern)) if base.exists() else []

    def done_instances(self, model: str) -> set[int]:
        """Global instance indices that ``model`` already has records for."""
        done: set[int] = set()
        for path in self.part_paths(model):
            done.update(pq.read_table(path, columns=["instance_index"]).column(0).to_pylist())
        return done

    def write_part(self, model: str, table: pa.Table) -> Path:
        """Write ``table`` (records of whole images of ``model``) as a new part, atomically."""
        directory = self.model_dir(model)
        directory.mkdir(parents=True, exist_ok=True)
        images = table.column("image_index").to_pylist()
        first, last = min(images), max(images)
        path = directory / f"part-{first:09d}-{last:09d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = directory / f".{path.name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        return path

    def remove_stale_temporaries(self) -> None:
        """Delete part files a killed process left half-written (only call while holding the lock)."""
        records = self.root / RECORDS_DIR
        if records.exists():
            for tmp in records.glob("*/.part-*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- manifest --------------------------------------------------------------------------------------------------
    def save(self) -> None:
        write_json_atomic(self.root / RUN_JSON, self.manifest)


@contextmanager
def run_lock(root: str | os.PathLike) -> Iterator[None]:
    """Hold the lock file of run directory ``root`` (created); refuse when a live process on this host holds it.

    A lock left by a killed process (its pid is gone) is taken over.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / _LOCK
    mine = root / f".lock.{os.getpid()}.tmp"  # written first, then hard-linked: the lock never exists empty
    mine.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        while True:
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text() or "{}")
                except (OSError, json.JSONDecodeError):
                    holder = {}
                if _alive(holder):
                    raise RunLockedError(
                        f"{root} is being written by process {holder.get('pid')} on {holder.get('host')}; "
                        f"wait for it, or delete {path} if that process is gone."
                    ) from None
                path.unlink(missing_ok=True)  # stale lock of a dead process
            except OSError:  # a file system without hard links: exclusive create (briefly empty)
                with open(path, "x") as fh:
                    fh.write(mine.read_text())
                break
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(holder: dict) -> bool:
    """Whether the lock holder is a running process (a lock from another host is assumed alive)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
