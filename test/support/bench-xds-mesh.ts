// The mesh bench:xds applies (through the HTTP API, as an operator would) and the identities of the
// simulated sidecars spread over it. Shared by the bench and its client processes.

import {
  DEFAULT_ADDRESSES,
  DEFAULT_PORTS,
  type ModuleDelivery,
  nodeMetadata,
} from "../../control-plane/envoy/index.ts";
import { API_VERSION } from "../../control-plane/resources/schema.ts";

export const APP_PORT = 9080;

/** The service a changed route or plugin concerns: any one will do, the mesh is uniform. */
export const CHANGED_SERVICE = "svc-07";
/** The one service whose sidecars run the bench's WasmPlugin (the change that affects a subset). */
export const PLUGIN_SERVICE = "svc-03";
export const PLUGIN_NAME = "bench-tag";

export const serviceName = (i: number) => `svc-${String(i).padStart(2, "0")}`;

type Doc = Record<string, unknown>;
const doc = (kind: string, name: string, spec: Doc): Doc => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name },
  spec,
});

/** A Route that splits `service` between its v1 and v2 workloads. */
export function splitRoute(service: string, v1Weight: number): Doc {
  return doc("Route", service, {
    service,
    rules: [
      {
        name: "canary",
        match: { path: { prefix: "/" } },
        destinations: [
          { service, subset: { version: "v1" }, weight: v1Weight },
          { service, subset: { version: "v2" }, weight: 100 - v1Weight },
        ],
        timeoutMs: 2000,
      },
    ],
  });
}

/** A WasmPlugin of the built-in module on PLUGIN_SERVICE's inbound listener; `value` varies it. */
export function tagPlugin(value: string): Doc {
  return doc("WasmPlugin", PLUGIN_NAME, {
    module: "mesh",
    services: [PLUGIN_SERVICE],
    configuration: {
      headerRules: [{ name: "tag", responseHeaders: { set: [{ name: "x-bench", value }] } }],
    },
  });
}

/**
 * `services` services, each with two workloads (v1, v2) and a 90/10 Route; a CircuitBreaker on every
 * fifth service's v2, a handful of AccessRules, and one WasmPlugin.
 */
export function benchMesh(services: number): Doc[] {
  const docs: Doc[] = [];
  for (let i = 0; i < services; i++) {
    const name = serviceName(i);
    docs.push(doc("Service", name, { ports: [{ name: "http", port: APP_PORT, protocol: "http" }] }));
    for (const [n, version] of ["v1", "v2"].entries()) {
      docs.push(
        doc("Workload", `${name}-${version}`, {
          service: name,
          address: `10.${1 + Math.floor(i / 200)}.${i % 200}.${10 + n}`,
          port: APP_PORT,
          labels: { version },
          zone: `zone-${"abc"[i % 3]}`,
        }),
      );
    }
    docs.push(splitRoute(name, 90));
    if (i % 5 === 0) {
      docs.push(
        doc("CircuitBreaker", `${name}-v2`, {
          service: name,
          subset: { version: "v2" },
          consecutiveErrors: 5,
          intervalMs: 10_000,
          baseEjectionMs: 30_000,
          maxEjectionPercent: 50,
          fallback: { service: name, subset: { version: "v1" } },
        }),
      );
    }
  }
  for (let i = 0; i < Math.min(5, services - 1); i++) {
    docs.push(
      doc("AccessRule", `deny-${i}`, {
        source: serviceName(i + 1),
        destination: serviceName(0),
        action: "deny",
      }),
    );
  }
  docs.push(
    doc("AccessRule", "all-to-svc-01", { source: "*", destination: serviceName(1), action: "allow" }),
  );
  docs.push(tagPlugin("round-0"));
  return docs;
}

/** Sidecars of the data-plane agent (issue 10) get a module as a file name, not its bytes. */
export const DEFAULT_DELIVERY: ModuleDelivery = "local";

export interface SimulatedProxy {
  nodeId: string;
  service: string;
  metadata: Record<string, unknown>;
  /**
   * Whether its ADS client accepts gzip-compressed responses: an agent's does (its xDS proxy is a
   * grpc-js client, which lists gzip in grpc-accept-encoding); Envoy's own client does not.
   */
  acceptsGzip: boolean;
}

/**
 * Proxy i of a run: services round-robin, alternating v1/v2, each fronting an app (so an inbound
 * listener); "local" delivery says so in the node metadata, as the data-plane agent's bootstrap does.
 */
export function simulatedProxy(
  run: string,
  i: number,
  services: number,
  delivery: ModuleDelivery = "inline",
): SimulatedProxy {
  const service = serviceName(i % services);
  return {
    nodeId: `${run}-${service}-${i}`,
    service,
    metadata: nodeMetadata({
      service,
      labels: { version: i % 2 === 0 ? "v1" : "v2" },
      outboundPort: DEFAULT_PORTS.outbound,
      inboundPort: DEFAULT_PORTS.inbound,
      appPort: APP_PORT,
      outboundAddress: DEFAULT_ADDRESSES.outbound,
      inboundAddress: DEFAULT_ADDRESSES.inbound,
      appAddress: DEFAULT_ADDRESSES.app,
      moduleDelivery: delivery,
    }),
    // Only the agent asks for local delivery: it stands for an agent, Envoy behind it.
    acceptsGzip: delivery === "local",
  };
}
