"""Gallery: crops of chosen objects with the ground truth and every model's stored mask, one figure per dataset.

Predicted masks come from the records (``pred_rle``, COCO RLE, :mod:`benchmark.evaluation.rle`), images and
ground-truth masks from the dataset file recorded in ``run.json`` (``dataset.path``); nothing is re-run. Per
dataset the objects shown are the best, median and worst by mean IoU over the models, the smallest (fewest
ground-truth pixels), and the objects on which two rows' IoUs differ most (pairs of learned rows by default,
``--gallery-pairs A:B`` to choose). Each crop is the ground-truth box
(inclusive XYXY pixels, the box prompt of the record) padded by half its size on every side, at least
:data:`MIN_CROP` pixels wide, clipped to the image.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.figures import save
from benchmark.report.recorded import RecordMismatch, check_record, recorded_mask
from benchmark.report.runs import Combined

MIN_CROP = 48  #: smallest crop side in pixels (tiny objects are shown with some context)
MAX_MODELS = 8  #: model columns per figure (the first ones in report order)
DISAGREEMENTS = 2  #: objects shown where two models' IoUs differ most
GT_COLOUR = "#ffe600"  #: ground truth: bright yellow, unlike any tab10 model colour


@dataclass
class GalleryEntry:
    """One dataset's gallery: a figure (``png`` set) or the reason there is none (``message``)."""

    dataset: str
    png: Path | None = None
    caption: str = ""
    message: str | None = None


def default_pairs(combined: Combined, labels: list[str]) -> list[tuple[str, str]]:
    """Row pairs whose disagreements the gallery shows: pairs of learned rows (FLIP modes among them); only when no
    two learned rows are present, pairs of the weight-free references (never a learned row against a reference,
    which would mostly show the reference's known weakness)."""
    learned = combined.learned_labels(labels)
    if len(learned) >= 2:
        return list(itertools.combinations(learned, 2))
    if learned:
        return []
    return list(itertools.combinations(combined.weight_free_labels(labels), 2))


def parse_pairs(text: str | None, labels: list[str]) -> list[tuple[str, str]] | None:
    """``--gallery-pairs "A:B,C:D"`` -> ``[(A, B), (C, D)]`` (labels as the report names its rows); None when not
    given. Raises ``ValueError`` naming an unknown label."""
    if not text:
        return None
    pairs = []
    for item in text.split(","):
        a, sep, b = item.partition(":")
        a, b = a.strip(), b.strip()
        if not sep or not a or not b:
            raise ValueError(f"--gallery-pairs: {item!r} is not A:B (two row labels separated by ':')")
        for lab in (a, b):
            if lab not in labels:
                raise ValueError(f"--gallery-pairs: no row {lab!r} in these runs; rows: {', '.join(labels)}")
        pairs.append((a, b))
    return pairs


