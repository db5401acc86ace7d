"""FastSAM-s / -x (via ``ultralytics.FastSAM``) as a candidate-mask model (:mod:`baselines.candidates`).

FastSAM has no prompt encoder: a 1-class YOLOv8-seg network segments *everything* (the authors' settings:
letterbox to 1024, confidence 0.4, NMS IoU 0.9, ``retina_masks=True`` so masks come at native resolution), and
a prompt then *selects* one of those masks. ``set_image`` runs the network once per image (charged to
``preprocess`` = ultralytics' letterboxing and ``encoder`` = network + NMS + mask assembly); ``predict`` does
the selection per object (``decoder``) with the authors' rules as implemented in ``FastSAMPredictor.prompt``, which
:mod:`baselines.candidates` holds for every candidate model: a box picks
``argmax(inside / (box_area + mask_area - inside))`` where ``inside`` is the mask area within ``mask[y0:y1, x0:x1]``
(the slice is half-open, so the inclusive pixel box ``[x0, y0, x1, y1]`` is read as ``[x0, y0, x1 + 1, y1 + 1]``); a
point picks the masks holding it; ``--select oracle`` the mask closest to the ground truth (an upper bound). When
the network finds nothing above the confidence threshold the prediction is an empty mask.

Selection is done here rather than by ``FastSAM.predict(bboxes=...)`` because ultralytics returns the *set* of
selected masks (deduplicated, in detection order), which loses the box -> mask correspondence when several
boxes pick the same mask, and it would rerun the network for every object.

Parameter counts: FastSAM-s builds as 11.79 M (paper 11.8 M). FastSAM-x builds as 71.75 M as the 1-class
YOLOv8x-seg of the checkpoint (71.83 M with the 80-class COCO head, 71.81 M counting BatchNorm statistics);
none of these reproduces the paper's 72.2 M, so the difference is the paper's figure, not a different network.

Weights: ultralytics' own loader unpickles checkpoints with ``weights_only=False`` (a crafted file runs code), so
it is never given a file: the network is built from its YAML config (``yolov8{s,x}-seg.yaml``, 1 class) and the
checkpoint's tensors are read without running code (:func:`load_fastsam_state_dict`) and loaded strictly;
:func:`fastsam_from_network` wraps the network in ``ultralytics.FastSAM`` as a loaded checkpoint would be.

Environment: ``YOLO_OFFLINE=1`` is set before ultralytics is imported (no update checks or downloads), and the
torch thread count that ultralytics resets on CPU (``select_device``) is restored on every call.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import numpy as np  # noqa: E402

import baselines.torchvision_compat  # noqa: E402,F401  (must precede ultralytics / torchvision)
import torch  # noqa: E402

from baselines._common import count_parameters, resolve_weights  # noqa: E402
from baselines.base import WeightsInfo  # noqa: E402
from baselines.candidates import CandidatePredictor, selection_box  # noqa: E402
from baselines.safe_load import load_module_tensors, load_strict  # noqa: E402
from baselines.timing import StageTimer  # noqa: E402

#: registry name -> YOLOv8-seg scale of the network
FASTSAM_SCALES = {"fastsam-s": "s", "fastsam-x": "x"}
#: the FastSAM authors' inference settings (README / Inference.py)
IMGSZ, CONF, IOU = 1024, 0.4, 0.9


class FastSamPredictor(CandidatePredictor):
    """FastSAM's "segment everything" masks as candidates (:mod:`baselines.candidates`: box, point and oracle rules);
    ``fastsam`` is an ``ultralytics.FastSAM`` model."""

    def __init__(self, fastsam, weights: WeightsInfo, device: str = "cpu") -> None:
        super().__init__()
        self._device = torch.device(device)
        self.timer = StageTimer(self._device)
        self.fastsam = fastsam
        self.weights = weights
        self._threads = torch.get_num_threads()
        # ultralytics sets torch's CPU threads to cpu_count - 1 when its predictor is set up; undo it
        fastsam.add_callback("on_predict_start", lambda _predictor: torch.set_num_threads(self._threads))

    @property
    def device(self) -> str:
        return str(self._device)

    def num_parameters(self) -> int:
        return count_parameters(self.fastsam.model)

    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, None]:
        h, w = image.shape[:2]
        self.timer.sync()
        start = time.perf_counter()
        try:
            result = self.fastsam.predict(
                np.ascontiguousarray(image[..., ::-1]),  # ultralytics reads numpy images as BGR
                imgsz=IMGSZ,
                conf=CONF,
                iou=IOU,
                retina_masks=True,
                device=str(self._device),
                verbose=False,
            )[0]
            masks = torch.zeros((0, h, w), dtype=torch.bool) if result.masks is None else result.masks.data > 0.5
            if masks.shape[1:] != (h, w):
                raise RuntimeError(f"FastSAM returned masks of shape {tuple(masks.shape)} for a {w}x{h} image")
            self.timer.sync()  # the mask kernels belong to this image's encoder time
        finally:
            torch.set_num_threads(self._threads)
        total = time.perf_counter() - start
        preprocess = min(total, result.speed.get("preprocess", 0.0) / 1000.0)
        self.timer.add("preprocess", preprocess)
        self.timer.add("encoder", total - preprocess)
        return masks, None

    def selection_boxes(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Inclusive pixel boxes ``[N, 4]`` -> the integer half-open ``[x0, y0, x1, y1)`` slices FastSAM uses."""
        h, w = self._orig_hw
        return np.array([selection_box(b, h, w) for b in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)],
                        dtype=np.int64).reshape(-1, 4)


