// The contract between the translation (control-plane/translate/), the xDS server
// (control-plane/xds/) and the bootstrap (control-plane/cli/): who a proxy is, and what it is sent.
import type { TypeUrl } from "../xds/protos.ts";

/**
 * Who a sidecar is: what `wasmesh bootstrap` writes into Envoy's node (id, cluster = service, and
 * the metadata below) and what the xDS server reads back from the first request of a stream.
 */
export interface ProxyIdentity {
  nodeId: string;
  /** The service whose workload this sidecar fronts: the source of its outbound calls. */
  service: string;
  labels: Record<string, string>;
  /** Outbound listener: the app sends plain HTTP here with `Host: <destination service>`. */
  outboundPort: number;
  /** Inbound listener: forwards to the local app on appPort. Absent appPort: no inbound listener. */
  inboundPort: number;
  appPort?: number;
  /** Address the listeners bind (default 127.0.0.1 for outbound, 0.0.0.0 for inbound). */
  outboundAddress: string;
  inboundAddress: string;
  /** Address of the local app (default 127.0.0.1). */
  appAddress: string;
}

/** Keys of Envoy's node.metadata that carry a ProxyIdentity; values are strings or a string map. */
export const NODE_METADATA = {
  service: "wasmesh.service",
  labels: "wasmesh.labels",
  outboundPort: "wasmesh.outbound_port",
  inboundPort: "wasmesh.inbound_port",
  appPort: "wasmesh.app_port",
  outboundAddress: "wasmesh.outbound_address",
  inboundAddress: "wasmesh.inbound_address",
  appAddress: "wasmesh.app_address",
} as const;

export const DEFAULT_PORTS = { outbound: 15001, inbound: 15006, admin: 9901 } as const;

/** Listener and app addresses when the node metadata does not say (see ProxyIdentity). */
export const DEFAULT_ADDRESSES = { outbound: "127.0.0.1", inbound: "0.0.0.0", app: "127.0.0.1" } as const;

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
