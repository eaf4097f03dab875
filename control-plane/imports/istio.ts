// Istio's resources as wasmesh's: networking.istio.io VirtualService → Route, DestinationRule →
// subsets (for the Routes) and CircuitBreakers, security.istio.io PeerAuthentication → MeshPolicy's
// mTLS mode, AuthorizationPolicy → AccessRules (and MeshPolicy's defaultAccess).
//
// FIELDS below is the support matrix the converter runs on: every field of a document's spec is
// looked up there (unknown fields are warnings), `ignored` fields are warnings and `refused` fields
// errors, each with the reason; docs/imports.md lists the same table (a test compares them).
//
// Addressing (an Istio host or principal → a wasmesh service name), decided once here:
// - `ratings` in a resource of namespace `prod` (metadata.namespace, else --namespace) is
//   `ratings.prod`, as discovery names a Kubernetes Service; without a namespace (universal) it is
//   `ratings`. `ratings.prod`, `ratings.prod.svc` and `ratings.prod.svc.cluster.local` are
//   `ratings.prod` in both, except that a universal resource's `ratings.default…` is `ratings`
//   (a universal service's identity is namespace default's, ca/spiffe.ts). A `:port` is dropped (a
//   wasmesh service is addressed by name).
// - A principal `<td>/ns/<ns>/sa/<sa>` is the service `<sa>.<ns>` in a namespaced resource; in a
//   universal one it is `<sa>` when <ns> is `default` (wasmesh's universal identity of a service,
//   ca/spiffe.ts), else `<sa>.<ns>`.
import {
  type AccessRule,
  API_VERSION,
  type CircuitBreaker,
  type MtlsMode,
  type Route,
  type RouteRule,
  ServiceName,
} from "../resources/index.ts";
import { parseDuration, wholeMillis } from "./durations.ts";
import {
  auditFields,
  type Context,
  type FieldTable,
  ignored,
  isObj,
  type Obj,
  ok,
  partly,
  refused,
} from "./fields.ts";
import { nativeName } from "./naming.ts";
import type { SourceMesh } from "./types.ts";

export const NETWORKING = "networking.istio.io";
export const SECURITY = "security.istio.io";
const VERSIONS: Record<string, readonly string[]> = {
  [NETWORKING]: ["v1alpha3", "v1beta1", "v1"],
  [SECURITY]: ["v1beta1", "v1"],
};
export const ISTIO_KINDS: Record<string, string> = {
  VirtualService: NETWORKING,
  DestinationRule: NETWORKING,
  PeerAuthentication: SECURITY,
  AuthorizationPolicy: SECURITY,
};

/** Istio's root namespace: its PeerAuthentication and AuthorizationPolicy hold for the whole mesh. */
export const ROOT_NAMESPACE = "istio-system";

const OUTLIER_DETECTION =
  "a CircuitBreaker: wasmesh's breaker also opens the circuit for the whole subset (503 while open) after that many consecutive errors, where Istio only ejects hosts";

const MIRROR = ignored("mirroring is not supported: no copy of the traffic is sent");

function trafficPolicyFields(at: string): FieldTable {
  return {
    [at]: partly("outlierDetection and connectionPool.http.http2MaxRequests are carried (see below)"),
    [`${at}.outlierDetection`]: partly(OUTLIER_DETECTION),
    [`${at}.outlierDetection.consecutive5xxErrors`]: ok,
    [`${at}.outlierDetection.consecutiveGatewayErrors`]: partly(
      "wasmesh's breaker counts every 5xx, not only 502, 503 and 504",
    ),
    [`${at}.outlierDetection.consecutiveErrors`]: partly(
      "deprecated in Istio (502, 503 and 504); wasmesh's breaker counts every 5xx",
    ),
    [`${at}.outlierDetection.interval`]: ok,
    [`${at}.outlierDetection.baseEjectionTime`]: ok,
    [`${at}.outlierDetection.maxEjectionPercent`]: ok,
    [`${at}.outlierDetection.minHealthPercent`]: ignored("no panic threshold in wasmesh's breaker"),
    [`${at}.outlierDetection.splitExternalLocalOriginErrors`]: ignored(
      "local-origin errors are not counted apart",
    ),
    [`${at}.outlierDetection.consecutiveLocalOriginFailures`]: ignored(
      "local-origin errors are not counted apart",
    ),
    [`${at}.connectionPool`]: partly("only http.http2MaxRequests is carried"),
    [`${at}.connectionPool.tcp`]: ignored("no TCP connection limits in wasmesh"),
    [`${at}.connectionPool.http`]: partly("only http2MaxRequests is carried"),
    [`${at}.connectionPool.http.http2MaxRequests`]: partly(
      "the CircuitBreaker's maxConcurrent, when outlierDetection makes one",
    ),
    [`${at}.connectionPool.http.http1MaxPendingRequests`]: ignored("no pending-request limit in wasmesh"),
    [`${at}.connectionPool.http.maxRequestsPerConnection`]: ignored("no per-connection limit in wasmesh"),
    [`${at}.connectionPool.http.maxRetries`]: ignored("no limit on concurrent retries in wasmesh"),
    [`${at}.connectionPool.http.idleTimeout`]: ignored("no upstream idle timeout in wasmesh"),
    [`${at}.connectionPool.http.h2UpgradePolicy`]: ignored("the protocol follows the Service's port"),
    [`${at}.connectionPool.http.useClientProtocol`]: ignored("the protocol follows the Service's port"),
    [`${at}.connectionPool.http.maxConcurrentStreams`]: ignored("no HTTP/2 stream limit in wasmesh"),
    [`${at}.loadBalancer`]: ignored(
      "wasmesh balances round robin; consistentHash has no equivalent (a Route rule's sticky picks among destinations, not hosts)",
    ),
    [`${at}.tls`]: partly(
      "ISTIO_MUTUAL and DISABLE are warnings (wasmesh originates mesh mTLS itself, by MeshPolicy and Service modes); SIMPLE and MUTUAL are errors",
    ),
    [`${at}.portLevelSettings`]: ignored(
      "policies per port are not supported: the port's policy is not applied",
    ),
  };
}

