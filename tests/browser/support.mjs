// What the browser tests run against: headless Chromium (Debian's, through playwright-core), the
// real `switchboard serve`, and Python's `websockets` as a foreign server. Each fails loudly when it
// cannot start.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { before, after } from "node:test";
import { chromium } from "playwright-core";

import { serve as serveFor } from "../../clients/js/test/serve.mjs";

export { serve, dataDir } from "../../clients/js/test/serve.mjs";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CHROMIUM = process.env.SWITCHBOARD_CHROMIUM ?? "/usr/bin/chromium";

/** Headless Chromium. */
export async function browser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} does not exist: install Debian's chromium (scripts/test does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/**
 * Starts headless Chromium and `switchboard serve` (with `serveOptions`) before the file's tests and
 * stops them after. Tests read `world.chromium` and `world.server`, and may replace the server
 * (a restart on the same port).
 */
export function withBrowserAndServer(serveOptions = {}) {
  const world = { chromium: null, server: null };
  before(async () => {
    world.chromium = await browser();
    world.server = await serveFor(serveOptions);
  });
  after(async () => {
    await world.chromium?.close();
    await world.server?.stop();
  });
  return world;
}

/** A page of `server` at `path` whose console errors and page errors fail the test that reads them. */
export async function open(context, server, path = "/demo/chat") {
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (error) => page.problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") page.problems.push(`console: ${message.text()}`);
  });
  await page.goto(`${server.http}${path}`);
  return page;
}

/** Python's `websockets` server of tests/peers (SWITCHBOARD_PYTHON, else the venv scripts/test makes). */
export function pythonServer(port = 0) {
  const python = process.env.SWITCHBOARD_PYTHON ?? join(ROOT, ".cache", "venv", "bin", "python");
  if (!existsSync(python)) throw new Error(`${python} does not exist: run scripts/test once, or set SWITCHBOARD_PYTHON to a Python with websockets`);
  const child = spawn(python, [join(ROOT, "tests", "peers", "python_server.py"), String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the Python server did not start:\n${log}`)), 15000);
    child.on("exit", (code) => reject(new Error(`the Python server exited with ${code}:\n${log}`)));
    child.stdout.on("data", (chunk) => {
      const found = String(chunk).match(/READY (\d+)/);
      if (found) {
        clearTimeout(timer);
        const stop = () =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.removeAllListeners("exit");
            child.on("exit", () => done());
            child.kill();
          });
        resolve({ ws: `ws://127.0.0.1:${found[1]}`, port: Number(found[1]), stop });
      }
    });
  });
}

/** A project folder with these files (path -> text). */
export function project(files) {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-project-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}
