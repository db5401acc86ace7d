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

Hostile or careless annotation files (every case is counted in the report and the file's provenance; nothing
aborts the conversion): a ``file_name`` that is absolute, contains ``..`` or is a symlink leading out of the
image directory is refused ("path outside the source directory"); the image header is checked against the
annotation's size and the pixel limit before decoding; segmentations are validated before pycocotools sees them
(RLE ``size`` must be the image size and the counts must sum to ``height * width``: pycocotools would otherwise
read uninitialised memory or write past its buffer; polygon coordinates must be finite and near the image:
pycocotools allocates memory proportional to their extent). Malformed image entries (no integer ``id``,
duplicate ids), annotations of images not in ``images``, malformed annotation, category and licence entries are
dropped and reported; annotations with a category id not in ``categories`` are kept (as the official converter
does) and reported as a warning, as are invalid licence ids (stored as 0 = unknown).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from objascale.converters.common import (Loaded, SkipImage, inside, licence_id, load_rgb, require_file,
                                         source_int)
from objascale.hdf5_reader import file_sha256

__all__ = ["CocoSource", "annotation_to_mask", "rle_string_counts", "PROTOCOL"]

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


#: polygon coordinates may lie this many image sizes outside the image (pycocotools' work grows with the extent)
POLYGON_MARGIN = 1.0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def rle_string_counts(counts: str | bytes) -> list[int] | None:
    """Run lengths of a compressed COCO RLE string (the LEB128-like encoding of pycocotools' ``rleFrString``:
    6-bit groups offset by 48, continuation bit 0x20, sign bit 0x10, counts from the third on stored as the
    difference to the count two before), or None when the string is malformed (a character outside
    ``0``..``o``, an unfinished number, a negative or oversized count). pycocotools exposes no parser; it is
    needed to check the total before pycocotools decodes the string without bounds checks."""
    data = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    out: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data) or k > 12:
                return None
            c = data[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)  # sign extension
        if len(out) > 2:
            x += out[-2]
        if x < 0 or x >= 2**32:
            return None
        out.append(x)
    return out


def _check_rle(seg: dict[str, Any], height: int, width: int) -> str:
    """Reason an RLE segmentation is unusable ("" when it is valid for a ``height`` x ``width`` image)."""
    size = seg.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(source_int(v) is not None for v in size)):
        return "malformed RLE (size is not [height, width])"
    if [int(v) for v in size] != [height, width]:
        return f"segmentation size {tuple(int(v) for v in size)} differs from the image size {(height, width)}"
    counts = seg.get("counts")
    if isinstance(counts, list):
        if not all(source_int(c) is not None and source_int(c) >= 0 for c in counts):
            return "malformed RLE (counts are not non-negative integers)"
        values = [int(c) for c in counts]
    elif isinstance(counts, (str, bytes)):
        values = rle_string_counts(counts)
        if values is None:
            return "malformed RLE (corrupt compressed counts)"
    else:
        return "malformed RLE (counts is neither a list nor a string)"
    total = sum(values)
    if total != height * width:
        return f"RLE counts sum to {total}, not height*width = {height * width} (wrong length)"
    return ""


def _check_polygon(part: list, height: int, width: int) -> bool:
    """Finite numbers within ``POLYGON_MARGIN`` image sizes of the image."""
    if not all(_is_number(v) for v in part):
        return False
    xs, ys = part[0::2], part[1::2]
    mx, my = POLYGON_MARGIN * width, POLYGON_MARGIN * height
    return min(xs) >= -mx and max(xs) <= width + mx and min(ys) >= -my and max(ys) <= height + my


def annotation_to_mask(ann: dict[str, Any], height: int, width: int) -> tuple[np.ndarray | None, str]:
    """Decode one COCO annotation's ``segmentation`` -> (bool ``[height, width]`` mask, "") or (None, reason).

    Validated before pycocotools decodes (see the module doc): RLE size and counts total, polygon coordinates."""
    rle, reason = annotation_to_rle(ann, height, width)
    if rle is None:
        return None, reason
    return _decode(rle, height, width)


def _decode(rle: dict, height: int, width: int) -> tuple[np.ndarray | None, str]:
    try:
        mask = coco_mask.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return None, f"undecodable segmentation ({type(exc).__name__}: {exc})"
    if mask.shape[:2] != (height, width):
        return None, f"segmentation size {mask.shape[:2]} differs from the image size {(height, width)}"
    return mask.astype(bool, copy=False).reshape(height, width), ""


