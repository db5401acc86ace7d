"""Statistics and sanity checks of a FLIP HDF5 dataset (what ``flipbench inspect`` prints).

Counts, image-size and relative-mask-size distributions (log bins), empty masks, and checks: index
consistency (done when the dataset opens), every mask has its image's size (PNG/JPEG headers, all instances),
images decode (a sample), stored ``positions`` and boxes equal the ones recomputed from the decoded masks
(a sample); the dataset card of an ObjaScale run (``card.json`` beside the shards) when there is one. A check
has status ``pass``, ``warn`` or ``fail``; ``fail`` means the file is not usable as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from objascale.codecs import CodecError
from objascale.generator.card import read_card
from objascale.hdf5_reader import FlipDataset, FlipFormatError
from objascale.moments import mask_to_bbox, mask_to_bbox_official, mask_to_rho

__all__ = ["Check", "Inspection", "inspect_dataset", "RELATIVE_SIZE_EDGES", "IMAGE_PIXEL_EDGES", "LONG_SIDE_EDGES"]

#: decade bins of mask area / image area from 1e-7 (ObjaScale reaches 1e-6); < 1e-2 is the "small object" range
#: (< 1 % of the image). As in ``np.histogram`` the last bin is closed: whole-image masks (1.0) count in "[0.1, 1)".
RELATIVE_SIZE_EDGES = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: bins of the long image side in pixels (as the ObjaScale card's)
LONG_SIDE_EDGES = (0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4097, np.inf)
#: image pixel-count bins (powers of 4: 128^2, 256^2, 512^2, 1024^2, 2048^2)
IMAGE_PIXEL_EDGES = (0, 128**2, 256**2, 512**2, 1024**2, 2048**2, np.inf)
#: stored positions may differ from a float64 recomputation by float32 noise
RHO_TOLERANCE = 1e-5


@dataclass
class Check:
    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str


@dataclass
class Inspection:
    path: str
    shards: list[str]
    num_images: int
    num_instances: int
    instances_per_image: dict[str, float]
    image_sizes: dict[str, Any]
    image_pixel_hist: list[tuple[str, int]]
    relative_size_hist: list[tuple[str, int]]
    masks_analysed: int
    empty_masks: int
    metadata: dict[str, Any]
    fingerprint: str
    checks: list[Check] = field(default_factory=list)
    #: the ObjaScale dataset card beside the shards (``card.json``), None for other datasets
    card: dict[str, Any] | None = None
    #: long image side histogram (:data:`LONG_SIDE_EDGES`) and instances per category (most frequent first)
    long_side_hist: list[tuple[str, int]] = field(default_factory=list)
    category_counts: list[tuple[str, int]] = field(default_factory=list)
    #: relative mask area of every analysed mask, float64 [masks_analysed] (for comparisons; left out of as_dict)
    relative_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["checks"] = [c.__dict__ for c in self.checks]
        d.pop("relative_sizes")
        return d


def _hist(values: np.ndarray, edges: tuple, fmt) -> list[tuple[str, int]]:
    counts, _ = np.histogram(values, bins=np.asarray(edges, dtype=np.float64))
    labels = [f"[{fmt(lo)}, {fmt(hi)})" for lo, hi in zip(edges[:-1], edges[1:])]
    return list(zip(labels, counts.tolist()))


def _px_label(v: float) -> str:
    return "inf" if not np.isfinite(v) else "0" if v == 0 else f"{int(np.sqrt(v))}^2"


def inspect_dataset(ds: FlipDataset, *, rho_sample: int = 200, mask_sample: int | None = None,
                    seed: int = 0, progress: bool = False) -> Inspection:
    """Analyse ``ds``. ``mask_sample``: decode this many random masks for the size statistics (None = all);
    ``rho_sample``: recompute positions/boxes/image decoding for this many random instances."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    checks: list[Check] = [Check("index consistency", "pass",
                                 f"{ds.num_images} images / {ds.num_instances} instances, ranges consistent")]
    shapes = np.array([ds.image_shape(i) for i in range(ds.num_images)], dtype=np.int64).reshape(-1, 2)
    counts = np.array([len(ds.instance_indices(i)) for i in range(ds.num_images)], dtype=np.int64)

    # every mask has its image's size (headers only)
    bad = [j for j in range(ds.num_instances) if ds.mask_shape(j) != tuple(shapes[ds.image_of(j)])]
    checks.append(Check("masks match image size", "fail" if bad else "pass",
                        f"{len(bad)} mismatching, e.g. instances {bad[:5]}" if bad else f"all {ds.num_instances}"))

    n = ds.num_instances
    analysed = np.arange(n) if mask_sample is None or mask_sample >= n else np.sort(
        rng.choice(n, size=mask_sample, replace=False))
    rel, empty, undecodable = [], [], []
    for j in tqdm(analysed, desc="masks", unit="mask", disable=not progress):
        try:
            m = ds.mask(int(j))
        except CodecError:
            undecodable.append(int(j))
            continue
        area = int(np.count_nonzero(m))
        if area == 0:
            empty.append(int(j))
        rel.append(area / max(m.size, 1))
    if undecodable:
        checks.append(Check("masks decode", "fail", f"{len(undecodable)} undecodable, e.g. {undecodable[:5]}"))
    checks.append(Check("empty masks", "warn" if empty else "pass",
                        f"{len(empty)} empty (the evaluation skips them), e.g. {empty[:5]}" if empty
                        else f"none in {len(analysed)} analysed"))

    checks += _recompute_checks(ds, rng, rho_sample)
    image_sizes = {
        "width": _summary(shapes[:, 1]), "height": _summary(shapes[:, 0]),
        "most_common": _most_common(shapes),
    }
    return Inspection(
        path=str(ds.path), shards=[str(p) for p in ds.shard_paths], num_images=ds.num_images,
        num_instances=ds.num_instances, instances_per_image=_summary(counts), image_sizes=image_sizes,
        image_pixel_hist=_hist(shapes[:, 0] * shapes[:, 1], IMAGE_PIXEL_EDGES, _px_label),
        long_side_hist=_hist(shapes.max(axis=1) if len(shapes) else np.zeros(0), LONG_SIDE_EDGES,
                             lambda v: "inf" if not np.isfinite(v) else f"{v:g}"),
        category_counts=_category_counts(ds),
        relative_sizes=np.asarray(rel, dtype=np.float64),
        relative_size_hist=_hist(np.asarray(rel), RELATIVE_SIZE_EDGES, lambda v: f"{v:g}"),
        masks_analysed=len(rel), empty_masks=len(empty), metadata=ds.metadata, fingerprint=ds.fingerprint(),
        checks=checks, card=read_card(ds.path))


