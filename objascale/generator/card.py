"""Dataset card of an ObjaScale run: ``card.json`` (machine-readable) and ``DATASET_CARD.md`` (no bpy).

Written by ``generate`` with every finished shard set, from what the run directory holds (``generator_config.json``,
``catalog.json``, ``hdris.json``, ``manifest.jsonl``, ``failed_uids.json``) and nothing else, so it can be
rebuilt at any time with :func:`write_card`. Contents: the design (counts per category, balance), relative mask
area (achieved, drawn and the log-uniform target, per decade) and resolution histograms (text), object and HDRI
sources with licences and attributions, generator version and parameters, where the official release is.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from objascale.generator import shards as sh
from objascale.generator.categories import OFFICIAL_RELEASE_NOTE, OFFICIAL_RELEASE_URL
from objascale.generator.config import GeneratorConfig
from objascale.generator.scale import area_range
from objascale.generator.objects import DEFAULT_CATEGORIES_FILE, is_stand_in

__all__ = ["CARD_JSON", "CARD_MD", "build_card", "write_card", "read_card", "card_markdown", "AREA_EDGES",
           "LONG_SIDE_EDGES"]

CARD_JSON = "card.json"
CARD_MD = "DATASET_CARD.md"
#: decade bins of the relative mask area (mask pixels / image pixels), as in the paper's 1e-6 .. 0.25 range
AREA_EDGES = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.25, 1.0)
#: bins of the long image side in pixels (paper: up to about 4K)
LONG_SIDE_EDGES = (0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4097, math.inf)


def _hist(values: list[float], edges: tuple[float, ...], fmt) -> list[dict[str, Any]]:
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=np.asarray(edges, dtype=np.float64))
    return [{"bin": f"[{fmt(lo)}, {fmt(hi)})", "count": int(n)} for lo, hi, n in zip(edges[:-1], edges[1:], counts)]


def _categories_source(cfg: GeneratorConfig, out: Path) -> dict[str, Any]:
    frozen = sh.read_json(out / "categories.json")  # read by --categories-from
    if isinstance(frozen, dict) and frozen.get("categories"):
        return {"file": frozen.get("source", cfg.categories_from), "official": bool(frozen.get("official")),
                "note": frozen.get("note", ""), "official_release": OFFICIAL_RELEASE_URL}
    path = Path(cfg.categories_file) if cfg.categories_file else DEFAULT_CATEGORIES_FILE
    doc = sh.read_json(path, {})
    doc = doc if isinstance(doc, dict) else {}
    return {"file": str(path) if cfg.categories_file else "objascale/generator/data/lvis_68_categories.json",
            "official": bool(doc.get("official", False)), "note": doc.get("note", ""),
            "official_release": OFFICIAL_RELEASE_URL}


def log_uniform_expected(edges: tuple[float, ...], lo: float, hi: float, n: int) -> list[float]:
    """Expected counts per bin of ``n`` draws log-uniform on ``[lo, hi]``."""
    span = math.log(hi / lo)
    return [n * max(0.0, math.log(min(b, hi) / max(a, lo))) / span if b > lo and a < hi else 0.0
            for a, b in zip(edges[:-1], edges[1:])]


def area_distribution(cfg: GeneratorConfig, achieved: list[float], drawn: list[float]) -> list[dict[str, Any]]:
    """Per decade of :data:`AREA_EDGES`: achieved (mask) and drawn (target) counts and the count a log-uniform
    draw over the config's range (``scale.area_range``) expects, as counts and percentages."""
    lo, hi = area_range(cfg)
    n = len(achieved)
    expected = log_uniform_expected(AREA_EDGES, lo, hi, n)
    rows = []
    for row_a, row_d, e in zip(_hist(achieved, AREA_EDGES, lambda v: f"{v:g}"),
                               _hist(drawn, AREA_EDGES, lambda v: f"{v:g}"), expected):
        rows.append({"bin": row_a["bin"], "achieved": row_a["count"], "drawn": row_d["count"],
                     "target": round(e, 2), "achieved_pct": round(100 * row_a["count"] / n, 2) if n else 0.0,
                     "target_pct": round(100 * e / n, 2) if n else 0.0})
    return rows


