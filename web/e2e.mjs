// End-to-end test of the demo page in Debian's Chromium (WebGPU on SwiftShader), driven by
// playwright-core: serves the repository root on 127.0.0.1 (a free port), opens /web/ and checks that
//   1. the adapter field is filled once the engine is up,
//   2. the page's defaults (the bundled hatnet-digits model, the sample digit 7) read a 7, with the
//      same five classes and probabilities (to 0.01%) as the native CLI's defaults
//      (`wgvit classify assets/samples/7.png --json`),
//   3. the toy model (tests/fixtures/toy/weights.safetensors, input 32) on a bundled image shows
//      the native CLI's five classes and probabilities for the same image and weights,
//   4. the cold and warm latency fields and the cold breakdown are filled and no error is shown,
//   5. a vertical stroke drawn on the drawing pad reads as a 1 with the digit model,
//   6. after a reload, hatnet-digits' weights come from the Cache API (no download) and its answer
//      is unchanged; every bundled digit model's cold start and its breakdown are printed;
//   7. attention maps: the overlay toggle draws hatnet-digits' summary map over the preview,
//      clicking a point shows that query's map (different values, the query marked), the layer
//      and head pickers switch maps, and the compare view shows the four digit models' maps;
// saves screenshots to web/e2e-screenshot.png and web/e2e-explain.png and prints "N passed, N failed" (exit 1 on a failure).
// Needs `bash web/build.sh` (web/pkg) and the release CLI (`cargo build --release`).
// Run: cd web && npm ci && node e2e.mjs
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const IMAGE = "gradient.png";
const WEIGHTS = "tests/fixtures/toy/weights.safetensors";
const SCREENSHOT = path.join(here, "e2e-screenshot.png");
const EXPLAIN_SCREENSHOT = path.join(here, "e2e-explain.png");
const CLI = path.join(process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target"), "release", "wgvit");
const TIMEOUT_MS = 240_000;

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log(`ok   ${name}${detail ? `: ${detail}` : ""}`); }
  else { failed++; console.log(`FAIL ${name}${detail ? `: ${detail}` : ""}`); }
}

