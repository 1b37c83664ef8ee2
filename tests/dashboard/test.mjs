// The dashboard in a real browser (part of `make test`).
//
//   node tests/dashboard/test.mjs --anodmd build/anodmd --model M.anodm \
//       --data /usr/share/datasets/fashion-mnist --out build/dashboard-test
//
// Starts anodmd on a free port with the bundle served twice ("fashion", the default, and
// "fashion-b"), POSTs Fashion-MNIST test images (normal garments, and garments shifted
// half out of the frame, which the model flags), opens the page in Debian's Chromium
// (headless, through playwright-core) and reads the DOM and the canvases: the score
// chart and the map must hold exactly the scores the API gave, anomalies marked, the
// anomaly table must list the flagged ones newest first with paging and filters, the
// sample view must draw the very pixels that were posted. A second anodmd with an API
// key checks that the page asks for the key and then works. Screenshots go to --out.
//
// With --ecg-model and --ecg-beats (an ecg-extract NPY), a heartbeat model is served too
// ("ecg"): beats are posted to it, and its sample view must draw the posted beat as a
// waveform with its reconstruction.
//
// --rich: instead, a richer run for the README's picture: about 600 samples over a
// minute with the page open, then one screenshot (--screenshot FILE). No checks.
import {chromium} from 'playwright-core';
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {parseArgs} from 'node:util';
import {gunzipSync} from 'node:zlib';

const {values: opt} = parseArgs({options: {
  anodmd: {type: 'string', default: 'build/anodmd'},
  model: {type: 'string'},
  data: {type: 'string', default: '/usr/share/datasets/fashion-mnist'},
  out: {type: 'string', default: 'build/dashboard-test'},
  chromium: {type: 'string', default: '/usr/bin/chromium'},
  rich: {type: 'boolean', default: false},
  'ecg-model': {type: 'string'},
  'ecg-beats': {type: 'string'},
  screenshot: {type: 'string'},
}});
if (!opt.model) {
  console.error('usage: test.mjs --model BUNDLE [--anodmd BIN] [--data DIR] [--out DIR] [--rich --screenshot PNG]');
  process.exit(2);
}

const PAGE = 15;                      // rows per page of the dashboard's anomaly table
const KEY = 'dashboard-test-key-0123456789';
const started = Date.now();
let passed = 0, failed = 0;

function check(what, ok, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `: ${detail}` : ''}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ data

// Fashion-MNIST test images scaled to [0, 1], and their labels.
function loadFashion(dir) {
  const images = gunzipSync(fs.readFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz')));
  const labels = gunzipSync(fs.readFileSync(path.join(dir, 't10k-labels-idx1-ubyte.gz')));
  const n = labels.readUInt32BE(4);
  const image = (i) => Array.from(images.subarray(16 + 784 * i, 16 + 784 * (i + 1)), (v) => v / 255);
  return {n, image, label: (i) => labels[8 + i]};
}

// A little-endian NPY file (version 1 or 2) of float32 or int32 as {shape, data}.
function loadNpy(file) {
  const b = fs.readFileSync(file);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not an NPY file`);
  const major = b[6], hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen, header = b.toString('latin1', major === 1 ? 10 : 12, start);
  const shape = header.match(/'shape': *\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const count = shape.reduce((a, c) => a * c, 1);
  const bytes = b.buffer.slice(b.byteOffset + start, b.byteOffset + start + 4 * count);
  return {shape, data: header.includes("'<f4'") ? new Float32Array(bytes) : new Int32Array(bytes)};
}

// The garment moved 14 pixels left: half of it out of the frame.
const shifted = (x) => x.map((_, j) => (j % 28 < 14 ? x[j + 14] : 0));

// ------------------------------------------------------------------ the daemon

// Start anodmd with args on a free port; resolves to {proc, port, url} once it listens.
function startDaemon(args, log) {
  const proc = spawn(opt.anodmd, ['--port', '0', ...args],
                     {stdio: ['ignore', 'ignore', 'pipe']});
  const out = fs.createWriteStream(log);
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`anodmd did not start; see ${log}`)), 15000);
    proc.stderr.on('data', (chunk) => {
      out.write(chunk);
      text += chunk;
      const m = text.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m && timer) {
        clearTimeout(timer);
        resolve({proc, port: Number(m[1]), url: `http://127.0.0.1:${m[1]}`});
      }
    });
    proc.on('exit', (code) => reject(new Error(`anodmd exited (${code}); see ${log}`)));
  });
}

