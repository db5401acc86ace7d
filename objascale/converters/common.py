"""The conversion loop shared by every source: subset selection, streaming writes, progress, skip accounting.

A source (``objascale/converters/<name>.py``) lists its image keys cheaply (from annotation files, without
touching pixels) and loads one image at a time; the loop writes each loaded image immediately, so memory stays
bounded by the annotation index plus one image and the writer's small buffer, whatever the dataset size.

Problems are never fatal for the whole run: an unreadable/missing image raises :class:`SkipImage` and is counted;
an unusable annotation is reported by the source as a skipped instance; a questionable input that is kept (an
unknown category id, an invalid licence id stored as 0 = unknown) is reported as a warning; entries found bad
while indexing the annotation files (a malformed image entry, an annotation of an image that is not listed) are
reported by the source in ``index_issues``. The :class:`ConversionReport` summarises all of them (counts per
reason and a few examples) and is stored in the output's provenance. One bad entry never aborts the conversion:
an unexpected error while loading one image skips that image (reported with the exception) and the loop goes on.

Untrusted paths: every file a source opens by a name taken from an annotation file goes through :func:`inside`
(no absolute path, no ``..`` and no symlink leading out of the source directory: such images are skipped and
reported as "path outside the source directory"), and through :func:`regular_file` (a FIFO would block the
conversion, a device would be read forever). Images are decoded only after their header passed the size checks
of :mod:`objascale.codecs` (the pixel limit, and the annotation's size where the source knows it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from objascale.codecs import (DENSITY_PREFIX, CodecError, check_declared_size, check_density, header_size,
                              imdecode_checked)
from objascale.hdf5_writer import FlipH5Writer, encode_image, official_file_name

__all__ = ["SkipImage", "Loaded", "Source", "ConversionReport", "select_subset", "convert", "load_rgb",
           "load_label", "inside", "regular_file", "require_file", "licence_id", "source_int"]

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
    the source dropped as ``(reason, detail)`` pairs. ``instances``: one dict per mask, ``category`` /
    ``category_id`` / ``source_id`` from the source (see ``FlipH5Writer.add_image``); empty = unknown."""

    rgb: np.ndarray
    masks: list[np.ndarray]
    info: dict[str, Any]
    skipped_instances: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # kept, but questionable: (reason, detail)
    instances: list[dict[str, Any]] = field(default_factory=list)


class Source(Protocol):
    """What a converter provides to :func:`convert`."""

    dataset_name: str  # e.g. "coco-val2017" (file name and /metadata dataset_name)
    dataset_type: str  # e.g. "val2017" (/metadata type)
    licenses: list[dict[str, Any]]  # licence table; info["license"] ids point into it
    provenance: dict[str, Any]  # source paths, protocol (split, crowd handling, min area, ...), licence

    def image_keys(self) -> Sequence[Hashable]: ...

    def load(self, key: Hashable) -> Loaded: ...

    # optional: ``close()`` releases files the source keeps open; convert() calls it when present.
    # optional: ``index_issues``: list of ``(kind, reason, where)`` found while indexing the annotation files,
    # kind "image" (an image entry dropped), "instance" (an annotation dropped) or "warning" (kept/ignored).


@dataclass
class ConversionReport:
    """Outcome of a conversion (stored in the output's provenance and printed by the CLI)."""

    output: str = ""
    images_selected: int = 0
    images_written: int = 0
    instances_written: int = 0
    skipped_images: Counter = field(default_factory=Counter)
    skipped_instances: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0

    def skip(self, kind: str, reason: str, where: str) -> None:
        """Count one problem: ``kind`` "image" / "instance" (skipped) or "warning" (kept, but questionable)."""
        counters = {"image": self.skipped_images, "instance": self.skipped_instances, "warning": self.warnings}
        counters[kind][reason] += 1
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
            "warnings": dict(self.warnings),
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


def inside(root: Path, relative: str | os.PathLike, what: str = "image") -> Path:
    """``root / relative`` when it stays inside ``root``; raises :class:`SkipImage` ("path outside the source
    directory") for an absolute path, ``..`` components or a symlink leading out of ``root`` (``root`` itself may
    be a symlink). The path need not exist (a missing file is reported by the caller)."""
    rel = Path(relative)
    if not str(relative) or rel.is_absolute() or ".." in rel.parts:
        raise SkipImage("path outside the source directory", f"{what} path {str(relative)!r} is absolute or "
                                                             f"contains '..' (must be relative to {root})")
    path = root / rel
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise SkipImage("path outside the source directory",
                        f"{what} {path} resolves to {real}, outside {real_root} (a symlink?); copy the file into "
                        "the source directory")
    return path


def regular_file(path: Path, what: str = "image") -> Path:
    """``path`` when it is a regular file (or a link to one); raises :class:`SkipImage` "missing {what} file" or
    "{what} is not a regular file" (a FIFO would block, a device never ends)."""
    if path.is_file():
        return path
    if path.exists():
        raise SkipImage(f"{what} is not a regular file", f"{path} (a directory, FIFO or device)")
    raise SkipImage(f"missing {what} file", str(path))


def require_file(path: Path, what: str) -> Path:
    """Constructor check of an input file named on the command line: ``FileNotFoundError`` when missing,
    ``ValueError`` when it is not a regular file (a FIFO or device would block or never end)."""
    if path.is_file():
        return path
    if path.exists():
        raise ValueError(f"{what} {path} is not a regular file (a directory, FIFO or device)")
    raise FileNotFoundError(f"{what} {path} does not exist")


