// The resources of the mesh, indexed once per translation and sorted by name, so that every generator
// reads them in one order whatever order the store (or a test) gave them in.
import {
  type AccessLog,
  type AccessRule,
  type CircuitBreaker,
  type MeshPolicy,
  type Resource,
  type Route,
  type Service,
  type Subset,
  selects,
  type Tracing,
  type WasmPlugin,
  type Workload,
} from "../resources/index.ts";
import { outboundCluster } from "../resources/names.ts";

/** One outbound cluster: a service, or the part of it a subset selects. */
export interface OutboundCluster {
  name: string;
  service: Service;
  subset: Subset | undefined;
  workloads: Workload[];
  /** The CircuitBreaker that protects this cluster, if any. */
  breaker: CircuitBreaker | undefined;
}

export interface Mesh {
  services: Service[];
  service(name: string): Service | undefined;
  /** Every outbound cluster, sorted by name. */
  clusters: OutboundCluster[];
  /** Routes by the service they direct, each list sorted by Route name. */
  routesFor(service: string): Route[];
  accessRules: AccessRule[];
  meshPolicy: MeshPolicy | undefined;
  plugins: WasmPlugin[];
  /** The mesh's Tracing (no spec.service) and the services' own. */
  tracing: Tracing[];
  /** The mesh's AccessLog (no spec.service) and the services' own. */
  accessLogs: AccessLog[];
}

const byName = <T extends { metadata: { name: string } }>(a: T, b: T) =>
  a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;

const ofKind = <K extends Resource["kind"]>(resources: readonly Resource[], kind: K) =>
  resources.filter((r): r is Extract<Resource, { kind: K }> => r.kind === kind).sort(byName);

/**
 * Indexes a consistent set of resources (the store accepts only sets that pass validateReferences).
 * A reference to a service that does not exist is skipped rather than trusted.
 */
export function indexMesh(resources: readonly Resource[]): Mesh {
  const services = ofKind(resources, "Service");
  const serviceByName = new Map(services.map((s) => [s.metadata.name, s]));
  const workloads = ofKind(resources, "Workload");
  const routes = ofKind(resources, "Route");
  const breakers = ofKind(resources, "CircuitBreaker");

  // Every subset anything routes to, protects or falls back to gets a cluster of its own.
  const clusters = new Map<string, OutboundCluster>();
  const want = (serviceName: string, subset: Subset | undefined) => {
    const service = serviceByName.get(serviceName);
    if (service === undefined) return;
    const name = outboundCluster(serviceName, subset);
    if (clusters.has(name)) return;
    const selected = workloads.filter((w) => w.spec.service === serviceName && selects(subset, w));
    clusters.set(name, { name, service, subset, workloads: selected, breaker: undefined });
  };
  for (const service of services) want(service.metadata.name, undefined);
  for (const route of routes) {
    for (const rule of route.spec.rules) for (const d of rule.destinations) want(d.service, d.subset);
  }
  for (const breaker of breakers) {
    want(breaker.spec.service, breaker.spec.subset);
    if (breaker.spec.fallback) want(breaker.spec.fallback.service, breaker.spec.fallback.subset);
  }
  // Two breakers on one cluster: the first by name holds (the filter allows one per cluster).
  for (const breaker of breakers) {
    const cluster = clusters.get(outboundCluster(breaker.spec.service, breaker.spec.subset));
    if (cluster !== undefined && cluster.breaker === undefined) cluster.breaker = breaker;
  }

  const routesByService = new Map<string, Route[]>();
  for (const route of routes) {
    const list = routesByService.get(route.spec.service) ?? [];
    list.push(route);
    routesByService.set(route.spec.service, list);
  }

  return {
    services,
    service: (name) => serviceByName.get(name),
    clusters: [...clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    routesFor: (service) => routesByService.get(service) ?? [],
    accessRules: ofKind(resources, "AccessRule"),
    meshPolicy: ofKind(resources, "MeshPolicy").find((p) => p.metadata.name === "default"),
    plugins: ofKind(resources, "WasmPlugin"),
    tracing: ofKind(resources, "Tracing"),
    accessLogs: ofKind(resources, "AccessLog"),
  };
}