async function stopDaemon(d) {
  if (!d || d.proc.exitCode !== null) return;
  const exited = new Promise((r) => d.proc.on('exit', r));
  d.proc.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (d.proc.exitCode === null) d.proc.kill('SIGKILL');
}

// POST samples to a model; the results, each with what was sent and to which model.
async function post(d, model, samples, source, key = '') {
  const headers = {'Content-Type': 'application/json'};
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(`${d.url}/v1/models/${model}/score`, {
    method: 'POST', headers, body: JSON.stringify({samples, source})});
  const body = await res.json();
  if (!res.ok) throw new Error(`POST ${model}: ${res.status} ${JSON.stringify(body)}`);
  return body.results.map((r, i) => ({...r, model, source, x: samples[i]}));
}

// ------------------------------------------------------------------ the page

async function openPage(browser, url, errors) {
  const page = await browser.newPage({viewport: {width: 1400, height: 1000}});
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  return page;
}

// Wait until the page has polled at least n times since now.
async function polled(page, n = 1) {
  const now = Number(await page.evaluate(() => document.body.dataset.polls || 0));
  await page.waitForFunction((want) => Number(document.body.dataset.polls || 0) >= want, now + n,
    {timeout: 15000});
}

// Pixels of a canvas, counted by colour: red marks, dark density, anything drawn.
function countPixels(page, selector) {
  return page.evaluate((sel) => {
    const c = document.querySelector(sel);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let red = 0, dark = 0, drawn = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      drawn++;
      if (d[i] > 180 && d[i + 1] < 90 && d[i + 2] < 90) red++;
      if (d[i] < 90 && d[i + 1] < 100 && d[i + 2] < 110 && d[i + 3] > 60) dark++;
    }
    return {red, dark, drawn};
  }, selector);
}

const tableIds = (page) => page.$$eval('#anomalies tbody tr', (rows) => rows.map((r) => Number(r.dataset.logId)));
const tableCells = (page, col) => page.$$eval('#anomalies tbody tr', (rows, c) => rows.map((r) => r.cells[c].textContent), col);

// Wait until the table shows want (log ids, in order).
async function tableShows(page, want) {
  try {
    await page.waitForFunction((w) => {
      const ids = [...document.querySelectorAll('#anomalies tbody tr')].map((r) => Number(r.dataset.logId));
      return JSON.stringify(ids) === JSON.stringify(w);
    }, want, {timeout: 5000});
    return true;
  } catch {
    return false;
  }
}

const newestFirst = (recs) => recs.map((r) => r.log_id).sort((a, b) => b - a);

// ------------------------------------------------------------------ the checks

