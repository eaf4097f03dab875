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
  sha256: string;
  bytes: Uint8Array;
}