/** The native CLI's top 5 for `wgvit classify <args> --json --top 5`. */
function nativeTop(args) {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build it with cargo build --release`);
  const out = execFileSync(CLI, ["classify", ...args, "--json", "--top", "5"], {
    cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
    env: { WGPU_BACKEND: "vulkan", ...process.env },
  });
  return JSON.parse(out.trim().split("\n").pop()).top;
}

/** Clicks Classify; returns the error shown (or "") and the classes listed. */
async function classifyOnPage(page) {
  await page.click("#run");
  await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: TIMEOUT_MS });
  const error = await page.isVisible("#error") ? await page.textContent("#error") : "";
  const shown = await page.$$eval("#results li", (lis) => lis.map((li) => ({
    index: Number(li.dataset.index), prob: li.querySelector(".prob").textContent,
  })));
  return { error, shown };
}

const sameAsNative = (shown, native) => shown.length === 5
  && shown.every((s, i) => s.index === native[i].index && s.prob === `${(100 * native[i].prob).toFixed(2)}%`);
const listing = (shown, native) => `page ${shown.map((s) => `${s.index}:${s.prob}`).join(" ")} | native ${native.map((t) => `${t.index}:${(100 * t.prob).toFixed(2)}%`).join(" ")}`;

function startServer() {
  return new Promise((resolve, reject) => {
    const server = spawn("python3", ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"], {
      cwd: root, stdio: ["ignore", "pipe", "pipe"],
    });
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`http.server did not start: ${buf}`)), 15_000);
    const onData = (d) => {
      buf += d;
      const m = buf.match(/port (\d+)/);
      if (m) { clearTimeout(timer); resolve({ server, port: Number(m[1]) }); }
    };
    server.stdout.on("data", onData);
    server.stderr.on("data", onData);
    server.on("exit", (code) => { clearTimeout(timer); reject(new Error(`http.server exited (${code}): ${buf}`)); });
  });
}

async function main() {
  const native = nativeTop([`tests/fixtures/cli/images/${IMAGE}`, "--model", "toy", "--weights", WEIGHTS, "--size", "32"]);
  console.log(`native CLI (${path.relative(root, CLI)}), toy: top-1 class ${native[0].index} (${(100 * native[0].prob).toFixed(2)}%)`);
  const nativeDigit = nativeTop(["assets/samples/7.png"]);
  console.log(`native CLI defaults on assets/samples/7.png: top-1 ${nativeDigit[0].label} (${(100 * nativeDigit[0].prob).toFixed(2)}%)`);

  const { server, port } = await startServer();
  const userDataDir = mkdtempSync(path.join(tmpdir(), "wgvit-e2e-"));
  let browser;
  try {
    // A fresh profile in a temp dir (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      viewport: { width: 1100, height: 900 },
      args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
    });
    // WGVIT_SYNC_PIPELINES=1: pipelines created one by one, without the asynchronous compile
    // ahead (the "before" of a paired cold-start measurement).
    if (process.env.WGVIT_SYNC_PIPELINES === "1") await browser.addInitScript(() => { globalThis.WGVIT_SYNC_PIPELINES = true; });
    const page = browser.pages()[0] ?? await browser.newPage();
    page.on("console", (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
    const url = `http://127.0.0.1:${port}/web/`;
    await page.goto(url);

    // 1. the engine is up and the adapter is shown
    await page.waitForSelector("body[data-state=ready], body[data-state=error]", { timeout: TIMEOUT_MS });
    const adapterText = await page.textContent("#adapter");
    let adapter = {};
    try { adapter = JSON.parse(adapterText); } catch { /* stays empty */ }
    const errorAtStart = await page.isVisible("#error") ? await page.textContent("#error") : "";
    check("adapter shown", !errorAtStart && typeof adapter.adapter === "string" && adapter.adapter.length > 0 && adapter.backend?.length > 0,
      errorAtStart || `${adapter.adapter} (${adapter.backend})`);

    // 2. the defaults: the bundled digit model on the sample 7
    const defaults = { weights: await page.inputValue("#weights"), model: await page.inputValue("#model"), image: await page.inputValue("#image") };
    const digit = await classifyOnPage(page);
    const digitLabel = await page.$eval("#results li .label", (el) => el.textContent).catch(() => "");
    check("defaults read the sample 7 like the native CLI", !digit.error && defaults.weights === "hatnet-digits"
      && defaults.model === "hatnet-digits" && defaults.image === "digit 7" && nativeDigit[0].label === "7"
      && digitLabel.includes("7") && sameAsNative(digit.shown, nativeDigit),
      digit.error || `${JSON.stringify(defaults)}, top-1 '${digitLabel}'; ${listing(digit.shown, nativeDigit)}`);

    // 3. toy on a bundled image: the page's classes = the native CLI's
    await page.selectOption("#weights", "toy");
    await page.selectOption("#model", "toy");
    await page.fill("#size", "32");
    await page.selectOption("#image", IMAGE);
    const toy = await classifyOnPage(page);
    const errorText = toy.error;
    check("toy top-5 equals the native CLI", !toy.error && sameAsNative(toy.shown, native), toy.error || listing(toy.shown, native));

    // 4. latencies filled
    const cold = (await page.textContent("#latency-cold")).trim();
    const warm = (await page.textContent("#latency-warm")).trim();
    const isMs = (s) => /^\d+(\.\d+)? ms$/.test(s);
    const breakdown = (await page.textContent("#cold-breakdown")).trim();
    check("latency shown", isMs(cold) && isMs(warm) && !errorText && /pipelines .*first run/.test(breakdown),
      `cold ${cold}, warm ${warm}; ${breakdown}`);

    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // 5. the drawing pad with the digit model: a vertical stroke is a 1
    await page.selectOption("#weights", "hatnet-digits");
    await page.selectOption("#model", "hatnet-digits");
    await page.fill("#size", "");
    const pad = await page.$("#pad");
    const box = await pad.boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.8, { steps: 8 });
    await page.mouse.up();
    await page.click("#pad-use");
    const drawn = await classifyOnPage(page);
    const padImage = await page.$eval("#image", (s) => s.options[s.selectedIndex].textContent);
    const padLabel = await page.$eval("#results li .label", (el) => el.textContent).catch(() => "");
    check("drawing pad reads a 1", !drawn.error && padImage === "your drawing" && drawn.shown.length === 5 && padLabel.trim().startsWith("1"),
      drawn.error || `top-1 '${padLabel}' for ${padImage}`);

    // 6. a revisit: the weights come from the Cache API, the answers are the same; the cold start
    // of every bundled digit model on this second visit is printed with its breakdown
    await page.reload();
    await page.waitForSelector("body[data-state=ready], body[data-state=error]", { timeout: TIMEOUT_MS });
    const revisit = [];
    for (const id of ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"]) {
      await page.selectOption("#weights", id);
      await page.selectOption("#model", id);
      await page.selectOption("#image", "digit 7");
      const r = await classifyOnPage(page);
      revisit.push({ id, r, cold: (await page.textContent("#latency-cold")).trim(), warm: (await page.textContent("#latency-warm")).trim(),
        breakdown: (await page.textContent("#cold-breakdown")).trim() });
    }
    for (const v of revisit) console.log(`     revisit ${v.id}: cold ${v.cold}, warm ${v.warm}: ${v.breakdown}`);
    const again = revisit[0].r;
    check("a revisit reads the weights from the cache", revisit.every((v) => !v.r.error) && revisit[0].breakdown.includes("(from cache)")
      && sameAsNative(again.shown, nativeDigit), revisit.map((v) => v.r.error).filter(Boolean).join("; ") || `${revisit[0].breakdown}; ${listing(again.shown, nativeDigit)}`);
    console.log(`screenshot: ${path.relative(root, SCREENSHOT)}`);

    // 7. attention maps
    await page.selectOption("#weights", "hatnet-digits");
    await page.selectOption("#model", "hatnet-digits");
    await page.selectOption("#image", "digit 7");
    const settled = () => page.waitForFunction(() => document.body.dataset.state === "done" || document.body.dataset.state === "error", null, { timeout: TIMEOUT_MS });
    const shown = () => page.evaluate(() => globalThis.wgvitShown && { ...globalThis.wgvitShown, values: Array.from(globalThis.wgvitShown.values) });
    // Share of preview pixels with a heat-map tint (the crop alone is grey).
    const tinted = (selector) => page.$$eval(selector, (canvases) => canvases.map((c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 2]) > 24) n++;
      return n / (d.length / 4);
    }));
    await page.check("#overlay");
    await settled();
    const received = await shown();
    const [tintReceived] = await tinted("#preview");
    check("the attention overlay draws the summary map", received?.map === "summary" && received.query === null && received.values.length === 64 * 64
      && tintReceived > 0.5, `${received?.map} ${received?.values.length} values, ${(100 * tintReceived).toFixed(0)}% tinted`);
    const preview = await (await page.$("#preview")).boundingBox();
    await page.mouse.click(preview.x + preview.width * 0.3, preview.y + preview.height * 0.6);
    await page.waitForFunction(() => globalThis.wgvitShown?.query !== null && document.body.dataset.state === "done", null, { timeout: TIMEOUT_MS });
    const clicked = await shown();
    const moved = clicked.values.reduce((s, v, i) => s + Math.abs(v - received.values[i]), 0);
    await page.screenshot({ path: EXPLAIN_SCREENSHOT, fullPage: true });
    check("clicking the image shows that query's attention", clicked.query?.[0] === Math.floor(0.3 * 64) && clicked.query?.[1] === Math.floor(0.6 * 64)
      && moved > 0.1, `query ${clicked.query}, L1 change of the summary ${moved.toFixed(3)}`);
    await page.selectOption("#layer", "blocks.3.0.attn");
    await page.selectOption("#head", "1");
    const head = await shown();
    await page.selectOption("#layer", "blocks.0.0.attn.local");
    const local = await shown();
    check("the layer and head pickers switch maps", head.map === "blocks.3.0.attn head 1" && head.values.length === 4
      && local.map === "blocks.0.0.attn.local" && local.values.length === 256 && local.values.filter((v) => v > 0).length === 16,
      `${head.map} (${head.values.length}), ${local.map} (${local.values.filter((v) => v > 0).length} of ${local.values.length} keys in the query's cell)`);
    await page.click("#compare");
    await settled();
    // Distinct colours on each digit model's summary canvas: a drawn heat map has many.
    const colours = await page.$$eval("#compare-table canvas", (cs) => cs.map((c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      return { model: c.dataset.model, colours: seen.size };
    }));
    const digitMaps = colours.filter((c) => c.model.endsWith("-digits"));
    check("the compare view shows each digit model's map", digitMaps.length === 4 && digitMaps.every((c) => c.colours > 16),
      colours.map((c) => `${c.model} ${c.colours} colours`).join(", "));
    console.log(`screenshot: ${path.relative(root, EXPLAIN_SCREENSHOT)}`);

    // 8. a built-in model's pipelines compile before its weights arrive (Engine.precompile, what a
    // page starts before the download): a fresh engine's model then builds none of its own; a
    // model configured by its weights' metadata is refused with a clear message
    const pre = await page.evaluate(async () => {
      const { Engine } = await import("/web/pkg/wgvit.js");
      const engine = await Engine.create();
      const compiling = engine.precompile("hatnet-micro", [224, 224]);
      const bytes = new Uint8Array(await (await fetch("/tests/fixtures/hatnet-micro/weights.safetensors")).arrayBuffer());
      const precompiled = JSON.parse(await compiling);
      const model = await engine.loadModel("hatnet-micro", bytes);
      const built = JSON.parse(await model.prepare([224, 224]));
      let refused = "";
      try { await engine.precompile("hatnet-digits"); } catch (e) { refused = String(e?.message ?? e); }
      return { precompiled: precompiled.pipelines, built: built.pipelines, refused };
    }).catch((e) => ({ error: String(e) }));
    check("precompile leaves a model nothing to compile", !pre.error && pre.precompiled > 0 && pre.built === 0 && /hatnet-digits/.test(pre.refused) && /metadata/.test(pre.refused),
      pre.error || JSON.stringify(pre));
  } finally {
    if (browser) await browser.close();
    server.kill();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL e2e: ${e instanceof Error ? e.stack : e}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