def load_rgb(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as uint8 ``[H, W, 3]`` RGB with Pillow (``.convert("RGB")``, as the official converter;
    EXIF orientation is not applied, matching the annotation frame).

    The header is checked before any pixel is decoded: its size must be within the pixel limit
    (:func:`objascale.codecs.max_image_pixels`) and equal ``expected_hw`` when given (the annotation's size).
    Raises :class:`SkipImage` when the file is missing, not a regular file, unreadable, over the limit
    ("image over the pixel limit") or of another size ("image size differs from annotation")."""
    regular_file(path)
    try:
        with open(path, "rb") as f:
            hw = header_size(f)  # reads the header only
            if expected_hw is not None and hw != tuple(expected_hw):
                raise SkipImage("image size differs from annotation",
                                f"{path}: file {hw}, annotation {tuple(expected_hw)}")
            try:
                check_declared_size(hw)
            except CodecError as exc:
                raise SkipImage("image over the pixel limit", f"{path}: {exc}") from exc
            check_density(f.read(DENSITY_PREFIX), os.fstat(f.fileno()).st_size, hw)
            f.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged above
                with Image.open(f) as im:
                    rgb = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:  # a limit raised above Pillow's own
        raise SkipImage("image over the pixel limit", f"{path}: {exc}") from exc
    except SkipImage:
        raise
    except CodecError as exc:
        raise SkipImage("unreadable image file", f"{path}: {exc}") from exc
    except Exception as exc:  # Pillow raises several types (OSError, SyntaxError, ValueError, struct.error...)
        raise SkipImage("unreadable image file", f"{path}: {type(exc).__name__}: {exc}") from exc
    if rgb.shape[:2] != hw:
        raise SkipImage("unreadable image file", f"{path}: decoded {rgb.shape[:2]}, header {hw}")
    return rgb


def load_label(path: Path, flags: int, expected_hw: tuple[int, int] | None, what: str) -> np.ndarray:
    """Read a label/mask image file with OpenCV (``flags``, e.g. ``cv2.IMREAD_UNCHANGED``) after checking its
    header: within the pixel limit and, when ``expected_hw`` is given, of that size. Raises :class:`SkipImage`
    ("missing {what} file", "{what} size differs from image", "unreadable {what} file")."""
    regular_file(path, what)
    try:
        data = path.read_bytes()
        hw = header_size(data)
    except (OSError, CodecError) as exc:
        raise SkipImage(f"unreadable {what} file", f"{path}: {exc}") from exc
    if expected_hw is not None and hw != tuple(expected_hw):
        raise SkipImage(f"{what} size differs from image", f"{path}: {hw} vs {tuple(expected_hw)}")
    try:
        return imdecode_checked(data, flags, expected_hw)
    except CodecError as exc:
        raise SkipImage(f"unreadable {what} file", f"{path}: {exc}") from exc


def source_int(value: Any) -> int | None:
    """An integer id from an annotation file (a JSON int, or an integral float) within int64, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, np.integer)) and -(2**63) <= int(value) < 2**63:
        return int(value)
    return None


def licence_id(value: Any, known: set[int], warnings_out: list[tuple[str, str]]) -> int:
    """The uint8 licence id of an image entry (0 = unknown for a missing one). An invalid id (not an integer in
    0..255) becomes 0 and an id missing from the licence table is kept; both are added to ``warnings_out``."""
    if value is None:
        return 0
    lid = source_int(value)
    if lid is None or not 0 <= lid <= 255:
        warnings_out.append(("invalid licence id (stored as 0 = unknown)", f"license {value!r}"))
        return 0
    if lid and lid not in known:
        warnings_out.append(("licence id not in the licence table", f"license {lid}"))
    return lid


_WORKER_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source


def _prepare(key: Hashable, source: Source | None = None) -> tuple:
    """Load and encode one image: ``(key, SkipImage | None, EncodedImage | None, info, skipped_instances,
    warnings, instances)``."""
    src = source if source is not None else _WORKER_SOURCE
    try:
        item = src.load(key)
    except SkipImage as exc:
        return key, exc, None, None, [], [], None
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001 - one hostile entry must not abort the whole conversion
        return key, SkipImage("unexpected error loading the image", f"{type(exc).__name__}: {exc}"), None, None, \
            [], [], None
    try:
        encoded = encode_image(item.rgb, item.masks) if item.masks else None
    except ValueError as exc:  # e.g. a mask whose size differs from the image: skip the image, keep converting
        return key, SkipImage("image or masks not encodable", str(exc)), None, None, [], [], None
    return key, None, encoded, item.info, item.skipped_instances, item.warnings, item.instances or None


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
    for kind, reason, where in getattr(source, "index_issues", ()):
        report.skip(kind, reason, where)
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
        for key, skip, encoded, info, skipped_instances, kept_warnings, instances in bar:
            if skip is not None:
                report.skip("image", skip.reason, f"{key}: {skip.detail}" if skip.detail else str(key))
                continue
            for reason, detail in skipped_instances:
                report.skip("instance", reason, f"image {key}: {detail}")
            if encoded is None:
                report.skip("image", "no usable instance", str(key))
                continue
            try:
                writer.add_encoded(encoded, info, instances)  # validates both before touching the file
            except (ValueError, TypeError) as exc:
                report.skip("image", "image info not writable", f"{key}: {exc}")
                continue
            for reason, detail in kept_warnings:
                report.skip("warning", reason, f"image {key}: {detail}")
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
