// Starts the real `switchboard serve` for the tests (SWITCHBOARD_BIN, default target/debug/switchboard).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const BINARY = process.env.SWITCHBOARD_BIN ?? join(ROOT, "target", "debug", "switchboard");

/** A fresh data folder. */
export function dataDir() {
  return mkdtempSync(join(tmpdir(), "switchboard-js-"));
}

/** Runs `switchboard serve` with `args` (default port: a free one); resolves once it listens. */
export function serve({ data = dataDir(), port = 0, args = [] } = {}) {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} does not exist: run cargo build (or set SWITCHBOARD_BIN)`);
  const child = spawn(BINARY, ["serve", "--port", String(port), "--data", data, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`switchboard serve did not start in 20 s:\n${log}`)), 20000);
    child.on("exit", (code) => reject(new Error(`switchboard serve exited with ${code}:\n${log}`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const found = out.match(/listening on http:\/\/([\d.]+:\d+)/);
      if (found) {
        clearTimeout(timer);
        const address = found[1];
        resolve({
          child,
          data,
          port: Number(address.split(":")[1]),
          http: `http://${address}`,
          ws: `ws://${address}`,
          log: () => log,
          stop: () => stopChild(child),
          kill: () => stopChild(child, "SIGKILL"),
        });
      }
    });
  });
}

function stopChild(child, signal = "SIGTERM") {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", () => resolve());
    child.kill(signal);
  });
}
