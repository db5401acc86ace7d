"""Candidate masks + a selection rule: the one mechanism for models that take no prompt.

A candidate model (FastSAM's "segment everything", EoMT's instance queries, the text pipelines' regions) segments an
image **once** into ``N`` candidate masks (``set_image``: its stages ``preprocess`` / ``encoder`` / ``postprocess``,
shared by the image's objects); per object a rule then picks one (``predict``: the ``decoder`` stage, the selection):

* ``box`` (FastSAM's rule, ``FastSAMPredictor.prompt`` in ultralytics): the candidate of highest
  ``inside / (box_area + mask_area - inside)``, ``inside`` being its pixels within the box. FastSAM slices
  ``mask[y0:y1, x0:x1]`` half-open with a truncated integer box, so the inclusive pixel box ``[x0, y0, x1, y1]`` is
  read as ``[x0, y0, x1 + 1, y1 + 1)`` (:func:`selection_box`), exactly covering it. Ties: the first candidate.
* ``point`` (FastSAM's rule, same function): the candidates that contain a positive click and no negative one, merged
  into one mask (FastSAM returns that set; its original ``point_prompt`` merges it the same way). No such candidate:
  an empty mask.
* ``oracle`` (SAM's "oracle" rows): the candidate of highest IoU with the ground truth, ties to the first. It sees the
  answer, so its rows are an **upper bound** on what any selection could reach, labelled so in every table and
  figure and never ranked with prompted rows.

**Text models** (:class:`TextCandidatePredictor`: ``sclip``, ``sclip-sam2.1``, ``proxyclip``, ``proxyclip-fsa``) label
each candidate with a class of the vocabulary they were given (:meth:`TextCandidatePredictor.set_vocabulary`); a text
prompt (the object's category name) restricts the rules to the candidates of that class: the box rule, the point rule
or the oracle picks among them, and a class without candidates in the image gives an empty mask. Their image-level
work runs in ``set_image``; a class's candidates are made when a prompt first names it in the image and kept for the
image's other objects of that class.

Without candidates (nothing detected) every rule gives an empty mask. Masks are ``bool [N, H, W]`` torch tensors at
the image's native resolution (on the model's device); boxes inclusive ``XYXY`` pixels, points ``(x, y)`` pixel
indices, as in :mod:`baselines.base`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Sequence

import numpy as np

from baselines.base import ObjectPrompt, Predictor, check_prompt_kinds
from baselines._common import check_image, prompt_boxes

if TYPE_CHECKING:
    import torch

def selection_box(box_xyxy: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Inclusive pixel box -> FastSAM's integer half-open ``[x0, y0, x1, y1)`` slice, clipped to the image
    (truncation, as ``torch.as_tensor(..., dtype=int32)`` in ultralytics)."""
    box = (np.asarray(box_xyxy, dtype=np.float64).reshape(4) + np.array([0, 0, 1, 1])).astype(np.int64)
    x0, x1 = np.clip(box[[0, 2]], 0, width)
    y0, y1 = np.clip(box[[1, 3]], 0, height)
    return int(x0), int(y0), int(x1), int(y1)


def select_by_box(masks: torch.Tensor, areas: torch.Tensor, box_xyxy: np.ndarray) -> int | None:
    """Index of the candidate FastSAM's box rule picks for an inclusive pixel box; None without candidates."""
    import torch

    if len(masks) == 0:
        return None
    x0, y0, x1, y1 = selection_box(box_xyxy, masks.shape[1], masks.shape[2])
    inside = masks[:, y0:y1, x0:x1].sum(dim=(1, 2))
    union = (y1 - y0) * (x1 - x0) + areas - inside
    return int(torch.argmax(inside / union))