/** Every field of each kind's spec the converter knows, with how far it is carried. */
export const FIELDS: Record<string, FieldTable> = {
  VirtualService: {
    "spec.hosts": ok,
    "spec.gateways": partly('"mesh" only: routing at gateways is not supported'),
    "spec.exportTo": ignored("visibility is not scoped: the Route applies to every sidecar"),
    "spec.http": ok,
    "spec.http[].name": ok,
    "spec.http[].match": ok,
    "spec.http[].match[].name": ok,
    "spec.http[].match[].uri": ok,
    "spec.http[].match[].authority": ok,
    "spec.http[].match[].headers": ok,
    "spec.http[].match[].withoutHeaders": partly("presence only ({}): absent"),
    "spec.http[].match[].queryParams": ok,
    "spec.http[].match[].method": partly("exact only"),
    "spec.http[].match[].ignoreUriCase": ok,
    "spec.http[].match[].scheme": refused("matching on the scheme is not supported"),
    "spec.http[].match[].port": refused("matching on the port is not supported"),
    "spec.http[].match[].sourceLabels": refused("matching on the caller's labels is not supported"),
    "spec.http[].match[].sourceNamespace": refused("matching on the caller's namespace is not supported"),
    "spec.http[].match[].gateways": refused("routing at gateways is not supported"),
    "spec.http[].match[].statPrefix": ignored("no per-match statistics"),
    "spec.http[].route": ok,
    "spec.http[].route[].destination": ok,
    "spec.http[].route[].destination.host": ok,
    "spec.http[].route[].destination.subset": ok,
    "spec.http[].route[].destination.port": ignored(
      "a destination is a service, reached on the port the request came to",
    ),
    "spec.http[].route[].weight": ok,
    "spec.http[].route[].headers": partly("with one destination only (a rule's header changes)"),
    "spec.http[].route[].headers.request": ok,
    "spec.http[].route[].headers.request.set": ok,
    "spec.http[].route[].headers.request.add": ok,
    "spec.http[].route[].headers.request.remove": ok,
    "spec.http[].route[].headers.response": ok,
    "spec.http[].route[].headers.response.set": ok,
    "spec.http[].route[].headers.response.add": ok,
    "spec.http[].route[].headers.response.remove": ok,
    "spec.http[].timeout": ok,
    "spec.http[].retries": ok,
    "spec.http[].retries.attempts": ok,
    "spec.http[].retries.perTryTimeout": ok,
    "spec.http[].retries.retryOn": partly("Envoy's condition names; status codes are errors"),
    "spec.http[].retries.retryRemoteLocalities": ignored("retries do not prefer other localities"),
    "spec.http[].retries.retryIgnorePreviousHosts": ignored("retries may pick the same host again"),
    "spec.http[].retries.backoff": ignored("Envoy's default back-off applies"),
    "spec.http[].fault": ok,
    "spec.http[].fault.delay": ok,
    "spec.http[].fault.delay.fixedDelay": ok,
    "spec.http[].fault.delay.percentage": ok,
    "spec.http[].fault.delay.percentage.value": ok,
    "spec.http[].fault.delay.percent": ok,
    "spec.http[].fault.delay.exponentialDelay": refused("exponential delays are not supported"),
    "spec.http[].fault.abort": ok,
    "spec.http[].fault.abort.httpStatus": ok,
    "spec.http[].fault.abort.percentage": ok,
    "spec.http[].fault.abort.percentage.value": ok,
    "spec.http[].fault.abort.grpcStatus": refused("gRPC status aborts are not supported"),
    "spec.http[].fault.abort.http2Error": refused("HTTP/2 error aborts are not supported"),
    "spec.http[].headers": ok,
    "spec.http[].headers.request": ok,
    "spec.http[].headers.request.set": ok,
    "spec.http[].headers.request.add": ok,
    "spec.http[].headers.request.remove": ok,
    "spec.http[].headers.response": ok,
    "spec.http[].headers.response.set": ok,
    "spec.http[].headers.response.add": ok,
    "spec.http[].headers.response.remove": ok,
    "spec.http[].redirect": refused("redirects are not supported"),
    "spec.http[].directResponse": refused("direct responses are not supported"),
    "spec.http[].delegate": refused("delegation is not supported"),
    "spec.http[].rewrite": refused("rewrites are not supported"),
    "spec.http[].mirror": MIRROR,
    "spec.http[].mirrors": MIRROR,
    "spec.http[].mirrorPercentage": MIRROR,
    "spec.http[].mirrorPercent": MIRROR,
    "spec.http[].corsPolicy": ignored("CORS is not answered by the mesh: the application's own headers hold"),
    "spec.tcp": refused("TCP routes are not supported"),
    "spec.tls": refused("TLS (SNI) routes are not supported"),
  },
  DestinationRule: {
    "spec.host": ok,
    "spec.subsets": ok,
    "spec.subsets[].name": ok,
    "spec.subsets[].labels": ok,
    ...trafficPolicyFields("spec.trafficPolicy"),
    ...trafficPolicyFields("spec.subsets[].trafficPolicy"),
    "spec.exportTo": ignored("visibility is not scoped: the policy applies to every sidecar"),
    "spec.workloadSelector": refused("a policy for some callers only is not supported"),
  },
  PeerAuthentication: {
    "spec.mtls": ok,
    "spec.mtls.mode": ok,
    "spec.selector": refused("mTLS per workload: set spec.mtls on the wasmesh Service instead"),
    "spec.portLevelMtls": refused("mTLS per port is not supported"),
  },
  AuthorizationPolicy: {
    "spec.selector": partly("matchLabels {app: <service>} only: the destination service"),
    "spec.selector.matchLabels": partly("{app: <service>} only"),
    "spec.targetRef": refused("policies attached to gateways are not supported"),
    "spec.targetRefs": refused("policies attached to gateways are not supported"),
    "spec.action": partly("ALLOW and DENY"),
    "spec.provider": refused("CUSTOM authorization is not supported"),
    "spec.rules": ok,
    "spec.rules[].from": ok,
    "spec.rules[].from[].source": ok,
    "spec.rules[].from[].source.principals": partly("exact <td>/ns/<ns>/sa/<sa> or *"),
    "spec.rules[].from[].source.namespaces": refused("AccessRules name source services, not namespaces"),
    "spec.rules[].from[].source.notNamespaces": refused("AccessRules name source services"),
    "spec.rules[].from[].source.notPrincipals": refused("negated sources are not supported"),
    "spec.rules[].from[].source.requestPrincipals": refused("end-user (JWT) identities are not supported"),
    "spec.rules[].from[].source.notRequestPrincipals": refused("end-user (JWT) identities are not supported"),
    "spec.rules[].from[].source.ipBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.notIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.remoteIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].from[].source.notRemoteIpBlocks": refused("sources by IP address are not supported"),
    "spec.rules[].to": refused("AccessRules allow or deny a whole service: no operations (paths, methods)"),
    "spec.rules[].when": refused("conditions are not supported"),
  },
};

