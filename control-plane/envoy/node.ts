// A sidecar's identity as it travels in Envoy's node: written by `wasmesh bootstrap` (nodeMetadata),
// read back by the xDS server from the first request of a stream (parseNodeIdentity), and what
// translation, the xDS server and `wasmesh status` know a proxy by.
import { Value } from "@sinclair/typebox/value";
import { Labels, ServiceName } from "../resources/schema.ts";
import { isIpAddress } from "./addresses.ts";

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
  /**
   * How the sidecar gets Wasm module code: "inline" in each ECDS resource (the default, and what a
   * sidecar from `wasmesh bootstrap` gets), or "local": ECDS names a file by the code's sha256
   * (localModuleFile), which the data-plane agent fetches once and keeps where Envoy runs.
   */
  moduleDelivery: ModuleDelivery;
  /**
   * "agent": the data-plane agent serves this Envoy its certificate and the trust bundle over SDS
   * (envoy/sds.ts), so it is configured for mTLS; absent (a sidecar from `wasmesh bootstrap`):
   * no certificate, plain text.
   */
  sds?: "agent";
}

export type ModuleDelivery = "inline" | "local";

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
  moduleDelivery: "wasmesh.module_delivery",
  sds: "wasmesh.sds",
} as const;

export const DEFAULT_PORTS = { outbound: 15001, inbound: 15006, admin: 9901 } as const;

/** Listener and app addresses when the node metadata does not say (see ProxyIdentity). */
export const DEFAULT_ADDRESSES = { outbound: "127.0.0.1", inbound: "0.0.0.0", app: "127.0.0.1" } as const;

/** Envoy's node as the xDS server sees it, metadata already converted from a protobuf Struct. */
export interface EnvoyNode {
  id?: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
}

export type NodeIdentityResult = { ok: true; proxy: ProxyIdentity } | { ok: false; error: string };

const SERVICE_NAME = new RegExp(ServiceName.pattern as string);

/**
 * Reads a ProxyIdentity from a node. Ports may be numbers or decimal strings (a Struct carries
 * both); what is absent takes the defaults of DEFAULT_PORTS and DEFAULT_ADDRESSES, and the service
 * falls back to node.cluster. Every problem is reported, each naming its field.
 */
