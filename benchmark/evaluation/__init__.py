"""Evaluation: evaluate -> accumulate -> summarize, with the protocol in ``params.EvalParams``.

* :mod:`.params` — every protocol constant (:class:`EvalParams`, hashed into each record);
* :mod:`.evaluate` — per-object records of one model on one image (prompts, seeding, timing);
* :mod:`.metrics` — IoU at native resolution;
* :mod:`.schema` — the record columns (Parquet) and the official CSV columns;
* :mod:`.store` — the run directory: ``run.json``, atomic Parquet parts, resume checks, lock;
* :mod:`.accumulate` — all records of a run as one DataFrame (:func:`load_records`);
* :mod:`.summarize` — per-model summary (``summary.csv`` / ``summary.md``);
* :mod:`.official` — export in the official ``evaluate_single_hdf5.py`` CSV layout;
* :mod:`.provenance` — versions, git revision, machine;
* :mod:`.executors` — the unit of work (one image, one model), the worker that does it, the local executor;
* :mod:`.ray_executor` — the same tasks on Ray actors (``flipbench eval --ray``; needs the ``cluster`` extra);
* :mod:`.runner` — a whole run (``flipbench eval``).
"""
