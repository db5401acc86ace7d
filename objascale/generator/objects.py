"""Object sources of the generator (catalogues; no bpy import).

* ``procedural``: the embedded default, built with bpy in ``procedural.py`` (no download); one entry per kind,
  each rendered with a per-image random variant (proportions, texture, colours). In a balanced run
  (``balanced=True``) there is one entry per category of the categories file instead, so the balanced design
  holds offline: a category with a procedural kind of its name gets that kind (9 of the shipped 68); every other
  category ``i`` (index in the file) gets the *stand-in* kind ``PROCEDURAL_KINDS[i mod 9]``, labelled with the
  category's name and the uid ``procedural:<kind>@<category>`` (the dataset card lists them as stand-ins).
* ``folder:<path>``: every ``.glb`` / ``.gltf`` / ``.obj`` below a folder. The category is the name of the file's
  parent folder (``root/mug/a.glb`` -> ``mug``); an optional ``objects.json`` in the root maps a file's relative
  path to ``{"category", "license", "name", "author", "url"}``.
* ``objaverse``: Objaverse 1.0 objects of the LVIS categories listed in ``data/lvis_68_categories.json`` (or a
  given file), through the ``objaverse`` package when installed, else through the built-in HTTP client with
  the same calls (``objaverse_http.py``: ``load_lvis_annotations``, ``load_annotations``, ``load_objects``;
  files cached under ``~/.objaverse/hf-objaverse-v1`` either way). Downloads are retried; a uid that
  still fails is reported by the worker, recorded in the run's ``failed_uids.json`` and never drawn again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from objascale.generator.download import DownloadError  # one error type for every download

__all__ = ["ObjectSpec", "PROCEDURAL_CATEGORY", "PROCEDURAL_KINDS", "is_stand_in", "PROCEDURAL_LICENSE",
           "build_catalog", "load_categories",
           "ObjaverseSource", "DownloadError", "resolve_path", "DEFAULT_CATEGORIES_FILE"]

log = logging.getLogger(__name__)

PROCEDURAL_LICENSE = "procedural, CC0 (flipbench)"
#: procedural kind -> the LVIS category it stands for
PROCEDURAL_CATEGORY = {
    "mug": "mug", "ball": "ball", "book": "book", "bottle": "bottle", "chair": "chair",
    "doughnut": "doughnut", "bowl": "bowl", "vase": "vase", "can": "can",
}
PROCEDURAL_KINDS = tuple(PROCEDURAL_CATEGORY)
MESH_SUFFIXES = (".glb", ".gltf", ".obj")
DEFAULT_CATEGORIES_FILE = Path(__file__).with_name("data") / "lvis_68_categories.json"


@dataclass(frozen=True)
class ObjectSpec:
    """One catalogue entry. ``source``: procedural | folder | objaverse; ``uid``: stable id recorded in the
    manifest; ``path``: local mesh file (None for procedural and for not-yet-downloaded Objaverse objects)."""

    source: str
    uid: str
    name: str
    category: str
    license: str
    path: str | None = None
    author: str = ""  # for attribution (CC-BY): Objaverse: the Sketchfab user; folder: objects.json "author"
    url: str = ""  # the object's page (Objaverse: its Sketchfab viewer URL)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_categories(path: str | Path | None = None) -> list[str]:
    """The LVIS category names of a categories file (``{"categories": [...]}``); default: the shipped 68."""
    data = json.loads(Path(path or DEFAULT_CATEGORIES_FILE).read_text())
    cats = data["categories"] if isinstance(data, dict) else data
    if not cats or not all(isinstance(c, str) for c in cats):
        raise ValueError(f"{path}: expected a non-empty list of category names")
    return list(cats)


def _procedural_catalog(categories: list[str] | None = None) -> list[ObjectSpec]:
    """The procedural kinds (``categories`` None), or one entry per category (see the module docstring)."""
    if categories is None:
        return [ObjectSpec("procedural", f"procedural:{kind}", kind, cat, PROCEDURAL_LICENSE)
                for kind, cat in PROCEDURAL_CATEGORY.items()]
    by_category = {cat: kind for kind, cat in PROCEDURAL_CATEGORY.items()}
    specs = []
    for i, cat in enumerate(categories):
        kind = by_category.get(cat)
        uid = f"procedural:{kind}" if kind else f"procedural:{PROCEDURAL_KINDS[i % len(PROCEDURAL_KINDS)]}@{cat}"
        specs.append(ObjectSpec("procedural", uid, kind or PROCEDURAL_KINDS[i % len(PROCEDURAL_KINDS)], cat,
                                PROCEDURAL_LICENSE))
    return specs


def is_stand_in(spec: ObjectSpec | dict[str, Any]) -> bool:
    """True for a procedural entry that stands in for a category it does not depict (``procedural:<kind>@<cat>``)."""
    uid = spec["uid"] if isinstance(spec, dict) else spec.uid
    return uid.startswith("procedural:") and "@" in uid


def _folder_catalog(root: Path) -> list[ObjectSpec]:
    if not root.is_dir():
        raise FileNotFoundError(f"object folder {root} does not exist")
    sidecar_path = root / "objects.json"
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    specs = []
    for p in sorted(q for q in root.rglob("*") if q.suffix.lower() in MESH_SUFFIXES and q.is_file()):
        rel = p.relative_to(root).as_posix()
        meta = sidecar.get(rel, {})
        category = meta.get("category") or (p.parent.name if p.parent != root else "unknown")
        specs.append(ObjectSpec("folder", f"folder:{rel}", meta.get("name", p.stem), category,
                                meta.get("license", "unknown (local file)"), str(p.resolve()),
                                author=meta.get("author", ""), url=meta.get("url", "")))
    if not specs:
        raise FileNotFoundError(f"no .glb / .gltf / .obj file below {root}")
    return specs


class ObjaverseSource:
    """Objaverse 1.0 LVIS objects through the ``objaverse`` package (``api``: that module or a stand-in)."""

    def __init__(self, categories: list[str], per_category: int, retries: int = 3, api: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.categories = categories
        self.per_category = int(per_category)
        self.retries = max(1, int(retries))
        self._api = api
        self._sleep = sleep

    @property
    def api(self) -> Any:
        """The ``objaverse`` package when installed, else (or when ``FLIPBENCH_OBJAVERSE_URL`` is set) the built-in
        HTTP client with the same three calls (``objaverse_http.py``)."""
        if self._api is None:
            from objascale.generator.objaverse_http import URL_ENV, ObjaverseHttp  # noqa: PLC0415

            if os.environ.get(URL_ENV):
                self._api = ObjaverseHttp()
            else:
                try:
                    self._api = importlib.import_module("objaverse")
                except ImportError:
                    self._api = ObjaverseHttp()
        return self._api

    def catalog(self) -> list[ObjectSpec]:
        """``per_category`` uids of each category (a stable hash order, independent of the run seed)."""
        lvis = self.api.load_lvis_annotations()
        missing = [c for c in self.categories if c not in lvis]
        if missing:
            log.warning("LVIS categories without Objaverse objects: %s", ", ".join(missing))
        chosen: list[tuple[str, str]] = []
        for cat in self.categories:
            uids = sorted(lvis.get(cat, []), key=lambda u: hashlib.sha1(u.encode()).hexdigest())
            chosen += [(u, cat) for u in uids[: self.per_category]]
        if not chosen:
            raise ValueError("no Objaverse object in the requested LVIS categories")
        meta = self.api.load_annotations([u for u, _ in chosen])
        specs = []
        for uid, cat in chosen:
            m = meta.get(uid, {}) or {}
            user = m.get("user") if isinstance(m.get("user"), dict) else {}
            specs.append(ObjectSpec("objaverse", uid, str(m.get("name", uid)), cat,
                                    str(m.get("license", "unknown (see Objaverse metadata)")),
                                    author=str(user.get("displayName") or user.get("username") or ""),
                                    url=str(m.get("viewerUrl") or "")))
        return specs

    def download(self, uid: str) -> str:
        """Local path of ``uid``'s GLB, downloading it if needed; ``DownloadError`` after ``retries`` failures."""
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                paths = self.api.load_objects([uid], download_processes=1)
                path = paths.get(uid)
                if path and Path(path).is_file():
                    return str(path)
                reason = getattr(self.api, "errors", {}).get(uid)
                last = FileNotFoundError(f"objaverse returned no file for {uid}" + (f" ({reason})" if reason else ""))
            except Exception as exc:  # noqa: BLE001 - network / parsing errors of a third-party package
                last = exc
            if attempt + 1 < self.retries:
                self._sleep(min(30.0, 2.0 ** attempt))
        raise DownloadError(f"could not download Objaverse object {uid} after {self.retries} tries: {last}")