def build_card(out: str | Path) -> dict[str, Any]:
    """The card of the run in ``out`` (see the module docstring); raises ``FileNotFoundError`` when ``out``
    holds no finished run (no ``manifest.jsonl``)."""
    out = Path(out)
    run = sh.read_json(out / "generator_config.json")
    manifest_file = out / "manifest.jsonl"
    if run is None or not manifest_file.is_file():
        raise FileNotFoundError(f"{out} holds no finished ObjaScale run (generator_config.json + manifest.jsonl)")
    cfg = GeneratorConfig.from_dict(run["config"])
    records = [json.loads(line) for line in manifest_file.read_text().splitlines() if line.strip()]
    catalog = sh.read_json(out / "catalog.json", [])
    hdris = sh.read_json(out / "hdris.json", [])
    failed = sh.read_json(out / "failed_uids.json", {})

    catalog_categories = list(dict.fromkeys(s["category"] for s in catalog))
    per_category = Counter(r["object_category"] for r in records)
    counts = {c: per_category.get(c, 0) for c in catalog_categories}
    counts.update({c: n for c, n in per_category.items() if c not in counts})
    distinct = set(counts.values())
    used_objects = Counter(r["object_uid"] for r in records)
    by_uid = {s["uid"]: s for s in catalog}
    objects = [{"uid": uid, "name": by_uid.get(uid, {}).get("name", ""), "category": by_uid.get(uid, {}).get(
        "category", ""), "source": by_uid.get(uid, {}).get("source", ""), "license": by_uid.get(uid, {}).get(
        "license", ""), "author": by_uid.get(uid, {}).get("author", ""), "url": by_uid.get(uid, {}).get("url", ""),
        "stand_in": is_stand_in(by_uid[uid]) if uid in by_uid else False, "images": n}
        for uid, n in sorted(used_objects.items())]
    used_hdris = Counter(r.get("hdri") for r in records if r.get("hdri"))
    unique_hdris = list({h["name"]: h for h in hdris}.values())  # a slot filled by another asset repeats it
    hdri_rows = [{"name": h["name"], "license": h.get("license", ""), "author": h.get("author", ""),
                  "source": h.get("source", ""), "images": used_hdris.get(h["name"], 0)} for h in unique_hdris]
    long_sides = [max(r["width"], r["height"]) for r in records]
    areas = [r["achieved_area"] for r in records]
    return {
        "name": "ObjaScale (flipbench generator)",
        "official_release": {"url": OFFICIAL_RELEASE_URL, "note": OFFICIAL_RELEASE_NOTE},
        "description": "Synthetic single-object segmentation images: one object per image rendered with Blender "
                       "Cycles over an HDRI background, exact Cryptomatte mask, relative mask area drawn "
                       "log-uniformly (FLIP, arXiv 2502.02763, Sec. ObjaScale).",
        "generator": {"name": "flipbench objascale",
                      # the version that made the run (runs of before it was recorded: version 1)
                      "generator_version": run.get("generator_version", 1),
                      "versions": run.get("versions", {}), "config": cfg.to_dict(),
                      "config_fingerprint": run.get("config_fingerprint", cfg.fingerprint()),
                      "preset": cfg.preset_name},
        "images": len(records),
        "shards": sorted(p.name for p in out.glob("objascale-*.hdf5")),
        "design": {
            "balanced": cfg.balanced,
            "categories_in_catalog": len(catalog_categories),
            "images_per_category": counts,
            "equal_count_per_category": bool(len(distinct) == 1 and set(counts) == set(catalog_categories)),
            "categories_source": _categories_source(cfg, out),
            "object_source": cfg.objects,
            "stand_in_categories": sorted({s["category"] for s in catalog if is_stand_in(s)}),
        },
        "resolution": {"long_side_range_config": [cfg.long_side_min, cfg.long_side_max],
                       "width": [min(r["width"] for r in records), max(r["width"] for r in records)],
                       "height": [min(r["height"] for r in records), max(r["height"] for r in records)],
                       "long_side_histogram": _hist(long_sides, LONG_SIDE_EDGES,
                                                    lambda v: "inf" if math.isinf(v) else f"{v:g}")},
        "relative_area": {"range_config": [cfg.min_area, cfg.max_area], "min_pixels": cfg.min_pixels,
                          "achieved_min": min(areas), "achieved_max": max(areas),
                          "histogram": _hist(areas, AREA_EDGES, lambda v: f"{v:g}"),
                          "target_range": list(area_range(cfg)),
                          "distribution": area_distribution(cfg, areas, [r["target_area"] for r in records]),
                          "max_box_fraction": cfg.max_box_fraction, "max_object_px": cfg.max_object_px,
                          "images_limited_by_box": sum(bool(r.get("area_limited_by_box")) for r in records)},
        "rendering": {"samples": cfg.samples, "denoise": cfg.denoise, "device": cfg.device,
                      "devices_used": sorted({str(r.get("device")) for r in records}),
                      "ground_plane": cfg.ground_plane,
                      "images_with_ground_plane": sum(bool(r.get("ground_plane")) for r in records)},
        "objects": {"source": cfg.objects, "licenses": dict(Counter(o["license"] for o in objects)),
                    "used": objects, "failed_downloads": failed},
        "hdris": {"source": cfg.hdris, "licenses": dict(Counter(h["license"] for h in hdri_rows)),
                  "used": hdri_rows},
    }


