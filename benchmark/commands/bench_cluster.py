"""``flipbench bench cluster --ray ADDRESS``: local vs Ray throughput of evaluation and generation, Ray's overhead.

Prints figures, asserts nothing. Evaluation: objects/second of the image tasks (models built beforehand; the
build time is shown apart) with the local executor and with 1, 2, ... Ray workers. Generation: images/minute of
``generate objascale`` (small mini-preset renders) with 1 and 2 local bpy workers and 1, 2, ... images at a time
on the cluster (end to end: the driver, workers' bpy start and shard writing included). Overhead: the round trip
of an empty Ray task, one at a time and many at once, and of an empty actor call.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

_COCO_MINI = Path(__file__).resolve().parents[2] / "tests" / "data" / "coco_val2017_mini.hdf5"


def _noop(x=None):
    return x


class _Echo:
    def echo(self, x=None):
        return x


@click.command("cluster")
@click.option("--ray", "ray_address", required=True, metavar="ADDRESS",
              help="The Ray cluster (HOST:PORT or auto) the Ray figures are measured on.")
@click.option("--dataset", type=click.Path(exists=True, path_type=Path),
              default=_COCO_MINI if _COCO_MINI.exists() else None, help="Evaluation dataset [default: COCO mini].")
@click.option("--models", default="grabcut,flip-test", show_default=True, help="Evaluated models.")
@click.option("--workers", "worker_counts", default="1,2", show_default=True, help="Ray worker counts to time.")
@click.option("--images", type=click.IntRange(min=0), default=4, show_default=True,
              help="Images rendered per generation measurement (0 images skips generation).")
@click.option("--side", type=click.IntRange(min=16), default=128, show_default=True, help="Long side of the renders.")
@click.option("--tasks", type=click.IntRange(min=1), default=200, show_default=True,
              help="Empty tasks timed for the overhead.")
def cluster_cmd(ray_address, dataset, models, worker_counts, images, side, tasks) -> None:
    """Local vs Ray: objects/second (eval), images/minute (generate), per-task overhead of Ray."""
    from rich.console import Console
    from rich.table import Table

    from objascale.cluster import connect, describe_cluster

    counts = [int(w) for w in worker_counts.split(",") if w.strip()]
    console = Console()
    ray = connect(ray_address)
    cluster = describe_cluster()
    console.print(f"cluster {ray_address}: {cluster['num_nodes']} nodes, {cluster['cpus']:g} CPUs, "
                  f"{cluster['gpus']:g} GPUs, Ray {cluster['ray_version']}")
    table = Table(title="local vs Ray")
    for col in ("work", "executor", "setup s", "run s", "throughput"):
        table.add_column(col, justify="left" if col in ("work", "executor") else "right")
    if dataset is not None:
        for label, setup_s, run_s, objects in _eval_rows(dataset, models.split(","), ray_address, counts):
            table.add_row(f"eval {models}", label, f"{setup_s:.1f}", f"{run_s:.1f}", f"{objects / run_s:.1f} obj/s")
    if images:
        for label, seconds in _generate_rows(images, side, ray_address, counts):
            table.add_row(f"generate {images} x {side}px", label, "", f"{seconds:.1f}",
                          f"{60 * images / seconds:.1f} img/min")
    console.print(table)
    for label, ms in _overhead(ray, tasks):
        console.print(f"Ray overhead, {label}: {ms:.2f} ms per call")


def _eval_rows(dataset: Path, specs: list[str], address: str, counts: list[int]):
    """(executor, setup seconds, run seconds, objects) of the image tasks of ``specs`` on ``dataset``."""
    from benchmark.evaluation.executors import LocalExecutor, WorkerSetup, plan_tasks
    from benchmark.evaluation.params import EvalParams
    from benchmark.evaluation.ray_executor import RayExecutor
    from benchmark.evaluation.runner import _pending_images
    from benchmark.models import parse_model_spec
    from objascale.hdf5_format import FlipDataset

    data = FlipDataset(dataset)
    names = [parse_model_spec(s)[0] for s in specs]
    setup = WorkerSetup(dataset_path=str(Path(dataset).resolve()), dataset_fingerprint=data.fingerprint(),
                        dataset_name="bench", run_id="bench", models=tuple(zip(names, specs)), params=EvalParams(),
                        allow_random=True)
    tasks = plan_tasks({n: _pending_images(data, set(), None) for n in names}, "sequential")
    objects = sum(len(t.instances) for t in tasks)
    makers = [("local", lambda: LocalExecutor(setup, data))]
    makers += [(f"Ray, {w} worker{'s' * (w > 1)}", lambda w=w: RayExecutor(setup, address, workers=w)) for w in counts]
    for label, make in makers:
        t0 = time.perf_counter()
        executor = make()
        t1 = time.perf_counter()
        for _ in executor.map(tasks):
            pass
        t2 = time.perf_counter()
        executor.close()
        yield label, t1 - t0, t2 - t1, objects


def _generate_rows(images: int, side: int, address: str, counts: list[int]):
    """(executor, seconds) of rendering ``images`` mini-preset images of ``side`` px, fresh run each time."""
    from objascale.generator.config import preset
    from objascale.generator.generate import generate

    cfg = preset("mini").with_overrides(long_side_min=side, long_side_max=side, samples=4, denoise="none",
                                        min_pixels=24)
    runs = [(f"local, {w} bpy worker{'s' * (w > 1)}", {"workers": w}) for w in (1, 2)]
    runs += [(f"Ray, {w} at a time", {"cluster": {"address": address, "cpus_per_render": 1, "workers": w}})
             for w in counts]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-", dir=Path.cwd()) as tmp:  # on the shared path
        for k, (label, kwargs) in enumerate(runs):
            t0 = time.perf_counter()
            generate(Path(tmp) / f"run{k}", images, cfg, progress=False, **kwargs)
            yield label, time.perf_counter() - t0


def _overhead(ray, n: int):
    """Milliseconds per empty task / actor call: sequential round trips and a batch of ``n`` in flight."""
    task = ray.remote(num_cpus=0)(_noop)
    ray.get(task.remote())  # warm: a worker process exists
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get(task.remote())
    yield "empty task, one at a time", 1e3 * (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    ray.get([task.remote(i) for i in range(n)])
    yield f"empty task, {n} at once", 1e3 * (time.perf_counter() - t0) / n
    actor = ray.remote(num_cpus=0)(_Echo).remote()
    ray.get(actor.echo.remote())
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get(actor.echo.remote())
    yield "empty actor call, one at a time", 1e3 * (time.perf_counter() - t0) / n
    ray.kill(actor)
