"""Where ObjaScale's category list comes from: the shipped list (ours), a JSON file, or a dataset (no bpy).

The official ObjaScale release (FLIP, arXiv 2502.02763) is linked from the FLIP README ("Dataset: ObjaScale",
added in CognitiveModeling/FLIP commit 46999f2): :data:`OFFICIAL_RELEASE_URL`, preprocessed FLIP HDF5 files.
Until a category list is read from those files (``generate --categories-from FILE``), the list a run uses is
ours and its card says ``"official": false``.

:func:`read_category_list` reads the distinct category names, in order of first appearance, from

* a FLIP HDF5 file or a folder of shards (the per-instance ``flipbench_instance_category`` texts; a file
  without them, such as one written by the official converter, is an error naming the file): ``official`` is
  true unless the file says it was made by flipbench's generator (its provenance);
* a JSON file ``{"categories": [...]}`` or ``[...]`` (its own ``"official"`` flag, default false);
* a text file with one name per line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["OFFICIAL_RELEASE_URL", "OFFICIAL_RELEASE_NOTE", "CategoryList", "read_category_list"]

#: the official ObjaScale release, as linked from the FLIP README (commit 46999f2, "added ObjaScale link")
OFFICIAL_RELEASE_URL = "https://nc.mlcloud.uni-tuebingen.de/index.php/s/4CNc5XNc88NWXZK"
OFFICIAL_RELEASE_NOTE = (f"The official ObjaScale release (FLIP README, CognitiveModeling/FLIP commit 46999f2): "
                         f"{OFFICIAL_RELEASE_URL}. Compare a run with it: flipbench inspect RUN --compare FILE; take "
                         "its category list: generate objascale --categories-from FILE.")
_GENERATOR = "flipbench objascale"


@dataclass(frozen=True)
class CategoryList:
    categories: list[str]
    source: str  # the file it was read from
    official: bool  # read from the official release (not a flipbench run, not our list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_dataset(path: Path) -> CategoryList:
    from objascale.hdf5_reader import FlipDataset, FlipFormatError  # noqa: PLC0415

    try:
        with FlipDataset(path) as ds:
            names = [str(c) for c in ds.categories()]
            provenance = ds.metadata.get("flipbench_provenance")
    except FlipFormatError as exc:
        raise ValueError(f"--categories-from {path}: not a readable FLIP HDF5 dataset ({exc})") from exc
    cats = list(dict.fromkeys(c for c in names if c and c != "unknown"))
    if not cats:
        raise ValueError(f"{path}: holds no category names (no flipbench_instance_category texts); give the "
                         "categories as a JSON or text file instead")
    ours = isinstance(provenance, dict) and provenance.get("generator") == _GENERATOR
    note = (f"read from {len(names)} instances of {path}" + (" (a flipbench ObjaScale run, not the official "
                                                              "release)" if ours else ""))
    return CategoryList(cats, str(path), official=not ours, note=note)


def read_category_list(path: str | Path) -> CategoryList:
    """The category list of ``path`` (see the module docstring); ``ValueError`` / ``FileNotFoundError`` with
    one line naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--categories-from {path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in (".hdf5", ".h5"):
        return _from_dataset(path)
    text = path.read_text(errors="replace")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        cats = doc.get("categories") if isinstance(doc, dict) else doc
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) and c for c in cats):
            raise ValueError(f"{path}: expected {{\"categories\": [name, ...]}} or a list of names")
        official = bool(doc.get("official", False)) if isinstance(doc, dict) else False
        return CategoryList(list(dict.fromkeys(cats)), str(path), official,
                            str(doc.get("note", "")) if isinstance(doc, dict) else "")
    cats = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not cats:
        raise ValueError(f"{path}: no category names (one per line)")
    return CategoryList(list(dict.fromkeys(cats)), str(path), official=False, note="text file, one name per line")
