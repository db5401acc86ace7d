"""Render worker: one bpy process that renders images on request (``python -m objascale.generator.worker LOG``).

Runs in its own process so a Blender crash cannot take the run down. Protocol (one JSON object per line):

* in (stdin): ``{"cmd": "init", "config": {...}, "catalog": [...], "hdris": [...], "excluded": [uid, ...],
  "work_dir": str, "threads": int}``, then ``{"cmd": "render", "index": k, "first_attempt": a}`` any number of
  times, and ``{"cmd": "quit"}``;
* out (the process's original stdout; Blender's own chatter goes to the log file): ``ready``, ``start``
  (index, attempt: so the parent knows which image a crash hit), ``failed_uid`` (uid, reason), ``done`` (index,
  file, info) and ``failed`` (index, rejects: every attempt was rejected).

A finished image is written atomically to ``work_dir/img-<k>.npz`` (``rgb`` uint8 [H, W, 3], ``mask`` bool
[H, W], ``info`` JSON text), where the parent collects it into its shard.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from objascale.generator.config import GeneratorConfig
from objascale.generator.objects import DownloadError, ObjaverseSource, ObjectSpec, load_categories, resolve_path
from objascale.generator.params import category_order, draw_object, draw_scene, image_category

__all__ = ["image_file", "main"]


def image_file(work_dir: str | Path, k: int) -> Path:
    return Path(work_dir) / f"img-{k:08d}.npz"


def scratch_dir(work_dir: str | Path) -> Path:
    """This process's EXR/PNG scratch folder (host and pid: several machines may share ``work_dir``)."""
    return Path(work_dir) / f"tmp-{socket.gethostname()}-{os.getpid()}"


class _Worker:
    def __init__(self, init: dict[str, Any], out: TextIO) -> None:
        self.cfg = GeneratorConfig.from_dict(init["config"])
        self.catalog = [ObjectSpec(**d) for d in init["catalog"]]
        self.hdris = init["hdris"]
        self.work_dir = Path(init["work_dir"])
        self.excluded_uids = set(init.get("excluded", ()))
        self.categories, self.members = category_order([s.category for s in self.catalog])
        self.out = out
        self.objaverse = None
        if self.cfg.objects == "objaverse":
            self.objaverse = ObjaverseSource(load_categories(self.cfg.categories_file or None),
                                             self.cfg.objects_per_category, self.cfg.download_retries)
        # bpy is imported only here, after the parent's init message (the import takes about a second)
        from objascale.generator import render  # noqa: PLC0415

        self.render = render
        self.threads = int(init.get("threads", 0))

    def emit(self, **msg: Any) -> None:
        self.out.write(json.dumps(msg, default=_json_default) + "\n")
        self.out.flush()

    def run_image(self, k: int, first_attempt: int) -> None:
        cfg = self.cfg
        sd = draw_scene(cfg, k, len(self.hdris))
        hdri = self.hdris[sd.hdri_index]
        rejects: list[dict[str, Any]] = []
        tmp = scratch_dir(self.work_dir)
        candidates = (self.members[self.categories[image_category(k, len(self.categories))]] if cfg.balanced
                      else None)
        for attempt in range(first_attempt, first_attempt + cfg.max_attempts):
            self.emit(event="start", index=k, attempt=attempt)
            while True:  # a failed download replaces the object, never the attempt's pose (params.py)
                excluded = [i for i, s in enumerate(self.catalog) if s.uid in self.excluded_uids]
                od = draw_object(cfg, k, attempt, sd, len(self.catalog), excluded, candidates)
                spec = self.catalog[od.object_index]
                try:
                    path = resolve_path(spec, self.objaverse)
                    break
                except DownloadError as exc:
                    self.excluded_uids.add(spec.uid)
                    self.emit(event="failed_uid", uid=spec.uid, reason=str(exc))
                    rejects.append({"attempt": attempt, "object_uid": spec.uid, "reason": f"download failed: {exc}"})
            try:
                result = self.render.render_attempt(cfg, sd, od, spec.to_dict(), hdri, path, tmp,
                                                    threads=self.threads)
            except self.render.Rejected as exc:
                rejects.append({"attempt": attempt, "object_uid": spec.uid, "reason": str(exc)})
                continue
            except Exception as exc:  # noqa: BLE001 - a broken asset must not stop the run: re-draw
                traceback.print_exc()
                rejects.append({"attempt": attempt, "object_uid": spec.uid, "reason": f"error: {exc!r}"})
                continue
            info = self._record(k, attempt, sd.to_dict(), od.to_dict(), spec, hdri, result.info, rejects)
            target = image_file(self.work_dir, k)
            partial = target.with_suffix(".partial.npz")
            np.savez_compressed(partial, rgb=result.rgb, mask=result.mask, info=np.array(json.dumps(info)))
            os.replace(partial, target)
            self.emit(event="done", index=k, file=str(target), info=info)
            return
        self.emit(event="failed", index=k, rejects=rejects)

    def _record(self, k, attempt, sd, od, spec: ObjectSpec, hdri, render_info, rejects) -> dict[str, Any]:
        """The image's manifest record (flat, JSON-serialisable; no key clashes with the HDF5 reader's fields)."""
        rec = {
            "image_index": k,
            "global_seed": self.cfg.seed,
            "attempt": attempt,
            "object_uid": spec.uid,
            "object_name": spec.name,
            "object_category": spec.category,
            "object_license": spec.license,
            "object_source": spec.source,
            "object_author": spec.author,
            "object_url": spec.url,
            "hdri_path": hdri["path"],
            "hdri_author": hdri.get("author", ""),
            "hdri_source": hdri.get("source", ""),
            "rejected_attempts": rejects,
        }
        rec["catalog_index"] = od["object_index"]
        rec["hdri_index"] = sd["hdri_index"]
        rec.update({key: val for key, val in render_info.items() if key != "index"})
        return rec


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log_path = argv[0] if argv else os.devnull
    # keep the real stdout for the protocol; send everything Blender prints (C level too) to the log
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    worker: _Worker | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "init":
                worker = _Worker(msg, proto)
                worker.emit(event="ready", pid=os.getpid(), bpy=worker.render.bpy_version())
            elif cmd == "render":
                if worker is None:
                    raise RuntimeError("render before init")
                worker.run_image(int(msg["index"]), int(msg.get("first_attempt", 0)))
            elif cmd == "quit":
                if worker is not None:
                    shutil.rmtree(scratch_dir(worker.work_dir), ignore_errors=True)
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            traceback.print_exc()
            proto.write(json.dumps({"event": "error", "index": msg.get("index"), "error": repr(exc)}) + "\n")
            proto.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
