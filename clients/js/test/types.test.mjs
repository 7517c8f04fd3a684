// switchboard.d.ts compiles under tsc --strict and describes the module as test/usage.ts uses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

test("the type declarations check under tsc --strict", () => {
  const args = [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--lib", "es2022,dom,dom.asynciterable", join(here, "usage.ts")];
  let output = "";
  try {
    output = execFileSync(process.execPath, args, { encoding: "utf8" });
  } catch (error) {
    output = `${error.stdout}${error.stderr}`;
  }
  assert.equal(output, "");
});
