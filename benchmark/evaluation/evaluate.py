"""Step 1 of evaluate -> accumulate -> summarize: per-object records of one model on one image.

The protocol (see :class:`benchmark.evaluation.params.EvalParams`):

* the image is decoded once and handed to the predictor once (``set_image``);
* each object gets the prompt ``ObjectPrompt(box_xyxy=mask_to_bbox(gt), rho=stored positions)`` of the run's prompt
  kind (:func:`resolve_prompt`; a point prompt adds the click of :mod:`.prompts`) and its own ``predict`` call (so its
  timings are its own), after the predictor was seeded with :func:`object_seed` when it is seedable (``set_seed``);
  the ``clicks`` kind calls ``predict`` once per simulated click (``EvalParams.max_clicks``), feeding the model its
  previous logits where it takes them, and records the IoU after every click (``click_ious``); its times are those
  of the whole simulation; a candidate-mask model with the ``oracle`` rule picks its mask by the ground truth
  (:meth:`baselines.candidates.CandidatePredictor.predict_oracle`); the ``text`` kind gives a text model the object's
  category name (the record's ``category``) with the box or the point of the selection rule, the vocabulary being the
  dataset's category names (:func:`text_vocabulary`);
* the predicted mask is scored against the ground truth at native resolution (:mod:`.metrics`) and stored with
  the record as COCO RLE (``pred_rle``, :mod:`.rle`), so results can be re-scored and looked at without rerunning.

Objects with an empty ground-truth mask are recorded (``gt_empty``) but not predicted; so are objects whose stored
positions cannot be the Gaussian of any mask (``prompt_invalid``, see :func:`prompt_problem`), for every model alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from baselines.base import ObjectPrompt, Predictor, PromptKindError
from baselines.candidates import CandidatePredictor
from benchmark.evaluation.metrics import mask_overlap
from benchmark.evaluation.params import EvalParams
from benchmark.evaluation.prompts import Click, click_arrays, farthest_interior_point, next_click
from benchmark.evaluation.rle import encode_mask
from benchmark.evaluation.schema import RECORD_COLUMNS, UNKNOWN
from baselines.timing import STAGES
from objascale.hdf5_format import mask_to_bbox


class DatasetLike(Protocol):
    """What the evaluation reads of a dataset (``objascale.hdf5_format.FlipDataset`` implements it)."""

    num_images: int
    num_instances: int

    def image(self, i: int) -> np.ndarray: ...
    def instance_indices(self, i: int) -> range: ...
    def mask(self, j: int) -> np.ndarray: ...
    def rho(self, j: int) -> np.ndarray: ...
    def image_info(self, i: int) -> dict[str, Any]: ...
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class RecordContext:
    """Columns shared by every record of one model in one run."""

    run_id: str
    model: str
    weights_kind: str
    dataset: str
    dataset_fingerprint: str
    protocol_hash: str
    device: str = "cpu"  # where the model ran ("cpu", "cuda")
    node: str = ""  # the machine (local: hostname; Ray: node IP/id) that produced the records
    prompt: str = "box"  # the prompt kind the model gets (resolve_prompt): box, gaussian, point, clicks, text
    selection: str | None = None  # candidate-mask models: the selection rule (box, point, oracle)
    precision: str | None = None  # the model's compute precision where it states one (FLIP: "fp32" / "bf16")


#: ``EvalParams.prompt`` kind -> the :class:`~baselines.base.ObjectPrompt` kind a predictor takes for it
PREDICTOR_KIND = {"box": "box", "gaussian": "gaussian", "point": "points", "clicks": "points", "text": "text"}


def accepted_prompts(predictor: Predictor) -> tuple[str, ...]:
    """The ``EvalParams.prompt`` kinds ``predictor`` takes, its own first: a predictor of ``points`` takes the 1-point
    prompt and, unless it selects among candidate masks, the click simulation."""
    kinds: list[str] = []
    for kind in predictor.prompt_kinds:
        if kind == "points":
            kinds += ["point"] if isinstance(predictor, CandidatePredictor) else ["point", "clicks"]
        else:
            kinds.append(kind)
    return tuple(kinds)


def resolve_prompt(predictor: Predictor, params: EvalParams) -> tuple[str, str | None]:
    """``(prompt kind, selection rule or None)`` of ``predictor`` under ``params``; a kind or rule it cannot take is a
    :class:`~baselines.base.PromptKindError` (never silently another prompt)."""
    kinds = accepted_prompts(predictor)
    name = predictor.name or type(predictor).__name__
    prompt = kinds[0] if params.prompt == "native" else params.prompt
    if prompt not in kinds:
        raise PromptKindError(f"{name} cannot take {prompt} prompts (it takes {', '.join(kinds)}); evaluate it in "
                              f"another run with --prompt {kinds[0]}")
    limit = getattr(predictor, "max_points", None)
    if prompt == "clicks" and limit is not None and params.max_clicks > limit:
        raise PromptKindError(f"{name} takes at most {limit} clicks per object; simulate {limit} with --max-clicks "
                              f"{limit} in a run of its own")
    if not isinstance(predictor, CandidatePredictor):
        return prompt, None
    if prompt == "text":
        if params.select not in ("box", "point", "oracle"):
            raise PromptKindError(f"{name} is prompted by text: evaluate it with --prompt text --select box, point "
                                  "or oracle")
        return prompt, params.select
    selection = prompt if params.select == "prompt" else params.select
    if selection not in ("oracle", prompt):
        raise PromptKindError(f"{name}: --select {selection} picks a mask by a {selection} prompt, but the run gives "
                              f"{prompt} prompts; use --prompt {selection} (or --select oracle)")
    return prompt, selection


#: stored positions may miss the exact moments of a degenerate (point or line) mask by float32 rounding
RHO_TOLERANCE = 1e-6


def prompt_problem(rho: np.ndarray) -> str | None:
    """Why stored positions ``[mu_x, mu_y, var_x, var_y, cov_xy]`` (normalized frame) cannot be the Gaussian of
    any mask of the image, or None when they can.

    Pixels lie in ``[-1, 1]^2``, so their moments are finite with ``|mu| <= 1``, ``0 <= var <= 1`` and a positive
    semi-definite covariance (a point or a line has a zero eigenvalue), each up to :data:`RHO_TOLERANCE`. Other
    values would give FLIP no patches (or nonsense ones) without an error, so such objects are not prompted.
    """
    r = np.asarray(rho, dtype=np.float64).reshape(-1)
    if r.size != 5:
        return f"positions has {r.size} values, expected 5"
    shown = "[" + ", ".join(f"{v:.6g}" for v in r) + "]"
    if not np.isfinite(r).all():
        return f"positions {shown} are not finite"
    mu_x, mu_y, var_x, var_y, cov = r.tolist()
    if max(abs(mu_x), abs(mu_y)) > 1 + RHO_TOLERANCE:
        return f"positions {shown}: the mean lies outside the image"
    if min(var_x, var_y) < -RHO_TOLERANCE:
        return f"positions {shown}: negative variance"
    if max(var_x, var_y) > 1 + RHO_TOLERANCE:
        return f"positions {shown}: a variance above 1, more than any mask of the image has"
    smallest = (var_x + var_y) / 2 - math.hypot((var_x - var_y) / 2, cov)
    if smallest < -RHO_TOLERANCE:
        return f"positions {shown}: the covariance is not positive semi-definite (eigenvalue {smallest:.3g})"
    return None


def text_vocabulary(dataset: DatasetLike) -> tuple[str, ...]:
    """The class list of text prompts on ``dataset``: every category name of its objects, once each, sorted (all its
    objects, whatever ``--limit`` evaluates, so a limited run sees the same classes). ``ValueError`` when the dataset
    records no category names (files written before flipbench stored them: convert the source again)."""
    categories = getattr(dataset, "categories", None)
    names = sorted({str(c) for c in categories()} - {UNKNOWN, ""}) if callable(categories) else []
    if not names:
        raise ValueError("the dataset records no category names of its objects, which text prompts need (files "
                         "converted before flipbench stored them): convert the source dataset again")
    return tuple(names)


def object_seed(seed: int, instance_index: int) -> int:
    """Seed of the random choices (FLIP patch sampling, GrabCut's k-means) for one object.

    A function of the run seed and the object's global index only, so an object gets the same patches in a
    fresh run, a resumed run and a ``--limit`` run. 31-bit, non-negative.
    """
    state = np.random.SeedSequence([int(seed), int(instance_index)]).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def configure_predictor(predictor: Predictor, params: EvalParams) -> None:
    """Hand the protocol to predictors that take it (FLIP: token budget, sampler constants, inference mode)."""
    configure = getattr(predictor, "configure", None)
    if callable(configure):
        configure(params)


def evaluate_image(
    dataset: DatasetLike,
    predictor: Predictor,
    image_index: int,
    instance_indices: Sequence[int],
    context: RecordContext,
    params: EvalParams,
    warmup: bool,
) -> list[dict[str, Any]]:
    """Evaluate ``instance_indices`` (objects of image ``image_index``) with ``predictor``; one record each.

    Records hold exactly :data:`benchmark.evaluation.schema.RECORD_COLUMNS`. Masks are decoded one at a time
    (an image may hold hundreds of objects). Raises ``ValueError`` when a mask's size differs from its image's
    or a predictor returns a mask of the wrong shape or dtype.
    """
    if len(instance_indices) == 0:
        return []
    start = time.perf_counter()
    image = dataset.image(image_index)
    t_image = time.perf_counter() - start
    height, width = image.shape[:2]
    info = dataset.image_info(image_index)
    common = {
        "run_id": context.run_id,
        "model": context.model,
        "weights_kind": context.weights_kind,
        "dataset": context.dataset,
        "dataset_fingerprint": context.dataset_fingerprint,
        "shard": Path(str(info.get("shard", ""))).name,
        "image_index": int(image_index),
        "image_width": int(width),
        "image_height": int(height),
        "image_pixels": int(width * height),
        "objects_in_image": len(dataset.instance_indices(image_index)),
        "warmup": bool(warmup),
        "protocol_hash": context.protocol_hash,
        "device": context.device,
        "node": context.node,
        "precision": context.precision,
    }
    seeder = getattr(predictor, "set_seed", None)
    image_stages: dict[str, float] | None = None  # set_image runs before the first non-empty object
    t_set_image = 0.0
    records = []
    for j in instance_indices:
        start = time.perf_counter()
        base = {**common, "instance_index": int(j), **object_source(dataset, info, j),
                "prompt": context.prompt, "selection": context.selection}
        gt = dataset.mask(j)
        if gt.shape != (height, width):
            raise ValueError(
                f"instance {j}: mask {gt.shape} does not match its image {image_index} ({height}, {width})"
            )
        if not gt.any():
            records.append(_unscored_record(base, time.perf_counter() - start))
            continue
        rho = np.asarray(dataset.rho(j), dtype=np.float32)
        if prompt_problem(rho) is not None:  # the same objects for every model
            records.append(_unscored_record(base, time.perf_counter() - start, gt_pixels=int(gt.sum())))
            continue
        prompt = ObjectPrompt(box_xyxy=mask_to_bbox(gt), rho=rho, kind=PREDICTOR_KIND[context.prompt])
        if context.prompt == "point" or (context.prompt == "text" and context.selection == "point"):
            x, y = farthest_interior_point(gt)
            prompt = _with_clicks(prompt, [Click(x=x, y=y, positive=True)])
        if context.prompt == "text":
            if base["category"] == UNKNOWN:
                raise ValueError(f"model {context.model!r}, image {image_index}, instance {j}: the dataset records no "
                                 "category for this object, which a text prompt needs")
            prompt = replace(prompt, kind="text", text=base["category"],
                             select=None if context.selection == "oracle" else context.selection)
        t_data = time.perf_counter() - start
        if image_stages is None:
            predictor.timer.reset()
            start = time.perf_counter()
            predictor.set_image(image)
            t_set_image = time.perf_counter() - start
            image_stages = predictor.timer.pop()
        if callable(seeder):
            seeder(object_seed(params.seed, j))
        predictor.timer.reset()
        start = time.perf_counter()
        click_ious: list[float] | None = None
        try:
            if context.prompt == "clicks":
                pred, click_ious, prompt = _simulate_clicks(predictor, prompt, gt, params.max_clicks)
            elif context.selection == "oracle":
                pred = predictor.predict_oracle(gt, text=prompt.text) if prompt.kind == "text" \
                    else predictor.predict_oracle(gt)
            else:
                (pred,) = predictor.predict([prompt])
        except ValueError as exc:
            raise ValueError(f"model {context.model!r}, image {image_index}, instance {j}: {exc}") from exc
        t_predict = time.perf_counter() - start
        stages = predictor.timer.pop()
        try:
            overlap = mask_overlap(pred, gt)
        except ValueError as exc:
            raise ValueError(f"model {context.model!r}, image {image_index}, instance {j}: {exc}") from exc
        box = prompt.box_xyxy
        timing = {f"t_{s}": stages.get(s, 0.0) for s in STAGES}  # the predictor's own stages of this object
        timing["t_data"] += t_data
        records.append(
            {
                **base,
                "mask_pixels": overlap.gt_pixels,
                "relative_mask_size": overlap.gt_pixels / (width * height),
                "pred_pixels": overlap.pred_pixels,
                "pred_rle": encode_mask(pred),
                "intersection": overlap.intersection,
                "union": overlap.union,
                "iou": overlap.iou,
                "gt_empty": False,
                "prompt_invalid": False,
                "box_x0": float(box[0]),
                "box_y0": float(box[1]),
                "box_x1": float(box[2]),
                "box_y1": float(box[3]),
                **timing,
                "t_total": t_data + t_predict,
                "input_tokens": _input_tokens(predictor),
                "prompt_points": _flat_points(prompt),
                "click_ious": click_ious,
            }
        )
    _share_image_costs(records, t_image, t_set_image, image_stages or {})
    return [{name: r[name] for name in RECORD_COLUMNS} for r in records]


def _with_clicks(prompt: ObjectPrompt, clicks: list[Click], mask_input=None) -> ObjectPrompt:
    points, labels = click_arrays(clicks)
    return ObjectPrompt(box_xyxy=prompt.box_xyxy, rho=prompt.rho, kind="points", points=points, point_labels=labels,
                        mask_input=mask_input)


def _simulate_clicks(
    predictor: Predictor, prompt: ObjectPrompt, gt: np.ndarray, max_clicks: int
) -> tuple[np.ndarray, list[float], ObjectPrompt]:
    """RITM's interactive protocol on one object: up to ``max_clicks`` predictions, each with every click so far
    (:func:`~benchmark.evaluation.prompts.next_click` on the previous prediction) and the model's previous logits
    (``mask_input``, where it returns them). Returns the last prediction, the IoU after each click (when no error is
    left to click, the remaining clicks keep the last IoU: the prediction is final) and the last prompt."""
    clicks: list[Click] = []
    clicked = np.zeros(gt.shape, dtype=bool)
    pred: np.ndarray | None = None
    mask_input = None
    ious: list[float] = []
    last = prompt
    for _ in range(max_clicks):
        click = next_click(gt, pred, clicked)
        if click is None:
            ious.append(ious[-1])
            continue
        clicks.append(click)
        clicked[click.y, click.x] = True
        last = _with_clicks(prompt, clicks, mask_input)
        (pred,) = predictor.predict([last])
        inputs = predictor.last_mask_inputs
        mask_input = inputs[0] if inputs else None
        ious.append(mask_overlap(pred, gt).iou)
    return pred, ious, last


def _flat_points(prompt: ObjectPrompt) -> list[float] | None:
    """The prompt's clicks as ``[x, y, label, x, y, label, ...]`` (label 1 positive, 0 negative), or None."""
    if prompt.points is None:
        return None
    rows = np.column_stack([np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2),
                            np.asarray(prompt.point_labels, dtype=np.float64).reshape(-1)])
    return rows.reshape(-1).tolist()


