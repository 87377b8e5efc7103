// One engine's cold start on HAT-Net-tiny at 224, from the page script's first line: library load,
// engine creation, the model's fetch, its load, (wgvit) its pipelines compiled from the model id
// while the weights download (`Engine.precompile`; ?precompile=0 turns that off), building the
// graph, and the first forward; then the median of three
// warm forwards. ONNX Runtime Web runs its wasm execution provider with 2 threads (the page is
// cross-origin isolated by run.mjs's server); wgvit runs on WebGPU (SwiftShader in headless
// Chromium). Both read the same network: tools/ortweb/make_model.py writes both files.
// ?engine=peak measures the WebGPU device's FMA throughput on the same page instead, and
// ?engine=dispatch what one more dispatch costs there.
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
  // ?sync=1: every pipeline created with the synchronous createComputePipeline (paired runs).
  if (new URLSearchParams(location.search).get("sync") === "1") globalThis.WGVIT_SYNC_PIPELINES = true;
  const { default: init, Engine } = await import("/web/pkg/wgvit.js");
  await init();
  const eng = await Engine.create();
  const loaded = since();
  // The pipelines compile (in the browser's threads) while the weights download and load; the
  // graph is shapes, and hatnet-tiny's configuration is its id. ?precompile=0 turns it off.
  const overlap = new URLSearchParams(location.search).get("precompile") !== "0";
  const compiling = overlap ? eng.precompile("hatnet-tiny", [SHAPE[2], SHAPE[3]]) : Promise.resolve("null");
  const bytes = await fetchBytes("out/hatnet-tiny.safetensors");
  const fetched = since();
  const model = await eng.loadModel("hatnet-tiny", bytes);
  const created = since();
  // What the first run would build anyway, built first so that its breakdown can be shown: the
  // weights' upload and the bind groups, while the precompile's pipelines finish compiling. The
  // first run then submits its dispatches as their pipelines arrive.
  const build = JSON.parse(await model.prepare([SHAPE[2], SHAPE[3]]));
  const prepared = since();
  const logits = await model.run(input, SHAPE);
  const cold = since();
  const precompiled = JSON.parse(await compiling);
  const warm = await median(() => model.run(input, SHAPE));
  const steps = { library: loaded, fetch: fetched - loaded, load: created - fetched, build: prepared - created, "first (with the rest of the compile)": cold - prepared };
  return { cold, warm, steps, build, precompiled, logit0: logits[0] };
}

// shaders/fma_peak.wgsl for `chains` independent vec4 accumulators, its chains written out here
// (wgvit's preprocessor does that from the `#for` lines, which a browser does not read).
function fmaPeakKernel(chains) {
  const each = (f) => Array.from({ length: chains }, (_, c) => f(c)).join("\n");
  const round = each((c) => `      a${c} = fma(a${c}, m, s);`);
  return `struct Params { iters: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = seed[0] + vec4<f32>(f32(gid.x) * 1e-7);
  let m = vec4<f32>(0.9999, 0.9998, 0.9997, 0.9996);
${each((c) => `  var a${c} = s + ${c}.0 * 0.1;`)}
  for (var i = 0u; i < params.iters; i++) {
${Array.from({ length: 8 / chains }, () => round).join("\n")}
  }
  let t = ${each((c) => `a${c}`).split("\n").join(" + ")};
  sink[gid.x] = t.x + t.y + t.z + t.w;
}`;
}

// The WebGPU device's f32 FMA throughput on this page (SwiftShader in headless Chromium): the
// best of 2, 4 and 8 chains, each the best of 5 timed dispatches after a warm-up. It bounds what
// any WebGPU kernel can reach here, wgvit's or another's.
async function peak() {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const [WG, GROUPS, ITERS] = [64, 256, 1024];
  const buffer = (size, usage) => device.createBuffer({ size, usage });
  const params = buffer(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const seed = buffer(16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
  const sink = buffer(GROUPS * WG * 4, GPUBufferUsage.STORAGE);
  device.queue.writeBuffer(params, 0, new Uint32Array([ITERS, 0, 0, 0]));
  device.queue.writeBuffer(seed, 0, new Float32Array([0.5, 0.25, 0.125, 1.0]));
  let best = { gflops: 0, chains: 0 };
  for (const chains of [2, 4, 8]) {
    const module = device.createShaderModule({ code: fmaPeakKernel(chains) });
    const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
    const entries = [params, seed, sink].map((b, binding) => ({ binding, resource: { buffer: b } }));
    const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    for (let i = 0; i < 6; i++) {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(GROUPS);
      pass.end();
      const t = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const gflops = (GROUPS * WG * ITERS * 64) / (performance.now() - t) / 1e6;
      if (i > 0 && gflops > best.gflops) best = { gflops, chains };
    }
  }
  device.destroy();
  return best;
}

// What one more dispatch costs on this page's WebGPU device: a chain of N tiny dispatches (64
// invocations each, every one reading the buffer the previous one wrote, as a model's graph
// does) in one compute pass and one submission, for N = 1 and 201; the median of 15 of each.
async function dispatch() {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const code = `@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) { data[gid.x] = data[gid.x] * 0.5 + 1.0; }`;
  const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  const data = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: data } }] });
  const time = async (n) => {
    const times = [];
    for (let i = 0; i < 16; i++) {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      for (let d = 0; d < n; d++) {
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(1);
      }
      pass.end();
      const t = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      if (i > 0) times.push(performance.now() - t);
    }
    return times.sort((a, b) => a - b)[7];
  };
  const [one, many] = [await time(1), await time(201)];
  device.destroy();
  return { one, many, perDispatchUs: ((many - one) / 200) * 1000 };
}

try {
  const engines = { ort, wgvit, peak, dispatch };
  if (!engines[engine]) throw new Error(`?engine=ort|wgvit|peak, got ${engine}`);
  const result = await engines[engine]();
  result.engine = engine;
  result.isolated = self.crossOriginIsolated;
  log(JSON.stringify(result));
  window.coldResult = result;
} catch (e) {
  log(`error: ${e}`);
  window.coldResult = { engine, error: String(e) };
}
