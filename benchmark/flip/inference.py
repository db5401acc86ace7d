"""The three ways FLIP turns an encoded object into a mask at native resolution (official
``model/scripts/evaluate_single_hdf5.py``):

* ``full``: query every pixel (``predict_mask_full``); pixel (i, j) is asked at
  ``(linspace(-1, 1, W)[j] * W/256, linspace(-1, 1, H)[i] * H/256)`` (the official (W-1) convention);
* ``window``: query only the pixels of the 5-sigma box around the prompt, at ``(j/128 - W/256, i/128 - H/256)``;
  pixels outside stay background (``predict_mask_optimized``, the script's ``--optimized``);
* ``hierarchical``: query a coarse grid over the 5-sigma box, then repeatedly upsample the probabilities
  bilinearly and re-query only uncertain cells (``predict_mask_hirachical`` + ``encoder.inference``); the box's last
  row and column stay background, as in the official code.

All objects of an image are decoded together: queries of several objects share each forward chunk (one segment
per object), and at most ``chunk_size`` query points per worker are in flight, so memory stays bounded for any
image size. With ``workers > 1`` the chunks are decoded by that many Python threads (PyTorch releases the GIL in its
kernels); run them with single-threaded PyTorch ops (see ``FlipPredictor``): many small independent chunks balance
over the cores even when another process holds one, where the ops' own parallel loops wait for the slowest core.
Positions handed in here are in the **normalized** frame (``rho_to_position`` output, float32 [B, 6]);
:func:`model_position` converts them to the model frame.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.flip.config import FlipConfig
from benchmark.flip.encoder import FlipEncoder
from benchmark.flip.mask_decoder import ObjectMemory

MODES = ("full", "window", "hierarchical")
DEFAULT_CHUNK_SIZE = 8192


def default_chunk_size(config: FlipConfig, device: torch.device | str = "cpu") -> int:
    """Query points per forward chunk such that the widest per-point activation (the feed-forward hidden layer)
    stays near 2 MiB in float32 on the CPU: 2048 points for FLIP-Tiny, 256 for FLIP-Large (measured on FLIP-Tiny
    with the native attention: 2048 and 1024 points took 15 % less time per point than 8192). On CUDA 256 MiB (262,144 points for FLIP-Tiny): fewer,
    larger kernel launches and host syncs."""
    width = config.channels * config.mlp_expansion
    if torch.device(device).type == "cuda":
        return max(1024, 2**21 // width) * 32
    return max(256, 2**19 // width)


def model_position(position: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalized-frame positions float32 [B, 6] -> model frame (times W/256, H/256, W/256, H/256, 1, 1)."""
    scale = torch.tensor([width / 256, height / 256, width / 256, height / 256, 1.0, 1.0],
                         dtype=torch.float32, device=position.device)
    return position.to(torch.float32) * scale


