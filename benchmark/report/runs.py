"""Read evaluation runs written by ``flipbench eval`` and combine them into one labelled record table.

A run directory holds ``run.json`` (``protocol`` = ``EvalParams.to_dict()``, ``protocol_hash``, ``dataset``,
``models`` = name -> ``Predictor.describe()``, ``sessions`` with their ``environment``; see
``benchmark.evaluation.store``) and its per-object records (:data:`~benchmark.evaluation.schema.RECORD_COLUMNS`):
one ``records.parquet`` file or Parquet part files anywhere under ``records/`` (``records/<model>/part-*.parquet``
as ``flipbench eval`` writes them).

Rows are grouped by a display *label*: the model name, with ``" (random-init)"`` appended when the weights were
randomly initialised (their IoUs mean nothing), and ``" [protocol <hash8>]"`` appended when runs with different
protocols are shown together (only with ``allow_mixed=True``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.schema import ADDED_COLUMNS, RECORD_COLUMNS

RANDOM_INIT = "random-init"


class ReportInputError(ValueError):
    """A run directory is missing, malformed or inconsistent; the message says what to do."""


class MixedProtocolError(ReportInputError):
    """Runs with different evaluation protocols were given without ``allow_mixed``."""


@dataclass(frozen=True)
class Run:
    """One run directory: its ``run.json`` and its records (one row per evaluated object)."""

    path: Path
    meta: dict
    records: pd.DataFrame

    @property
    def protocol_hash(self) -> str:
        return str(self.meta["protocol_hash"])

    @property
    def protocol(self) -> dict:
        """``EvalParams.to_dict()`` as stored in ``run.json``."""
        return self.meta["protocol"]

    @property
    def params(self) -> EvalParams:
        try:
            return EvalParams.from_dict(self.protocol)
        except TypeError as exc:
            raise ReportInputError(
                f"{self.path}/run.json: protocol does not match this flipbench's EvalParams ({exc}); "
                "report it with the flipbench version that wrote it"
            ) from exc

    @property
    def models(self) -> dict[str, dict]:
        """Model name -> ``describe()`` entry (``parameters``, ``weights_kind``, ``device``, ...)."""
        return {str(k): v for k, v in (self.meta.get("models") or {}).items()}

    def environment(self) -> dict[str, str]:
        """Device, threads, versions and git revision of the sessions that wrote the run, each value the
        distinct session values joined by ", " ("?" when unrecorded)."""
        envs = [s.get("environment") or {} for s in self.meta.get("sessions", [])]
        fields = {"device": "device", "threads": "torch_threads", "flipbench": "flipbench_version",
                  "torch": "torch", "git": "git"}
        out = {}
        for name, key in fields.items():
            values = []
            for env in envs:
                value = "?" if env.get(key) is None else env[key]
                if isinstance(value, dict):  # git: {"commit", "dirty"}
                    value = str(value.get("commit", "?"))[:12] + ("+dirty" if value.get("dirty") else "")
                values.append(str(value))
            out[name] = ", ".join(dict.fromkeys(values)) or "?"
        return out


@dataclass
class Combined:
    """Records of several runs with display labels, plus what the report needs to know about them.

    ``records`` has every record column plus ``label`` (str), ``random_init`` (bool) and ``run_dir`` (str).
    ``models`` maps label -> {"model", "weights_kind", "parameters", "device", "protocol_hash", "runs"}.
    ``warnings`` are shown at the top of every report output.
    """

    records: pd.DataFrame
    runs: list[Run]
    params: EvalParams
    models: dict[str, dict]
    mixed_protocols: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.models)

    @cached_property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return [str(d) for d in pd.unique(self.records["dataset"])]


def read_records(run_dir: Path, model_order: list[str] | None = None) -> pd.DataFrame:
    """Read ``records.parquet`` or every Parquet part file under ``records/`` of ``run_dir`` into one DataFrame,
    checked for the record columns, then deduplicated and sorted like ``flipbench eval``'s own summaries
    (:func:`benchmark.evaluation.accumulate.records_frame`: model order of ``run.json``, then instance index)."""
    single, parts = run_dir / "records.parquet", run_dir / "records"
    if single.is_file():
        source = single
    elif parts.is_dir() and any(parts.rglob("*.parquet")):
        source = parts
    else:
        raise ReportInputError(
            f"{run_dir}: no records.parquet and no records/*.parquet; is this a `flipbench eval` output directory?"
        )
    import pyarrow.dataset as pads

    from benchmark.evaluation.accumulate import records_frame

    table = pads.dataset(str(source), format="parquet").to_table()
    missing = [c for c in RECORD_COLUMNS if c not in table.column_names and c not in ADDED_COLUMNS]
    if missing:
        raise ReportInputError(f"{run_dir}: records lack columns {missing}")
    return records_frame(table, model_order)


def load_run(run_dir: str | Path) -> Run:
    """Load and validate one run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a directory (expected a `flipbench eval` output directory)")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ReportInputError(f"{run_dir}: run.json is missing; is this a `flipbench eval` output directory?")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{meta_path}: not valid JSON ({exc})") from exc
    for key in ("protocol", "protocol_hash", "models"):
        if key not in meta:
            raise ReportInputError(f"{meta_path}: key {key!r} is missing")
    records = read_records(run_dir, list(meta["models"]))
    hashes = set(records["protocol_hash"].astype(str))
    if hashes - {str(meta["protocol_hash"])}:
        raise ReportInputError(
            f"{run_dir}: records carry protocol hashes {sorted(hashes)} but run.json says "
            f"{meta['protocol_hash']!r}; the run directory was mixed up, re-run `flipbench eval` into a fresh one"
        )
    return Run(path=run_dir, meta=meta, records=records)


