"""COCO instances (e.g. ``instances_val2017.json`` + ``val2017/``) -> FLIP HDF5, same output as the official
``convert_coco_to_hdf5.py``.

Evaluation protocol (identical to the official converter unless an option says otherwise):

* split: whatever the annotation file holds; the benchmark uses val2017 (5,000 images);
* images in annotation-file order; each image's annotations in file order; images are decoded with Pillow
  (``convert("RGB")``) and stored at native resolution;
* ``iscrowd = 1`` annotations are skipped (neither objects nor ignore regions; counted in the report);
* polygons: parts with fewer than 6 numbers (3 points) are dropped, the remaining parts of one annotation are
  merged into one mask (pycocotools ``frPyObjects`` + ``merge``); RLE: compressed (string counts) decoded as is,
  uncompressed (list counts) converted first;
* empty masks are skipped; minimum area: none (``min_area=0``), optional ``min_area`` in pixels of the decoded
  mask; images left without an instance are not stored;
* boxes: the official quirk-compatible box (see ``objascale/moments.py``); Gaussian moments from the mask.

flipbench additions: an image whose file is missing/unreadable or whose size differs from the annotation's
``width``/``height`` is skipped and reported (the official script silently skips missing files and would store
a mismatched image); per-image ``extra`` keeps the annotation ids and categories of the stored instances.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from objascale.converters.common import Loaded, SkipImage, load_rgb
from objascale.hdf5_reader import file_sha256

__all__ = ["CocoSource", "annotation_to_mask", "PROTOCOL"]

PROTOCOL = {
    "order": "images and annotations in annotation-file order",
    "crowd": "iscrowd=1 annotations skipped",
    "polygon_min_coords": 6,
    "multi_part_polygons": "merged into one mask",
    "empty_masks": "skipped",
    "images_without_instances": "skipped",
    "resolution": "native (no resizing)",
    "bbox_convention": "official (column/row 0 never count)",
}
COCO_LICENCE_NOTE = ("annotations: CC BY 4.0 (COCO Consortium); images: the Flickr licence of each image "
                     "(license_ids -> coco_licenses), attribution via flickr_url")


def annotation_to_mask(ann: dict[str, Any], height: int, width: int) -> tuple[np.ndarray | None, str]:
    """Decode one COCO annotation's ``segmentation`` -> (bool ``[height, width]`` mask, "") or (None, reason)."""
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list):
            polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
            if not polygons:
                return None, "polygon with fewer than 3 points"
            rles = coco_mask.frPyObjects(polygons, height, width)
            rle = coco_mask.merge(rles) if len(rles) > 1 else rles[0]
        elif isinstance(seg, dict) and "counts" in seg:
            rle = coco_mask.frPyObjects([seg], height, width)[0] if isinstance(seg["counts"], list) else seg
        else:
            return None, "no segmentation"
        mask = coco_mask.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return None, f"undecodable segmentation ({type(exc).__name__}: {exc})"
    if mask.shape[:2] != (height, width):
        return None, f"segmentation size {mask.shape[:2]} differs from the image size {(height, width)}"
    return mask.astype(bool, copy=False).reshape(height, width), ""


class CocoSource:
    """COCO-format instances: ``images_dir`` holds the images named by ``file_name``; ``annotations`` the JSON.

    ``split`` names the output (``coco-{split}`` / type ``{split}``, as the official converter). ``min_area``:
    drop decoded masks with fewer pixels (0 = keep all, official).
    """

    source_kind = "coco"
    licence_note = COCO_LICENCE_NOTE

    def __init__(self, images_dir: str | Path, annotations: str | Path, *, split: str = "val2017",
                 min_area: int = 0, dataset_name: str | None = None) -> None:
        self.images_dir = Path(images_dir)
        ann_path = Path(annotations)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image directory {self.images_dir} does not exist")
        if not ann_path.is_file():
            raise FileNotFoundError(f"annotation file {ann_path} does not exist")
        try:
            blob = json.loads(ann_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{ann_path} is not valid JSON: {exc}") from exc
        if not isinstance(blob, dict) or not isinstance(blob.get("images"), list) or \
                not isinstance(blob.get("annotations"), list):
            raise ValueError(f"{ann_path} is not a COCO instances file (needs 'images' and 'annotations' lists)")
        self.images: dict[Any, dict[str, Any]] = {}
        for img in blob["images"]:
            self.images.setdefault(img["id"], img)
        self.anns: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for ann in blob["annotations"]:
            self.anns[ann.get("image_id")].append(ann)
        self.categories = {c["id"]: c.get("name", str(c["id"])) for c in blob.get("categories", [])}
        self.licenses = list(blob.get("licenses", []))
        self.min_area = int(min_area)
        self.dataset_name = dataset_name or f"{self.source_kind}-{split}"
        self.dataset_type = split
        self.provenance = {
            "source": self.source_kind,
            "split": split,
            "annotations": {"file": ann_path.name, "sha256": file_sha256(ann_path), "info": blob.get("info")},
            "images_dir": self.images_dir.name,
            "protocol": {**PROTOCOL, "min_area_px": self.min_area},
            "license": self.licence_note,
        }

    def image_keys(self) -> list[Any]:
        return list(self.images)

    def file_name(self, img: dict[str, Any]) -> str:
        return img["file_name"]

    def image_path(self, img: dict[str, Any]) -> Path:
        return self.images_dir / self.file_name(img)

    def load(self, key: Any) -> Loaded:
        img = self.images[key]
        try:
            path, h, w = self.image_path(img), int(img["height"]), int(img["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SkipImage("malformed image entry", f"{type(exc).__name__}: {exc}") from exc
        rgb = load_rgb(path)
        if rgb.shape[:2] != (h, w):
            raise SkipImage("image size differs from annotation", f"file {rgb.shape[:2]}, annotation {(h, w)}")
        masks, ann_ids, cat_ids, skipped = [], [], [], []
        for ann in self.anns.get(key, []):
            where = f"annotation {ann.get('id')}"
            if ann.get("iscrowd", 0):
                skipped.append(("crowd annotation (iscrowd=1)", where))
                continue
            mask, reason = annotation_to_mask(ann, h, w)
            if mask is None:
                skipped.append((reason, where))
                continue
            area = int(np.count_nonzero(mask))
            if area == 0:
                skipped.append(("empty mask", where))
                continue
            if area < self.min_area:
                skipped.append((f"mask smaller than min_area={self.min_area}", where))
                continue
            masks.append(mask)
            ann_ids.append(ann.get("id"))
            cat_ids.append(ann.get("category_id"))
        info = {
            "file_name": self.file_name(img),
            "source_id": int(img["id"]),
            "license": int(img.get("license") or 0),
            "flickr_url": img.get("flickr_url", ""),
            "coco_url": img.get("coco_url", ""),
            "extra": self.image_extra(img, ann_ids, cat_ids),
        }
        return Loaded(rgb, masks, info, skipped)

    def image_extra(self, img: dict[str, Any], ann_ids: list, cat_ids: list) -> dict[str, Any]:
        return {"source": self.source_kind, "annotation_ids": ann_ids, "category_ids": cat_ids,
                "categories": [self.categories.get(c, str(c)) for c in cat_ids]}
