"""``flipbench export fiftyone``: evaluation runs as a FiftyOne dataset (one sample per image).

FiftyOne samples point at image files, so the images of the recorded datasets are written as JPEG files into
``out_dir/images/<dataset stem>/`` (the only files written; ``out_dir`` must be new or empty). Each sample has

* ``ground_truth``: ``fo.Detections``, one per object: ``label`` = its category, ``bounding_box`` = its tight box in
  FiftyOne's relative ``[x, y, width, height]``, ``mask`` = the mask inside that box, and the attributes
  ``instance_index``, ``source_id``, ``mask_pixels``, ``relative_area``;
* one ``fo.Detections`` field per report row (its label made a field name, see :func:`field_name`): the row's
  predicted mask of each object it scored, with ``iou``, ``relative_area`` and ``mask_pixels`` of the ground truth,
  ``pred_pixels``, ``category``, ``prompt``, ``selection``, ``t_total_ms`` and the ground truth's
  ``instance_index``, so FiftyOne's App filters and its evaluation panel compare rows on the same objects.

The FiftyOne dataset is persistent under ``name`` (``fiftyone`` is an optional extra: ``pip install -e
".[fiftyone]"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmark.report.recorded import RecordMismatch, recorded_mask


def field_name(label: str) -> str:
    """A FiftyOne field name for a row label: ``"sam-b (1 point)"`` -> ``"sam_b_1_point"``."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", label).strip("_").lower()
    return name if name and not name[0].isdigit() else f"row_{name}"


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _detection(fo, mask: np.ndarray, label: str, **attributes):
    box = _box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    h, w = mask.shape
    return fo.Detection(label=label, bounding_box=[x0 / w, y0 / h, (x1 - x0 + 1) / w, (y1 - y0 + 1) / h],
                        mask=mask[y0 : y1 + 1, x0 : x1 + 1].copy(), **attributes)


def build_samples(combined, out_dir: Path) -> tuple[list, dict[str, str]]:
    """Write the images into ``out_dir`` and make one ``fo.Sample`` per image (no database needed); returns the
    samples and the row label -> field name map."""
    import cv2
    import fiftyone as fo

    from benchmark.report.gallery import open_recorded_dataset
    from benchmark.report.runs import ReportInputError
    from benchmark.view.index import build_index

    index = build_index(combined)
    fields = {label: field_name(label) for label in combined.labels}
    if len(set(fields.values())) != len(fields) or "ground_truth" in fields.values():
        raise ReportInputError(f"row labels map to clashing FiftyOne fields: {fields}")
    samples = []
    for ds_number, ds_name in enumerate(combined.datasets):
        part = combined.records[combined.records["dataset"] == ds_name]
        source, problem = open_recorded_dataset(combined, ds_name, part)
        if source is None:
            raise ReportInputError(problem)
        folder = out_dir / "images" / f"{ds_number:02d}_{field_name(ds_name)}"
        folder.mkdir(parents=True, exist_ok=True)
        objects = index.objects[index.objects["dataset"] == ds_name]
        actual = np.array([source.image_of(int(j)) for j in objects["instance_index"]], dtype=np.int64)
        wrong = actual != objects["image_index"].to_numpy()
        for o in objects[wrong].itertuples(index=False):
            combined.warnings.append(f"export: object {o.instance_index} of {ds_name} left out: the runs' records "
                                     f"name image {o.image_index}, but {source.path} puts it in image "
                                     f"{source.image_of(int(o.instance_index))}")
        objects = objects[~wrong]
        for image_index, group in objects.groupby("image_index", sort=True):
            rgb = source.image(int(image_index))
            path = folder / f"{int(image_index):08d}.jpg"
            cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            h, w = rgb.shape[:2]
            sample = fo.Sample(filepath=str(path), flipbench_dataset=ds_name, image_index=int(image_index))
            truth, predicted = [], {label: [] for label in combined.labels}
            for o in group.itertuples(index=False):
                gt = source.mask(int(o.instance_index))
                det = _detection(fo, gt, str(o.category), instance_index=int(o.instance_index),
                                 source_id=str(o.source_id), mask_pixels=int(o.mask_pixels),
                                 relative_area=float(o.relative_mask_size))
                if det is not None:
                    truth.append(det)
                for label in combined.labels:
                    record = index.record(label, int(o.key))
                    if record is None or record["pred_rle"] is None:
                        continue
                    try:
                        pred = recorded_mask(record["pred_rle"], h, w, record)
                    except RecordMismatch as exc:
                        combined.warnings.append(f"export: {exc}; left out")
                        continue
                    det = _detection(
                        fo, pred, str(o.category), instance_index=int(o.instance_index),
                        iou=float(record["iou"]), relative_area=float(o.relative_mask_size),
                        mask_pixels=int(o.mask_pixels), pred_pixels=int(record["pred_pixels"]),
                        prompt=str(record["prompt"]), selection=str(record["selection"] or ""),
                        t_total_ms=float(record["t_total"] * 1000))
                    if det is not None:
                        predicted[label].append(det)
            sample["ground_truth"] = fo.Detections(detections=truth)
            for label, dets in predicted.items():
                sample[fields[label]] = fo.Detections(detections=dets)
            samples.append(sample)
        source.close()
    return samples, fields


def export_fiftyone(run_dirs: list[str | Path], out_dir: str | Path, name: str, overwrite: bool = False,
                    allow_mixed: bool = False):
    """Write the images into ``out_dir`` and build the persistent FiftyOne dataset ``name``; returns it."""
    import fiftyone as fo

    from benchmark.report.runs import ReportInputError, load_runs

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ReportInputError(f"{out_dir} is not empty; give a new folder for the exported images")
    combined = load_runs(run_dirs, allow_mixed=allow_mixed)
    if fo.dataset_exists(name):
        if not overwrite:
            raise ReportInputError(f"a FiftyOne dataset named {name!r} exists; choose another --name or --overwrite")
        fo.delete_dataset(name)
    samples, fields = build_samples(combined, out_dir)
    dataset = fo.Dataset(name, persistent=True)
    dataset.info = {"flipbench_runs": [str(r.path) for r in combined.runs], "rows": fields,
                    "warnings": combined.warnings}
    dataset.add_samples(samples)
    return dataset