async function checkDashboard(browser, d, sent) {
  const errors = [];
  const page = await openPage(browser, `${d.url}/`, errors);
  await polled(page, 1);
  const main = sent.filter((r) => r.model === 'fashion');
  const flagged = sent.filter((r) => r.is_anomaly);
  const mainFlagged = main.filter((r) => r.is_anomaly);
  check('the posted set has anomalies to show', mainFlagged.length > PAGE && main.length > mainFlagged.length,
    `${mainFlagged.length} of ${main.length} flagged`);

  // The score chart: every score of the default model, the flagged ones as anomalies.
  const chart = await page.$eval('#score-chart', (c) => ({...c.dataset}));
  check('chart holds every score of the model', Number(chart.points) === main.length,
    `${chart.points} points, ${main.length} posted`);
  check('chart marks the anomalies', Number(chart.anomalies) === mainFlagged.length,
    `${chart.anomalies} marked, ${mainFlagged.length} flagged`);
  const chartPx = await countPixels(page, '#score-chart');
  check('chart draws red anomaly marks and a threshold line', chartPx.red > 50, JSON.stringify(chartPx));

  // The map: the reference density and the recent samples at their placed positions.
  const map = await page.$eval('#map', (c) => ({...c.dataset}));
  const ref = await (await fetch(`${d.url}/v1/models/fashion/map`)).json();
  check('map draws every reference point', Number(map.refPoints) === ref.n, `${map.refPoints} of ${ref.n}`);
  check('map overlays every recent sample', Number(map.overlay) === main.length,
    `${map.overlay} of ${main.length}`);
  check('map overlays the anomalies', Number(map.overlayAnomalies) === mainFlagged.length,
    `${map.overlayAnomalies} of ${mainFlagged.length}`);
  const mapPx = await countPixels(page, '#map');
  check('map canvas shows density and red anomalies', mapPx.dark > 2000 && mapPx.red > 20, JSON.stringify(mapPx));
  await checkMemoryLayer(page, d, ref, main);

  // Live: new scores appear without reloading.
  const more = await post(d, 'fashion', [main[0].x, main[1].x], 'cam-1');
  sent.push(...more);
  main.push(...more);
  await polled(page, 2);
  const live = await page.$eval('#score-chart', (c) => Number(c.dataset.points));
  check('chart picks up new scores as they come', live === main.length, `${live} of ${main.length}`);

  // Hover and click on the map: the tooltip, then the sample view of that point. The map
  // is scrolled into view first, and the point chosen is the anomaly nearest the map's
  // centre (any model, any layout: a point at an edge or below the fold cannot be hovered).
  const mapEl = await page.$('#map');
  await mapEl.scrollIntoViewIfNeeded();
  const mark = await page.evaluate(() => {
    const c = document.getElementById('map'), w = c.clientWidth, h = c.clientHeight;
    const inside = window.anodmd.state.marks.map.filter((k) => k.rec.is_anomaly &&
      k.x > 8 && k.x < w - 8 && k.y > 8 && k.y < h - 8);
    const dist = (k) => (k.x - w / 2) ** 2 + (k.y - h / 2) ** 2;
    const m = inside.sort((a, b) => dist(a) - dist(b))[0];
    return m && {x: m.x, y: m.y, id: m.rec.log_id};
  });
  if (mark) {
    const box = await mapEl.boundingBox();
    const at = {x: box.x + mark.x, y: box.y + mark.y};
    // Points may overlap: the one shown is the nearest, any within 8 pixels will do.
    const near = await page.evaluate(({x, y}) => window.anodmd.state.marks.map
      .filter((k) => (k.x - x) ** 2 + (k.y - y) ** 2 <= 64).map((k) => k.rec.log_id), mark);
    const hit = await page.evaluate(({x, y}) => document.elementFromPoint(x, y)?.id ?? '', at);
    check('the chosen map point is on screen and not covered', hit === 'map',
      `(${at.x}, ${at.y}) hits '${hit}'`);
    await page.mouse.move(at.x, at.y);
    const tip = await page.waitForFunction(() => {
      const t = document.getElementById('tip');
      return !t.hidden && t.textContent;
    }, null, {timeout: 3000}).then((h) => h.jsonValue()).catch(() => '');
    check('hovering a map point shows it', near.some((id) => tip.startsWith(`#${id} `)), `tooltip '${tip}'`);
    await page.mouse.click(at.x, at.y);
    const shown = await page.waitForSelector('#sample-body:not([hidden])', {timeout: 5000})
      .then(() => page.$eval('#sample-body', (b) => Number(b.dataset.logId))).catch(() => 0);
    check('clicking a map point opens its sample', near.includes(shown), `opened ${shown}`);
  } else {
    check('clicking a map point opens its sample', false, 'no anomaly inside the map');
  }

  // The anomaly table: newest first, a page at a time, filtered by source and model.
  const wantAll = newestFirst(flagged);
  check('table lists the newest anomalies first', await tableShows(page, wantAll.slice(0, PAGE)),
    `shows ${await tableIds(page)}, want ${wantAll.slice(0, PAGE)}`);
  await page.click('#page-older');
  check('table pages to older anomalies', await tableShows(page, wantAll.slice(PAGE, 2 * PAGE)),
    `shows ${await tableIds(page)}`);
  await page.click('#page-newest');
  await tableShows(page, wantAll.slice(0, PAGE));
  await page.fill('#filter-source', 'cam-3');
  const wantSource = newestFirst(flagged.filter((r) => r.source === 'cam-3')).slice(0, PAGE);
  check('table filters by source', await tableShows(page, wantSource) &&
    (await tableCells(page, 3)).every((s) => s === 'cam-3'), `shows ${await tableIds(page)}`);
  await page.fill('#filter-source', '');
  await page.selectOption('#filter-model', 'fashion-b');
  const wantModel = newestFirst(flagged.filter((r) => r.model === 'fashion-b')).slice(0, PAGE);
  check('table filters by model', wantModel.length > 0 && await tableShows(page, wantModel) &&
    (await tableCells(page, 2)).every((s) => s === 'fashion-b'), `shows ${await tableIds(page)}`);
  await page.selectOption('#filter-model', '');
  await tableShows(page, wantAll.slice(0, PAGE));

  // The sample view of the first row: the posted pixels, reconstruction, error, terms.
  const first = sent.find((r) => r.log_id === wantAll[0]);
  await page.click('#anomalies tbody tr:first-child');
  await page.waitForFunction((id) => document.querySelector('#sample-body').dataset.logId === String(id),
    first.log_id, {timeout: 5000}).catch(() => {});
  const view = await page.evaluate(() => {
    const canvases = [...document.querySelectorAll('#sample-views canvas')];
    const c = canvases[0];
    const px = c ? Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data) : [];
    return {n: canvases.length, w: c && c.width, red: px.filter((_, i) => i % 4 === 0),
      terms: document.querySelector('#sample-terms').textContent,
      neighbors: document.querySelectorAll('#sample-neighbors li').length,
      id: document.querySelector('#sample-body').dataset.logId};
  });
  check('sample view opens from the table', view.id === String(first.log_id), `shows ${view.id}`);
  check('sample view draws input, reconstruction and error', view.n === 3 && view.w === 28, `${view.n} canvases`);
  const worst = first.x.reduce((m, v, i) => Math.max(m, Math.abs(Math.round(255 * v) - view.red[i])), 0);
  check('sample view draws the posted pixels', view.red.length === 784 && worst <= 1, `largest difference ${worst}`);
  check('sample view shows the score terms and neighbours',
    view.terms.includes(first.score.toFixed(3)) && view.terms.includes('D_RE') &&
    view.neighbors === first.neighbors.length, `${view.neighbors} neighbours; ${view.terms.slice(0, 120)}`);
  // The terms are the API's list (core/detect/detector.h's table), none hard-coded in the page:
  // every distance in the sample view, every standardised term a column of the table.
  const terms = (await (await fetch(`${d.url}/v1/models/fashion`)).json()).terms || [];
  const head = await page.$$eval('#anomalies thead th', (ths) => ths.map((th) => th.textContent));
  const zs = terms.filter((t) => t.name.startsWith('z_')).map((t) => t.name);
  check('the API lists the score terms', terms.length >= 6 && zs.length >= 3 &&
    terms.every((t) => Object.hasOwn(first.terms, t.name)), JSON.stringify(terms));
  check('the table and the sample view show the API\'s terms',
    zs.every((z) => head.includes(z)) && head.length === 7 + zs.length &&
    terms.filter((t) => !t.name.startsWith('z_')).every((t) => view.terms.includes(t.doc)),
    `columns ${head.join(', ')}; ${view.terms.slice(0, 200)}`);

  // Rates and metadata.
  const rates = await page.evaluate(() => ({bins: Number(document.querySelector('#rate-chart').dataset.bins),
    samples: document.querySelector('#t-samples').textContent}));
  check('rates show the traffic', rates.bins >= 1 && Number(rates.samples) > 0, JSON.stringify(rates));
  const meta = await page.$eval('#model-meta', (m) => m.textContent);
  check('model metadata is shown', meta.includes('fashion') && meta.includes('threshold') &&
    meta.includes('data.n_train'), meta.slice(0, 200));

  await page.screenshot({path: path.join(opt.out, 'dashboard.png'), fullPage: true});
  check('the page logged no errors', errors.length === 0, errors.join(' | '));
  await page.close();
}