// --- Addressing ----------------------------------------------------------------------------------

const SERVICE_PATTERN = new RegExp(ServiceName.pattern as string);

/** The wasmesh service an Istio host names (see the file's head), or why it names none. */
export function serviceOfHost(
  host: unknown,
  namespace: string | undefined,
): { ok: true; service: string } | { ok: false; message: string } {
  if (typeof host !== "string" || host === "") return { ok: false, message: "must be a host name" };
  const bare = host.replace(/:\d+$/, "").replace(/\.$/, "");
  if (bare.includes("*")) return { ok: false, message: `'${host}': wildcard hosts are not supported` };
  let labels = bare.split(".");
  if (labels.length >= 3 && labels[2] === "svc") {
    const rest = labels.slice(3).join(".");
    if (rest !== "" && rest !== "cluster.local") {
      return { ok: false, message: `'${host}': only the cluster domain cluster.local is known` };
    }
    labels = labels.slice(0, 2);
  }
  if (labels.length > 2) {
    return {
      ok: false,
      message: `'${host}' is no service of the mesh (<name>, <name>.<namespace> or <name>.<namespace>.svc.cluster.local); external hosts (ServiceEntry) are not supported yet`,
    };
  }
  // Universal services are namespace default's (their identity, ca/spiffe.ts universalIdentity).
  const service =
    labels.length === 1
      ? namespace !== undefined
        ? `${labels[0]}.${namespace}`
        : (labels[0] as string)
      : namespace === undefined && labels[1] === "default"
        ? (labels[0] as string)
        : labels.join(".");
  if (!SERVICE_PATTERN.test(service) || service.length > 127) {
    return { ok: false, message: `'${host}' gives '${service}', which is no valid service name` };
  }
  return { ok: true, service };
}

const PRINCIPAL = /^(?:[^/]+\/)?ns\/([^/]+)\/sa\/([^/]+)$/;

/** The source service an AuthorizationPolicy principal names (see the file's head). */
export function serviceOfPrincipal(
  principal: string,
  namespaced: boolean,
): { ok: true; service: string } | { ok: false; message: string } {
  if (principal === "*") return { ok: true, service: "*" };
  const m = PRINCIPAL.exec(principal);
  if (m === null) {
    return {
      ok: false,
      message: `'${principal}': only exact principals <trust-domain>/ns/<namespace>/sa/<service-account> or "*" are supported`,
    };
  }
  const [, ns, sa] = m as unknown as [string, string, string];
  const service = !namespaced && ns === "default" ? sa : `${sa}.${ns}`;
  if (!SERVICE_PATTERN.test(service)) {
    return { ok: false, message: `'${principal}' gives '${service}', which is no valid service name` };
  }
  return { ok: true, service };
}

// --- Conversion ----------------------------------------------------------------------------------

/** The subsets of every service a DestinationRule of the input defines: service → name → labels. */
export type SubsetIndex = Map<string, Map<string, Record<string, string>>>;

/** The apiVersion's group and version, if it is one of Istio's that is converted. */
export function istioKind(doc: Obj): { known: boolean; message?: string } {
  const apiVersion = typeof doc.apiVersion === "string" ? doc.apiVersion : "";
  const [group, version] = apiVersion.split("/");
  // Own keys only: "constructor/v1" names no group.
  if (group === undefined || !Object.hasOwn(VERSIONS, group)) return { known: false };
  const kind = String(doc.kind);
  if (!Object.hasOwn(ISTIO_KINDS, kind) || ISTIO_KINDS[kind] !== group) {
    return { known: true, message: `${group} kind '${kind}' is not supported yet` };
  }
  const versions = VERSIONS[group] as readonly string[];
  if (!versions.includes(version ?? "")) {
    return { known: true, message: `version '${version}' of ${group} is unknown (${versions.join(", ")})` };
  }
  return { known: true };
}

/** A native resource, its fields in the order `get -o yaml` prints them. */
const native = <K extends string, S>(kind: K, name: string, spec: S) => ({
  apiVersion: API_VERSION as typeof API_VERSION,
  kind,
  metadata: { name },
  spec,
});

/** The filter's limit on a route timeout (schema/filter-config.ts). */
const MAX_TIMEOUT_MS = 3_600_000;

function duration(ctx: Context, value: unknown, path: string, max = MAX_TIMEOUT_MS): number | undefined {
  const parsed = parseDuration(value, path);
  if (!parsed.ok) {
    ctx.error(parsed.error.path, parsed.error.message);
    return undefined;
  }
  if (parsed.ms === 0) return 0;
  const { ms, rounded } = wholeMillis(parsed.ms);
  if (rounded)
    ctx.warn(path, `${String(value)} is rounded up to ${ms}ms (wasmesh counts whole milliseconds)`);
  if (ms > max) {
    ctx.error(path, `${String(value)} is longer than wasmesh's limit of ${max}ms`);
    return undefined;
  }
  return ms;
}