class RleMasks(Sequence):
    """The masks of one image kept as compressed COCO RLE and decoded one at a time when read, so a converter holds
    one decoded ``bool [H, W]`` mask at a time, not all of an image's (memory: the RLEs, a few bytes per run)."""

    def __init__(self, rles: list[dict], height: int, width: int) -> None:
        self.rles, self.height, self.width = rles, height, width

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        mask, reason = _decode(self.rles[k], self.height, self.width)
        if mask is None:  # checked when the RLE was made; cannot happen for RLEs of annotation_to_rle
            raise ValueError(reason)
        return mask


def annotation_to_rle(ann: dict[str, Any], height: int, width: int) -> tuple[dict | None, str]:
    """One COCO annotation's ``segmentation`` as a compressed pycocotools RLE (validated, see
    :func:`annotation_to_mask`), or (None, reason)."""
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list):
            polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
            if not polygons:
                return None, "polygon with fewer than 3 points"
            if not all(_check_polygon(p, height, width) for p in polygons):
                return None, "polygon coordinates not finite numbers or far outside the image"
            rles = coco_mask.frPyObjects(polygons, height, width)
            rle = coco_mask.merge(rles) if len(rles) > 1 else rles[0]
        elif isinstance(seg, dict) and "counts" in seg:
            reason = _check_rle(seg, height, width)
            if reason:
                return None, reason
            if isinstance(seg["counts"], list):
                rle = coco_mask.frPyObjects([{"size": [height, width], "counts": [int(c) for c in seg["counts"]]}],
                                            height, width)[0]
            else:
                rle = {"size": [height, width], "counts": seg["counts"]}
        else:
            return None, "no segmentation"
        if isinstance(rle["counts"], str):
            rle = {**rle, "counts": rle["counts"].encode("ascii")}
        coco_mask.area(rle)  # parses the counts: a malformed string fails here, as decoding would
    except (TypeError, ValueError, KeyError, IndexError, UnicodeEncodeError) as exc:
        return None, f"undecodable segmentation ({type(exc).__name__}: {exc})"
    if [int(v) for v in rle["size"]] != [height, width]:
        return None, f"segmentation size {tuple(rle['size'])} differs from the image size {(height, width)}"
    return rle, ""


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
        require_file(ann_path, "annotation file")
        try:
            blob = json.loads(ann_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"{ann_path} is not valid JSON: {exc}") from exc
        except OSError as exc:  # e.g. no read permission
            raise ValueError(f"annotation file {ann_path} cannot be read: {exc}") from exc
        if not isinstance(blob, dict) or not isinstance(blob.get("images"), list) or \
                not isinstance(blob.get("annotations"), list):
            raise ValueError(f"{ann_path} is not a COCO instances file (needs 'images' and 'annotations' lists)")
        self.index_issues: list[tuple[str, str, str]] = []
        self.images = self._index_images(blob["images"])
        self.anns = self._index_annotations(blob["annotations"])
        self.categories = self._index_categories(blob.get("categories"))
        self.licenses = self._index_licences(blob.get("licenses"))
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

    # -- indexing (malformed entries are dropped and reported, never fatal) -----------------------------------
    def _index_images(self, entries: list) -> dict[int, dict[str, Any]]:
        images: dict[int, dict[str, Any]] = {}
        for n, img in enumerate(entries):
            key = source_int(img.get("id")) if isinstance(img, dict) else None
            if key is None:
                shown = repr(img.get("id")) if isinstance(img, dict) else type(img).__name__
                self.index_issues.append(("image", "malformed image entry (no integer id)", f"images[{n}]: {shown}"))
            elif key in images:
                self.index_issues.append(("image", "duplicate image id (later entry ignored)", f"images[{n}]: {key}"))
            else:
                images[key] = img
        return images

    def _index_annotations(self, entries: list) -> dict[int, list[dict[str, Any]]]:
        anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for n, ann in enumerate(entries):
            if not isinstance(ann, dict):
                self.index_issues.append(("instance", "malformed annotation entry", f"annotations[{n}]"))
                continue
            image_id = source_int(ann.get("image_id"))
            if image_id is None or image_id not in self.images:
                self.index_issues.append(("instance", "annotation of an image not in 'images' (dropped)",
                                          f"annotation {ann.get('id')!r} (image_id {ann.get('image_id')!r})"))
                continue
            anns[image_id].append(ann)
        return anns

    def _index_categories(self, entries: Any) -> dict[Hashable, str]:
        categories: dict[Hashable, str] = {}
        for n, cat in enumerate(entries if isinstance(entries, list) else []):
            cid = source_int(cat.get("id")) if isinstance(cat, dict) else None
            if cid is None or cid in categories:
                self.index_issues.append(("warning", "malformed or duplicate category entry (ignored)",
                                          f"categories[{n}]"))
                continue
            name = cat.get("name")
            categories[cid] = name if isinstance(name, str) else str(cid)
        return categories

    def _index_licences(self, entries: Any) -> list[dict[str, Any]]:
        licences: list[dict[str, Any]] = []
        for n, lic in enumerate(entries if isinstance(entries, list) else []):
            lid = source_int(lic.get("id")) if isinstance(lic, dict) else None
            if lid is None or not 1 <= lid <= 255 or any(e["id"] == lid for e in licences):
                self.index_issues.append(("warning", "malformed or duplicate licence entry (dropped)",
                                          f"licenses[{n}]"))
                continue
            licences.append({**lic, "id": lid})
        return licences

    def image_keys(self) -> list[Any]:
        return list(self.images)

    def file_name(self, img: dict[str, Any]) -> str:
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise SkipImage("malformed image entry", f"file_name {name!r} is not a file name")
        try:
            name.encode("utf-8")  # stored as UTF-8 text; a lone surrogate ("\udcff" in the JSON) cannot be
        except UnicodeEncodeError:
            raise SkipImage("malformed image entry",
                            f"image id {img.get('id')!r}: file_name {name!r} is not valid UTF-8") from None
        return name

    def image_path(self, img: dict[str, Any]) -> Path:
        return inside(self.images_dir, self.file_name(img))

    def load(self, key: Any) -> Loaded:
        img = self.images[key]
        h, w = source_int(img.get("height")), source_int(img.get("width"))
        if h is None or w is None or h < 1 or w < 1:
            raise SkipImage("malformed image entry", f"height {img.get('height')!r}, width {img.get('width')!r}")
        rgb = load_rgb(self.image_path(img), expected_hw=(h, w))  # header checked before decoding
        masks, ann_ids, cat_ids, skipped, warned = [], [], [], [], []
        for ann in self.anns.get(key, []):
            where = f"annotation {ann.get('id')}"
            if ann.get("iscrowd", 0):
                skipped.append(("crowd annotation (iscrowd=1)", where))
                continue
            rle, reason = annotation_to_rle(ann, h, w)
            if rle is None:
                skipped.append((reason, where))
                continue
            area = int(coco_mask.area(rle))
            if area == 0:
                skipped.append(("empty mask", where))
                continue
            if area < self.min_area:
                skipped.append((f"mask smaller than min_area={self.min_area}", where))
                continue
            category = ann.get("category_id")
            if source_int(category) not in self.categories:
                warned.append(("annotation with unknown category id (kept)", f"{where}: category_id {category!r}"))
            masks.append(rle)
            ann_ids.append(ann.get("id"))
            cat_ids.append(category)
        urls = {}
        for field in ("flickr_url", "coco_url"):
            value = img.get(field, "")
            if not isinstance(value, str):
                warned.append((f"{field} is not text (dropped)", f"{field} {value!r}"))
                value = ""
            urls[field] = value
        info = {
            "file_name": self.file_name(img),
            "source_id": key,
            "license": licence_id(img.get("license"), {e["id"] for e in self.licenses}, warned),
            **urls,
            "extra": self.image_extra(img, ann_ids, cat_ids),
        }
        instances = [{"category": self.categories.get(source_int(c), "unknown"), "category_id": c,
                      "source_id": f"annotation {a}"} for a, c in zip(ann_ids, cat_ids)]
        return Loaded(rgb, RleMasks(masks, h, w), info, skipped, warned, instances)

    def image_extra(self, img: dict[str, Any], ann_ids: list, cat_ids: list) -> dict[str, Any]:
        return {"source": self.source_kind, "annotation_ids": ann_ids, "category_ids": cat_ids,
                "categories": [self.categories.get(source_int(c), str(c)) for c in cat_ids]}
