// The resource kinds as the CLI names them on the command line and in API paths.
import type { ImportedResource, Kind } from "../resources/index.ts";
import { type ApiClient, CliError } from "./client.ts";

/**
 * The resource kinds, in the resource model's order. Listed rather than imported: the model loads
 * TypeBox and the YAML parser, a cost every command would pay at start. `satisfies` keeps each name
 * a real kind; test/control-plane/cli.test.ts checks that none is missing.
 */
export const KINDS = [
  "Service",
  "Workload",
  "Route",
  "CircuitBreaker",
  "AccessRule",
  "MeshPolicy",
  "WasmModule",
  "WasmPlugin",
  "Tracing",
  "AccessLog",
  "ImportedResource",
] as const satisfies readonly Kind[];

/**
 * Other meshes' kinds that apply converts (control-plane/imports FIELDS; test/control-plane/cli.test.ts
 * checks the two agree). `get` and `delete` reach their originals through ImportedResources.
 * Kubernetes' v1 Service is converted but not listed: `service` is the native kind it becomes.
 */
export const IMPORTED_KINDS: readonly (readonly [kind: string, group: string, short?: string])[] = [
  ["VirtualService", "networking.istio.io", "vs"],
  ["DestinationRule", "networking.istio.io", "dr"],
  ["ServiceEntry", "networking.istio.io", "se"],
  ["WorkloadEntry", "networking.istio.io", "we"],
  ["Gateway", "networking.istio.io", "gw"],
  ["PeerAuthentication", "security.istio.io", "pa"],
  ["AuthorizationPolicy", "security.istio.io", "ap"],
  ["WasmPlugin", "extensions.istio.io"],
  ["Telemetry", "telemetry.istio.io"],
  ["Mesh", "kuma.io"],
  ["Dataplane", "kuma.io"],
  ["TrafficRoute", "kuma.io"],
  ["TrafficPermission", "kuma.io"],
  ["CircuitBreaker", "kuma.io"],
  ["MeshHTTPRoute", "kuma.io"],
  ["MeshTrafficPermission", "kuma.io"],
  ["MeshCircuitBreaker", "kuma.io"],
  ["MeshTrace", "kuma.io"],
  ["MeshAccessLog", "kuma.io"],
  ["ServiceIntentions", "consul.hashicorp.com"],
  ["ServiceDefaults", "consul.hashicorp.com"],
  ["ServiceSplitter", "consul.hashicorp.com"],
  ["ServiceResolver", "consul.hashicorp.com"],
  ["ServiceRouter", "consul.hashicorp.com"],
  ["ProxyDefaults", "consul.hashicorp.com"],
];

const names = (kind: string, wanted: string) => {
  const lower = kind.toLowerCase();
  return wanted === lower || wanted === `${lower}s` || wanted === lower.replace(/y$/, "ies");
};

/** Another mesh's kind, as kubectl names one: `virtualservice`, or qualified `wasmplugins.extensions.istio.io`. */
export interface ImportedKind {
  kind: string;
  group: string;
}

/** Resolves `route`, `Routes`, `meshpolicy`… to a kind, or fails naming the accepted ones. */
export function resolveKind(value: string): Kind {
  const wanted = value.toLowerCase();
  const kind = KINDS.find((k) => names(k, wanted));
  if (!kind) throw new CliError(`unknown kind '${value}'; kinds: ${KINDS.join(", ")}`, 2);
  return kind;
}

/**
 * A native kind, or another mesh's kind whose originals apply keeps (`virtualservices`). A native
 * name wins; the group tells them apart (`circuitbreakers.kuma.io`, `wasmplugins.extensions.istio.io`).
 */
export function resolveAnyKind(value: string): { native: Kind } | { imported: ImportedKind } {
  const wanted = value.toLowerCase();
  const native = KINDS.find((k) => names(k, wanted));
  if (native !== undefined) return { native };
  const dot = wanted.indexOf(".");
  const [bare, group] = dot < 0 ? [wanted, undefined] : [wanted.slice(0, dot), wanted.slice(dot + 1)];
  // As kubectl: a kind's name, plural, or the short name its mesh's CRD gives it (vs, dr…).
  const found = IMPORTED_KINDS.find(
    ([k, g, short]) => (names(k, bare) || bare === short) && (group === undefined || group === g),
  );
  if (found !== undefined) return { imported: { kind: found[0], group: found[1] } };
  throw new CliError(
    `unknown kind '${value}'; kinds: ${KINDS.join(", ")}; and, as applied from other meshes: ${IMPORTED_KINDS.map(([k]) => k).join(", ")}`,
    2,
  );
}

/** Whether an original's apiVersion is of the group. */
const ofGroup = (apiVersion: string, group: string): boolean => apiVersion.split("/")[0] === group;

/** The kept originals (ImportedResources) of another mesh's kind, of this name and namespace if given. */
export async function importedOriginals(
  api: ApiClient,
  kind: ImportedKind,
  { name, namespace }: { name?: string | undefined; namespace?: string | undefined },
): Promise<ImportedResource[]> {
  const { body } = await api.call("GET", `/v1/${kindPath("ImportedResource")}`);
  return ((body as { items: ImportedResource[] }).items ?? []).filter(
    (r) =>
      r.spec.source.kind === kind.kind &&
      ofGroup(r.spec.source.apiVersion, kind.group) &&
      (name === undefined || r.spec.source.name === name) &&
      (namespace === undefined || r.spec.source.namespace === namespace),
  );
}

/** The API's path segment for a kind (see control-plane/api). */
export function kindPath(kind: Kind): string {
  const lower = kind.toLowerCase();
  return lower.endsWith("y") ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}
