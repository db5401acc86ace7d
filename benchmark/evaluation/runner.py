"""A whole evaluation run: models x dataset -> run directory (records, run.json, summaries).

The work is a list of :class:`~benchmark.evaluation.executors.ImageTask` (one image, one model), in the order of
``timing``: ``sequential`` (models one after the other, each over the dataset in image order) or ``interleaved``
(per image, every model in turn). An executor runs them (:mod:`.executors`: in this process by default, or on a
Ray cluster with ``cluster``, :mod:`.ray_executor`). This process alone writes the run directory: records are
buffered per model and image and written as one Parquet part per ``chunk_images`` images of a model (and whatever
complete images are buffered when the run stops, also on an exception or Ctrl-C). Re-running the same command
resumes, with any executor or number of workers: objects that already have a record are skipped, and a record
for an object already recorded (a task run again after its worker was lost) is dropped.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from baselines.base import Predictor
from benchmark.evaluation.accumulate import load_records
from benchmark.evaluation.evaluate import DatasetLike
from benchmark.evaluation.executors import TIMING_MODES, Executor, LocalExecutor, WorkerSetup, plan_tasks
from benchmark.evaluation.official import write_official_csvs
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.provenance import environment, utc_now
from benchmark.evaluation.schema import records_to_table
from benchmark.evaluation.store import OFFICIAL_DIR, RUN_JSON, SUMMARY_FILES, RunStore, run_lock
from benchmark.evaluation.summarize import SUMMARY_COLUMNS, summarize, write_summary
from benchmark.models import build_model, parse_model_spec

#: default number of images per Parquet part (the most work an interruption can lose per model)
DEFAULT_CHUNK_IMAGES = 25
#: instances with invalid stored positions listed in run.json's counts (all are flagged in the records)
MAX_LISTED_INVALID = 100


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    manifest: dict
    summary: pd.DataFrame
    objects_evaluated: int  # by this invocation (0 when everything was done already)


def split_model_specs(specs: str | Sequence[str]) -> list[str]:
    """``"flip-tiny:/x.ckpt,box"`` or a list of such strings -> ``["flip-tiny:/x.ckpt", "box"]``."""
    items = [specs] if isinstance(specs, str) else list(specs)
    out = [s.strip() for item in items for s in item.split(",") if s.strip()]
    if not out:
        raise ValueError("no model given; pass e.g. --model flip-tiny,box")
    return out


def dataset_description(dataset: DatasetLike, path: str | os.PathLike) -> dict:
    """What ``run.json`` records about the dataset (its fingerprint identifies the data)."""
    metadata = dict(getattr(dataset, "metadata", {}) or {})
    return {
        "path": str(Path(path).resolve()),
        "name": str(metadata.get("dataset_name") or Path(path).stem),
        "fingerprint": dataset.fingerprint(),
        "num_images": int(dataset.num_images),
        "num_instances": int(dataset.num_instances),
        "metadata": metadata,
    }


def run_evaluation(
    dataset: DatasetLike,
    dataset_path: str | os.PathLike,
    model_specs: Sequence[str],
    out_dir: str | os.PathLike,
    params: EvalParams,
    *,
    device: str = "cpu",
    limit: int | None = None,
    allow_random: bool = False,
    force_new: bool = False,
    chunk_images: int = DEFAULT_CHUNK_IMAGES,
    official_csv: bool = False,
    progress: bool | None = None,
    builder: Callable[..., Predictor] = build_model,
    timing: str = "sequential",
    cluster: dict[str, Any] | None = None,
) -> RunOutcome:
    """Evaluate ``model_specs`` on the first ``limit`` objects (all when None) of ``dataset`` into ``out_dir``.

    ``progress``: show a progress bar (None: only on a terminal). ``builder``: ``build_model`` or a stand-in
    with its signature (tests). ``timing``: task order, see the module docstring. ``cluster``: run on the Ray
    cluster ``{"address": "HOST:PORT" | "auto", "workers": N | None, "gpus_per_worker": G}`` instead of here.
    Raises :class:`~benchmark.evaluation.store.RunMismatchError` when ``out_dir`` holds a run with another
    protocol, dataset or model weights.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of objects, got {limit}")
    if chunk_images < 1:
        raise ValueError(f"chunk_images must be >= 1, got {chunk_images}")
    if timing not in TIMING_MODES:
        raise ValueError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
    names = [parse_model_spec(spec)[0] for spec in model_specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"model(s) {repeated} given twice; evaluate other checkpoints of a model into another --out")

    with run_lock(out_dir):
        fresh = not (Path(out_dir) / RUN_JSON).exists()  # this call creates the run (else resumes or replaces it)
        store = RunStore.open(out_dir, params, dataset_description(dataset, dataset_path), force_new=force_new)
        store.claim(*SUMMARY_FILES, *([OFFICIAL_DIR] if official_csv else []))  # refused if a user's file is there
        store.remove_stale_temporaries()
        description = store.manifest["dataset"]
        setup = WorkerSetup(
            dataset_path=description["path"], dataset_fingerprint=description["fingerprint"],
            dataset_name=description["name"], run_id=store.run_id, models=tuple(zip(names, model_specs)),
            params=params, device=device, allow_random=allow_random, builder=builder,
        )
        executor = None
        try:
            executor = _executor(setup, dataset, cluster)
            for spec, (name, model_description) in zip(model_specs, executor.describe_models().items(), strict=True):
                store.register_model(name, spec, model_description)
        except BaseException:
            if executor is not None:
                executor.close()
            if fresh:  # nothing was evaluated (a missing checkpoint, an unreachable cluster): leave no empty run
                store.discard()
            raise
        session = {
            "started": utc_now(),
            "status": "running",
            "environment": environment(device),
            "executor": executor.describe(),
            "timing": timing,
            "seed": params.seed,
            "limit": limit,
            "models": names,
            "objects_evaluated": 0,  # records saved by this session (kept up to date part by part)
        }
        store.manifest["sessions"].append(session)
        store.save()
        error: BaseException | None = None
        try:
            _evaluate(dataset, executor, names, store, session, limit, chunk_images, progress, timing)
            session["status"] = "completed"
        except BaseException as exc:
            error = exc
            session["status"] = "interrupted"
            session["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            session["executor"] = executor.describe()  # with the number of tasks run again after a lost worker
            executor.close()
            session["finished"] = utc_now()
            try:
                summary = _finish(store, params, official_csv, write_tables=session["status"] == "completed")
            except Exception as finish_error:
                if error is None:
                    raise
                # keep the original error (the one the user must see); the saved records stay resumable
                error.add_note(f"while stopping, saving the run summary also failed: "
                               f"{type(finish_error).__name__}: {finish_error}")
    return RunOutcome(store.root, store.manifest, summary, session["objects_evaluated"])


def _executor(setup: WorkerSetup, dataset: DatasetLike, cluster: dict[str, Any] | None) -> Executor:
    """The local executor, or the Ray executor for ``cluster`` (Ray is imported only then)."""
    if cluster is None:
        return LocalExecutor(setup, dataset)
    from benchmark.evaluation.ray_executor import RayExecutor

    return RayExecutor(setup, **cluster)


def _evaluate(
    dataset: DatasetLike,
    executor: Executor,
    names: list[str],
    store: RunStore,
    session: dict,
    limit: int | None,
    chunk_images: int,
    progress: bool | None,
    timing: str,
) -> None:
    """Evaluate the objects each model has no record for yet; counts saved records in ``session``."""
    done = {name: store.done_instances(name) for name in names}
    tasks = plan_tasks({name: _pending_images(dataset, done[name], limit) for name in names}, timing)
    buffers: dict[str, list[dict]] = {name: [] for name in names}
    buffered_images: Counter[str] = Counter()
    iou_sum, iou_count = 0.0, 0

    def save(name: str) -> None:
        if buffers[name]:
            store.write_part(name, records_to_table(buffers[name]))
            session["objects_evaluated"] += len(buffers[name])
        buffers[name], buffered_images[name] = [], 0

    bar = tqdm(total=sum(len(t.instances) for t in tasks), unit="obj", desc=names[0] if len(names) == 1 else "eval",
               disable=(not progress) if progress is not None else None, dynamic_ncols=True, smoothing=0.1)
    try:
        for task, records in executor.map(tasks):
            fresh = [r for r in records if r["instance_index"] not in done[task.model]]  # a task run twice
            done[task.model].update(r["instance_index"] for r in fresh)
            buffers[task.model].extend(fresh)
            buffered_images[task.model] += 1
            for record in fresh:
                if not math.isnan(record["iou"]):
                    iou_sum, iou_count = iou_sum + record["iou"], iou_count + 1
            bar.update(len(fresh))
            if iou_count:
                bar.set_postfix(mIoU=f"{100 * iou_sum / iou_count:.1f}", refresh=False)
            if buffered_images[task.model] >= chunk_images:
                save(task.model)
    finally:
        bar.close()
        for name in names:  # complete images only: safe to keep even when the loop was interrupted
            save(name)


def _pending_images(dataset: DatasetLike, done: set[int], limit: int | None) -> list[tuple[int, list[int]]]:
    """``(image index, instance indices without a record)`` in image order, up to global instance ``limit``."""
    end = dataset.num_instances if limit is None else min(limit, dataset.num_instances)
    tasks = []
    for image_index in range(dataset.num_images):
        instances = dataset.instance_indices(image_index)
        if len(instances) and instances[0] >= end:
            break
        todo = [j for j in instances if j < end and j not in done]
        if todo:
            tasks.append((image_index, todo))
    return tasks


def _finish(store: RunStore, params: EvalParams, official_csv: bool, write_tables: bool) -> pd.DataFrame:
    """Update ``run.json`` counts (always) and write the summaries and official CSVs (after a complete session).

    Returns the summary of every record in the run (all models, all sessions).
    """
    problems: list[str] = []
    dataset_objects = (store.manifest.get("dataset") or {}).get("num_instances")
    try:
        records = load_records(store.root, dataset_objects if isinstance(dataset_objects, int) else None, problems)
    except FileNotFoundError:  # nothing evaluated yet (e.g. --limit reached no object, or an early failure)
        store.save()
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    if problems:
        store.manifest["record_problems"] = problems[:MAX_LISTED_INVALID]
    else:
        store.manifest.pop("record_problems", None)
    store.manifest["counts"] = {
        **_counts(records),
        # the first of them (the same objects for every model: the check reads only the dataset)
        "invalid_prompt_instances": sorted({int(j) for j in records.loc[records["prompt_invalid"], "instance_index"]})[
            :MAX_LISTED_INVALID],
        "per_model": {model: _counts(group) for model, group in records.groupby("model", sort=False)},
    }
    store.save()
    summary = summarize(records, params, store.manifest["models"])
    if write_tables:
        write_summary(summary, store.manifest, params, store.root)
        if official_csv:
            write_official_csvs(records, store.root / OFFICIAL_DIR)
    return summary


def _counts(records: pd.DataFrame) -> dict[str, int]:
    """Records, and those not scored: empty ground truth, invalid stored positions (see ``prompt_problem``)."""
    return {"objects": len(records), "empty_gt": int(records["gt_empty"].sum()),
            "invalid_prompt": int(records["prompt_invalid"].sum())}
