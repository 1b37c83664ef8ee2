// anodmd dashboard: polls the daemon's own JSON API (proto/openapi.yaml) and draws it.
// No framework and no build step; every plot is a canvas, so 10000 map points and 1000
// recent scores cost a redraw, not DOM nodes. It only reads.

const POLL_MS = 2000;
const MAX_SCORES = 1000;            // recent scores held for the chart and the map
const CHART_SPAN_MS = 15 * 60e3;    // the score chart shows at most the last 15 minutes
const RATE_SPAN_MS = 10 * 60e3;     // the rate chart: the last 10 minutes ...
const RATE_BIN_MS = 10e3;           // ... in 10-second bins
const PAGE = 15;                    // rows per page of the anomaly table
const MEMORY_MS = 10e3;             // the memory layer at most this often: placing a full
                                    // memory costs the daemon up to a second (docs/STREAM.md)
const NEWEST = '9223372036854775807';   // a before_id above every log id
const KEY_ITEM = 'anodmd.apiKey';

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const state = {
  key: sessionStorage.getItem(KEY_ITEM) || '',
  paused: false,
  polls: 0,
  timer: 0,
  skew: 0,              // server clock minus ours, from /v1/stats
  models: [],           // GET /v1/models summaries
  model: '',            // the model the chart, map and rates show
  meta: null,           // GET /v1/models/{model}
  map: null,            // the reference map, prepared by prepareMap
  density: null,        // the map's density image, cached by view
  memory: null,         // GET /v1/models/{model}/memory/map: the memory layer, or null
  memoryAt: 0,          // when it was fetched (ms); 0: fetch at the next poll
  scores: [],           // the model's recent log records, oldest first, each with .t (ms)
  cursor: 0,            // since_id of the next poll
  sources: new Set(),
  metrics: [],          // [{t, requests}] samples of /metrics since the page opened
  stats: null,
  selected: null,       // {rec, sample} shown in the sample view
  marks: {},            // per canvas id: [{x, y, rec}] of the points drawn, for hover
  table: {rows: [], before: NEWEST, atNewest: true, hasOlder: false, hasNewer: false},
};

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path) {
  const headers = state.key ? {Authorization: `Bearer ${state.key}`} : {};
  const res = await fetch(path, {headers, cache: 'no-store'});
  const json = (res.headers.get('content-type') || '').includes('json');
  const body = json ? await res.json() : await res.text();
  if (res.status === 401) askForKey(state.key ? 'That key was refused.' : '');
  if (!res.ok) {
    const e = (json && body.error) || {};
    throw new ApiError(res.status, e.code || '', e.message || res.statusText);
  }
  return body;
}

function askForKey(why) {
  $('key-form').hidden = false;
  $('key-error').textContent = why;
  $('key-input').focus();
}

// ------------------------------------------------------------------ formatting

function fmt(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return v.toFixed(a >= 100 ? 1 : digits);
}
const pct = (v) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : '–');
const clock = (ms) => new Date(ms).toLocaleTimeString([], {hour12: false});
const pad2 = (n) => String(n).padStart(2, '0');
const stamp = (ms) => {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${clock(ms)}`;
};

// el('td', {class: 'num'}, 'text', child...): a DOM element.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return e;
}

// Colour of a score: blue when low, amber towards the threshold, red above it.
function scoreColor(score, threshold) {
  if (!(score <= threshold)) return '#d8382e';
  const t = Math.max(0, Math.min(1, threshold > 0 ? score / threshold : 0));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(63, 240)},${mix(127, 160)},${mix(181, 48)})`;
}

// ------------------------------------------------------------------ canvas helpers

// The canvas sized to its box at the screen's pixel density; drawing in CSS pixels.
function setup(canvas) {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width)), h = Math.max(1, Math.round(r.height));
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  return {ctx, w, h};
}

// About n round tick values covering [lo, hi], and their labels.
function ticks(lo, hi, n) {
  const span = hi - lo || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push([v, v.toFixed(digits)]);
  return out;
}

