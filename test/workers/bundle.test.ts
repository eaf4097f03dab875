// `npm run build:worker` (wrangler deploy --dry-run --outdir build/worker) builds the bundle that
// ships, in CI, without credentials: the script plus mesh.wasm as a module of its own, which
// Workers compile at deploy time (they refuse to compile WebAssembly at run time).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { describe, expect, inject, it } from "vitest";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { BUNDLE_DIR, bundleModules } from "./harness.ts";

describe("npm run build:worker", () => {
  const build = inject("workerBuild");

  it("bundles the worker with mesh.wasm as a module, and reports the size", () => {
    expect(build.output).toContain("--dry-run: exiting now.");
    expect(readdirSync(BUNDLE_DIR)).toContain("index.js");
    // The .wasm the script imports (earlier builds leave theirs beside it, under other hashes).
    const modules = bundleModules();
    const wasm = Object.keys(modules).filter((name) => modules[name]?.type === "wasm");
    expect(wasm).toHaveLength(1);
    const shipped = readFileSync(`${BUNDLE_DIR}/${wasm[0]}`);
    expect(shipped.equals(readFileSync(RELEASE_WASM)), "the bundle carries build/mesh.wasm as it is").toBe(
      true,
    );
    // The script imports the module by its bundled name; nothing inlines or fetches the bytes.
    expect(readFileSync(`${BUNDLE_DIR}/index.js`, "utf8")).toContain(wasm[0]);

    const upload = /Total Upload: ([\d.]+ KiB) \/ gzip: ([\d.]+ KiB)/.exec(build.output);
    expect(upload, build.output).not.toBeNull();
    const script = statSync(`${BUNDLE_DIR}/index.js`).size;
    console.log(
      `worker bundle: upload ${upload?.[1]} (gzip ${upload?.[2]}); index.js ${kib(script)}, ` +
        `${wasm[0]} ${kib(shipped.byteLength)}; built in ${build.durationMs} ms`,
    );
    // Far below Workers' 3 MiB (free plan) limit on the compressed upload.
    expect(Number.parseFloat(upload?.[2] ?? "")).toBeLessThan(1024);
  });
});

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
