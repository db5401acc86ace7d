"""Step 2 of evaluate -> accumulate -> summarize: the records of a run as one DataFrame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmark.evaluation.schema import UNKNOWN, conform_table
from benchmark.evaluation.store import RECORDS_DIR, RUN_JSON, read_part, read_run_json

#: a record's identity within a run: resumed runs never hold two records with the same key
RECORD_KEY = ("model", "instance_index")


def load_records(run_dir: str | os.PathLike, num_instances: int | None = None,
                 problems: list[str] | None = None) -> pd.DataFrame:
    """All per-object records of a run (columns ``RECORD_COLUMNS``), one row per (model, instance_index).

    Rows are sorted by model (in evaluation order of ``run.json`` when present) and instance index;
    ``input_tokens`` is a nullable ``Int64`` column. Raises ``FileNotFoundError`` for a directory without records
    and ``ValueError`` naming the file for a part that cannot be read or whose columns differ from the schema.
    With ``problems`` (a list), records that do not belong to the run are dropped and each file's drop is
    described there (see :func:`read_parts`).
    """
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob(f"{RECORDS_DIR}/*/part-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{run_dir} holds no records ({RECORDS_DIR}/<model>/part-*.parquet); "
                                "is it a `flipbench eval --out` directory?")
    return records_frame(read_parts(paths, num_instances, problems), _model_order(run_dir))


def read_parts(paths: list[Path], num_instances: int | None = None, problems: list[str] | None = None) -> pa.Table:
    """The record Parquet files ``paths`` as one table with ``RECORD_SCHEMA``: records of older runs, which lack
    optional columns such as ``pred_rle`` or ``prompt_invalid``, get nulls there; a damaged file is a
    ``ValueError`` naming it (:func:`benchmark.evaluation.schema.conform_table`).

    With ``problems`` (a list), rows that cannot belong to the run are dropped and each file's drops described
    there in one line naming it: an ``instance_index`` outside ``[0, num_instances)`` (when given), and a second
    record of a (model, object) already read from an earlier file or row (the first is kept, as
    :func:`records_frame` does)."""
    tables, seen = [], set()
    for path in paths:
        table = conform_table(read_part(path), str(path))
        if problems is not None and len(table):
            table = _drop_foreign_rows(table, path, num_instances, seen, problems)
        tables.append(table)
    return pa.concat_tables(tables)


def _drop_foreign_rows(table: pa.Table, path: Path, num_instances: int | None, seen: set, problems: list[str]
                       ) -> pa.Table:
    index = table.column("instance_index").to_numpy(zero_copy_only=False)
    keep = np.ones(len(table), dtype=bool)
    if num_instances is not None:
        outside = (index < 0) | (index >= num_instances)
        if outside.any():
            problems.append(f"{path}: dropped {int(outside.sum())} record(s) whose object index lies outside the "
                            f"dataset's {num_instances} objects (e.g. {int(index[outside][0])}); they do not "
                            "belong to this run")
            keep &= ~outside
    duplicates = 0
    for k, key in enumerate(zip(table.column("model").to_pylist(), index.tolist())):
        if not keep[k]:
            continue
        if key in seen:
            keep[k] = False
            duplicates += 1
        else:
            seen.add(key)
    if duplicates:
        problems.append(f"{path}: dropped {duplicates} duplicate record(s) of objects already recorded (same model "
                        "and object; the first is kept)")
    return table if keep.all() else table.filter(pa.array(keep))



def records_frame(table: pa.Table, model_order: list[str] | None = None) -> pd.DataFrame:
    """DataFrame of a records table: deduplicated on :data:`RECORD_KEY` (first kept), sorted, typed.

    ``table`` has :data:`~benchmark.evaluation.schema.RECORD_SCHEMA` (:func:`read_parts`); records of flipbench
    versions without the ``prompt_invalid`` check (nulls there) read ``False``, those without ``category`` /
    ``source_id`` read ``"unknown"``, those without ``prompt`` read the only prompt those versions gave each model
    (:func:`legacy_prompt`) and FastSAM's ``selection`` reads ``"box"``."""
    frame = table.to_pandas()
    frame["prompt_invalid"] = frame["prompt_invalid"].fillna(False).astype(bool)
    for column in ("category", "source_id"):
        frame[column] = frame[column].fillna(UNKNOWN).replace("", UNKNOWN)
    missing = frame["prompt"].isna()
    if missing.any():
        flip_like = frame.groupby("model")["input_tokens"].transform(lambda t: t.notna().any())
        frame.loc[missing, "prompt"] = [legacy_prompt(m, f) for m, f in
                                        zip(frame.loc[missing, "model"], flip_like[missing], strict=True)]
        legacy_fastsam = missing & frame["model"].astype(str).str.startswith("fastsam")
        frame.loc[legacy_fastsam, "selection"] = "box"
    frame["input_tokens"] = frame["input_tokens"].astype("Int64")
    frame = frame.drop_duplicates(list(RECORD_KEY), keep="first")
    order = list(model_order or [])
    order += sorted(set(frame["model"]) - set(order))
    frame["_model_rank"] = frame["model"].map({m: k for k, m in enumerate(order)})
    frame = frame.sort_values(["_model_rank", "instance_index"], kind="stable").drop(columns="_model_rank")
    return frame.reset_index(drop=True)


def legacy_prompt(model: str, has_tokens: bool) -> str:
    """The prompt a model got before prompt kinds existed: the Gaussian for FLIP (recognised by name or by its
    ``input_tokens``) and the ellipse reference, the box for every other model."""
    return "gaussian" if has_tokens or str(model).startswith("flip") or model == "ellipse" else "box"


def load_manifest(run_dir: str | os.PathLike) -> dict:
    """The run's ``run.json`` (a JSON object; :class:`~benchmark.evaluation.store.RunMismatchError` naming the file
    otherwise)."""
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a `flipbench eval --out` directory?")
    return read_run_json(path)


def _model_order(run_dir: Path) -> list[str]:
    path = run_dir / RUN_JSON
    models = read_run_json(path).get("models") if path.exists() else None
    return list(models) if isinstance(models, dict) else []