// Axes frame: plot box inside the canvas, y ticks with grid lines, x ticks as clock times.
function frame(g, box, ylo, yhi, tlo, thi) {
  const {ctx} = g;
  const sx = (t) => box.l + ((t - tlo) / (thi - tlo)) * (box.r - box.l);
  const sy = (v) => box.b - ((v - ylo) / (yhi - ylo)) * (box.b - box.t);
  ctx.strokeStyle = '#e6e9ed';
  ctx.fillStyle = '#66717d';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const [v, label] of ticks(ylo, yhi, 4)) {
    ctx.beginPath();
    ctx.moveTo(box.l, Math.round(sy(v)) + 0.5);
    ctx.lineTo(box.r, Math.round(sy(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(label, box.l - 6, sy(v));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const step = [5e3, 10e3, 30e3, 60e3, 120e3, 300e3, 600e3].find((s) => (thi - tlo) / s <= 8) || 900e3;
  for (let t = Math.ceil(tlo / step) * step; t <= thi; t += step) ctx.fillText(clock(t), sx(t), box.b + 5);
  ctx.strokeStyle = '#b9c0c8';
  ctx.strokeRect(box.l + 0.5, box.t + 0.5, box.r - box.l, box.b - box.t);
  return {sx, sy};
}

function quantile(values, q) {
  if (!values.length) return NaN;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

// ------------------------------------------------------------------ the score chart

function drawScores() {
  const canvas = $('score-chart');
  const g = setup(canvas);
  const thr = state.meta ? state.meta.threshold : NaN;
  const tEnd = Math.max(Date.now() + state.skew, state.scores.length ? state.scores.at(-1).t : 0);
  let tStart = state.scores.length ? Math.max(state.scores[0].t, tEnd - CHART_SPAN_MS) : tEnd - 60e3;
  tStart = Math.min(tStart, tEnd - 30e3);
  const shown = state.scores.filter((r) => r.t >= tStart && Number.isFinite(r.score));
  const values = shown.map((r) => r.score);
  const yhi = Math.max(Number.isFinite(thr) ? thr * 1.3 : 1, quantile(values, 0.98) * 1.1 || 0, 1);
  const ylo = Math.min(0, ...values.filter((v) => v < 0).map((v) => v * 1.1));
  const box = {l: 52, r: g.w - 10, t: 8, b: g.h - 22};
  const {sx, sy} = frame(g, box, ylo, yhi, tStart, tEnd);
  const {ctx} = g;
  if (Number.isFinite(thr)) {
    ctx.save();
    ctx.setLineDash([6, 4]);
    ctx.strokeStyle = '#d8382e';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(box.l, sy(thr));
    ctx.lineTo(box.r, sy(thr));
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = '#d8382e';
    ctx.textAlign = 'left';
    ctx.textBaseline = 'bottom';
    ctx.fillText(`threshold ${fmt(thr)}`, box.l + 4, sy(thr) - 2);
  }
  const marks = [];
  for (const pass of [false, true]) {          // anomalies drawn last, on top
    for (const r of shown) {
      if (r.is_anomaly !== pass) continue;
      const x = sx(r.t), clipped = r.score > yhi, y = clipped ? box.t + 4 : sy(r.score);
      ctx.fillStyle = pass ? '#d8382e' : '#3f7fb5';
      ctx.beginPath();
      if (clipped) {
        ctx.moveTo(x, y - 4);
        ctx.lineTo(x + 4, y + 3);
        ctx.lineTo(x - 4, y + 3);
      } else {
        ctx.arc(x, y, pass ? 4 : 2.5, 0, 2 * Math.PI);
      }
      ctx.fill();
      marks.push({x, y, rec: r});
    }
  }
  drawSelection(ctx, marks);
  state.marks['score-chart'] = marks;
  const anomalies = shown.filter((r) => r.is_anomaly).length;
  canvas.dataset.points = shown.length;
  canvas.dataset.anomalies = anomalies;
  canvas.dataset.threshold = Number.isFinite(thr) ? thr : '';
  canvas.setAttribute('aria-label', `scores of ${state.model}: ${shown.length} points, ${anomalies} anomalies`);
  $('scores-note').textContent = shown.length
    ? `${state.model}: ${shown.length} scores since ${clock(shown[0].t)}, ${anomalies} anomalies`
    : `${state.model}: no scores yet`;
}

function drawSelection(ctx, marks) {
  const id = state.selected && state.selected.rec.log_id;
  const m = marks.find((k) => k.rec.log_id === id);
  if (!m) return;
  ctx.strokeStyle = '#1d2630';
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.arc(m.x, m.y, 8, 0, 2 * Math.PI);
  ctx.stroke();
}

// ------------------------------------------------------------------ the rate chart

function drawRates() {
  const canvas = $('rate-chart');
  const g = setup(canvas);
  const tEnd = Date.now() + state.skew, tStart = tEnd - RATE_SPAN_MS;
  const n = RATE_SPAN_MS / RATE_BIN_MS;
  const samples = new Array(n).fill(0), anomalies = new Array(n).fill(0);
  for (const r of state.scores) {
    const i = Math.floor((r.t - tStart) / RATE_BIN_MS);
    if (i < 0 || i >= n) continue;
    samples[i]++;
    if (r.is_anomaly) anomalies[i]++;
  }
  // Score requests per second between /metrics samples, each over at least 10 s.
  const reqs = [];
  for (let i = 1, j = 0; i < state.metrics.length; i++) {
    while (j < i - 1 && state.metrics[i].t - state.metrics[j + 1].t >= RATE_BIN_MS) j++;
    const a = state.metrics[j], b = state.metrics[i];
    if (b.t > a.t && b.t >= tStart) reqs.push({t: b.t, v: ((b.requests - a.requests) * 1000) / (b.t - a.t)});
  }
  const perSec = samples.map((c) => c / (RATE_BIN_MS / 1000));
  const yhi = Math.max(1, ...perSec, ...reqs.map((p) => p.v)) * 1.15;
  const box = {l: 52, r: g.w - 10, t: 8, b: g.h - 22};
  const {sx, sy} = frame(g, box, 0, yhi, tStart, tEnd);
  const {ctx} = g;
  const bw = Math.max(1, sx(tStart + RATE_BIN_MS) - sx(tStart) - 1);
  for (let i = 0; i < n; i++) {
    if (!samples[i]) continue;
    const x = sx(tStart + i * RATE_BIN_MS);
    ctx.fillStyle = '#a9c3da';
    ctx.fillRect(x, sy(perSec[i]), bw, sy(0) - sy(perSec[i]));
    const a = anomalies[i] / (RATE_BIN_MS / 1000);
    ctx.fillStyle = '#d8382e';
    ctx.fillRect(x, sy(a), bw, sy(0) - sy(a));
  }
  if (reqs.length) {
    ctx.strokeStyle = '#1d2630';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    reqs.forEach((p, i) => (i ? ctx.lineTo(sx(p.t), sy(p.v)) : ctx.moveTo(sx(p.t), sy(p.v))));
    ctx.stroke();
  }
  canvas.dataset.bins = samples.filter((c) => c > 0).length;
  canvas.dataset.anomalies = anomalies.reduce((a, b) => a + b, 0);
}

// ------------------------------------------------------------------ the map

function prepareMap(m) {
  const n = m.points.length;
  const xy = new Float32Array(2 * n), index = new Map();
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  m.points.forEach(([x, y], i) => {
    xy[2 * i] = x;
    xy[2 * i + 1] = y;
    index.set(m.refs[i], i);
    if (Number.isFinite(x) && Number.isFinite(y)) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  });
  return {n, xy, index, bounds: [x0, x1, y0, y1], nRef: m.n_ref, mode: m.mode};
}

// Map coordinates to the canvas: the reference bounds widened to every overlaid sample
// and memory point, one scale for both axes, y up.
function mapView(w, h) {
  let [x0, x1, y0, y1] = state.map.bounds;
  const overlaid = state.scores.map((r) => r.position).concat(state.memory ? state.memory.points : []);
  for (const [x, y] of overlaid) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const pad = 12, s = Math.min((w - 2 * pad) / (x1 - x0 || 1), (h - 2 * pad) / (y1 - y0 || 1));
  const ox = (w - s * (x1 - x0)) / 2, oy = (h - s * (y1 - y0)) / 2;
  return {
    sx: (x) => ox + s * (x - x0),
    sy: (y) => h - oy - s * (y - y0),
    key: [w, h, x0, x1, y0, y1].join(),
  };
}

// The reference points as a density image: counts on a 2-pixel grid, each point spread
// by a tent kernel (wider when the points are few), shaded on a square-root scale.
function renderDensity(view, w, h) {
  const cell = 2, gw = Math.ceil(w / cell), gh = Math.ceil(h / cell);
  const counts = new Float32Array(gw * gh);
  const {xy, n} = state.map;
  const r = Math.max(1, Math.min(4, Math.round(Math.sqrt((gw * gh) / Math.max(1, n)) / 4)));
  for (let i = 0; i < n; i++) {
    const cx = Math.floor(view.sx(xy[2 * i]) / cell), cy = Math.floor(view.sy(xy[2 * i + 1]) / cell);
    for (let dy = -r; dy <= r; dy++)
      for (let dx = -r; dx <= r; dx++) {
        const x = cx + dx, y = cy + dy;
        if (x >= 0 && y >= 0 && x < gw && y < gh) counts[y * gw + x] += (r + 1 - Math.abs(dx)) * (r + 1 - Math.abs(dy));
      }
  }
  const max = counts.reduce((a, b) => Math.max(a, b), 0) || 1;
  const img = new ImageData(gw, gh);
  for (let i = 0; i < counts.length; i++) {
    if (!counts[i]) continue;
    img.data[4 * i] = 36;
    img.data[4 * i + 1] = 49;
    img.data[4 * i + 2] = 63;
    img.data[4 * i + 3] = Math.round(40 + 175 * Math.sqrt(counts[i] / max));
  }
  const canvas = document.createElement('canvas');
  canvas.width = gw;
  canvas.height = gh;
  canvas.getContext('2d').putImageData(img, 0, 0);
  return {key: view.key, canvas};
}

function drawMap() {
  const canvas = $('map');
  const g = setup(canvas);
  const {ctx} = g;
  if (!state.map) {
    ctx.fillStyle = '#66717d';
    ctx.fillText('no map', 10, 20);
    return;
  }
  const view = mapView(g.w, g.h);
  if (!state.density || state.density.key !== view.key) state.density = renderDensity(view, g.w, g.h);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(state.density.canvas, 0, 0, state.density.canvas.width * 2, state.density.canvas.height * 2);
  const thr = state.meta ? state.meta.threshold : Infinity;
  const marks = [];
  let anomalies = 0;
  const placed = state.scores.filter((r) => Number.isFinite(r.position[0]) && Number.isFinite(r.position[1]));
  for (const pass of [false, true]) {
    for (const r of placed) {
      if (r.is_anomaly !== pass) continue;
      const x = view.sx(r.position[0]), y = view.sy(r.position[1]);
      ctx.fillStyle = scoreColor(r.score, thr);
      ctx.strokeStyle = pass ? '#7a120c' : 'rgba(255,255,255,0.8)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.arc(x, y, pass ? 4.5 : 3, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      marks.push({x, y, rec: r});
      anomalies += pass;
    }
  }
  const memory = drawMemory(ctx, view);
  drawNeighbors(ctx, view);
  drawSelection(ctx, marks);
  state.marks.map = marks;
  canvas.dataset.refPoints = state.map.n;
  canvas.dataset.overlay = marks.length;
  canvas.dataset.overlayAnomalies = anomalies;
  canvas.dataset.memory = memory.recent + memory.suspicious;
  canvas.dataset.memoryRecent = memory.recent;
  canvas.dataset.memorySuspicious = memory.suspicious;
  canvas.setAttribute('aria-label', `map of ${state.map.n} reference points with ${marks.length} recent samples, ${anomalies} anomalies`);
  const m = state.memory;
  $('map-note').textContent = `${state.map.n} reference points, ${state.map.mode} placement` +
    (m ? ` · memory${m.scope === 'source' ? ` of ${m.source ? `source ${m.source}` : 'untagged requests'}` : ''}: ` +
      `${m.count} latents, placed in ${fmt(m.seconds, 2)} s` : '');
}

// The stream memory's latents, co-placed together (GET .../memory/map): a ring for one in
// the recent half, a diamond for one kept for its suspicion; the more suspicious the larger
// and darker, so that recurring suspicious latents stand out as an island over the faint
// rings of ordinary traffic. Suspicion is ranked within the memory (lowest to highest),
// not read on a fixed scale: what it measures is the model's retention setting (company or
// evidence, with a decay), and the picture must not depend on it. Drawn over the samples
// (rings leave them visible).
function drawMemory(ctx, view) {
  const drawn = {recent: 0, suspicious: 0};
  const m = state.memory;
  if (!m) return drawn;
  ctx.save();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = ctx.fillStyle = '#7b3fb8';
  const finite = m.suspicion.filter(Number.isFinite);
  const lo = Math.min(...finite), hi = Math.max(...finite);
  m.points.forEach(([px, py], i) => {
    if (!Number.isFinite(px) || !Number.isFinite(py)) return;
    const x = view.sx(px), y = view.sy(py);
    const w = Number.isFinite(m.suspicion[i]) && hi > lo ? (m.suspicion[i] - lo) / (hi - lo) : 0;
    const r = 2.5 + 2 * w;
    ctx.globalAlpha = 0.3 + 0.7 * w;
    ctx.beginPath();
    if (m.recent[i]) {
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.stroke();
      drawn.recent++;
    } else {
      ctx.moveTo(x, y - r - 1);
      ctx.lineTo(x + r + 1, y);
      ctx.lineTo(x, y + r + 1);
      ctx.lineTo(x - r - 1, y);
      ctx.fill();
      drawn.suspicious++;
    }
  });
  ctx.restore();
  return drawn;
}

// Lines from the selected sample to its nearest reference points.
function drawNeighbors(ctx, view) {
  const sel = state.selected;
  if (!sel || sel.rec.model !== state.model || !state.map) return;
  const [px, py] = sel.rec.position;
  const nbs = sel.sample ? sel.sample.neighbors : [sel.rec.nearest];
  ctx.strokeStyle = '#1d2630';
  ctx.fillStyle = '#ffffff';
  ctx.lineWidth = 1.5;
  for (const nb of nbs) {
    const i = state.map.index.get(nb.ref);
    if (i === undefined) continue;
    const x = view.sx(state.map.xy[2 * i]), y = view.sy(state.map.xy[2 * i + 1]);
    ctx.beginPath();
    ctx.moveTo(view.sx(px), view.sy(py));
    ctx.lineTo(x, y);
    ctx.stroke();
    ctx.beginPath();
    ctx.rect(x - 3, y - 3, 6, 6);
    ctx.fill();
    ctx.stroke();
  }
}

// ------------------------------------------------------------------ hover and click

function nearestMark(id, ev) {
  const r = ev.currentTarget.getBoundingClientRect();
  const x = ev.clientX - r.left, y = ev.clientY - r.top;
  let best = null, bestD = 64;                 // within 8 px
  for (const m of state.marks[id] || []) {
    const d = (m.x - x) ** 2 + (m.y - y) ** 2;
    if (d <= bestD) [best, bestD] = [m, d];
  }
  return best;
}

function hookCanvas(id) {
  const canvas = $(id), tip = $('tip');
  canvas.addEventListener('pointermove', (ev) => {
    const m = nearestMark(id, ev);
    canvas.style.cursor = m ? 'pointer' : '';
    if (id !== 'map') return;
    tip.hidden = !m;
    if (!m) return;
    const r = m.rec;
    tip.textContent = `#${r.log_id} · score ${fmt(r.score)}${r.is_anomaly ? ' · anomaly' : ''}` +
      `${r.source ? ` · ${r.source}` : ''} · ${clock(r.t)}`;
    tip.style.left = `${Math.min(m.x + 12, canvas.clientWidth - tip.offsetWidth)}px`;
    tip.style.top = `${m.y + 12}px`;
  });
  canvas.addEventListener('pointerleave', () => { tip.hidden = true; });
  canvas.addEventListener('click', (ev) => {
    const m = nearestMark(id, ev);
    if (m) showSample(m.rec.log_id);
  });
}

// ------------------------------------------------------------------ the sample view

async function showSample(logId) {
  try {
    const rec = await api(`/v1/scores/${logId}`);
    rec.t = Date.parse(rec.time);
    let sample = null;
    try {
      sample = await api(`/v1/scores/${logId}/sample`);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    state.selected = {rec, sample};
    renderSample();
    markSelectedRow();
    drawAll();
  } catch (e) {
    setStatus(`sample ${logId}: ${e.message}`, true);
  }
}

function renderSample() {
  const {rec, sample} = state.selected;
  $('sample-empty').hidden = true;
  $('sample-body').hidden = false;
  $('sample-body').dataset.logId = rec.log_id;
  $('sample-title').replaceChildren(
    el('span', {class: `badge ${rec.is_anomaly ? 'anomaly' : 'normal'}`}, rec.is_anomaly ? 'anomaly' : 'normal'),
    ` #${rec.log_id} · ${rec.model} · ${stamp(rec.t)}${rec.source ? ` · ${rec.source}` : ''}`);
  const views = $('sample-views');
  views.replaceChildren();
  if (sample) {
    const [c, h, w] = sample.shape;
    if (h > 1 && w > 1) {
      const range = valueRange(sample.input.concat(sample.reconstruction));
      views.append(figure(pixels(sample.input, c, h, w, range), 'input'),
        figure(pixels(sample.reconstruction, c, h, w, range), 'reconstruction'),
        figure(heat(sample.squared_error, c, h, w), 'squared error'));
    } else {
      views.append(figure(wave(sample), 'input (dark), reconstruction (blue), squared error (red)'));
    }
    $('sample-note').textContent = '';
  } else {
    $('sample-note').textContent = 'The input of this score is no longer held: anodmd keeps the ' +
      'inputs of its most recent scores in memory only (setting recent_samples).';
  }
  $('sample-terms').replaceChildren(...[
    ['score', `${fmt(rec.score)} (threshold ${fmt(rec.threshold)})`],
    ['p-value', fmt(rec.p_value, 4)],
    ['raw score (paper)', fmt(rec.raw_score)],
    ...distances().map((t) => [t.doc, t.z ? `${fmt(rec.terms[t.name])} (z ${fmt(rec.terms[t.z], 2)})`
      : fmt(rec.terms[t.name])]),
    ['map position', `${fmt(rec.position[0], 2)}, ${fmt(rec.position[1], 2)}`],
    ['request id', rec.id || '–'],
    ['model version', rec.version.slice(0, 12)],
  ].map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, v))));
  const nbs = sample ? sample.neighbors : [rec.nearest];
  $('sample-neighbors').replaceChildren(...nbs.map((nb) =>
    el('li', {}, `training sample ${nb.ref}, map distance ${fmt(nb.distance)}`)));
}

// The score's terms, as the model's metadata lists them (core/detect/detector.h's table, in its
// order): each distance d_NAME, with z the name of its standardised value z_NAME if any;
// and the standardised ones, the anomaly table's columns.
function distances() {
  const terms = state.meta ? state.meta.terms : [];
  const names = new Set(terms.map((t) => t.name));
  return terms.filter((t) => !t.name.startsWith('z_')).map((t) => {
    const z = `z_${t.name.replace(/^d_/, '')}`;
    return {...t, z: names.has(z) ? z : null};
  });
}
const standardised = () => (state.meta ? state.meta.terms : []).filter((t) => t.name.startsWith('z_'));

function figure(canvas, caption) {
  return el('figure', {}, canvas, el('figcaption', {}, caption));
}

function valueRange(values) {
  let lo = 0, hi = 1;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return [lo, hi];
}

// An image from CHW values: grey for one channel, RGB for three.
function pixels(values, c, h, w, [lo, hi]) {
  const canvas = el('canvas', {class: 'pixels', width: w, height: h});
  const img = new ImageData(w, h);
  const level = (v) => Math.round(255 * Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1))));
  for (let i = 0; i < w * h; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = level(values[(c >= 3 ? k : 0) * w * h + i]);
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
  return canvas;
}

