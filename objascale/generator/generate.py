"""Orchestrate an ObjaScale run: plan shards, resume, dispatch images to bpy workers, publish shards.

``generate(out, count, cfg, workers=...)`` renders images ``0..count-1`` into ``out`` (layout in ``shards.py``).
Image ``k`` depends only on ``(cfg, k)``: the number of workers and the order of completion change nothing, and
a run interrupted at any point continues where it stopped when started again with the same arguments.

HDRIs: the list is frozen in ``hdris.json`` at the first start (image ``k`` draws its index in it), but every start
checks each file again (:func:`~objascale.generator.backgrounds.hdri_problem`, cached by size and mtime in
``hdri_checks.json``). An unusable one (missing, truncated, undecodable) is skipped and recorded there and in the
shards' provenance: images that draw it get the next usable HDRI of the list instead (their manifest records the
HDRI they used), so one bad file no longer stops the run, and a file replaced by a good one is used again by the
images rendered after that. ``--overwrite`` deletes only what a generation created (:data:`~.shards.RUN_ENTRIES`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import queue
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from objascale.generator import shards as sh
from objascale.generator.backgrounds import hdri_problem, list_hdris
from objascale.generator.card import write_card
from objascale.generator.categories import read_category_list
from objascale.generator.config import GENERATOR_VERSION, GeneratorConfig
from objascale.generator.download import DownloadError
from objascale.generator.objects import build_catalog
from objascale.generator.pool import WorkerProcess
from objascale.generator.worker import image_file

__all__ = ["GenerationError", "RunSummary", "generate", "default_workers"]

CONFIG_FILE = "generator_config.json"
CATEGORIES_FILE = "categories.json"  # the list read by --categories-from, frozen at the first start
#: what a paper run without the network can use instead (named in the error)
OFFLINE_STAND_IN = "--objects procedural --hdris bundled"
HDRI_CHECKS = "hdri_checks.json"
MAX_CRASHES_PER_IMAGE = 3


class GenerationError(RuntimeError):
    """The run cannot continue (bad output directory, an image that fails every attempt, repeated crashes)."""


@dataclass
class RunSummary:
    out: Path
    count: int
    rendered: int = 0
    reused: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    crashes: int = 0
    failed_uids: list[str] = field(default_factory=list)
    skipped_hdris: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped
    cluster: dict[str, Any] | None = None  # the Ray cluster that rendered (generate(cluster=...))


def default_workers() -> int:
    """One worker per two cores (each Cycles render uses several threads)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _versions() -> dict[str, str]:
    from importlib import metadata  # noqa: PLC0415

    out = {}
    for pkg in ("flipbench", "bpy", "numpy", "OpenEXR", "h5py"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _prepare_run_dir(out: Path, cfg: GeneratorConfig, count: int, overwrite: bool) -> None:
    """Create ``out`` or check that it holds a run with the same config (only ``count`` may differ)."""
    cfg_file = out / CONFIG_FILE
    was_run = cfg_file.is_file()
    if overwrite and out.exists():
        if not was_run and any(out.iterdir()):
            raise GenerationError(f"--overwrite refuses to delete {out}: it is not an ObjaScale run directory")
        for entry in sh.run_entries(out):  # what a generation created; the user's other files stay
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    previous = sh.read_json(cfg_file)
    if previous is None:
        if not was_run and any(p for p in out.iterdir() if not p.name.startswith(".")):
            raise GenerationError(f"{out} is not empty and holds no {CONFIG_FILE}; choose an empty or new folder")
    elif previous["config"] != (current := json.loads(json.dumps(cfg.to_dict()))):  # as read back from JSON
        diff = sorted(k for k in previous["config"].keys() | current.keys()
                      if previous["config"].get(k) != current.get(k))
        raise GenerationError(f"{out} holds a run with another config (differs in: {', '.join(diff)}); resume with "
                              "the same options, use a new --out, or pass --overwrite to start again")
    sh.write_json_atomic(cfg_file, {"config": cfg.to_dict(), "config_fingerprint": cfg.fingerprint(),
                                    "generator_version": GENERATOR_VERSION, "count": count, "versions": _versions()})


def hdri_frame(cfg: GeneratorConfig) -> tuple[int, float, float]:
    """(largest long side px, widest lens mm, sensor mm) of a config: what ``polyhaven:auto`` sizes the HDRIs for."""
    return cfg.long_side_max, min(cfg.lens_mm), cfg.sensor_mm


@contextmanager
def _remote_sources(cfg: GeneratorConfig):
    """A download failure while listing Objaverse objects or Poly Haven HDRIs (offline, a server down) becomes one
    :class:`GenerationError` line that names the offline stand-in flags."""
    try:
        yield
    except DownloadError as exc:
        remote = [s for s, on in (("--objects objaverse", cfg.objects == "objaverse"),
                                  (f"--hdris {cfg.hdris}", cfg.hdris.startswith("polyhaven"))) if on]
        verb = "need" if len(remote) > 1 else "needs"
        raise GenerationError(f"{exc}. {' and '.join(remote) or 'This source'} {verb} the network (Objaverse on "
                              f"Hugging Face, Poly Haven); without it pass {OFFLINE_STAND_IN} for the offline "
                              "stand-in (procedural shapes labelled with the categories, the 1K HDRIs bundled with "
                              "bpy)") from exc


def _output_errors(fn: Callable[..., RunSummary]) -> Callable[..., RunSummary]:
    """A write the file system refuses (full disk, quota, read-only, permissions) becomes a one-line
    :class:`GenerationError` naming the file; the run resumes once the cause is fixed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> RunSummary:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise GenerationError(f"cannot write {exc.filename or ''}: {exc.strerror or exc}; free space or choose a "
                                  "writable --out, then run the same command again to resume") from exc

    return wrapper


@_output_errors
def generate(out: str | os.PathLike, count: int | None, cfg: GeneratorConfig, *, workers: int | None = None,
             threads: int = 0, overwrite: bool = False, progress: bool = True,
             objaverse_api: Any = None, per_category: int | None = None,
             on_plan: Callable[[int], None] | None = None, cluster: dict[str, Any] | None = None) -> RunSummary:
    """Render ``count`` images into ``out``; returns a summary. See the module docstring.

    ``workers``: bpy processes (default :func:`default_workers`); ``threads``: Cycles threads per worker (0 =
    cores / workers); ``objaverse_api``: stand-in for the ``objaverse`` module when building the catalogue;
    ``per_category``: instead of ``count``, render this many images per category of the (frozen) catalogue
    (``count = per_category x categories``; meant for balanced configs); ``on_plan(count)``: called once the
    count is known, before anything is rendered (the CLI prints its estimate there).
    ``cluster``: render on a Ray cluster instead, ``{"address", "cpus_per_render", "gpus_per_render"}`` (see
    :mod:`objascale.generator.ray_dispatch`; ``workers`` and ``threads`` are then unused).
    """
    t0 = time.perf_counter()
    out = Path(out)
    # the object catalogue and HDRI list are frozen at the first start, so a resumed run draws from the same lists;
    # they are built before anything is written, so a bad source leaves no half-made run directory behind
    categories = None if overwrite else sh.read_json(out / CATEGORIES_FILE)
    if categories is None and cfg.categories_from:
        categories = read_category_list(cfg.categories_from).to_dict()
    catalog = None if overwrite else sh.read_json(out / "catalog.json")
    with _remote_sources(cfg):
        if catalog is None:
            catalog = [s.to_dict() for s in build_catalog(
                cfg.objects, cfg.categories_file, cfg.objects_per_category, cfg.download_retries, objaverse_api,
                cfg.balanced, categories["categories"] if categories else None)]
        hdris = None if overwrite else sh.read_json(out / "hdris.json")
        if hdris is None:
            hdris = [h.to_dict() for h in list_hdris(cfg.hdris, seed=cfg.seed, frame=hdri_frame(cfg))]
    if per_category is not None:
        count = per_category * len({s["category"] for s in catalog})
    if not count:
        raise GenerationError("give a number of images (count) or images per category (per_category)")
    if on_plan is not None:
        on_plan(count)
    _prepare_run_dir(out, cfg, count, overwrite)
    for name, data in (("catalog.json", catalog), ("hdris.json", hdris), (CATEGORIES_FILE, categories)):
        if data is not None and not (out / name).is_file():
            sh.write_json_atomic(out / name, data)
    failed_path = out / "failed_uids.json"
    failed: dict[str, str] = sh.read_json(failed_path, {})
    licenses = sh.license_table(s["license"] for s in catalog)
    plans = sh.plan_shards(count, cfg.shard_size)
    work = out / ".work"
    work.mkdir(exist_ok=True)
    _remove_scratch(work)  # EXR/PNG scratch of workers killed in an earlier run
    summary = RunSummary(out=out, count=count)

    usable_hdris, summary.skipped_hdris = _usable_hdris(out, hdris)
    provenance = {"generator": "flipbench objascale", "config": cfg.to_dict(),
                  "config_fingerprint": cfg.fingerprint(), "generator_version": GENERATOR_VERSION, "count": count,
                  "versions": _versions(),
                  "hdris": [h["name"] for h in hdris], "num_catalog_objects": len(catalog)}
    if summary.skipped_hdris:
        provenance["hdris_skipped"] = {Path(p).name: why for p, why in summary.skipped_hdris.items()}
    pending_plans = [p for p in plans if not sh.shard_complete(out, p)]
    summary.shards_skipped = len(plans) - len(pending_plans)
    have: set[int] = set()
    todo: list[int] = []
    for p in pending_plans:
        for k in p.images:
            if sh.load_image_result(image_file(work, k)) is not None:
                have.add(k)
            else:
                todo.append(k)
    summary.reused = len(have)

    def try_finalize() -> None:
        for p in list(pending_plans):
            if all(k in have for k in p.images):
                results = [sh.load_image_result(image_file(work, k)) for k in p.images]
                if any(r is None for r in results):  # a file vanished or is corrupt: render it again
                    for k, r in zip(p.images, results):
                        if r is None:
                            rerenders[k] = rerenders.get(k, 0) + 1
                            if rerenders[k] > MAX_CRASHES_PER_IMAGE:
                                raise GenerationError(f"the result of image {k} ({image_file(work, k)}) is unreadable "
                                                      f"after {rerenders[k]} renders; see the worker logs in {work}")
                            have.discard(k)
                            jobs.append((k, 0))
                    continue
                sh.finalize_shard(out, p, results, provenance, licenses, cfg.preset_name)
                for k in p.images:
                    image_file(work, k).unlink(missing_ok=True)
                pending_plans.remove(p)
                summary.shards_written += 1

    jobs: list[tuple[int, int]] = [(k, 0) for k in todo]
    rerenders: dict[int, int] = {}
    try_finalize()
    bar = _progress(count, count - len(jobs), progress)
    n_workers = max(1, min(workers or default_workers(), len(jobs))) if jobs else 0
    threads = threads or max(1, (os.cpu_count() or 2) // max(1, n_workers))
    init = {"cmd": "init", "config": cfg.to_dict(), "catalog": catalog, "hdris": usable_hdris,
            "excluded": sorted(failed), "work_dir": str(work), "threads": threads}
    events: queue.Queue = queue.Queue()
    pool: dict[int, WorkerProcess] = {}
    crashes: dict[int, int] = {}
    next_wid = 0

    def spawn() -> None:
        nonlocal next_wid
        w = WorkerProcess(next_wid, init, work / f"worker-{next_wid}.log", events)
        pool[next_wid] = w
        next_wid += 1

    def ensure_workers() -> None:
        """Workers for the queued jobs (up to n_workers), e.g. after try_finalize re-queued images."""
        while jobs and len(pool) < min(max(1, n_workers), len(jobs)):
            spawn()

    def record(msg: dict[str, Any]) -> None:
        """Book-keeping of a worker's ``failed_uid`` and ``done`` messages (local and cluster workers alike)."""
        if msg.get("event") == "failed_uid":
            failed[msg["uid"]] = msg["reason"]
            sh.write_json_atomic(failed_path, failed)
        elif msg.get("event") == "done":
            have.add(int(msg["index"]))
            summary.rendered += 1
            bar.update(1)
            try_finalize()

    def image_failed(msg: dict[str, Any], where: str) -> None:
        """An image that every attempt failed (``failed``/``error`` message, local and cluster workers alike): a
        :class:`GenerationError`; an HDRI Blender cannot load is first recorded as unusable, so a rerun skips it."""
        detail = msg.get("rejects") or msg.get("error")
        blamed = _blamed_hdri(msg, usable_hdris)
        if blamed is not None:  # Blender cannot load an HDRI the decoders accepted: skip it from now on
            _record_hdri_problem(out, blamed, f"Blender could not load it ({detail})")
            raise GenerationError(f"image {msg.get('index')}: Blender cannot load HDRI {blamed}; it is now "
                                  f"recorded as unusable in {out / HDRI_CHECKS}: run the same command again "
                                  "to continue without it (or replace the file)")
        raise GenerationError(f"image {msg.get('index')} could not be rendered: {detail} ({where})")

    def assign(w: WorkerProcess) -> None:
        if jobs:
            k, a = jobs.pop(0)
            w.render(k, a)
        else:
            w.busy = None
            w.stop()
            pool.pop(w.wid, None)

    try:
        if cluster is not None and jobs:  # the seam: the cluster renders the jobs; the loop below then finds none
            from objascale.generator.ray_dispatch import render_on_cluster  # noqa: PLC0415

            summary.cluster = render_on_cluster(cluster, jobs, init, record, image_failed, out,
                                                MAX_CRASHES_PER_IMAGE, GenerationError)
        ensure_workers()
        while True:
            if not pool:  # every worker has stopped: images re-queued by try_finalize (if any) need new ones
                try_finalize()
                ensure_workers()
                if not pool:
                    break
            wid, msg = events.get()
            w = pool.get(wid)
            if w is None:
                continue
            ev = msg.get("event")
            if ev == "ready":
                assign(w)
            elif ev == "start":
                w.busy = (int(msg["index"]), int(msg["attempt"]))
            elif ev == "failed_uid":
                record(msg)
            elif ev == "done":
                w.busy = None
                record(msg)
                assign(w)
            elif ev in ("failed", "error"):
                image_failed(msg, f"worker log: {work / f'worker-{wid}.log'}")
            elif ev == "exit":
                pool.pop(wid, None)
                if w.busy is not None:  # crashed while rendering: re-draw that image's object
                    k, attempt = w.busy
                    crashes[k] = crashes.get(k, 0) + 1
                    summary.crashes += 1
                    if crashes[k] > MAX_CRASHES_PER_IMAGE:
                        raise GenerationError(f"image {k} crashed Blender {crashes[k]} times "
                                              f"(log: {work / f'worker-{wid}.log'})")
                    jobs.insert(0, (k, attempt + 1))
                    spawn()
                elif msg.get("code") not in (0, None) and jobs:
                    raise GenerationError(f"worker {wid} exited with code {msg.get('code')} before rendering "
                                          f"(log: {work / f'worker-{wid}.log'})")
        if pending_plans:
            raise GenerationError(f"shards {[p.index for p in pending_plans]} are incomplete")
    finally:
        for w in list(pool.values()):
            w.kill()
        bar.close()
    _remove_scratch(work)
    sh.write_run_manifest(out, plans)
    write_card(out)
    summary.failed_uids = sorted(failed)
    summary.seconds = time.perf_counter() - t0
    return summary


def _usable_hdris(out: Path, hdris: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The frozen list with each unusable HDRI replaced by the next usable one (cyclically; same length, so every
    image draws the same index), and ``{path: problem}`` of the unusable ones. Each file is checked when its size
    or mtime changed since the last check (``hdri_checks.json``); raises :class:`GenerationError` when none is
    usable."""
    checks_path = out / HDRI_CHECKS
    checks = sh.read_json(checks_path, {})
    problems: dict[str, str] = {}
    for h in hdris:
        stamp = _stamp(h["path"])
        entry = checks.get(h["path"])
        if not (isinstance(entry, dict) and entry.get("stamp") == stamp and stamp is not None):
            entry = {"stamp": stamp, "problem": hdri_problem(h["path"])}
            checks[h["path"]] = entry
        if entry["problem"]:
            problems[h["path"]] = entry["problem"]
    sh.write_json_atomic(checks_path, checks)
    good = [k for k, h in enumerate(hdris) if h["path"] not in problems]
    if not good:
        raise GenerationError(f"no usable HDRI: {'; '.join(f'{p}: {why}' for p, why in problems.items())}. Replace "
                              "the files (the run resumes), or start a new --out with another --hdris")
    for path, why in problems.items():
        print(f"warning: HDRI {path} is skipped ({why}); images that draw it use the next usable one. "
              "Replace the file and run again to use it for the images still to render", file=sys.stderr)
    usable = [hdris[k] if k in good else hdris[next((g for g in good if g > k), good[0])] for k in range(len(hdris))]
    return usable, problems


def _blamed_hdri(msg: dict[str, Any], hdris: list[dict[str, Any]]) -> str | None:
    """The path of the HDRI that every failed attempt of a "failed" event reports as a missing texture, or that
    an "error" event's text names; None when the failure is not the HDRI's."""
    by_file = {Path(h["path"]).name: h["path"] for h in hdris}
    if msg.get("event") == "error":
        text = str(msg.get("error", ""))
        return next((path for path in by_file.values() if path in text), None)
    reasons = [str(r.get("reason", "")) for r in msg.get("rejects") or [] if isinstance(r, dict)]
    prefix = "missing textures: "
    names = {tuple(r[len(prefix):].split(", ")) for r in reasons if r.startswith(prefix)}
    if not reasons or len(names) != 1 or len(reasons) != sum(r.startswith(prefix) for r in reasons):
        return None
    hits = [by_file[n] for n in next(iter(names)) if n in by_file]
    return hits[0] if len(hits) == 1 else None


def _record_hdri_problem(out: Path, path: str, problem: str) -> None:
    """Mark HDRI ``path`` unusable in ``hdri_checks.json`` until the file changes."""
    checks = sh.read_json(out / HDRI_CHECKS, {})
    checks[path] = {"stamp": _stamp(path), "problem": problem}
    sh.write_json_atomic(out / HDRI_CHECKS, checks)


def _stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a file (a changed file is checked again), None when it is missing."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _remove_scratch(work: Path) -> None:
    for d in work.glob("tmp-*"):
        shutil.rmtree(d, ignore_errors=True)


class _NoBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=done, unit="img", desc="objascale", dynamic_ncols=True, smoothing=0.1)
