"""Make ``import torchvision`` work where torchvision's compiled ops cannot be loaded.

Why: the PyPI ``torchvision==0.28.0`` wheel (the release built against ``torch==2.13.0``) ships a ``_C.so``
linked against the CUDA build of torch. Beside the CPU-only ``torch 2.13.0+cpu`` the library fails to load,
torchvision silently continues without its operators, and then ``torchvision/_meta_registrations.py`` dies at
import time with ``RuntimeError: operator torchvision::nms does not exist`` (it registers a fake kernel for an
operator nobody defined).

What: :func:`ensure_torchvision` (run on import of this module) first tries to load torchvision's own ``_C``
library, exactly as torchvision does. Only if that fails does it define, with :mod:`torch.library`,

* ``torchvision::nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor`` -- a pure-torch greedy NMS
  with torchvision's semantics (boxes XYXY, keep a box unless its IoU with an already kept, higher-scoring box
  is ``> iou_threshold``; indices returned in decreasing score order, int64), and
* ``torchvision::qnms`` with the same schema (torchvision registers a fake kernel for it at import too),

then imports torchvision and lets ``torchvision.ops.boxes`` (``nms``, ``batched_nms``) call them. Every other
torchvision operator stays absent: ``roi_align`` already falls back to torchvision's pure-python version when
the compiled ops are missing, and nothing the baselines run needs ``deform_conv2d``, ``roi_pool`` etc.

Who needs what: segment-anything / MobileSAM import ``torchvision.transforms.functional`` (resize) and
``torchvision.ops.boxes`` (automatic mask generator); SAM 2 imports ``torchvision.transforms``; ultralytics
calls ``torchvision.ops.nms`` in its NMS whenever torchvision is imported. Every baseline adapter imports this
module before any of those packages.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import torch

#: True when torchvision's compiled operators could not be loaded and the pure-torch ones below are in use
SHIM_ACTIVE = False
_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it unregisters the operators


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, pure torch.

    boxes: float [N, 4] XYXY (continuous coordinates, x1 >= x0, y1 >= y0); scores: float [N].
    Returns int64 [K]: indices of the kept boxes in decreasing score order (ties broken by index, as a
    stable sort does). A box is suppressed when its IoU with a kept higher-scoring box is ``> iou_threshold``.
    IoUs are computed in the boxes' dtype, as torchvision's kernel does. One vectorised step per *kept* box,
    O(N) memory.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    x0, y0, x1, y1 = boxes.unbind(1)
    areas = (x1 - x0) * (y1 - y0)
    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x1[i], x1[rest]) - torch.maximum(x0[i], x0[rest])).clamp(min=0)
        h = (torch.minimum(y1[i], y1[rest]) - torch.maximum(y0[i], y0[rest])).clamp(min=0)
        inter = w * h
        # "not >" rather than "<=": like torchvision, a NaN IoU (two empty boxes) does not suppress
        order = rest[~(inter / (areas[i] + areas[rest] - inter) > iou_threshold)]
    return torch.stack(keep).to(torch.int64)


def _qnms_kernel(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    # torchvision passes the integer representation of quantized tensors here
    return nms_reference(dets.to(torch.float32), scores.to(torch.float32), iou_threshold)


def _compiled_ops_loadable() -> bool:
    """Load torchvision's ``_C`` extension the way torchvision does; False if it is missing or fails."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = package_dir / f"_C{suffix}"
        if candidate.is_file():
            try:
                torch.ops.load_library(str(candidate))
                return True
            except OSError:
                return False
    return False


def _operator_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def ensure_torchvision() -> None:
    """Import torchvision, registering pure-torch ``nms``/``qnms`` first when its own ops cannot load.

    Idempotent. Raises :class:`ModuleNotFoundError` with an install hint when torchvision is not installed.
    """
    global SHIM_ACTIVE, _LIBRARY
    if importlib.util.find_spec("torchvision") is None:
        raise ModuleNotFoundError(
            "torchvision is not installed; the baselines need the release matching torch "
            f"{torch.__version__.split('+')[0]}: pip install 'flipbench[baselines]'"
        )
    if _LIBRARY is None and not _operator_exists("nms") and not _compiled_ops_loadable():
        lib = torch.library.Library("torchvision", "DEF")
        for name, kernel in (("nms", nms_reference), ("qnms", _qnms_kernel)):
            lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.impl(name, kernel, "CPU")
            lib.impl(name, kernel, "CUDA")
        _LIBRARY = lib
        SHIM_ACTIVE = True

    import torchvision.ops.boxes

    if SHIM_ACTIVE:
        # torchvision.ops.boxes checks for its compiled library before calling torch.ops.torchvision.nms;
        # the operators it needs are now defined, so let nms / batched_nms through (rotated-box IoU, the
        # only other user of this check in the module, then fails with "operator does not exist").
        torchvision.ops.boxes._assert_has_ops = _noop


def _noop() -> None:
    return None


ensure_torchvision()