// Per-pixel squared error (summed over channels), black to red to yellow.
function heat(values, c, h, w) {
  const canvas = el('canvas', {class: 'pixels', width: w, height: h});
  const img = new ImageData(w, h);
  const sum = new Float32Array(w * h);
  for (let k = 0; k < c; k++) for (let i = 0; i < w * h; i++) sum[i] += values[k * w * h + i] || 0;
  const max = sum.reduce((a, b) => Math.max(a, b), 0) || 1;
  for (let i = 0; i < w * h; i++) {
    const v = Math.sqrt(sum[i] / max);
    img.data[4 * i] = Math.round(255 * Math.min(1, 2 * v));
    img.data[4 * i + 1] = Math.round(255 * Math.max(0, 2 * v - 1));
    img.data[4 * i + 2] = 0;
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
  return canvas;
}

// A series: the input and its reconstruction as lines, the squared error below.
function wave(sample) {
  const canvas = el('canvas', {class: 'wave'});
  requestAnimationFrame(() => {
    const g = setup(canvas), {ctx} = g;
    const n = sample.input.length;
    const [lo, hi] = valueRange(sample.input.concat(sample.reconstruction));
    const emax = Math.max(...sample.squared_error.filter(Number.isFinite), 1e-12);
    const sx = (i) => 4 + (i / Math.max(1, n - 1)) * (g.w - 8);
    const sy = (v) => 4 + (1 - (v - lo) / (hi - lo || 1)) * (g.h * 0.7 - 8);
    ctx.fillStyle = 'rgba(216,56,46,0.5)';
    sample.squared_error.forEach((e, i) => {
      const bh = (g.h * 0.28 * e) / emax;
      ctx.fillRect(sx(i) - 0.5, g.h - bh, Math.max(1, (g.w - 8) / n), bh);
    });
    for (const [values, colour] of [[sample.input, '#1d2630'], [sample.reconstruction, '#3f7fb5']]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      values.forEach((v, i) => (i ? ctx.lineTo(sx(i), sy(v)) : ctx.moveTo(sx(i), sy(v))));
      ctx.stroke();
    }
    canvas.dataset.points = n;   // drawn (the browser test waits for it)
  });
  return canvas;
}

// ------------------------------------------------------------------ the anomaly table

function tableQuery() {
  const model = $('filter-model').value, source = $('filter-source').value.trim();
  return `/v1/scores?anomalies_only=true${model ? `&model=${enc(model)}` : ''}` +
    `${source ? `&source=${enc(source)}` : ''}`;
}

// One page of anomalies: the newest below before, or (with after) the oldest above it.
async function loadTable({before = null, after = null} = {}) {
  const t = state.table;
  const page = after !== null
    ? await api(`${tableQuery()}&since_id=${after}&limit=${PAGE + 1}`)
    : await api(`${tableQuery()}&before_id=${before || NEWEST}&limit=${PAGE + 1}`);
  let rows = page.scores;
  if (after !== null) {
    t.hasNewer = rows.length > PAGE;
    rows = rows.slice(0, PAGE);
    t.hasOlder = true;
  } else {
    t.hasOlder = rows.length > PAGE;
    rows = rows.slice(-PAGE);
    t.hasNewer = before !== null && before !== NEWEST;
  }
  if (after !== null && !rows.length) return loadTable();   // nothing newer: the newest page
  t.rows = rows.reverse();                                   // newest first
  t.atNewest = !t.hasNewer;
  renderTable();
}

function renderTable() {
  const t = state.table;
  const body = $('anomalies').tBodies[0];
  const zs = standardised();
  $('anomalies').tHead.rows[0].replaceChildren(
    ...['log id', 'time', 'model', 'source', 'id'].map((h) => el('th', {}, h)),
    ...['score', 'p-value', ...zs.map((z) => z.name)].map((h) => el('th', {class: 'num'}, h)));
  body.replaceChildren(...t.rows.map((r) => {
    const tr = el('tr', {'data-log-id': r.log_id, 'data-model': r.model, tabindex: 0},
      el('td', {}, r.log_id), el('td', {title: r.time}, clock(Date.parse(r.time))),
      el('td', {}, r.model), el('td', {}, r.source || '–'), el('td', {}, r.id || '–'),
      el('td', {class: 'num'}, fmt(r.score)), el('td', {class: 'num'}, fmt(r.p_value, 4)),
      ...zs.map((z) => el('td', {class: 'num', title: z.doc}, fmt(r.terms[z.name], 2))));
    tr.addEventListener('click', () => showSample(r.log_id));
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') showSample(r.log_id); });
    return tr;
  }));
  markSelectedRow();
  $('page-newer').disabled = !t.hasNewer;
  $('page-newest').disabled = t.atNewest;
  $('page-older').disabled = !t.hasOlder;
  $('anomalies').dataset.rows = t.rows.length;
  $('page-info').textContent = t.rows.length
    ? `${t.rows.length} anomalies, log ids ${t.rows.at(-1).log_id}–${t.rows[0].log_id}` +
      `${t.atNewest ? ' (the newest; refreshed as they come)' : ''}`
    : 'No anomalies logged that match the filters.';
}

function markSelectedRow() {
  const id = state.selected ? String(state.selected.rec.log_id) : null;
  for (const tr of $('anomalies').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.logId === id);
}

// ------------------------------------------------------------------ model metadata

function renderMeta() {
  const m = state.meta;
  const groups = [
    ['Model', {name: m.name, version: m.version, default: m.default, arch: m.arch,
      input: m.input.join(' × '), latent: m.latent, mode: m.mode}],
    ['Scoring', m.scoring],
    ['Calibration', m.calibration],
    ['Architecture', m.architecture],
    ['Training (provenance)', m.provenance],
  ];
  const out = [];
  for (const [title, obj] of groups) {
    out.push(el('h3', {}, title));
    for (const [k, v] of flatten(obj)) out.push(el('div', {}, el('span', {class: 'k'}, k), el('span', {class: 'v'}, v)));
  }
  $('model-meta').replaceChildren(...out);
}

// [[path, text]] of an object's leaves, nested keys joined with '.'.
function flatten(obj, prefix = '') {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    const text = Array.isArray(obj) ? obj.join(', ')
      : typeof obj === 'number' && !Number.isInteger(obj) ? fmt(obj, 4) : String(obj);
    return [[prefix || 'value', text]];
  }
  return Object.entries(obj).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
}

