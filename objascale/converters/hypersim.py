"""Hypersim -> FLIP HDF5.

Source layout (``SRC`` holds extracted scenes ``ai_VVV_NNN/``), per frame ``IIII`` of camera ``cam_XX``:

* ``images/scene_cam_XX_final_hdf5/frame.IIII.color.hdf5``: dataset ``dataset``, HDR linear RGB (float16);
* ``images/scene_cam_XX_geometry_hdf5/frame.IIII.render_entity_id.hdf5``: int, -1 where no geometry;
* ``images/scene_cam_XX_geometry_hdf5/frame.IIII.semantic_instance.hdf5``: int, -1 = background / unlabeled;
* optional ``.../frame.IIII.semantic.hdf5``: NYU40 label per pixel (category names of the instances).

Split: with ``split_csv`` (``metadata_images_split_scene_v1.csv`` of the ml-hypersim repository: columns
``scene_name, camera_name, frame_id, included_in_public_release, exclude_reason, split_partition_name``) the
frames of ``split`` (default ``val``) that are in the public release; without it every frame found under ``SRC``.

Colour: the official Hypersim tone mapping (``scene_generate_images_tonemap.py``): brightness
``0.3 R + 0.59 G + 0.11 B`` over pixels with ``render_entity_id != -1``; ``scale = 0.8 ** 2.2 / p90`` where ``p90``
is its 90th percentile (``scale = 0`` if ``p90 < 1e-4``; ``scale = 1`` if no valid pixel);
``rgb = clip(max(scale * hdr, 0) ** (1 / 2.2), 0, 1)``, then ``uint8(rgb * 255)`` (truncation, as matplotlib's
``imsave`` of the official preview). Non-finite HDR values are set to 0 first.

Instances: every ``semantic_instance`` id other than -1 is one object (walls, floors and ceilings included; each
instance's NYU40 label, the majority ``semantic`` value inside it, is kept so they can be filtered). Native
resolution (1024x768). Licence: Hypersim dataset CC BY-SA 3.0 (Apple).

Bad input: split-file rows with an unusable frame id or a scene/camera name leading out of ``SRC`` are skipped and
reported; an HDF5 file whose ``dataset`` is a link, external or virtual storage (data from another file) is
refused; array shapes are checked (pixel limit, all maps of a frame the colour image's size) before reading.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from objascale.codecs import CodecError, check_declared_size
from objascale.converters.common import Loaded, SkipImage, inside, regular_file, require_file
from objascale.hdf5_reader import file_sha256

__all__ = ["HypersimSource", "tonemap", "NYU40"]

LICENCE = {"id": 1, "name": "CC BY-SA 3.0 (Hypersim, Apple)", "url": "https://creativecommons.org/licenses/by-sa/3.0/"}
NYU40 = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
         "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floormat", "clothes",
         "ceiling", "books", "refrigerator", "television", "paper", "towel", "showercurtain", "box", "whiteboard",
         "person", "nightstand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
         "otherprop")  # ids 1..40
GAMMA = 1.0 / 2.2
PERCENTILE = 90
BRIGHTNESS_TARGET = 0.8
EPS = 1e-4


def tonemap(hdr: np.ndarray, render_entity_id: np.ndarray) -> np.ndarray:
    """Official Hypersim tone mapping: float ``[H, W, 3]`` HDR + int ``[H, W]`` entity ids -> uint8 RGB."""
    rgb = np.nan_to_num(np.asarray(hdr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    valid = np.asarray(render_entity_id) != -1
    if not valid.any():
        scale = 1.0
    else:
        brightness = 0.3 * rgb[..., 0] + 0.59 * rgb[..., 1] + 0.11 * rgb[..., 2]
        current = np.percentile(brightness[valid], PERCENTILE)
        scale = 0.0 if current < EPS else np.power(BRIGHTNESS_TARGET, 1.0 / GAMMA) / current
    out = np.clip(np.power(np.maximum(scale * rgb, 0), GAMMA), 0, 1)
    return (out * 255).astype(np.uint8)


def _source_id(scene: str, cam: str, frame: int) -> int:
    """``ai_VVV_NNN``, ``cam_XX``, frame -> VVV*10^9 + NNN*10^6 + XX*10^4 + frame (-1 for unusual names)."""
    try:
        vvv, nnn = (int(x) for x in scene.split("_")[1:3])
        return vvv * 10**9 + nnn * 10**6 + int(cam.split("_")[-1]) * 10**4 + frame
    except ValueError:
        return -1


def _read_h5(path: Path, what: str, expected_hw: tuple[int, int] | None = None, channels: int = 0) -> np.ndarray:
    """``dataset`` of a Hypersim HDF5 file, shape ``[H, W]`` (``[H, W, channels]`` when ``channels``), checked
    before it is read: a plain dataset of this file (no link, external or virtual storage), within the pixel
    limit and of ``expected_hw`` when given. Raises :class:`SkipImage`."""
    regular_file(path, what)
    try:
        with h5py.File(path, "r") as f:
            if not isinstance(f.get("dataset", getlink=True), h5py.HardLink):
                raise SkipImage(f"unreadable {what} file", f"{path}: 'dataset' is missing or a link to elsewhere")
            ds = f["dataset"]
            if not isinstance(ds, h5py.Dataset) or ds.external or ds.is_virtual:
                raise SkipImage(f"unreadable {what} file", f"{path}: 'dataset' stores its data in other files")
            ok_rank = ds.ndim == 3 and ds.shape[2] == channels if channels else ds.ndim == 2
            if not ok_rank:
                raise SkipImage("inconsistent array shapes", f"{path}: {what} has shape {ds.shape}")
            try:
                check_declared_size(ds.shape[:2], expected_hw)
            except CodecError as exc:
                raise SkipImage("inconsistent array shapes", f"{path}: {what} {exc}") from exc
            return ds[()]
    except SkipImage:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise SkipImage(f"unreadable {what} file", f"{path}: {exc}") from exc


class HypersimSource:
    """Hypersim frames under ``src`` (see the module doc for layout, split, tone mapping and instances)."""

    def __init__(self, src: str | Path, *, split: str = "val", split_csv: str | Path | None = None) -> None:
        self.src = Path(src)
        if not self.src.is_dir():
            raise FileNotFoundError(f"Hypersim directory {self.src} does not exist")
        self.index_issues: list[tuple[str, str, str]] = []
        if split_csv is not None:
            split_path = Path(split_csv)
            require_file(split_path, "split file")
            try:
                with open(split_path, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            except (UnicodeDecodeError, csv.Error) as exc:
                raise ValueError(f"{split_path} is not a CSV file: {exc}") from exc
            needed = {"scene_name", "camera_name", "frame_id", "included_in_public_release", "split_partition_name"}
            if not rows or not needed <= set(rows[0]):
                raise ValueError(f"{split_path} is not metadata_images_split_scene_v1.csv (needs {sorted(needed)})")
            self.frames = []
            for n, r in enumerate(rows, 2):  # line numbers of the file (line 1 is the header)
                if r["split_partition_name"] != split or r["included_in_public_release"] != "True":
                    continue
                frame = r["frame_id"] or ""
                if not (isinstance(r["scene_name"], str) and isinstance(r["camera_name"], str)
                        and frame.isdigit() and len(frame) <= 4):
                    self.index_issues.append(("image", "malformed split file row", f"{split_path.name}:{n}"))
                    continue
                self.frames.append((r["scene_name"], r["camera_name"], int(frame)))
            split_info: dict[str, Any] = {"file": split_path.name, "sha256": file_sha256(split_path),
                                          "partition": split}
        else:
            self.frames = sorted(self._scan())
            split, split_info = "all", {"partition": "all frames found (no split file given)"}
        self.dataset_name = f"hypersim-{split}"
        self.dataset_type = split
        self.licenses = [LICENCE]
        self.provenance = {
            "source": "hypersim",
            "split": split_info,
            "protocol": {
                "colour": "official Hypersim tone mapping (p90 brightness -> 0.8, gamma 1/2.2), uint8 by truncation",
                "instances": "semantic_instance ids != -1 (background/unlabeled = -1)",
                "categories": "NYU40 majority label of semantic.hdf5 inside the instance, when present",
                "empty_masks": "skipped", "images_without_instances": "skipped", "resolution": "native",
                "bbox_convention": "official (column/row 0 never count)",
            },
            "license": "Hypersim dataset: CC BY-SA 3.0 (Apple)",
        }

    def _scan(self) -> list[tuple[str, str, int]]:
        found = []
        for color in self.src.glob("ai_*/images/scene_cam_*_final_hdf5/frame.*.color.hdf5"):
            scene = color.parents[2].name
            cam = color.parent.name[len("scene_"):-len("_final_hdf5")]
            frame = color.name.split(".")[1]
            if not (frame.isdigit() and len(frame) <= 4):
                self.index_issues.append(("image", "unexpected frame file name", str(color.relative_to(self.src))))
                continue
            found.append((scene, cam, int(frame)))
        return found

    def image_keys(self) -> list[tuple[str, str, int]]:
        return list(self.frames)

    def _paths(self, scene: str, cam: str, frame: int) -> dict[str, Path]:
        """The frame's files, each checked to stay inside ``src`` (scene/camera names come from the split file)."""
        images = f"{scene}/images"
        stem = f"frame.{frame:04d}"
        geo = f"{images}/scene_{cam}_geometry_hdf5"
        rel = {"color": f"{images}/scene_{cam}_final_hdf5/{stem}.color.hdf5",
               "render_entity_id": f"{geo}/{stem}.render_entity_id.hdf5",
               "semantic_instance": f"{geo}/{stem}.semantic_instance.hdf5",
               "semantic": f"{geo}/{stem}.semantic.hdf5"}
        return {name: inside(self.src, path, name) for name, path in rel.items()}

    def load(self, key: tuple[str, str, int]) -> Loaded:
        scene, cam, frame = key
        paths = self._paths(scene, cam, frame)
        hdr = _read_h5(paths["color"], "color", channels=3)
        hw = hdr.shape[:2]
        entity = _read_h5(paths["render_entity_id"], "render_entity_id", hw)
        inst = _read_h5(paths["semantic_instance"], "semantic_instance", hw)
        warned = []
        semantic = None
        if paths["semantic"].exists():
            try:
                semantic = _read_h5(paths["semantic"], "semantic", hw)
            except SkipImage as exc:
                warned.append(("unusable semantic file (categories unknown)", f"{exc.reason}: {exc.detail}"))
        rgb = tonemap(hdr, entity)
        masks, ids, labels = [], [], []
        for sid in np.unique(inst).tolist():
            if sid == -1:
                continue
            m = inst == sid
            masks.append(m)
            ids.append(int(sid))
            labels.append(self._label(semantic, m))
        info = {
            "file_name": f"{scene}/images/scene_{cam}_final_hdf5/frame.{frame:04d}.color.hdf5",
            "source_id": _source_id(scene, cam, frame),
            "license": LICENCE["id"],
            "transform_note": "tone-mapped HDR (official Hypersim tone mapping), JPEG; no creative edits",
            "extra": {"source": "hypersim", "scene": scene, "camera": cam, "frame": frame,
                      "semantic_instance_ids": ids, "nyu40_ids": [lab[0] for lab in labels],
                      "categories": [lab[1] for lab in labels]},
        }
        instances = [{"category": lab[1], "category_id": lab[0], "source_id": f"semantic_instance {sid}"}
                     for sid, lab in zip(ids, labels)]
        return Loaded(rgb, masks, info, [], warned, instances)

    @staticmethod
    def _label(semantic: np.ndarray | None, mask: np.ndarray) -> tuple[int, str]:
        if semantic is None or semantic.shape != mask.shape:
            return -1, "unknown"
        values, counts = np.unique(semantic[mask], return_counts=True)
        top = int(values[np.argmax(counts)])
        return top, NYU40[top - 1] if 1 <= top <= len(NYU40) else "unlabeled"