def _text_hist(rows: list[dict[str, Any]], width: int = 30) -> list[str]:
    total = sum(r["count"] for r in rows) or 1
    label_w = max(len(r["bin"]) for r in rows)
    return [f"{r['bin']:<{label_w}}  {r['count']:>6}  {'#' * round(width * r['count'] / total)}" for r in rows]


def card_markdown(card: dict[str, Any], max_rows: int | None = None) -> str:
    """The human-readable card (Markdown with text histograms); ``max_rows`` limits the object and HDRI tables
    (``flipbench inspect``; the file has them all)."""
    g, d, res, area = card["generator"], card["design"], card["resolution"], card["relative_area"]
    cfg = g["config"]
    cats = d["categories_source"]
    lines = [
        f"# {card['name']}", "", card["description"], "",
        f"- images: {card['images']} in {len(card['shards'])} shard(s); preset `{g['preset']}`, seed {cfg['seed']}",
        f"- generator version {g['generator_version']}, config fingerprint `{g['config_fingerprint']}`; "
        + ", ".join(f"{k} {v}" for k, v in sorted(g["versions"].items())),
        f"- design: {'balanced' if d['balanced'] else 'not balanced'} over {d['categories_in_catalog']} categories; "
        f"equal count per category: {'yes' if d['equal_count_per_category'] else 'no'}",
        f"- category list: `{cats['file']}` (official: {str(cats['official']).lower()}); official release: "
        f"{card.get('official_release', {}).get('url', OFFICIAL_RELEASE_URL)}",
        f"- objects: `{d['object_source']}`"
        + (f"; {len(d['stand_in_categories'])} categories shown by procedural stand-in shapes (the category is a "
           "label, not what the shape depicts)" if d["stand_in_categories"] else ""),
        f"- relative mask area: configured [{area['range_config'][0]:g}, {area['range_config'][1]:g}] "
        f"(at least {area['min_pixels']:g} px)"
        + (f", drawn from [{area['target_range'][0]:.3g}, {area['target_range'][1]:.3g}] (what the frames hold)"
           if area.get("target_range") else "")
        + f", achieved [{area['achieved_min']:.3g}, {area['achieved_max']:.3g}]; "
        f"object box at most {area['max_box_fraction']:g} of the image width and height"
        + (f" and {area['max_object_px']} px" if area.get("max_object_px") else "")
        + f" ({area.get('images_limited_by_box', 0)} images moved back to meet it, below their drawn area)",
        f"- resolution: long side configured {res['long_side_range_config'][0]}..{res['long_side_range_config'][1]}"
        f" px; width {res['width'][0]}..{res['width'][1]}, height {res['height'][0]}..{res['height'][1]}",
        f"- rendering: Cycles {card['rendering']['samples']} spp, denoise {card['rendering']['denoise']}, device "
        f"{card['rendering']['device']} (used: {', '.join(card['rendering']['devices_used'])}), ground plane "
        f"{'on' if card['rendering']['ground_plane'] else 'off'} "
        f"({card['rendering']['images_with_ground_plane']} images with a visible plane)",
        "", "## Images per category", "", "```",
    ]
    lines += [f"{c:<28} {n}" for c, n in d["images_per_category"].items()]
    lines += ["```", "", "## Relative mask area (achieved, mask / image pixels)", "", "```"]
    lines += _text_hist(area["histogram"])
    if area.get("distribution"):
        lo, hi = area["target_range"]
        lines += ["```", "", f"Achieved and drawn against the target, log-uniform on [{lo:.3g}, {hi:.3g}] "
                  "(counts; % of images):", "", "| decade | achieved | drawn | target | achieved % | target % |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['bin']} | {r['achieved']} | {r['drawn']} | {r['target']:.1f} | {r['achieved_pct']:.1f} | "
                  f"{r['target_pct']:.1f} |" for r in area["distribution"]]
        lines += ["", "## Long image side (pixels)", "", "```"]
    else:
        lines += ["```", "", "## Long image side (pixels)", "", "```"]
    lines += _text_hist(res["long_side_histogram"])
    lines += ["```", "", "## Objects", "", f"Source `{card['objects']['source']}`; licences: "
              + ", ".join(f"{k} ({v})" for k, v in card["objects"]["licenses"].items()), "",
              "| uid | name | category | licence | author | page | images |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {o['uid']} | {o['name']} | {o['category']}{' (stand-in)' if o['stand_in'] else ''} | "
              f"{o['license']} | {o.get('author') or '-'} | {o.get('url') or '-'} | {o['images']} |"
              for o in card["objects"]["used"][:max_rows]]
    lines += _more(card["objects"]["used"], max_rows)
    if card["objects"]["failed_downloads"]:
        lines += ["", f"Failed downloads (never drawn again): {', '.join(sorted(card['objects']['failed_downloads']))}"]
    lines += ["", "## HDRI backgrounds", "", f"Source `{card['hdris']['source']}`; licences: "
              + ", ".join(f"{k} ({v})" for k, v in card["hdris"]["licenses"].items()), "",
              "| name | author | licence | source | images |", "|---|---|---|---|---|"]
    lines += [f"| {h['name']} | {h['author'] or '-'} | {h['license']} | {h['source'] or '-'} | {h['images']} |"
              for h in card["hdris"]["used"][:max_rows]]
    lines += _more(card["hdris"]["used"], max_rows)
    lines += ["", "## Parameters", "", "```"] + [f"{k} = {json.dumps(v)}" for k, v in sorted(cfg.items())]
    lines += ["```", ""]
    return "\n".join(lines)


def _more(rows: list, max_rows: int | None) -> list[str]:
    if max_rows and len(rows) > max_rows:
        return [f"| ... {len(rows) - max_rows} more rows in {CARD_MD} |"]
    return []


def write_card(out: str | Path) -> tuple[Path, Path]:
    """Build the card of ``out`` and write ``card.json`` and ``DATASET_CARD.md`` there (atomically)."""
    out = Path(out)
    card = build_card(out)
    sh.write_json_atomic(out / CARD_JSON, card)
    md = out / CARD_MD
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(card_markdown(card))
    tmp.replace(md)
    return out / CARD_JSON, md


def read_card(path: str | Path) -> dict[str, Any] | None:
    """The card next to a dataset: ``path/card.json`` for a run directory, or beside a shard file; None if absent."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return sh.read_json(folder / CARD_JSON)
