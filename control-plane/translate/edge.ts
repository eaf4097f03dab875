// The edge's configuration (schema/edge-config.ts): what an edge worker runs for north-south
// traffic. The filter part is the routing filter's configuration built by the same generator as a
// sidecar's (routingFilterConfig), so a route, a split, a breaker or a header rule behaves alike at
// the edge and in the mesh; the origins say where each cluster the filter can choose is reached.
import { createHash } from "node:crypto";
import { type EdgeConfig, validateEdgeConfig } from "../../schema/edge-config.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import type { Resource } from "../resources/index.ts";
import { indexMesh, type OutboundCluster } from "./mesh.ts";
import { routingFilterConfig } from "./routing-filter.ts";
import { edgeTracing } from "./telemetry.ts";

/**
 * The source identity edge traffic is translated for: the AccessRules' wildcard. A client of the
 * edge is outside the mesh and proves no service identity, so with this source accessDecision
 * applies only the rules whose source is "*" and, without one, MeshPolicy/default's defaultAccess
 * (allow when there is no MeshPolicy). A rule naming a source service never applies at the edge,
 * whether it allows or denies. No Service can be named "*", so nothing else matches it.
 */
export const EDGE_SOURCE = "*";

/**
 * The edge configuration of a set of resources: a pure function, order-independent, whose version
 * is a content hash (sha256 of the canonical JSON of filter and origins), so equal configurations
 * have equal versions in any process and a poll that finds nothing new costs a 304.
 *
 * - `filter`: routingFilterConfig for EDGE_SOURCE (see there for the access semantics).
 * - `tracing`: the mesh's Tracing for edge workers (telemetry.ts edgeTracing), when it names where
 *   they export.
 * - `origins`: for each cluster a route can choose or a breaker can fall back to, the base URLs of
 *   the Workloads it selects, `http://<address>:<port>` (IPv6 in brackets, URL-normalised, sorted,
 *   duplicates merged). A cluster that selects no Workload (a client-only service's default route,
 *   a subset not deployed yet) is listed with no origins: like a cluster without endpoints in
 *   Envoy, the worker answers the requests routed to it with 503 and serves the rest. Clusters
 *   nothing at the edge can choose are left out.
 *
 * Throws only when the result fails validateEdgeConfig, which is a translation bug.
 */
export function translateEdge(resources: readonly Resource[]): EdgeConfig {
  const mesh = indexMesh(resources);
  const filter = routingFilterConfig(mesh, EDGE_SOURCE);
  const byName = new Map(mesh.clusters.map((c) => [c.name, c]));

  const origins: Record<string, string[]> = {};
  for (const name of [...choosable(filter)].sort()) {
    const cluster = byName.get(name);
    origins[name] = cluster === undefined ? [] : originsOf(cluster);
  }

  const tracing = edgeTracing(mesh);
  const content = { filter, origins, ...(tracing !== undefined ? { tracing } : {}) };
  const config: EdgeConfig = { version: contentHash(content), ...content };
  const checked = validateEdgeConfig(config);
  if (!checked.ok) {
    const detail = checked.errors.map((e) => `${e.path}: ${e.message}`).join("; ");
    throw new Error(`translation bug: invalid edge configuration: ${detail}`);
  }
  return config;
}

/** Every cluster the filter can send a request to: route destinations and breaker fallbacks. */
function choosable(filter: FilterConfig): Set<string> {
  const names = new Set<string>();
  for (const route of filter.routes ?? []) for (const d of route.destinations) names.add(d.cluster);
  for (const breaker of filter.breakers ?? []) if (breaker.fallback) names.add(breaker.fallback);
  return names;
}

function originsOf(cluster: OutboundCluster): string[] {
  // Validation admits only IPv4, IPv6 and host names; URL brackets IPv6 and normalises them all
  // (case, IPv6 zero compression, the default port), so equal origins compare equal.
  const urls = cluster.workloads.map((w) => {
    const host = w.spec.address.includes(":") ? `[${w.spec.address}]` : w.spec.address;
    return new URL(`http://${host}:${w.spec.port}`).origin;
  });
  return [...new Set(urls)].sort();
}

/** sha256 (hex) of JSON with object keys sorted: independent of construction order and process. */
export function contentHash(value: unknown): string {
  const canonical = JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
  return createHash("sha256").update(canonical).digest("hex");
}