def object_source(dataset: DatasetLike, info: dict[str, Any], j: int) -> dict[str, str]:
    """``{"category", "source_id"}`` of instance ``j`` (image ``info`` from ``dataset.image_info``): the source's
    category name and ``"<file name> <instance id in the source>"``; ``"unknown"`` where the dataset (an older file,
    or one without ``instance_meta``) does not record them."""
    meta_of = getattr(dataset, "instance_meta", None)
    meta = meta_of(j) if callable(meta_of) else {}
    instance_id = str(meta.get("source_id") or "")
    file_name = str(info.get("file_name") or "")
    return {"category": str(meta.get("category") or UNKNOWN),
            "source_id": f"{file_name} {instance_id}".strip() if instance_id else UNKNOWN}


def _share_image_costs(records: list[dict], t_image: float, t_set_image: float, image_stages: dict) -> None:
    """Charge the image decode to every object and ``set_image`` (wall and stages) to every predicted one."""
    predicted = [r for r in records if not (r["gt_empty"] or r["prompt_invalid"])]
    for r in records:
        r["t_data"] += t_image / len(records)
    for r in predicted:
        r["t_total"] += t_image / len(records) + t_set_image / len(predicted)
        for stage, seconds in image_stages.items():
            r[f"t_{stage}"] += seconds / len(predicted)


