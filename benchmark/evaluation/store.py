"""The run directory: ``run.json`` (provenance) and per-object records in atomically written Parquet parts.

Layout of ``--out DIR``::

    run.json                               protocol, dataset, models, sessions, counts (see RunStore)
    records/<model>/part-<first image>-<last image>-<token>.parquet
    summary.csv, summary.md                written by summarize after every session
    official/<model>.csv                   optional, the official evaluate_single_hdf5.py CSV columns

A part is written to a temporary name and renamed, so it is either complete or absent: an interrupted run
loses at most the images of the part being filled and resumes after the last complete part; a failed write (a full
disk) removes its temporary file. Resuming into a directory whose protocol hash, dataset fingerprint, model weights
or device differ is refused (:class:`RunMismatchError`); two processes writing one run are refused too
(:func:`run_lock`, :class:`RunLockedError`).

A run never deletes or overwrites a file it did not create: ``run.json`` lists the top-level names the run created
(``files``); ``--force-new`` deletes only those, a summary is written only under a name the run owns, and a
non-empty directory without ``run.json`` is refused (:class:`NotARunError`).

A full disk: the run keeps a few allocated bytes (:data:`SPARE`) that it frees when writing ``run.json`` fails for
lack of space, so a session stopped by a full disk is still recorded as ``interrupted`` with the error. A session
that was still marked ``running`` when its process died (killed) is marked ``interrupted`` when the run is next
opened.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.provenance import utc_now

RUN_FORMAT = "flipbench-run/1"
RUN_JSON = "run.json"
RECORDS_DIR = "records"
SUMMARY_FILES = ("summary.csv", "summary.md")
OFFICIAL_DIR = "official"
#: what a run made by a flipbench without ``files`` in ``run.json`` owns (it always wrote these names)
LEGACY_FILES = (RUN_JSON, RECORDS_DIR, *SUMMARY_FILES, OFFICIAL_DIR)
_LOCK = ".lock"
#: space kept allocated in the run directory and given up when the disk is full, so that run.json can still record
#: how the session ended (at least this many bytes, and twice run.json)
SPARE = ".space-reserve"
SPARE_BYTES = 64 << 10
_CHOOSE = "choose another (new or empty) --out"
_HINT = f"flipbench never deletes or overwrites files it did not create; {_CHOOSE}"


class RunMismatchError(RuntimeError):
    """The existing run in the output directory was made under another protocol, dataset or model weights."""


class NotARunError(RunMismatchError):
    """The output directory holds files that are not (or not all) this run's; nothing there is touched."""


class RunLockedError(RuntimeError):
    """Another live process is writing to the run directory."""


def named(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a failed ``write()``, pyarrow, h5py)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to ``.<name>.<pid>.tmp`` next to ``path``, then rename it to ``path``; the temporary is
    removed when writing fails (e.g. a full disk), and the error names it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise named(exc, tmp) from exc
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def read_run_json(path: Path) -> dict:
    """A ``run.json`` (bounded in size and nesting); one of this format has its shape checked
    (:func:`benchmark.evaluation.manifest.manifest_problem`). Raises :class:`RunMismatchError` naming the file
    (and the field) when it is not a JSON object or not of the shape readers rely on."""
    from benchmark.evaluation.manifest import ManifestError, load_manifest, manifest_problem

    edited = f"it was not written completely or was edited. Move it away or {_CHOOSE}"
    try:
        manifest = load_manifest(path, check=False)
    except ManifestError as exc:
        raise RunMismatchError(f"{exc}: {edited}") from None
    except OSError as exc:
        raise RunMismatchError(f"{path} cannot be read as a run manifest ({exc}). Move it away or {_CHOOSE}") from exc
    if not isinstance(manifest, dict):
        raise RunMismatchError(f"{path} holds a {type(manifest).__name__}, not a run manifest (a JSON object). "
                               f"Move it away or {_CHOOSE}")
    if manifest.get("format") == RUN_FORMAT and (problem := manifest_problem(manifest)):
        raise RunMismatchError(f"{path}: {problem}: {edited}")
    return manifest


