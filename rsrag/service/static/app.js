// rsrag web page: text / image search and grounded questions against the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);

function show(el, on) { el.hidden = !on; }

function setError(message) {
  $("error").textContent = message || "";
  show($("error"), Boolean(message));
}

async function call(url, options) {
  setError("");
  $("busy").textContent = "working...";
  try {
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    }
    return body;
  } finally {
    $("busy").textContent = "";
  }
}

function card(hit) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.id = hit.id;
  const img = document.createElement("img");
  img.src = hit.image_url;
  img.alt = hit.label || hit.id;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = typeof hit.score === "number" ? hit.score.toFixed(4) : "";
  if (hit.match) {  // the calibrated text-image match level
    const badge = document.createElement("span");
    badge.className = `match match-${hit.match}`;
    badge.textContent = hit.match;
    score.append(" ", badge);
  }
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = hit.label || hit.id;
  const caption = document.createElement("div");
  caption.className = "caption";
  caption.textContent = (hit.captions && hit.captions[0]) || "";
  meta.append(score, label, caption);
  div.append(img, meta);
  return div;
}

function showHits(hits, what) {
  const grid = $("results");
  grid.replaceChildren(...hits.map(card));
  $("summary").textContent = `${hits.length} results for ${what}`;
  drawFootprints(hits);
}

// ---- the map (scene indexes): imagery overlay, footprints of hits, click for similar, area filter ----
const geo = { map: null, overlay: null, scenes: [], footprints: null, area: null, areaLayer: null, heat: null };

function placeFields() {
  return geo.area ? { bbox: geo.area } : {};
}

function scenesAt(date) {
  return geo.scenes.filter((s) => (s.datetime || "") === date);
}

function showScene(date) {
  if (geo.overlay) { geo.overlay.remove(); }
  const layers = scenesAt(date).map((s) => {
    const b = s.overlay_bounds || [s.bbox[1], s.bbox[0], s.bbox[3], s.bbox[2]];  // south, west, north, east
    return L.imageOverlay(s.image_url, [[b[0], b[1]], [b[2], b[3]]],
      { opacity: Number($("opacity").value), className: "scene-overlay" });
  });
  geo.overlay = L.layerGroup(layers).addTo(geo.map);
}

function footprintOf(hit) {
  const m = hit.metadata || {};
  if (m.minx === undefined || m.minx === null) { return null; }
  return m.minx <= m.maxx ? [[m.miny, m.minx], [m.maxy, m.maxx]] : null;
}

function drawFootprints(hits) {
  if (!geo.map) { return; }
  if (geo.footprints) { geo.footprints.remove(); }
  geo.footprints = L.layerGroup().addTo(geo.map);
  const all = [];
  hits.forEach((hit) => {
    const box = footprintOf(hit);
    if (!box) { return; }
    const shape = L.rectangle(box, { color: "#d33", weight: 2, fillOpacity: 0.08, className: "footprint" });
    shape.bindTooltip(`${hit.id} ${typeof hit.score === "number" ? hit.score.toFixed(3) : ""}`);
    shape.on("click", () => searchLike(hit.id));
    shape.addTo(geo.footprints);
    all.push(...box);
  });
  if (all.length && !geo.area) { geo.map.fitBounds(all, { maxZoom: 16, padding: [20, 20] }); }
}

async function searchLike(id) {
  try {
    const body = await call("/search/like", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id, k: 24, ...placeFields() }),
    });
    showHits(body.hits, `chips like ${id}`);
    const first = document.querySelector(`#results .card[data-id="${CSS.escape(id)}"]`);
    if (first) { first.classList.add("selected"); }
  } catch (err) { setError(err.message); }
}

