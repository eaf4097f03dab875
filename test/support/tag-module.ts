// The tag module (test/fixtures/tag-module): two versions of a small filter, compiled in memory
// with the filters' own build options, for tests that push module versions to the control plane.
import { fileURLToPath } from "node:url";
import { compileAssemblyScript } from "./asc.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const cache = new Map<1 | 2, Promise<Uint8Array<ArrayBuffer>>>();

/** The module that answers `x-tag-module: <version>` and echoes its configuration in `x-tag-config`. */
export function tagModule(version: 1 | 2): Promise<Uint8Array<ArrayBuffer>> {
  let bytes = cache.get(version);
  if (!bytes) {
    bytes = compileAssemblyScript(
      `test/fixtures/tag-module/v${version}.ts`,
      ["--config", "asconfig.json", "--target", "release"],
      { baseDir: ROOT },
    );
    cache.set(version, bytes);
  }
  return bytes;
}