/** DestinationRule subsets of the input, by service, for VirtualService destinations to name. */
export function indexSubsets(documents: readonly { doc: Obj; namespace: string | undefined }[]): SubsetIndex {
  const index: SubsetIndex = new Map();
  for (const { doc, namespace } of documents) {
    if (doc.kind !== "DestinationRule" || !isObj(doc.spec)) continue;
    const host = serviceOfHost(doc.spec.host, namespace);
    if (!host.ok) continue;
    const subsets = index.get(host.service) ?? new Map<string, Record<string, string>>();
    for (const s of Array.isArray(doc.spec.subsets) ? doc.spec.subsets : []) {
      if (isObj(s) && typeof s.name === "string" && isObj(s.labels)) {
        subsets.set(s.name, s.labels as Record<string, string>);
      }
    }
    index.set(host.service, subsets);
  }
  return index;
}

type StringMatch = { exact?: string; prefix?: string; regex?: string; ignoreCase?: boolean };

function stringMatch(ctx: Context, value: unknown, path: string): StringMatch | undefined {
  if (!isObj(value)) {
    ctx.error(path, "must be a string match (exact, prefix or regex)");
    return undefined;
  }
  const keys = Object.keys(value);
  const known = keys.filter((k) => k === "exact" || k === "prefix" || k === "regex");
  if (keys.length !== 1 || known.length !== 1 || typeof value[keys[0] as string] !== "string") {
    ctx.error(
      path,
      `must have exactly one of exact, prefix, regex, as a string (has ${keys.join(", ") || "none"})`,
    );
    return undefined;
  }
  return { [known[0] as string]: value[known[0] as string] as string };
}

type NamedMatch = NonNullable<NonNullable<RouteRule["match"]>["headers"]>[number];

function namedMatches(ctx: Context, value: unknown, path: string, lower: boolean): NamedMatch[] {
  if (!isObj(value)) {
    ctx.error(path, "must be a map of names to string matches");
    return [];
  }
  const out: NamedMatch[] = [];
  for (const [raw, m] of Object.entries(value)) {
    const name = lower ? raw.toLowerCase() : raw;
    // Istio: an empty match is a presence check.
    if (isObj(m) && Object.keys(m).length === 0) {
      out.push({ name, present: true });
      continue;
    }
    const s = stringMatch(ctx, m, `${path}.${raw}`);
    if (s !== undefined) out.push({ name, ...s });
  }
  return out;
}

type HeaderChanges = NonNullable<RouteRule["requestHeaders"]>;

function headerChanges(ctx: Context, value: unknown, path: string): HeaderChanges | undefined {
  if (!isObj(value)) return undefined;
  const out: HeaderChanges = {};
  for (const op of ["set", "add"] as const) {
    const map = value[op];
    if (map === undefined) continue;
    if (!isObj(map)) {
      ctx.error(`${path}.${op}`, "must be a map of header names to values");
      continue;
    }
    out[op] = Object.entries(map).map(([name, v]) => ({ name, value: String(v) }));
  }
  if (value.remove !== undefined) {
    if (!Array.isArray(value.remove)) ctx.error(`${path}.remove`, "must be a list of header names");
    else out.remove = value.remove.map(String);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function concatChanges(
  a: HeaderChanges | undefined,
  b: HeaderChanges | undefined,
): HeaderChanges | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const out: HeaderChanges = {};
  for (const op of ["set", "add", "remove"] as const) {
    const joined = [...(a[op] ?? []), ...(b[op] ?? [])];
    if (joined.length > 0) (out as Record<string, unknown>)[op] = joined;
  }
  return out;
}

function percentOf(ctx: Context, fault: Obj, path: string): number | undefined {
  if (isObj(fault.percentage)) {
    const v = fault.percentage.value;
    if (typeof v !== "number" || v < 0 || v > 100) {
      ctx.error(`${path}.percentage.value`, "must be a number from 0 to 100");
      return undefined;
    }
    return v;
  }
  if (fault.percent !== undefined) {
    if (typeof fault.percent !== "number" || fault.percent < 0 || fault.percent > 100) {
      ctx.error(`${path}.percent`, "must be a number from 0 to 100");
      return undefined;
    }
    return fault.percent;
  }
  return undefined;
}

/** Integer weights summing to 100 from Istio's (relative) weights: largest remainders. */
function percents(weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (w * 100) / total);
  const floors = exact.map(Math.floor);
  let left = 100 - floors.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    floors[i] = (floors[i] as number) + 1;
    left--;
  }
  return floors;
}

const RULE_NAME = /^[A-Za-z0-9._:-]{1,64}$/;