function setArea(bounds) {
  if (geo.areaLayer) { geo.areaLayer.remove(); geo.areaLayer = null; }
  geo.area = bounds ? [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()] : null;
  if (bounds) {
    geo.areaLayer = L.rectangle(bounds, { color: "#36c", weight: 2, fill: false, dashArray: "4", className: "area" })
      .addTo(geo.map);
  }
  $("area").textContent = geo.area ? `area ${geo.area.map((v) => v.toFixed(4)).join(", ")}` : "";
  show($("clear-area"), Boolean(geo.area));
}

function enableAreaDrawing(map) {
  // shift + drag draws a rectangle (Leaflet's own shift-drag zoom is switched off for it)
  let start = null;
  let shape = null;
  map.boxZoom.disable();
  map.on("mousedown", (e) => {
    if (!e.originalEvent.shiftKey) { return; }
    map.dragging.disable();
    start = e.latlng;
    shape = L.rectangle([start, start], { color: "#36c", weight: 1, dashArray: "4" }).addTo(map);
  });
  map.on("mousemove", (e) => { if (start) { shape.setBounds([start, e.latlng]); } });
  map.on("mouseup", (e) => {
    if (!start) { return; }
    const bounds = L.latLngBounds(start, e.latlng);
    shape.remove();
    start = null;
    map.dragging.enable();
    if (bounds.getNorth() > bounds.getSouth() && bounds.getEast() > bounds.getWest()) { setArea(bounds); }
  });
}

async function initMap() {
  if (!window.L) { return; }  // the map library was not installed (make setup copies it)
  let body;
  try { body = await (await fetch("/scenes")).json(); } catch (err) { return; }
  if (!body.scenes || !body.scenes.length) { return; }
  geo.scenes = body.scenes;
  show($("map-section"), true);
  const map = L.map("map", { zoomSnap: 0.25 });
  geo.map = map;
  const tiles = new URLSearchParams(window.location.search).get("tiles") || body.tile_url;
  if (tiles) { L.tileLayer(tiles, { maxZoom: 19 }).addTo(map); }  // optional basemap; the imagery is the map otherwise
  const dates = [...new Set(geo.scenes.map((s) => s.datetime || ""))];
  $("scene-date").replaceChildren(...dates.map((d) => {
    const option = document.createElement("option");
    option.value = d;
    option.textContent = d ? d.slice(0, 10) : "(no date)";
    return option;
  }));
  $("scene-date").value = dates[dates.length - 1];
  const all = geo.scenes.map((s) => [[s.bbox[1], s.bbox[0]], [s.bbox[3], s.bbox[2]]]).flat();
  map.fitBounds(all);
  showScene($("scene-date").value);
  $("scene-date").addEventListener("change", () => showScene($("scene-date").value));
  $("opacity").addEventListener("input", () => {
    if (geo.overlay) { geo.overlay.eachLayer((l) => l.setOpacity(Number($("opacity").value))); }
  });
  $("clear-area").addEventListener("click", () => setArea(null));
  $("localize-btn").addEventListener("click", localizeScene);
  $("heat-opacity").addEventListener("input", () => {
    if (geo.heat) { geo.heat.eachLayer((l) => { if (l.setOpacity) { l.setOpacity(Number($("heat-opacity").value)); } }); }
  });
  $("scene-date").addEventListener("change", clearHeat);
  enableAreaDrawing(map);
}

// ---- semantic localization: a heatmap of the query over the scene shown, and its top regions ----
function clearHeat() {
  if (geo.heat) { geo.heat.remove(); geo.heat = null; }
  $("regions").replaceChildren();
}