def _input_tokens(predictor: Predictor) -> int | None:
    """Patch tokens FLIP's encoder got for the last (single-prompt) ``predict``; None for other models.

    FLIP exposes ``last_input_tokens``: one count per prompt of its last ``predict`` call.
    """
    value = getattr(predictor, "last_input_tokens", None)
    if value is None:
        return None
    counts = np.asarray(value).reshape(-1)
    if counts.size != 1:
        raise ValueError(f"expected one input-token count for one prompt, got {counts.tolist()}")
    return int(counts[0])


def _unscored_record(base: dict[str, Any], t_data: float, gt_pixels: int = 0) -> dict[str, Any]:
    """Record of an object the model is not run on: an empty ground truth (``gt_pixels == 0``) or, for a
    non-empty one, invalid stored positions."""
    nan = math.nan
    return {
        **base,
        "mask_pixels": gt_pixels,
        "relative_mask_size": gt_pixels / base["image_pixels"],
        "pred_pixels": 0,
        "pred_rle": None,
        "intersection": 0,
        "union": 0,
        "iou": nan,
        "gt_empty": gt_pixels == 0,
        "prompt_invalid": gt_pixels > 0,
        "box_x0": nan,
        "box_y0": nan,
        "box_x1": nan,
        "box_y1": nan,
        "t_data": t_data,
        "t_preprocess": nan,
        "t_encoder": nan,
        "t_decoder": nan,
        "t_postprocess": nan,
        "t_total": nan,
        "input_tokens": None,
        "prompt_points": None,
        "click_ious": None,
    }
