"""Read evaluation runs written by ``flipbench eval`` and combine them into one labelled record table.

A run directory holds ``run.json`` (``protocol`` = ``EvalParams.to_dict()``, ``protocol_hash``, ``dataset``,
``models`` = name -> ``Predictor.describe()``, ``sessions`` with their ``environment``; see
``benchmark.evaluation.store``) and its per-object records (:data:`~benchmark.evaluation.schema.RECORD_COLUMNS`):
one ``records.parquet`` file or Parquet part files anywhere under ``records/`` (``records/<model>/part-*.parquet``
as ``flipbench eval`` writes them). Records of versions without the ``prompt_invalid`` column read as ``False``.
A damaged ``run.json`` or Parquet file is a :class:`ReportInputError` naming the file.

Rows are grouped by a display *label*: the model name, with the FLIP inference mode for FLIP models
(``flip-tiny (window)``, ``flip-tiny (hierarchical)``), the upsampler for the SCLIP text rows
(``sclip-sam2.1 (text, box-selected, loftup)``) and ``random-init`` when the weights were randomly
initialised (their IoUs mean nothing), e.g. ``flip-tiny (window, random-init)``, and ``" [protocol <hash8>]"``
appended when runs with different protocols are shown together (only with ``allow_mixed=True``). Runs are compared by
:meth:`EvalParams.comparison_hash <benchmark.evaluation.params.EvalParams.comparison_hash>`: the FLIP mode alone
does not make protocols differ, it names the rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from benchmark.evaluation.params import MODE_FIELDS, EvalParams, protocol_digest

RANDOM_INIT = "random-init"
WEIGHT_FREE = "none"  #: weights_kind of the references that have no weights (box, ellipse, GrabCut)


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
    problems: tuple[str, ...] = ()  # records dropped on reading (foreign object indices, duplicates), one line each

    @property
    def protocol_hash(self) -> str:
        return str(self.meta["protocol_hash"])

    @property
    def comparison_hash(self) -> str:
        """Hash of the protocol without the FLIP mode: runs with equal values are reported together."""
        return protocol_digest(self.protocol, MODE_FIELDS)

    @property
    def flip_mode(self) -> str | None:
        return self.protocol.get("flip_mode")

    @property
    def protocol(self) -> dict:
        """``EvalParams.to_dict()`` as stored in ``run.json``."""
        return self.meta["protocol"]

    @property
    def params(self) -> EvalParams:
        try:
            return EvalParams.from_dict(self.protocol)
        except (TypeError, ValueError) as exc:
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
                  "torch": "torch", "git": "git", "gpu": "cuda"}
        out = {}
        for name, key in fields.items():
            values = []
            for env in envs:
                value = "?" if env.get(key) is None else env[key]
                if isinstance(value, dict) and key == "git":  # {"commit", "dirty"}
                    value = str(value.get("commit", "?"))[:12] + ("+dirty" if value.get("dirty") else "")
                elif isinstance(value, dict):  # cuda: {"runtime", "device_name"}
                    value = str(value.get("device_name", "?"))
                values.append(str(value))
            out[name] = ", ".join(dict.fromkeys(values)) or "?"
        return out

    @property
    def status(self) -> str:
        """State of the run's last session: "completed", "interrupted", "failed", "running" (its process holds
        the run's lock) or "interrupted (process gone)" for a session left "running" by a process that ended
        without closing it (no live lock)."""
        sessions = [s for s in self.meta.get("sessions", []) if isinstance(s, dict)]
        status = str(sessions[-1].get("status", "?")) if sessions else "?"
        if status == "running":
            from benchmark.evaluation.store import _alive  # noqa: PLC0415

            try:
                holder = json.loads((self.path / ".lock").read_text())
            except (OSError, ValueError):
                holder = None
            if not (isinstance(holder, dict) and _alive(holder)):
                return "interrupted (process gone)"
        return status

    @property
    def dataset_objects(self) -> int | None:
        """Objects of the evaluated dataset (``run.json`` dataset.num_instances), None when unrecorded."""
        n = (self.meta.get("dataset") or {}).get("num_instances")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) else None

    def device_text(self) -> str:
        """Where the run's times were measured, for time columns: ``"CPU, 2 threads"``, ``"GPU NVIDIA H200"``."""
        env = self.environment()
        if env["device"].startswith("cuda"):
            return "GPU" + ("" if env["gpu"] == "?" else f" {env['gpu']}")
        return f"{env['device'].upper()}, {env['threads']} threads"


