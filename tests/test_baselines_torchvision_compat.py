"""The torchvision shim: pure-torch NMS equals a brute-force reference; the baseline packages import."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import baselines.torchvision_compat as compat


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS, one pair at a time."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(not iou(boxes[i], boxes[k]) > threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng, n):
    xy = rng.uniform(0, 200, size=(n, 2))
    wh = rng.uniform(1, 80, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32), rng.random(n).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.9])
def test_nms_matches_brute_force(seed, threshold):
    boxes, scores = random_boxes(np.random.default_rng(seed), 150)
    expected = brute_force_nms(boxes.astype(np.float64), scores, threshold)
    got = compat.nms_reference(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
    assert got.dtype == torch.int64
    assert got.tolist() == expected


def test_torchvision_ops_use_a_working_nms():
    import torchvision

    boxes, scores = random_boxes(np.random.default_rng(7), 120)
    b, s = torch.from_numpy(boxes), torch.from_numpy(scores)
    assert torchvision.ops.nms(b, s, 0.4).tolist() == brute_force_nms(boxes.astype(np.float64), scores, 0.4)
    # batched: boxes of different classes never suppress each other
    classes = torch.from_numpy(np.random.default_rng(8).integers(0, 3, size=len(scores)))
    kept = set(torchvision.ops.batched_nms(b, s, classes, 0.4).tolist())
    expected = set()
    for c in range(3):
        idx = np.flatnonzero(classes.numpy() == c)
        expected |= {int(idx[k]) for k in brute_force_nms(boxes[idx].astype(np.float64), scores[idx], 0.4)}
    assert kept == expected


def test_nms_edge_cases():
    empty = compat.nms_reference(torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    # identical boxes: only the best survives; degenerate (zero-area) boxes never suppress (NaN IoU), as torchvision
    same = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert compat.nms_reference(same, torch.tensor([0.1, 0.9, 0.5]), 0.5).tolist() == [1]
    point = torch.tensor([[5.0, 5, 5, 5]] * 2)
    assert compat.nms_reference(point, torch.tensor([0.2, 0.3]), 0.5).tolist() == [1, 0]


def test_baseline_packages_import_in_a_fresh_process():
    modules = "torchvision, segment_anything, mobile_sam, timm, ultralytics"
    if importlib.util.find_spec("sam2") is not None:  # optional extra, see pyproject.toml
        modules += ", sam2.build_sam"
    code = f"import baselines.torchvision_compat, {modules}; print('ok', torchvision.__version__)"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "YOLO_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")
