"""Render a generation run's images as Ray tasks (``flipbench generate objascale --ray ADDRESS``).

The seam: :func:`render_on_cluster` takes the queue of ``(image, first attempt)`` jobs that ``generate`` would
give its local bpy worker processes and renders them on the cluster instead; ``generate`` does everything else
(plan, resume, shard assembly, manifests) exactly as in a local run, so equal seeds give byte-identical shards.

* Each image is one Ray task with declared resources (``cpus_per_render`` CPUs, ``gpus_per_render`` GPUs for
  Cycles CUDA/OptiX). The task renders image ``k`` with the same worker code as a local bpy process
  (:class:`objascale.generator.worker._Worker`, kept alive in the Ray worker process between tasks, so bpy is
  imported and the scene set up once per process) and writes ``.work/img-<k>.npz`` into the run directory;
  the driver collects it into its shard.
* Shared storage: the run directory (``--out``) must be on a filesystem every node mounts at the same path, and
  so must input folders (``--hdris DIR``, ``--objects folder:DIR``). Bundled HDRIs are read from each node's own
  bpy installation (the same flipbench environment everywhere). Objaverse objects are downloaded into each
  node's own objaverse cache. All of this is checked at start (:func:`objascale.cluster.check_shared_path`).
* A task lost with its worker process or node is run again by Ray with the same arguments (same image, same
  attempt: the same picture), up to :data:`TASK_RETRIES` times; after that the image is treated like a local
  Blender crash: re-queued with the next attempt (another object). Files are written atomically and keyed by
  image, so nothing is duplicated. Tasks of a killed driver die with it; running the command again resumes.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from objascale.cluster import check_shared_path, connect, describe_cluster

__all__ = ["render_on_cluster", "TASK_RETRIES"]

TASK_RETRIES = 2
#: tasks queued per render slot of the cluster (keeps every slot busy without submitting the whole run at once)
QUEUED_PER_SLOT = 2

_WORKERS: dict[str, Any] = {}  # per Ray worker process: init fingerprint -> objascale.generator.worker._Worker


def _render(init: dict[str, Any], key: str, k: int, attempt: int) -> list[dict[str, Any]]:
    """Ray task: render image ``k`` from ``attempt`` on; returns the worker's protocol messages (``failed_uid``,
    then ``done`` or ``failed``)."""
    from objascale.generator.worker import _Worker  # noqa: PLC0415 - imports bpy: only on the cluster's workers

    out = io.StringIO()
    worker = _WORKERS.get(key)
    if worker is None:
        _WORKERS.clear()
        worker = _WORKERS[key] = _Worker(init, out)
    worker.out = out
    worker.run_image(k, attempt)
    messages = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return [m for m in messages if m.get("event") != "start"]


def render_on_cluster(options: dict[str, Any], jobs: list[tuple[int, int]], init: dict[str, Any],
                      record: Callable[[dict[str, Any]], None], failed: Callable[[dict[str, Any], str], None],
                      out: Path, crashes_allowed: int, error: Callable[[str], Exception]) -> dict[str, Any]:
    """Render every job of ``jobs`` (consumed; ``record`` may append re-queued ones) on the cluster of
    ``options`` (``{"address", "cpus_per_render", "gpus_per_render", "workers"}``; ``workers``: at most that many
    images at a time, default every slot of the cluster), handing each worker message to
    ``record``; an image that every attempt failed goes to ``failed(message, where)`` (the local loop's handler:
    it raises, after recording an HDRI Blender cannot load). ``error(text)`` makes the exception raised for other
    failures. Returns what the run's log records about the cluster."""
    ray = connect(options["address"])
    cpus, gpus = float(options.get("cpus_per_render") or 1), float(options.get("gpus_per_render") or 0)
    cluster = describe_cluster()
    slots = int(min(cluster["cpus"] // cpus if cpus else len(jobs),
                    cluster["gpus"] // gpus if gpus else len(jobs) or 1))
    if slots < 1:
        raise error(f"no node of the cluster has {cpus:g} CPUs and {gpus:g} GPUs for one render "
                    f"(cluster: {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs)")
    check_shared_path(out, write=True, what="--out")
    config = init["config"]
    for label, source in (("--hdris", config.get("hdris", "")), ("--objects", config.get("objects", ""))):
        folder = source.removeprefix("folder:")
        if folder not in ("bundled", "procedural", "objaverse", "") and not folder.startswith("polyhaven"):
            check_shared_path(folder, write=False, what=label)
    # every HDRI file a task may open (the bundled ones are each node's own bpy installation: the same path;
    # Poly Haven downloads sit in the driver's FLIPBENCH_HDRI_CACHE, which must then be a shared folder)
    for path in sorted({hdri["path"] for hdri in init["hdris"]}):
        check_shared_path(path, write=False, what="the HDRI (set FLIPBENCH_HDRI_CACHE to a shared folder for "
                                                  "Poly Haven downloads)")
    limit = int(options["workers"]) if options.get("workers") else QUEUED_PER_SLOT * slots
    init = {**init, "threads": max(1, int(cpus)), "work_dir": str(Path(init["work_dir"]).resolve())}
    key = json.dumps(init, sort_keys=True, default=str)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=TASK_RETRIES, retry_exceptions=False)(_render)
    init_ref = ray.put(init)
    lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
            ray.exceptions.OutOfMemoryError)
    crashes: dict[int, int] = {}
    in_flight: dict[Any, tuple[int, int]] = {}
    queue = deque(jobs)
    jobs.clear()
    info = {"kind": "ray", "address": options["address"], "cpus_per_render": cpus, "gpus_per_render": gpus,
            "workers": options.get("workers"),
            "cluster": cluster, "crashed_tasks": 0}
    try:
        while True:
            queue.extend(jobs)  # images re-queued by the driver (an unreadable result file)
            jobs.clear()
            while queue and len(in_flight) < limit:
                k, attempt = queue.popleft()
                in_flight[task.remote(init_ref, key, k, attempt)] = (k, attempt)
            if not in_flight:
                break
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            k, attempt = in_flight.pop(ref)
            try:
                messages = ray.get(ref)
            except lost as exc:  # Ray's retries (same image, same attempt) are spent: re-draw, as for a crash
                crashes[k] = crashes.get(k, 0) + 1
                info["crashed_tasks"] += 1
                if crashes[k] > crashes_allowed:
                    raise error(f"image {k} lost its Ray worker {crashes[k]} times ({type(exc).__name__}: {exc})")
                queue.appendleft((k, attempt + 1))
                continue
            except ray.exceptions.RayTaskError as exc:
                raise error(f"image {k} could not be rendered on the cluster: {exc.cause!r}") from None
            for msg in messages:
                if msg["event"] in ("failed", "error"):
                    failed(msg, "on the Ray cluster")
                record(msg)
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
    return info