function convertHttpRoute(
  ctx: Context,
  http: Obj,
  i: number,
  subsets: SubsetIndex,
  usedNames: Set<string>,
): RouteRule[] {
  const at = `spec.http[${i}]`;
  const base: Omit<RouteRule, "name" | "match"> = {
    destinations: [] as unknown as RouteRule["destinations"],
  };

  // Destinations.
  const route = Array.isArray(http.route) ? http.route : [];
  if (route.length === 0) {
    // A redirect, direct response or delegation is refused by the field audit already.
    if (http.redirect !== undefined || http.directResponse !== undefined || http.delegate !== undefined)
      return [];
    ctx.error(
      `${at}.route`,
      "is required: a route without destinations (redirect, direct response) is not supported",
    );
    return [];
  }
  const dests: { service: string; subset?: Record<string, string>; weight: number; at: string }[] = [];
  let destHeaders: { request?: HeaderChanges; response?: HeaderChanges } = {};
  route.forEach((r, j) => {
    const rat = `${at}.route[${j}]`;
    if (!isObj(r) || !isObj(r.destination)) {
      ctx.error(`${rat}.destination`, "is required");
      return;
    }
    const host = serviceOfHost(r.destination.host, ctx.namespace);
    if (!host.ok) {
      ctx.error(`${rat}.destination.host`, host.message);
      return;
    }
    let subset: Record<string, string> | undefined;
    if (r.destination.subset !== undefined) {
      const name = String(r.destination.subset);
      subset = subsets.get(host.service)?.get(name);
      if (subset === undefined) {
        ctx.error(
          `${rat}.destination.subset`,
          `subset '${name}' of '${host.service}' is defined by no DestinationRule in the input`,
        );
        return;
      }
    }
    const weight = r.weight === undefined ? (route.length === 1 ? 100 : 0) : r.weight;
    if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0) {
      ctx.error(`${rat}.weight`, "must be a whole number, 0 or more");
      return;
    }
    if (isObj(r.headers)) {
      if (route.length > 1) {
        ctx.error(`${rat}.headers`, "header changes per destination are supported with one destination only");
      } else {
        destHeaders = {
          request: headerChanges(ctx, r.headers.request, `${rat}.headers.request`),
          response: headerChanges(ctx, r.headers.response, `${rat}.headers.response`),
        };
      }
    }
    // Istio sends a repeated destination its weights' sum: so does the merged one.
    const same = dests.find((d) => d.service === host.service && sameLabels(d.subset, subset));
    if (same !== undefined) same.weight += weight;
    else dests.push({ service: host.service, ...(subset !== undefined ? { subset } : {}), weight, at: rat });
  });
  if (dests.length !== route.length && dests.length === 0) return [];
  const total = dests.reduce((a, d) => a + d.weight, 0);
  if (dests.length > 0 && total === 0) {
    ctx.error(`${at}.route`, "the weights add up to 0: no destination would take traffic");
    return [];
  }
  const shares = percents(dests.map((d) => d.weight));
  if (dests.length > 1 && total !== 100) {
    ctx.warn(`${at}.route`, `weights add up to ${total}: scaled to percentages (${shares.join("/")})`);
  }
  base.destinations = dests.map((d, j) => ({
    service: d.service,
    ...(d.subset !== undefined ? { subset: { ...d.subset } } : {}),
    ...(dests.length > 1 ? { weight: shares[j] as number } : {}),
  })) as RouteRule["destinations"];

  // Timeout, retries, faults, header changes.
  if (http.timeout !== undefined) {
    const ms = duration(ctx, http.timeout, `${at}.timeout`);
    if (ms !== undefined && ms > 0) base.timeoutMs = ms;
    else if (ms === 0) {
      // Istio's 0s turns the timeout off; wasmesh's routes have one (Envoy's 15s without timeoutMs).
      base.timeoutMs = MAX_TIMEOUT_MS;
      ctx.warn(
        `${at}.timeout`,
        `no timeout cannot be expressed: the longest wasmesh allows, ${MAX_TIMEOUT_MS}ms (1h)`,
      );
    }
  }
  if (isObj(http.retries)) {
    const r = http.retries;
    const attempts = r.attempts ?? 0;
    if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 0 || attempts > 10) {
      ctx.error(`${at}.retries.attempts`, "must be a whole number from 0 to 10 (wasmesh's limit)");
    } else {
      const retries: NonNullable<RouteRule["retries"]> = { attempts };
      if (r.perTryTimeout !== undefined) {
        const ms = duration(ctx, r.perTryTimeout, `${at}.retries.perTryTimeout`);
        if (ms !== undefined && ms > 0) retries.perTryTimeoutMs = ms;
      }
      if (r.retryOn !== undefined) {
        const conditions = String(r.retryOn)
          .split(",")
          .map((c) => c.trim())
          .filter((c) => c !== "");
        const codes = conditions.filter((c) => /^\d+$/.test(c));
        if (codes.length > 0) {
          ctx.error(
            `${at}.retries.retryOn`,
            `retrying on status codes (${codes.join(", ")}) is not supported: use Envoy's conditions such as 5xx, gateway-error, retriable-4xx`,
          );
        } else retries.on = conditions.join(",");
      }
      base.retries = retries;
    }
  }
  if (isObj(http.fault)) {
    const fault: NonNullable<RouteRule["fault"]> = {};
    const f = http.fault;
    if (isObj(f.delay) && f.delay.exponentialDelay === undefined) {
      const ms = duration(ctx, f.delay.fixedDelay, `${at}.fault.delay.fixedDelay`);
      const percent = percentOf(ctx, f.delay, `${at}.fault.delay`);
      if (ms !== undefined && ms > 0) fault.delay = { ms, ...(percent !== undefined ? { percent } : {}) };
    }
    if (isObj(f.abort) && f.abort.grpcStatus === undefined && f.abort.http2Error === undefined) {
      const status = f.abort.httpStatus;
      if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) {
        ctx.error(`${at}.fault.abort.httpStatus`, "must be an HTTP status from 200 to 599");
      } else {
        const percent = percentOf(ctx, f.abort, `${at}.fault.abort`);
        fault.abort = { status, ...(percent !== undefined ? { percent } : {}) };
      }
    }
    if (fault.abort !== undefined || fault.delay !== undefined) base.fault = fault;
  }
  const headers = isObj(http.headers) ? http.headers : {};
  const requestHeaders = concatChanges(
    headerChanges(ctx, headers.request, `${at}.headers.request`),
    destHeaders.request,
  );
  const responseHeaders = concatChanges(
    headerChanges(ctx, headers.response, `${at}.headers.response`),
    destHeaders.response,
  );
  if (requestHeaders !== undefined) base.requestHeaders = requestHeaders;
  if (responseHeaders !== undefined) base.responseHeaders = responseHeaders;

  // Matches: Istio's list is "any of"; each becomes a rule of its own, in order, with the same action.
  const given = typeof http.name === "string" && RULE_NAME.test(http.name) && !usedNames.has(http.name);
  const ruleBase = given ? (http.name as string) : `http-${i}`;
  const matches = Array.isArray(http.match) && http.match.length > 0 ? http.match : [undefined];
  return matches.map((m, j) => {
    const name = matches.length > 1 ? `${ruleBase}-m${j}` : ruleBase;
    usedNames.add(name);
    const match = m === undefined ? undefined : convertMatch(ctx, m, `${at}.match[${j}]`);
    return { name, ...(match !== undefined ? { match } : {}), ...base } as RouteRule;
  });
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ak = Object.keys(a ?? {});
  return ak.length === Object.keys(b ?? {}).length && ak.every((k) => a?.[k] === b?.[k]);
}

