// wgvit demo page: no framework. Serve the repository root and open /web/: the bundled weights
// and images are fetched from ../assets/ (the digit models and samples that ship with wgvit) and
// ../tests/fixtures/ (the random-weight test fixtures).
import init, { Engine, modelIds } from "./pkg/wgvit.js";

const DIGIT_MODELS = ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"];
// The random-weight test fixtures: tests/fixtures/<id>/weights.safetensors for the library's toy
// network and every family's micro variants (filled in once the wasm module is loaded).
const isFixtureId = (id) => id === "toy" || /-micro(-psi)?$/.test(id);
const BUNDLED_WEIGHTS = [
  // trained on handwritten digits (tools/train_digits.py): the default
  ...DIGIT_MODELS.map((id) => ({ key: id, model: id, url: `../assets/models/${id}.safetensors`, kind: "trained, digits" })),
];
const BUNDLED_IMAGES = [
  ...[7, 0, 1, 2, 3, 4, 5, 6, 8, 9].map((d) => ({ key: `digit ${d}`, url: `../assets/samples/${d}.png` })),
  ...["gradient.png", "gray.png", "shapes.jpg", "alpha.webp"].map((name) => ({ key: name, url: `../tests/fixtures/cli/images/${name}` })),
];

const $ = (id) => document.getElementById(id);
const ui = {
  weights: $("weights"), weightsFile: $("weights-file"), model: $("model"), size: $("size"),
  image: $("image"), imageFile: $("image-file"), drop: $("drop"), run: $("run"), compare: $("compare"),
  preview: $("preview"), results: $("results"), cold: $("latency-cold"), warm: $("latency-warm"),
  breakdown: $("cold-breakdown"),
  inputSize: $("input-size"), status: $("status"), error: $("error"), adapter: $("adapter"),
  compareTable: $("compare-table"), pad: $("pad"), padUse: $("pad-use"), padClear: $("pad-clear"),
  overlay: $("overlay"), layer: $("layer"), head: $("head"), queryReset: $("query-reset"), explainInfo: $("explain-info"),
};

let engine = null;
let engineMs = null; // Engine.create(): adapter + device, once per page
const userWeights = new Map(); // key -> { name, bytes }
let userImage = null; // { name, bitmap }
// The last explanation shown on the preview: Model.explain's result for the current weights,
// model and image (cleared when any of them changes).
let explained = null; // { result }
// Read by the end-to-end test (web/e2e.mjs): the map on the preview and its values.
globalThis.wgvitShown = null;
const models = new Map(); // `${weightsKey}|${modelId}|${size}` -> Model (graphs cached per shape inside)

function setState(state) { document.body.dataset.state = state; }
function status(text) { ui.status.textContent = text; }
function showError(e) {
  const msg = e instanceof Error ? e.message : String(e);
  ui.error.textContent = `error: ${msg}`;
  ui.error.hidden = false;
  console.error(msg);
  setState("error");
}
function clearError() { ui.error.hidden = true; ui.error.textContent = ""; }
const ms = (t) => `${t.toFixed(1)} ms`;

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text ?? value;
  select.append(o);
  return o;
}

/** [H, W] from the size field, or undefined (the weights' wgvit.input_size, else the model default). */
function parseSize() {
  const s = ui.size.value.trim();
  if (!s) return undefined;
  const parts = s.split(/[xX]/).map((p) => Number(p.trim()));
  if (!(parts.length === 1 || parts.length === 2) || parts.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`input size '${s}': expected S or HxW, e.g. 224 or 224x448`);
  }
  return parts.length === 1 ? [parts[0], parts[0]] : parts;
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  return new Uint8Array(await r.arrayBuffer());
}

const kb = (n) => `${(n / 1024).toFixed(0)} KB`;

