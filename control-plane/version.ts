// wasmesh's version, package.json's: what `wasmesh version` prints for the CLI and what the API
// reports for the server (/healthz, the OpenAPI document).
import { readFileSync } from "node:fs";

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
