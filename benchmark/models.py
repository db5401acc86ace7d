"""Model registry: a plain dict of lazy ``"module:builder"`` entries.

Heavy packages (segment-anything, ultralytics, sam2, ...) are imported only when their model is chosen.
Each builder is called as ``builder(checkpoint=..., device=..., allow_random=...)`` and returns a
:class:`baselines.base.Predictor`.

``checkpoint`` is the path given after a colon on the command line (``flip-tiny:/path/flip-tiny.ckpt``), or
``None`` for the default location (``flipbench weights``). ``allow_random`` lets a builder fall back to
random-initialised weights when no checkpoint can be found; the predictor's ``weights.kind`` then says
``"random-init"`` and every result written with it is labelled so.
"""

from __future__ import annotations

import importlib

from baselines.base import Predictor

MODEL_REGISTRY: dict[str, str] = {
    # FLIP (object-centric, Gaussian prompt)
    "flip-tiny": "benchmark.flip.predictor:build_flip_tiny",
    "flip-small": "benchmark.flip.predictor:build_flip_small",
    "flip-middle": "benchmark.flip.predictor:build_flip_middle",
    "flip-large": "benchmark.flip.predictor:build_flip_large",
    "flip-test": "benchmark.flip.predictor:build_flip_test",
    # weight-free references (always available)
    "box": "baselines.reference:build_box",
    "ellipse": "baselines.reference:build_ellipse",
    "grabcut": "baselines.reference:build_grabcut",
    # SAM family (box prompt)
    "sam-h": "baselines.sam:build_sam_h",
    "sam-l": "baselines.sam:build_sam_l",
    "sam-b": "baselines.sam:build_sam_b",
    "mobilesam": "baselines.mobilesam:build_mobilesam",
    "efficientsam-t": "baselines.efficientsam:build_efficientsam_t",
    "efficientsam-s": "baselines.efficientsam:build_efficientsam_s",
    "fastsam-s": "baselines.fastsam:build_fastsam_s",
    "fastsam-x": "baselines.fastsam:build_fastsam_x",
    "sam2.1-t": "baselines.sam2:build_sam2_t",
    "sam2.1-s": "baselines.sam2:build_sam2_s",
    "sam2.1-b+": "baselines.sam2:build_sam2_bplus",
    "sam2.1-l": "baselines.sam2:build_sam2_l",
    # candidate-mask models without a prompt encoder (selection rules: baselines.candidates)
    "eomt-l-640": "baselines.eomt:build_eomt_l_640",
    "eomt-l-1280": "baselines.eomt:build_eomt_l_1280",
    "eomt-test": "baselines.eomt:build_eomt_test",
    # text-prompted candidate models (eval --prompt text; baselines.openvocab)
    "sclip": "baselines.openvocab.predictors:build_sclip",
    "sclip-sam2.1": "baselines.openvocab.predictors:build_sclip_sam2",
    "proxyclip": "baselines.openvocab.predictors:build_proxyclip",
    "proxyclip-fsa": "baselines.openvocab.predictors:build_proxyclip_fsa",
    "sclip-test": "baselines.openvocab.predictors:build_sclip_test",
    "sclip-sam2.1-test": "baselines.openvocab.predictors:build_sclip_sam2_test",
    "proxyclip-test": "baselines.openvocab.predictors:build_proxyclip_test",
    "proxyclip-fsa-test": "baselines.openvocab.predictors:build_proxyclip_fsa_test",
}


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name[:checkpoint]"`` into the registry name and an optional checkpoint path."""
    name, _, checkpoint = spec.partition(":")
    name = name.strip().lower()
    if name not in MODEL_REGISTRY:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise KeyError(f"unknown model {name!r}; known models: {known}")
    return name, (checkpoint or None)


def build_model(spec: str, device: str = "cpu", allow_random: bool = False) -> Predictor:
    """Build the predictor named by ``spec`` (``"name"`` or ``"name:/path/to/checkpoint"``)."""
    name, checkpoint = parse_model_spec(spec)
    module_name, _, attr = MODEL_REGISTRY[name].partition(":")
    builder = getattr(importlib.import_module(module_name), attr)
    predictor = builder(checkpoint=checkpoint, device=device, allow_random=allow_random)
    predictor.name = name
    return predictor
