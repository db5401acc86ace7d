"""Run an evaluation's image tasks on a Ray cluster (``flipbench eval --ray ADDRESS``).

Each worker is a Ray actor holding one :class:`~benchmark.evaluation.executors.EvalWorker`: it opens the dataset
(same path on every node: checked against the driver's fingerprint) and builds every model once, then evaluates
the tasks it is sent (each image's embedding is computed once per model, on the worker that got the image).
Tasks go to the workers round-robin with at most :data:`IN_FLIGHT` queued per worker; results come back in
completion order and only the driver writes the run directory.

A lost worker (its process or node died): Ray restarts the actor (up to :data:`ACTOR_RESTARTS` times, on any
node) and runs the tasks it had in flight again there (up to :data:`TASK_RETRIES` times each). A worker that cannot
be restarted any more is dropped and the driver sends its tasks to the others. The driver drops records of
objects it already has (``runner._evaluate``), so nothing is lost or duplicated. ``run.json`` records both
(``sessions[].executor.restarted_workers`` and ``.resubmitted_tasks``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from benchmark.evaluation.executors import EvalWorker, ImageTask, WorkerSetup
from objascale.cluster import ClusterError, check_shared_path, connect, describe_cluster, node_label

IN_FLIGHT = 2  # tasks queued per worker: the next image is ready when one finishes
ACTOR_RESTARTS = 4
TASK_RETRIES = 3


class _EvalActor:
    """The Ray actor around an :class:`EvalWorker`. A failing construction (missing checkpoint, unreadable dataset)
    is kept and raised by :meth:`describe`, so the driver reports the real error instead of a dead actor."""

    def __init__(self, setup: WorkerSetup) -> None:
        import ray

        self.node = node_label(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())
        self.error: BaseException | None = None
        try:
            self.worker = EvalWorker(setup, node=self.node)
        except Exception as exc:  # noqa: BLE001 - re-raised by describe() on the driver's first call
            self.error = exc

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        from benchmark import __version__

        return {"node": self.node, "pid": os.getpid(), "flipbench": __version__,
                "models": self.worker.describe_models(), "restarted": self.restarted()}

    def restarted(self) -> bool:
        """Whether this worker is a restart (Ray re-created it after its process or node was lost)."""
        import ray

        return bool(ray.get_runtime_context().was_current_actor_reconstructed)

    def run(self, task: ImageTask) -> list[dict]:
        if self.error is not None:
            raise self.error
        return self.worker.run(task)


def _check_same_models(described: list[dict[str, Any]]) -> None:
    """Every worker runs the driver's flipbench version and the same model weights (checkpoints are usually in each
    node's own cache: a node with another file at the same path must not add its records to the run)."""
    from benchmark import __version__
    from benchmark.evaluation.store import _model_identity

    reference = {name: _model_identity(d) for name, d in described[0]["models"].items()}
    for worker in described:
        if worker["flipbench"] != __version__:
            raise ClusterError(f"the worker on node {worker['node']} runs flipbench {worker['flipbench']}, the driver "
                               f"{__version__}: install the same version on every node")
        identity = {name: _model_identity(d) for name, d in worker["models"].items()}
        if identity != reference:
            differ = sorted(n for n in reference if identity.get(n) != reference[n])
            raise ClusterError(f"the worker on node {worker['node']} has other weights for {differ} than the worker on "
                               f"node {described[0]['node']} ({identity.get(differ[0]) if differ else identity} vs "
                               f"{reference.get(differ[0]) if differ else reference}): give every node the same "
                               "checkpoint files")


