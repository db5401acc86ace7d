"""Columns of the per-object evaluation records (Parquet) and of the official FLIP CSV.

One record = one ground-truth object evaluated by one model. Units: pixels, seconds. Timing columns are
seconds charged to this object: the image decode is divided equally among the objects of the image evaluated
in the same pass, the model's image-level work (``set_image``) among those of them with a non-empty ground truth
(the others are not predicted); the object's own mask decode and ``predict`` call are charged to it alone.
``t_total`` is wall-clock (data + share of ``set_image`` + ``predict``) and can exceed the sum of the stage
columns by time a predictor does not attribute to a stage.
Objects with an empty ground-truth mask are recorded with ``gt_empty = True``, ``iou = NaN``, NaN prompt box
and model timings, and 0 predicted pixels: no prompt can be derived, so the model is not run (the official script
skips them). Objects whose stored positions no mask can have are recorded alike with ``prompt_invalid = True``
(their ground-truth size is kept).
``pred_rle`` is the predicted mask as COCO RLE ``counts`` bytes (:mod:`benchmark.evaluation.rle`; size =
``(image_height, image_width)``), null for empty-GT objects and in records written before it existed (see
:func:`conform_table`).
"""

from __future__ import annotations

import pyarrow as pa

#: column name -> Arrow type; the order is the column order of the Parquet files
RECORD_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("model", pa.string()),  # registry name, e.g. "flip-tiny"
        ("weights_kind", pa.string()),  # "pretrained" | "random-init" | "none"
        ("dataset", pa.string()),
        ("dataset_fingerprint", pa.string()),
        ("shard", pa.string()),  # file name of the HDF5 shard holding the image
        ("image_index", pa.int64()),  # global image index in the dataset
        ("instance_index", pa.int64()),  # global instance (object) index in the dataset
        ("image_width", pa.int64()),
        ("image_height", pa.int64()),
        ("image_pixels", pa.int64()),
        ("objects_in_image", pa.int64()),  # instances of this image in the dataset
        ("category", pa.string()),  # the source's category name of the object; "unknown" where the dataset has none
        # the object in its source: "<image file name> <instance id in the source>", e.g.
        # "000000229358.jpg annotation 1234"; "unknown" where the dataset does not record it
        ("source_id", pa.string()),
        ("mask_pixels", pa.int64()),  # ground-truth mask area
        ("relative_mask_size", pa.float64()),  # mask_pixels / image_pixels
        ("pred_pixels", pa.int64()),
        ("pred_rle", pa.binary()),  # predicted mask, COCO RLE counts (benchmark.evaluation.rle); null: none stored
        ("intersection", pa.int64()),
        ("union", pa.int64()),
        ("iou", pa.float64()),  # intersection / union; NaN when the GT mask is empty
        ("gt_empty", pa.bool_()),
        # stored positions that no mask can have (negative variance, not positive semi-definite, NaN/inf, outside
        # the image): not prompted for any model, iou NaN, not scored (benchmark.evaluation.evaluate.prompt_problem)
        ("prompt_invalid", pa.bool_()),
        ("box_x0", pa.float64()),  # prompt box: tight inclusive XYXY pixels of the GT mask (NaN if empty)
        ("box_y0", pa.float64()),
        ("box_x1", pa.float64()),
        ("box_y1", pa.float64()),
        ("t_data", pa.float64()),
        ("t_preprocess", pa.float64()),
        ("t_encoder", pa.float64()),
        ("t_decoder", pa.float64()),
        ("t_postprocess", pa.float64()),
        ("t_total", pa.float64()),
        # one of the first EvalParams.timing_warmup_images images the model processed in its session (a resumed
        # run warms up again: caches and allocators are cold after a restart)
        ("warmup", pa.bool_()),
        ("input_tokens", pa.int64()),  # FLIP: patches given to the encoder; null for other models
        ("protocol_hash", pa.string()),
        ("device", pa.string()),  # where the model ran: "cpu", "cuda"
        ("node", pa.string()),  # machine that made the record: hostname (local) or "IP/node id" (Ray)
        # the prompt kind the model got (EvalParams.prompt resolved per model): box, gaussian, point, clicks
        ("prompt", pa.string()),
        # candidate-mask models (FastSAM, EoMT): the rule that picked the mask (box, point, oracle); null otherwise
        ("selection", pa.string()),
        # point and clicks prompts: the clicks given, flat (x, y, label) triples in pixel indices, label 1 positive,
        # 0 negative (for clicks: those of the last prediction); null for other prompts
        ("prompt_points", pa.list_(pa.float64())),
        # clicks prompt: IoU after click 1, 2, ..., EvalParams.max_clicks (iou is the last); null otherwise
        ("click_ious", pa.list_(pa.float64())),
        # compute precision of the model ("fp32", "bf16": FLIP's EvalParams.flip_precision); null for models that
        # do not state one and in records of earlier runs (which ran FLIP in fp32)
        ("precision", pa.string()),
    ]
)

