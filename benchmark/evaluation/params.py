"""Every constant of the evaluation protocol, in one documented object.

A run records ``EvalParams.to_dict()`` and its hash; runs with different protocols are never mixed silently
(``flipbench eval`` refuses to resume into a run with another hash). ``flipbench report`` compares runs by
:meth:`EvalParams.comparison_hash`, which leaves out :data:`MODE_FIELDS`: runs that differ only in the FLIP
inference mode are reported together, their rows named by the mode (``flip-tiny (hierarchical)``).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

#: protocol fields that choose how a model is run or prompted, not how objects are scored; runs that differ only
#: here are comparable (the report names each row by its mode and prompt), but a run is never resumed under another
#: value
MODE_FIELDS: tuple[str, ...] = ("flip_mode", "prompt", "select", "max_clicks", "upsampler", "flip_precision")

#: prompt kinds of ``eval --prompt`` (see :class:`EvalParams`); "native": each model its own (box or Gaussian)
PROMPT_KINDS: tuple[str, ...] = ("native", "box", "gaussian", "point", "clicks", "text")
#: selection rules of candidate-mask models (``eval --select``); "prompt": the rule of the prompt kind
SELECTION_RULES: tuple[str, ...] = ("prompt", "box", "point", "oracle")
#: how the CLIP text pipelines (``sclip``, ``sclip-sam2.1``) bring their patch features to pixels (``eval --upsampler``)
UPSAMPLERS: tuple[str, ...] = ("bilinear", "loftup")

#: fields added after runs were first recorded, with the value every earlier run implicitly used: a field at this
#: value is left out of the hash, so the hashes of earlier runs (and their resumption) are unchanged
LATER_FIELDS: dict[str, object] = {"prompt": "native", "select": "prompt", "max_clicks": 20,
                                   "upsampler": "bilinear", "flip_precision": "fp32"}

#: compute precisions of FLIP's pixel predictor (``eval --flip-precision``; :mod:`benchmark.flip.fast_decoder`)
FLIP_PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def protocol_digest(protocol: dict, exclude: tuple[str, ...] = ()) -> str:
    """Short stable hash (16 hex) of a protocol dict (``EvalParams.to_dict()``, also as read back from
    ``run.json``) without the ``exclude`` keys and without :data:`LATER_FIELDS` at their implicit value."""
    kept = {k: v for k, v in protocol.items()
            if k not in exclude and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _log_bins() -> tuple[float, ...]:
    # 13 edges -> 12 bins: two per decade from 1e-6 to 1e-1, then 0.1-0.25 (the top of ObjaScale's range)
    # and 0.25-1 (larger objects, common in COCO-like datasets)
    edges = [10.0 ** (e / 2) for e in range(-12, -1)]
    return tuple(float(f"{x:.6g}") for x in edges) + (0.25, 1.0)


@dataclass(frozen=True)
class EvalParams:
    """Protocol of one evaluation run.

    Prompts (derived from the ground-truth mask of each object at native resolution):

    * box models get the tight inclusive XYXY pixel box of the mask (``mask_to_bbox``), not the stored
      ``instance_mask_bboxes`` (the official converter never lets a coordinate be 0; see objascale docs);
    * FLIP gets the stored Gaussian ``positions`` of the object (the official protocol), no noise.

    ``prompt`` chooses the prompt every model gets (``eval --prompt``; a model that cannot take it is refused):

    * ``native``: each model its own, as before prompt kinds existed: the box for SAM-family models and the box and
      GrabCut references, the Gaussian for FLIP and the ellipse reference, box selection for candidate models;
    * ``box``, ``gaussian``: that prompt for every model;
    * ``point``: one positive click at the interior point of the mask farthest from its boundary (SAM's 1-point
      protocol; :func:`benchmark.evaluation.prompts.farthest_interior_point`);
    * ``clicks``: the interactive simulation of RITM / SimpleClick, ``max_clicks`` clicks each at the interior-most
      point of the larger error (:func:`benchmark.evaluation.prompts.next_click`), the model fed its previous
      logits where it accepts them; the record keeps the IoU after every click;
    * ``text``: the object's category name (the record's ``category``), the class list being the dataset's vocabulary
      (every category name of its objects, :func:`benchmark.evaluation.evaluate.text_vocabulary`). Text models
      (``sclip``, ``sclip-sam2.1``, ``proxyclip``, ``proxyclip-fsa``) segment the image into candidate masks of each
      class, and ``select`` (``box``, ``point`` or ``oracle``; required, ``prompt`` is refused) picks the object's mask
      among the candidates of its category.

    ``select`` is the rule by which a candidate-mask model (FastSAM, EoMT: segment the image once, no prompt
    encoder) picks one of its masks per object (:mod:`baselines.candidates`): ``prompt`` (the rule of the prompt:
    ``box`` for box prompts, ``point`` for point prompts), ``box``, ``point``, or ``oracle`` (the candidate of
    highest IoU with the ground truth: an upper bound, labelled so everywhere). Prompted models ignore it.

    ``upsampler`` (``bilinear`` or ``loftup``) is how ``sclip`` and ``sclip-sam2.1`` bring CLIP's patch features to
    pixels (SCLIP's bilinear upsampling of the class scores, or the LoftUp feature upsampler); other models ignore it.

    Scoring: IoU of the predicted and ground-truth masks at native resolution; an object with an empty
    ground-truth mask is not scored (IoU NaN) but counted as ``gt_empty`` and reported.
    """

    #: FLIP patch sampler
    flip_num_tokens: int | None = None  # None: the config's avg_num_tokens (512 for the official models)
    flip_coverage: float = 1.44
    flip_max_overlap: float = 2.67
    #: FLIP inference mode: "full" (every pixel), "window" (5-sigma box, the official README's --optimized),
    #: "hierarchical" (coarse-to-fine refinement inside the 5-sigma box)
    flip_mode: str = "window"
    flip_window_sigmas: float = 5.0
    #: compute precision of FLIP's pixel predictor: "fp32" (default, equals the official outputs within float32
    #: rounding) or "bf16" (bfloat16 matrix multiplies, see benchmark.flip.fast_decoder; changes masks slightly)
    flip_precision: str = "fp32"
    #: prompt kind (see above) and candidate selection rule
    prompt: str = "native"
    select: str = "prompt"
    #: clicks of the ``clicks`` simulation (RITM, SimpleClick and SAM evaluate up to 20)
    max_clicks: int = 20
    #: feature upsampler of the CLIP text pipelines (see above)
    upsampler: str = "bilinear"
    #: seed of every random choice of a run (FLIP sampling, object order is fixed)
    seed: int = 0
    #: relative mask area (mask pixels / image pixels) bin edges for size-resolved tables and heat maps
    relative_size_edges: tuple[float, ...] = field(default_factory=_log_bins)
    #: absolute mask size (pixels) bin edges for the heat maps: powers of 4 from 1 to 4^12 (~16.8 Mpx)
    absolute_size_edges: tuple[float, ...] = tuple(float(4**k) for k in range(13))
    #: objects below this relative mask area are "small" (Table 3 of the paper: < 1 % of the image)
    small_object_threshold: float = 0.01
    #: timing: the first N images each model processes in a session are warm-up, excluded from timing statistics
    #: (a resumed run warms up again: caches, allocators and kernels are cold after a restart)
    timing_warmup_images: int = 2

    def __post_init__(self) -> None:
        self._check_types()
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {', '.join(PROMPT_KINDS)}, got {self.prompt!r}")
        if self.select not in SELECTION_RULES:
            raise ValueError(f"select must be one of {', '.join(SELECTION_RULES)}, got {self.select!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, got {self.upsampler!r}")
        if self.prompt == "text" and self.select == "prompt":
            raise ValueError("text prompts pick each object's mask among the candidates of its category by a rule: "
                             "give --select box, point or oracle")
        if self.flip_precision not in FLIP_PRECISIONS:
            raise ValueError(f"flip_precision must be one of {', '.join(FLIP_PRECISIONS)}, got {self.flip_precision!r}")
        if not isinstance(self.max_clicks, int) or self.max_clicks < 1:
            raise ValueError(f"max_clicks must be a positive integer, got {self.max_clicks!r}")
        if self.prompt != "clicks":  # no effect on other prompts: one protocol whatever was given
            object.__setattr__(self, "max_clicks", LATER_FIELDS["max_clicks"])

    def _check_types(self) -> None:
        """Each field of the type it is used as (a protocol read back from an edited ``run.json`` included):
        ``ValueError`` naming the field otherwise."""
        def real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        def count(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0

        for f in fields(self):
            v = getattr(self, f.name)
            default = f.default if f.default_factory is MISSING else f.default_factory()
            if isinstance(default, tuple):  # the size-bin edges
                ok = (isinstance(v, tuple) and len(v) >= 2 and all(real(x) for x in v)
                      and all(a < b for a, b in zip(v, v[1:])))
                what = "an increasing list of at least two finite numbers"
            elif default is None:  # flip_num_tokens: None means the config's
                ok, what = v is None or (count(v) and v > 0), "null or a positive integer"
            elif isinstance(default, str):
                ok, what = isinstance(v, str), "a string"
            elif isinstance(default, bool):
                ok, what = isinstance(v, bool), "true or false"
            elif isinstance(default, int):
                ok, what = count(v), "a non-negative integer"
            else:
                ok, what = real(v), "a finite number"
            if not ok:
                raise ValueError(f"protocol field {f.name!r} is {v!r}, not {what}")

    def to_dict(self) -> dict:
        return asdict(self)

    def protocol_hash(self) -> str:
        """Stable short hash of the parameters that change results (everything here)."""
        return protocol_digest(self.to_dict())

    def comparison_hash(self) -> str:
        """Hash of the protocol without :data:`MODE_FIELDS`: equal for runs a report may show side by side."""
        return protocol_digest(self.to_dict(), MODE_FIELDS)

    @classmethod
    def from_dict(cls, data: dict) -> "EvalParams":
        data = dict(data)
        for key in ("relative_size_edges", "absolute_size_edges"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def relative_size_bin(self, relative_size: np.ndarray) -> np.ndarray:
        """Bin index per relative size: bin k holds edges[k] <= x < edges[k+1], the last bin also x == edges[-1]
        (a mask covering the whole image); -1 below the first edge, len(edges)-1 above the last."""
        relative_size = np.asarray(relative_size, dtype=float)
        bins = np.digitize(relative_size, self.relative_size_edges) - 1
        return np.where(relative_size == self.relative_size_edges[-1], len(self.relative_size_edges) - 2, bins)
