// What the control plane sends a proxy: xDS resources by type URL, as plain objects that
// encodeMessage() (protos.ts) encodes, and the code of the Wasm modules they embed. The contract
// between translation (control-plane/translate/), which makes them, and the xDS server
// (control-plane/xds/) and the module registry, which serve and supply them.
import type { TypeUrl } from "./protos.ts";

/** One xDS resource: its name and its content as a plain object ready for encodeMessage(). */
export interface XdsResource {
  name: string;
  resource: Record<string, unknown>;
}

/** Everything one proxy is sent, by type URL. A type with no resources is an empty array. */
export type ProxyConfig = Record<TypeUrl, XdsResource[]>;

/** The bytes of a module version and their digest. */
export interface ModuleCode {
  sha256: string;
  bytes: Uint8Array;
}