/** The body of `r`, reporting `progress(bytesSoFar, total or 0)` as chunks arrive. */
async function readWithProgress(r, progress) {
  const total = Number(r.headers.get("content-length")) || 0;
  if (!r.body) return new Uint8Array(await r.arrayBuffer());
  const reader = r.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    progress(got, total);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

const sha256 = async (bytes) =>
  Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

// Downloaded weights are kept in the Cache API under their content hash ("sha256/<hex>"); a
// second entry maps the file's URL and version (size + Last-Modified, from a HEAD request) to
// that hash. A revisit with an unchanged file costs one HEAD request and no download; a changed
// file, a corrupt entry or a browser without the Cache API (or crypto.subtle) simply downloads.
const WEIGHTS_CACHE = "wgvit-weights-v1";

async function cachedWeights(url, progress) {
  const cache = globalThis.caches && globalThis.crypto?.subtle ? await caches.open(WEIGHTS_CACHE).catch(() => null) : null;
  let version = null;
  if (cache) {
    const head = await fetch(url, { method: "HEAD", cache: "no-cache" }).catch(() => null);
    if (head?.ok) version = `${head.headers.get("content-length")}|${head.headers.get("last-modified")}`;
    const index = version && await cache.match(`${new URL(url, location.href)}#${version}`);
    const hash = index && await index.text();
    const hit = hash && await cache.match(new URL(`sha256/${hash}`, location.href).href);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await sha256(bytes) === hash) return { bytes, cached: true };
    }
  }
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  const bytes = await readWithProgress(r, progress);
  if (cache && version) {
    try {
      const hash = await sha256(bytes);
      await cache.put(new URL(`sha256/${hash}`, location.href).href, new Response(bytes));
      await cache.put(`${new URL(url, location.href)}#${version}`, new Response(hash));
    } catch { /* a full or disabled cache only costs the next visit a download */ }
  }
  return { bytes, cached: false };
}