export function parseNodeIdentity(node: EnvoyNode): NodeIdentityResult {
  const errors: string[] = [];
  const metadata = node.metadata ?? {};
  const field = (key: string) => `node.metadata["${key}"]`;

  const nodeId = node.id;
  if (typeof nodeId !== "string" || nodeId.length === 0) errors.push("node.id: is required");

  let service = "";
  const declared = metadata[NODE_METADATA.service];
  if (declared !== undefined) {
    if (typeof declared === "string" && SERVICE_NAME.test(declared)) service = declared;
    else errors.push(`${field(NODE_METADATA.service)}: must be a service name (got ${show(declared)})`);
  } else if (typeof node.cluster === "string" && node.cluster.length > 0) {
    if (SERVICE_NAME.test(node.cluster)) service = node.cluster;
    else errors.push(`node.cluster: must be a service name (got ${show(node.cluster)})`);
  } else {
    errors.push(`${field(NODE_METADATA.service)}: is required (or node.cluster)`);
  }

  let labels: Record<string, string> = {};
  const rawLabels = metadata[NODE_METADATA.labels];
  if (rawLabels !== undefined) {
    if (Value.Check(Labels, rawLabels)) labels = { ...rawLabels };
    else {
      errors.push(
        `${field(NODE_METADATA.labels)}: must be a map of labels in Kubernetes syntax (got ${show(rawLabels)})`,
      );
    }
  }

  const port = (key: string, fallback: number | undefined): number | undefined => {
    const raw = metadata[key];
    if (raw === undefined) return fallback;
    const value = typeof raw === "string" && /^\d{1,5}$/.test(raw) ? Number(raw) : raw;
    if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 65_535) return value;
    errors.push(`${field(key)}: must be a port number from 1 to 65535 (got ${show(raw)})`);
    return fallback;
  };
  const address = (key: string, fallback: string): string => {
    const raw = metadata[key];
    if (raw === undefined) return fallback;
    if (typeof raw === "string" && isIpAddress(raw)) return raw;
    // Listeners bind to it and the app's cluster is STATIC: a host name cannot do either.
    errors.push(`${field(key)}: must be an IPv4 or IPv6 address (got ${show(raw)})`);
    return fallback;
  };

  const outboundPort = port(NODE_METADATA.outboundPort, DEFAULT_PORTS.outbound) as number;
  const inboundPort = port(NODE_METADATA.inboundPort, DEFAULT_PORTS.inbound) as number;
  const appPort = port(NODE_METADATA.appPort, undefined);
  const outboundAddress = address(NODE_METADATA.outboundAddress, DEFAULT_ADDRESSES.outbound);
  const inboundAddress = address(NODE_METADATA.inboundAddress, DEFAULT_ADDRESSES.inbound);
  const appAddress = address(NODE_METADATA.appAddress, DEFAULT_ADDRESSES.app);
  if (appPort !== undefined && errors.length === 0) {
    if (appPort === inboundPort && sameHost(appAddress, inboundAddress)) {
      errors.push(`${field(NODE_METADATA.appPort)}: must differ from the inbound port (${inboundPort})`);
    }
  }

  let moduleDelivery: ModuleDelivery = "inline";
  const rawDelivery = metadata[NODE_METADATA.moduleDelivery];
  if (rawDelivery === "local" || rawDelivery === "inline") moduleDelivery = rawDelivery;
  else if (rawDelivery !== undefined) {
    errors.push(
      `${field(NODE_METADATA.moduleDelivery)}: must be "inline" or "local" (got ${show(rawDelivery)})`,
    );
  }

  const rawSds = metadata[NODE_METADATA.sds];
  if (rawSds !== undefined && rawSds !== "agent") {
    errors.push(`${field(NODE_METADATA.sds)}: must be "agent" when present (got ${show(rawSds)})`);
  }

  if (errors.length > 0) return { ok: false, error: `invalid node identity: ${errors.join("; ")}` };
  return {
    ok: true,
    proxy: {
      nodeId: nodeId as string,
      service,
      labels,
      outboundPort,
      inboundPort,
      ...(appPort !== undefined ? { appPort } : {}),
      outboundAddress,
      inboundAddress,
      appAddress,
      moduleDelivery,
      ...(rawSds === "agent" ? { sds: "agent" as const } : {}),
    },
  };
}

/** The app behind the inbound listener on the same address and port would be the listener itself. */
function sameHost(app: string, listener: string): boolean {
  return app === listener || listener === "0.0.0.0" || listener === "::";
}

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/**
 * The node.metadata that carries `proxy` (the inverse of parseNodeIdentity): ports as decimal
 * strings and labels as an object, which a protobuf Struct holds without loss. The module delivery
 * is written only when it is "local" (absent means inline, as for every Envoy before it existed),
 * and SDS only when the agent serves it.
 */
export function nodeMetadata(
  proxy: Omit<ProxyIdentity, "nodeId" | "moduleDelivery"> & { moduleDelivery?: ModuleDelivery },
): Record<string, unknown> {
  return {
    [NODE_METADATA.service]: proxy.service,
    [NODE_METADATA.labels]: { ...proxy.labels },
    [NODE_METADATA.outboundPort]: String(proxy.outboundPort),
    [NODE_METADATA.inboundPort]: String(proxy.inboundPort),
    ...(proxy.appPort !== undefined ? { [NODE_METADATA.appPort]: String(proxy.appPort) } : {}),
    [NODE_METADATA.outboundAddress]: proxy.outboundAddress,
    [NODE_METADATA.inboundAddress]: proxy.inboundAddress,
    [NODE_METADATA.appAddress]: proxy.appAddress,
    ...(proxy.moduleDelivery === "local" ? { [NODE_METADATA.moduleDelivery]: "local" } : {}),
    ...(proxy.sds === "agent" ? { [NODE_METADATA.sds]: "agent" } : {}),
  };
}