// ------------------------------------------------------------------ polling

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

function addScores(rows) {
  for (const r of rows) {
    r.t = Date.parse(r.time);
    state.scores.push(r);
    if (r.source) state.sources.add(r.source);
  }
  if (state.scores.length > MAX_SCORES) state.scores.splice(0, state.scores.length - MAX_SCORES);
}

// The newest MAX_SCORES scores of the model.
async function loadRecent() {
  const page = await api(`/v1/scores?model=${enc(state.model)}&before_id=${NEWEST}&limit=${MAX_SCORES}`);
  state.scores = [];
  addScores(page.scores);
  state.cursor = page.scores.length ? page.next_since_id : state.cursor;
}

async function pollScores() {
  const page = await api(`/v1/scores?model=${enc(state.model)}&since_id=${state.cursor}&limit=${MAX_SCORES}`);
  if (page.scores.length === MAX_SCORES) return loadRecent();   // fell behind: jump to the newest
  addScores(page.scores);
  state.cursor = page.next_since_id;
}

const hasMemory = () => Boolean(state.meta && state.meta.scoring && state.meta.scoring.memory);

// The memory layer, when the model has a memory and the layer is on: at most every
// MEMORY_MS (the daemon answers again from its cache while the memory is unchanged). Under
// one memory per source, the anomaly table's source filter picks the memory shown.
async function pollMemory() {
  if (!hasMemory() || !$('memory-layer').checked) {
    state.memory = null;
    return;
  }
  if (state.memoryAt && Date.now() - state.memoryAt < MEMORY_MS) return;
  const source = $('filter-source').value.trim();
  state.memory = await api(`/v1/models/${enc(state.model)}/memory/map${source ? `?source=${enc(source)}` : ''}`);
  state.memoryAt = Date.now();
}