// Distance from p to its k-th nearest point of set (p itself, if in set, not counted).
function kthNearest(p, set, k) {
  const ds = set.filter((q) => q !== p).map((q) => Math.hypot(q[0] - p[0], q[1] - p[1])).sort((a, b) => a - b);
  return ds[k - 1];
}
const median = (v) => Float64Array.from(v).sort()[Math.floor(v.length / 2)];

// The memory layer: the stream memory co-placed on the map (GET .../memory/map), every
// latent drawn, recent ones as rings; the toggle hides and shows it. The memory holds the
// posted garments in posting order (nothing has aged out: the recent half keeps 1000), so
// the last 40 are the shifted ones. Recurring, they gather into an island: each one's 5th
// nearest shifted neighbour is nearer than its 5th nearest reference point (the median of
// that ratio below 1), and by a quarter less than where each was placed alone (its score's
// position): that is what the layer adds.
async function checkMemoryLayer(page, d, ref, main) {
  const memPx = (p) => page.evaluate(() => {
    const c = document.getElementById('map');
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 128 && px[i] > 95 && px[i] < 150 && px[i + 1] < 90 && px[i + 2] > 150) n++;
    return n;
  });
  const drawn = await page.$eval('#map', (c) => ({...c.dataset}));
  const shown = await page.evaluate(() => window.anodmd.state.memory);
  const api = await (await fetch(`${d.url}/v1/models/fashion/memory/map`)).json();
  const count = (await (await fetch(`${d.url}/v1/models/fashion`)).json()).scoring.memory.count;
  check('the memory layer draws every latent the memory holds', shown && Number(drawn.memory) === count &&
    api.count === count && count === main.length && Number(drawn.memoryRecent) === count,
    `${drawn.memory} drawn (${drawn.memoryRecent} recent), memory holds ${count}, ${main.length} posted`);
  check('the layer is the API\'s memory map, answered from its cache', shown && api.cached &&
    JSON.stringify(api.points) === JSON.stringify(shown.points), `cached ${api.cached}`);
  const px = await memPx();
  check('the memory layer is drawn in its colour', px > 50, `${px} violet pixels`);
  const odd = main.slice(-40);
  if (shown && shown.points.length === main.length && odd.every((r) => r.source === 'cam-3')) {
    const island = shown.points.slice(-40), lone = odd.map((r) => r.position);
    const ratio = (set) => median(set.map((p) => kthNearest(p, set, 5) / kthNearest(p, ref.points, 5)));
    const [together, alone] = [ratio(island), ratio(lone)];
    const measured = `5th nearest shifted / 5th nearest reference, median: ${together.toFixed(3)} ` +
      `co-placed, ${alone.toFixed(3)} placed alone`;
    check('recurring anomalies gather into an island of their own on the memory layer',
      together < 1 && together < 0.75 * alone, measured);
    console.log(`     (${measured})`);
  } else {
    check('recurring anomalies gather into an island of their own on the memory layer', false, 'no memory layer to measure');
  }
  await page.click('#memory-layer');
  await page.waitForFunction(() => document.getElementById('map').dataset.memory === '0', null, {timeout: 5000}).catch(() => {});
  const off = await memPx();
  check('the toggle hides the memory layer', off === 0 &&
    await page.$eval('#map', (c) => c.dataset.memory) === '0', `${off} violet pixels`);
  await page.click('#memory-layer');
  await page.waitForFunction((n) => document.getElementById('map').dataset.memory === String(n), count, {timeout: 5000}).catch(() => {});
  check('and shows it again', await memPx() > 50);
}

