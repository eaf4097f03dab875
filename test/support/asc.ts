// Compiles AssemblyScript test modules with asc's API, entirely in memory: nothing is written to
// disk, so parallel test files never share an output path.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import asc from "assemblyscript/asc";

export interface AscOptions {
  /** asc's base directory: where the entry file, and any asconfig.json, are looked up. */
  baseDir: string;
  /**
   * Hide asconfig.json from asc. The project's describes the mesh build (its runtime, and abort
   * routed into the SDK); a probe that brings its own flags must not inherit it.
   */
  ignoreAsconfig?: boolean;
}

const OUT_FILE = "module.wasm";

/** Compiles `entry` with `flags` and returns the binary; throws with asc's diagnostics on error. */
export async function compileAssemblyScript(
  entry: string,
  flags: string[],
  options: AscOptions,
): Promise<Uint8Array<ArrayBuffer>> {
  const written = new Map<string, Uint8Array | string>();
  const stderr = asc.createMemoryStream();
  const result = await asc.main([entry, "--baseDir", options.baseDir, ...flags, "--outFile", OUT_FILE], {
    stdout: asc.createMemoryStream(),
    stderr,
    readFile: (name, baseDir) =>
      options.ignoreAsconfig && name === "asconfig.json"
        ? null
        : readFile(resolve(baseDir, name), "utf8").catch(() => null),
    writeFile: (name, contents) => {
      written.set(name, contents);
    },
    listFiles: () => [],
  });
  if (result.error) throw new Error(`asc ${entry}: ${result.error.message}\n${stderr.toString()}`);
  const binary = [...written].find(([name]) => name.endsWith(OUT_FILE))?.[1];
  if (!(binary instanceof Uint8Array))
    throw new Error(`asc wrote no binary (wrote ${[...written.keys()].join(", ")})`);
  return new Uint8Array(binary);
}
