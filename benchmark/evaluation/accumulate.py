"""Step 2 of evaluate -> accumulate -> summarize: the records of a run as one DataFrame."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.evaluation.schema import ADDED_COLUMNS, RECORD_COLUMNS, RECORD_SCHEMA
from benchmark.evaluation.store import RECORDS_DIR, RUN_JSON

#: a record's identity within a run: resumed runs never hold two records with the same key
RECORD_KEY = ("model", "instance_index")


def load_records(run_dir: str | os.PathLike) -> pd.DataFrame:
    """All per-object records of a run (columns :data:`RECORD_COLUMNS`), one row per (model, instance_index).

    Rows are sorted by model (in evaluation order of ``run.json`` when present) and instance index;
    ``input_tokens`` is a nullable ``Int64`` column. Raises ``FileNotFoundError`` for a directory without records
    and ``ValueError`` for a part file whose columns differ from the schema.
    """
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob(f"{RECORDS_DIR}/*/part-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{run_dir} holds no records ({RECORDS_DIR}/<model>/part-*.parquet); "
                                "is it a `flipbench eval --out` directory?")
    tables = []
    for path in paths:
        table = _with_added_columns(pq.read_table(path))
        if tuple(table.column_names) != RECORD_COLUMNS:
            raise ValueError(f"{path} has columns {table.column_names}, expected {list(RECORD_COLUMNS)}")
        tables.append(table.cast(RECORD_SCHEMA))
    return records_frame(pa.concat_tables(tables), _model_order(run_dir))


def _with_added_columns(table: pa.Table) -> pa.Table:
    """A part written before :data:`ADDED_COLUMNS` existed, with those columns as nulls."""
    for name in ADDED_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(RECORD_SCHEMA.field(name), pa.nulls(len(table), RECORD_SCHEMA.field(name).type))
    return table


def records_frame(table: pa.Table, model_order: list[str] | None = None) -> pd.DataFrame:
    """DataFrame of a records table: deduplicated on :data:`RECORD_KEY` (first kept), sorted, typed."""
    frame = _with_added_columns(table).to_pandas()
    frame["input_tokens"] = frame["input_tokens"].astype("Int64")
    frame = frame.drop_duplicates(list(RECORD_KEY), keep="first")
    order = list(model_order or [])
    order += sorted(set(frame["model"]) - set(order))
    frame["_model_rank"] = frame["model"].map({m: k for k, m in enumerate(order)})
    frame = frame.sort_values(["_model_rank", "instance_index"], kind="stable").drop(columns="_model_rank")
    return frame.reset_index(drop=True)


def load_manifest(run_dir: str | os.PathLike) -> dict:
    """The run's ``run.json``."""
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a `flipbench eval --out` directory?")
    return json.loads(path.read_text())


def _model_order(run_dir: Path) -> list[str]:
    path = run_dir / RUN_JSON
    return list(json.loads(path.read_text()).get("models", {})) if path.exists() else []