def _category_counts(ds: FlipDataset) -> list[tuple[str, int]]:
    if not ds.num_instances:
        return []
    names, counts = np.unique(np.asarray(ds.categories(), dtype=str), return_counts=True)
    order = sorted(zip(names, counts), key=lambda nc: (-int(nc[1]), str(nc[0])))
    return [(str(n), int(c)) for n, c in order]


def _recompute_checks(ds: FlipDataset, rng: np.random.Generator, k: int) -> list[Check]:
    n = ds.num_instances
    sample = np.arange(n) if k >= n else np.sort(rng.choice(n, size=k, replace=False))
    convention = ds.metadata.get("flipbench_bbox_convention")  # absent in files of the official converter
    rho_err, bad_rho, bad_box, bad_img, no_box = 0.0, [], [], [], False
    for j in map(int, sample):
        try:
            m = ds.mask(j)
        except CodecError:
            continue  # reported by the "masks decode" check
        if not m.any():
            continue
        err = float(np.max(np.abs(mask_to_rho(m) - ds.rho(j))))
        rho_err = max(rho_err, err)
        if not err <= RHO_TOLERANCE:
            bad_rho.append(j)
        try:
            stored = ds.bbox(j)
        except FlipFormatError:
            no_box = True
            continue
        candidates = {"official": mask_to_bbox_official(m), "tight": mask_to_bbox(m)}
        allowed = [candidates[convention]] if convention in candidates else list(candidates.values())
        if not any(np.array_equal(stored, b.astype(np.float32)) for b in allowed):
            bad_box.append(j)
    for i in sorted({ds.image_of(int(j)) for j in sample}):
        try:
            ds.image(i)
        except CodecError:
            bad_img.append(i)
    checks = [
        Check("images decode", "fail" if bad_img else "pass",
              f"{len(bad_img)} undecodable, e.g. {bad_img[:5]}" if bad_img else "all sampled images decode"),
        Check("positions = moments of masks", "fail" if bad_rho else "pass",
              f"{len(bad_rho)}/{len(sample)} sampled differ by > {RHO_TOLERANCE:g}, e.g. {bad_rho[:5]}" if bad_rho
              else f"{len(sample)} sampled, max |diff| {rho_err:.2e}"),
    ]
    if no_box:
        checks.append(Check("boxes = boxes of masks", "warn", "no instance_mask_bboxes dataset"))
    else:
        checks.append(Check("boxes = boxes of masks", "fail" if bad_box else "pass",
                            f"{len(bad_box)}/{len(sample)} sampled differ (convention {convention or 'unknown'}), "
                            f"e.g. {bad_box[:5]}" if bad_box
                            else f"{len(sample)} sampled, convention {convention or 'official or tight'}"))
    return checks


def _summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {"min": float(values.min()), "median": float(np.median(values)), "mean": float(values.mean()),
            "max": float(values.max())}


def _most_common(shapes: np.ndarray, k: int = 5) -> list[tuple[str, int]]:
    if shapes.size == 0:
        return []
    uniq, counts = np.unique(shapes, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:k]
    return [(f"{int(uniq[o][1])}x{int(uniq[o][0])}", int(counts[o])) for o in order]