def _import_ultralytics():
    """Import ultralytics and undo its process-wide patch of ``PIL.Image.open``.

    At import, ultralytics replaces ``PIL.Image.open`` with a wrapper that, on an unidentified image, tries to
    install and load ``pi-heif`` and raises ``ModuleNotFoundError`` offline, which breaks every other reader of
    images in the process (e.g. the converters' handling of corrupt files). FastSAM does not need it.
    """
    import ultralytics
    from PIL import Image
    from ultralytics.utils import patches

    Image.open = getattr(patches, "_image_open", Image.open)
    return ultralytics


def build_segmentation_network(variant: str, num_classes: int = 1):
    """Randomly initialised YOLOv8-seg network of the FastSAM ``variant`` (ultralytics ``SegmentationModel``)."""
    _import_ultralytics()
    from ultralytics.nn.tasks import SegmentationModel

    return SegmentationModel(f"yolov8{FASTSAM_SCALES[variant]}-seg.yaml", nc=num_classes, verbose=False)


def load_fastsam_state_dict(path) -> dict:
    """Parameters and buffers of the network in an ultralytics FastSAM checkpoint, read without running code.

    Ultralytics stores ``{"model": <pickled SegmentationModel, fp16>, "ema": <same or None>, "train_args": ...}``
    and loads it with ``weights_only=False`` (any code in the file would run). Here the pickle is read by
    :func:`baselines.safe_load.load_module_tensors`: classes become inert records, only the tensors are kept
    (``ema`` when present, else ``model``, as ultralytics chooses).
    """
    return load_module_tensors(path, key="model", fallback_key="ema")


def fastsam_from_network(network, source: str):
    """An ``ultralytics.FastSAM`` around ``network`` (a ``SegmentationModel``), set up as ``FastSAM(path)`` sets
    up a loaded checkpoint (fp32, eval, task ``segment``, args reduced to the checkpoint keys) but without reading
    any file; ``source`` (a name ending in ``.pt``) names the weights in ultralytics' bookkeeping only."""
    if not source.endswith(".pt"):
        raise ValueError(f"source must be a name ending in .pt, got {source!r}")
    ultralytics = _import_ultralytics()
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.engine.model import Model

    class _FromNetwork(ultralytics.FastSAM):
        def _load(self, weights: str, task: str | None = None) -> None:  # Model.__init__ calls it for a .pt name
            (net,) = self.__dict__.pop("_flipbench_network")
            net.args = {**DEFAULT_CFG_DICT, "task": "segment"}
            net.pt_path, net.task = weights, "segment"
            self.model, self.ckpt, self.task, self.ckpt_path = net, {}, "segment", weights
            self.overrides = net.args = self._reset_ckpt_args(net.args)
            self.overrides["model"], self.overrides["task"] = weights, "segment"
            self.model_name = weights

    wrapper = _FromNetwork.__new__(_FromNetwork)
    object.__setattr__(wrapper, "_flipbench_network", (network.float().eval(),))
    Model.__init__(wrapper, model=source, task="segment")
    return wrapper


def _build(variant: str, checkpoint: str | None, device: str, allow_random: bool) -> FastSamPredictor:
    path, weights = resolve_weights(variant, checkpoint, allow_random)
    state = load_fastsam_state_dict(path) if path is not None else None  # refused before anything is built
    network = build_segmentation_network(variant)
    network.names = {0: "object"}
    if state is not None:
        load_strict(network, state, path, f"{variant} (YOLOv8{FASTSAM_SCALES[variant]}-seg, 1 class)")
    # a fixed ``.pt`` name: ultralytics only books it (the checkpoint's path is in ``weights``); a user path ending
    # in .yaml would make Model.__init__ build a network from that file instead
    return FastSamPredictor(fastsam_from_network(network, f"{variant}.pt"), weights, device)


def build_fastsam_s(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> FastSamPredictor:
    return _build("fastsam-s", checkpoint, device, allow_random)


def build_fastsam_x(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> FastSamPredictor:
    return _build("fastsam-x", checkpoint, device, allow_random)