RECORD_COLUMNS: tuple[str, ...] = tuple(RECORD_SCHEMA.names)
#: ``category`` / ``source_id`` of objects whose dataset does not record them
UNKNOWN = "unknown"
#: columns that records written by earlier flipbench versions lack; they read as null (older runs stay readable;
#: ``pred_rle``: no mask stored; ``prompt_invalid``: read as False by ``records_frame``; ``device``/``node``: unknown;
#: ``category`` / ``source_id``: read as "unknown" by ``records_frame``; ``prompt``: read as the model's own kind,
#: ``selection`` as box-selection for FastSAM, by ``records_frame``; ``prompt_points`` / ``click_ious``: none;
#: ``precision``: not stated, FLIP ran in fp32)
OPTIONAL_COLUMNS: tuple[str, ...] = ("pred_rle", "prompt_invalid", "device", "node", "category", "source_id",
                                     "prompt", "selection", "prompt_points", "click_ious", "precision")

#: official ``evaluate_single_hdf5.py`` CSV column -> how it is computed from a record
OFFICIAL_CSV_COLUMNS: dict[str, str] = {
    "iou": "iou",
    "relative_mask_size": "relative_mask_size",
    "mask_size": "mask_pixels",
    "img_width": "image_width",
    "img_height": "image_height",
    "img_size": "image_pixels",
    "data_load_time": "t_data",
    "preprocessing_time": "t_preprocess",
    "postprocessing_time": "t_postprocess",
    "model_time": "t_encoder + t_decoder",
    "input_tokens": "input_tokens",
}


def records_to_table(records: list[dict]) -> pa.Table:
    """Arrow table with :data:`RECORD_SCHEMA` from record dicts holding exactly :data:`RECORD_COLUMNS`."""
    columns: dict[str, list] = {name: [] for name in RECORD_COLUMNS}
    for record in records:
        if record.keys() != columns.keys():
            missing = sorted(columns.keys() - record.keys())
            extra = sorted(record.keys() - columns.keys())
            raise ValueError(f"record columns differ from the schema: missing {missing}, unexpected {extra}")
        for name, value in record.items():
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def conform_table(table: pa.Table, source: str) -> pa.Table:
    """``table`` with exactly :data:`RECORD_SCHEMA`: missing :data:`OPTIONAL_COLUMNS` added as nulls (records of
    older runs), columns in schema order and types. Raises ``ValueError`` naming ``source`` when a required column
    is missing or an unknown one is present."""
    names = set(table.column_names)
    missing = [c for c in RECORD_COLUMNS if c not in names and c not in OPTIONAL_COLUMNS]
    unexpected = sorted(names - set(RECORD_COLUMNS))
    if missing or unexpected:
        raise ValueError(f"{source}: record columns differ from the schema: missing {missing}, unexpected {unexpected}")
    for name in OPTIONAL_COLUMNS:
        if name not in names:
            column = RECORD_SCHEMA.field(name)
            table = table.append_column(column, pa.nulls(len(table), column.type))
    return table.select(list(RECORD_COLUMNS)).cast(RECORD_SCHEMA)
