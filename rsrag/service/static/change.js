// Change view: two dates of the served series side by side, the change map over the later one
// (opacity slider), and the changed regions with areas, before -> after and a sentence.
// Loaded after app.js; shows itself only when the index holds at least two dated scenes.
(function () {
  const el = (id) => document.getElementById(id);

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text;
    return o;
  }

  async function compare() {
    const before = el("change-before").value, after = el("change-after").value;
    const list = el("change-regions");
    list.textContent = "";
    el("change-sentence").textContent = "comparing ...";
    const res = await fetch("/change", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ before, after }) });
    const body = await res.json();
    if (!res.ok) { el("change-sentence").textContent = (body.error && body.error.message) || "error"; return; }
    const dates = window.changeDates || [];
    const img = (d) => (dates.find((x) => x.date === d) || {}).image_url || "";
    el("change-img-before").src = img(before);
    el("change-img-after").src = img(after);
    el("change-img-overlay").src = `/change/overlay.png?before=${encodeURIComponent(before)}&after=${encodeURIComponent(after)}`;
    el("change-sentence").textContent = `${before} -> ${after}: ${body.sentence}`;
    for (const r of body.regions) {
      const li = document.createElement("li");
      const area = r.area_ha === null ? "" : `${r.area_ha.toFixed(2)} ha, `;
      li.textContent = `${r.rank}. ${area}${r.transition} (${r.position}, score ${r.score.toFixed(2)}): ${r.sentence}`;
      list.appendChild(li);
    }
  }

  async function init() {
    let body;
    try { body = await (await fetch("/change/dates")).json(); } catch (err) { return; }
    const dates = (body && body.dates) || [];
    if (dates.length < 2) { return; }
    window.changeDates = dates;
    for (const d of dates) {
      el("change-before").appendChild(option(d.date, d.date));
      el("change-after").appendChild(option(d.date, d.date));
    }
    el("change-after").value = dates[dates.length - 1].date;
    el("change-opacity").addEventListener("input", (e) => { el("change-img-overlay").style.opacity = e.target.value; });
    el("change-btn").addEventListener("click", compare);
    el("change-section").hidden = false;
  }

  init();
})();