function convertMatch(ctx: Context, m: unknown, at: string): RouteRule["match"] {
  if (!isObj(m)) {
    ctx.error(at, "must be a match");
    return undefined;
  }
  const match: NonNullable<RouteRule["match"]> = {};
  if (m.uri !== undefined) {
    const s = stringMatch(ctx, m.uri, `${at}.uri`);
    if (s !== undefined) match.path = m.ignoreUriCase === true ? { ...s, ignoreCase: true } : s;
  }
  if (m.authority !== undefined) {
    const s = stringMatch(ctx, m.authority, `${at}.authority`);
    if (s !== undefined) match.authority = s;
  }
  if (m.method !== undefined) {
    const s = stringMatch(ctx, m.method, `${at}.method`);
    if (s?.exact !== undefined) match.methods = [s.exact];
    else if (s !== undefined) ctx.error(`${at}.method`, "only exact methods are supported");
  }
  const headers = m.headers === undefined ? [] : namedMatches(ctx, m.headers, `${at}.headers`, true);
  if (m.withoutHeaders !== undefined) {
    for (const h of namedMatches(ctx, m.withoutHeaders, `${at}.withoutHeaders`, true)) {
      if (h.present === true) headers.push({ name: h.name, absent: true });
      else
        ctx.error(
          `${at}.withoutHeaders.${h.name}`,
          "only {} (the header is absent) is supported: a negated value match is not",
        );
    }
  }
  if (headers.length > 0) match.headers = headers;
  if (m.queryParams !== undefined) {
    const query = namedMatches(ctx, m.queryParams, `${at}.queryParams`, false);
    if (query.length > 0) match.query = query;
  }
  return Object.keys(match).length > 0 ? match : undefined;
}

export function convertVirtualService(ctx: Context, doc: Obj, subsets: SubsetIndex, base: string): Route[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (Array.isArray(spec.gateways)) {
    const mesh = spec.gateways.includes("mesh");
    spec.gateways.forEach((g, i) => {
      if (g === "mesh") return;
      if (mesh)
        ctx.warn(
          `spec.gateways[${i}]`,
          `gateway '${String(g)}' is not served: the Route applies to sidecars only`,
        );
    });
    if (!mesh) {
      ctx.error(
        "spec.gateways",
        'names gateways only: wasmesh serves the Route to sidecars ("mesh"), which Istio would not',
      );
      return [];
    }
  }
  const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
  if (hosts.length === 0) ctx.error("spec.hosts", "is required: the services whose traffic this routes");
  const http = Array.isArray(spec.http) ? spec.http : [];
  if (http.length === 0) {
    if (spec.tcp === undefined && spec.tls === undefined)
      ctx.error("spec.http", "is required: no HTTP routes");
    return [];
  }
  const usedNames = new Set<string>();
  const rules = http.flatMap((h, i) => {
    if (isObj(h)) return convertHttpRoute(ctx, h, i, subsets, usedNames);
    ctx.error(`spec.http[${i}]`, "must be a route (a mapping)");
    return [];
  });
  const last = http[http.length - 1];
  if (isObj(last) && Array.isArray(last.match) && last.match.length > 0) {
    ctx.warn(
      `spec.http[${http.length - 1}].match`,
      "requests no route matches go to the whole service in wasmesh; Istio answers them 404 (add a last route without match to say where they go)",
    );
  }
  const services: string[] = [];
  hosts.forEach((h, i) => {
    const s = serviceOfHost(h, ctx.namespace);
    if (!s.ok) ctx.error(`spec.hosts[${i}]`, s.message);
    else if (!services.includes(s.service)) services.push(s.service);
  });
  if (rules.length === 0) return [];
  return services.map(
    (service): Route =>
      native("Route", services.length === 1 ? base : nativeName(base, service), {
        service,
        rules: structuredClone(rules),
      }),
  );
}

interface BreakerSettings {
  consecutiveErrors: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
  maxConcurrent?: number;
}

/** A trafficPolicy's CircuitBreaker settings (Istio's defaults where a field is absent), or none. */
function breakerSettings(ctx: Context, policy: Obj, at: string): BreakerSettings | undefined {
  const od = isObj(policy.outlierDetection) ? policy.outlierDetection : undefined;
  const pool =
    isObj(policy.connectionPool) && isObj(policy.connectionPool.http) ? policy.connectionPool.http : {};
  if (od === undefined) {
    if (pool.http2MaxRequests !== undefined) {
      ctx.warn(
        `${at}.connectionPool.http.http2MaxRequests`,
        "not carried: wasmesh limits concurrent requests in a CircuitBreaker, which only outlierDetection makes",
      );
    }
    return undefined;
  }
  const odAt = `${at}.outlierDetection`;
  ctx.warn(odAt, OUTLIER_DETECTION);
  const count = (key: string): number | undefined => {
    const v = od[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      ctx.error(`${odAt}.${key}`, "must be a whole number, 0 or more");
      return undefined;
    }
    return v;
  };
  const c5xx = count("consecutive5xxErrors");
  const gateway = count("consecutiveGatewayErrors");
  const legacy = count("consecutiveErrors");
  for (const [key, v] of [
    ["consecutiveGatewayErrors", gateway],
    ["consecutiveErrors", legacy],
  ] as const) {
    if (v === undefined) continue;
    ctx.warn(
      `${odAt}.${key}`,
      c5xx !== undefined
        ? "not carried: consecutive5xxErrors is the breaker's threshold"
        : "counted over every 5xx, not only 502, 503 and 504",
    );
  }
  const consecutiveErrors = c5xx ?? gateway ?? legacy ?? 5;
  if (consecutiveErrors === 0) return undefined; // Istio: 0 turns the detection off
  if (consecutiveErrors > 10_000) {
    ctx.error(`${odAt}`, `${consecutiveErrors} consecutive errors is beyond wasmesh's limit of 10000`);
    return undefined;
  }
  const ms = (key: string, fallback: number): number | undefined => {
    if (od[key] === undefined) return fallback;
    const v = duration(ctx, od[key], `${odAt}.${key}`, 86_400_000);
    if (v === 0) {
      ctx.error(`${odAt}.${key}`, "must be longer than 0");
      return undefined;
    }
    return v;
  };
  const intervalMs = ms("interval", 10_000);
  const baseEjectionMs = ms("baseEjectionTime", 30_000);
  const percent = od.maxEjectionPercent ?? 10;
  if (typeof percent !== "number" || !Number.isInteger(percent) || percent < 0 || percent > 100) {
    ctx.error(`${odAt}.maxEjectionPercent`, "must be a whole number from 0 to 100");
    return undefined;
  }
  if (intervalMs === undefined || baseEjectionMs === undefined) return undefined;
  const settings: BreakerSettings = {
    consecutiveErrors,
    intervalMs,
    baseEjectionMs,
    maxEjectionPercent: percent,
  };
  const max = pool.http2MaxRequests;
  if (max !== undefined) {
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > 1_000_000) {
      ctx.error(`${at}.connectionPool.http.http2MaxRequests`, "must be a whole number from 1 to 1000000");
    } else settings.maxConcurrent = max;
  }
  return settings;
}