def select_by_points(masks: torch.Tensor, points: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """``bool [H, W]``: the union of the candidates holding a positive point and no negative one (FastSAM's rule)."""
    import torch

    height, width = masks.shape[1:]
    if len(masks) == 0:
        return torch.zeros((height, width), dtype=torch.bool, device=masks.device)
    coords = np.asarray(points, dtype=np.float64).reshape(-1, 2).astype(np.int64)
    coords[:, 0] = coords[:, 0].clip(0, width - 1)
    coords[:, 1] = coords[:, 1].clip(0, height - 1)
    labels = np.asarray(labels).reshape(-1)
    hold = masks[:, coords[:, 1], coords[:, 0]]  # [N, K]
    positive, negative = torch.as_tensor(labels == 1), torch.as_tensor(labels == 0)
    chosen = hold[:, positive].any(dim=1) if positive.any() else torch.ones(len(masks), dtype=torch.bool)
    chosen = chosen & ~hold[:, negative].any(dim=1)
    return masks[chosen.to(masks.device)].any(dim=0)


def select_by_oracle(masks: torch.Tensor, areas: torch.Tensor, gt: np.ndarray) -> int | None:
    """Index of the candidate of highest IoU with the ground truth ``bool [H, W]`` (ties: the first); None without
    candidates."""
    import torch

    if len(masks) == 0:
        return None
    truth = torch.as_tensor(np.asarray(gt, dtype=bool), device=masks.device)
    inter = (masks & truth).sum(dim=(1, 2))
    union = areas + truth.sum() - inter
    return int(torch.argmax(inter / union.clamp(min=1)))


class CandidatePredictor(Predictor):
    """A model that segments an image once into candidate masks; a selection rule picks one per object.

    Subclasses implement :meth:`segment` (charging their own stages to ``self.timer``). Box prompts select by the
    box rule, point prompts by the point rule; :meth:`predict_oracle` is the oracle rule (the evaluation calls it,
    with the ground truth, for ``--select oracle``).
    """

    prompt_kinds = ("box", "points")

    def __init__(self) -> None:
        super().__init__()
        self._candidates: torch.Tensor | None = None  # bool [N, H, W]
        self._areas: torch.Tensor | None = None  # int64 [N]
        self._scores: np.ndarray | None = None  # float [N] or None
        self._orig_hw: tuple[int, int] = (0, 0)

    @abc.abstractmethod
    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray | None]:
        """Candidates of ``image`` (``uint8 [H, W, 3]`` RGB): masks ``bool [N, H, W]`` at native resolution and their
        scores ``float [N]`` (None when the model gives none)."""

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = check_image(image)
        h, w = image.shape[:2]
        masks, scores = self.segment(image)
        if masks.dtype != torch.bool or masks.ndim != 3 or tuple(masks.shape[1:]) != (h, w):
            raise RuntimeError(f"{self.name or type(self).__name__} returned candidates {masks.dtype} "
                               f"{tuple(masks.shape)} for a {w}x{h} image; expected bool [N, {h}, {w}]")
        self._candidates, self._areas, self._scores = masks, masks.sum(dim=(1, 2)), scores
        self._orig_hw = (h, w)

    @property
    def candidates(self) -> torch.Tensor:
        """``bool [N, H, W]`` candidates of the current image."""
        if self._candidates is None:
            raise RuntimeError("call set_image(image) before selecting")
        return self._candidates

    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        masks = self.candidates
        kind = check_prompt_kinds(self, prompts)
        if kind == "box":
            boxes = prompt_boxes(prompts, self._orig_hw)
        out: list[np.ndarray] = []
        for i, prompt in enumerate(prompts):
            with self.timer.stage("decoder"):
                if kind == "box":
                    choice = select_by_box(masks, self._areas, boxes[i])
                    mask = None if choice is None else masks[choice]
                else:
                    mask = select_by_points(masks, prompt.points, prompt.point_labels)
            out.append(self._to_numpy(mask))
        return out

    def predict_oracle(self, gt: np.ndarray, text: str | None = None) -> np.ndarray:
        """The candidate of highest IoU with ``gt`` (the oracle rule: an upper bound); ``text``: only text models
        take it (:class:`TextCandidatePredictor`)."""
        if text is not None:
            raise ValueError(f"{self.name or type(self).__name__} takes no text prompt")
        masks = self.candidates
        if np.asarray(gt).shape != self._orig_hw:
            raise ValueError(f"ground truth {np.asarray(gt).shape} does not match the image {self._orig_hw}")
        with self.timer.stage("decoder"):
            choice = select_by_oracle(masks, self._areas, gt)
        return self._to_numpy(None if choice is None else masks[choice])

    def _to_numpy(self, mask: torch.Tensor | None) -> np.ndarray:
        with self.timer.stage("postprocess"):
            if mask is None:
                return np.zeros(self._orig_hw, dtype=bool)
            return mask.cpu().numpy().copy()


