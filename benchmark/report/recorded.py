"""A stored record checked against the dataset it names, before its mask is drawn.

The report's tables need only the records; the gallery, ``flipbench view`` and ``flipbench export fiftyone`` also
open the dataset and draw a record's stored mask (``pred_rle``) over its image. Record files can be edited or
damaged after the run, so before use each record is checked against the dataset: its object exists, its
``image_index`` is the image the dataset puts that object in, its ``(image_height, image_width)`` is that image's
size (read from the image's header, never trusted from the record: a forged size would otherwise allocate the
mask), and its RLE decodes to a mask of that size. A record that fails is a :class:`RecordMismatch` in one line
naming the run, the model and the object; the callers skip it and say so.
"""

from __future__ import annotations

import numpy as np

from benchmark.evaluation.rle import decode_mask


class RecordMismatch(ValueError):
    """A record that does not fit the dataset it names (one line: run, model, object, what differs)."""


def _where(record, run: str | None = None) -> str:
    run = run or record.get("run_dir")
    head = f"{run}: " if run else ""
    return f"{head}the {record.get('model', '?')} record of object {record.get('instance_index', '?')}"


def check_record(dataset, record, run: str | None = None) -> tuple[int, int, int, int]:
    """``(instance_index, image_index, height, width)`` of ``record`` after checking them against ``dataset`` (an
    open :class:`objascale.hdf5_format.FlipDataset`; size from the image header). Raises :class:`RecordMismatch`."""
    where = _where(record, run)
    try:
        j, i = int(record["instance_index"]), int(record["image_index"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordMismatch(f"{where}: its object or image index is unreadable ({exc})") from None
    if not 0 <= j < dataset.num_instances:
        raise RecordMismatch(f"{where}: the dataset has objects 0 to {dataset.num_instances - 1} only")
    actual = dataset.image_of(j)
    if i != actual:
        raise RecordMismatch(f"{where} names image {i}, but the dataset puts that object in image {actual}")
    try:
        h, w = dataset.image_shape(i)
    except ValueError as exc:
        raise RecordMismatch(f"{where}: its image cannot be read: {exc}") from None
    try:
        recorded = (int(record["image_height"]), int(record["image_width"]))
    except (KeyError, TypeError, ValueError):
        recorded = None
    if recorded != (h, w):
        raise RecordMismatch(f"{where} gives the image size {recorded}, but image {i} of the dataset is {h}x{w}")
    return j, i, h, w


def recorded_mask(counts, height: int, width: int, record, run: str | None = None) -> np.ndarray | None:
    """``bool [height, width]``: the stored mask ``counts`` (COCO RLE bytes; None -> None) of ``record``, decoded at
    the size :func:`check_record` returned. Raises :class:`RecordMismatch` for bytes that are not such an RLE."""
    if counts is None:
        return None
    try:
        return decode_mask(counts, height, width)
    except (ValueError, TypeError) as exc:
        raise RecordMismatch(f"{_where(record, run)}: its stored mask is not a COCO RLE of a {height}x{width} mask "
                             f"({exc})") from None