@dataclass
class Combined:
    """Records of several runs with display labels, plus what the report needs to know about them.

    ``records`` has every record column plus ``label`` (str), ``random_init`` (bool) and ``run_dir`` (str).
    ``models`` maps label -> {"model", "mode" (FLIP inference mode or None), "weights_kind", "parameters",
    "device", "protocol_hash", "runs"}.
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

    def learned_labels(self, labels: list[str] | None = None) -> list[str]:
        """Rows of ``labels`` (default all) with trained weights: neither weight-free nor random-init, nor an oracle
        selection (an upper bound, never ranked with prompted rows)."""
        return [lab for lab in (self.labels if labels is None else labels)
                if self.models[lab]["weights_kind"] not in (WEIGHT_FREE, RANDOM_INIT) and not self.is_oracle(lab)]

    def is_oracle(self, label: str) -> bool:
        """Whether ``label``'s masks were picked by the oracle rule (an upper bound, see :mod:`baselines.candidates`)."""
        return self.models[label].get("selection") == ORACLE

    def oracle_labels(self, labels: list[str] | None = None) -> list[str]:
        """Rows of ``labels`` (default all) whose masks an oracle selected: upper bounds."""
        return [lab for lab in (self.labels if labels is None else labels) if self.is_oracle(lab)]

    def prompted_labels(self, kind: str, labels: list[str] | None = None) -> list[str]:
        """Rows of ``labels`` (default all) evaluated with prompt ``kind`` (e.g. ``"clicks"``)."""
        return [lab for lab in (self.labels if labels is None else labels) if self.models[lab].get("prompt") == kind]

    def weight_free_labels(self, labels: list[str] | None = None) -> list[str]:
        """Rows of ``labels`` (default all) that are weight-free references."""
        return [lab for lab in (self.labels if labels is None else labels)
                if self.models[lab]["weights_kind"] == WEIGHT_FREE]

    def device_text(self, label: str) -> str:
        """Where ``label``'s times were measured (:meth:`Run.device_text` of its runs, distinct values joined)."""
        runs = {str(r.path): r for r in self.runs}
        return " | ".join(dict.fromkeys(runs[p].device_text() for p in self.models[label]["runs"]))

    @cached_property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return [str(d) for d in pd.unique(self.records["dataset"])]


def record_files(run_dir: Path) -> list[Path]:
    """The run's record files: ``records.parquet`` alone when present, else every Parquet part under
    ``records/`` (sorted); empty when it has none."""
    single = run_dir / "records.parquet"
    if single.is_file():
        return [single]
    return sorted((run_dir / "records").rglob("*.parquet"))


def read_records(run_dir: Path, model_order: list[str] | None = None, num_instances: int | None = None,
                 problems: list[str] | None = None) -> pd.DataFrame:
    """Read ``records.parquet`` or every Parquet part file under ``records/`` of ``run_dir`` into one DataFrame,
    checked for the record columns (records of older runs lack ``pred_rle``: no masks), then deduplicated and
    sorted like ``flipbench eval``'s own summaries (:func:`benchmark.evaluation.accumulate.records_frame`: model
    order of ``run.json``, then instance index)."""
    from benchmark.evaluation.accumulate import read_parts, records_frame

    paths = record_files(run_dir)  # not empty: load_run refuses a run without records first
    try:
        table = read_parts(paths, num_instances, problems)
    except ValueError as exc:
        raise ReportInputError(str(exc)) from exc
    return records_frame(table, model_order)