// With API keys the page asks for one, keeps it for the tab, and then shows the data.
async function checkApiKey(browser, data) {
  const d = await startDaemon(['--model', `fashion=${opt.model}`, '--db', path.join(opt.out, 'keys.db'),
    '--api-keys', KEY], path.join(opt.out, 'anodmd-keys.log'));
  try {
    const sent = await post(d, 'fashion', [data.image(0), data.image(1), data.image(2)], 'cam-1', KEY);
    const errors = [];
    const page = await openPage(browser, `${d.url}/`, errors);
    await page.waitForSelector('#key-form:not([hidden])', {timeout: 5000}).catch(() => {});
    check('with API keys the page asks for one', await page.$eval('#key-form', (f) => !f.hidden));
    await page.fill('#key-input', KEY);
    await page.click('#key-form button[type=submit]');
    await polled(page, 1);
    const points = await page.$eval('#score-chart', (c) => Number(c.dataset.points));
    const kept = await page.evaluate(() => sessionStorage.getItem('anodmd.apiKey'));
    check('with the key it shows the scores', points === sent.length && kept !== null, `${points} points`);
    await page.close();
  } finally {
    await stopDaemon(d);
  }
}

// The heartbeat model: normal beats (N) and ventricular ones (V, held out in training)
// posted to "ecg"; the dashboard shows its scores, and a flagged beat's sample view is a
// waveform: the posted beat and its reconstruction, 187 points.
async function checkEcg(browser, d) {
  const beats = loadNpy(opt['ecg-beats']), labels = loadNpy(opt['ecg-beats'].replace(/\.npy$/, '.labels.npy'));
  const len = beats.shape[1], beat = (i) => Array.from(beats.data.subarray(len * i, len * (i + 1)));
  const pick = (cls, n) => { const out = []; for (let i = 0; i < labels.data.length && out.length < n; i++) if (labels.data[i] === cls) out.push(beat(i)); return out; };
  const normal = pick(0, 40), ventricular = pick(2, 20), sent = [];
  for (let i = 0; i < 40; i += 10) sent.push(...await post(d, 'ecg', normal.slice(i, i + 10), 'ward-1'));
  for (let i = 0; i < 20; i += 10) sent.push(...await post(d, 'ecg', ventricular.slice(i, i + 10), 'ward-1'));
  const flagged = sent.filter((r) => r.is_anomaly);
  check('the heartbeat model flags some beats', flagged.length > 0 && flagged.length < sent.length,
    `${flagged.length} of ${sent.length}`);
  const errors = [];
  const page = await openPage(browser, `${d.url}/`, errors);
  await polled(page, 1);
  await page.selectOption('#model', 'ecg');
  await page.waitForFunction((n) => Number(document.querySelector('#score-chart').dataset.points) === n,
    sent.length, {timeout: 5000}).catch(() => {});
  const points = await page.$eval('#score-chart', (c) => Number(c.dataset.points));
  check('the chart shows the heartbeat model\'s scores', points === sent.length, `${points} of ${sent.length}`);
  await page.selectOption('#filter-model', 'ecg');
  const newest = flagged.reduce((a, r) => (r.log_id > a.log_id ? r : a), flagged[0] || {log_id: -1});
  await page.waitForFunction((id) => document.querySelector('#anomalies tbody tr')?.textContent.includes(`${id}`),
    newest.log_id, {timeout: 5000}).catch(() => {});
  await page.click('#anomalies tbody tr:first-child');
  await page.waitForFunction(() => document.querySelector('#sample-views canvas.wave')?.dataset.points,
    null, {timeout: 5000}).catch(() => {});
  const view = await page.evaluate(() => {
    const canvases = [...document.querySelectorAll('#sample-views canvas')], c = canvases[0];
    const px = c ? c.getContext('2d').getImageData(0, 0, c.width, c.height).data : [];
    let ink = 0, blue = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 128 && px[i] < 60 && px[i + 1] < 70 && px[i + 2] < 80) ink++;
      if (px[i + 3] > 128 && px[i] < 110 && px[i + 2] > 150) blue++;
    }
    return {n: canvases.length, wave: c && c.classList.contains('wave'), points: c && c.dataset.points,
      ink, blue, id: document.querySelector('#sample-body').dataset.logId};
  });
  check('a flagged beat opens as a waveform', view.id === String(newest.log_id) && view.n === 1 && view.wave &&
    Number(view.points) === len, JSON.stringify({...view, want: newest.log_id}));
  check('the waveform draws the beat and its reconstruction', view.ink > 100 && view.blue > 100,
    `${view.ink} dark, ${view.blue} blue pixels`);
  const held = await (await fetch(`${d.url}/v1/scores/${newest.log_id}/sample`)).json();
  const worst = held.input.reduce((m, v, i) => Math.max(m, Math.abs(v - newest.x[i])), 0);
  check('the waveform is the posted beat', held.input.length === len && held.reconstruction.length === len &&
    worst < 1e-6, `largest difference ${worst}`);
  await page.screenshot({path: path.join(opt.out, 'dashboard-ecg.png'), fullPage: true});
  check('the page logged no errors (heartbeats)', errors.length === 0, errors.join(' | '));
  await page.close();
}

