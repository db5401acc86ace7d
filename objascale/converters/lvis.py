"""LVIS v1 (e.g. ``lvis_v1_val.json``) -> FLIP HDF5.

LVIS v1 annotates COCO 2017 images, drawn from both COCO folders (LVIS val uses train2017 and val2017 images),
and its image entries have no ``file_name``: the image is located from ``coco_url``
(``http://images.cocodataset.org/<folder>/<file>``) as ``SRC/<folder>/<file>``, falling back to the other
COCO folder when it is not there (so one folder holding all images works too).

Protocol: as COCO (``objascale/converters/coco.py``): every annotation is a polygon mask (LVIS has no crowd
annotations), parts with fewer than 3 points dropped, empty masks and images without instances skipped, native
resolution, official-compatible boxes. LVIS labels are federated (``neg_category_ids``,
``not_exhaustive_category_ids``); that does not matter for single-object prompted segmentation, where each
annotated mask is one object, but the lists are kept in the per-image provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from objascale.converters.coco import CocoSource
from objascale.converters.common import SkipImage, inside

__all__ = ["LvisSource", "COCO_FOLDERS"]

COCO_FOLDERS = ("train2017", "val2017")
LVIS_LICENCE_NOTE = ("annotations: LVIS, CC BY 4.0; images: COCO 2017 images under the Flickr licence of each "
                     "image (license_ids -> coco_licenses), attribution via flickr_url")


class LvisSource(CocoSource):
    """LVIS v1 annotations; ``coco_root`` holds the COCO image folders ``train2017/`` and/or ``val2017/``."""

    source_kind = "lvis"
    licence_note = LVIS_LICENCE_NOTE

    def __init__(self, coco_root: str | Path, annotations: str | Path, *, split: str = "val",
                 min_area: int = 0) -> None:
        super().__init__(coco_root, annotations, split=split, min_area=min_area, dataset_name=f"lvis-v1-{split}")
        self.provenance["image_lookup"] = "coco_url -> <coco_root>/<train2017|val2017>/<file>"

    def file_name(self, img: dict[str, Any]) -> str:
        return self._url_parts(img)[1]

    def image_path(self, img: dict[str, Any]) -> Path:
        """``coco_root/<folder>/<file>`` from ``coco_url`` (or the other COCO folder); never outside ``coco_root``
        (:func:`~objascale.converters.common.inside` raises :class:`SkipImage`)."""
        folder, name = self._url_parts(img)
        if not name or name in (".", ".."):
            raise SkipImage("malformed image entry", f"no image file name in coco_url {img.get('coco_url')!r}")
        first = inside(self.images_dir, Path(folder) / name)
        if first.is_file():
            return first
        for other in COCO_FOLDERS:
            candidate = inside(self.images_dir, Path(other) / name)
            if candidate.is_file():
                return candidate
        return first  # load_rgb reports it as missing

    def image_extra(self, img: dict[str, Any], ann_ids: list, cat_ids: list) -> dict[str, Any]:
        extra = super().image_extra(img, ann_ids, cat_ids)
        extra["neg_category_ids"] = img.get("neg_category_ids", [])
        extra["not_exhaustive_category_ids"] = img.get("not_exhaustive_category_ids", [])
        return extra

    @staticmethod
    def _url_parts(img: dict[str, Any]) -> tuple[str, str]:
        """``(folder, file)`` from ``coco_url`` (``file_name`` of LVIS v0.5 / COCO-style entries as fallback)."""
        url = img.get("coco_url") or ""
        parts = url.rstrip("/").split("/") if isinstance(url, str) else []
        if len(parts) >= 2 and parts[-1]:
            return parts[-2], parts[-1]
        file_name = img.get("file_name", "")
        name = Path(file_name).name if isinstance(file_name, str) else ""
        return "", name.split("_")[-1] if name.startswith("COCO_") else name
