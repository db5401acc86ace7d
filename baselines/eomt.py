"""EoMT (Kerssies et al., "Your ViT is Secretly an Image Segmentation Model", CVPR 2025) as a candidate-mask model.

EoMT segments an image without a prompt: a plain ViT whose last blocks carry ``num_queries`` learned queries, each
giving a mask and a class. flipbench runs the **library's** model (Hugging Face ``transformers``:
``EomtForUniversalSegmentation`` with ``EomtImageProcessor``; the model code is not rewritten here) and hands its
instance candidates to the selection rules of :mod:`baselines.candidates` (box, point, oracle).

* **Preprocessing**: the processor's, as the checkpoints' processor configs set it for instance segmentation: resize
  the longest side to ``size`` (640 or 1280; bilinear, aspect kept), rescale to [0, 1], ImageNet mean/std, zero-pad
  bottom/right to ``size x size`` (``do_pad=True``).
* **Candidates**: from the raw query masks (``masks_queries_logits``), as the official instance evaluation does
  (``training/mask_classification_instance.py`` of tue-mps/eomt, ``eval_step``): class probabilities
  ``softmax(class_logits)[:, :-1]`` (no "no object"), the top ``top_k = 100`` (query, class) pairs, each query's mask
  logits upsampled bilinearly to ``size x size``, the padding cropped and upsampled to the image
  (``EomtImageProcessor.unpad_image``), mask = logit > 0 (sigmoid > 0.5), score = class probability x mean mask
  probability inside the mask. Not ``post_process_instance_segmentation``, whose single id map lets later queries
  overwrite earlier ones. A query in several of the top pairs is one candidate (its best pair's class and score):
  the selection rules look only at masks. Masks are upsampled a few queries at a time, so memory is
  ``candidates x H x W`` booleans, not floats.
* **Stages**: ``preprocess`` (processor), ``encoder`` (the model's forward), ``postprocess`` (candidate masks at
  native resolution), per image; the selection per object is ``decoder`` (see :mod:`baselines.candidates`).
* **Weights**: the authors' Hugging Face checkpoints in ``transformers`` format, read from ``model.safetensors`` (a
  format that cannot run code) and loaded strictly into the architecture built here from :data:`EOMT_VARIANTS`.

Importing this module needs the optional ``eomt`` extra (``pip install -e ".[eomt]"``: transformers, safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import baselines.torchvision_compat  # noqa: F401  (must precede transformers' torchvision import)
import torch

from baselines._common import count_parameters, resolve_weights
from baselines.base import WeightsInfo
from baselines.candidates import CandidatePredictor
from baselines.timing import StageTimer

#: the official instance evaluation keeps this many (query, class) pairs per image (``eval_top_k_instances``)
TOP_K = 100
#: queries upsampled to native resolution at a time (bounds the float memory of the upsampling)
QUERY_CHUNK = 16

#: COCO's 80 thing classes in the contiguous order of the COCO instance checkpoints' label ids
COCO_THING_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclass(frozen=True)
class EomtVariant:
    """Architecture and input size of one checkpoint (``EomtConfig`` fields; DINOv2-L backbone, patch 16)."""

    hub_repo: str
    image_size: int
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    patch_size: int = 16
    num_queries: int = 200
    num_blocks: int = 4
    num_register_tokens: int = 4
    labels: tuple[str, ...] = COCO_THING_CLASSES

    def config(self):
        from transformers import EomtConfig

        return EomtConfig(
            hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, patch_size=self.patch_size, image_size=self.image_size,
            num_queries=self.num_queries, num_blocks=self.num_blocks, num_register_tokens=self.num_register_tokens,
            num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
            label2id={name: k for k, name in enumerate(self.labels)},
        )


#: registry name -> checkpoint (COCO instance segmentation, the authors' Hugging Face repositories)
EOMT_VARIANTS = {
    "eomt-l-640": EomtVariant("tue-mps/coco_instance_eomt_large_640", 640),
    "eomt-l-1280": EomtVariant("tue-mps/coco_instance_eomt_large_1280", 1280),
}


def image_processor(size: int):
    """``EomtImageProcessor`` for instance segmentation at ``size`` (longest side, zero-padded square)."""
    from transformers import EomtImageProcessor

    return EomtImageProcessor(size={"shortest_edge": size, "longest_edge": size}, do_pad=True)


def instance_candidates(
    mask_logits: torch.Tensor, class_logits: torch.Tensor, image_hw: tuple[int, int], processor, top_k: int = TOP_K,
    chunk: int = QUERY_CHUNK,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """The official instance evaluation's candidates of one image.

    mask_logits: ``[Q, h, w]`` (``masks_queries_logits[0]``, the model's mask resolution); class_logits: ``[Q, C + 1]``;
    image_hw: the image's native ``(H, W)``; processor: the ``EomtImageProcessor`` that made the input.
    Returns ``(masks bool [N, H, W], scores float [N], labels int [N], queries int [N])``: one candidate per distinct
    query among the ``top_k`` (query, class) pairs, with its best pair's class and ``score = class probability x mean
    mask probability inside the mask`` (the mask is the query's, so its best pair is that of highest class
    probability), sorted by score (descending, ties in query-rank order).
    """
    import torch.nn.functional as F

    size = processor.size
    target = (size.shortest_edge, size.longest_edge or size.shortest_edge)
    probs = class_logits.softmax(dim=-1)[:, :-1]  # [Q, C]
    num_classes = probs.shape[1]
    k = min(top_k, probs.numel())
    top_scores, top_index = probs.flatten().topk(k, sorted=True)
    queries, labels = top_index // num_classes, top_index % num_classes
    first = {}
    for rank, q in enumerate(queries.tolist()):
        first.setdefault(q, rank)  # a query's best pair is its first in descending order
    ranks = torch.tensor(sorted(first.values()), dtype=torch.long)
    queries, labels, class_scores = queries[ranks], labels[ranks], top_scores[ranks]
    height, width = image_hw
    masks = torch.zeros((len(queries), height, width), dtype=torch.bool, device=mask_logits.device)
    mask_scores = torch.zeros(len(queries), dtype=torch.float32)
    for start in range(0, len(queries), chunk):
        part = mask_logits[queries[start : start + chunk]][None]  # [1, q, h, w]
        part = F.interpolate(part, size=target, mode="bilinear")
        (native,) = processor.unpad_image(part, [(height, width)], {"shortest_edge": size.shortest_edge,
                                                                     "longest_edge": size.longest_edge})
        binary = native > 0
        masks[start : start + chunk] = binary
        inside = binary.flatten(1)
        mask_scores[start : start + chunk] = ((native.sigmoid().flatten(1) * inside).sum(1)
                                              / (inside.sum(1) + 1e-6)).float().cpu()
    scores = class_scores.float().cpu() * mask_scores
    order = torch.argsort(scores, descending=True, stable=True)
    return (masks[order.to(masks.device)], scores[order].numpy(), labels.cpu()[order].numpy(),
            queries.cpu()[order].numpy())


class EomtPredictor(CandidatePredictor):
    """EoMT's instance candidates (:func:`instance_candidates`) selected by :mod:`baselines.candidates`' rules.

    model: a ``transformers`` ``EomtForUniversalSegmentation`` in eval mode; processor: :func:`image_processor`.
    After ``set_image``, ``candidate_scores`` / ``candidate_labels`` hold the candidates' scores and class ids.
    """

    def __init__(self, model, processor, weights: WeightsInfo, device: str = "cpu", top_k: int = TOP_K) -> None:
        super().__init__()
        self._device = torch.device(device)
        self.timer = StageTimer(self._device)
        self.model = model.to(self._device).eval()
        self.processor = processor
        self.weights = weights
        self.top_k = top_k
        self.candidate_scores: np.ndarray | None = None
        self.candidate_labels: np.ndarray | None = None

    @property
    def device(self) -> str:
        return str(self._device)

    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def describe(self) -> dict:
        size = self.processor.size
        return {**super().describe(), "input_size": int(size.longest_edge or size.shortest_edge), "top_k": self.top_k}

    def forward(self, image: np.ndarray):
        """Processor + model on one ``uint8 [H, W, 3]`` RGB image: ``(masks_queries_logits [Q, h, w],
        class_queries_logits [Q, C + 1])``."""
        with self.timer.stage("preprocess"), torch.inference_mode():
            pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"].to(self._device)
        with self.timer.stage("encoder"), torch.inference_mode():
            out = self.model(pixel_values=pixel_values)
        return out.masks_queries_logits[0], out.class_queries_logits[0]

    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        mask_logits, class_logits = self.forward(image)
        with self.timer.stage("postprocess"), torch.inference_mode():
            masks, scores, labels, _ = instance_candidates(mask_logits, class_logits, image.shape[:2],
                                                           self.processor, self.top_k)
        self.candidate_scores, self.candidate_labels = scores, labels
        return masks, scores


def load_eomt_safetensors(path) -> dict:
    """The tensors of a ``model.safetensors`` file (no code can run); ``CheckpointError`` naming the file otherwise."""
    from safetensors.torch import load_file

    from baselines.safe_load import CheckpointError

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({type(exc).__name__}: {exc}); EoMT loads the "
                              "authors' transformers-format model.safetensors") from exc


def build_eomt_model(config, state_dict: dict | None = None, source: str = "EoMT"):
    """``EomtForUniversalSegmentation`` of ``config`` in eval mode; random initialisation unless ``state_dict``
    (strict; a checkpoint without ``attn_mask_probs`` gets 0, the value the authors' training ends with, i.e. no
    masked attention at inference; one without the loss's ``criterion.empty_weight`` gets the config's)."""
    from transformers import EomtForUniversalSegmentation

    from baselines.safe_load import load_strict

    model = EomtForUniversalSegmentation(config)
    if state_dict is not None:
        state_dict = dict(state_dict)
        state_dict.setdefault("attn_mask_probs", torch.zeros(config.num_blocks))
        # the loss's class weights: a training buffer derived from the config, absent from inference checkpoints
        state_dict.setdefault("criterion.empty_weight", model.state_dict()["criterion.empty_weight"])
        load_strict(model, state_dict, source, f"EoMT ({config.hidden_size}-d, {config.num_hidden_layers} layers)")
    return model.eval()


def _build(variant: str, checkpoint: str | None, device: str, allow_random: bool) -> EomtPredictor:
    spec = EOMT_VARIANTS[variant]
    path, weights = resolve_weights(variant, checkpoint, allow_random)
    state = load_eomt_safetensors(path) if path is not None else None  # refused before anything is built
    model = build_eomt_model(spec.config(), state, str(path))
    if state is None:  # the authors' models end training with masked attention switched off
        model.attn_mask_probs.zero_()
    return EomtPredictor(model, image_processor(spec.image_size), weights, device)


def build_eomt_l_640(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> EomtPredictor:
    return _build("eomt-l-640", checkpoint, device, allow_random)


def build_eomt_l_1280(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> EomtPredictor:
    return _build("eomt-l-1280", checkpoint, device, allow_random)


#: a tiny random EoMT for tests and pipeline checks (``eomt-test``): 3 layers of 32 channels, 64 px input
TEST_VARIANT = EomtVariant("(none: random weights for tests)", 64, hidden_size=32, num_hidden_layers=3,
                           num_attention_heads=2, num_queries=12, num_blocks=2, labels=COCO_THING_CLASSES)


def build_eomt_test(checkpoint: str | None = None, device: str = "cpu", allow_random: bool = False) -> EomtPredictor:
    """The :data:`TEST_VARIANT`: random weights (seeded by the caller's torch seed; ``allow_random`` required, as for
    every model without a checkpoint), or a ``model.safetensors`` of that shape given as ``eomt-test:PATH``."""
    from pathlib import Path

    from baselines.weights import MissingCheckpointError, sha256_of

    config = TEST_VARIANT.config()
    if checkpoint is not None:
        model = build_eomt_model(config, load_eomt_safetensors(checkpoint), checkpoint)
        weights = WeightsInfo(kind="pretrained", source=checkpoint, sha256=sha256_of(Path(checkpoint)))
    elif allow_random:
        model = build_eomt_model(config)
        model.attn_mask_probs.zero_()
        weights = WeightsInfo(kind="random-init", source="random initialisation (tiny test model)")
    else:
        raise MissingCheckpointError("eomt-test is a tiny model for tests without a published checkpoint; pass "
                                     "--allow-random-weights (or eomt-test:PATH to a model.safetensors of its shape)")
    return EomtPredictor(model, image_processor(TEST_VARIANT.image_size), weights, device)