def load_run(run_dir: str | Path) -> Run:
    """Load and validate one run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a directory (expected a `flipbench eval` output directory)")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ReportInputError(f"{run_dir}: run.json is missing; is this a `flipbench eval` output directory?")
    from benchmark.evaluation.manifest import ManifestError, load_manifest

    try:
        meta = load_manifest(meta_path)
    except (ManifestError, OSError) as exc:
        raise ReportInputError(str(exc)) from None
    problems: list[str] = []
    if not record_files(run_dir):
        status = Run(path=run_dir, meta=meta, records=pd.DataFrame()).status
        raise ReportInputError(
            f"{run_dir}: holds no records yet (its last session is {status!r}); resume it with the same "
            f"`flipbench eval ... --out {run_dir}` command, or leave it out of the report")
    n = (meta.get("dataset") or {}).get("num_instances") if isinstance(meta.get("dataset"), dict) else None
    records = read_records(run_dir, list(meta["models"]), n if isinstance(n, int) and not isinstance(n, bool)
                           else None, problems)
    hashes = set(records["protocol_hash"].astype(str))
    if hashes - {str(meta["protocol_hash"])}:
        raise ReportInputError(
            f"{run_dir}: records carry protocol hashes {sorted(hashes)} but run.json says "
            f"{meta['protocol_hash']!r}; the run directory was mixed up, re-run `flipbench eval` into a fresh one"
        )
    return Run(path=run_dir, meta=meta, records=records, problems=tuple(problems))


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


#: row-name note of a prompt kind (prompted models) and of a selection rule (candidate-mask models)
PROMPT_NOTES = {"box": "box", "gaussian": "gaussian", "point": "1 point", "clicks": "clicks", "text": "text"}
SELECTION_NOTES = {"box": "box-selected", "point": "point-selected", "oracle": "oracle: upper bound"}
ORACLE = "oracle"


def prompt_note(prompt: str | None, selection: str | None, max_clicks: int = 20) -> str | None:
    """``"1 point"``, ``"clicks"`` (``"clicks, max 5"`` for another ``max_clicks`` than 20), ``"box-selected"``,
    ``"oracle: upper bound"``, ``"text, box-selected"``, ... (None for an unknown prompt)."""
    if selection:
        note = SELECTION_NOTES.get(selection, f"{selection}-selected")
        return f"text, {note}" if prompt == "text" else note
    if prompt == "clicks" and max_clicks != 20:
        return f"clicks, max {max_clicks}"
    return PROMPT_NOTES.get(prompt, prompt) if prompt else None


def model_label(name: str, mode: str | None, random_init: bool, prompt: str | None = None) -> str:
    """Display label: ``flip-tiny (window)``, ``flip-tiny (window, random-init)``, ``sam-h (random-init)``, with the
    prompt note first where the report names prompts: ``sam-b (1 point)``, ``fastsam-s (oracle: upper bound)``."""
    notes = [n for n in (prompt, mode, RANDOM_INIT if random_init else None) if n]
    return f"{name} ({', '.join(notes)})" if notes else name


def model_mode(run: Run, name: str, records: pd.DataFrame) -> str | None:
    """The mode ``name`` ran in within ``run`` (FLIP's inference mode, the upsampler of ``sclip`` / ``sclip-sam2.1``),
    or None for models without modes.

    FLIP predictors and the SCLIP rows record their ``mode`` in ``describe()``; records of runs that predate that are recognised as
    FLIP by their ``input_tokens`` (only FLIP fills it) and take the run's ``flip_mode``."""
    info = run.models.get(name, {})
    if info.get("mode"):  # FLIP in reduced precision is its own row: flip-tiny (window, bf16)
        return str(info["mode"]) + (f", {info['precision']}" if info.get("precision") not in (None, "fp32") else "")
    if records["input_tokens"].notna().any():
        return run.flip_mode
    return None


def _row_prompt(records: pd.DataFrame) -> tuple[str | None, str | None]:
    """``(prompt, selection)`` of one model's records in one run (one value each: the run's protocol)."""
    prompt = records["prompt"].dropna()
    selection = records["selection"].dropna()
    return (str(prompt.iloc[0]) if len(prompt) else None, str(selection.iloc[0]) if len(selection) else None)


def combine_runs(runs: list[Run], allow_mixed: bool = False) -> Combined:
    """Concatenate runs, refusing (or, with ``allow_mixed``, flagging) protocols that differ in more than the FLIP
    mode (see :attr:`Run.comparison_hash`)."""
    if not runs:
        raise ReportInputError("no runs given")
    hashes = list(dict.fromkeys(r.comparison_hash for r in runs))
    mixed = len(hashes) > 1
    if mixed and not allow_mixed:
        listing = "\n".join(f"  {r.path}: {r.protocol_hash}" for r in runs)
        raise MixedProtocolError(
            "runs were evaluated with different protocols and their numbers are not comparable:\n"
            f"{listing}\nparameters that differ:\n{_protocol_difference(runs)}\n"
            "Report them separately, or pass --allow-mixed-protocols to show them side by side, flagged."
        )
    warnings: list[str] = [p for r in runs for p in r.problems]
    if mixed:
        warnings.append(
            "MIXED PROTOCOLS: these runs used different evaluation protocols (hashes without the FLIP mode: "
            + ", ".join(hashes)
            + "); rows are suffixed with [protocol <hash>] and must not be compared as equals. Differences:\n"
            + _protocol_difference(runs)
        )
    frames, models = [], {}
    # rows are named by their prompt once any run gives a prompt other than each model's own (or the oracle)
    name_prompts = any(r.protocol.get("prompt", "native") != "native" or r.protocol.get("select", "prompt") != "prompt"
                       for r in runs)
    for run in runs:
        df = run.records.copy()
        info = run.models
        names = df["model"].astype(str)
        random_init = df["weights_kind"].astype(str) == RANDOM_INIT
        modes = {name: model_mode(run, name, group) for name, group in df.groupby("model", sort=False)}
        prompts = {name: _row_prompt(group) for name, group in df.groupby("model", sort=False)}
        max_clicks = int(run.protocol.get("max_clicks", 20))
        notes = {name: prompt_note(*prompts[name], max_clicks) if name_prompts or prompts[name][1] == ORACLE
                 else None for name in prompts}
        label = pd.Series([model_label(n, modes[n], r, notes[n]) for n, r in zip(names, random_init, strict=True)],
                          index=df.index)
        if mixed:
            label = label + f" [protocol {run.comparison_hash[:8]}]"
        df["label"], df["random_init"], df["run_dir"] = label, random_init, str(run.path)
        for lab, group in df.groupby("label", sort=False):  # records come in run.json's model order
            name = str(group["model"].iloc[0])
            entry = models.setdefault(
                lab,
                {
                    "model": name,
                    "mode": modes[name],
                    "weights_kind": str(group["weights_kind"].iloc[0]),
                    "parameters": info.get(name, {}).get("parameters"),
                    "device": info.get(name, {}).get("device"),
                    "protocol_hash": run.protocol_hash,
                    "prompt": prompts[name][0],
                    "selection": prompts[name][1],
                    "max_clicks": max_clicks,
                    # the prompt the model had before prompt kinds existed (the paper comparison's)
                    "native_prompt": run.protocol.get("prompt", "native") == "native"
                    and prompts[name][1] in (None, "box"),
                    "runs": [],
                },
            )
            entry["runs"].append(str(run.path))
        frames.append(df)
    records = pd.concat(frames, ignore_index=True)
    _check_duplicates(records)
    records, fp_warnings = _disambiguate_datasets(records)
    warnings += fp_warnings
    records, coverage_warnings = _restrict_to_shared_objects(records, runs, models)
    warnings += coverage_warnings
    warnings += _few_images_warnings(records)
    params = runs[0].params
    if mixed and any(r.params.relative_size_edges != params.relative_size_edges
                     or r.params.absolute_size_edges != params.absolute_size_edges
                     or r.params.small_object_threshold != params.small_object_threshold for r in runs):
        warnings.append(f"size bins and the small-object threshold are those of the first run ({runs[0].path})")
    oracle_labels = [lab for lab, m in models.items() if m.get("selection") == ORACLE]
    if oracle_labels:
        warnings.append(
            "ORACLE SELECTION: " + ", ".join(oracle_labels) + " picked each object's mask by its IoU with the ground "
            "truth; these rows are upper bounds, not results a user could get, and are never ranked with prompted rows."
        )
    random_labels = [lab for lab, m in models.items() if m["weights_kind"] == RANDOM_INIT]
    if random_labels:
        warnings.append(
            "RANDOM-INIT WEIGHTS: " + ", ".join(random_labels)
            + " ran without a checkpoint; their IoUs are meaningless (only shapes and timing are informative)."
        )
    return Combined(records=records, runs=runs, params=params, models=models, mixed_protocols=mixed,
                    warnings=warnings)


def _restrict_to_shared_objects(records: pd.DataFrame, runs: list[Run], models: dict[str, dict]
                                ) -> tuple[pd.DataFrame, list[str]]:
    """Like with like: per dataset, when the rows cover different objects (a run that stopped, another
    ``--limit``), keep only the objects every row covers and say so; each model entry gets ``coverage`` text
    ("596 of 1,408 objects"). Runs whose last session did not complete are named with their status."""
    by_path = {str(r.path): r for r in runs}
    kept, warnings = [], []
    for dataset, part in records.groupby("dataset", sort=False):
        total = max((by_path[p].dataset_objects or 0) for p in part["run_dir"].unique())
        sets = {lab: set(g["instance_index"].tolist()) for lab, g in part.groupby("label", sort=False)}
        total = max(total, max(len(s) for s in sets.values()))
        for lab, objs in sets.items():
            models[lab].setdefault("coverage", {})[str(dataset)] = f"{len(objs):,} of {total:,} objects"
        unfinished = sorted({f"{r.path} ({r.status})" for p in part["run_dir"].unique()
                             for r in [by_path[p]] if not r.status.startswith("completed")})
        if unfinished:
            warnings.append(f"{dataset}: run(s) not completed: {', '.join(unfinished)}")
        shared = set.intersection(*sets.values())
        if all(len(s) == len(shared) for s in sets.values()):
            if len(shared) < total:
                warnings.append(f"{dataset}: every row covers the same {len(shared):,} of {total:,} objects "
                                "(a subset of the dataset).")
            kept.append(part)
            continue
        most = max(len(s) for s in sets.values())
        partial = [f"{lab}: {len(objs):,} of {total:,}" for lab, objs in sets.items() if len(objs) < most]
        warnings.append(f"{dataset}: rows cover different objects ({'; '.join(partial)}); every number of this "
                        f"dataset is computed on the {len(shared):,} objects all rows cover (like with like).")
        kept.append(part[part["instance_index"].isin(shared)])
    return pd.concat(kept, ignore_index=True), warnings


#: below this many images in a dataset, the image-clustered bootstrap has too few independent units to trust
FEW_IMAGES = 20


def _few_images_warnings(records: pd.DataFrame) -> list[str]:
    """One warning per dataset whose compared objects come from fewer than :data:`FEW_IMAGES` images: the
    intervals resample images, and with few of them a percentile interval is too narrow (few distinct replicates)
    and the paired test has little power (Field & Welsh 2007 on the cluster bootstrap)."""
    out = []
    for dataset, part in records.groupby("dataset", sort=False):
        images = part["image_index"].nunique()
        if images < FEW_IMAGES:
            out.append(f"{dataset}: the 95 % intervals and paired tests rest on {images} image(s) (objects of one "
                       f"image are resampled together); with fewer than {FEW_IMAGES} images they understate the "
                       "uncertainty: read them as rough.")
    return out


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
