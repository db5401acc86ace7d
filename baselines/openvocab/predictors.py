"""The text-prompted rows: ``sclip``, ``sclip-sam2.1``, ``proxyclip``, ``proxyclip-fsa`` (and tiny random ``-test``
variants), as :class:`~baselines.candidates.TextCandidatePredictor` models.

* ``sclip`` (Wang et al., "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference", ECCV 2024;
  wangf3014/SCLIP): CLIP ViT-B/16 with correlative self-attention in its last block
  (:func:`~baselines.openvocab.sclip_attention.sclip_last_block`), SCLIP's COCO-Object settings
  (``configs/cfg_coco_object.py``: logit scale 50, probability threshold 0.1; windows 224 / stride 112; the 26
  background names of ``cls_coco_object.txt``). Candidates of a class: the connected components of its pixels in
  the semantic map (:func:`~baselines.openvocab.regions.components`).
* ``sclip-sam2.1``: the same class probabilities, then per region of the prompted class where its probability is at
  least 0.7 and that has at least 100 pixels, one positive point at the region's interior-most pixel
  (:func:`~baselines.openvocab.regions.region_points`), and SAM 2.1 Hiera-L's mask for that point (one click:
  three masks, the most confident kept, SAM's protocol for an ambiguous click; logits > 0 at native resolution):
  the candidates of the class. ``eval --upsampler loftup`` puts LoftUp (Huang et al., "LoftUp: Learning a
  Coordinate-Based Feature Upsampler for Vision Foundation Models", ICCV 2025; andrehuang/loftup, ``loftup_clip``)
  in place of the bilinear upsampling of each window's 14x14 scores (:mod:`baselines.openvocab.loftup`); ``sclip``
  takes it too.
* ``proxyclip`` (Lan et al., "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary Segmentation", ECCV 2024;
  mc-lan/ProxyCLIP): CLIP ViT-B/16's last block replaced by attention whose weights come from DINO ViT-B/8's
  features (:func:`~baselines.openvocab.proxy_attention.proxy_attention`, beta 1.2, gamma 3.0), ProxyCLIP's
  COCO-Object settings (logit scale 40, probability threshold 0.25, windows 336 / stride 112 padded to a multiple of
  56, the 17 background names); candidates: components, as ``sclip``.
* ``proxyclip-fsa`` (Chi et al., "Plug-in Feedback Self-adaptive Attention in CLIP for Training-free Open-Vocabulary
  Segmentation", ICCV 2025; chi-chi-zx/FSA): ProxyCLIP with FSA's feedback
  (:func:`~baselines.openvocab.fsa.fsa_proxy_attention`, lambda 3.0 from the authors' ``hyper_param.txt`` for
  DINO with ViT-B/16), FSA's COCO-Object threshold 0.30; candidates: components.

The class list is the dataset's category names (``set_vocabulary``), after the background query (class 0, several
names: the authors' COCO-Object background names, less any that is also a vocabulary name, where the authors' list
would shadow a class such as COCO's ``bed``). Each vocabulary name is one query (the authors' COCO-Object lists add
synonyms of ``person``; the benchmark's class list is the dataset's names).

Stages (one image; :mod:`baselines.timing`): ``preprocess`` the resize and normalisations; ``encoder`` CLIP over the
windows with the method's last block (and DINO for ProxyCLIP / FSA); ``postprocess`` the upsampler (bilinear or
LoftUp), the native-resolution softmax, and per prompted class its components or regions (made when a prompt first
names the class, charged to that object); ``decoder`` SAM 2.1 (``sclip-sam2.1``: its image encoder per image and the
point decodes of a prompted class) and the selection rule. The text embeddings are computed once per vocabulary,
when the run starts, and charged to no image.

Weights (:mod:`baselines.weights`: ``clip-vit-b16``, ``dino-vitb8``, ``loftup-clip``, ``sam2.1-l``) are looked up
in ``$FLIPBENCH_HOME`` and read as tensors (safetensors, or the tensors-only loader): nothing from them or from the
authors' repositories runs. A component without its file fails with what to download, or with
``--allow-random-weights`` is randomly initialised, and the row is labelled ``random-init``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import baselines.torchvision_compat  # noqa: F401  (must precede open_clip / timm / sam2, which import torchvision)
import torch
import torch.nn.functional as F

from baselines._common import count_parameters, resolve_weights
from baselines.base import WeightsInfo
from baselines.candidates import TextCandidatePredictor
from baselines.openvocab import regions
from baselines.openvocab.fsa import LAMBDA
from baselines.openvocab.dense import (
    IMAGENET_MEAN, IMAGENET_STD, ClassMaps, SlideConfig, dino_patch_features, normalized_input, query_embeddings,
    renormalized, slide_scores, tokens_before_last_block,
)
from baselines.timing import StageTimer

#: background names of the authors' COCO-Object class lists (line 1 of ``configs/cls_coco_object.txt``)
SCLIP_BACKGROUND = ("sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk",
                    "bed", "building", "cloud", "lamp", "door", "window", "wardrobe", "ceiling", "shelf", "curtain",
                    "stair", "floor", "hill", "rail", "fence")
PROXYCLIP_BACKGROUND = ("sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk",
                        "bed", "building", "cloud", "floor", "hill", "rail")

#: SCLIP's COCO-Object settings (``configs/cfg_coco_object.py``; windows: ``CLIPForSegmentation`` defaults)
SCLIP_COCO = SlideConfig(crop=224, stride=112, logit_scale=50.0, prob_thd=0.1, background=SCLIP_BACKGROUND)
#: ProxyCLIP's (``configs/cfg_coco_object.py``; logit scale, windows, padding: ``ProxyCLIPSegmentation`` defaults)
PROXYCLIP_COCO = SlideConfig(crop=336, stride=112, logit_scale=40.0, prob_thd=0.25, background=PROXYCLIP_BACKGROUND,
                             pad_multiple=56)
#: FSA's (its ``configs/cfg_coco_object.py``: threshold 0.30; the rest as ProxyCLIP's)
FSA_COCO = replace(PROXYCLIP_COCO, prob_thd=0.30)

#: the ``-test`` rows: the same pipelines on small windows of a small resize, so the tiny models run in a blink
SCLIP_TEST = replace(SCLIP_COCO, crop=32, stride=16, short_side=48)
PROXYCLIP_TEST = replace(PROXYCLIP_COCO, crop=56, stride=28, short_side=56)
FSA_TEST = replace(PROXYCLIP_TEST, prob_thd=FSA_COCO.prob_thd)

#: catalogue names of the component checkpoints (baselines.weights)
CLIP_WEIGHTS, DINO_WEIGHTS, LOFTUP_WEIGHTS, SAM_WEIGHTS = "clip-vit-b16", "dino-vitb8", "loftup-clip", "sam2.1-l"


@dataclass(frozen=True)
class TextModelSpec:
    """Architecture of one text row: ``method`` ``"sclip"`` | ``"proxyclip"`` | ``"proxyclip-fsa"``, its settings,
    whether SAM 2.1 makes the masks, and (tests) tiny random architectures instead of the real ones."""

    method: str
    config: SlideConfig
    sam: bool = False
    tiny: bool = False
    lamda: float = LAMBDA  # FSA's lambda (hyper_param.txt: DINO with ViT-B/16)
    extra: dict = field(default_factory=dict)


def tiny_clip():
    """A random CLIP of the ViT-B/16 layout, 2 vision blocks of 64 channels, 1 text block of 32 (tests)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    return CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=16, image_size=224),
                text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1), quick_gelu=True)