class TextCandidatePredictor(CandidatePredictor):
    """A candidate model whose candidates belong to classes of a vocabulary: a text prompt (the object's category name)
    restricts the selection rules to the candidates of its class.

    Call :meth:`set_vocabulary` before the first image. ``set_image`` runs the image-level work (:meth:`prepare`: the
    dense class scores, charged to the subclass's stages); the candidates of a class are made when a prompt first
    names it in that image (:meth:`class_candidates`, cached for the image's other objects of the class, charged to
    that object), so classes nobody asks for cost nothing.
    """

    prompt_kinds = ("text",)

    def __init__(self) -> None:
        super().__init__()
        self.vocabulary: tuple[str, ...] = ()
        self._class_index: dict[str, int] = {}
        self._by_class: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._prepared = False

    def set_vocabulary(self, names: Sequence[str]) -> None:
        """The class list (the dataset's category names, each once); the text prompts must be among them."""
        names = tuple(str(n) for n in names)
        if not names or len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise ValueError(f"a vocabulary is a non-empty list of distinct, non-empty names, got {list(names)[:8]}")
        self.vocabulary = names
        self._class_index = {n: k for k, n in enumerate(names)}
        self.vocabulary_changed()

    def vocabulary_changed(self) -> None:
        """Hook: recompute whatever depends on :attr:`vocabulary` (e.g. the text embeddings of the classes)."""

    @abc.abstractmethod
    def prepare(self, image: np.ndarray) -> None:
        """Image-level work on ``image`` (``uint8 [H, W, 3]`` RGB) that every class's candidates derive from."""

    @abc.abstractmethod
    def class_candidates(self, k: int) -> torch.Tensor:
        """Candidates of class ``vocabulary[k]`` in the prepared image: ``bool [n, H, W]`` at native resolution."""

    def set_image(self, image: np.ndarray) -> None:
        if not self.vocabulary:
            raise RuntimeError(f"{self.name or type(self).__name__}: call set_vocabulary(names) before set_image")
        image = check_image(image)
        self._orig_hw = image.shape[:2]
        self._by_class = {}
        self.prepare(image)
        self._prepared = True

    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray | None]:
        """Every class's candidates of ``image``, concatenated in vocabulary order (evaluation selects per class)."""
        import torch

        self.set_image(image)
        masks = [self._class(k)[0] for k in range(len(self.vocabulary))]
        return torch.cat(masks) if masks else torch.zeros((0, *self._orig_hw), dtype=torch.bool), None

    def class_of(self, text: str) -> int:
        """Index of ``text`` in the vocabulary; ``ValueError`` naming the vocabulary otherwise."""
        try:
            return self._class_index[text]
        except KeyError:
            shown = ", ".join(self.vocabulary[:12]) + (", ..." if len(self.vocabulary) > 12 else "")
            raise ValueError(f"{text!r} is not in the vocabulary of {self.name or type(self).__name__} "
                             f"({len(self.vocabulary)} names: {shown})") from None

    def _class(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._prepared:
            raise RuntimeError("call set_image(image) before selecting")
        if k not in self._by_class:
            masks = self.class_candidates(k)
            h, w = self._orig_hw
            if masks.dtype.is_floating_point or masks.ndim != 3 or tuple(masks.shape[1:]) != (h, w):
                raise RuntimeError(f"{self.name or type(self).__name__} returned candidates {masks.dtype} "
                                   f"{tuple(masks.shape)} for a {w}x{h} image; expected bool [n, {h}, {w}]")
            self._by_class[k] = (masks, masks.sum(dim=(1, 2)))
        return self._by_class[k]

    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        if not self._prepared:
            raise RuntimeError("call set_image(image) before selecting")
        check_prompt_kinds(self, prompts)
        boxes = prompt_boxes(prompts, self._orig_hw) if any(p.select == "box" for p in prompts) else None
        out: list[np.ndarray] = []
        for i, prompt in enumerate(prompts):
            masks, areas = self._class(self.class_of(prompt.text))
            with self.timer.stage("decoder"):
                if prompt.select == "box":
                    choice = select_by_box(masks, areas, boxes[i])
                    mask = None if choice is None else masks[choice]
                else:
                    mask = select_by_points(masks, prompt.points, prompt.point_labels) if len(masks) else None
            out.append(self._to_numpy(mask))
        return out

    def predict_oracle(self, gt: np.ndarray, text: str | None = None) -> np.ndarray:
        """The candidate of class ``text`` of highest IoU with ``gt`` (an upper bound on any selection)."""
        if text is None:
            raise ValueError(f"{self.name or type(self).__name__}: the oracle of a text model needs the object's class")
        if not self._prepared:
            raise RuntimeError("call set_image(image) before selecting")
        if np.asarray(gt).shape != tuple(self._orig_hw):
            raise ValueError(f"ground truth {np.asarray(gt).shape} does not match the image {self._orig_hw}")
        masks, areas = self._class(self.class_of(text))
        with self.timer.stage("decoder"):
            choice = select_by_oracle(masks, areas, gt)
        return self._to_numpy(None if choice is None else masks[choice])