def _protocol_difference(runs: list[Run]) -> str:
    """Human-readable list of the parameters that differ between the runs' protocols."""
    dicts = [r.protocol for r in runs]
    keys = sorted(set().union(*dicts))
    lines = []
    for key in keys:
        values = [json.dumps(d.get(key)) for d in dicts]
        if len(set(values)) > 1:
            lines.append(f"  {key}: " + " | ".join(values))
    return "\n".join(lines) or "  (params identical; hashes differ, e.g. a different flipbench version)"


def combine_runs(runs: list[Run], allow_mixed: bool = False) -> Combined:
    """Concatenate runs, refusing (or, with ``allow_mixed``, flagging) different protocol hashes."""
    if not runs:
        raise ReportInputError("no runs given")
    hashes = list(dict.fromkeys(r.protocol_hash for r in runs))
    mixed = len(hashes) > 1
    if mixed and not allow_mixed:
        listing = "\n".join(f"  {r.path}: {r.protocol_hash}" for r in runs)
        raise MixedProtocolError(
            "runs were evaluated with different protocols and their numbers are not comparable:\n"
            f"{listing}\nparameters that differ:\n{_protocol_difference(runs)}\n"
            "Report them separately, or pass --allow-mixed-protocols to show them side by side, flagged."
        )
    warnings: list[str] = []
    if mixed:
        warnings.append(
            "MIXED PROTOCOLS: these runs used different evaluation protocols (hashes "
            + ", ".join(hashes)
            + "); rows are suffixed with [protocol <hash>] and must not be compared as equals. Differences:\n"
            + _protocol_difference(runs)
        )
    frames, models = [], {}
    for run in runs:
        df = run.records.copy()
        info = run.models
        random_init = df["weights_kind"].astype(str) == RANDOM_INIT
        label = df["model"].astype(str).where(~random_init, df["model"].astype(str) + " (random-init)")
        if mixed:
            label = label + f" [protocol {run.protocol_hash[:8]}]"
        df["label"], df["random_init"], df["run_dir"] = label, random_init, str(run.path)
        for lab, group in df.groupby("label", sort=False):  # records come in run.json's model order
            name = str(group["model"].iloc[0])
            entry = models.setdefault(
                lab,
                {
                    "model": name,
                    "weights_kind": str(group["weights_kind"].iloc[0]),
                    "parameters": info.get(name, {}).get("parameters"),
                    "device": info.get(name, {}).get("device"),
                    "protocol_hash": run.protocol_hash,
                    "runs": [],
                },
            )
            entry["runs"].append(str(run.path))
        frames.append(df)
    records = pd.concat(frames, ignore_index=True)
    _check_duplicates(records)
    records, fp_warnings = _disambiguate_datasets(records)
    warnings += fp_warnings
    params = runs[0].params
    if mixed and any(r.params.relative_size_edges != params.relative_size_edges
                     or r.params.absolute_size_edges != params.absolute_size_edges
                     or r.params.small_object_threshold != params.small_object_threshold for r in runs):
        warnings.append(f"size bins and the small-object threshold are those of the first run ({runs[0].path})")
    random_labels = [lab for lab, m in models.items() if m["weights_kind"] == RANDOM_INIT]
    if random_labels:
        warnings.append(
            "RANDOM-INIT WEIGHTS: " + ", ".join(random_labels)
            + " ran without a checkpoint; their IoUs are meaningless (only shapes and timing are informative)."
        )
    return Combined(records=records, runs=runs, params=params, models=models, mixed_protocols=mixed,
                    warnings=warnings)


def _check_duplicates(records: pd.DataFrame) -> None:
    key = ["label", "dataset_fingerprint", "instance_index"]
    dup = records[records.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        dirs = sorted(set(dup.loc[(dup[key] == first[key]).all(axis=1), "run_dir"]))
        raise ReportInputError(
            f"object {int(first['instance_index'])} of dataset {first['dataset']!r} was evaluated more than once "
            f"for {first['label']!r} (runs: {', '.join(dirs)}); give each (model, dataset) pair once"
        )


def _disambiguate_datasets(records: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A dataset name used by files with different fingerprints gets ``" [fp <8 hex>]"`` appended."""
    warnings = []
    fps = records.groupby("dataset")["dataset_fingerprint"].unique()
    for name, values in fps.items():
        if len(values) > 1:
            mask = records["dataset"] == name
            records.loc[mask, "dataset"] = (
                records.loc[mask, "dataset"] + " [fp " + records.loc[mask, "dataset_fingerprint"].str[:8] + "]"
            )
            warnings.append(f"dataset name {name!r} refers to {len(values)} different files (fingerprints); "
                            "they are shown as separate datasets")
    return records, warnings


def expand_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Each path is a run directory (has ``run.json``) or a folder of run directories (its direct
    sub-directories with a ``run.json``, in name order). Duplicates are dropped."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "run.json").is_file() or not path.is_dir():
            found.append(path)  # load_run reports what is wrong with a non-run
            continue
        children = sorted(p for p in path.iterdir() if (p / "run.json").is_file())
        found += children or [path]
    return list(dict.fromkeys(p.resolve() for p in found))


def load_runs(paths: list[str | Path], allow_mixed: bool = False) -> Combined:
    """Load every run directory (see :func:`expand_run_dirs`) and combine them (see :func:`combine_runs`)."""
    return combine_runs([load_run(p) for p in expand_run_dirs(paths)], allow_mixed=allow_mixed)
