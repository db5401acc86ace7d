"""Reports: turn ``flipbench eval`` runs into tables, figures, a timing report and one HTML page.

Modules, one job each:

* :mod:`.runs`      -- read run directories (``run.json`` + Parquet records), check protocols, label rows;
* :mod:`.stats`     -- IoU means/stds per model and dataset, small objects, size bins, t-intervals;
* :mod:`.timing`    -- per-stage median / p90 time per object and speed-ups;
* :mod:`.paper`     -- the paper's tables (``paper_tables.csv``, provenance ``paper_tables.json``) beside ours;
* :mod:`.tables`    -- a table type rendered to Markdown, CSV, LaTeX and HTML;
* :mod:`.figures`   -- heat maps and IoU-versus-size curves (matplotlib, Agg);
* :mod:`.gallery`   -- crops of chosen objects with the ground truth and each model's stored mask;
* :mod:`.html`      -- the single self-contained HTML page;
* :mod:`.build`     -- runs everything and writes the output directory;
* :mod:`.synthetic` -- records with the exact schema of ``flipbench eval`` for tests and demos.
"""
