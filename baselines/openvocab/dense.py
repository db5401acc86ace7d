"""Dense class scores of an image from CLIP: SCLIP, ProxyCLIP and ProxyCLIP + FSA on the project's torch.

The three methods share everything but CLIP's last block; this module holds the shared part, written after the
authors' segmentors (``clip_segmentor.py`` of wangf3014/SCLIP at commit b56bd30, ``proxyclip_segmentor.py`` of
mc-lan/ProxyCLIP at e7b767f, ``FSA_Proxy_segmentor.py`` of chi-chi-zx/FSA at dbd2da5), with CLIP from ``open_clip``,
DINO from ``timm`` and the method-specific blocks from :mod:`baselines.openvocab.sclip_attention`,
:mod:`~baselines.openvocab.proxy_attention`, :mod:`~baselines.openvocab.fsa` and the LoftUp upsampler from
:mod:`~baselines.openvocab.loftup` (each one call here):

1. **Resize** (mmseg ``Resize(scale=(2048, 336), keep_ratio=True)`` of the COCO-Object configs): the image is scaled
   by ``min(2048 / long side, 336 / short side)`` (sizes rounded as mmcv's ``imrescale``, bilinear), RGB normalised
   with CLIP's mean/std (0-255 scale: 122.771, 116.746, 104.094 / 68.501, 66.632, 70.323).
2. **Sliding window** over the resized image (mmseg's ``forward_slide``): ``crop`` x ``crop`` windows every ``stride``
   pixels, the last ones flush with the border (SCLIP 224 / 112; ProxyCLIP and FSA 336 / 112, each window
   zero-padded to a multiple of 56 as their ``compute_padsize``). Per window: CLIP's ViT-B/16 up to its last block
   (position embeddings interpolated bicubically as the authors' ``interpolate_pos_encoding``:
   :func:`~baselines.openvocab.proxy_attention.interpolate_pos_embed`; DINO's alike), the method's last
   block, ``ln_post`` and ``proj``, L2-normalised patch features, cosine similarity with every query's text
   embedding, the ``[Q, h, w]`` grid brought to the window (**bilinear**, the authors'; or, ``upsampler="loftup"``,
   the 512-d features upsampled to the window by LoftUp guided by the window's pixels, then normalised and scored),
   summed into the image and divided by the window count of each pixel.
3. **Native resolution**: the averaged scores bilinearly resized to the image, times ``logit_scale``, softmax over the
   queries; a class's probability is the max over its queries (the background class has several). The semantic map
   is the argmax, background where the top probability is below ``prob_thd`` (:meth:`ClassMaps.semantic_map`).

Text embeddings (:func:`query_embeddings`): each query name in OpenAI's 80 ImageNet templates (``open_clip``'s
``OPENAI_IMAGENET_TEMPLATES``, the authors' ``openai_imagenet_template``), each encoding L2-normalised, averaged,
normalised again.

**Memory** is bounded whatever the image size: LoftUp's full-resolution features exist for one window at a time and
only in row bands of at most ``LoftUp.tile_pixels`` pixels (reduced to class scores band by band); at native
resolution the softmax is computed over chunks of queries (:data:`NATIVE_CHUNK_PIXELS` floats at a time, an online
log-sum-exp), keeping per pixel only the log-sum-exp, the winning query and its probability (12 bytes), and a class's
probability map is made when asked for (:meth:`ClassMaps.class_probability`).

The official code runs in fp16 on CUDA; this runs in float32 on the predictor's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from baselines.openvocab.proxy_attention import interpolate_pos_embed

#: CLIP's normalisation (open_clip ``OPENAI_DATASET_MEAN`` / ``_STD``), the authors' data preprocessors' x 255
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: DINO's and LoftUp's input normalisation (ImageNet)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: floats of the native-resolution score chunks (one chunk of queries at a time): 32 M floats = 128 MB
NATIVE_CHUNK_PIXELS = 1 << 25


@dataclass(frozen=True)
class SlideConfig:
    """The authors' inference settings of one method (their COCO-Object config and segmentor defaults).

    short_side / long_side: the test-time resize (mmseg ``scale=(long_side, short_side)``, keep ratio); crop /
    stride: the sliding window; pad_multiple: windows zero-padded to a multiple of it (None: not padded);
    logit_scale: the softmax temperature; prob_thd: below it a pixel is background; background: the names of the
    background query (class 0), from the authors' ``cls_coco_object.txt``.
    """

    crop: int
    stride: int
    logit_scale: float
    prob_thd: float
    background: tuple[str, ...]
    pad_multiple: int | None = None
    short_side: int = 336
    long_side: int = 2048


def resized_size(height: int, width: int, short_side: int = 336, long_side: int = 2048) -> tuple[int, int]:
    """``(h, w)`` of mmcv's ``imrescale`` to ``scale=(long_side, short_side)`` with the aspect ratio kept."""
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def normalized_input(image: np.ndarray, config: SlideConfig, device) -> torch.Tensor:
    """``uint8 [H, W, 3]`` RGB -> resized, CLIP-normalised ``float32 [1, 3, h, w]`` (step 1)."""
    h, w = resized_size(image.shape[0], image.shape[1], config.short_side, config.long_side)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR) if (h, w) != image.shape[:2] else image
    x = torch.from_numpy(np.ascontiguousarray(resized)).to(device=device, dtype=torch.float32).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN, device=device).view(3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, device=device).view(3, 1, 1) * 255
    return ((x - mean) / std)[None]


