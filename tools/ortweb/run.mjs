// Cold start, wgvit (WebGPU) against ONNX Runtime Web (wasm EP, 2 threads), on HAT-Net-tiny at
// 224, in Debian's headless Chromium, paired: rounds alternate the engines, and every page load
// gets a fresh browser profile (no HTTP, code or shader cache); MBIT=N emulates an N Mbit/s
// connection (default: the loopback); WGVIT_SYNC_PIPELINES=1 has wgvit create its pipelines with
// the synchronous createComputePipeline only. Each round also measures the
// WebGPU device's FMA peak on the same page (the summary puts both engines' warm GFLOP/s
// against it) and what one more dispatch costs there. Prints the CPU with the figures.
// Not part of CI.
//   cargo build --release && bash web/build.sh
//   python3 tools/ortweb/make_model.py           # torch + onnx: out/hatnet-tiny.{onnx,safetensors}
//   (cd tools/ortweb && npm install) && node tools/ortweb/run.mjs [rounds]
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const rounds = Number(process.argv[2] ?? 2);
// WGVIT_PRECOMPILE=0: wgvit compiles its pipelines after the weights are loaded (a paired
// measurement of the overlap).
const noPrecompile = (process.env.WGVIT_PRECOMPILE === "0" ? "&precompile=0" : "") + (process.env.WGVIT_SYNC_PIPELINES === "1" ? "&sync=1" : "");
// MBIT=N: every page downloads at N Mbit/s with 20 ms latency (Chromium's network emulation), a
// visitor's connection instead of the loopback; the same for both engines.
const mbit = Number(process.env.MBIT ?? 0);
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

// A static server for the repository root with the cross-origin isolation headers ORT's threads need.
const server = createServer(async (req, res) => {
  const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    if (!(await stat(file)).isFile()) throw new Error("not a file");
    const body = await readFile(file);
    res.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cache-Control": "no-store",
    });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

async function once(engine) {
  const dir = mkdtempSync(path.join(tmpdir(), "wgvit-ortweb-"));
  const browser = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  try {
    const page = browser.pages()[0] ?? await browser.newPage();
    page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
    if (mbit > 0) {
      const cdp = await browser.newCDPSession(page);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 20, downloadThroughput: (mbit * 1e6) / 8, uploadThroughput: (mbit * 1e6) / 8 });
    }
    await page.goto(`http://127.0.0.1:${port}/tools/ortweb/cold.html?engine=${engine}${noPrecompile}`);
    await page.waitForFunction(() => window.coldResult, null, { timeout: 600_000, polling: 500 });
    return await page.evaluate(() => window.coldResult);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = { wgvit: [], ort: [], peak: [], dispatch: [] };
console.log(`CPU: ${cpus()[0]?.model ?? "?"}, ${cpus().length} logical cores; Chromium ${process.env.CHROMIUM ?? "/usr/bin/chromium"}; network ${mbit > 0 ? `${mbit} Mbit/s, 20 ms` : "loopback"}`);
for (let r = 1; r <= rounds; r++) {
  for (const engine of ["wgvit", "ort", "peak", "dispatch"]) {
    const res = await once(engine);
    if (res.error) { console.log(`round ${r} ${engine}: error ${res.error}`); process.exitCode = 1; continue; }
    results[engine].push(res);
    if (engine === "peak") {
      console.log(`round ${r} WebGPU FMA peak ${res.gflops.toFixed(1)} GFLOP/s (${res.chains} chains)`);
      continue;
    }
    if (engine === "dispatch") {
      console.log(`round ${r} WebGPU dispatch cost ${res.perDispatchUs.toFixed(1)} µs each (1 tiny dispatch ${res.one.toFixed(2)} ms, 201 in one pass ${res.many.toFixed(2)} ms)`);
      continue;
    }
    const steps = Object.entries(res.steps).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(" · ");
    console.log(`round ${r} ${engine.padEnd(5)} cold ${(res.cold / 1000).toFixed(2)} s (${steps}), warm ${res.warm.toFixed(0)} ms, isolated ${res.isolated}${res.threads ? `, ${res.threads} threads` : ""}`);
    if (res.precompiled) {
      const p = res.precompiled;
      console.log(`        precompile (during the download): graph ${p.graphMs.toFixed(0)} ms · shader modules ${p.modulesMs.toFixed(0)} ms · ${p.pipelines} pipelines ${p.pipelinesMs.toFixed(0)} ms (concurrent compile ${p.pipelinesAsyncMs.toFixed(0)} ms)`);
    }
    if (res.build) {
      const b = res.build;
      console.log(`        build: upload ${b.uploadMs.toFixed(0)} ms · shader modules ${b.modulesMs.toFixed(0)} ms · ${b.pipelines} pipelines ${b.pipelinesMs.toFixed(0)} ms (concurrent compile ${b.pipelinesAsyncMs.toFixed(0)} ms) · bind groups ${b.bindGroupsMs.toFixed(0)} ms`);
    }
  }
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const [wc, oc] = [med(results.wgvit.map((x) => x.cold)), med(results.ort.map((x) => x.cold))];
const [ww, ow] = [med(results.wgvit.map((x) => x.warm)), med(results.ort.map((x) => x.warm))];
console.log(`median cold: wgvit ${(wc / 1000).toFixed(2)} s, ORT-web ${(oc / 1000).toFixed(2)} s: ${(wc / oc).toFixed(1)}×; warm: wgvit ${ww.toFixed(0)} ms, ORT-web ${ow.toFixed(0)} ms: ${(ww / ow).toFixed(1)}×`);
// The same network's FLOPs over each engine's warm time, against what the WebGPU device can do
// at all: at its FMA peak, a forward could take no less than flops / peak.
const flops = results.wgvit[0]?.build?.flops;
const pk = med(results.peak.map((x) => x.gflops));
if (flops && pk) {
  const rate = (ms) => flops / ms / 1e6;
  console.log(`${(flops / 1e9).toFixed(2)} GFLOP per forward: wgvit ${rate(ww).toFixed(1)} GFLOP/s (${(100 * rate(ww) / pk).toFixed(0)} % of the WebGPU FMA peak, ${pk.toFixed(1)} GFLOP/s), ORT-web ${rate(ow).toFixed(1)} GFLOP/s (${(rate(ow) / pk).toFixed(1)}× that peak); at the peak a WebGPU forward would take ${(flops / pk / 1e6).toFixed(0)} ms, ${(flops / pk / 1e6 / ow).toFixed(1)}× ORT-web's`);
}
server.close();
