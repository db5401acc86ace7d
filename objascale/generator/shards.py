"""Shard layout, atomic shard finalisation, manifests and resume state of a generation run (no bpy).

Run directory::

    generator_config.json        config + count + versions (a resumed run must match it, except ``count``)
    catalog.json, hdris.json     the object catalogue and HDRI list frozen at the first start
    hdri_checks.json             which HDRI files are usable (re-checked when a file changes; bad ones are skipped)
    failed_uids.json             objects whose download failed (never drawn again)
    objascale-00000.hdf5 ...     shard k: images [k*S, min((k+1)*S, N)), FLIP HDF5 layout
    manifest/shard-00000.jsonl   one JSON record per image of shard k (same records as in the shard)
    manifest.jsonl, manifest.parquet   all records, ordered by image index (written at the end)
    .work/                       per-image results not yet in a shard (img-<k>.npz) and worker logs

A shard is complete iff its ``.hdf5`` exists and its manifest lists exactly its image range. The manifest is
published first, then the HDF5 file (written as ``.partial`` and renamed by the writer), then the per-image
files are deleted, so an interruption at any point loses or duplicates nothing: on restart complete shards are
skipped, per-image results are reused and everything else is rendered again from the same seeds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["ShardPlan", "plan_shards", "shard_path", "manifest_path", "shard_complete", "load_image_result",
           "finalize_shard", "write_run_manifest", "license_table", "read_json", "write_json_atomic", "run_entries",
           "RUN_ENTRIES"]

DATASET_NAME = "objascale"
#: machine-dependent manifest fields kept out of the HDF5 shards, so equal seeds give byte-identical shards
MACHINE_FIELDS = ("seconds_setup", "seconds_probes", "seconds_final", "seconds_total", "cpu_seconds", "hdri_path")
TRANSFORM_NOTE = "synthetic: rendered with Blender Cycles by the flipbench ObjaScale generator"


@dataclass(frozen=True)
class ShardPlan:
    index: int
    start: int
    stop: int

    @property
    def images(self) -> range:
        return range(self.start, self.stop)


def plan_shards(count: int, shard_size: int) -> list[ShardPlan]:
    if count < 1:
        raise ValueError("count must be >= 1")
    return [ShardPlan(k, s, min(s + shard_size, count)) for k, s in enumerate(range(0, count, shard_size))]


def shard_path(out: Path, k: int) -> Path:
    return out / f"{DATASET_NAME}-{k:05d}.hdf5"


def manifest_path(out: Path, k: int) -> Path:
    return out / "manifest" / f"shard-{k:05d}.jsonl"


#: the names (globs) a generation creates in its run directory: all that ``--overwrite`` may delete (the dataset
#: card of ``card.py`` included)
_RUN_FILES = ("generator_config.json", "catalog.json", "hdris.json", "hdri_checks.json", "failed_uids.json",
              "manifest.jsonl", "manifest.parquet", "card.json", "DATASET_CARD.md")
RUN_ENTRIES = (*_RUN_FILES, *(f"{name}.tmp" for name in _RUN_FILES), "manifest", ".work",
               f"{DATASET_NAME}-[0-9][0-9][0-9][0-9][0-9].hdf5", f"{DATASET_NAME}-[0-9][0-9][0-9][0-9][0-9].hdf5.partial")


def run_entries(out: Path) -> list[Path]:
    """The entries of run directory ``out`` that a generation created (:data:`RUN_ENTRIES`)."""
    return sorted({p for pattern in RUN_ENTRIES for p in out.glob(pattern)})


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path`` (``default`` when there is no such file); ``ValueError`` naming a damaged file."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is damaged ({exc}); restore it, or start again with --overwrite") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str)))


def _replace_atomic(path: Path, write) -> None:
    """``write(tmp)`` to ``<path>.tmp``, then rename it to ``path``; the temporary is removed when writing fails
    (a full disk) and the error names it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(tmp)) from exc
        raise


def shard_complete(out: Path, plan: ShardPlan) -> bool:
    """True when shard ``plan.index`` is published with exactly the images of ``plan``."""
    h5, mf = shard_path(out, plan.index), manifest_path(out, plan.index)
    if not (h5.is_file() and mf.is_file()):
        return False
    try:
        indices = [json.loads(line)["image_index"] for line in mf.read_text().splitlines() if line.strip()]
    except (ValueError, KeyError):
        return False
    return indices == list(plan.images)


def load_image_result(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """(rgb, mask, info) of a worker's per-image file, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z["rgb"], z["mask"], json.loads(str(z["info"]))
    except (OSError, ValueError, KeyError):
        return None


def license_table(licenses: Iterable[str]) -> list[dict[str, Any]]:
    """COCO-style licence table (ids from 1; 0 = unknown) of the distinct licence strings, sorted."""
    return [{"id": i + 1, "name": name, "url": ""} for i, name in enumerate(sorted(set(licenses)))]


def finalize_shard(out: Path, plan: ShardPlan, results: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
                   provenance: dict[str, Any], licenses: list[dict[str, Any]], dataset_type: str) -> Path:
    """Publish shard ``plan``: manifest first, then the HDF5 file (atomic rename by the writer). The shard's
    per-image info is the manifest record without :data:`MACHINE_FIELDS` (timings, absolute paths)."""
    from objascale.hdf5_format import FlipH5Writer  # noqa: PLC0415 - h5py only where shards are written

    if [r[2]["image_index"] for r in results] != list(plan.images):
        raise ValueError(f"shard {plan.index}: results do not match images {plan.start}..{plan.stop - 1}")
    lic_id = {e["name"]: e["id"] for e in licenses}
    mf = manifest_path(out, plan.index)
    mf.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({**info, "shard": plan.index}, sort_keys=True) + "\n" for _, _, info in results)
    _replace_atomic(mf, lambda tmp: tmp.write_text(lines))
    prov = {**provenance, "shard": plan.index, "image_range": [plan.start, plan.stop]}
    h5 = shard_path(out, plan.index)
    # flush_every=1: one image in memory at a time (4K images); also sidesteps h5py mis-broadcasting a batch whose
    # variable-length entries all have the same length
    with FlipH5Writer(h5, dataset_name=DATASET_NAME, dataset_type=dataset_type, provenance=prov, licenses=licenses,
                      bbox_convention="tight", overwrite=True, flush_every=1) as w:
        for rgb, mask, info in results:
            k = info["image_index"]
            w.add_image(rgb, [mask], info={
                "file_name": f"objascale_{k:08d}.png",
                "source_id": k,
                "license": lic_id.get(info["object_license"], 0),
                "transform_note": TRANSFORM_NOTE,
                "extra": {key: val for key, val in info.items() if key not in MACHINE_FIELDS},
            }, instances=[{"category": info.get("object_category") or "unknown",
                           "category_id": info.get("object_category") or "",
                           "source_id": f"object {info['object_uid']}" if info.get("object_uid") else ""}])
    return h5


def write_run_manifest(out: Path, plans: Sequence[ShardPlan]) -> tuple[Path, Path]:
    """Concatenate the shard manifests into ``manifest.jsonl`` and ``manifest.parquet`` (ordered by image)."""
    import pandas as pd  # noqa: PLC0415

    records = []
    for plan in plans:
        records += [json.loads(line) for line in manifest_path(out, plan.index).read_text().splitlines() if line]
    jsonl = out / "manifest.jsonl"
    _replace_atomic(jsonl, lambda tmp: tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records)))
    flat = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in records]
    parquet = out / "manifest.parquet"
    _replace_atomic(parquet, lambda tmp: pd.DataFrame(flat).to_parquet(tmp, index=False))
    return jsonl, parquet