// Fetch the memory layer again now (it was turned on, or another source was chosen).
function refreshMemory() {
  state.memoryAt = 0;
  pollMemory().then(drawAll).catch((e) => setStatus(`error: ${e.message}`, true));
}

async function pollStats() {
  const s = await api('/v1/stats');
  state.skew = Date.parse(s.time) - Date.now();
  state.stats = s;
  const mine = s.models.find((m) => m.model === state.model);
  const w = mine ? mine.windows : null;
  $('t-samples').textContent = w ? fmt(w['1m'].count / 60, 2) : '0';
  $('t-rate-1m').textContent = w ? pct(w['1m'].anomaly_rate) : '–';
  $('t-rate-1h').textContent = w ? pct(w['1h'].anomaly_rate) : '–';
  $('t-quantiles').textContent = w ? `${fmt(w['1h'].score.p50, 2)} / ${fmt(w['1h'].score.p99, 2)}` : '–';
}

// Score requests answered so far (every model, every status), from /metrics.
async function pollMetrics() {
  let text;
  try {
    text = await api('/metrics');
  } catch (e) {
    if (e.status === 401) throw e;
    return;                                   // the rates line is optional
  }
  let requests = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^anodmd_http_requests_total\{route="([^"]*)"[^}]*\} (\d+)/);
    if (m && /\/score$|\/infer$/.test(m[1])) requests += Number(m[2]);
  }
  const t = Date.now() + state.skew;
  state.metrics.push({t, requests});
  while (state.metrics.length && state.metrics[0].t < t - RATE_SPAN_MS - RATE_BIN_MS) state.metrics.shift();
  const last = state.metrics.length > 1 ? state.metrics.at(-2) : null;
  $('t-requests').textContent = last && t > last.t ? fmt(((requests - last.requests) * 1000) / (t - last.t), 2) : '–';
}

