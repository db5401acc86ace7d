// flipbench view: every string from the data reaches the page through textContent / option.text, never innerHTML.
"use strict";

const PAGE = 100;
const state = { meta: null, offset: 0, total: 0, key: null, zoom: 1, pan: [0, 0] };
const $ = (id) => document.getElementById(id);
const FILTERS = ["dataset", "category", "size_bin", "coco_size", "prompt", "label", "iou_min", "iou_max", "sort",
                 "a", "b"];

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

// a picture the server refused (a record that does not fit its dataset, a damaged image): show its one-line reason
function explainFailure(img) {
  img.onerror = async () => {
    try {
      const response = await fetch(img.src);
      const body = await response.json();
      showMessage(body.error || `the picture could not be rendered (HTTP ${response.status})`);
    } catch (err) {
      showMessage(`the picture could not be rendered: ${img.src}`);
    }
  };
  return img;
}

async function api(path) {
  const response = await fetch(path);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || body.detail || `HTTP ${response.status}`);
  return body;
}

function fillSelect(select, values, keepFirst = true) {
  while (select.options.length > (keepFirst ? 1 : 0)) select.remove(keepFirst ? 1 : 0);
  for (const v of values) select.add(new Option(v, v));
}

function fmt(v, digits = 1) {
  return v === null || v === undefined ? "—" : Number(v).toFixed(digits);
}

function query() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const v = $(`f-${name}`).value;
    if (v !== "") params.set(name, v);
  }
  if ($("f-descending").checked) params.set("descending", "true");
  return params;
}

function pictureParams(extra) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(extra)) if (v) p.set(k, v);
  return p.toString();
}

async function loadGrid() {
  const params = query();
  params.set("offset", state.offset);
  params.set("limit", PAGE);
  try {
    const data = await api(`/api/objects?${params}`);
    showMessage("");
    state.total = data.total;
    $("count").textContent = `${data.total} object${data.total === 1 ? "" : "s"}`;
    $("page").textContent = data.total ? `${data.offset + 1}–${data.offset + data.items.length}` : "";
    const grid = $("grid");
    grid.replaceChildren();
    const label = $("f-label").value, a = $("f-a").value, b = $("f-b").value;
    const diff = $("f-sort").value === "diff" && a && b;
    for (const item of data.items) {
      const card = el("figure", null, "card");
      card.dataset.key = item.key;
      const img = el("img");
      img.loading = "lazy";
      img.alt = `object ${item.key}`;
      img.src = `/api/crop/${item.key}.jpg?` + pictureParams(diff ? { a, b } : { label });
      card.append(img);
      const cap = el("figcaption");
      cap.append(el("span", item.category, "cat"));
      for (const [lab, v] of Object.entries(item.iou)) cap.append(el("span", `${lab}: ${fmt(v === null ? null : v * 100)}`, "iou"));
      cap.append(el("span", `${item.mask_pixels} px`, "px"));
      card.append(cap);
      card.addEventListener("click", () => openObject(item.key));
      grid.append(card);
    }
  } catch (err) {
    showMessage(err.message);
  }
}

function rowOptions(select, rows, blank) {
  select.replaceChildren();
  if (blank !== undefined) select.add(new Option(blank, ""));
  for (const r of rows) select.add(new Option(r.label, r.label));
}