def build_clip(path: Path | None, tiny: bool = False):
    """open_clip's ``ViT-B-16-quickgelu`` (OpenAI's CLIP uses QuickGELU) in eval mode, with the tensors of ``path``
    (safetensors or a tensors-only ``.bin`` in open_clip's layout) loaded strictly, or random."""
    import open_clip

    from baselines.safe_load import load_strict

    if tiny:
        return tiny_clip().eval()
    logging.disable(logging.WARNING)  # open_clip logs "No pretrained weights loaded" for pretrained=None
    try:
        model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    if path is not None:
        load_strict(model, _read_tensors(path), path, "CLIP ViT-B/16 (open_clip layout)")
    return model.eval()


def build_dino(path: Path | None, tiny: bool = False):
    """DINO ViT-B/8 as ``timm``'s ``VisionTransformer`` (``dynamic_img_size`` for 336-pixel windows; run by
    :func:`~baselines.openvocab.dense.dino_patch_features` with DINO's position-embedding interpolation), the authors'
    ``dino_vitbase8_pretrain.pth`` tensors loaded strictly, or random."""
    import timm

    from baselines.safe_load import load_strict

    if tiny:
        return timm.models.vision_transformer.VisionTransformer(
            img_size=224, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, dynamic_img_size=True).eval()
    model = timm.create_model("vit_base_patch8_224", pretrained=False, num_classes=0, dynamic_img_size=True)
    if path is not None:
        load_strict(model, _read_tensors(path), path, "DINO ViT-B/8 (timm layout)")
    return model.eval()


