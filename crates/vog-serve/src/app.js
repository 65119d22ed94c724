// vog review UI: draws the example's input and heat map from /api/tensor, records decisions with
// the keyboard. Everything from the server is inserted with textContent, never as markup.
"use strict";
const DECISIONS = ["ok", "mislabeled", "ambiguous", "corrupt", "out-of-distribution"];

function enc(path) { return path.split("/").map(encodeURIComponent).join("/"); }

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// [H,W] / [C,H,W] / [H,W,C] → {h, w, c, at(ch, y, x)}
function imageOf(t) {
  const s = t.shape, d = t.data;
  if (s.length === 2) return { h: s[0], w: s[1], c: 1, at: (k, y, x) => d[y * s[1] + x] };
  if (s[0] === 1 || s[0] === 3) return { h: s[1], w: s[2], c: s[0], at: (k, y, x) => d[(k * s[1] + y) * s[2] + x] };
  return { h: s[0], w: s[1], c: s[2], at: (k, y, x) => d[(y * s[1] + x) * s[2] + k] };
}

function drawInput(canvas, t, gray) {
  const im = imageOf(t);
  canvas.width = im.w; canvas.height = im.h;
  let lo = Infinity, hi = -Infinity;
  for (const v of t.data) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const span = hi > lo ? hi - lo : 1;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(im.w, im.h);
  for (let y = 0; y < im.h; y++) for (let x = 0; x < im.w; x++) {
    const o = 4 * (y * im.w + x);
    const rgb = [0, 1, 2].map((k) => (im.at(im.c === 3 ? k : 0, y, x) - lo) / span);
    // Under a heat map the picture is drawn in gray, so the map's colours stand out.
    const g = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    for (let k = 0; k < 3; k++) img.data[o + k] = Math.round(255 * (gray ? g : rgb[k]));
    img.data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// Black → red → yellow → white.
function hot(t) {
  const c = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));
  return [c(3 * t), c(3 * t - 1), c(3 * t - 2)];
}

// Mean absolute value over channels, scaled to the maximum. `opacity` null: the map alone, opaque.
function drawHeat(canvas, t, opacity) {
  const im = imageOf(t);
  canvas.width = im.w; canvas.height = im.h;
  const v = new Float32Array(im.w * im.h);
  let hi = 0;
  for (let y = 0; y < im.h; y++) for (let x = 0; x < im.w; x++) {
    let s = 0;
    for (let k = 0; k < im.c; k++) s += Math.abs(im.at(k, y, x));
    v[y * im.w + x] = s / im.c; if (v[y * im.w + x] > hi) hi = v[y * im.w + x];
  }
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(im.w, im.h);
  for (let i = 0; i < v.length; i++) {
    const a = hi > 0 ? v[i] / hi : 0, [r, g, b] = hot(a);
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b;
    img.data[4 * i + 3] = opacity === null ? 255 : Math.round(255 * opacity * Math.sqrt(a));
  }
  ctx.putImageData(img, 0, 0);
}

function drawTable(el, t, map) {
  const table = document.createElement("table");
  const head = table.insertRow();
  for (const h of ["feature", "value"].concat(map ? ["VoG map"] : [])) {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
  }
  t.data.forEach((v, i) => {
    const row = table.insertRow();
    row.insertCell().textContent = t.features ? t.features[i] : String(i);
    row.insertCell().textContent = v.toPrecision(5);
    if (map) row.insertCell().textContent = map.data[i] !== undefined ? map.data[i].toPrecision(3) : "";
  });
  el.replaceChildren(table);
}