async function localizeScene() {
  const query = $("query").value.trim();
  if (!query) { setError("type what to localize in the search box"); return; }
  const scene = scenesAt($("scene-date").value)[0];
  if (!scene) { setError("no scene is shown"); return; }
  $("localize-status").textContent = "localizing...";
  try {
    const body = await call("/localize", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ scene: scene.scene, query, top: 10 }),
    });
    clearHeat();
    const b = body.overlay_bounds;
    const heat = L.imageOverlay(`data:image/png;base64,${body.overlay_png}`, [[b[0], b[1]], [b[2], b[3]]],
      { opacity: Number($("heat-opacity").value), className: "heat-overlay" });
    const outlines = L.geoJSON(body.regions, { style: { color: "#00e5ff", weight: 2, fill: false, className: "heat-region" } });
    geo.heat = L.layerGroup([heat, outlines]).addTo(geo.map);
    $("localize-status").textContent = `"${query}" in ${scene.scene}: ${body.match ? "found" : "no match"} (${body.took_ms} ms)`;
    $("localize-status").title = body.message;
    $("regions").replaceChildren(...body.regions.features.map((f) => {
      const item = document.createElement("li");
      const p = f.properties;
      const area = p.area_m2 != null ? `${(p.area_m2 / 10000).toFixed(2)} ha` : `${p.cells} cells`;
      item.textContent = `score ${p.score.toFixed(3)} (mean ${p.mean.toFixed(3)}), ${area}`;
      item.className = "region";
      item.addEventListener("click", () => geo.map.fitBounds(L.geoJSON(f).getBounds()));
      return item;
    }));
    if (!body.match) {
      const item = document.createElement("li");
      item.textContent = body.message;
      item.className = "muted";
      $("regions").replaceChildren(item);
    }
  } catch (err) { $("localize-status").textContent = ""; setError(err.message); }
}

function imageFile() {
  const files = $("image").files;
  return files && files.length ? files[0] : null;
}

async function searchText(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) { setError("type something to search for"); return; }
  try {
    const body = await call("/search", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, k: 24, mode: $("mode").value, ...placeFields() }),
    });
    showHits(body.hits, `"${query}" (${body.mode}, ${body.took_ms} ms)`);
    if (body.match === "none") {
      $("summary").textContent += ": nothing in this library looks like that (every hit is a weak or no match)";
    }
  } catch (err) { setError(err.message); }
}

async function searchImage() {
  const file = imageFile();
  if (!file) { setError("choose an image first"); return; }
  const form = new FormData();
  form.append("file", file);
  form.append("k", "24");
  try {
    const body = await call("/search/image", { method: "POST", body: form });
    showHits(body.hits, `image ${file.name}`);
  } catch (err) { setError(err.message); }
}

function citationLabel(citation) {
  if (citation === null || typeof citation !== "object") { return String(citation); }
  const n = citation.n ? `[${citation.n}]` : "";
  const source = citation.record_id || citation.id || "";
  const name = citation.name && citation.name !== source ? `(${citation.name})` : "";
  return [n, source, name].filter(Boolean).join(" ");
}

async function ask() {
  const question = $("query").value.trim();
  const file = imageFile();
  if (!question && !file) { setError("type a question or choose an image"); return; }
  const form = new FormData();
  if (question) { form.append("question", question); }
  if (file) { form.append("file", file); }
  try {
    const body = await call("/qa", { method: "POST", body: form });
    $("answer-text").textContent = body.answer;
    const list = $("citations");
    list.replaceChildren(...(body.citations || []).map((c) => {
      const li = document.createElement("li");
      li.className = "citation";
      li.textContent = citationLabel(c);
      return li;
    }));
    show($("answer"), true);
    // evidence items become cards: their source item's thumbnail, label and text
    const evidence = (body.evidence || []).filter((e) => e && e.image_url).map((e) => ({
      id: e.record_id || e.id, image_url: e.image_url, score: e.score, label: e.name || e.category,
      captions: e.text ? [e.text] : [],
    }));
    showHits(evidence, "the evidence");
  } catch (err) { setError(err.message); show($("answer"), false); }
}

initMap();
$("search-form").addEventListener("submit", searchText);
$("image-search-btn").addEventListener("click", searchImage);
$("ask-btn").addEventListener("click", ask);
fetch("/health").then((r) => r.json()).then((h) => {
  $("status").textContent = `${h.index}: ${h.records} items`;
}).catch(() => {});