def pick_objects(records: pd.DataFrame, labels: list[str],
                 pairs: list[tuple[str, str]] | None = None) -> list[tuple[int, str]]:
    """``(instance_index, why)`` of the objects to show, from one dataset's records with stored masks.

    Candidates are the objects scored by every one of ``labels``. Order: best, median, worst (mean IoU over the
    labels), smallest (ground-truth pixels), then the :data:`DISAGREEMENTS` objects with the largest IoU difference
    between the two rows of one of ``pairs`` (default: every pair of ``labels``); an object chosen twice is shown
    once with both reasons.
    """
    scored = records[records["iou"].notna() & records["label"].isin(labels)]
    wide = scored.pivot_table(index="instance_index", columns="label", values="iou", aggfunc="first")
    wide = wide.reindex(columns=labels).dropna()
    if wide.empty:
        return []
    mean = wide.mean(axis=1).sort_values(kind="stable")
    pixels = scored.groupby("instance_index")["mask_pixels"].first().reindex(wide.index)
    chosen: dict[int, list[str]] = {}
    for index, why in ((mean.index[-1], f"best (mean IoU {100 * mean.iloc[-1]:.1f})"),
                       (mean.index[len(mean) // 2], f"median (mean IoU {100 * mean.iloc[len(mean) // 2]:.1f})"),
                       (mean.index[0], f"worst (mean IoU {100 * mean.iloc[0]:.1f})"),
                       (pixels.idxmin(), f"smallest ({int(pixels.min())} px)")):
        chosen.setdefault(int(index), []).append(why)
    gaps = []
    for a, b in (itertools.combinations(labels, 2) if pairs is None else pairs):
        if a not in wide.columns or b not in wide.columns:
            continue
        diff = (wide[a] - wide[b]).abs()
        gaps += [(float(d), int(i), a, b) for i, d in diff.items()]
    shown = 0
    for diff, index, a, b in sorted(gaps, key=lambda g: (-g[0], g[1])):
        if shown == DISAGREEMENTS or diff == 0:
            break
        if any(w.startswith("disagree") for w in chosen.get(index, [])):
            continue
        chosen.setdefault(index, []).append(f"disagree: {a} vs {b}, ΔIoU {100 * diff:.1f}")
        shown += 1
    return [(index, "; ".join(whys)) for index, whys in chosen.items()]


def crop_box(record: pd.Series, width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` half-open pixel bounds of the crop around the record's ground-truth box."""
    x0, y0, x1, y1 = (float(record[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
    side_x, side_y = x1 - x0 + 1, y1 - y0 + 1
    pad_x, pad_y = max(side_x / 2, (MIN_CROP - side_x) / 2), max(side_y / 2, (MIN_CROP - side_y) / 2)
    return (max(0, int(np.floor(x0 - pad_x))), max(0, int(np.floor(y0 - pad_y))),
            min(width, int(np.ceil(x1 + 1 + pad_x))), min(height, int(np.ceil(y1 + 1 + pad_y))))


def object_name(record: pd.Series, index: int, image_index: int) -> str:
    """How a gallery row names its object so it can be looked up: category and source id (file name and the
    instance's id in the source) when the dataset records them, plus flipbench's indices."""
    category = str(record.get("category", "unknown") or "unknown")
    source = str(record.get("source_id", "unknown") or "unknown")
    ours = f"object {index}, image {image_index}"
    if source == "unknown":
        return ours if category == "unknown" else f"{category} ({ours})"
    return f"{category}: {source} ({ours})"


def _zoom_inset(ax, image: np.ndarray, pred: np.ndarray, gt: np.ndarray, record: pd.Series, colour) -> None:
    """Nearest-neighbour enlargement of the ground-truth box (plus 2 px) in the top-right corner, so a mask of a
    few pixels and its prediction stay visible in a crop many times larger."""
    x0, y0, x1, y1 = (int(record[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(w, x1 + 3), min(h, y1 + 3)
    inset = ax.inset_axes((0.58, 0.58, 0.4, 0.4))
    _overlay(inset, image[y0:y1, x0:x1], pred[y0:y1, x0:x1], colour, gt[y0:y1, x0:x1])
    for spine in inset.spines.values():
        spine.set_edgecolor("white")
        spine.set_linewidth(1.2)


def _overlay(ax, crop: np.ndarray, mask: np.ndarray, colour, gt: np.ndarray | None) -> None:
    ax.imshow(crop, interpolation="nearest")
    tint = np.zeros((*mask.shape, 4))
    tint[mask] = (*colour[:3], 0.5)
    ax.imshow(tint, interpolation="nearest")
    if gt is not None and gt.any() and not gt.all():
        ax.contour(gt.astype(float), levels=[0.5], colors=GT_COLOUR, linewidths=0.9)
    ax.set_xticks([])
    ax.set_yticks([])


def checked_masks(dataset, records: pd.DataFrame, picks: list[tuple[int, str]], labels: list[str]
                  ) -> tuple[list[tuple[int, str]], dict[int, dict], list[str]]:
    """The picks whose records all fit ``dataset`` (:func:`benchmark.report.recorded.check_record`) and whose
    pixels decode; per kept object ``{"image": uint8 [H, W, 3], "gt": bool [H, W], "masks": {label: bool [H, W]}}``;
    and one line per object left out and why."""
    from objascale.codecs import CodecError

    by_key = records.set_index(["instance_index", "label"], drop=False)
    kept, pictures, problems = [], {}, []
    for index, why in picks:
        try:
            picture = {"masks": {}}
            for label in labels:
                rec = by_key.loc[(index, label)]
                _, i, h, w = check_record(dataset, rec)
                picture["masks"][label] = recorded_mask(rec["pred_rle"], h, w, rec)
            picture["image"], picture["gt"] = dataset.image(i), dataset.mask(index)
        except (RecordMismatch, CodecError) as exc:
            problems.append(f"Gallery: object {index} left out: {exc}")
            continue
        kept.append((index, why))
        pictures[index] = picture
    return kept, pictures, problems


def gallery_figure(records: pd.DataFrame, picks: list[tuple[int, str]], labels: list[str],
                   colours: dict[str, tuple], title: str, pictures: dict[int, dict]) -> Figure:
    """Rows: picked objects; columns: the ground truth, then each label's prediction (tinted) with the ground-truth
    outline (yellow). ``picks`` and ``pictures`` (images, ground truth and stored masks, read from the dataset)
    from :func:`checked_masks`."""
    from matplotlib.colors import to_rgba

    fig = Figure(figsize=(1.9 * (len(labels) + 1) + 0.4, 2.35 * len(picks) + 0.5), layout="constrained")
    rows = np.atleast_1d(fig.subfigures(len(picks), 1))
    by_key = records.set_index(["instance_index", "label"])
    for sub, (index, why) in zip(rows, picks, strict=True):
        first = by_key.loc[(index, labels[0])]
        image_index = int(first["image_index"])
        image = pictures[index]["image"]
        height, width = image.shape[:2]
        x0, y0, x1, y1 = crop_box(first, width, height)
        full_gt = pictures[index]["gt"]
        gt = full_gt[y0:y1, x0:x1]
        # the crop was widened to MIN_CROP around a box under half of it: enlarge the box itself as well
        zoom = max(float(first["box_x1"]) - float(first["box_x0"]), float(first["box_y1"]) - float(first["box_y0"])) \
            + 1 < MIN_CROP / 2
        crop = image[y0:y1, x0:x1]
        row_title = f"{object_name(first, index, image_index)} ({int(first['mask_pixels'])} px): {why}"
        sub.suptitle(textwrap.fill(row_title, width=int(12 * (1.9 * (len(labels) + 1) + 0.4))), fontsize=8, x=0.01,
                     ha="left")
        axes = sub.subplots(1, len(labels) + 1)
        _overlay(axes[0], crop, gt, to_rgba(GT_COLOUR), None)
        if zoom:
            _zoom_inset(axes[0], image, full_gt, full_gt, first, to_rgba(GT_COLOUR))
        axes[0].set_title("ground truth", fontsize=7)
        for ax, label in zip(axes[1:], labels, strict=True):
            rec = by_key.loc[(index, label)]
            full = pictures[index]["masks"][label]
            pred = full[y0:y1, x0:x1]
            _overlay(ax, crop, pred, colours[label], gt)
            if zoom:
                _zoom_inset(ax, image, full, full_gt, first, colours[label])
            outside = int(full.sum()) - int(pred.sum())
            extra = f"\n{outside} px outside the crop" if outside else ""
            # long labels (``sclip-sam2.1 (text, box-selected, loftup, random-init)``) wrap within their column
            ax.set_title(f"{textwrap.fill(label, 30)}\nIoU {100 * float(rec['iou']):.1f}{extra}", fontsize=7,
                         color=colours[label])
    fig.suptitle(title, fontsize=10)
    return fig


def open_recorded_dataset(combined: Combined, name: str, part: pd.DataFrame):
    """The open dataset of ``part``'s records, or the sentence saying why it cannot be read."""
    from objascale.hdf5_format import FlipDataset, FlipFormatError

    fingerprint = str(part["dataset_fingerprint"].iloc[0])
    runs = [r for r in combined.runs if str(r.path) in set(part["run_dir"])]
    recorded = [(r, (r.meta.get("dataset") or {}).get("path")) for r in runs]
    existing = [(r, Path(p)) for r, p in recorded if p and Path(p).exists()]
    if not existing:
        where = "; ".join(f"{p} (recorded in {r.path}/run.json)" for r, p in recorded) or "no path recorded"
        return None, f"The dataset file is not on this machine: {where}. The gallery needs its images."
    run, path = existing[0]
    try:
        dataset = FlipDataset(path)
    except (FlipFormatError, OSError) as exc:
        return None, f"The dataset file {path} (recorded in {run.path}/run.json) cannot be read: {exc}"
    if dataset.fingerprint() != fingerprint:
        dataset.close()
        return None, (f"The dataset file {path} (recorded in {run.path}/run.json) has changed since the evaluation "
                      "(its fingerprint differs); its images would not match the records.")
    return dataset, None


def build_gallery(combined: Combined, out_dir: Path, stems: dict[str, str], colours: dict[str, tuple],
                  gallery_pairs: list[tuple[str, str]] | None = None) -> tuple[list[GalleryEntry], list[Path]]:
    """One :class:`GalleryEntry` per dataset of ``combined``; figures are written as ``gallery_<dataset stem>.png``
    (``stems``: :func:`benchmark.report.figures.unique_slugs`). ``gallery_pairs``: the row pairs whose
    disagreements are shown (default :func:`default_pairs`). Returns the entries and the files."""
    entries, files = [], []
    for name in combined.datasets:
        part = combined.records[combined.records["dataset"] == name]
        with_masks = part[part["pred_rle"].notna()]
        labels = [lab for lab in combined.labels if (with_masks["label"] == lab).any()]
        if not labels:
            entries.append(GalleryEntry(name, message=(
                "No predicted masks are stored in these runs (they were written before flipbench stored masks); "
                "re-run eval to see them.")))
            continue
        note = ""
        if len(labels) > MAX_MODELS:
            note = f" Only the first {MAX_MODELS} of {len(labels)} models are shown."
            labels = labels[:MAX_MODELS]
        pairs = [(a, b) for a, b in (gallery_pairs if gallery_pairs is not None else default_pairs(combined, labels))
                 if a in labels and b in labels]
        picks = pick_objects(with_masks, labels, pairs)
        if not picks:
            entries.append(GalleryEntry(name, message="No object was scored by every model with a stored mask."))
            continue
        dataset, problem = open_recorded_dataset(combined, name, part)
        if dataset is None:
            entries.append(GalleryEntry(name, message=problem))
            continue
        with dataset:
            picks, pictures, problems = checked_masks(dataset, with_masks, picks, labels)
            combined.warnings.extend(problems)
            if not picks:
                entries.append(GalleryEntry(name, message="No object could be shown: the records of every object "
                                            "picked do not fit the dataset (see the warnings)."))
                continue
            fig = gallery_figure(with_masks, picks, labels, colours, f"Gallery — {name}", pictures)
        paths = save(fig, out_dir, f"gallery_{stems[name]}", svg=False)  # photographs: no vector version
        files += paths
        entries.append(GalleryEntry(name, png=paths[0], caption=(
            f"{name}: best, median and worst objects by mean IoU over the models, the smallest object, and the "
            "objects where two models' IoUs differ most. Left: ground truth (yellow); then each model's stored "
            "mask (tinted) with the ground-truth outline (yellow). Crops: the ground-truth box padded by half its "
            f"size, at least {MIN_CROP} px; objects whose box is under {MIN_CROP // 2} px get a nearest-neighbour "
            "zoom of their box (top right, white frame). Each row names the object: category, source file and instance id, and flipbench's "
            "object / image index." + note)))
    return entries, files
