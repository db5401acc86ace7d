"""The one interface every segmentation model of the benchmark implements.

Coordinate conventions (used across flipbench):

* images are ``uint8 [H, W, 3]`` RGB, row-major ``[y, x, channel]``;
* masks are ``bool [H, W]`` at the image's native resolution;
* boxes are ``XYXY`` in **pixels**, inclusive pixel indices of the tight box of the ground-truth mask
  (``x_max`` is the last column that holds a mask pixel), as floats;
* ``rho`` is the Gaussian of the ground-truth mask in the FLIP HDF5 ``positions`` convention:
  ``[mu_x, mu_y, var_x, var_y, cov_xy]`` (float32) in the normalized frame where pixel column ``j`` sits at
  ``x = -1 + 2 j / (W - 1)`` and row ``i`` at ``y = -1 + 2 i / (H - 1)``.

Prompt kinds (``ObjectPrompt.kind``): ``"box"`` (``box_xyxy``), ``"gaussian"`` (``rho``) and ``"points"``
(``points`` as ``(x, y)`` pixel indices with ``point_labels`` 1 positive / 0 negative, optionally ``mask_input``: the
model's own logits of its previous prediction of the object, see :attr:`Predictor.last_mask_inputs`) and ``"text"``
(``text``: the object's category name, one of the vocabulary the text model was given; ``select`` says which
geometric rule picks the object's mask among the candidates of that class: ``"box"`` by ``box_xyxy``, ``"point"``
by ``points`` / ``point_labels``; see :mod:`baselines.candidates`). Each predictor lists the kinds it takes in
:attr:`Predictor.prompt_kinds` and refuses others.

A predictor sees one image at a time (``set_image``) and then any number of object prompts of that image
(``predict``). Models with an image encoder compute the embedding once in ``set_image`` and reuse it for all
objects; object-centric models (FLIP) do all their work in ``predict``. Stage timings go to ``self.timer``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from baselines.timing import StageTimer


#: kinds of :class:`ObjectPrompt`
PROMPT_KINDS = ("box", "gaussian", "points", "text")
#: geometric rules a text prompt's ``select`` names
TEXT_SELECTIONS = ("box", "point")


@dataclass(frozen=True)
class ObjectPrompt:
    """Prompt for one object, derived from its ground-truth mask.

    box_xyxy: float64 [4], tight inclusive XYXY pixel box of the mask.
    rho: float32 [5], Gaussian moments of the mask (normalized frame, see module docstring).
    kind: which of them the model is to use: "box", "gaussian", "points" or "text".
    points: float64 [K, 2], clicks as (x, y) pixel indices (kind "points", and "text" with ``select="point"``);
    point_labels: int64 [K], 1 positive, 0 negative; mask_input: the predictor's own logits of its previous
    prediction of this object (an element of :attr:`Predictor.last_mask_inputs`), or None.
    text: the object's category name (kind "text"); select: "box" or "point", the rule that picks its mask among the
    candidates of that category (kind "text").
    """

    box_xyxy: np.ndarray
    rho: np.ndarray
    kind: str = "box"
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    mask_input: Any = None
    text: str | None = None
    select: str | None = None


class PromptKindError(ValueError):
    """A predictor was given a prompt kind it does not take."""


def check_prompt_kinds(predictor: "Predictor", prompts: Sequence[ObjectPrompt]) -> str:
    """The one kind of ``prompts`` (all alike), refused with :class:`PromptKindError` unless the predictor takes it."""
    kinds = {p.kind for p in prompts}
    if len(kinds) > 1:
        raise PromptKindError(f"one predict call takes one prompt kind, got {sorted(kinds)}")
    kind = next(iter(kinds), predictor.prompt_kinds[0])
    if kind not in predictor.prompt_kinds:
        raise PromptKindError(f"{predictor.name or type(predictor).__name__} takes {' or '.join(predictor.prompt_kinds)}"
                              f" prompts, not {kind}")
    if kind == "text":
        for i, p in enumerate(prompts):
            if not isinstance(p.text, str) or not p.text.strip():
                raise PromptKindError(f"prompt {i}: a text prompt needs the object's category name, got {p.text!r}")
            if p.select not in TEXT_SELECTIONS:
                raise PromptKindError(f"prompt {i}: a text prompt needs select {' or '.join(TEXT_SELECTIONS)}, "
                                      f"got {p.select!r}")
    if kind == "points" or (kind == "text" and any(p.select == "point" for p in prompts)):
        for i, p in enumerate(prompts):
            if kind == "text" and p.select != "point":
                continue
            points = None if p.points is None else np.asarray(p.points)
            labels = None if p.point_labels is None else np.asarray(p.point_labels)
            if points is None or labels is None or points.ndim != 2 or points.shape[1:] != (2,) or len(points) < 1 \
                    or labels.shape != (len(points),):
                raise PromptKindError(f"prompt {i}: a points prompt needs points [K, 2] and point_labels [K], K >= 1")
    return kind


@dataclass(frozen=True)
class WeightsInfo:
    """Where a predictor's weights came from; recorded in every result.

    kind: ``"pretrained"`` (a real checkpoint), ``"random-init"`` (no checkpoint: numbers are meaningless
    except for shapes and timing) or ``"none"`` (weight-free reference predictor).
    source: file path or description; sha256: of the file when there is one.
    """

    kind: str
    source: str = ""
    sha256: str = ""


class Predictor(abc.ABC):
    """Box-, Gaussian- or point-promptable single-object segmenter."""

    #: registry name, e.g. ``"sam-b"``
    name: str = ""
    #: the :data:`PROMPT_KINDS` this predictor takes, its own ("native") kind first
    prompt_kinds: tuple[str, ...] = ("box",)
    #: after ``predict`` on points: per prompt, the logits to hand back as ``mask_input`` with the next click of the
    #: same object (None: the model takes no previous prediction)
    last_mask_inputs: list | None = None

    def __init__(self) -> None:
        self.timer = StageTimer()
        self.weights = WeightsInfo(kind="none")

    @abc.abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Take the image ``uint8 [H, W, 3]`` RGB that the next ``predict`` calls refer to."""

    @abc.abstractmethod
    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        """Return one ``bool [H, W]`` mask per prompt, at the native resolution of the current image."""

    def num_parameters(self) -> int:
        """Number of model parameters (0 for weight-free references)."""
        return 0

    @property
    def device(self) -> str:
        return "cpu"

    def describe(self) -> dict:
        """Provenance of this predictor for result files."""
        return {
            "name": self.name,
            "parameters": self.num_parameters(),
            "weights_kind": self.weights.kind,
            "weights_source": self.weights.source,
            "weights_sha256": self.weights.sha256,
            "device": self.device,
        }