async function setupView() {
  const view = document.getElementById("view");
  if (!view) return;
  const key = view.dataset.key, status = document.getElementById("view-status");
  const overlay = document.getElementById("overlay"), opacity = document.getElementById("opacity");
  const maps = {};
  let input;
  try { input = await getJson("/api/tensor/input/" + enc(key)); }
  catch (e) { status.textContent = "input: " + e.message; }
  const load = async (what) => {
    if (what === "none") return null;
    if (!(what in maps)) {
      try { maps[what] = await getJson("/api/tensor/" + what + "/" + enc(key)); }
      catch (e) { maps[what] = null; status.textContent = what + ": " + e.message; }
    }
    return maps[what];
  };
  const render = async () => {
    const heat = await load(overlay.value);
    if (input && input.layout === "image") {
      const showHeat = heat && heat.layout === "image";
      drawInput(document.getElementById("input-canvas"), input, showHeat);
      const hc = document.getElementById("heat-canvas"), alone = document.getElementById("heat-alone");
      if (showHeat) {
        drawHeat(hc, heat, opacity.value / 100);
        drawHeat(alone, heat, null);
        alone.style.display = "";
      } else {
        hc.getContext("2d").clearRect(0, 0, hc.width, hc.height);
        alone.style.display = "none";
      }
      view.dataset.drawn = showHeat ? "input+" + overlay.value : "input";
    } else if (input) {
      document.querySelector(".pictures").style.display = "none";
      drawTable(document.getElementById("table-view"), input, heat);
      view.dataset.drawn = "table";
    }
  };
  overlay.addEventListener("change", render);
  opacity.addEventListener("input", render);
  await render();
}

function setupDecisions() {
  const panel = document.getElementById("decide");
  if (!panel) return;
  const key = panel.dataset.key, queue = panel.dataset.queue, status = document.getElementById("decide-status");
  const label = document.getElementById("new-label"), note = document.getElementById("note");
  // In queue mode the next item is claimed (a POST) before the queue page shows it.
  const after = async () => {
    if (!queue) { location.href = location.pathname + "?decided=1"; return; }
    try { await post("/api/claim", { queue: queue, reviewer: panel.dataset.reviewer }); }
    catch (e) { /* the queue page offers the next item itself */ }
    location.href = "/queue/" + encodeURIComponent(queue);
  };
  const reviewer = () => {
    if (!panel.dataset.reviewer) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      return null;
    }
    return panel.dataset.reviewer;
  };
  const post = async (url, body) => {
    const r = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  };
  let busy = false;
  const decide = async (decision, newLabel) => {
    const who = reviewer();
    if (!who || busy) return;
    busy = true;
    status.textContent = "saving " + decision + "…";
    try {
      const body = { example: key, reviewer: who, decision: decision, note: note.value || null };
      if (newLabel !== undefined) body.label = newLabel;
      const rec = await post("/api/decision", body);
      status.textContent = "saved #" + rec.seq;
      await after();
    } catch (e) { status.textContent = "not saved: " + e.message; busy = false; }
  };
  const relabel = () => {
    const v = parseInt(label.value, 10);
    if (Number.isNaN(v) || v < 0) { status.textContent = "type the new label first"; label.focus(); return; }
    decide("mislabeled", v);
  };
  const skip = async () => {
    const who = reviewer();
    if (!who || !queue || busy) return;
    busy = true;
    try { await post("/api/skip", { queue: queue, reviewer: who, example: key }); await after(); }
    catch (e) { status.textContent = "not skipped: " + e.message; busy = false; }
  };
  panel.querySelectorAll("button.decision").forEach((b) => b.addEventListener("click", () => decide(b.dataset.decision)));
  document.getElementById("relabel").addEventListener("click", relabel);
  const skipButton = document.getElementById("skip");
  if (skipButton) skipButton.addEventListener("click", skip);
  label.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); relabel(); } });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    const n = parseInt(ev.key, 10);
    if (n >= 1 && n <= DECISIONS.length) { ev.preventDefault(); decide(DECISIONS[n - 1]); }
    else if (ev.key === "l") { ev.preventDefault(); label.focus(); label.select(); }
    else if (ev.key === "n") { ev.preventDefault(); note.focus(); }
    else if (ev.key === "s" && queue) { ev.preventDefault(); skip(); }
  });
}

document.addEventListener("keydown", (ev) => {
  const q = document.getElementById("q");
  if (ev.key === "/" && q && document.activeElement !== q) { ev.preventDefault(); q.focus(); }
});
setupView();
setupDecisions();