def read_part(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """One records Parquet file; raises ``ValueError`` naming it when it is not a readable Parquet file.

    Read as a single file, never as a dataset: ``partitioning=None`` keeps a directory of the path named like
    ``seed=0`` (a common way to name runs) from becoming a hive-partition column."""
    try:
        return pq.read_table(path, columns=columns, partitioning=None)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # an I/O error of the file system, not of the file
        raise ValueError(f"{path} is not a readable Parquet file ({' '.join(str(exc).split())}); it is damaged or "
                         "was written incompletely. Move it away (its objects are then evaluated again)") from exc


def _foreign_entries(root: Path) -> list[str]:
    """Names in ``root`` other than the run lock (its own, or a stale one of a killed flipbench)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not (p.name == _LOCK or p.name.startswith(_LOCK + ".")))


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
        fingerprint (``force_new`` discards that run's own files first instead) or an unreadable ``run.json``, and
        :class:`NotARunError` when ``root`` is a non-empty directory without ``run.json`` (also with ``force_new``).
        """
        root = Path(root)
        manifest_path = root / RUN_JSON
        if manifest_path.exists():
            manifest = read_run_json(manifest_path)
            if not force_new:
                cls._check_compatible(root, manifest, params, dataset)
                manifest["dataset"]["path"] = dataset["path"]  # the file may have moved; the fingerprint matched
                store = cls(root, manifest)
                store._close_dead_sessions()
                store._reserve_spare()
                return store
            if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
                raise NotARunError(f"{manifest_path} is not a flipbench run (format {RUN_FORMAT!r}); nothing was "
                                   f"deleted. {_HINT}")
            cls._check_shape(root, manifest)
            cls._discard(root, manifest)  # files other than the run's stay, as they stayed beside it
        elif foreign := _foreign_entries(root):
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise NotARunError(f"{root} is not empty ({shown}) and holds no {RUN_JSON}, so it is not a flipbench run; "
                               f"{_HINT}")
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
            "files": [RUN_JSON, RECORDS_DIR],  # top-level names this run created (and may delete or overwrite)
        }
        store = cls(root, manifest)
        store.save()
        store._reserve_spare()
        return store

    def _reserve_spare(self) -> None:
        """(Re)allocate :data:`SPARE`; raises ``OSError(ENOSPC)`` naming it when the disk is already too full."""
        self.claim(SPARE)
        path = self.root / SPARE
        size = max(SPARE_BYTES, 2 * (self.root / RUN_JSON).stat().st_size)
        try:
            with open(path, "ab") as f:
                os.posix_fallocate(f.fileno(), 0, size)
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # no fallocate: no spare, as before
                return
            raise named(exc, path) from exc

    def discard(self) -> None:
        """Delete the files this run created (``run.json`` last), nothing else; the store is unusable afterwards."""
        self._discard(self.root, self.manifest)

    @staticmethod
    def _discard(root: Path, manifest: dict) -> None:
        """``--force-new``: delete the files the run created (``run.json`` last), nothing else."""
        owned = manifest.get("files", list(LEGACY_FILES))  # runs of before the list: the names they always wrote
        if not isinstance(owned, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                                  for n in owned):
            raise NotARunError(f"{root / RUN_JSON}: its 'files' entry is not a list of names in {root}; "
                               f"nothing was deleted. {_HINT}")
        for name in sorted(set(owned) - {RUN_JSON}) + [RUN_JSON]:
            target = root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def _close_dead_sessions(self) -> None:
        """Mark sessions still ``running`` as interrupted: their process is gone (the caller holds the lock)."""
        dead = [s for s in self.manifest.get("sessions", []) if isinstance(s, dict) and s.get("status") == "running"]
        for session in dead:
            session["status"] = "interrupted"
            session.setdefault("error", "the process ended without closing the session (killed, or its output "
                                        "could not be written, e.g. a full disk)")
        if dead:
            self.save()

    # -- files the run owns --------------------------------------------------------------------------------------
    def owns(self, name: str) -> bool:
        return name in self.manifest.get("files", LEGACY_FILES)

    def claim(self, *names: str) -> None:
        """Make the top-level ``names`` (e.g. ``summary.md``) outputs of this run before writing them; raises
        :class:`NotARunError` for a name that exists but was not created by the run (it is left untouched)."""
        new = [n for n in names if not self.owns(n)]
        taken = [n for n in new if (self.root / n).exists() or (self.root / n).is_symlink()]
        if taken:
            raise NotARunError(f"{', '.join(str(self.root / n) for n in taken)} already exist(s) and were not written "
                               f"by the run in {self.root}; move them away, or {_CHOOSE}")
        if new:
            self.manifest["files"] = list(self.manifest.get("files", LEGACY_FILES)) + new
            self.save()

    @staticmethod
    def _check_shape(root: Path, manifest: dict) -> None:
        """A ``run.json`` of this format must have its entries (else it was edited or damaged: never acted on)."""
        shapes = {"protocol": dict, "protocol_hash": str, "dataset": dict, "models": dict, "sessions": list,
                  "counts": dict}
        if manifest.get("format") == RUN_FORMAT and not all(isinstance(manifest.get(k), t) for k, t in shapes.items()):
            bad = sorted(k for k, t in shapes.items() if not isinstance(manifest.get(k), t))
            raise RunMismatchError(f"{root / RUN_JSON}: entries {bad} are missing or malformed; the file was edited or "
                                   f"damaged. Move it away or {_CHOOSE}")

    @staticmethod
    def _check_compatible(root: Path, manifest: dict, params: EvalParams, dataset: dict) -> None:
        hint = "Pass --force-new to discard the existing run, or choose another --out."
        RunStore._check_shape(root, manifest)
        if manifest.get("format") != RUN_FORMAT:  # not ours: --force-new would not touch it either
            raise RunMismatchError(
                f"{root / RUN_JSON} has format {manifest.get('format')!r}, expected {RUN_FORMAT!r}: it is not a "
                f"flipbench run. {_CHOOSE.capitalize()}"
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
            done.update(read_part(path, columns=["instance_index"]).column(0).to_pylist())
        return done

    def write_part(self, model: str, table: pa.Table) -> Path:
        """Write ``table`` (records of whole images of ``model``) as a new part, atomically."""
        directory = self.model_dir(model)
        directory.mkdir(parents=True, exist_ok=True)
        images = table.column("image_index").to_pylist()
        first, last = min(images), max(images)
        path = directory / f"part-{first:09d}-{last:09d}-{uuid.uuid4().hex[:8]}.parquet"
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))  # errors name the file
        return path

    def remove_stale_temporaries(self) -> None:
        """Delete part files a killed process left half-written (only call while holding the lock)."""
        records = self.root / RECORDS_DIR
        if records.exists():
            for tmp in records.glob("*/.part-*.tmp"):
                tmp.unlink(missing_ok=True)
        for name in self.manifest.get("files", LEGACY_FILES):  # run.json / summaries of a killed process
            for tmp in self.root.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- manifest --------------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write ``run.json`` (atomically); on a full disk free :data:`SPARE` once and try again."""
        try:
            write_json_atomic(self.root / RUN_JSON, self.manifest)
        except OSError as exc:
            spare = self.root / SPARE
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not spare.exists():
                raise
            spare.unlink()
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
    try:
        try:
            mine.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        except OSError as exc:
            raise named(exc, mine) from exc
        while True:
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text() or "{}")
                except (OSError, ValueError):
                    holder = None
                if not isinstance(holder, dict):
                    raise RunLockedError(f"{path} exists and is not a flipbench lock; {_HINT}") from None
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
