// End-to-end test of the demo page in Debian's Chromium (WebGPU on SwiftShader), driven by
// playwright-core: serves the repository root on 127.0.0.1 (a free port), opens /web/, runs the toy
// model (tests/fixtures/toy/weights.safetensors, input 32) on a bundled image and checks that
//   1. the adapter field is filled once the engine is up,
//   2. the top-1 class shown equals the native CLI's (`wgvit classify --json`) for the same image
//      and weights (and so do the other four classes and their probabilities to 0.01%),
//   3. the cold and warm latency fields are filled and no error is shown,
//   4. a stroke drawn on the drawing pad can be classified;
// saves a screenshot to web/e2e-screenshot.png and prints "N passed, N failed" (exit 1 on a failure).
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
const CLI = path.join(process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target"), "release", "wgvit");
const TIMEOUT_MS = 240_000;

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log(`ok   ${name}${detail ? `: ${detail}` : ""}`); }
  else { failed++; console.log(`FAIL ${name}${detail ? `: ${detail}` : ""}`); }
}

function nativeTop1() {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build it with cargo build --release`);
  const out = execFileSync(CLI, ["classify", `tests/fixtures/cli/images/${IMAGE}`, "--model", "toy", "--weights", WEIGHTS,
    "--size", "32", "--json", "--top", "5"], {
    cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
    env: { WGPU_BACKEND: "vulkan", ...process.env },
  });
  const top = JSON.parse(out.trim().split("\n").pop()).top;
  return top;
}

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
  const native = nativeTop1();
  console.log(`native CLI (${path.relative(root, CLI)}): top-1 class ${native[0].index} (${(100 * native[0].prob).toFixed(2)}%)`);

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

    // 2. toy on the bundled image: the page's top-1 = the native CLI's
    await page.selectOption("#weights", "toy");
    await page.selectOption("#model", "toy");
    await page.fill("#size", "32");
    await page.selectOption("#image", IMAGE);
    await page.click("#run");
    await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: TIMEOUT_MS });
    const errorText = await page.isVisible("#error") ? await page.textContent("#error") : "";
    const shown = await page.$$eval("#results li", (lis) => lis.map((li) => ({
      index: Number(li.dataset.index), prob: li.querySelector(".prob").textContent,
    })));
    check("top-1 equals the native CLI", !errorText && shown.length === 5 && shown[0].index === native[0].index
      && shown.every((s, i) => s.index === native[i].index && s.prob === `${(100 * native[i].prob).toFixed(2)}%`),
      errorText || `page ${shown.map((s) => `${s.index}:${s.prob}`).join(" ")} | native ${native.map((t) => `${t.index}:${(100 * t.prob).toFixed(2)}%`).join(" ")}`);

    // 3. latencies filled
    const cold = (await page.textContent("#latency-cold")).trim();
    const warm = (await page.textContent("#latency-warm")).trim();
    const isMs = (s) => /^\d+(\.\d+)? ms$/.test(s);
    check("latency shown", isMs(cold) && isMs(warm) && !errorText, `cold ${cold}, warm ${warm}`);

    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // 4. the drawing pad: draw a stroke, use it as the image, classify it
    const pad = await page.$("#pad");
    const box = await pad.boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.8, { steps: 8 });
    await page.mouse.up();
    await page.click("#pad-use");
    await page.click("#run");
    await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: TIMEOUT_MS });
    const padError = await page.isVisible("#error") ? await page.textContent("#error") : "";
    const padImage = await page.$eval("#image", (s) => s.options[s.selectedIndex].textContent);
    const padTop = await page.$$eval("#results li", (lis) => lis.length);
    check("drawing pad classifies", !padError && padImage === "your drawing" && padTop === 5, padError || `${padTop} classes shown for ${padImage}`);
    console.log(`screenshot: ${path.relative(root, SCREENSHOT)}`);
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
