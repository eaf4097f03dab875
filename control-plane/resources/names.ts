// Names shared by validation, the translation, the bootstrap and tests: clusters, listeners, route
// configurations, ECDS resources and the request headers the mesh reserves. A name that Envoy, the
// filter and an operator reading `/clusters` all see must be built in one place.
import type { Subset } from "./schema.ts";

/** Set by the routing filter; read by the outbound route's `cluster_header` (schema/headers.ts). */
export { CLUSTER_HEADER, ROUTING_HEADERS, RULE_HEADER } from "../../schema/headers.ts";

/** The DNS suffix of a Kubernetes cluster's services: `<name>.<namespace>.svc.<CLUSTER_DOMAIN>`. */
export const CLUSTER_DOMAIN = "cluster.local";

/**
 * A service name taken apart: `reviews.bookinfo` (discovered on Kubernetes, resources/schema.ts)
 * is name `reviews` in namespace `bookinfo`; a declared service such as `reviews` has no namespace.
 */
export function splitServiceName(service: string): { name: string; namespace: string | undefined } {
  const dot = service.indexOf(".");
  return dot < 0
    ? { name: service, namespace: undefined }
    : { name: service.slice(0, dot), namespace: service.slice(dot + 1) };
}

/** Listener and RouteConfiguration names (one of each per direction). */
export const OUTBOUND = "outbound";
export const INBOUND = "inbound";

/** ECDS name of the built-in routing filter on the outbound listener. */
export const ROUTING_FILTER = "wasmesh.outbound.routing";

/**
 * ECDS name of the access check by verified identity on the inbound listener's mTLS filter chain
 * (Envoy's RBAC filter). The dot after "access" keeps it apart from every WasmPlugin's filter name
 * (`wasmesh.inbound.<plugin>`: a plugin's name is a DNS label, which has no dot).
 */
export const INBOUND_ACCESS_FILTER = "wasmesh.inbound.access.rbac";

/** Prefix of every cluster the outbound route may pick from `x-wasmesh-cluster`. */
export const OUTBOUND_CLUSTER_PREFIX = "outbound|";

/** The filter's limit on a cluster name (schema/filter-config.ts, `Cluster`). */
export const MAX_CLUSTER_NAME = 200;

/** The filter's limit on a rule or route name (schema/filter-config.ts, `Name`). */
export const MAX_FILTER_NAME = 128;

/**
 * `outbound|<service>` for the whole service, `outbound|<service>|<k>=<v>,<k2>=<v2>` for a subset
 * (keys sorted, so equal selectors written in any order name one cluster).
 */
export function outboundCluster(service: string, subset?: Subset): string {
  const keys = Object.keys(subset ?? {}).sort();
  if (subset === undefined || keys.length === 0) return `${OUTBOUND_CLUSTER_PREFIX}${service}`;
  return `${OUTBOUND_CLUSTER_PREFIX}${service}|${keys.map((k) => `${k}=${subset[k]}`).join(",")}`;
}

/**
 * outboundCluster read back: the service and the subset (null for the whole service) a cluster
 * name stands for; undefined for a name outboundCluster does not make. Services and label values
 * have no `|`, `,` or `=` (resources/schema.ts), so the name splits without ambiguity.
 */
export function parseOutboundCluster(
  cluster: string,
): { service: string; subset: Record<string, string> | null } | undefined {
  if (!cluster.startsWith(OUTBOUND_CLUSTER_PREFIX)) return undefined;
  const [service, selector, ...rest] = cluster.slice(OUTBOUND_CLUSTER_PREFIX.length).split("|");
  if (service === undefined || service === "" || rest.length > 0) return undefined;
  if (selector === undefined) return { service, subset: null };
  const subset: Record<string, string> = {};
  for (const pair of selector.split(",")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) return undefined;
    subset[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { service, subset };
}

/** The cluster of the local app behind the inbound listener. */
export function inboundCluster(appPort: number): string {
  return `inbound|${appPort}`;
}

/** ECDS (and http_filters) name of a WasmPlugin on one side of the sidecar. */
export function pluginFilterName(direction: "inbound" | "outbound", plugin: string): string {
  return `wasmesh.${direction}.${plugin}`;
}

/** Filter route (and marker) name of a Route rule: unique across the mesh, since Route names are. */
export function ruleName(route: string, rule: string): string {
  return `${route}/${rule}`;
}

/** Filter route that sends whatever no rule matched to the whole service; no '/' so no rule can clash. */
export function defaultRouteName(service: string): string {
  return `${service}:default`;
}

/**
 * Header rule that refuses calls to a service by the MeshPolicy's defaultAccess. An AccessRule's
 * denial is named after the AccessRule itself; neither form can clash with `<route>/<rule>`.
 */
export function defaultDenyName(service: string): string {
  return `default-deny:${service}`;
}

/** Header rule that removes the client's RULE_HEADER before any rule sets it. */
export const STRIP_RULE_HEADER = "wasmesh:strip-rule-header";
