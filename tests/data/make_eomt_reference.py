"""Make ``eomt_tiny.safetensors`` and ``eomt_official_reference.npz`` from the official EoMT code (not run by CI).

The official model (tue-mps/eomt ``models/eomt.py`` on a timm ``vit_large_patch14_reg4_dinov2`` backbone shrunk to
3 blocks of 32 channels, 64 px input, patch 16, 4 registers, 12 queries, 2 masked blocks, 80 classes) is built with
seeded random weights and run on CPU through the official instance evaluation (``MaskClassificationInstance.eval_step``
with its ``resize_and_pad_imgs_instance_panoptic`` / ``revert_resize_and_pad_logits_instance_panoptic``; the metric
update is replaced by a capture of its ``preds``). Its weights are renamed to the ``transformers`` layout
(``EomtForUniversalSegmentation``) and saved; the inputs and outputs go to the ``.npz``. Only this data is committed;
the official code is not (see tests/data/README.md).

Usage (official checkout at OFFICIAL; its imports need lightning, torchmetrics and wandb besides timm)::

    PYTHONPATH=OFFICIAL:. python tests/data/make_eomt_reference.py tests/data
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import baselines.torchvision_compat  # noqa: F401  (before timm / torchvision)
import numpy as np
import timm
import torch
from safetensors.torch import save_file

from models.eomt import EoMT  # official
from models.vit import ViT  # official
from training.lightning_module import LightningModule  # official
from training.mask_classification_instance import MaskClassificationInstance  # official

IMG, PATCH, DIM, DEPTH, HEADS, QUERIES, BLOCKS, CLASSES = 64, 16, 32, 3, 2, 12, 2, 80
IMAGE_SHAPES = ((48, 70), (90, 50))  # landscape and portrait: both paddings
TOP_K = 100


def official_model() -> EoMT:
    torch.manual_seed(20250607)
    encoder = ViT(img_size=(IMG, IMG), patch_size=PATCH, ckpt_path="(random: no download)")
    encoder.backbone = timm.create_model(
        "vit_large_patch14_reg4_dinov2", pretrained=False, img_size=(IMG, IMG), patch_size=PATCH, num_classes=0,
        embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
    )
    model = EoMT(encoder, num_classes=CLASSES, num_q=QUERIES, num_blocks=BLOCKS, masked_attn_enabled=True).eval()
    with torch.no_grad():  # every parameter random and O(1), so no part of the network is close to a no-op
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "ls1.gamma", "ls2.gamma")):
                p.uniform_(0.5, 1.5)
            elif p.ndim == 1:
                p.normal_(0.0 if "bias" in name else 1.0, 0.1)
            else:
                p.normal_(0.0, 0.3 / max(1, p.shape[-1]) ** 0.5 * 3)
    return model


def to_transformers(state: dict) -> dict:
    """Official EoMT state dict -> ``EomtForUniversalSegmentation`` keys (qkv split into q, k, v)."""
    out = {}
    for key, value in state.items():
        k = key
        if k.startswith("encoder.pixel_"):
            continue  # the processor normalises
        k = k.replace("encoder.backbone.", "")
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            base = f"layers.{i}."
            if rest.startswith("attn.qkv."):
                q, kk, v = value.chunk(3, dim=0)
                kind = rest.rsplit(".", 1)[1]
                out[base + f"attention.q_proj.{kind}"] = q
                out[base + f"attention.k_proj.{kind}"] = kk
                out[base + f"attention.v_proj.{kind}"] = v
                continue
            rest = (rest.replace("attn.proj.", "attention.out_proj.").replace("ls1.gamma", "layer_scale1.lambda1")
                    .replace("ls2.gamma", "layer_scale2.lambda1"))
            out[base + rest] = value
            continue
        k = {"cls_token": "embeddings.cls_token", "reg_token": "embeddings.register_tokens",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
             "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias", "q.weight": "query.weight",
             "class_head.weight": "class_predictor.weight", "class_head.bias": "class_predictor.bias",
             "attn_mask_probs": "attn_mask_probs"}.get(k, k)
        if k == "pos_embed":
            out["embeddings.position_embeddings.weight"] = value[0]
            continue
        if k.startswith("mask_head."):
            idx, kind = k.split(".")[1:]
            k = f"mask_head.fc{int(idx) // 2 + 1}.{kind}"
        if k.startswith("upscale."):
            _, i, rest = k.split(".", 2)
            rest = rest.replace("norm.", "layernorm2d.")
            k = f"upscale_block.block.{i}.{rest}"
        out[k] = value
    return {k: v.contiguous().clone() for k, v in out.items()}


class Capture:
    """``self`` of the official ``eval_step``: the network, the official resize/pad helpers, a capture of preds."""

    resize_and_pad_imgs_instance_panoptic = LightningModule.resize_and_pad_imgs_instance_panoptic
    revert_resize_and_pad_logits_instance_panoptic = LightningModule.revert_resize_and_pad_logits_instance_panoptic
    scale_img_size_instance_panoptic = LightningModule.scale_img_size_instance_panoptic
    forward = LightningModule.forward
    eval_step = MaskClassificationInstance.eval_step

    def __init__(self, network):
        self.network, self.img_size, self.device, self.eval_top_k_instances = network, (IMG, IMG), "cpu", TOP_K
        self.preds: list = []

    def __call__(self, imgs):
        self.inputs = imgs.clone()
        out = self.forward(imgs)
        self.outputs = out
        return out

    def update_metrics_instance(self, preds, targets, block):
        self.preds.append(preds)


def main(out_dir: Path) -> None:
    model = official_model()
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {}
    for probs in (0.0, 1.0):  # 0: masked attention off (trained checkpoints); 1: every masked block on
        model.attn_mask_probs.fill_(probs)
        for n, (h, w) in enumerate(IMAGE_SHAPES):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if probs == 0.0 else arrays[f"image{n}"]
            arrays[f"image{n}"] = image
            cap = Capture(model)
            target = {"masks": torch.zeros((0, h, w), dtype=torch.bool), "labels": torch.zeros(0, dtype=torch.long),
                      "is_crowd": torch.zeros(0, dtype=torch.bool)}
            with torch.no_grad():
                cap.eval_step(([torch.from_numpy(image).permute(2, 0, 1)], [target]))
            mask_logits, class_logits = cap.outputs
            last = cap.preds[-1][0]  # the last block's predictions: the model's output
            tag = f"p{int(probs)}_img{n}"
            arrays[f"{tag}_pixels"] = ((cap.inputs.float() / 255.0 - model.encoder.pixel_mean)
                                       / model.encoder.pixel_std).numpy()[0]
            arrays[f"{tag}_mask_logits"] = mask_logits[-1][0].numpy()
            arrays[f"{tag}_class_logits"] = class_logits[-1][0].numpy()
            arrays[f"{tag}_masks"] = np.packbits(last["masks"].numpy(), axis=-1)
            arrays[f"{tag}_scores"] = last["scores"].numpy()
            arrays[f"{tag}_labels"] = last["labels"].numpy()
    model.attn_mask_probs.fill_(0.0)
    state = to_transformers(model.state_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "eomt_tiny.safetensors"))
    np.savez_compressed(out_dir / "eomt_official_reference.npz", **arrays)
    print(f"wrote {len(state)} tensors and {len(arrays)} arrays to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data"))
