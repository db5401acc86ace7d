"""``flipbench bench view``: how fast the viewer opens a large run and serves a page of crops (prints figures).

Builds (once, in ``--work``) a dataset of ``--images`` 320x240 images with 10 discs each and a run of ``--rows``
rows over all its objects (records with stored RLE masks: ``images x 10 x rows`` records, 100,000 by default), then
times, in this process: opening the run (``load_runs`` + the viewer's index; imports excluded), one filtered and
sorted page of the object list, and a page of 100 crops fetched from the app served by uvicorn on 127.0.0.1 over
keep-alive connections from this process (the server runs in its own, as a browser would be apart from it), one at
a time and 6 at a time (a browser's connections per host); each page's crops are of
objects not fetched before (no cache helps).
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np

DISCS = 10


def _build(work: Path, images: int, rows: int) -> Path:
    """The dataset and the run in ``work`` (reused when present with the same shape); returns the run folder."""
    from benchmark.evaluation.params import EvalParams
    from benchmark.evaluation.rle import encode_mask
    from benchmark.report.synthetic import make_records, write_run
    from objascale.hdf5_format import FlipDataset, FlipH5Writer

    run_dir = work / f"run-{images}x{rows}"
    if (run_dir / "run.json").is_file():
        return run_dir
    work.mkdir(parents=True, exist_ok=True)
    dataset_path = work / f"discs-{images}.hdf5"
    rng = np.random.default_rng(0)
    h, w = 240, 320
    yy, xx = np.mgrid[:h, :w]
    gts = []
    if not dataset_path.is_file():
        with FlipH5Writer(dataset_path, dataset_name="bench-discs", dataset_type="test",
                          bbox_convention="tight") as writer:
            for i in range(images):
                image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
                masks = []
                for k in range(DISCS):
                    r = 2 + (k * 7 + i) % 25
                    cx, cy = 30 + 28 * k, 40 + (i * 13 + k * 31) % 160
                    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                    for m in masks:
                        m &= ~disc
                    image[disc] = 210
                    masks.append(disc)
                masks = [m if m.any() else ((xx == 0) & (yy == 0)) for m in masks]
                writer.add_image(image, masks, {"file_name": f"bench_{i:06d}.png"},
                                 instances=[{"category": f"class {k % 7}", "source_id": f"disc {k}"}
                                            for k in range(DISCS)])
    dataset = FlipDataset(dataset_path)
    fingerprint = dataset.fingerprint()
    params = EvalParams()
    objects, rles = [], []
    for j in range(dataset.num_instances):
        gt = dataset.mask(j)
        gts.append(int(gt.sum()))
        for m in range(rows):
            pred = np.roll(gt, m, axis=1)  # row m: the truth shifted by m pixels
            inter = int((pred & gt).sum())
            objects.append({"model": f"row{m}", "dataset": "bench-discs", "iou": inter / (2 * gts[-1] - inter),
                            "mask_pixels": gts[-1], "image_index": dataset.image_of(j), "image_width": w,
                            "image_height": h, "category": f"class {j % DISCS % 7}",
                            "dataset_fingerprint": fingerprint, "source_id": f"bench_{dataset.image_of(j):06d} {j}"})
            rles.append(encode_mask(pred))
    records = make_records(objects, protocol_hash=params.protocol_hash())
    records["instance_index"] = [j for j in range(dataset.num_instances) for _ in range(rows)]
    records["pred_rle"] = rles
    records = records.sort_values(["model", "instance_index"], kind="stable").reset_index(drop=True)
    write_run(run_dir, records, params)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["dataset"].update({"path": str(dataset_path), "fingerprint": fingerprint,
                            "num_instances": dataset.num_instances, "num_images": dataset.num_images})
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    return run_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(run_dir: str, port: int) -> None:
    """The viewer on 127.0.0.1:``port`` (the child process of the benchmark)."""
    import uvicorn

    from benchmark.view.app import create_app
    from benchmark.view.index import open_index

    uvicorn.run(create_app(open_index([run_dir])), host="127.0.0.1", port=port, log_level="warning")


@click.command("view")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("results/bench-view"),
              show_default=True, help="Folder for the generated dataset and run (reused).")
@click.option("--images", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Images (10 objects each).")
@click.option("--rows", type=click.IntRange(min=1), default=5, show_default=True, help="Model rows of the run.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Timings per figure.")
def view_bench_cmd(work: Path, images: int, rows: int, repeat: int) -> None:
    """Time opening a large run in the viewer and serving a page of 100 crops (targets: 2 s and 300 ms)."""
    import os

    import threading

    import httpx

    from benchmark.view.index import open_index

    start = time.perf_counter()
    run_dir = _build(work, images, rows)
    click.echo(f"run: {run_dir} ({time.perf_counter() - start:.1f} s to build or find)")
    opens = []
    for _ in range(repeat):
        t = time.perf_counter()
        index = open_index([run_dir])
        opens.append(time.perf_counter() - t)
    records = len(index.combined.records)
    index.close()
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(str(run_dir), port), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(base + "/api/meta", timeout=5).raise_for_status()
            break
        except httpx.HTTPError:
            if time.time() > deadline or not server.is_alive():
                raise click.ClickException("the viewer process did not start")
            time.sleep(0.2)
    label = index.labels[-1]
    lists, seq, par = [], [], []
    local = threading.local()

    def fetch(url: str) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base)
        return local.client.get(url).status_code

    try:
        with httpx.Client(base_url=base) as client, ThreadPoolExecutor(6) as pool:
            for k in range(2 * repeat):
                params = {"label": label, "sort": "iou", "iou_max": 99, "offset": 100 * k, "limit": 100}
                t = time.perf_counter()
                page = client.get("/api/objects", params=params).json()
                lists.append(time.perf_counter() - t)
                urls = [f"/api/crop/{item['key']}.jpg?label={label}" for item in page["items"]]
                t = time.perf_counter()
                if k % 2 == 0:
                    assert all(client.get(u).status_code == 200 for u in urls)
                    seq.append(time.perf_counter() - t)
                else:
                    assert all(code == 200 for code in pool.map(fetch, urls))
                    par.append(time.perf_counter() - t)
    finally:
        server.terminate()
        server.join(10)
    med = statistics.median
    click.echo(f"{records:,} records ({len(index.objects):,} objects x {len(index.labels)} rows), "
               f"{os.cpu_count()} CPUs, uvicorn on 127.0.0.1")
    click.echo(f"open run (load + index):           median {med(opens):6.2f} s   (target < 2 s)")
    click.echo(f"object list, 100 of a sorted page: median {1000 * med(lists):6.1f} ms")
    click.echo(f"100 crops, one at a time:          median {1000 * med(seq):6.1f} ms")
    click.echo(f"100 crops, 6 at a time:            median {1000 * med(par):6.1f} ms   (target < 300 ms)")
