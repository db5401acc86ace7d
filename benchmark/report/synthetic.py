"""Synthetic evaluation runs with the exact on-disk schema of ``flipbench eval`` (for tests and demos).

:func:`make_records` turns a few hand-written objects (model, dataset, IoU, mask size, times) into complete
record rows, so tests can check report numbers against hand computations; :func:`random_records` makes a
plausible bulk run (IoU rising with object size, per-model costs); :func:`write_run` writes ``run.json`` and
the records in the layout of ``flipbench eval`` (``records/<model>/part-*.parquet``) or as one
``records.parquet``.

Synthetic ``intersection``/``union`` are the integers closest to the given IoU for a prediction of the same
area as the mask; the ``iou`` column keeps the exact given value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark import __version__
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.schema import RECORD_COLUMNS, RECORD_SCHEMA
from baselines.timing import STAGES

#: synthetic per-object seconds per stage used when an object gives none
DEFAULT_TIMES = {"data": 0.001, "preprocess": 0.002, "encoder": 0.010, "decoder": 0.003, "postprocess": 0.001}

#: parameter counts used by the synthetic run.json (the reference survey's counts for the SAM family)
SYNTHETIC_PARAMETERS = {"sam-h": 641_090_608, "sam-b": 93_735_472, "mobilesam": 10_130_092,
                        "flip-tiny": 510_000, "flip-large": 96_600_000, "box": 0, "ellipse": 0}


def make_records(objects: list[dict], protocol_hash: str | None = None, run_id: str = "synthetic") -> pd.DataFrame:
    """Complete record rows from minimal object descriptions.

    Each object dict needs ``model``, ``dataset``, ``iou`` (0..1, ignored when ``mask_pixels`` is 0) and
    ``mask_pixels``; optional: ``image_index`` (default 0), ``image_width``/``image_height`` (640 x 480),
    ``weights_kind`` ("pretrained"), ``warmup`` (False), ``t_<stage>`` seconds (:data:`DEFAULT_TIMES`),
    ``input_tokens`` (None), ``category`` ("unknown"), ``source_id`` (made up from the image and object index).
    ``instance_index`` counts objects per (model, dataset) in order.
    """
    protocol_hash = protocol_hash or EvalParams().protocol_hash()
    rows, counters = [], {}
    for obj in objects:
        model, dataset = obj["model"], obj["dataset"]
        width, height = int(obj.get("image_width", 640)), int(obj.get("image_height", 480))
        pixels = width * height
        mask = int(obj["mask_pixels"])
        empty = mask == 0
        iou = math.nan if empty else float(obj["iou"])
        inter = 0 if empty else int(round(2 * mask * iou / (1 + iou)))
        side = max(1, int(math.sqrt(max(mask, 1))))
        x0, y0 = (width - side) // 2, (height - side) // 2
        times = {s: float(obj.get(f"t_{s}", DEFAULT_TIMES[s])) for s in STAGES}
        index = counters.get((model, dataset), 0)
        counters[(model, dataset)] = index + 1
        rows.append({
            "run_id": run_id, "model": model, "weights_kind": obj.get("weights_kind", "pretrained"),
            "dataset": dataset, "dataset_fingerprint": obj.get("dataset_fingerprint", f"fp-{dataset}"),
            "shard": f"{dataset}.hdf5", "image_index": int(obj.get("image_index", 0)), "instance_index": index,
            "image_width": width, "image_height": height, "image_pixels": pixels, "objects_in_image": 0,
            "category": str(obj.get("category", "unknown")),
            "source_id": str(obj.get("source_id", f"synthetic_{int(obj.get('image_index', 0)):06d}.jpg object {index}")),
            "mask_pixels": mask, "relative_mask_size": mask / pixels, "pred_pixels": mask, "pred_rle": None,
            "intersection": inter, "union": 2 * mask - inter, "iou": iou, "gt_empty": empty,
            "box_x0": float(x0), "box_y0": float(y0), "box_x1": float(x0 + side - 1), "box_y1": float(y0 + side - 1),
            **{f"t_{s}": t for s, t in times.items()}, "t_total": sum(times.values()),
            "warmup": bool(obj.get("warmup", False)), "input_tokens": obj.get("input_tokens"),
            "protocol_hash": protocol_hash, "device": "cpu", "node": "synthetic",
            "prompt": obj.get("prompt"), "selection": obj.get("selection"),
            "prompt_points": obj.get("prompt_points"), "click_ious": obj.get("click_ious"),
            "precision": obj.get("precision"),
        })
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    df["objects_in_image"] = df.groupby(["model", "dataset", "image_index"])["instance_index"].transform("size")
    df["input_tokens"] = df["input_tokens"].astype("Int64")
    for column in ("prompt", "selection", "prompt_points", "click_ious", "precision"):
        df[column] = df[column].astype(object).where(df[column].notna(), None)
    return df


#: categories of :func:`random_records` objects, drawn with falling weights (the last ones are rare: pooled)
SYNTHETIC_CATEGORIES = ("person", "car", "chair", "cup", "bottle", "bowl", "kite", "toaster")
_CATEGORY_WEIGHTS = np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.04, 0.01])


def random_records(models: list[str], dataset: str, images: int = 40, objects_per_image: int = 6, seed: int = 0,
                   params: EvalParams | None = None, random_init: tuple[str, ...] = ()) -> pd.DataFrame:
    """A plausible run of ``models`` on one dataset: log-uniform relative sizes 1e-6..0.3, image sizes from
    320x240 to 4096x3072, IoU rising with size (small objects hardest, worse for box-prompted models), per-model
    encoder cost; the first ``params.timing_warmup_images`` images of each model are warm-up."""
    params = params or EvalParams()
    rng = np.random.default_rng(seed)
    sizes = [(320, 240), (640, 480), (1024, 768), (1920, 1080), (4096, 3072)]
    objects = []
    for m_index, model in enumerate(models):
        skill = 1.0 - 0.25 * m_index / max(1, len(models) - 1)
        encoder = 0.002 if model.startswith("flip") else 0.05 * (1 + m_index)
        for image in range(images):
            width, height = sizes[image % len(sizes)]
            rel = 10 ** rng.uniform(-6, math.log10(0.3), objects_per_image)
            cats = rng.choice(len(SYNTHETIC_CATEGORIES), objects_per_image, p=_CATEGORY_WEIGHTS)
            for r, c in zip(rel, cats):
                mask = max(1, int(round(r * width * height)))
                base = 0.92 / (1 + math.exp(-(math.log10(mask) - 1.6 / skill)))
                noise = rng.normal(0, 0.08)
                iou = float(np.clip(base * skill + noise, 0, 1))
                if model in random_init:
                    iou = float(rng.uniform(0, 0.05))
                objects.append({
                    "model": model, "dataset": dataset, "iou": iou, "mask_pixels": mask, "image_index": image,
                    "image_width": width, "image_height": height, "category": SYNTHETIC_CATEGORIES[c],
                    "weights_kind": "random-init" if model in random_init else "pretrained",
                    "warmup": image < params.timing_warmup_images,
                    "t_encoder": encoder * rng.lognormal(0, 0.1) / objects_per_image,
                    "t_decoder": 0.003 * rng.lognormal(0, 0.1),
                    "input_tokens": 512 if model.startswith("flip") else None,
                })
    return make_records(objects, protocol_hash=params.protocol_hash())


def write_run(run_dir: Path, records: pd.DataFrame, params: EvalParams | None = None, device: str = "cpu",
              threads: int = 2, single_file: bool = False) -> Path:
    """Write ``run.json`` and the records of one dataset into ``run_dir`` (created), as ``flipbench eval`` does:
    ``records/<model>/part-<first>-<last>-synth<k>.parquet`` with two parts per model, or, with ``single_file``, one
    ``records.parquet``. Columns are cast to :data:`RECORD_SCHEMA`."""
    params = params or EvalParams()
    datasets = records["dataset"].unique()
    if len(datasets) != 1:
        raise ValueError(f"a run covers one dataset; got {list(datasets)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    models = {}
    for model, group in records.groupby("model", sort=False):
        models[model] = {"spec": model, "name": model, "parameters": SYNTHETIC_PARAMETERS.get(model, 1_000_000),
                         "weights_kind": str(group["weights_kind"].iloc[0]), "weights_source": "synthetic",
                         "weights_sha256": "", "device": device}
        if model.startswith("flip"):  # FLIP predictors describe their inference mode
            models[model]["mode"] = params.flip_mode
    first = records.iloc[0]
    environment = {"flipbench_version": __version__, "git": {"commit": "synthetic", "dirty": False},
                   "numpy": np.__version__, "torch": "synthetic", "torch_threads": threads, "device": device}
    meta = {
        "format": "flipbench-run/1", "run_id": run_dir.name, "created": "synthetic",
        "protocol": params.to_dict(), "protocol_hash": str(first["protocol_hash"]),
        "dataset": {"path": f"synthetic/{datasets[0]}.hdf5", "name": str(datasets[0]),
                    "fingerprint": str(first["dataset_fingerprint"]),
                    "num_images": int(records["image_index"].nunique()),
                    "num_instances": int(records.groupby("model").size().max()), "metadata": {}},
        "models": models,
        "sessions": [{"started": "synthetic", "status": "completed", "environment": environment, "seed": params.seed,
                      "limit": None, "models": list(models), "objects_evaluated": len(records)}],
        "counts": {"objects": len(records), "empty_gt": int(records["gt_empty"].sum())},
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    table = pa.Table.from_pandas(records[list(RECORD_COLUMNS)], schema=RECORD_SCHEMA, preserve_index=False)
    if single_file:
        pq.write_table(table, run_dir / "records.parquet")
        return run_dir
    for model in models:
        rows = np.flatnonzero(records["model"].to_numpy() == model)
        for k, chunk in enumerate(np.array_split(rows, 2)):
            if chunk.size:
                images = records["image_index"].to_numpy()[chunk]
                part = run_dir / "records" / model / f"part-{images.min():09d}-{images.max():09d}-synth{k}.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table.take(chunk), part)
    return run_dir