def build_loftup(path: Path | None, dim: int = 512):
    """LoftUp for CLIP (``loftup_clip``: 512 channels, 14x14 training grid) in eval mode, the tensors of the authors'
    ``pytorch_model.bin`` loaded strictly, or random."""
    from baselines.openvocab.loftup import LoftUp
    from baselines.safe_load import load_strict

    model = LoftUp(dim=dim, lr_size=14)
    if path is not None:
        load_strict(model, _read_tensors(path), path, "LoftUp (loftup_clip)")
    return model.eval()


def _read_tensors(path: Path) -> dict:
    from baselines.safe_load import CheckpointError, load_tensors, state_dict_of

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise CheckpointError(f"{path}: not a safetensors file ({type(exc).__name__}: {exc})") from exc
    return state_dict_of(load_tensors(path), path)


class TextSegmenter(TextCandidatePredictor):
    """One of the four text rows (see the module docstring); ``clip`` an open_clip CLIP, ``dino`` a timm ViT
    (ProxyCLIP / FSA), ``sam`` a :class:`baselines.sam2.Sam2BoxPredictor` (``sclip-sam2.1``), ``loftup_loader`` builds
    the LoftUp upsampler when a run asks for it (``configure``)."""

    def __init__(self, spec: TextModelSpec, clip, weights: dict[str, WeightsInfo], device: str = "cpu", dino=None,
                 sam=None, loftup_loader=None) -> None:
        import open_clip
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        super().__init__()
        self._device = torch.device(device)
        self.timer = StageTimer(self._device)
        self.spec = spec
        self.clip = clip.to(self._device).eval()
        self.dino = None if dino is None else dino.to(self._device).eval()
        self.sam = sam
        self.loftup = None
        self._loftup_loader = loftup_loader
        self.upsampler = "bilinear"
        self.tokenizer = open_clip.get_tokenizer("ViT-B-16")
        self.templates = tuple(OPENAI_IMAGENET_TEMPLATES)
        self._weights = dict(weights)
        self.weights = _combined(self._weights)
        self.queries: tuple[str, ...] = ()
        self.query_class = torch.zeros(0, dtype=torch.long)
        self.query_features: torch.Tensor | None = None
        self.maps: ClassMaps | None = None
        self.last_stats: dict[str, Any] = {}
        self.text_seconds = 0.0  # the text classifier of the vocabulary (once per run, charged to no image)

    # -- protocol ------------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(self._device)

    def num_parameters(self) -> int:
        modules = [self.clip, self.dino, self.loftup, None if self.sam is None else self.sam.model]
        return sum(count_parameters(m) for m in modules if m is not None)

    def configure(self, params) -> None:
        """Take the run's ``upsampler`` (``bilinear`` or ``loftup``; the SCLIP rows only)."""
        upsampler = getattr(params, "upsampler", "bilinear")
        if upsampler == self.upsampler:
            return
        if self.spec.method != "sclip":  # their features live on DINO's grid: LoftUp for CLIP is not theirs
            raise ValueError(f"{self.name or self.spec.method} has no upsampler option (--upsampler {upsampler} is "
                             "for sclip and sclip-sam2.1); evaluate it in a run without --upsampler")
        if self._loftup_loader is None:
            raise ValueError(f"{self.name or 'this model'} cannot use the {upsampler} upsampler")
        self.loftup, info = self._loftup_loader()
        self.loftup = self.loftup.to(self._device).eval()
        self._weights[LOFTUP_WEIGHTS] = info
        self.weights = _combined(self._weights)
        self.upsampler = upsampler

    def describe(self) -> dict:
        out = {**super().describe(), "method": self.spec.method, "vocabulary": list(self.vocabulary),
               "text_embedding_seconds": round(self.text_seconds, 3),
               "background": list(self._background()), "logit_scale": self.spec.config.logit_scale,
               "prob_thd": self.spec.config.prob_thd, "window": [self.spec.config.crop, self.spec.config.stride],
               "components": {k: {"kind": w.kind, "source": w.source, "sha256": w.sha256}
                              for k, w in self._weights.items()}}
        if self.spec.method == "sclip":
            out["mode"] = self.upsampler  # names the row: sclip-sam2.1 (text, box-selected, loftup)
        if self.spec.sam:
            out["point_confidence"], out["min_region_pixels"] = regions.POINT_CONFIDENCE, regions.MIN_REGION_PIXELS
        if self.spec.method == "proxyclip-fsa":
            out["lambda"] = self.spec.lamda
        return out

    def _background(self) -> tuple[str, ...]:
        names = set(self.vocabulary)
        return tuple(n for n in self.spec.config.background if n not in names)

    def vocabulary_changed(self) -> None:
        background = self._background()
        self.queries = background + self.vocabulary
        self.query_class = torch.tensor([0] * len(background) + list(range(1, len(self.vocabulary) + 1)),
                                        dtype=torch.long, device=self._device)
        start = time.perf_counter()
        with torch.inference_mode():
            self.query_features = query_embeddings(self.clip, self.tokenizer, self.queries, self.templates,
                                                   self._device)
        self.text_seconds = time.perf_counter() - start

    # -- image-level work ----------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> None:
        config = self.spec.config
        with self.timer.stage("preprocess"), torch.inference_mode():
            x = normalized_input(image, config, self._device)
        with torch.inference_mode():
            scores = slide_scores(x, config, len(self.queries), self._window_scores)
            with self.timer.stage("postprocess"):
                self.maps = ClassMaps.from_scores(scores, self.query_class, config.logit_scale, config.prob_thd,
                                                  image.shape[:2])
        if self.sam is not None:
            with self.timer.stage("decoder"), torch.inference_mode():
                self.sam.predictor.set_image(image)

    def _window_scores(self, crop: torch.Tensor) -> torch.Tensor:
        """``[1, 3, h, w]`` CLIP-normalised window -> ``[1, Q, h, w]`` cosine scores at its pixels."""
        visual = self.clip.visual
        with self.timer.stage("encoder"):
            x, grid = tokens_before_last_block(visual, crop)
            block = visual.transformer.resblocks[-1]
            if self.spec.method == "sclip":
                from baselines.openvocab.sclip_attention import sclip_last_block

                tokens = sclip_last_block(block, x)[:, 1:]
                feat_hw = grid
            else:
                vfm = self._dino_features(crop)
                feat_hw = tuple(vfm.shape[-2:])
                if self.spec.method == "proxyclip":
                    from baselines.openvocab.proxy_attention import proxy_attention

                    tokens = proxy_attention(block, x, vfm, grid)
                else:
                    from baselines.openvocab.fsa import fsa_proxy_attention

                    tokens = fsa_proxy_attention(block, x, vfm, grid, self.query_features, visual.ln_post,
                                                 visual.proj, lamda=self.spec.lamda)
            feats = visual.ln_post(tokens) @ visual.proj  # [1, h*w, D]
        with self.timer.stage("postprocess"):
            size = tuple(crop.shape[-2:])
            if self.loftup is None:
                logits = F.normalize(feats, dim=-1) @ self.query_features.T  # [1, h*w, Q]
                logits = logits.transpose(1, 2).reshape(1, -1, *feat_hw)
                return F.interpolate(logits, size=size, mode="bilinear")
            low = feats.transpose(1, 2).reshape(1, -1, *feat_hw)
            guide = renormalized(crop, IMAGENET_MEAN, IMAGENET_STD)
            out = crop.new_zeros((1, len(self.queries), *size))
            for row0, row1, band in self.loftup.bands(guide, low):
                out[:, :, row0:row1] = torch.einsum("nchw,qc->nqhw", F.normalize(band, dim=1), self.query_features)
            return out

    def _dino_features(self, crop: torch.Tensor) -> torch.Tensor:
        """DINO's last-layer patch features of a window (ImageNet-normalised): ``[1, 768, H/8, W/8]``."""
        return dino_patch_features(self.dino, renormalized(crop, IMAGENET_MEAN, IMAGENET_STD))

    # -- candidates of a class -----------------------------------------------------------------------------------
    def class_candidates(self, k: int) -> torch.Tensor:
        if self.maps is None:
            raise RuntimeError("call set_image(image) first")
        c = k + 1  # class 0 is the background
        if self.sam is None:
            with self.timer.stage("postprocess"), torch.inference_mode():
                semantic = self.maps.semantic_map().cpu().numpy()
                masks = regions.components(semantic == c, device=self._device)
            self.last_stats = {"class": self.vocabulary[k], "candidates": len(masks)}
            return masks
        with self.timer.stage("postprocess"), torch.inference_mode():
            points = regions.region_points(self.maps.class_probability(c).cpu().numpy())
        height, width = self.maps.size
        masks = torch.zeros((len(points), height, width), dtype=torch.bool, device=self._device)
        with self.timer.stage("decoder"), torch.inference_mode():
            for i, point in enumerate(points):
                logits, iou, _ = self.sam.predictor.predict(
                    point_coords=point[None].astype(np.float32), point_labels=np.ones(1, dtype=np.int32),
                    multimask_output=True, return_logits=True)
                best = int(np.argmax(iou))
                masks[i] = torch.from_numpy(np.asarray(logits[best]) > self.sam.predictor.mask_threshold)
        self.last_stats = {"class": self.vocabulary[k], "points": points.tolist(), "candidates": len(masks)}
        return masks