function checkTls(ctx: Context, policy: Obj, at: string): void {
  if (!isObj(policy.tls)) return;
  const mode = policy.tls.mode ?? "DISABLE"; // Istio's default mode
  if (mode === "ISTIO_MUTUAL" || mode === "DISABLE") {
    ctx.warn(
      `${at}.tls.mode`,
      `${mode} is not carried: wasmesh originates mesh mTLS itself to sidecars that take it, by MeshPolicy's and the Service's mTLS mode`,
    );
  } else {
    ctx.error(
      `${at}.tls.mode`,
      `${String(mode)}: TLS to the destination with other certificates is not supported`,
    );
  }
}

export function convertDestinationRule(ctx: Context, doc: Obj, base: string): CircuitBreaker[] {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const host = serviceOfHost(spec.host, ctx.namespace);
  if (!host.ok) {
    ctx.error("spec.host", host.message);
    return [];
  }
  const service = host.service;
  const out: CircuitBreaker[] = [];
  const breaker = (
    name: string,
    settings: BreakerSettings,
    subset?: Record<string, string>,
  ): CircuitBreaker =>
    native("CircuitBreaker", name, {
      service,
      ...(subset !== undefined ? { subset: { ...subset } } : {}),
      ...settings,
    });
  const top = isObj(spec.trafficPolicy) ? spec.trafficPolicy : {};
  checkTls(ctx, top, "spec.trafficPolicy");
  const topSettings = breakerSettings(ctx, top, "spec.trafficPolicy");
  if (topSettings !== undefined) out.push(breaker(base, topSettings));
  const subsets = Array.isArray(spec.subsets) ? spec.subsets : [];
  const seen = new Set<string>();
  subsets.forEach((s, i) => {
    const at = `spec.subsets[${i}]`;
    if (!isObj(s) || typeof s.name !== "string" || s.name === "") {
      ctx.error(`${at}.name`, "is required");
      return;
    }
    if (seen.has(s.name)) ctx.error(`${at}.name`, `duplicate subset '${s.name}'`);
    seen.add(s.name);
    if (!isObj(s.labels) || Object.keys(s.labels).length === 0) {
      ctx.error(`${at}.labels`, "is required: a subset is the workloads with these labels");
      return;
    }
    const own = isObj(s.trafficPolicy) ? s.trafficPolicy : {};
    checkTls(ctx, own, `${at}.trafficPolicy`);
    // Istio merges a subset's policy over the top one by setting: an outlierDetection or a
    // connectionPool of the subset's replaces the top one's.
    const merged: Obj = {
      outlierDetection: own.outlierDetection ?? top.outlierDetection,
      connectionPool: own.connectionPool ?? top.connectionPool,
    };
    // An inherited outlierDetection was reported where it is written: not again at the subset.
    const inherited = `${at}.trafficPolicy.outlierDetection`;
    const subsetCtx: Context =
      own.outlierDetection !== undefined
        ? ctx
        : {
            ...ctx,
            warn: (path, message) => (path.startsWith(inherited) ? undefined : ctx.warn(path, message)),
            error: (path, message) => (path.startsWith(inherited) ? undefined : ctx.error(path, message)),
          };
    const settings =
      own.outlierDetection !== undefined || own.connectionPool !== undefined
        ? breakerSettings(subsetCtx, merged, `${at}.trafficPolicy`)
        : topSettings;
    if (settings !== undefined) {
      out.push(breaker(nativeName(base, s.name), settings, s.labels as Record<string, string>));
    }
  });
  return out;
}

const MODES: Record<string, MtlsMode> = { STRICT: "strict", PERMISSIVE: "permissive", DISABLE: "disabled" };

/** PeerAuthentication: the mesh-wide mTLS mode, or undefined (UNSET, or an error reported). */
export function convertPeerAuthentication(ctx: Context, doc: Obj): MtlsMode | undefined {
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (spec.selector !== undefined) return undefined; // refused by the field audit
  if (ctx.namespace !== undefined && ctx.namespace !== ROOT_NAMESPACE) {
    ctx.error(
      "metadata.namespace",
      `a mode for namespace '${ctx.namespace}': wasmesh sets mTLS for the mesh (this in Istio's root namespace, ${ROOT_NAMESPACE}) or per Service (spec.mtls)`,
    );
    return undefined;
  }
  const mode = isObj(spec.mtls) ? spec.mtls.mode : undefined;
  if (mode === undefined || mode === "UNSET") return undefined;
  const native = MODES[String(mode)];
  if (native === undefined)
    ctx.error("spec.mtls.mode", `must be STRICT, PERMISSIVE, DISABLE or UNSET (got ${JSON.stringify(mode)})`);
  return native;
}

