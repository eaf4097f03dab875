// What the control plane sends a proxy: xDS resources by type URL, as plain objects that
// encodeMessage() (protos.ts) encodes, and the code of the Wasm modules they embed. The contract
// between translation (control-plane/translate/), which makes them, and the xDS server
// (control-plane/xds/) and the module registry, which serve and supply them.
import type { TypeUrl } from "./protos.ts";
import type { ResourceTypes } from "./types.generated.ts";

/**
 * One xDS resource: its name and its content as a plain object ready for encodeMessage(), typed
 * with the message of its type URL where it is made (translate/); the xDS server, which only
 * encodes and serves it, takes any object.
 */
export interface XdsResource<Message extends object = object> {
  name: string;
  resource: Message;
}

/** Everything one proxy is sent, by type URL, each typed. A type with no resources is an empty array. */
export type ProxyConfig = { [U in TypeUrl]: XdsResource<ResourceTypes[U]>[] };

/** The bytes of a module version and their digest. */
export interface ModuleCode {
  /** The version's digest: of the bytes as pushed, which a WasmModule names. */
  sha256: string;
  bytes: Uint8Array;
  /**
   * The digest of `bytes` when they are not the version as pushed: the module registry hands out
   * code whose declared memory maximum it capped (codes()). A proxy that loads modules from files
   * is told to load this digest (localModuleFile), and the API serves these bytes under it.
   * Absent: `bytes` are the version as pushed, whose digest is `sha256`.
   */
  codeSha256?: string;
}

/**
 * Where a proxy with "local" module delivery finds a module's code: relative to the directory
 * Envoy runs in (the data-plane agent's data directory, where it keeps the files it fetched from
 * GET /v1/modules/<module>/<sha256>.wasm), so every agent is sent the same resource.
 */
export function localModuleFile(module: string, code: ModuleCode): string {
  return `modules/${module}/${code.codeSha256 ?? code.sha256}.wasm`;
}

/** localModuleFile's paths: the module name and the digest of the file's bytes. */
export const LOCAL_MODULE_FILE = /^modules\/([a-z0-9][a-z0-9-]*)\/([0-9a-f]{64})\.wasm$/;
