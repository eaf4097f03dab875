// The module registry's contract, as the API and the translation use it (implementation:
// registry.ts). Module bytes are content-addressed by sha256; a WasmModule resource in the store
// names the current version of a module.

import type { ModuleCode } from "../envoy/index.ts";
import type { FieldError } from "../resources/index.ts";
import type { StoredResource } from "../store/index.ts";

/**
 * Thrown by push() for bytes that are not a usable Proxy-Wasm module, or a name or description it
 * cannot be stored under; nothing is stored. Error paths: "module", "module.exports",
 * "module.imports", "module.memory", "module.smoke", "configuration", "name", "description".
 */
export class ModuleRejectedError extends Error {
  readonly errors: FieldError[];
  constructor(errors: FieldError[]) {
    super(`module rejected: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`);
    this.name = "ModuleRejectedError";
    this.errors = errors;
  }
}

export interface PushOptions {
  description?: string;
  /** Optimistic concurrency on the WasmModule resource, as in ResourceStore.apply. */
  expectedVersion?: string | null;
  /**
   * Plugin configuration for the validation's smoke run (a string or bytes as is, anything else as
   * JSON); not stored. A module that refuses it is rejected. Without it, the smoke run offers an
   * empty configuration, then `{}`, and a module refusing both is accepted with a warning.
   */
  configuration?: unknown;
  /** The plugin root_id for the smoke run (default ""). */
  rootId?: string;
  /**
   * The caller's write lock (the API's): the store part of the push (read, compare, write) runs
   * under it, the validation before it and outside it, so that pushes validate side by side.
   */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<T>;
  /**
   * Runs after validation accepted the bytes and before the store part: what else must accept this
   * version (the API loads the configurations of the module's WasmPlugins into it); throwing
   * refuses the push, with nothing stored.
   */
  accept?: (code: ModuleCode) => Promise<void>;
}

export interface PushResult {
  /** The WasmModule resource as stored. */
  resource: StoredResource;
  created: boolean;
  /** The same bytes were already the module's current version: nothing changed. */
  unchanged: boolean;
  /** What validation could not check (e.g. no request ran: every default configuration was refused). */
  warnings: FieldError[];
}

export interface ModuleRegistry {
  /** The built-in module's digest; its bytes are served under the reserved name "mesh". */
  readonly builtinSha256: string;
  /** Validates (WebAssembly.validate, Proxy-Wasm exports and ABI, smoke run), stores, publishes. */
  push(name: string, bytes: Uint8Array, options?: PushOptions): Promise<PushResult>;
  /** The bytes of a stored version (GET /v1/modules/<name>/<sha256>.wasm); undefined if unknown. */
  bytes(sha256: string): Promise<Uint8Array | undefined>;
  /** The digest of the built-in module's code as codes() hands it out (its codeSha256). */
  readonly builtinCodeSha256: string;
  /**
   * Code as codes() hands it out, by its own digest (ModuleCode.codeSha256): what a proxy with
   * local module delivery is told to load, served by GET /v1/modules/<name>/<sha256>.wasm too.
   * Known: the built-in's, and the code of the modules the last two codes() calls handed out.
   */
  code(codeSha256: string): Uint8Array | undefined;
  /**
   * The code of every module the given WasmModule resources name, plus the built-in "mesh", by
   * module name; what translation needs to build ECDS resources. Each declares at most the memory
   * ceiling as its maximum, so it may differ from the version as pushed: codeSha256 is its digest.
   */
  codes(modules: readonly { name: string; sha256: string }[]): Promise<Map<string, ModuleCode>>;
}