export interface AccessResult {
  rules: AccessRule[];
  /** An ALLOW policy with no rules for the whole mesh: MeshPolicy's defaultAccess deny. */
  denyByDefault: boolean;
  /** Destinations a DENY policy closes to every source ("*"). */
  deniedToAll: string[];
}

export function convertAuthorizationPolicy(ctx: Context, doc: Obj, base: string): AccessResult {
  const result: AccessResult = { rules: [], denyByDefault: false, deniedToAll: [] };
  const spec = isObj(doc.spec) ? doc.spec : {};
  const action = spec.action ?? "ALLOW";
  if (action !== "ALLOW" && action !== "DENY") {
    ctx.error("spec.action", `${String(action)} is not supported: ALLOW and DENY are`);
    return result;
  }
  const namespaced = ctx.namespace !== undefined;
  const rules = Array.isArray(spec.rules) ? spec.rules : [];
  let destination: string | undefined;
  if (spec.selector !== undefined) {
    const labels = isObj(spec.selector) && isObj(spec.selector.matchLabels) ? spec.selector.matchLabels : {};
    const keys = Object.keys(labels);
    if (keys.length !== 1 || keys[0] !== "app" || typeof labels.app !== "string") {
      ctx.error(
        "spec.selector.matchLabels",
        "must be {app: <service>}: wasmesh's AccessRules name the destination service, not workloads by labels",
      );
      return result;
    }
    const s = serviceOfHost(labels.app, ctx.namespace);
    if (!s.ok) {
      ctx.error("spec.selector.matchLabels.app", s.message);
      return result;
    }
    destination = s.service;
  } else if (namespaced && ctx.namespace !== ROOT_NAMESPACE) {
    ctx.error(
      "spec.selector",
      `is required outside ${ROOT_NAMESPACE}: a policy for every workload of namespace '${ctx.namespace}' has no AccessRule form (they name one destination service)`,
    );
    return result;
  } else {
    // Mesh-wide: only "allow nothing" (an ALLOW policy without rules) has a native form.
    if (action === "ALLOW" && rules.length === 0) result.denyByDefault = true;
    else {
      ctx.error(
        "spec.rules",
        "a mesh-wide policy with rules has no AccessRule form (they name one destination service); only an ALLOW policy without rules (allow nothing) is carried, as MeshPolicy defaultAccess: deny",
      );
    }
    return result;
  }

  // The sources the policy's rules name; "*" for a rule without `from` (any caller).
  const sources: string[] = [];
  let usable = true;
  rules.forEach((rule, i) => {
    if (!isObj(rule)) return;
    if (rule.to !== undefined || rule.when !== undefined) usable = false; // refused by the audit
    const from = Array.isArray(rule.from) ? rule.from : undefined;
    if (from === undefined) {
      sources.push("*");
      return;
    }
    from.forEach((f, j) => {
      const src = isObj(f) && isObj(f.source) ? f.source : {};
      const principals = Array.isArray(src.principals) ? src.principals : undefined;
      if (principals === undefined) {
        usable = false;
        if (Object.keys(src).every((k) => k === "principals")) {
          ctx.error(`spec.rules[${i}].from[${j}].source.principals`, "is required: the source services");
        }
        return;
      }
      principals.forEach((p, k) => {
        const path = `spec.rules[${i}].from[${j}].source.principals[${k}]`;
        const s = serviceOfPrincipal(String(p), namespaced);
        if (!s.ok) {
          ctx.error(path, s.message);
          usable = false;
          return;
        }
        if (namespaced && s.service !== "*") {
          ctx.warn(
            path,
            `taken as Service '${s.service}': wasmesh's AccessRule names the caller's service, whose workloads must run as this service account`,
          );
        }
        if (!sources.includes(s.service)) sources.push(s.service);
      });
    });
  });
  if (!usable) return result;
  const rule = (source: string, access: "allow" | "deny"): AccessRule =>
    native("AccessRule", nativeName(base, source === "*" ? "any" : source), {
      source,
      destination: destination as string,
      action: access,
    });
  if (action === "DENY") {
    result.rules = sources.map((s) => rule(s, "deny"));
    if (sources.includes("*")) result.deniedToAll.push(destination);
    return result;
  }
  // ALLOW: the named sources are allowed and, as in Istio once an ALLOW policy applies, every other
  // caller is refused ("*" deny, which a source's own rule overrides), unless a rule allows any.
  result.rules = sources.map((s) => rule(s, "allow"));
  if (!sources.includes("*")) result.rules.push(rule("*", "deny"));
  return result;
}

// --- The mesh ------------------------------------------------------------------------------------

export const istio: SourceMesh<SubsetIndex> = {
  name: "Istio",
  fields: FIELDS,
  identify(doc) {
    const known = istioKind(doc);
    if (!known.known) return undefined;
    const kind = typeof doc.kind === "string" ? doc.kind : "";
    const metadata = isObj(doc.metadata) ? doc.metadata : {};
    const name = typeof metadata.name === "string" ? metadata.name : "";
    if (known.message !== undefined) return { kind, name, error: { path: "kind", message: known.message } };
    return {
      kind,
      name,
      ...(typeof metadata.namespace === "string" ? { namespace: metadata.namespace } : {}),
    };
  },
  index: indexSubsets,
  translate(ctx, doc, subsets, base) {
    if (isObj(doc.spec)) auditFields(doc.spec, "spec", FIELDS[ctx.kind] ?? {}, ctx);
    switch (ctx.kind) {
      case "VirtualService":
        return { resources: convertVirtualService(ctx, doc, subsets, base) };
      case "DestinationRule":
        return { resources: convertDestinationRule(ctx, doc, base) };
      case "PeerAuthentication": {
        const mtls = convertPeerAuthentication(ctx, doc);
        return { resources: [], ...(mtls !== undefined ? { mtls } : {}) };
      }
      case "AuthorizationPolicy": {
        const access = convertAuthorizationPolicy(ctx, doc, base);
        return {
          resources: access.rules,
          denyByDefault: access.denyByDefault,
          deniedToAll: access.deniedToAll,
        };
      }
      default:
        return { resources: [] };
    }
  },
};
