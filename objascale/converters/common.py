"""The conversion loop shared by every source: subset selection, streaming writes, progress, skip accounting.

A source (``objascale/converters/<name>.py``) lists its image keys cheaply (from annotation files, without
touching pixels) and loads one image at a time; the loop writes each loaded image immediately, so memory stays
bounded by the annotation index plus one image and the writer's small buffer, whatever the dataset size.

Problems are never fatal for the whole run: an unreadable/missing image raises :class:`SkipImage` and is counted;
an unusable annotation is reported by the source as a skipped instance. The :class:`ConversionReport` summarises
both (counts per reason and a few examples) and is stored in the output's provenance.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from objascale.hdf5_writer import FlipH5Writer, encode_image, official_file_name

__all__ = ["SkipImage", "Loaded", "Source", "ConversionReport", "select_subset", "convert", "load_rgb"]

#: examples kept per skip reason in the report
MAX_EXAMPLES = 5


class SkipImage(Exception):
    """Raised by a source when an image cannot be converted (missing/corrupt file, no usable instance, ...).

    ``reason`` is a short category used for counting (e.g. ``"missing image file"``); ``detail`` the specifics.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Loaded:
    """One image ready to write: uint8 ``[H, W, 3]`` RGB, bool ``[H, W]`` masks, writer ``info``, and the instances
    the source dropped as ``(reason, detail)`` pairs."""

    rgb: np.ndarray
    masks: list[np.ndarray]
    info: dict[str, Any]
    skipped_instances: list[tuple[str, str]] = field(default_factory=list)


class Source(Protocol):
    """What a converter provides to :func:`convert`."""

    dataset_name: str  # e.g. "coco-val2017" (file name and /metadata dataset_name)
    dataset_type: str  # e.g. "val2017" (/metadata type)
    licenses: list[dict[str, Any]]  # licence table; info["license"] ids point into it
    provenance: dict[str, Any]  # source paths, protocol (split, crowd handling, min area, ...), licence

    def image_keys(self) -> Sequence[Hashable]: ...

    def load(self, key: Hashable) -> Loaded: ...

    # optional: ``close()`` releases files the source keeps open; convert() calls it when present.


@dataclass
class ConversionReport:
    """Outcome of a conversion (stored in the output's provenance and printed by the CLI)."""

    output: str = ""
    images_selected: int = 0
    images_written: int = 0
    instances_written: int = 0
    skipped_images: Counter = field(default_factory=Counter)
    skipped_instances: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0

    def skip(self, kind: str, reason: str, where: str) -> None:
        (self.skipped_images if kind == "image" else self.skipped_instances)[reason] += 1
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(where)

    @property
    def instances_per_second(self) -> float:
        return self.instances_written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self, timing: bool = True) -> dict[str, Any]:
        """Summary as a JSON-able dict; ``timing=False`` leaves out the run time (keeps outputs reproducible)."""
        out = {
            "output": self.output,
            "images_selected": self.images_selected,
            "images_written": self.images_written,
            "instances_written": self.instances_written,
            "skipped_images": dict(self.skipped_images),
            "skipped_instances": dict(self.skipped_instances),
            "skip_examples": {k: list(v) for k, v in self.examples.items()},
        }
        if timing:
            out.update(seconds=round(self.seconds, 3), instances_per_second=round(self.instances_per_second, 2))
        return out


def select_subset(keys: Sequence[Hashable], limit: int | None, seed: int) -> list[Hashable]:
    """All ``keys``, or ``limit`` of them drawn at random with ``seed`` (kept in source order). Deterministic."""
    keys = list(keys)
    if limit is None or limit >= len(keys):
        return keys
    if limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    chosen = np.random.default_rng(seed).choice(len(keys), size=limit, replace=False)
    return [keys[k] for k in sorted(chosen.tolist())]


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as uint8 ``[H, W, 3]`` RGB with Pillow (``.convert("RGB")``, as the official converter;
    EXIF orientation is not applied, matching the annotation frame). Raises :class:`SkipImage` when the file is
    missing or unreadable."""
    if not path.is_file():
        raise SkipImage("missing image file", str(path))
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SkipImage("unreadable image file", f"{path}: {exc}") from exc


_WORKER_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source


def _prepare(key: Hashable, source: Source | None = None) -> tuple:
    """Load and encode one image: ``(key, SkipImage | None, EncodedImage | None, info, skipped_instances)``."""
    src = source if source is not None else _WORKER_SOURCE
    try:
        item = src.load(key)
    except SkipImage as exc:
        return key, exc, None, None, []
    try:
        encoded = encode_image(item.rgb, item.masks) if item.masks else None
    except ValueError as exc:  # e.g. a mask whose size differs from the image: skip the image, keep converting
        return key, SkipImage("image or masks not encodable", str(exc)), None, None, []
    return key, None, encoded, item.info, item.skipped_instances


def convert(
    source: Source,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    extra_provenance: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Convert ``source`` into ``out_dir/{dataset_name}-{dataset_type}-v{N}.hdf5`` (official naming, first free N).

    ``limit``/``seed``: convert a random subset of ``limit`` source images (see :func:`select_subset`); images
    that end up with no instance are skipped, so fewer may be written. ``workers`` > 1 loads and encodes images
    in that many forked processes (output identical, order kept). Raises ``ValueError`` if nothing at all could
    be converted (no file is left behind then).
    """
    from tqdm import tqdm

    keys = select_subset(source.image_keys(), limit, seed)
    path = official_file_name(out_dir, source.dataset_name, source.dataset_type)
    report = ConversionReport(output=str(path), images_selected=len(keys))
    provenance = {**source.provenance, "subset": {"limit": limit, "seed": seed, "images_selected": len(keys)},
                  **dict(extra_provenance or {})}
    start = time.perf_counter()
    writer = FlipH5Writer(path, dataset_name=source.dataset_name, dataset_type=source.dataset_type,
                          licenses=source.licenses, provenance=provenance)
    pool = None
    try:
        if workers > 1:
            pool = mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(source,))
            results = pool.imap(_prepare, keys, chunksize=2)
        else:
            results = (_prepare(key, source) for key in keys)
        bar = tqdm(results, total=len(keys), desc=f"convert {source.dataset_name}", unit="img",
                   disable=not progress, dynamic_ncols=True)
        for key, skip, encoded, info, skipped_instances in bar:
            if skip is not None:
                report.skip("image", skip.reason, f"{key}: {skip.detail}" if skip.detail else str(key))
                continue
            for reason, detail in skipped_instances:
                report.skip("instance", reason, f"image {key}: {detail}")
            if encoded is None:
                report.skip("image", "no usable instance", str(key))
                continue
            writer.add_encoded(encoded, info)
            report.images_written += 1
            report.instances_written += len(encoded.masks)
            bar.set_postfix(instances=report.instances_written, refresh=False)
        report.seconds = time.perf_counter() - start
        if report.images_written == 0:
            writer.abort()
            raise ValueError(f"nothing was converted from {source.dataset_name}: {dict(report.skipped_images)}")
        conversion = report.as_dict(timing=False)
        conversion.pop("output")  # the path is machine-specific; the file knows its own name
        writer.update_provenance({"conversion": conversion})
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()  # reap the workers
        close = getattr(source, "close", None)
        if callable(close):
            close()
    return report
