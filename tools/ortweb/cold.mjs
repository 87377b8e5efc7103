// One engine's cold start on HAT-Net-tiny at 224, from the page script's first line: library load,
// engine creation, the model's fetch, its load, (wgvit) building the graph and its pipelines, and
// the first forward; then the median of three
// warm forwards. ONNX Runtime Web runs its wasm execution provider with 2 threads (the page is
// cross-origin isolated by run.mjs's server); wgvit runs on WebGPU (SwiftShader in headless
// Chromium). Both read the same network: tools/ortweb/make_model.py writes both files.
const start = performance.now();
const engine = new URLSearchParams(location.search).get("engine");
const SHAPE = [1, 3, 224, 224];
const input = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i) * 0.5);
const log = (s) => { document.getElementById("log").textContent += s + "\n"; };
const since = () => performance.now() - start;

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function median(run) {
  const times = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[1];
}

async function ort() {
  const ort = await import("./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs");
  ort.env.wasm.numThreads = 2;
  ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", location.href).href;
  const loaded = since();
  const bytes = await fetchBytes("out/hatnet-tiny.onnx");
  const fetched = since();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  const created = since();
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", input, SHAPE) };
  const out = await session.run(feeds);
  const cold = since();
  const logits = out[session.outputNames[0]].data;
  const warm = await median(() => session.run(feeds));
  return { cold, warm, steps: { library: loaded, fetch: fetched - loaded, session: created - fetched, first: cold - created }, logit0: logits[0], threads: ort.env.wasm.numThreads };
}

async function wgvit() {
  const { default: init, Engine } = await import("/web/pkg/wgvit.js");
  await init();
  const eng = await Engine.create();
  const loaded = since();
  const bytes = await fetchBytes("out/hatnet-tiny.safetensors");
  const fetched = since();
  const model = await eng.loadModel("hatnet-tiny", bytes);
  const created = since();
  // What the first run would build anyway, built first so that its breakdown can be shown.
  const build = JSON.parse(await model.prepare([SHAPE[2], SHAPE[3]]));
  const prepared = since();
  const logits = await model.run(input, SHAPE);
  const cold = since();
  const warm = await median(() => model.run(input, SHAPE));
  const steps = { library: loaded, fetch: fetched - loaded, load: created - fetched, build: prepared - created, first: cold - prepared };
  return { cold, warm, steps, build, logit0: logits[0] };
}

try {
  const result = engine === "ort" ? await ort() : engine === "wgvit" ? await wgvit() : (() => { throw new Error(`?engine=ort|wgvit, got ${engine}`); })();
  result.engine = engine;
  result.isolated = self.crossOriginIsolated;
  log(JSON.stringify(result));
  window.coldResult = result;
} catch (e) {
  log(`error: ${e}`);
  window.coldResult = { engine, error: String(e) };
}
