"""What the viewer knows about the runs it serves: one row per object, the rows' IoUs side by side, and filters.

The runs are read exactly as ``flipbench report`` reads them (:func:`benchmark.report.runs.load_runs`: the same
checks, labels, like-for-like restriction and warnings). :class:`ViewIndex` then keeps

* ``objects``: one row per object (dataset and instance), in a stable order: ``key`` (its position, the id the web
  API uses), ``dataset``, ``image_index``, ``instance_index``, ``category``, ``source_id``, ``mask_pixels``,
  ``relative_mask_size``, ``size_bin`` (the protocol's relative-size bin), ``coco_size`` (small / medium / large),
  ``image_width``, ``image_height``, and per row label ``iou:<label>`` (NaN where that row did not score it);
* ``records``: the combined records indexed by ``(label, key)`` for the object pages and the masks.

Nothing here writes; datasets are opened read-only, on first use, from the paths the runs recorded.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report.comparisons import coco_size_bin
from benchmark.report.runs import Combined, load_runs

#: sort orders of :meth:`ViewIndex.query`
SORTS = ("iou", "size", "diff", "index")


class ViewInputError(ValueError):
    """A request names a row, dataset or filter value that is not in the runs (one line for the user)."""


def size_bin_names(edges: tuple[float, ...]) -> list[str]:
    """``"1e-06 - 3.16e-06"``-style names of the relative-size bins between ``edges``."""
    return [f"{lo:.3g} - {hi:.3g}" for lo, hi in zip(edges, edges[1:])]


@dataclass
class ViewIndex:
    combined: Combined
    objects: pd.DataFrame
    records: pd.DataFrame
    size_bins: list[str]
    fast: dict = field(default_factory=dict)  #: per-object arrays for the pictures (build_index)
    rle_of: dict = field(default_factory=dict)  #: (label, key) -> stored RLE mask or None
    _open: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def labels(self) -> list[str]:
        return self.combined.labels

    # -- filtering -------------------------------------------------------------------------------------------
    def check_label(self, label: str | None, what: str = "row") -> str | None:
        if label in (None, ""):
            return None
        if label not in self.labels:
            raise ViewInputError(f"unknown {what} {label!r}; the runs have: {', '.join(self.labels)}")
        return label

    def query(self, dataset: str | None = None, category: str | None = None, size_bin: str | None = None,
              coco_size: str | None = None, label: str | None = None, iou_min: float | None = None,
              iou_max: float | None = None, prompt: str | None = None, sort: str = "index", a: str | None = None,
              b: str | None = None, descending: bool = False) -> pd.DataFrame:
        """Objects matching every given filter, sorted. ``label``: the row whose IoU ``iou_min`` / ``iou_max``
        (percent) filter and ``sort="iou"`` orders; ``prompt``: keep objects some row of that prompt kind scored;
        ``sort="diff"``: by IoU of row ``a`` minus row ``b``."""
        o = self.objects
        keep = np.ones(len(o), dtype=bool)
        for column, value in (("dataset", dataset), ("category", category), ("size_bin", size_bin),
                              ("coco_size", coco_size)):
            if value not in (None, ""):
                keep &= (o[column] == value).to_numpy()
        label = self.check_label(label)
        if prompt not in (None, ""):
            rows = [lab for lab in self.labels if self.combined.models[lab].get("prompt") == prompt]
            if not rows:
                raise ViewInputError(f"no row was prompted with {prompt!r}")
            keep &= o[[f"iou:{lab}" for lab in rows]].notna().any(axis=1).to_numpy()
        if label is not None and (iou_min is not None or iou_max is not None):
            iou = o[f"iou:{label}"].to_numpy() * 100
            with np.errstate(invalid="ignore"):
                if iou_min is not None:
                    keep &= iou >= iou_min
                if iou_max is not None:
                    keep &= iou <= iou_max
        part = o[keep]
        if sort not in SORTS:
            raise ViewInputError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")
        if sort == "iou":
            if label is None:
                raise ViewInputError("sorting by IoU needs a row (label)")
            values = part[f"iou:{label}"]
        elif sort == "diff":
            a, b = self.check_label(a, "row A"), self.check_label(b, "row B")
            if a is None or b is None or a == b:
                raise ViewInputError("sorting by a difference needs two different rows A and B")
            values = part[f"iou:{a}"] - part[f"iou:{b}"]
        elif sort == "size":
            values = part["relative_mask_size"]
        else:
            values = part["key"]
        order = np.argsort(values.to_numpy(dtype=np.float64), kind="stable")
        if descending:  # NaN (not scored) stays last either way
            finite = np.isfinite(values.to_numpy(dtype=np.float64)[order])
            order = np.concatenate([order[finite][::-1], order[~finite]])
        return part.iloc[order]

    # -- one object ------------------------------------------------------------------------------------------
    def object(self, key: int) -> pd.Series:
        if not 0 <= key < len(self.objects):
            raise ViewInputError(f"no object {key}; the runs hold objects 0 to {len(self.objects) - 1}")
        return self.objects.iloc[key]

    def record(self, label: str, key: int) -> pd.Series | None:
        """``label``'s record of object ``key``, or None when that row did not evaluate it."""
        self.check_label(label)
        try:
            return self.records.loc[(label, key)]
        except KeyError:
            return None

    def object_rows(self, key: int) -> list[dict]:
        """The figures of object ``key`` per row: IoU, predicted area, tokens, times, prompt."""
        out = []
        for label in self.labels:
            r = self.record(label, key)
            if r is None:
                continue
            out.append({
                "label": label, "iou": _num(r["iou"]), "pred_pixels": int(r["pred_pixels"]),
                "prompt": _text(r.get("prompt")), "selection": _text(r.get("selection")),
                "input_tokens": None if pd.isna(r["input_tokens"]) else int(r["input_tokens"]),
                "t_total_ms": _num(r["t_total"] * 1000), "t_encoder_ms": _num(r["t_encoder"] * 1000),
                "t_decoder_ms": _num(r["t_decoder"] * 1000), "has_mask": r["pred_rle"] is not None,
                "click_ious": None if r.get("click_ious") is None else [float(v) for v in r["click_ious"]],
                "gt_empty": bool(r["gt_empty"]), "prompt_invalid": bool(r["prompt_invalid"]),
            })
        return out

    # -- datasets --------------------------------------------------------------------------------------------
    def dataset_for(self, name: str):
        """The open dataset ``name`` (read-only; the path its runs recorded) or raise ViewInputError saying why."""
        from benchmark.report.gallery import open_recorded_dataset

        with self._lock:
            if name not in self._open:
                part = self.records[self.records["dataset"] == name]
                if part.empty:
                    raise ViewInputError(f"no dataset {name!r} in these runs")
                self._open[name] = open_recorded_dataset(self.combined, name, part)
            dataset, problem = self._open[name]
        if dataset is None:
            raise ViewInputError(problem)
        return dataset

    def close(self) -> None:
        for dataset, _ in self._open.values():
            if dataset is not None:
                dataset.close()
        self._open.clear()


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def build_index(combined: Combined) -> ViewIndex:
    """:class:`ViewIndex` of combined runs (see the module docstring)."""
    r = combined.records
    params = combined.params
    names = size_bin_names(params.relative_size_edges)
    key_cols = ["dataset_fingerprint", "instance_index"]
    first = r.drop_duplicates(key_cols).sort_values(["dataset", "instance_index"], kind="stable")
    objects = first[["dataset", "dataset_fingerprint", "image_index", "instance_index", "category", "source_id",
                     "mask_pixels", "relative_mask_size", "image_width", "image_height", "box_x0", "box_y0", "box_x1",
                     "box_y1"]].reset_index(drop=True)
    objects.insert(0, "key", np.arange(len(objects)))
    bins = params.relative_size_bin(objects["relative_mask_size"].to_numpy())
    objects["size_bin"] = [names[b] if 0 <= b < len(names) else ("below" if b < 0 else "above") for b in bins]
    objects["coco_size"] = coco_size_bin(objects["mask_pixels"].to_numpy())
    keys = pd.MultiIndex.from_frame(objects[key_cols])
    position = pd.Series(objects["key"].to_numpy(), index=keys)
    record_keys = position.reindex(pd.MultiIndex.from_frame(r[key_cols])).to_numpy()
    records = r.assign(key=record_keys)
    wide = records.pivot_table(index="key", columns="label", values="iou", aggfunc="first", dropna=False)
    for label in combined.labels:
        objects[f"iou:{label}"] = wide[label].reindex(objects["key"]).to_numpy() if label in wide else np.nan
    records = records.set_index(["label", "key"], drop=False).sort_index()
    index = ViewIndex(combined=combined, objects=objects, records=records, size_bins=names)
    # what a picture needs, as plain arrays (a pandas row lookup costs more than drawing a crop)
    index.fast = {c: objects[c].to_numpy() for c in ("dataset", "image_index", "instance_index", "box_x0", "box_y0",
                                                       "box_x1", "box_y1")}
    rle_of = {}
    for lab, key, rle in zip(records["label"].to_numpy(), records["key"].to_numpy(), records["pred_rle"].to_numpy()):
        rle_of[(lab, int(key))] = rle
    index.rle_of = rle_of
    return index


def open_index(run_dirs: list[str | Path], allow_mixed: bool = False) -> ViewIndex:
    """Load runs as ``flipbench report`` does and index them."""
    return build_index(load_runs(run_dirs, allow_mixed=allow_mixed))