class RayExecutor:
    """``workers`` actors (default: one per CPU of the cluster, or per ``gpus_per_worker`` GPUs) on the cluster at
    ``address``, each with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (then the models run on CUDA)."""

    def __init__(self, setup: WorkerSetup, address: str, workers: int | None = None, gpus_per_worker: float = 0,
                 cpus_per_worker: float = 1) -> None:
        ray = connect(address)
        self.ray = ray
        cluster = describe_cluster()
        if gpus_per_worker > 0 and setup.device == "cpu":
            setup = _with_device(setup, "cuda")
        if setup.device.startswith("cuda") and gpus_per_worker <= 0:
            raise ClusterError("--device cuda on a Ray cluster needs --gpus-per-worker > 0 (the GPU each worker uses)")
        if workers is None:
            workers = int(cluster["gpus"] // gpus_per_worker) if gpus_per_worker > 0 else int(
                cluster["cpus"] // cpus_per_worker)
        needed = {"CPU": workers * cpus_per_worker, "GPU": workers * gpus_per_worker}
        have = {"CPU": cluster["cpus"], "GPU": cluster["gpus"]}
        short = [f"{need:g} {kind} (the cluster has {have[kind]:g})" for kind, need in needed.items()
                 if need > have[kind]]
        if workers < 1 or short:
            raise ClusterError(f"{workers} workers need {', '.join(short) or 'at least one worker'}; "
                               "lower --workers or --gpus-per-worker")
        check_shared_path(setup.dataset_path, write=False, what="the dataset")
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=ACTOR_RESTARTS,
                                 max_task_retries=TASK_RETRIES)(_EvalActor)
        self.actors = [actor_class.options(scheduling_strategy="SPREAD").remote(setup) for _ in range(workers)]
        self.info = {"kind": "ray", "address": address, "workers": workers, "cpus_per_worker": cpus_per_worker,
                     "gpus_per_worker": gpus_per_worker, "cluster": cluster, "restarted_workers": 0,
                     "resubmitted_tasks": 0}
        try:
            described = self._get([actor.describe.remote() for actor in self.actors])
        except BaseException:
            self.close()
            raise
        self.info["worker_nodes"] = sorted(d["node"] for d in described)
        try:
            _check_same_models(described)
        except ClusterError:
            self.close()
            raise
        self.models = described[0]["models"]

    def _get(self, refs):
        """``ray.get`` that raises a task's own exception (ValueError, MissingCheckpointError, ...) unwrapped."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc.as_instanceof_cause()) from None

    def describe_models(self) -> dict[str, dict]:
        return self.models

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    def map(self, tasks: Iterable[ImageTask]) -> Iterator[tuple[ImageTask, list[dict]]]:
        lost = (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.NodeDiedError, self.ray.exceptions.ObjectLostError)
        queue = deque((task, 0) for task in tasks)
        in_flight: dict[Any, tuple[ImageTask, int, int]] = {}  # ref -> (task, resubmissions so far, actor)
        load = {actor: 0 for actor in range(len(self.actors))}  # the usable workers and their queued tasks

        def submit() -> None:
            actor = min(load, key=load.__getitem__)
            task, tries = queue.popleft()
            in_flight[self.actors[actor].run.remote(task)] = (task, tries, actor)
            load[actor] += 1

        try:
            while queue and min(load.values()) < IN_FLIGHT:
                submit()
            while in_flight:
                (ref,), _ = self.ray.wait(list(in_flight), num_returns=1)
                task, tries, actor = in_flight.pop(ref)
                if actor in load:
                    load[actor] -= 1
                try:
                    records = self._get(ref)
                except lost as exc:  # Ray's restarts and retries of this worker are spent: the others take over
                    load.pop(actor, None)
                    if not load or tries >= TASK_RETRIES:
                        raise ClusterError(f"image {task.image_index} of model {task.model!r} lost its worker and "
                                           f"cannot be run again ({len(load)} workers left): "
                                           f"{type(exc).__name__}: {exc}") from None
                    self.info["resubmitted_tasks"] += 1
                    queue.appendleft((task, tries + 1))
                else:
                    yield task, records
                while queue and load and min(load.values()) < IN_FLIGHT:
                    submit()
        finally:
            for ref in in_flight:  # stopped early (an error, Ctrl-C): queued images are not needed any more
                try:
                    self.ray.cancel(ref, force=False)
                except Exception:  # noqa: BLE001 - already finished or its worker is gone
                    pass
            self._count_restarts()

    def _count_restarts(self) -> None:
        refs = [actor.restarted.remote() for actor in self.actors]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=30)
        restarted = 0
        for ref in ready:
            try:
                restarted += bool(self.ray.get(ref))
            except Exception:  # noqa: BLE001 - a worker gone for good: not counted
                pass
        self.info["restarted_workers"] = restarted

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            self.ray.kill(actor, no_restart=True)
        self.actors = []


def _with_device(setup: WorkerSetup, device: str) -> WorkerSetup:
    from dataclasses import replace

    return replace(setup, device=device)