async function openObject(key) {
  state.key = key;
  state.zoom = 1;
  state.pan = [0, 0];
  try {
    const data = await api(`/api/object/${key}`);
    const o = data.object;
    $("object-title").textContent = `${o.category} — ${o.source_id} (dataset ${o.dataset}, image ${o.image_index}, instance ${o.instance_index})`;
    const rows = data.rows.map((r) => ({ label: r.label }));
    for (const id of ["o-label", "o-a", "o-b"]) rowOptions($(id), rows);
    if (rows.length > 1) $("o-b").selectedIndex = 1;
    const table = $("figures");
    table.replaceChildren();
    const head = el("tr");
    for (const h of ["row", "IoU %", "predicted px", "prompt", "tokens", "time ms", "encoder ms", "decoder ms", "IoU after clicks 1/3/5"]) head.append(el("th", h));
    table.append(head);
    for (const r of data.rows) {
      const tr = el("tr");
      const clicks = r.click_ious ? [0, 2, 4].map((k) => fmt(r.click_ious[k] * 100)).join(" / ") : "—";
      for (const v of [r.label, r.iou === null ? (r.gt_empty ? "empty GT" : "—") : fmt(r.iou * 100, 2), r.pred_pixels,
                       r.selection ? `${r.prompt}, ${r.selection}-selected` : r.prompt, r.input_tokens ?? "—",
                       fmt(r.t_total_ms), fmt(r.t_encoder_ms), fmt(r.t_decoder_ms), clicks]) tr.append(el("td", v));
      table.append(tr);
    }
    const facts = el("tr");
    facts.append(el("td", `ground truth: ${o.mask_pixels} px, ${(o.relative_mask_size * 100).toPrecision(3)} % of the ${o.image_width}x${o.image_height} image; size bin ${o.size_bin}, COCO ${o.coco_size}`));
    facts.firstChild.colSpan = 9;
    table.append(facts);
    const side = $("side");
    side.replaceChildren();
    for (const r of [{ label: "" }, ...data.rows]) {
      const fig = el("figure", null, "card small");
      const img = explainFailure(el("img"));
      img.src = `/api/crop/${key}.jpg?` + pictureParams({ label: r.label });
      img.alt = r.label || "ground truth";
      fig.append(img, el("figcaption", r.label || "ground truth"));
      side.append(fig);
    }
    $("object").hidden = false;
    showFull();
  } catch (err) {
    showMessage(err.message);
  }
}

function showFull() {
  const mode = $("o-mode").value;
  const extra = mode === "row" ? { label: $("o-label").value } : mode === "diff" ? { a: $("o-a").value, b: $("o-b").value } : {};
  const img = explainFailure($("full"));
  img.src = `/api/image/${state.key}.jpg?` + pictureParams(extra);
  const legend = $("legend");
  legend.replaceChildren();
  const items = mode === "diff" ? [["only A", "#ff8c00"], ["only B", "#2878ff"], ["both", "#ffffff"], ["ground truth", "#28dc3c"]]
    : mode === "row" ? [["row", "#2878ff"], ["ground truth", "#28dc3c"]] : [["ground truth", "#28dc3c"]];
  for (const [name, colour] of items) {
    const swatch = el("span", name, "swatch");
    swatch.style.borderLeftColor = colour;
    legend.append(swatch);
  }
  applyZoom();
}

function applyZoom() {
  $("full").style.transform = `translate(${state.pan[0]}px, ${state.pan[1]}px) scale(${state.zoom})`;
}

async function loadTable(kind) {
  const dataset = $("f-dataset").value;
  const params = new URLSearchParams();
  if (dataset) params.set("dataset", dataset);
  if (kind === "sizes") params.set("by", $("size-by").value);
  try {
    const data = await api(`/api/${kind}?${params}`);
    const table = $(kind);
    table.replaceChildren();
    const head = el("tr");
    const columns = [kind === "sizes" ? "size" : "category", "objects", ...data.labels];
    columns.forEach((c, i) => {
      const th = el("th", c);
      th.addEventListener("click", () => sortTable(table, i));
      head.append(th);
    });
    table.append(head);
    for (const r of data.rows) {
      const tr = el("tr");
      const link = el("a", r.group);
      link.href = "#";
      link.addEventListener("click", (e) => {
        e.preventDefault();
        const target = kind === "sizes" ? (data.rows.length && $("size-by").value === "coco_size" ? "f-coco_size" : "f-size_bin") : "f-category";
        $(target).value = r.group;
        switchTab("grid");
        state.offset = 0;
        loadGrid();
      });
      const first = el("td");
      first.append(link);
      tr.append(first, el("td", r.objects));
      for (const lab of data.labels) {
        const td = el("td", r.iou[lab] === null ? "—" : `${fmt(r.iou[lab])} (n=${r.n[lab]})`);
        td.dataset.value = r.iou[lab] === null ? "" : r.iou[lab];
        tr.append(td);
      }
      table.append(tr);
    }
  } catch (err) {
    showMessage(err.message);
  }
}

