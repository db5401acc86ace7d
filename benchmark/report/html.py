"""One self-contained HTML page: inline CSS, tables as HTML, figures as base64-embedded PNGs; nothing external."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.report.tables import Table, to_html

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; font-size: 0.9rem; }
.warning { background: #fff3f3; border-left: 5px solid #b00020; padding: 0.6rem 1rem; margin: 0.8rem 0;
           white-space: pre-wrap; }
.tablewrap { overflow-x: auto; }
table.report { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
table.report caption { text-align: left; font-weight: 600; padding-bottom: 0.4rem; }
table.report th, table.report td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; }
table.report td { max-width: 16rem; overflow-wrap: break-word; }
table.report th { background: #f4f4f4; text-align: center; max-width: 11rem; }
table.report td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; max-width: none; }
table.report tr.flagged td { background: #fff3f3; color: #8a0018; }
ul.notes { font-size: 0.8rem; color: #444; margin-top: 0; }
figure { margin: 1rem 0 2rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; }
p.note { background: #f7f7f7; border-left: 4px solid #999; padding: 0.5rem 0.8rem; }
pre { background: #f7f7f7; padding: 0.6rem; font-size: 0.8rem; overflow-x: auto; }
"""


@dataclass
class FigureRef:
    """A figure for the page: its PNG (embedded) and a caption."""

    png: Path
    caption: str


@dataclass
class Section:
    """A page section: heading, items (:class:`Table`, :class:`FigureRef` or a ``str`` paragraph) and the
    ``id`` of its ``<section>`` element (derived from the heading when not given)."""

    heading: str
    items: list
    anchor: str | None = None

    @property
    def id(self) -> str:
        return self.anchor or re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_page(title: str, meta_lines: list[str], warnings: list[str], sections: list[Section],
                params: dict) -> str:
    """The page: each :class:`Section` is a ``<section id=...>`` with an ``<h2>`` heading."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    out += [f'<p class="meta">{html.escape(line)}</p>' for line in meta_lines]
    out += [f'<div class="warning">{html.escape(w)}</div>' for w in warnings]
    for section in sections:
        out.append(f'<section id="{html.escape(section.id)}"><h2>{html.escape(section.heading)}</h2>')
        for item in section.items:
            if isinstance(item, Table):
                out.append(f'<div class="tablewrap">{to_html(item)}</div>')
            elif isinstance(item, FigureRef):
                out.append(f'<figure><img src="{embed_png(item.png)}" alt="{html.escape(item.caption)}">'
                           f"<figcaption>{html.escape(item.caption)}</figcaption></figure>")
            else:
                out.append(f'<p class="note">{html.escape(str(item))}</p>')
        out.append("</section>")
    out.append('<section id="protocol"><h2>Evaluation protocol (EvalParams)</h2>')
    out.append(f"<pre>{html.escape(json.dumps(params, indent=2))}</pre></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
