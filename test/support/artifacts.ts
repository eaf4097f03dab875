// Where the build puts the filter module (npm run build:filters).
import { fileURLToPath } from "node:url";

export const RELEASE_WASM = fileURLToPath(new URL("../../build/mesh.wasm", import.meta.url));
export const DEBUG_WASM = fileURLToPath(new URL("../../build/mesh.debug.wasm", import.meta.url));