function sortTable(table, column) {
  const rows = Array.from(table.rows).slice(1);
  const asc = table.dataset.sorted !== String(column);
  table.dataset.sorted = asc ? String(column) : "";
  const value = (tr) => {
    const cell = tr.cells[column];
    const v = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
    const n = parseFloat(v);
    return Number.isNaN(n) ? v : n;
  };
  rows.sort((x, y) => (value(x) > value(y) ? 1 : value(x) < value(y) ? -1 : 0) * (asc ? 1 : -1));
  for (const r of rows) table.append(r);
}

function switchTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `tab-${name}`;
  if (name === "categories" || name === "sizes") loadTable(name);
}

async function init() {
  try {
    const meta = await api("/api/meta");
    state.meta = meta;
    fillSelect($("f-dataset"), meta.datasets);
    fillSelect($("f-category"), meta.categories);
    fillSelect($("f-size_bin"), meta.size_bins);
    fillSelect($("f-coco_size"), meta.coco_sizes);
    fillSelect($("f-prompt"), meta.prompts);
    for (const id of ["f-label", "f-a", "f-b"]) fillSelect($(id), meta.rows.map((r) => r.label));
    const warnings = $("warnings");
    for (const w of meta.warnings) warnings.append(el("p", w, "warning"));
    const runs = $("runs");
    const head = el("tr");
    for (const h of ["run", "status", "protocol"]) head.append(el("th", h));
    runs.append(head);
    for (const r of meta.runs) {
      const tr = el("tr");
      for (const v of [r.path, r.status, r.protocol]) tr.append(el("td", v));
      runs.append(tr);
    }
  } catch (err) {
    showMessage(err.message);
    return;
  }
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => switchTab(b.dataset.tab));
  $("apply").addEventListener("click", () => { state.offset = 0; loadGrid(); });
  $("reset").addEventListener("click", () => {
    for (const name of FILTERS) $(`f-${name}`).value = name === "sort" ? "index" : "";
    $("f-descending").checked = false;
    state.offset = 0;
    loadGrid();
  });
  $("prev").addEventListener("click", () => { if (state.offset > 0) { state.offset = Math.max(0, state.offset - PAGE); loadGrid(); } });
  $("next").addEventListener("click", () => { if (state.offset + PAGE < state.total) { state.offset += PAGE; loadGrid(); } });
  $("close").addEventListener("click", () => { $("object").hidden = true; });
  for (const id of ["o-mode", "o-label", "o-a", "o-b"]) $(id).addEventListener("change", showFull);
  $("size-by").addEventListener("change", () => loadTable("sizes"));
  $("zoom-in").addEventListener("click", () => { state.zoom *= 1.5; applyZoom(); });
  $("zoom-out").addEventListener("click", () => { state.zoom /= 1.5; applyZoom(); });
  $("zoom-reset").addEventListener("click", () => { state.zoom = 1; state.pan = [0, 0]; applyZoom(); });
  const viewport = $("viewport");
  viewport.addEventListener("wheel", (e) => { e.preventDefault(); state.zoom *= e.deltaY < 0 ? 1.2 : 1 / 1.2; applyZoom(); });
  let drag = null;
  viewport.addEventListener("mousedown", (e) => { drag = [e.clientX - state.pan[0], e.clientY - state.pan[1]]; e.preventDefault(); });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (e) => { if (drag) { state.pan = [e.clientX - drag[0], e.clientY - drag[1]]; applyZoom(); } });
  loadGrid();
}

init();