// ------------------------------------------------------------------ the sample sets

// The checked set: normal garments one request at a time from two sources, shifted
// garments in small batches from a third, and a few to the second model.
async function postChecked(d, data) {
  const normals = [], odd = [];
  // Enough shifted garments that more than a page of them is flagged whatever the
  // model's threshold catches of them (about half with a stream memory).
  for (let i = 0; normals.length < 24 || odd.length < 46; i++) {
    if (data.label(i) !== 1 && normals.length < 24) normals.push(data.image(i));
    else if (odd.length < 46) odd.push(shifted(data.image(i)));
  }
  const sent = [];
  for (let i = 0; i < normals.length; i++) {
    sent.push(...await post(d, 'fashion', [normals[i]], i % 2 ? 'cam-2' : 'cam-1'));
    await sleep(20);
  }
  for (let i = 0; i < 40; i += 4) sent.push(...await post(d, 'fashion', odd.slice(i, i + 4), 'cam-3'));
  sent.push(...await post(d, 'fashion-b', odd.slice(40, 46), 'cam-9'));
  return sent;
}

// The README's picture: a minute of mixed traffic with the page open, an anomaly opened.
async function richRun(browser, d, data) {
  const errors = [];
  const page = await openPage(browser, `${d.url}/`, errors);
  await polled(page, 1);
  const pick = (cls) => { const out = []; for (let i = 0; i < data.n; i++) if (cls(data.label(i))) out.push(i); return out; };
  const normal = pick((l) => l !== 1), trouser = pick((l) => l === 1);
  const sources = ['cam-1', 'cam-2', 'line-3', 'line-4'];
  let ni = 0, ti = 0, step = 0;
  const traffic = (async () => {
    for (; step < 130; step++) {
      const batch = [];
      for (let k = 0; k < 5; k++) {
        const r = (step * 5 + k) % 20;
        if (r === 7 || r === 13) batch.push(data.image(trouser[ti++]));
        else if (r === 19 && step % 3 === 0) batch.push(shifted(data.image(normal[ni++])));
        else batch.push(data.image(normal[ni++]));
      }
      await post(d, 'fashion', batch, sources[step % sources.length]);
      await sleep(400 + 300 * Math.sin(step / 9));
    }
  })();
  while (step < 120) await sleep(200);        // the picture is taken with traffic flowing
  const row = await page.$('#anomalies tbody tr');
  if (row) await row.click();
  await polled(page, 2);
  // Down to the anomaly table; the model's metadata is left out of the picture.
  const end = await page.$eval('#h-model', (h) => h.closest('section').getBoundingClientRect().top + window.scrollY);
  await page.screenshot({path: opt.screenshot || path.join(opt.out, 'dashboard-rich.png'), fullPage: true,
    clip: {x: 0, y: 0, width: 1400, height: Math.round(end) - 8}});
  if (errors.length) console.log(`page errors: ${errors.join(' | ')}`);
  await traffic;
  await page.close();
}