def renormalized(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A CLIP-normalised ``[N, 3, H, W]`` batch in another normalisation (the authors' ``norm(unnorm(img))``)."""
    clip_mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    clip_std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    new_mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    new_std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x * clip_std + clip_mean - new_mean) / new_std


def windows(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmseg's sliding windows ``(y1, y2, x1, x2)`` over an ``height x width`` image (last ones flush with the
    border; a side shorter than ``crop`` is one window of that side)."""
    h_grids = max(height - crop + stride - 1, 0) // stride + 1
    w_grids = max(width - crop + stride - 1, 0) // stride + 1
    out = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * stride + crop, height), min(j * stride + crop, width)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


def pad_size(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding to a multiple of ``multiple``, split as the authors'
    ``compute_padsize``."""
    lr = (multiple - width % multiple) % multiple
    tb = (multiple - height % multiple) % multiple
    return lr // 2, lr - lr // 2, tb // 2, tb - tb // 2


def tokens_before_last_block(visual, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """open_clip ``VisionTransformer`` on CLIP-normalised ``images [N, 3, H, W]`` up to its last block: the residual
    stream ``[N, 1 + h*w, C]`` (CLS first, patches row-major) and the patch grid ``(h, w)``."""
    x = visual.conv1(images)  # [N, C, h, w]
    n, dim, grid_h, grid_w = x.shape
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, dim).expand(n, 1, dim)
    positions = interpolate_pos_embed(visual.positional_embedding, (grid_h, grid_w))
    x = visual.ln_pre(visual.patch_dropout(torch.cat([cls, x], dim=1) + positions.to(x.dtype)))
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x, (grid_h, grid_w)


def dino_patch_features(vit, images: torch.Tensor) -> torch.Tensor:
    """DINO's last-layer patch features of ImageNet-normalised ``images [N, 3, H, W]``: timm ``VisionTransformer``
    (``dynamic_img_size``) blocks and final norm, with DINO's own position-embedding interpolation
    (``interpolate_pos_embed``, as ``vision_transformer.py`` of facebookresearch/dino, not timm's resampling), CLS
    dropped: ``[N, C, H/p, W/p]`` (the authors' ``get_intermediate_layers(img)[0][:, 1:]``, reshaped row-major)."""
    x = vit.patch_embed(images)  # [N, h, w, C] (dynamic_img_size: NHWC)
    n, grid_h, grid_w, dim = x.shape
    x = torch.cat([vit.cls_token.expand(n, 1, dim), x.reshape(n, grid_h * grid_w, dim)], dim=1)
    x = vit.norm_pre(vit.pos_drop(x + interpolate_pos_embed(vit.pos_embed, (grid_h, grid_w))))
    x = vit.norm(vit.blocks(x))
    return x[:, 1:].transpose(1, 2).reshape(n, dim, grid_h, grid_w)


#: (text tower digest, templates, name) -> its embedding: models of one process built with the same CLIP weights (the
#: four text rows of one run, random or not) encode each name once
_EMBEDDINGS: dict[tuple[str, int, str], torch.Tensor] = {}


def text_tower_digest(model) -> str:
    """SHA-256 of the parameters and buffers of a CLIP model outside its ``visual`` tower (what ``encode_text``
    reads)."""
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if not key.startswith("visual."):
            digest.update(key.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` of an open_clip CLIP (causal text transformer, end-of-text pooling) computed on the
    first ``L`` positions only, ``L`` the longest prompt of the batch: a position sees only the positions before it,
    so the padding after the end-of-text token cannot change the pooled feature (equal up to float rounding; tested),
    and a template prompt of ~10 tokens costs ~1/7 of the 77-token forward."""
    if getattr(model, "text_pool_type", "argmax") != "argmax" or getattr(model, "attn_mask", None) is None:
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the highest id
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens[:, :length]).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), tokens[:, :length].argmax(dim=-1)]
    return model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection


def query_embeddings(model, tokenizer, names: Sequence[str], templates: Sequence[Callable[[str], str]],
                     device, batch: int = 256) -> torch.Tensor:
    """``[Q, D]`` text classifier: per name, its templates encoded, each L2-normalised, averaged, normalised again.
    Each name is encoded once per process and set of text weights (:data:`_EMBEDDINGS`)."""
    tower = text_tower_digest(model)
    key = hash(tuple(t("{}") for t in templates))
    todo = [n for n in dict.fromkeys(names) if (tower, key, n) not in _EMBEDDINGS]
    prompts = [t(name) for name in todo for t in templates]
    features = []
    for start in range(0, len(prompts), batch):
        tokens = tokenizer(prompts[start:start + batch]).to(device)
        features.append(F.normalize(encode_text_trimmed(model, tokens).float(), dim=-1))
    if todo:
        per_name = F.normalize(torch.cat(features).reshape(len(todo), len(templates), -1).mean(dim=1), dim=-1)
        for name, row in zip(todo, per_name, strict=True):
            _EMBEDDINGS[(tower, key, name)] = row.cpu()
    return torch.stack([_EMBEDDINGS[(tower, key, n)] for n in names]).to(device)


@dataclass
class ClassMaps:
    """Native-resolution results of one image (step 3), from the averaged window scores ``scores [Q, h, w]``.

    query_class: ``int64 [Q]``, the class of each query (0: background, ``k + 1``: vocabulary name ``k``);
    lse: ``[H, W]`` log-sum-exp of the scaled query scores; best_query: ``int32 [H, W]`` the winning query; top_prob:
    ``[H, W]`` its probability.
    """

    scores: torch.Tensor
    query_class: torch.Tensor
    logit_scale: float
    prob_thd: float
    size: tuple[int, int]
    lse: torch.Tensor
    best_query: torch.Tensor
    top_prob: torch.Tensor

    @classmethod
    def from_scores(cls, scores: torch.Tensor, query_class: torch.Tensor, logit_scale: float, prob_thd: float,
                    size: tuple[int, int], chunk_pixels: int = NATIVE_CHUNK_PIXELS) -> "ClassMaps":
        height, width = size
        chunk = max(1, chunk_pixels // max(1, height * width))
        best = torch.full((height, width), -math.inf, device=scores.device)
        best_query = torch.zeros((height, width), dtype=torch.int32, device=scores.device)
        total = torch.zeros((height, width), device=scores.device)  # sum of exp(score - best)
        for start in range(0, scores.shape[0], chunk):
            part = F.interpolate(scores[None, start:start + chunk], size=size, mode="bilinear")[0] * logit_scale
            value, index = part.max(dim=0)  # first maximum within the chunk
            better = value > best  # ties keep the earlier query (argmax semantics)
            new_best = torch.where(better, value, best)
            total = total * torch.exp(best - new_best) + torch.exp(part - new_best).sum(dim=0)
            best_query = torch.where(better, index.to(torch.int32) + start, best_query)
            best = new_best
        lse = best + torch.log(total)
        return cls(scores, query_class, logit_scale, prob_thd, size, lse, best_query, torch.exp(best - lse))

    def semantic_map(self) -> torch.Tensor:
        """``int64 [H, W]``: the class of highest probability, 0 (background) where it is below ``prob_thd``."""
        classes = self.query_class[self.best_query.long()]
        return torch.where(self.top_prob < self.prob_thd, torch.zeros_like(classes), classes)

    def class_probability(self, c: int) -> torch.Tensor:
        """``[H, W]`` probability of class ``c`` (the max over its queries' softmax probabilities)."""
        queries = torch.nonzero(self.query_class == c).flatten()
        out = torch.zeros(self.size, device=self.scores.device)
        for q in queries.tolist():
            part = F.interpolate(self.scores[None, q:q + 1], size=self.size, mode="bilinear")[0, 0]
            out = torch.maximum(out, torch.exp(part * self.logit_scale - self.lse))
        return out


def slide_scores(x: torch.Tensor, config: SlideConfig, num_queries: int,
                 window_scores: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Step 2: ``window_scores`` (``[1, 3, h, w]`` CLIP-normalised window -> ``[1, Q, h, w]`` scores at its pixels) over
    the sliding windows of ``x [1, 3, H, W]``, each padded to ``config.pad_multiple`` and cropped back; returns the
    averaged ``[Q, H, W]``."""
    _, _, height, width = x.shape
    total = x.new_zeros((num_queries, height, width))
    count = x.new_zeros((1, height, width))
    for y1, y2, x1, x2 in windows(height, width, config.crop, config.stride):
        crop = x[:, :, y1:y2, x1:x2]
        h, w = crop.shape[-2:]
        pad = pad_size(h, w, config.pad_multiple) if config.pad_multiple else (0, 0, 0, 0)
        if any(pad):
            crop = F.pad(crop, pad)
        scores = window_scores(crop)
        total[:, y1:y2, x1:x2] += scores[0, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
        count[:, y1:y2, x1:x2] += 1
    return total / count