def _combined(parts: dict[str, WeightsInfo]) -> WeightsInfo:
    """One :class:`WeightsInfo` for a model of several checkpoints: random-init when any part is."""
    kind = "random-init" if any(w.kind == "random-init" for w in parts.values()) else "pretrained"
    source = "; ".join(f"{name}: {w.source}" for name, w in parts.items())
    sha = ",".join(f"{name}={w.sha256}" for name, w in parts.items() if w.sha256)
    return WeightsInfo(kind=kind, source=source, sha256=sha)


#: registry name -> architecture
TEXT_MODELS = {
    "sclip": TextModelSpec("sclip", SCLIP_COCO),
    "sclip-sam2.1": TextModelSpec("sclip", SCLIP_COCO, sam=True),
    "proxyclip": TextModelSpec("proxyclip", PROXYCLIP_COCO),
    "proxyclip-fsa": TextModelSpec("proxyclip-fsa", FSA_COCO),
    "sclip-test": TextModelSpec("sclip", SCLIP_TEST, tiny=True),
    "sclip-sam2.1-test": TextModelSpec("sclip", SCLIP_TEST, sam=True, tiny=True),
    "proxyclip-test": TextModelSpec("proxyclip", PROXYCLIP_TEST, tiny=True),
    "proxyclip-fsa-test": TextModelSpec("proxyclip-fsa", FSA_TEST, tiny=True),
}


