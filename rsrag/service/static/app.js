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
      body: JSON.stringify({ query, k: 24, mode: $("mode").value }),
    });
    showHits(body.hits, `"${query}" (${body.mode}, ${body.took_ms} ms)`);
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

$("search-form").addEventListener("submit", searchText);
$("image-search-btn").addEventListener("click", searchImage);
$("ask-btn").addEventListener("click", ask);
fetch("/health").then((r) => r.json()).then((h) => {
  $("status").textContent = `${h.index}: ${h.records} items`;
}).catch(() => {});