def build_catalog(objects: str, categories_file: str = "", per_category: int = 50, retries: int = 3,
                  api: Any = None, balanced: bool = False, categories: list[str] | None = None) -> list[ObjectSpec]:
    """Catalogue of the configured object source (``GeneratorConfig.objects``); ``balanced``: one procedural
    entry per category of ``categories_file`` (other sources are balanced by the draw, see ``params.py``);
    ``categories``: the category list itself (``--categories-from``), instead of ``categories_file``."""
    if categories is None and not objects.startswith("folder:"):
        categories = load_categories(categories_file or None)
    if objects == "procedural":
        return _procedural_catalog(categories if balanced else None)
    if objects.startswith("folder:"):
        return _folder_catalog(Path(objects[len("folder:"):]))
    if objects == "objaverse":
        return ObjaverseSource(categories, per_category, retries, api).catalog()
    raise ValueError(f"unknown object source {objects!r}")


def resolve_path(spec: ObjectSpec, source: ObjaverseSource | None = None) -> str | None:
    """Local file of a catalogue entry (downloads Objaverse objects on demand); None for procedural objects."""
    if spec.source == "objaverse":
        if source is None:
            raise ValueError("an ObjaverseSource is needed to resolve Objaverse objects")
        return source.download(spec.uid)
    return spec.path