async function poll() {
  clearTimeout(state.timer);
  try {
    if (state.models.length === 0) await loadModels();
    await pollScores();
    await pollMemory();
    await pollStats();
    await pollMetrics();
    if (state.table.atNewest) await loadTable();
    $('sources').replaceChildren(...[...state.sources].sort().map((s) => el('option', {value: s})));
    state.polls++;
    document.body.dataset.polls = state.polls;
    setStatus(`live · updated ${clock(Date.now())}`);
  } catch (e) {
    setStatus(e.status === 401 ? 'waiting for an API key' : `error: ${e.message}`, true);
  }
  drawAll();
  // Polling stops while the page waits for an API key; submitting one starts it again.
  if (!state.paused && $('key-form').hidden) state.timer = setTimeout(poll, POLL_MS);
}

async function loadModels() {
  const list = await api('/v1/models');
  state.models = list.models;
  const options = () => list.models.map((m) => el('option', {value: m.name}, m.name));
  $('model').replaceChildren(...options());
  $('filter-model').replaceChildren(el('option', {value: ''}, 'all'), ...options());
  if (list.models.length) await selectModel(list.default || list.models[0].name);
}

async function selectModel(name) {
  state.model = name;
  $('model').value = name;
  const [meta, map] = await Promise.all([api(`/v1/models/${enc(name)}`), api(`/v1/models/${enc(name)}/map`)]);
  state.meta = meta;
  state.map = prepareMap(map);
  state.density = null;
  state.memory = null;
  state.memoryAt = 0;
  $('memory-legend').hidden = !hasMemory();
  state.cursor = 0;
  await loadRecent();
  renderMeta();
}

