"""The dashboard's single page (HTML + CSS + JS, no external resources), served by :mod:`.dashboard`.

Every string from the wire goes into the page through ``textContent`` or ``dataset``, never as HTML.
Elements carry ``data-*`` attributes (cam, track, seq, au, value) so tests read exactly what is shown.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>auflow dashboard</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;background:#f4f5f7;color:#222}
h1{font-size:20px;margin:0 0 12px} #conn{font-size:13px;color:#666;margin-left:8px}
#cams{display:flex;flex-wrap:wrap;gap:14px}
.cam{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 12px;width:460px}
.cam h2{font-size:16px;margin:0 0 6px;word-break:break-all}
.stats{font-size:12px;color:#444;display:grid;grid-template-columns:repeat(3,1fr);gap:2px 10px;margin-bottom:6px}
.state-live{color:#1a7f37;font-weight:600} .state-ended{color:#888;font-weight:600}
.state-reconnecting,.state-connecting{color:#b26a00;font-weight:600} .gaps-bad{color:#c62828;font-weight:600}
.models{font-size:11px;color:#555;margin-bottom:4px} .model{margin-right:10px}
.model.untrained{color:#b26a00;font-weight:600}
.track{border-top:1px solid #eee;padding-top:6px;margin-top:6px}
.track h3{font-size:13px;margin:0 0 4px} .expr{font-weight:600}
.au{display:grid;grid-template-columns:44px 1fr 46px;align-items:center;font-size:11px;gap:4px;height:14px}
.au>span{overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.bar{background:#e6e6e6;height:9px;border-radius:2px;overflow:hidden} .fill{background:#3b6fd1;height:100%}
.fused{color:#555;font-weight:normal;font-size:12px} .fused.untrained{color:#b06000}
.au.unsupported{color:#999} .au.unsupported .bar{background:repeating-linear-gradient(45deg,#eee 0 3px,#fff 3px 6px)}
.value{text-align:right;font-variant-numeric:tabular-nums}
canvas.timeline{width:100%;height:14px;display:block;margin-top:4px;border:1px solid #eee}
.legend{font-size:10px;color:#555;margin-top:2px} .legend span{display:inline-block;margin-right:6px}
.legend i{display:inline-block;width:8px;height:8px;margin-right:2px;vertical-align:middle}
</style></head>
<body data-connected="0">
<h1>auflow dashboard <span id="conn">connecting…</span></h1>
<div id="cams"></div>
<script>
"use strict";
const COLOURS = {neutral:"#9e9e9e", happiness:"#f5b700", sadness:"#3b6fd1", surprise:"#19b5a5", fear:"#8e44ad",
                 disgust:"#5b8c2a", anger:"#d63a2f", contempt:"#a0522d"};
const HISTORY = 120;          // frames kept in each track's expression timeline
const TRACK_TTL_MS = 5000;    // a track not seen for this long is removed
const MAX_CAMS = 64;          // tiles kept; a new camera beyond this replaces the one silent the longest
const cams = new Map();       // cam -> {el, tracks: Map(track -> {...}), gaps, status, seen}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const fmt = (x, d) => (x === null || x === undefined || Number.isNaN(Number(x))) ? "–" : Number(x).toFixed(d);

function camTile(name) {
  let c = cams.get(name);
  if (c) { c.seen = Date.now(); return c; }
  if (cams.size >= MAX_CAMS) {
    let oldest = null;
    for (const [k, v] of cams) if (oldest === null || v.seen < cams.get(oldest).seen) oldest = k;
    cams.get(oldest).el.remove();
    cams.delete(oldest);
  }
  const tile = el("div", "cam");
  tile.dataset.cam = name;
  tile.appendChild(el("h2", "", name));
  const stats = el("div", "stats");
  const fields = {};
  for (const [k, label] of [["state","state"],["fps_in","fps in"],["fps_out","fps out"],["dropped","dropped"],
                            ["gaps","gaps"],["last_seq","last seq"]]) {
    const s = el("div", ""); s.appendChild(document.createTextNode(label + ": "));
    const v = el("span", "", "–"); v.dataset.field = k; s.appendChild(v); stats.appendChild(s); fields[k] = v;
  }
  tile.appendChild(stats);
  const models = el("div", "models"); models.dataset.field = "models"; tile.appendChild(models); fields.models = models;
  const tracks = el("div", "tracks"); tile.appendChild(tracks);
  const list = [...cams.keys(), name].sort();
  const box = document.getElementById("cams");
  box.insertBefore(tile, box.children[list.indexOf(name)] || null);
  c = {el: tile, fields, tracksEl: tracks, tracks: new Map(), gaps: 0, seen: Date.now()};
  fields.gaps.textContent = "0";
  cams.set(name, c);
  return c;
}

function trackBox(c, id) {
  let t = c.tracks.get(id);
  if (t) return t;
  const box = el("div", "track"); box.dataset.track = String(id);
  const h = el("h3", ""); h.appendChild(document.createTextNode(id < 0 ? "unconfirmed face " : `track ${id} `));
  const expr = el("span", "expr", "–"); expr.dataset.field = "expr"; h.appendChild(expr);
  // the fused expression of this person's latest window (temporal fusion), beside the per-frame one
  const fused = el("span", "fused", ""); fused.dataset.field = "fused"; h.appendChild(fused);
  box.appendChild(h);
  const aus = el("div", "aus"); box.appendChild(aus);
  const canvas = el("canvas", "timeline"); canvas.width = HISTORY * 3; canvas.height = 14; box.appendChild(canvas);
  const legend = el("div", "legend"); box.appendChild(legend);
  c.tracksEl.appendChild(box);
  t = {el: box, exprEl: expr, fusedEl: fused, ausEl: aus, bars: new Map(), canvas, legend, legendSeen: new Set(), history: [], seen: 0};
  c.tracks.set(id, t);
  return t;
}

function dominant(expr) {
  let best = null;
  for (const [k, v] of Object.entries(expr || {})) if (v !== null && (best === null || v > best[1])) best = [k, v];
  return best;
}

function drawTimeline(t) {
  const ctx = t.canvas.getContext("2d"), w = 3;
  ctx.clearRect(0, 0, t.canvas.width, t.canvas.height);
  t.history.forEach((label, i) => { ctx.fillStyle = COLOURS[label] || "#777"; ctx.fillRect(i * w, 0, w, 14); });
}

// which model made each output, and its kind: an untrained model's values mean nothing, so say so
function showModels(c, models) {
  const key = JSON.stringify(models || {});
  if (key === c.modelsKey) return;
  c.modelsKey = key;
  c.fields.models.replaceChildren();
  for (const [out, m] of Object.entries(models || {}).sort()) {
    const name = String(m && typeof m === "object" ? m.name : m), kind = String(m && typeof m === "object" ? m.kind : "");
    const s = el("span", kind === "untrained" ? "model untrained" : "model", `${out}: ${name} (${kind})`);
    s.dataset.output = out; s.dataset.name = name; s.dataset.kind = kind;
    if (kind === "untrained") s.title = "no trained weights: its values mean nothing";
    const dead = m && typeof m === "object" && Array.isArray(m.unsupported) ? m.unsupported.map(String) : [];
    if (dead.length) {  // labels this model cannot measure: their values are null, shown n/a
      s.dataset.unsupported = dead.join(",");
      s.title = `not measured by this model (null, not 0): ${dead.join(", ")}`;
    }
    c.fields.models.appendChild(s);
  }
}

function onWindow(h) {
  const c = camTile(h.cam);
  if (typeof h.track !== "number" || h.track < 0) return;
  const t = trackBox(c, h.track);
  const best = dominant(h.expr);
  const m = (h.models || {}).expr || {};
  const untrained = m.kind === "untrained";
  t.fusedEl.textContent = best ? ` · fused ${best[0]} ${fmt(best[1], 2)}${untrained ? " (untrained)" : ""}` : "";
  t.fusedEl.dataset.label = best ? best[0] : "";
  t.fusedEl.title = `fused over the window ending or centred at result ${h.at_seq} (${String(m.name || "")}, ${String(m.kind || "")})`;
  t.fusedEl.classList.toggle("untrained", untrained);
}

function onResult(h) {
  const c = camTile(h.cam);
  c.fields.last_seq.textContent = String(h.seq);
  showModels(c, h.models);
  const now = Date.now();
  for (const face of h.faces || []) {
    const t = trackBox(c, face.track);
    t.seen = now;
    t.el.dataset.seq = String(h.seq);
    t.el.dataset.frame = String(h.frame);
    const best = dominant(face.expr);
    t.exprEl.textContent = best ? `${best[0]} ${fmt(best[1], 2)}` : "–";
    t.exprEl.dataset.label = best ? best[0] : "";
    for (const [au, p] of Object.entries(face.au || {}).sort()) {
      let b = t.bars.get(au);
      if (!b) {
        const row = el("div", "au"); row.dataset.au = au; row.title = au;  // a long name is cut: hover shows it
        row.appendChild(el("span", "", au));
        const bar = el("div", "bar"), fill = el("div", "fill"); bar.appendChild(fill); row.appendChild(bar);
        const val = el("span", "value"); row.appendChild(val);
        t.ausEl.appendChild(row); b = {row, fill, val}; t.bars.set(au, b);
      }
      b.fill.style.width = `${Math.max(0, Math.min(1, Number(p) || 0)) * 100}%`;
      // null: the model cannot measure this AU (models.au.unsupported), which is not the same as 0
      b.val.textContent = p === null ? "n/a" : fmt(p, 4);
      b.row.title = p === null ? `${au}: not measured by this model` : au;
      b.row.classList.toggle("unsupported", p === null);
      b.row.dataset.value = p === null ? "" : String(p);
    }
    if (best) {
      t.history.push(best[0]);
      if (t.history.length > HISTORY) t.history.shift();
      if (!t.legendSeen.has(best[0])) {
        t.legendSeen.add(best[0]);
        const s = el("span", ""); const i = el("i", ""); i.style.background = COLOURS[best[0]] || "#777";
        s.appendChild(i); s.appendChild(document.createTextNode(best[0])); t.legend.appendChild(s);
      }
      drawTimeline(t);
    }
  }
  for (const [id, t] of c.tracks) if (now - t.seen > TRACK_TTL_MS) { t.el.remove(); c.tracks.delete(id); }
}

function onStatus(h) {
  const c = camTile(h.cam);
  c.fields.state.textContent = h.state;
  c.fields.state.className = "state-" + String(h.state).replace(/[^a-z]/g, "");
  c.fields.fps_in.textContent = fmt(h.fps_in, 1);
  c.fields.fps_out.textContent = fmt(h.fps_out, 1);
  c.fields.dropped.textContent = String(h.dropped);
}

function onMessage(ev) {
  let m;
  try { m = JSON.parse(ev.data); } catch (e) { return; }
  const h = m.h;
  if (!h || typeof h.cam !== "string") return;
  const c = camTile(h.cam);
  if (m.gap) { c.gaps += m.gap; c.fields.gaps.textContent = String(c.gaps); c.fields.gaps.className = "gaps-bad"; }
  if (h.type === "result") onResult(h);
  else if (h.type === "window") onWindow(h);
  else if (h.type === "status") onStatus(h);
  else if (h.type === "eos") { c.fields.state.textContent = "ended"; c.fields.state.className = "state-ended"; }
  document.body.dataset.messages = String(Number(document.body.dataset.messages || 0) + 1);
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  const conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = "live"; document.body.dataset.connected = "1"; };
  ws.onmessage = onMessage;
  ws.onclose = () => { conn.textContent = "disconnected, retrying…"; document.body.dataset.connected = "0";
                       setTimeout(connect, 1000); };
}
connect();
</script></body></html>
"""
