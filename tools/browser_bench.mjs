// Warm latency of the bundled digit models in headless Chromium (WebGPU on SwiftShader), for one
// browser package or two side by side: rounds alternate the packages, each round loads every
// model in a fresh page and times `runs` forwards after two warm-up runs; prints the CPU, then per
// model the median over rounds of each package's median (and the ratio B / A). Not part of CI.
//   bash web/build.sh && cp -r web/pkg /tmp/pkg-a        # package A (e.g. before a change)
//   ... change, bash web/build.sh && cp -r web/pkg /tmp/pkg-b
//   node tools/browser_bench.mjs [--rounds 3] [--runs 30] /tmp/pkg-a [/tmp/pkg-b]
// playwright-core comes from web/node_modules (cd web && npm install); CHROMIUM overrides
// /usr/bin/chromium.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const { chromium } = createRequire(path.join(root, "web", "package.json"))("playwright-core");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const [, value] = args.splice(i, 2);
  return Number(value);
};
const rounds = option("--rounds", 3);
const runs = option("--runs", 30);
const packages = args.map((p) => path.resolve(p));
if (packages.length < 1 || packages.length > 2 || !(rounds >= 1) || !(runs >= 1)) {
  console.error("usage: node tools/browser_bench.mjs [--rounds R] [--runs N] PKG_DIR_A [PKG_DIR_B]");
  process.exit(2);
}
const MODELS = ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };

// /pkg/<i>/... serves package i; /assets/... the repository's models; / a blank page.
const server = createServer(async (req, res) => {
  const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let file = null;
  const m = url.match(/^\/pkg\/(\d)\/([\w.-]+)$/);
  if (m && packages[Number(m[1])]) file = path.join(packages[Number(m[1])], m[2]);
  else if (/^\/assets\/models\/[\w.-]+$/.test(url)) file = path.join(root, url);
  try {
    const body = url === "/" ? "<!doctype html><title>bench</title>" : await readFile(file);
    const type = url === "/" ? TYPES[".html"] : TYPES[path.extname(file)] ?? "application/octet-stream";
    res.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;

// In the page: load package `pkg`, then per model the median of `runs` timed forwards.
async function measure(page, pkg) {
  return page.evaluate(async ({ pkg, models, runs }) => {
    const { default: init, Engine } = await import(`/pkg/${pkg}/wgvit.js`);
    await init();
    const engine = await Engine.create();
    const out = {};
    for (const id of models) {
      const bytes = new Uint8Array(await (await fetch(`/assets/models/${id}.safetensors`)).arrayBuffer());
      const model = await engine.loadModel(id, bytes);
      const [h, w] = model.inputSize();
      const shape = [1, 3, h, w];
      const input = new Float32Array(3 * h * w).map((_, i) => Math.sin(i) * 0.5);
      for (let i = 0; i < 2; i++) await model.run(input, shape);
      const times = [];
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        await model.run(input, shape);
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      out[id] = times[Math.floor(times.length / 2)];
      model.free?.();
    }
    return out;
  }, { pkg, models: MODELS, runs });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = packages.map(() => Object.fromEntries(MODELS.map((m) => [m, []])));
const profile = mkdtempSync(path.join(tmpdir(), "wgvit-bench-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking"],
});
try {
  console.log(`CPU: ${cpus()[0]?.model ?? "unknown"} (${cpus().length} cores); Chromium ${browser.browser()?.version() ?? ""}`);
  for (let r = 0; r < rounds; r++) {
    for (let p = 0; p < packages.length; p++) {
      const page = await browser.newPage();
      await page.goto(origin + "/");
      const got = await measure(page, p);
      await page.close();
      for (const m of MODELS) results[p][m].push(got[m]);
      console.log(`round ${r + 1} ${"AB"[p]}: ${MODELS.map((m) => `${m} ${got[m].toFixed(1)} ms`).join(", ")}`);
    }
  }
  console.log(`warm median over ${rounds} rounds of the median of ${runs} runs, A = ${packages[0]}${packages[1] ? `, B = ${packages[1]}` : ""}`);
  for (const m of MODELS) {
    const a = median(results[0][m]);
    const line = `${m.padEnd(14)} A ${a.toFixed(1).padStart(7)} ms`;
    if (packages.length === 1) { console.log(line); continue; }
    const b = median(results[1][m]);
    console.log(`${line} | B ${b.toFixed(1).padStart(7)} ms | B/A ${(b / a).toFixed(2)}`);
  }
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