function drawAll() {
  if (!state.model) return;
  drawScores();
  drawRates();
  drawMap();
}

// ------------------------------------------------------------------ start

function start() {
  if (state.key) $('forget-key').hidden = false;
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.key = $('key-input').value.trim();
    sessionStorage.setItem(KEY_ITEM, state.key);
    $('key-input').value = '';
    $('key-form').hidden = true;
    $('forget-key').hidden = false;
    poll();
  });
  $('forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_ITEM);
    location.reload();
  });
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    $('pause').textContent = state.paused ? 'Resume' : 'Pause';
    if (state.paused) {
      clearTimeout(state.timer);
      setStatus('paused');
    } else {
      poll();
    }
  });
  $('model').addEventListener('change', async () => {
    try {
      await selectModel($('model').value);
      await pollMemory();
      drawAll();
    } catch (e) {
      setStatus(`error: ${e.message}`, true);
    }
  });
  const reload = () => loadTable().catch((e) => setStatus(`error: ${e.message}`, true));
  $('filter-model').addEventListener('change', reload);
  let typing = 0;
  $('filter-source').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      reload();
      if (state.memory && state.memory.scope === 'source') refreshMemory();
    }, 300);
  });
  $('memory-layer').addEventListener('change', refreshMemory);
  $('filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('page-newest').addEventListener('click', reload);
  $('page-older').addEventListener('click', () =>
    loadTable({before: state.table.rows.at(-1).log_id}).catch((e) => setStatus(`error: ${e.message}`, true)));
  $('page-newer').addEventListener('click', () =>
    loadTable({after: state.table.rows[0].log_id}).catch((e) => setStatus(`error: ${e.message}`, true)));
  hookCanvas('map');
  hookCanvas('score-chart');
  let resizing = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(drawAll);
  });
  poll();
}

// For a look from the browser's console (and the browser test): the page's state.
window.anodmd = {state, draw: drawAll};
start();