/** Pixels exactly as stored (no color management, no premultiplication), like PIL's decode. */
async function bitmapOf(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

async function currentImage() {
  if (ui.image.value.startsWith("user:")) return userImage.bitmap;
  const img = BUNDLED_IMAGES.find((i) => i.key === ui.image.value);
  const r = await fetch(img.url);
  if (!r.ok) throw new Error(`${img.url}: HTTP ${r.status}`);
  return bitmapOf(await r.blob());
}

function drawPreview(bitmap) {
  const c = ui.preview, ctx = c.getContext("2d");
  c.classList.remove("overlay");
  delete c.dataset.map;
  ctx.clearRect(0, 0, c.width, c.height);
  const s = Math.min(c.width / bitmap.width, c.height / bitmap.height);
  const w = bitmap.width * s, h = bitmap.height * s;
  ctx.drawImage(bitmap, (c.width - w) / 2, (c.height - h) / 2, w, h);
}

/** The weights' bytes, and whether they came from the Cache API. */
async function weightsBytes(key) {
  if (key.startsWith("user:")) return { bytes: userWeights.get(key).bytes, cached: false };
  const w = BUNDLED_WEIGHTS.find((w) => w.key === key);
  return cachedWeights(w.url, (got, total) => status(`${w.model}: weights ${kb(got)}${total ? ` of ${kb(total)}` : ""}`));
}

/** The model for (weights, id), loaded once; `phases` (ms) is set when this call loaded it. A
 * built-in id's pipelines (for `size`, else its usual size) compile while the weights download;
 * an id configured by its weights' metadata (the digit models) is refused, and compiles later. */
async function getModel(weightsKey, modelId, size) {
  const cacheKey = `${weightsKey}|${modelId}`;
  if (models.has(cacheKey)) return { model: models.get(cacheKey), phases: null };
  const t0 = performance.now();
  const compiling = modelId ? engine.precompile(modelId, size ?? undefined).then(JSON.parse, () => null) : Promise.resolve(null);
  const { bytes, cached } = await weightsBytes(weightsKey);
  const t1 = performance.now();
  status(`${modelId}: reading ${kb(bytes.length)} of weights`);
  const model = await engine.loadModel(modelId, bytes);
  const t2 = performance.now();
  models.set(cacheKey, model);
  // Not waited for here: the graph's build uploads the weights and makes its bind groups while
  // the pipelines finish compiling, and the first run waits for each pipeline as it needs it.
  return { model, phases: { weights: t1 - t0, cached, load: t2 - t1, compiling } };
}

/** Classifies the image with (weights, model): cold = fetch + load + graph + first run (its
 * phases in `breakdown`), warm = one more run. */
async function classifyOnce(weightsKey, modelId, bitmap, size) {
  const t0 = performance.now();
  const { model, phases } = await getModel(weightsKey, modelId, size);
  let breakdown = null;
  if (phases) {
    status(`${modelId}: building the graph and its pipelines`);
    const tp = performance.now();
    const build = JSON.parse(await model.prepare(size));
    const tf = performance.now();
    status(`${modelId}: ${build.pipelines} pipelines built; first run`);
    breakdown = { ...phases, build, prepare: tf - tp, tf };
  }
  // The first run submits its dispatches as their pipelines finish compiling.
  const first = await model.classify(bitmap, 5, size);
  const t1 = performance.now();
  if (breakdown) {
    breakdown.firstRun = t1 - breakdown.tf;
    breakdown.precompiled = await phases.compiling;
  }
  const top = await model.classify(bitmap, 5, size);
  const t2 = performance.now();
  explained = null;
  const shown = size ?? Array.from(model.inputSize());
  return { top, first, cold: phases ? t1 - t0 : null, breakdown, warm: t2 - t1, size: shown };
}

/** One line under the cold figure: where the cold start went. */
function breakdownText(b) {
  const f = (t) => `${t.toFixed(0)} ms`;
  const other = b.prepare - b.build.graphMs - b.build.planMs - b.build.uploadMs - b.build.modulesMs - b.build.pipelinesMs - b.build.bindGroupsMs;
  return [
    `weights ${f(b.weights)}${b.cached ? " (from cache)" : ""}`, `load ${f(b.load)}`,
    ...(b.precompiled ? [`${b.precompiled.pipelines} pipelines compiled from the model id, during the download (${f(b.precompiled.pipelinesMs)})`] : []),
    `graph ${f(b.build.graphMs)}`,
    `plan ${f(b.build.planMs)}`, `upload ${f(b.build.uploadMs)}`, `shader modules ${f(b.build.modulesMs)}`,
    `pipelines ${f(b.build.pipelinesMs)} (${b.build.pipelines}${b.build.pipelinesAsyncMs > 0 ? `, ${f(b.build.pipelinesAsyncMs)} compiling them concurrently` : ""})`, `bind groups ${f(b.build.bindGroupsMs)}`,
    ...(other > 1 ? [`other ${f(other)}`] : []), `first run ${f(b.firstRun)}`,
    ...(engineMs !== null ? [`(engine ${f(engineMs)}, once)`] : []),
  ].join(" · ");
}

function showTop(top) {
  ui.results.replaceChildren();
  for (const { index, label, prob } of top) {
    const li = document.createElement("li");
    li.dataset.index = index;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label ? `${label} (${index})` : `class ${index}`;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * prob).toFixed(2)}%`;
    bar.append(fill);
    const p = document.createElement("span");
    p.className = "prob";
    p.textContent = `${(100 * prob).toFixed(2)}%`;
    li.append(name, bar, p);
    ui.results.append(li);
  }
}

// ---- attention maps ------------------------------------------------------------------------

/** The heat-map ramp of `wgvit explain` (black, purple, red, orange, pale yellow), t in 0..1. */
function heat(t) {
  const stops = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  return stops[i].map((v, c) => v + f * (stops[i + 1][c] - v));
}

/** The map the pickers select: { name, height, width, values }. */
function selectedMap(result) {
  const name = ui.layer.value;
  if (name === "summary") return { ...result.summary, name: "summary" };
  const m = result.maps.find((x) => x.name === name) ?? result.maps[0];
  const h = ui.head.value;
  if (h !== "mean" && m.heads && m.heads[Number(h)]) return { ...m, values: m.heads[Number(h)], name: `${m.name} head ${h}` };
  return m;
}

/** Fills the layer and head pickers for `result`, keeping the current choice where it exists. */
function fillPickers(result) {
  const layer = ui.layer.value;
  ui.layer.replaceChildren();
  option(ui.layer, "summary", "summary (all layers)");
  for (const m of result.maps) option(ui.layer, m.name, `${m.name} (${m.height}×${m.width})`);
  ui.layer.value = [...ui.layer.options].some((o) => o.value === layer) ? layer : "summary";
  fillHeads(result);
}

function fillHeads(result) {
  const head = ui.head.value;
  const m = result.maps.find((x) => x.name === ui.layer.value);
  ui.head.replaceChildren();
  option(ui.head, "mean", "mean of heads");
  for (let h = 0; h < (m?.heads?.length ?? 0); h++) option(ui.head, String(h), `head ${h}`);
  ui.head.value = [...ui.head.options].some((o) => o.value === head) ? head : "mean";
  ui.head.disabled = ui.head.options.length === 1;
}

/** Draws the model's input crop on `canvas` with `map` over it (scaled to its largest value)
 * and the query pixel marked. */
function drawExplained(canvas, result, map) {
  const [h, w] = result.inputSize;
  const ctx = canvas.getContext("2d");
  const crop = new ImageData(new Uint8ClampedArray(result.crop), w, h);
  const peak = Math.max(...map.values, 0);
  const px = crop.data;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const cell = Math.min(map.height - 1, Math.floor(y * map.height / h)) * map.width + Math.min(map.width - 1, Math.floor(x * map.width / w));
      const c = heat(peak > 0 ? map.values[cell] / peak : 0);
      const i = 4 * (y * w + x), grey = (px[i] + px[i + 1] + px[i + 2]) / 3;
      for (let k = 0; k < 3; k++) px[i + k] = 0.4 * grey + 0.6 * c[k];
    }
  }
  const tmp = new OffscreenCanvas(w, h);
  tmp.getContext("2d").putImageData(crop, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  if (result.query) {
    const [qx, qy] = result.query;
    const cx = (qx + 0.5) * canvas.width / w, cy = (qy + 0.5) * canvas.height / h;
    ctx.strokeStyle = "#0ff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(cx - 7, cy); ctx.lineTo(cx + 7, cy); ctx.moveTo(cx, cy - 7); ctx.lineTo(cx, cy + 7);
    ctx.stroke();
  }
}

function showExplained() {
  const result = explained.result;
  const map = selectedMap(result);
  drawExplained(ui.preview, result, map);
  ui.preview.classList.add("overlay");
  ui.preview.dataset.map = map.name;
  ui.preview.dataset.query = result.query ? result.query.join(",") : "";
  globalThis.wgvitShown = { model: result.model, map: map.name, query: result.query, values: map.values };
  ui.explainInfo.textContent = result.query
    ? `query pixel (${result.query[0]}, ${result.query[1]}) of the ${result.inputSize[1]}×${result.inputSize[0]} input: its attention`
    : "every query's attention, averaged: click the image for one query's";
}

/** Runs Model.explain for the current weights, model and image (with the query pixel, if any)
 * and shows the selected map on the preview. */
async function explainNow(query) {
  clearError();
  setState("running");
  try {
    const size = parseSize();
    const bitmap = await currentImage();
    const modelId = ui.model.value;
    status(`${modelId}: attention maps…`);
    const { model } = await getModel(ui.weights.value, modelId);
    const t0 = performance.now();
    const result = await model.explain(bitmap, query, size);
    explained = { result };
    fillPickers(result);
    showExplained();
    showTop(result.top);
    status(`${modelId}: ${result.maps.length} attention maps in ${ms(performance.now() - t0)}`);
    setState("done");
  } catch (e) {
    showError(e);
  }
}

function setUpExplain() {
  ui.overlay.addEventListener("change", () => {
    if (ui.overlay.checked) explainNow(undefined);
    else currentImage().then(drawPreview).catch(showError);
  });
  ui.layer.addEventListener("change", () => { if (explained) { fillHeads(explained.result); if (ui.overlay.checked) showExplained(); } });
  ui.head.addEventListener("change", () => { if (explained && ui.overlay.checked) showExplained(); });
  ui.queryReset.addEventListener("click", () => { if (ui.overlay.checked) explainNow(undefined); });
  ui.preview.addEventListener("click", (e) => {
    if (!ui.overlay.checked || !explained) return;
    const r = ui.preview.getBoundingClientRect();
    const [h, w] = explained.result.inputSize;
    const x = Math.min(w - 1, Math.floor((e.clientX - r.left) / r.width * w));
    const y = Math.min(h - 1, Math.floor((e.clientY - r.top) / r.height * h));
    explainNow([x, y]);
  });
}

/** A small canvas with `result`'s summary over its input crop (the compare view). */
function summaryCanvas(result) {
  const c = document.createElement("canvas");
  c.width = c.height = 96;
  drawExplained(c, result, result.summary);
  c.dataset.model = result.model;
  return c;
}

async function run() {
  clearError();
  setState("running");
  ui.run.disabled = ui.compare.disabled = true;
  try {
    const size = parseSize();
    const bitmap = await currentImage();
    drawPreview(bitmap);
    const modelId = ui.model.value;
    status(`running ${modelId}…`);
    const r = await classifyOnce(ui.weights.value, modelId, bitmap, size);
    showTop(r.top);
    if (r.cold !== null) {
      ui.cold.textContent = ms(r.cold);
      ui.breakdown.textContent = breakdownText(r.breakdown);
      console.log(`cold ${ms(r.cold)}: ${ui.breakdown.textContent}`);
    }
    ui.warm.textContent = ms(r.warm);
    ui.inputSize.textContent = `${r.size[0]}×${r.size[1]}`;
    status(`${modelId}: top-1 ${r.top[0].label ?? "class " + r.top[0].index} (${(100 * r.top[0].prob).toFixed(2)}%)`);
    setState("done");
    if (ui.overlay.checked) await explainNow(undefined);
  } catch (e) {
    showError(e);
  } finally {
    ui.run.disabled = ui.compare.disabled = false;
  }
}

async function compare() {
  clearError();
  setState("running");
  ui.run.disabled = ui.compare.disabled = true;
  const tbody = ui.compareTable.querySelector("tbody");
  tbody.replaceChildren();
  ui.compareTable.hidden = false;
  try {
    const bitmap = await currentImage();
    drawPreview(bitmap);
    for (const w of BUNDLED_WEIGHTS) {
      status(`compare: ${w.model}…`);
      const tr = document.createElement("tr");
      try {
        const r = await classifyOnce(w.key, w.model, bitmap, undefined);
        const t = r.top[0];
        const top5 = r.top.map((x) => `${x.label ?? x.index} ${(100 * x.prob).toFixed(1)}%`).join(", ");
        for (const v of [w.key, `${w.model} @${r.size[0]}×${r.size[1]}`, t.label ?? `class ${t.index}`,
          `${(100 * t.prob).toFixed(2)}%`, r.cold === null ? "(loaded)" : r.cold.toFixed(1), r.warm.toFixed(1), top5]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        const { model } = await getModel(w.key, w.model);
        const td = document.createElement("td");
        td.append(summaryCanvas(await model.explain(bitmap, undefined, undefined)));
        tr.append(td);
      } catch (e) {
        const td = document.createElement("td");
        td.colSpan = 8;
        td.textContent = `${w.key}: ${e instanceof Error ? e.message : e}`;
        tr.append(td);
      }
      tbody.append(tr);
    }
    status("compare: done");
    setState("done");
  } catch (e) {
    showError(e);
  } finally {
    ui.run.disabled = ui.compare.disabled = false;
  }
}

function addUserWeights(file) {
  return file.arrayBuffer().then((buf) => {
    const key = `user:${file.name}`;
    userWeights.set(key, { name: file.name, bytes: new Uint8Array(buf) });
    for (const k of [...models.keys()]) if (k.startsWith(`${key}|`)) models.delete(k);
    if (![...ui.weights.options].some((o) => o.value === key)) option(ui.weights, key, `${file.name} (yours)`);
    ui.weights.value = key;
    status(`weights ${file.name}: ${buf.byteLength} bytes; pick the model and classify`);
  });
}

async function addUserImage(file) {
  const bitmap = await bitmapOf(file);
  userImage = { name: file.name, bitmap };
  const key = "user:image";
  let o = [...ui.image.options].find((x) => x.value === key);
  if (!o) o = option(ui.image, key);
  o.textContent = `${file.name} (yours)`;
  ui.image.value = key;
  drawPreview(bitmap);
}

/** A drawing pad for digit models: white strokes on black, like MNIST. */
function setUpPad() {
  const c = ui.pad, ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = c.width / 12;
  ctx.lineCap = ctx.lineJoin = "round";
  let drawing = false;
  const at = (e) => {
    const r = c.getBoundingClientRect();
    return [(e.clientX - r.left) * (c.width / r.width), (e.clientY - r.top) * (c.height / r.height)];
  };
  c.addEventListener("pointerdown", (e) => { drawing = true; c.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...at(e)); });
  c.addEventListener("pointermove", (e) => { if (drawing) { ctx.lineTo(...at(e)); ctx.stroke(); } });
  c.addEventListener("pointerup", () => { drawing = false; });
  ui.padClear.addEventListener("click", clear);
  ui.padUse.addEventListener("click", () => {
    createImageBitmap(c).then((bitmap) => {
      userImage = { name: "drawing", bitmap };
      const key = "user:image";
      let o = [...ui.image.options].find((x) => x.value === key);
      if (!o) o = option(ui.image, key);
      o.textContent = "your drawing";
      ui.image.value = key;
      drawPreview(bitmap);
    }).catch(showError);
  });
}

function handleFiles(files) {
  for (const f of files) {
    const p = /\.(safetensors|pth|pt|bin)$/i.test(f.name) ? addUserWeights(f) : addUserImage(f);
    p.catch(showError);
  }
}

async function main() {
  setUpPad();
  setUpExplain();
  await init();
  // random weights: the engine's test fixtures, for the ids the library lists
  for (const id of modelIds().filter(isFixtureId)) {
    BUNDLED_WEIGHTS.push({ key: id, model: id, url: `../tests/fixtures/${id}/weights.safetensors`, kind: "fixture, random" });
  }
  for (const w of BUNDLED_WEIGHTS) option(ui.weights, w.key, `${w.key} (${w.kind})`);
  for (const i of BUNDLED_IMAGES) option(ui.image, i.key);
  ui.weights.addEventListener("change", () => {
    const w = BUNDLED_WEIGHTS.find((x) => x.key === ui.weights.value);
    if (w) ui.model.value = w.model;
  });
  ui.weightsFile.addEventListener("change", () => handleFiles(ui.weightsFile.files));
  ui.imageFile.addEventListener("change", () => handleFiles(ui.imageFile.files));
  ui.image.addEventListener("change", () => {
    explained = null;
    if (ui.overlay.checked) explainNow(undefined);
    else currentImage().then(drawPreview).catch(showError);
  });
  for (const el of [ui.drop, document.body]) {
    el.addEventListener("dragover", (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
    el.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
    el.addEventListener("drop", (e) => {
      e.preventDefault();
      ui.drop.classList.remove("over");
      handleFiles(e.dataTransfer.files);
    });
  }
  ui.run.addEventListener("click", run);
  ui.compare.addEventListener("click", compare);

  for (const id of [...DIGIT_MODELS, ...modelIds()]) option(ui.model, id);
  ui.model.value = BUNDLED_WEIGHTS[0].model;
  currentImage().then(drawPreview).catch(showError);
  status("requesting a WebGPU adapter…");
  const te = performance.now();
  engine = await Engine.create();
  engineMs = performance.now() - te;
  const info = JSON.parse(engine.adapterInfo());
  // wgpu leaves the adapter's name empty on the web: add what the browser's GPUAdapterInfo says.
  try {
    const a = await navigator.gpu?.requestAdapter();
    const i = a?.info;
    if (i) {
      info.browser = { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
        isFallbackAdapter: i.isFallbackAdapter ?? a.isFallbackAdapter };
      if (!info.adapter) info.adapter = [i.vendor, i.architecture, i.description].filter(Boolean).join(" ") || "WebGPU adapter";
    }
  } catch { /* the engine's own info is enough */ }
  ui.adapter.textContent = JSON.stringify(info, null, 2);
  ui.adapter.dataset.adapter = info.adapter;
  ui.run.disabled = ui.compare.disabled = false;
  status(`ready on ${info.adapter || "(unnamed adapter)"} (${info.backend})`);
  setState("ready");
}

main().catch(showError);
