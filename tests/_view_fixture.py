"""Runs for the viewer tests: a small disc dataset with hostile category and file names, evaluated by the box and
ellipse references in two runs whose folder names hold HTML, '=', spaces and '%'."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.runner import run_evaluation
from benchmark.models import build_model
from objascale.hdf5_format import FlipDataset, FlipH5Writer

HOSTILE = '<img src=x onerror="window.__pwned=1">'
CATEGORIES = ("cat", "dog", HOSTILE)


def make_dataset(path: Path, images: int = 6) -> Path:
    rng = np.random.default_rng(5)
    with FlipH5Writer(path, dataset_name="discs", dataset_type="test", bbox_convention="tight") as writer:
        for i in range(images):
            h, w = 60 + 10 * i, 80
            image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            yy, xx = np.mgrid[:h, :w]
            masks, meta = [], []
            for k in range(3):
                r = 3 + 3 * k + i % 2
                cx, cy = 14 + 25 * k, 15 + 2 * i
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                image[disc] = 200
                masks.append(disc)
                meta.append({"category": CATEGORIES[k], "source_id": f"obj {k}"})
            writer.add_image(image, masks, {"file_name": f"<b>img{i}</b>.png"}, instances=meta)
    return path


def make_runs(root: Path) -> tuple[Path, list[Path]]:
    dataset = make_dataset(root / "discs.hdf5")
    ds = FlipDataset(dataset)
    native = root / '<svg onload=alert(1)> seed=0'
    run_evaluation(ds, dataset, ["box"], native, EvalParams(), builder=build_model, progress=False)
    second = root / "ellipse run %20"
    run_evaluation(ds, dataset, ["ellipse"], second, EvalParams(), builder=build_model, progress=False)
    return dataset, [native, second]
