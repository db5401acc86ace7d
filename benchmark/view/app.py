"""The ``flipbench view`` web app (FastAPI): JSON for the objects and tables, JPEG pictures rendered on demand.

Routes (all GET, all read-only):

* ``/`` and ``/static/*``: the page (``static/index.html``, ``app.js``, ``app.css``); the page builds its DOM from
  the JSON with ``textContent`` only, so no string from the data is ever parsed as HTML;
* ``/api/meta``: runs, rows (labels with prompt, selection, oracle and random-init flags), datasets, categories,
  size bins, the report's warnings;
* ``/api/objects``: filtered and sorted objects, one page (``offset``, ``limit`` <= 500) with the total;
* ``/api/object/{key}``: one object's figures per row;
* ``/api/categories``, ``/api/sizes``: per-category and per-size-bin mean IoU per row (objects scored by the row);
* ``/api/crop/{key}.jpg``, ``/api/image/{key}.jpg``: a crop around the object or the whole image (``scale``), with
  the ground truth and a row's mask (``label``) or the difference of two rows (``a``, ``b``).

Bad requests (an unknown row, object or filter value, a dataset that is missing or changed) answer 400 or 404 with
``{"error": "<one line>"}``, which the page shows; no traceback reaches the browser.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.view.index import ViewIndex, ViewInputError
from objascale.codecs import CodecError
from benchmark.report.recorded import RecordMismatch, recorded_mask
from benchmark.view.render import LruCache, crop_window, encode_jpeg, overlay

STATIC = Path(__file__).parent / "static"
MAX_PAGE = 500
#: longest side of a crop picture (pixels) and of a full image at scale 1 (larger images are shrunk)
CROP_SIDE = 160
MAX_IMAGE_SIDE = 4096


def _clean(value):
    """JSON-safe value: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def create_app(index: ViewIndex):
    """The FastAPI application serving ``index`` (nothing else: no path from a request reaches the filesystem)."""
    from fastapi import FastAPI, Query
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="flipbench view", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    images = LruCache(12)
    gt_masks = LruCache(256)
    combined = index.combined

    @app.exception_handler(ViewInputError)
    async def _bad_input(request, exc: ViewInputError):  # noqa: ANN001
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RecordMismatch)
    async def _bad_record(request, exc: RecordMismatch):  # noqa: ANN001
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(CodecError)
    async def _bad_pixels(request, exc: CodecError):  # noqa: ANN001  (a damaged image or mask in the dataset)
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/meta")
    def meta():
        rows = []
        for label in index.labels:
            m = combined.models[label]
            rows.append({"label": label, "model": m["model"], "prompt": m.get("prompt"),
                         "selection": m.get("selection"), "oracle": combined.is_oracle(label),
                         "random_init": m["weights_kind"] == "random-init", "weights": m["weights_kind"]})
        o = index.objects
        return {
            "runs": [{"path": str(r.path), "status": r.status, "protocol": r.protocol_hash} for r in combined.runs],
            "rows": rows, "datasets": combined.datasets,
            "categories": sorted(o["category"].unique().tolist()),
            "size_bins": [b for b in index.size_bins if (o["size_bin"] == b).any()],
            "coco_sizes": [c for c in ("small", "medium", "large") if (o["coco_size"] == c).any()],
            "prompts": sorted({r["prompt"] for r in rows if r["prompt"]}),
            "objects": len(o), "warnings": combined.warnings,
        }

    def _filters(dataset, category, size_bin, coco_size, label, iou_min, iou_max, prompt, sort, a, b, descending):
        return index.query(dataset=dataset, category=category, size_bin=size_bin, coco_size=coco_size, label=label,
                           iou_min=iou_min, iou_max=iou_max, prompt=prompt, sort=sort, a=a, b=b,
                           descending=descending)

    @app.get("/api/objects")
    def objects(dataset: str | None = None, category: str | None = None, size_bin: str | None = None,
                coco_size: str | None = None, label: str | None = None, iou_min: float | None = None,
                iou_max: float | None = None, prompt: str | None = None, sort: str = "index", a: str | None = None,
                b: str | None = None, descending: bool = False, offset: int = Query(0, ge=0),
                limit: int = Query(100, ge=1, le=MAX_PAGE)):
        part = _filters(dataset, category, size_bin, coco_size, label, iou_min, iou_max, prompt, sort, a, b,
                        descending)
        page = part.iloc[offset : offset + limit]
        shown = [lab for lab in (label, a, b) if lab]
        items = []
        for d in page.to_dict("records"):
            items.append({
                "key": int(d["key"]), "dataset": d["dataset"], "category": d["category"],
                "source_id": d["source_id"], "relative_size": _clean(d["relative_mask_size"]),
                "mask_pixels": int(d["mask_pixels"]), "size_bin": d["size_bin"], "coco_size": d["coco_size"],
                "iou": {lab: _clean(d[f"iou:{lab}"]) for lab in shown},
            })
        return {"total": len(part), "offset": offset, "items": items}

    @app.get("/api/object/{key}")
    def one(key: int):
        o = index.object(key)
        info = {k: _clean(v) for k, v in o.items() if not str(k).startswith("iou:")}
        return {"object": info, "rows": index.object_rows(key)}

    @app.get("/api/categories")
    def categories(dataset: str | None = None):
        part = index.objects if not dataset else index.objects[index.objects["dataset"] == dataset]
        return _table(part, "category", index.labels)

    @app.get("/api/sizes")
    def sizes(dataset: str | None = None, by: str = "size_bin"):
        if by not in ("size_bin", "coco_size"):
            raise ViewInputError(f"unknown grouping {by!r}; expected size_bin or coco_size")
        part = index.objects if not dataset else index.objects[index.objects["dataset"] == dataset]
        order = index.size_bins + ["below", "above"] if by == "size_bin" else ["small", "medium", "large"]
        table = _table(part, by, index.labels)
        table["rows"].sort(key=lambda r: order.index(r["group"]) if r["group"] in order else len(order))
        return table

    def _picture(key: int, label: str | None, a: str | None, b: str | None, crop: bool, scale: float) -> bytes:
        if not 0 <= key < len(index.objects):
            index.object(key)  # raises the one-line error
        label, a, b = index.check_label(label), index.check_label(a, "row A"), index.check_label(b, "row B")
        f = index.fast
        name, i, j = str(f["dataset"][key]), int(f["image_index"][key]), int(f["instance_index"][key])
        dataset = index.dataset_for(name)
        if dataset.image_of(j) != i:
            raise RecordMismatch(f"the records of object {key} name image {i}, but {dataset.path} puts that object "
                                 f"in image {dataset.image_of(j)}")
        image = images.get((name, i), lambda: dataset.image(i))
        gt = gt_masks.get((name, j), lambda: dataset.mask(j))
        h, w = gt.shape

        def mask_of(lab):
            return recorded_mask(index.rle_of.get((lab, key)), h, w, {"model": lab, "instance_index": j})

        first, second = None, None
        if a and b:
            first, second = mask_of(a), mask_of(b)
            first = np.zeros((h, w), bool) if first is None else first
            second = np.zeros((h, w), bool) if second is None else second
        elif label:
            first = mask_of(label)
        if crop:
            box = (f["box_x0"][key], f["box_y0"][key], f["box_x1"][key], f["box_y1"][key])
            box = _box(key, gt) if not np.isfinite(box).all() else box
            x0, y0, x1, y1 = crop_window(box, h, w)
            sl = (slice(y0, y1), slice(x0, x1))
            crop_img = image[sl]
            factor = CROP_SIDE / max(crop_img.shape[:2])
            return encode_jpeg(overlay(crop_img, gt[sl], None if first is None else first[sl],
                                       None if second is None else second[sl], factor))
        factor = min(scale, MAX_IMAGE_SIDE / max(h, w))
        return encode_jpeg(overlay(image, gt, first, second, factor), quality=90)

    @app.get("/api/crop/{key}.jpg")
    def crop(key: int, label: str | None = None, a: str | None = None, b: str | None = None):
        return Response(_picture(key, label, a, b, True, 1.0), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=600"})

    @app.get("/api/image/{key}.jpg")
    def image(key: int, label: str | None = None, a: str | None = None, b: str | None = None,
              scale: float = Query(1.0, gt=0, le=4)):
        return Response(_picture(key, label, a, b, False, scale), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=600"})

    app.state.index = index
    return app


def _box(key: int, gt: np.ndarray) -> tuple[int, int, int, int]:
    """The tight box of an object no record prompted (empty ground truth: the whole image)."""
    from benchmark.view.render import mask_box

    box = mask_box(gt)
    return box if box is not None else (0, 0, gt.shape[1] - 1, gt.shape[0] - 1)


def _table(part: pd.DataFrame, by: str, labels: list[str]) -> dict:
    """Mean IoU (%) and scored count per row for each group of ``by``, sorted by object count."""
    rows = []
    for group, g in part.groupby(by, sort=False):
        entry = {"group": str(group), "objects": len(g), "iou": {}, "n": {}}
        for lab in labels:
            v = g[f"iou:{lab}"].dropna()
            entry["iou"][lab] = _clean(v.mean() * 100) if len(v) else None
            entry["n"][lab] = int(len(v))
        rows.append(entry)
    rows.sort(key=lambda r: -r["objects"])
    return {"labels": labels, "rows": rows}
