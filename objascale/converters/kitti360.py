"""KITTI-360 2D instance labels -> FLIP HDF5.

Source layout (``SRC`` = the KITTI-360 root):

* RGB: ``data_2d_raw/2013_05_28_drive_{seq:04d}_sync/image_{00|01}/data_rect/{frame:010d}.png`` (8-bit);
* labels: ``data_2d_semantics/train/2013_05_28_drive_{seq:04d}_sync/image_{00|01}/instance/{frame:010d}.png``;
* split: ``data_2d_semantics/train/2013_05_28_drive_val_frames.txt`` (default; ``--frames`` for another list);
  each line holds the frame's RGB path (and usually its ``semantic`` label path), relative to ``SRC``.

Protocol: the ``instance`` PNG is 16-bit; a pixel value ``v >= 1000`` is ``semanticId * 1000 + instanceId``
(object instance), ``v < 1000`` is a plain semantic id without instance (stuff, or an object not separated into
instances) and is not an object. Instances are kept when their semantic class has ``hasInstances`` in the
KITTI-360 ``labels.py`` (``classes="all"``: the 21 classes below), or only the 9 the 2D instance benchmark
evaluates (``classes="eval"``: hasInstances and not ignoreInInst). ``garage`` is kept as its own class (the devkit
merges it into building only for its evaluation). The label confidence maps are not used. Instances in ascending
pixel-value order; images at native resolution (1408x376). Licence: KITTI-360 data CC BY-NC-SA 3.0.

Bad input: a frame-list line that is not a rectified-image path is skipped and reported (a list without any
usable line is an error); paths leading out of ``SRC`` (``..``, symlinks) are refused; the label PNG's header
must declare the RGB image's size before it is decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from objascale.converters.common import Loaded, SkipImage, inside, load_label, load_rgb, require_file
from objascale.hdf5_reader import file_sha256

__all__ = ["Kitti360Source", "INSTANCE_CLASSES", "EVAL_CLASSES", "split_instance_ids"]

#: KITTI-360 labels.py classes with hasInstances=True: id -> name
INSTANCE_CLASSES = {
    11: "building", 17: "pole", 19: "traffic light", 20: "traffic sign", 24: "person", 25: "rider", 26: "car",
    27: "truck", 28: "bus", 29: "caravan", 30: "trailer", 31: "train", 32: "motorcycle", 33: "bicycle",
    34: "garage", 36: "stop", 37: "smallpole", 38: "lamp", 39: "trash bin", 40: "vending machine", 41: "box",
}
#: the subset evaluated by the 2D instance benchmark (hasInstances and not ignoreInInst)
EVAL_CLASSES = {k: INSTANCE_CLASSES[k] for k in (11, 24, 25, 26, 27, 28, 31, 32, 33)}
LICENCE = {"id": 1, "name": "CC BY-NC-SA 3.0 (KITTI-360)", "url": "https://creativecommons.org/licenses/by-nc-sa/3.0/"}
DEFAULT_FRAMES = Path("data_2d_semantics") / "train" / "2013_05_28_drive_val_frames.txt"


def split_instance_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance-image values -> (semantic id, instance id); values < 1000 have no instance (instance id -1)."""
    values = np.asarray(values, dtype=np.int64)
    has = values >= 1000
    return np.where(has, values // 1000, values), np.where(has, values % 1000, -1)


def _instance_path(rgb_rel: str) -> str:
    """``data_2d_raw/<drive>/<cam>/data_rect/<f>.png`` -> ``data_2d_semantics/train/<drive>/<cam>/instance/<f>.png``
    (``<drive>`` ending in ``_<seq>_sync``, ``<cam>`` ``image_NN``, ``<f>`` a frame number; nothing else)."""
    parts = Path(rgb_rel).parts
    if len(parts) != 5 or parts[0] != "data_2d_raw" or parts[3] != "data_rect" or not _frame_fields(parts):
        raise ValueError(f"not a KITTI-360 rectified image path: {rgb_rel}")
    return str(Path("data_2d_semantics", "train", parts[1], parts[2], "instance", parts[-1]))


def _frame_fields(parts: tuple[str, ...]) -> tuple[int, int, int] | None:
    """(sequence, camera, frame) of a ``data_2d_raw/<drive>/<cam>/data_rect/<f>.png`` path, None if malformed."""
    drive, cam, name = parts[1], parts[2], parts[-1]
    fields = drive.split("_")
    if len(fields) < 2 or not fields[-2].isdigit() or not cam.startswith("image_") or not cam[-2:].isdigit():
        return None
    stem = Path(name).stem
    if not (stem.isdigit() and len(stem) <= 10 and len(fields[-2]) <= 6):  # source_id must fit int64
        return None
    return int(fields[-2]), int(cam[-2:]), int(stem)


class Kitti360Source:
    """KITTI-360 frames listed in ``frames`` (default: the val list), ``classes`` "all" or "eval"."""

    def __init__(self, src: str | Path, *, frames: str | Path | None = None, classes: str = "all") -> None:
        self.src = Path(src)
        if not self.src.is_dir():
            raise FileNotFoundError(f"KITTI-360 root {self.src} does not exist")
        frames_path = Path(frames) if frames else self.src / DEFAULT_FRAMES
        if not frames_path.exists():
            raise FileNotFoundError(f"frame list {frames_path} not found (pass --frames, e.g. "
                                    "data_2d_semantics/train/2013_05_28_drive_val_frames.txt)")
        require_file(frames_path, "frame list")
        if classes not in ("all", "eval"):
            raise ValueError(f"classes must be 'all' or 'eval', not {classes!r}")
        self.classes = INSTANCE_CLASSES if classes == "all" else EVAL_CLASSES
        self.frames: list[tuple[str, str]] = []
        self.index_issues: list[tuple[str, str, str]] = []
        try:
            lines = frames_path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            raise ValueError(f"{frames_path} is not a text frame list: {exc}") from exc
        first_error = ""
        for n, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            rgb = next((f for f in fields if f.startswith("data_2d_raw")), fields[0])
            try:
                self.frames.append((rgb, _instance_path(rgb)))
            except ValueError as exc:  # one bad line: skipped and reported, the others are converted
                first_error = first_error or f"{frames_path}:{n}: {exc}"
                self.index_issues.append(("image", "malformed frame list line", f"{frames_path.name}:{n}: {exc}"))
        if not self.frames:
            raise ValueError(first_error or f"{frames_path} lists no frame")
        split = frames_path.stem.replace("2013_05_28_drive_", "").replace("_frames", "")
        self.dataset_name = f"kitti360-{split}"
        self.dataset_type = split
        self.licenses = [LICENCE]
        self.provenance = {
            "source": "kitti360",
            "split": split,
            "frames": {"file": frames_path.name, "sha256": file_sha256(frames_path), "count": len(self.frames)},
            "protocol": {
                "instance_ids": "value >= 1000: semanticId*1000 + instanceId; value < 1000: no instance (skipped)",
                "classes": f"{classes}: " + ", ".join(self.classes.values()),
                "confidence": "not used",
                "empty_masks": "skipped", "images_without_instances": "skipped",
                "resolution": "native", "bbox_convention": "official (column/row 0 never count)",
            },
            "license": "KITTI-360 data: CC BY-NC-SA 3.0",
        }

    def image_keys(self) -> list[int]:
        return list(range(len(self.frames)))

    def load(self, key: int) -> Loaded:
        rgb_rel, inst_rel = self.frames[key]
        rgb = load_rgb(inside(self.src, rgb_rel))
        # header checked against the RGB size before decoding (reasons "missing/unreadable instance label file",
        # "instance label size differs from image")
        inst = load_label(inside(self.src, inst_rel, "label"), cv2.IMREAD_UNCHANGED, rgb.shape[:2], "instance label")
        if inst.ndim != 2:
            raise SkipImage("unreadable instance label file", f"{inst_rel}: {inst.ndim}-D, expected one channel")
        values = np.unique(inst)
        semantic, instance = split_instance_ids(values)
        masks, kept, skipped = [], [], []
        for v, sem, ins in zip(values.tolist(), semantic.tolist(), instance.tolist()):
            if ins < 0:
                continue  # a plain semantic id (stuff): not an object
            if sem not in self.classes:  # counted: a value >= 1000 is an instance of some class
                reason = ("class not selected (--classes eval)" if sem in INSTANCE_CLASSES
                          else "semantic id without instances in KITTI-360 labels")
                skipped.append((reason, f"value {v} (semantic id {sem})"))
                continue
            masks.append(inst == v)
            kept.append((v, sem, ins))
        seq, cam_id, frame = _frame_fields(Path(rgb_rel).parts)
        cam = Path(rgb_rel).parts[2]
        info: dict[str, Any] = {
            "file_name": rgb_rel,
            "source_id": seq * 10**11 + cam_id * 10**10 + frame,
            "license": LICENCE["id"],
            "extra": {"source": "kitti360", "sequence": seq, "camera": cam, "frame": frame,
                      "instance_values": [k[0] for k in kept], "semantic_ids": [k[1] for k in kept],
                      "categories": [self.classes[k[1]] for k in kept], "instance_ids": [k[2] for k in kept]},
        }
        instances = [{"category": self.classes[sem], "category_id": sem, "source_id": f"instance {v}"}
                     for v, sem, _ in kept]
        return Loaded(rgb, masks, info, skipped, instances=instances)