def _component(variant: str, name: str, allow_random: bool, tiny: bool) -> tuple[Path | None, WeightsInfo]:
    """The catalogued checkpoint ``name`` of text row ``variant`` from ``$FLIPBENCH_HOME`` (random with
    ``allow_random`` when absent); ``MissingCheckpointError`` saying what to download otherwise."""
    from baselines.weights import MissingCheckpointError, catalog_entry, find_checkpoint, weights_home

    if tiny:
        if not allow_random:
            raise MissingCheckpointError(f"{variant} is a tiny random model for tests without a checkpoint; pass "
                                         "--allow-random-weights")
        return None, WeightsInfo(kind="random-init", source="random initialisation (tiny test model)")
    if find_checkpoint(name) is None and not allow_random:
        entry = catalog_entry(name)
        raise MissingCheckpointError(
            f"{variant} needs the {name} checkpoint, not found at {weights_home() / entry.filename}. Run `flipbench "
            f"weights download {name}` (fetches {entry.url}) or put the file there (FLIPBENCH_HOME sets the "
            "directory); --allow-random-weights runs without it (labelled random-init)")
    return resolve_weights(name, None, allow_random)


def build_text_model(variant: str, checkpoint: str | None = None, device: str = "cpu",
                     allow_random: bool = False) -> TextSegmenter:
    """Build the text row ``variant`` (:data:`TEXT_MODELS`). Its checkpoints are the catalogue's files in
    ``$FLIPBENCH_HOME`` (several per model), so ``NAME:PATH`` is refused."""
    spec = TEXT_MODELS[variant]
    if checkpoint is not None and spec.tiny:
        raise ValueError(f"{variant} is a tiny random model for tests and takes no checkpoint")
    if checkpoint is not None:
        raise ValueError(f"{variant} is built from several checkpoints ({CLIP_WEIGHTS}"
                         f"{', ' + DINO_WEIGHTS if spec.method != 'sclip' else ''}"
                         f"{', ' + SAM_WEIGHTS if spec.sam else ''}); put them in $FLIPBENCH_HOME "
                         f"(`flipbench weights download NAME`) instead of passing {variant}:PATH")
    if spec.sam:
        from baselines.sam2 import import_build_sam2

        import_build_sam2(variant)  # a missing package is reported before a missing checkpoint
    weights: dict[str, WeightsInfo] = {}
    path, weights[CLIP_WEIGHTS] = _component(variant, CLIP_WEIGHTS, allow_random, spec.tiny)
    clip = build_clip(path, spec.tiny)
    dino = None
    if spec.method != "sclip":
        path, weights[DINO_WEIGHTS] = _component(variant, DINO_WEIGHTS, allow_random, spec.tiny)
        dino = build_dino(path, spec.tiny)
    sam = None
    if spec.sam:
        from baselines.sam2 import Sam2BoxPredictor, build_sam2_model

        sam_variant = "sam2.1-t" if spec.tiny else SAM_WEIGHTS
        path, weights[SAM_WEIGHTS] = _component(variant, SAM_WEIGHTS, allow_random, spec.tiny)
        sam = Sam2BoxPredictor(build_sam2_model(sam_variant, path, device), weights[SAM_WEIGHTS], device)

    def loftup_loader():
        lpath, info = _component(variant, LOFTUP_WEIGHTS, allow_random, spec.tiny)
        return build_loftup(lpath, dim=clip.visual.proj.shape[1]), info

    return TextSegmenter(spec, clip, weights, device, dino=dino, sam=sam, loftup_loader=loftup_loader)


def build_sclip(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("sclip", checkpoint, device, allow_random)


def build_sclip_sam2(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("sclip-sam2.1", checkpoint, device, allow_random)


def build_proxyclip(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("proxyclip", checkpoint, device, allow_random)


def build_proxyclip_fsa(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("proxyclip-fsa", checkpoint, device, allow_random)


def build_sclip_test(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("sclip-test", checkpoint, device, allow_random)


def build_sclip_sam2_test(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("sclip-sam2.1-test", checkpoint, device, allow_random)


def build_proxyclip_test(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("proxyclip-test", checkpoint, device, allow_random)


def build_proxyclip_fsa_test(checkpoint=None, device="cpu", allow_random=False):
    return build_text_model("proxyclip-fsa-test", checkpoint, device, allow_random)