@dataclass
class QuerySet:
    """Query points of one object: cells of the grid ``xs`` (columns) x ``ys`` (rows), row-major flat index
    ``i * len(xs) + j`` at model-frame point ``(xs[j], ys[i])``; all cells, or only ``indices`` (int64 [m])."""

    obj: int
    xs: torch.Tensor
    ys: torch.Tensor
    indices: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.indices.shape[0]) if self.indices is not None else self.xs.shape[0] * self.ys.shape[0]

    def coords(self, start: int, stop: int) -> torch.Tensor:
        """float32 [stop - start, 2] model-frame points of queries ``start:stop``."""
        if self.indices is not None:
            flat = self.indices[start:stop]
        else:
            flat = torch.arange(start, stop, device=self.xs.device)
        w = self.xs.shape[0]
        return torch.stack((self.xs[flat % w], self.ys[flat // w]), dim=1)


#: with several workers, chunks are split no finer than this many points (a chunk's fixed costs stay small)
MIN_PARALLEL_CHUNK = 512


def balanced_chunk_size(total: int, chunk_size: int, workers: int) -> int:
    """Points per chunk for ``total`` query points: ``chunk_size`` with one worker (unchanged); with several, the
    equal size (at most ``chunk_size``) that makes the number of chunks a multiple of ``workers`` where chunks of
    at least :data:`MIN_PARALLEL_CHUNK` points allow, so no worker idles through a short last round (e.g. 7
    chunks on 2 threads take 4 rounds, 8 smaller ones 4 shorter ones; one chunk would keep a thread idle)."""
    if workers == 1 or total <= 0:
        return chunk_size
    count = -(-total // chunk_size)
    balanced = -(-count // workers) * workers
    count = max(count, min(balanced, total // MIN_PARALLEL_CHUNK))
    return -(-total // count)


def decode_query_sets(model: FlipEncoder, memory: ObjectMemory, sets: Sequence[QuerySet],
                      chunk_size: int = DEFAULT_CHUNK_SIZE, as_mask: bool = False,
                      workers: int = 1) -> list[torch.Tensor]:
    """Logits (float32) or ``logits > 0`` (bool, if ``as_mask``) of every query set, each ``[set.size]``.

    Consecutive sets share forward chunks of at most ``chunk_size`` points; ``workers`` threads decode chunks
    concurrently (each chunk's result does not depend on the others), chunks balanced over them
    (:func:`balanced_chunk_size`).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    device = memory.keys.device
    dtype = torch.bool if as_mask else torch.float32
    outputs = [torch.empty(s.size, dtype=dtype, device=device) for s in sets]
    chunk_size = balanced_chunk_size(sum(s.size for s in sets), chunk_size, workers)

    def chunks():
        """Lists of ``(set index, start, stop)`` pieces, at most ``chunk_size`` points per list."""
        pending: list[tuple[int, int, int]] = []
        filled = 0
        for k, query_set in enumerate(sets):
            start, size = 0, query_set.size
            while start < size:
                take = min(size - start, chunk_size - filled)
                pending.append((k, start, start + take))
                start += take
                filled += take
                if filled == chunk_size:
                    yield pending
                    pending, filled = [], 0
        if pending:
            yield pending

    def decode(pieces: list[tuple[int, int, int]]) -> None:
        coords = torch.cat([sets[k].coords(a, b) for k, a, b in pieces])
        logits = model.decode(memory, coords, [(sets[k].obj, b - a) for k, a, b in pieces])
        offset = 0
        for k, a, b in pieces:
            piece = logits[offset:offset + b - a]
            outputs[k][a:b] = piece > 0 if as_mask else piece
            offset += b - a

    work = list(chunks())
    if workers == 1 or len(work) <= 1:
        for pieces in work:
            decode(pieces)
        return outputs
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def decode_in_caller_mode(pieces: list[tuple[int, int, int]]) -> None:  # autograd modes are thread-local
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            decode(pieces)

    for _ in _pool(workers).map(decode_in_caller_mode, work):  # disjoint output slices; re-raises a worker's error
        pass
    return outputs


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` decoding threads, started on first use and kept (starting a pool per
    call cost about 0.2 ms, several times per object in hierarchical mode). Keyed by process id too: a forked
    child has none of its parent's threads, so it starts its own pool."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flip-decode")
        return pool


def full_grid(height: int, width: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Query axes of the full path: xs float32 [W], ys float32 [H] (model frame, official (W-1) convention)."""
    xs = torch.linspace(-1, 1, width, device=device) * (width / 256)
    ys = torch.linspace(-1, 1, height, device=device) * (height / 256)
    return xs, ys


def full_logits(model: FlipEncoder, memory: ObjectMemory, height: int, width: int,
                chunk_size: int = DEFAULT_CHUNK_SIZE, as_mask: bool = False, workers: int = 1) -> torch.Tensor:
    """Every pixel of every object: float32 logits (or bool masks if ``as_mask``) ``[B, H, W]``."""
    xs, ys = full_grid(height, width, memory.keys.device)
    sets = [QuerySet(b, xs, ys) for b in range(memory.num_objects)]
    return torch.stack(decode_query_sets(model, memory, sets, chunk_size, as_mask, workers)).view(
        -1, height, width)


def sigma_box(position: Sequence[float], height: int, width: int,
              sigmas: float = 5.0) -> tuple[int, int, int, int] | None:
    """Official 5-sigma pixel box ``(x_min, y_min, x_max, y_max)`` of a normalized-frame position, or None when
    empty. ``sigma_iso = max(sigma_x W/2, sigma_y H/2)`` (no sqrt(2), unlike the sampler); Python float64
    arithmetic on the float32 values, truncation by ``int``, clamped to the image."""
    mu_x, mu_y, sigma_x, sigma_y = (float(v) for v in position[:4])
    mu_x_img = (mu_x + 1) * width / 2
    mu_y_img = (mu_y + 1) * height / 2
    sigma_iso = max(sigma_x * width / 2, sigma_y * height / 2)
    x_min = max(0, int(mu_x_img - sigmas * sigma_iso))
    y_min = max(0, int(mu_y_img - sigmas * sigma_iso))
    x_max = min(width - 1, int(mu_x_img + sigmas * sigma_iso))
    y_max = min(height - 1, int(mu_y_img + sigmas * sigma_iso))
    if x_min >= x_max or y_min >= y_max:
        return None
    return x_min, y_min, x_max, y_max


def window_masks(model: FlipEncoder, memory: ObjectMemory, positions: np.ndarray, height: int, width: int,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, sigmas: float = 5.0, workers: int = 1) -> torch.Tensor:
    """bool [B, H, W]: logits > 0 inside each object's 5-sigma box (inclusive), background elsewhere."""
    device = memory.keys.device
    masks = torch.zeros(memory.num_objects, height, width, dtype=torch.bool, device=device)
    boxes, sets = [], []
    for b, position in enumerate(positions):
        box = sigma_box(position, height, width, sigmas)
        if box is None:
            continue
        x_min, y_min, x_max, y_max = box
        xs = torch.arange(x_min, x_max + 1, device=device, dtype=torch.float32)
        ys = torch.arange(y_min, y_max + 1, device=device, dtype=torch.float32)
        xs = (xs / (width / 2) - 1) * (width / 256)
        ys = (ys / (height / 2) - 1) * (height / 256)
        boxes.append((b, box))
        sets.append(QuerySet(b, xs, ys))
    inside_boxes = decode_query_sets(model, memory, sets, chunk_size, as_mask=True, workers=workers)
    for (b, (x_min, y_min, x_max, y_max)), inside in zip(boxes, inside_boxes):
        masks[b, y_min:y_max + 1, x_min:x_max + 1] = inside.view(y_max - y_min + 1, x_max - x_min + 1)
    return masks


@dataclass
class HierarchicalPlan:
    """Refinement schedule of one object: pixel box ``box_px`` (x_min, y_min, x_max, y_max), the same box in the
    model frame (``bbox``) and the grid ``sizes`` (height, width) per level; the last is the box size."""

    box_px: tuple[int, int, int, int]
    bbox: tuple[float, float, float, float]
    sizes: list[tuple[int, int]]


def hierarchical_plan(position: Sequence[float], height: int, width: int, num_mask_tokens: int = 2048,
                      scale_factor: float = 3.0, sigmas: float = 5.0) -> HierarchicalPlan | None:
    """The official level schedule (``predict_mask_hirachical``) for a normalized-frame position; None if the
    5-sigma box is empty. The first grid has about ``num_mask_tokens`` cells (aspect ratio of the box kept, or the
    box itself when that is small); each level grows by about ``scale_factor``; the last is the box size."""
    if scale_factor <= 1 or num_mask_tokens < 1:
        raise ValueError(f"need scale_factor > 1 and num_mask_tokens >= 1, got {scale_factor}, {num_mask_tokens}")
    box = sigma_box(position, height, width, sigmas)
    if box is None:
        return None
    x_min, y_min, x_max, y_max = box
    box_h, box_w = y_max - y_min, x_max - x_min
    init_w = init_h = int(num_mask_tokens**0.5)
    if box_w > box_h:
        init_w = int(init_w * box_w / box_h)
    elif box_h > box_w:
        init_h = int(init_h * box_h / box_w)
    if init_w * scale_factor**0.5 > box_w or init_h * scale_factor**0.5 > box_h:
        init_w, init_h = box_w, box_h
    init_size, box_size = max(init_w, init_h), max(box_w, box_h)
    levels = math.floor(math.log(box_size / init_size, scale_factor))
    if levels > 0:
        scale_factor = (box_size / init_size) ** (1 / levels)
    sizes = [(init_h, init_w)]
    sizes += [(int(init_h * scale_factor**i), int(init_w * scale_factor**i)) for i in range(1, levels)]
    if sizes[-1][0] < box_h or sizes[-1][1] < box_w:
        sizes.append((box_h, box_w))
    bbox = (x_min / 128 - width / 256, y_min / 128 - height / 256, x_max / 128 - width / 256,
            y_max / 128 - height / 256)
    return HierarchicalPlan(box, bbox, sizes)


@dataclass
class Refinement:
    """Result of hierarchical refinement for one object: ``probs`` float32 [h * w] on the last grid (row-major)
    and, per level, the flat cell ``indices`` (int64) that were queried (possibly none) and their ``logits``."""

    probs: torch.Tensor
    levels: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def refine(model: FlipEncoder, memory: ObjectMemory, objects: Sequence[int], plans: Sequence[HierarchicalPlan],
           uncertain_threshold: float = 0.01, chunk_size: int = DEFAULT_CHUNK_SIZE,
           max_uncertain: int = 1_000_000, workers: int = 1) -> list[Refinement]:
    """Hierarchical refinement (official ``SparseMaskExtraction.inference``) for ``objects`` with ``plans``.

    Level 0 queries every cell; each next level bilinearly resizes the probabilities (align_corners=False) and
    re-queries cells with ``t < p < 1 - t``; ``t`` doubles (for that object, from then on) while more than
    ``max_uncertain`` cells qualify. All objects' queries of a level are decoded together.
    """
    device = memory.keys.device
    thresholds = [float(uncertain_threshold)] * len(plans)
    results = [Refinement(torch.empty(0, device=device)) for _ in plans]
    axes = []
    for plan in plans:
        x0, y0, x1, y1 = plan.bbox
        axes.append([(torch.linspace(x0, x1, w, device=device), torch.linspace(y0, y1, h, device=device))
                     for h, w in plan.sizes])
    for level in range(max(len(p.sizes) for p in plans) if plans else 0):
        active = [k for k, p in enumerate(plans) if level < len(p.sizes)]
        sets = []
        for k in active:
            xs, ys = axes[k][level]
            if level == 0:
                sets.append(QuerySet(objects[k], xs, ys))
                continue
            h, w = plans[k].sizes[level]
            probs = F.interpolate(results[k].probs.view(1, 1, *plans[k].sizes[level - 1]), size=(h, w),
                                  mode="bilinear", align_corners=False).view(-1)
            results[k].probs = probs
            t = thresholds[k]
            uncertain = (probs > t) & (probs < 1 - t)
            while int(uncertain.sum()) > max_uncertain:
                t *= 2
                uncertain = (probs > t) & (probs < 1 - t)
            thresholds[k] = t
            sets.append(QuerySet(objects[k], xs, ys, torch.nonzero(uncertain).view(-1)))
        for k, query_set, logits in zip(active, sets, decode_query_sets(model, memory, sets, chunk_size,
                                                                        workers=workers)):
            if level == 0:
                results[k].probs = torch.sigmoid(logits)
            elif query_set.size:
                results[k].probs[query_set.indices] = torch.sigmoid(logits)
            indices = query_set.indices if query_set.indices is not None else torch.arange(
                query_set.size, device=device)
            results[k].levels.append((indices, logits))
    return results


def hierarchical_masks(model: FlipEncoder, memory: ObjectMemory, positions: np.ndarray, height: int, width: int,
                       num_mask_tokens: int = 2048, scale_factor: float = 3.0, uncertain_threshold: float = 0.01,
                       chunk_size: int = DEFAULT_CHUNK_SIZE, sigmas: float = 5.0, workers: int = 1) -> torch.Tensor:
    """bool [B, H, W]: refined probability > 0.5 inside ``[y_min:y_max, x_min:x_max]`` of each 5-sigma box."""
    device = memory.keys.device
    masks = torch.zeros(memory.num_objects, height, width, dtype=torch.bool, device=device)
    objects, plans = [], []
    for b, position in enumerate(positions):
        plan = hierarchical_plan(position, height, width, num_mask_tokens, scale_factor, sigmas)
        if plan is not None:
            objects.append(b)
            plans.append(plan)
    for b, plan, result in zip(objects, plans, refine(model, memory, objects, plans, uncertain_threshold,
                                                      chunk_size, workers=workers)):
        x_min, y_min, x_max, y_max = plan.box_px
        masks[b, y_min:y_max, x_min:x_max] = (result.probs > 0.5).view(y_max - y_min, x_max - x_min)
    return masks


def predict_masks(model: FlipEncoder, memory: ObjectMemory, positions: np.ndarray, height: int, width: int,
                  mode: str, chunk_size: int = DEFAULT_CHUNK_SIZE, sigmas: float = 5.0,
                  workers: int = 1) -> torch.Tensor:
    """bool [B, H, W] masks of the encoded objects in ``mode`` (one of :data:`MODES`); ``positions``: float32
    [B, 6] normalized frame; ``sigmas``: half-size of the window / refinement box in units of the larger sigma;
    ``workers``: threads decoding query chunks concurrently."""
    if mode == "full":
        return full_logits(model, memory, height, width, chunk_size, as_mask=True, workers=workers)
    if mode == "window":
        return window_masks(model, memory, positions, height, width, chunk_size, sigmas, workers)
    if mode == "hierarchical":
        return hierarchical_masks(model, memory, positions, height, width, chunk_size=chunk_size, sigmas=sigmas,
                                  workers=workers)
    raise ValueError(f"unknown FLIP inference mode {mode!r}; expected one of {MODES}")
