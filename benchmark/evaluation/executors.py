"""Where an evaluation's work runs: the unit of work, the worker that does it, and the local executor.

The unit is an :class:`ImageTask`: the objects of one image, for one model. An :class:`EvalWorker` holds what
doing a task needs (the dataset, every model built once, the record context) and turns a task into records with
:func:`~benchmark.evaluation.evaluate.evaluate_image`; it knows nothing of where it runs. An executor runs a
sequence of tasks on workers and yields ``(task, records)`` as tasks finish:

* :class:`LocalExecutor` (the default): one worker in this process, tasks in the given order; no Ray import;
* :class:`benchmark.evaluation.ray_executor.RayExecutor`: workers are Ray actors on a cluster
  (``flipbench eval --ray``), results in completion order, tasks of a lost worker run again.

Records do not depend on the executor (each object is seeded from the run seed and its index, and each model is
built from the same seed), except the timing columns, ``warmup`` (each worker's first images of each model) and
``device``/``node`` (where the record was made).
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from baselines.base import Predictor
from benchmark.evaluation.evaluate import (
    DatasetLike, RecordContext, configure_predictor, evaluate_image, resolve_prompt, text_vocabulary,
)
from benchmark.evaluation.params import EvalParams
from benchmark.models import build_model

#: task orders: each model over all images in turn, or per image every model in turn (timing under load)
TIMING_MODES = ("sequential", "interleaved")


@dataclass(frozen=True)
class ImageTask:
    """The objects ``instances`` (global instance indices, all of image ``image_index``) for model ``model``."""

    model: str
    image_index: int
    instances: tuple[int, ...]


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build its state (picklable: Ray ships it to the cluster's workers)."""

    dataset_path: str
    dataset_fingerprint: str
    dataset_name: str
    run_id: str
    models: tuple[tuple[str, str], ...]  # (registry name, spec as given) in evaluation order
    params: EvalParams
    device: str = "cpu"
    allow_random: bool = False
    builder: Callable[..., Predictor] = build_model


class Executor(Protocol):
    def describe_models(self) -> dict[str, dict]: ...  # name -> Predictor.describe()
    def describe(self) -> dict[str, Any]: ...  # what run.json's session records about the executor
    def map(self, tasks: Iterable[ImageTask]) -> Iterator[tuple[ImageTask, list[dict]]]: ...
    def close(self) -> None: ...


def build_predictor(spec: str, setup: WorkerSetup) -> Predictor:
    """Build and configure one model; random-init weights are the same in every session and on every worker."""
    import torch

    torch.manual_seed(setup.params.seed)
    predictor = setup.builder(spec, device=setup.device, allow_random=setup.allow_random)
    configure_predictor(predictor, setup.params)
    return predictor


class EvalWorker:
    """Builds every model once (a missing checkpoint fails at once, not hours later) and evaluates tasks.

    ``node``: what the records' ``node`` column says; ``dataset``: an open dataset (else opened from
    ``setup.dataset_path`` and checked against ``setup.dataset_fingerprint``).
    """

    def __init__(self, setup: WorkerSetup, node: str, dataset: DatasetLike | None = None) -> None:
        if dataset is None:
            from objascale.hdf5_format import FlipDataset

            dataset = FlipDataset(setup.dataset_path)
            if dataset.fingerprint() != setup.dataset_fingerprint:
                raise ValueError(f"{setup.dataset_path} on node {node} is another dataset (fingerprint "
                                 f"{dataset.fingerprint()}, the driver's is {setup.dataset_fingerprint}); every node "
                                 "must see the same file at the same path")
        self.setup = setup
        self.dataset = dataset
        self.predictors = {name: build_predictor(spec, setup) for name, spec in setup.models}
        self.prompts = {name: resolve_prompt(p, setup.params) for name, p in self.predictors.items()}
        if any(prompt == "text" for prompt, _ in self.prompts.values()):
            vocabulary = text_vocabulary(dataset)  # the dataset's category names: the class list of text models
            for p in self.predictors.values():  # resolve_prompt refused every model that takes no text
                p.set_vocabulary(vocabulary)
        self.contexts = {
            name: RecordContext(
                run_id=setup.run_id, model=name, weights_kind=p.weights.kind, dataset=setup.dataset_name,
                dataset_fingerprint=setup.dataset_fingerprint, protocol_hash=setup.params.protocol_hash(),
                device=setup.device, node=node, prompt=self.prompts[name][0], selection=self.prompts[name][1],
                precision=getattr(p, "precision", None),
            )
            for name, p in self.predictors.items()
        }
        self.images_done: Counter[str] = Counter()  # per model: its first images are warm-up

    def describe_models(self) -> dict[str, dict]:
        return {name: {**p.describe(), "prompt": self.prompts[name][0], "selection": self.prompts[name][1]}
                for name, p in self.predictors.items()}

    def run(self, task: ImageTask) -> list[dict]:
        warmup = self.images_done[task.model] < self.setup.params.timing_warmup_images
        records = evaluate_image(self.dataset, self.predictors[task.model], task.image_index, task.instances,
                                 self.contexts[task.model], self.setup.params, warmup=warmup)
        self.images_done[task.model] += 1
        return records


class LocalExecutor:
    """One :class:`EvalWorker` in this process; tasks run in the order given (today's behaviour)."""

    def __init__(self, setup: WorkerSetup, dataset: DatasetLike) -> None:
        self.worker = EvalWorker(setup, node=socket.gethostname(), dataset=dataset)

    def describe_models(self) -> dict[str, dict]:
        return self.worker.describe_models()

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": 1}

    def map(self, tasks: Iterable[ImageTask]) -> Iterator[tuple[ImageTask, list[dict]]]:
        for task in tasks:
            yield task, self.worker.run(task)

    def close(self) -> None:
        pass


def plan_tasks(pending: dict[str, list[tuple[int, list[int]]]], timing: str) -> list[ImageTask]:
    """Tasks from each model's ``(image index, instance indices)`` to do, in the order of ``timing``:
    ``sequential`` (model after model, each in image order) or ``interleaved`` (image after image, every model
    in turn on each: a change of machine load then hits every model alike)."""
    if timing not in TIMING_MODES:
        raise ValueError(f"timing must be one of {TIMING_MODES}, got {timing!r}")
    per_model = {m: [ImageTask(m, i, tuple(todo)) for i, todo in items] for m, items in pending.items()}
    if timing == "sequential":
        return [t for tasks in per_model.values() for t in tasks]
    by_image: dict[int, list[ImageTask]] = {}
    for tasks in per_model.values():  # models in evaluation order within each image
        for t in tasks:
            by_image.setdefault(t.image_index, []).append(t)
    return [t for image in sorted(by_image) for t in by_image[image]]