// ------------------------------------------------------------------ main

async function main() {
  fs.mkdirSync(opt.out, {recursive: true});
  for (const f of fs.readdirSync(opt.out)) if (/\.db(-wal|-shm)?$/.test(f)) fs.rmSync(path.join(opt.out, f));
  const data = loadFashion(opt.data);
  let browser = null, d = null;
  try {
    const ecg = opt['ecg-model'] ? ['--model', `ecg=${opt['ecg-model']}`] : [];
    d = await startDaemon(['--model', `fashion=${opt.model}`, '--model', `fashion-b=${opt.model}`, ...ecg,
      '--db', path.join(opt.out, 'scores.db')], path.join(opt.out, 'anodmd.log'));
    browser = await chromium.launch({executablePath: opt.chromium, headless: true,
      args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []});
    if (opt.rich) {
      await richRun(browser, d, data);
    } else {
      const sent = await postChecked(d, data);
      await checkDashboard(browser, d, sent);
      if (opt['ecg-model']) await checkEcg(browser, d);
      await checkApiKey(browser, data);
    }
  } catch (e) {
    check('the browser test ran to the end', false, e.stack || String(e));
  } finally {
    if (browser) await browser.close();
    await stopDaemon(d);
  }
  console.log(`screenshots and logs in ${opt.out}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`dashboard: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

// Never hang make test: a run has two minutes.
setTimeout(() => {
  console.log('FAIL the browser test took over 120 s');
  console.log(`dashboard: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, opt.rich ? 600e3 : 120e3).unref();

main();
