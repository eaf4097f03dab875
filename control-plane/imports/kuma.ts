// Kuma's (and Kong Mesh's) resources as wasmesh's: Dataplane → Workloads (and their Service),
// TrafficRoute and MeshHTTPRoute → Routes, CircuitBreaker and MeshCircuitBreaker → CircuitBreakers,
// TrafficPermission and MeshTrafficPermission → AccessRules, Mesh → MeshPolicy's mTLS mode and
// defaultAccess, MeshTrace → a Tracing and MeshAccessLog → an AccessLog (the mesh's or a service's). Both forms are read: universal (`type: <Kind>`, `name`, `mesh` at the top, the
// body beside them) and Kubernetes (`apiVersion: kuma.io/v1alpha1`, `kind`, metadata; the body in
// `spec`; the mesh in a top-level `mesh` for the older policies, in the label `kuma.io/mesh` for
// the Mesh* ones).
//
// FIELDS is the support matrix the converter runs on (docs/imports.md prints it). The older kinds'
// fields are written as in the universal form (`conf.split`): in the Kubernetes form they are under
// `spec.` and problems are reported there; the Mesh* kinds' are under `spec.` in both forms.
//
// Addressing (a `kuma.io/service` value or a MeshService name → a wasmesh service), decided here:
// - `backend` and `backend.mesh` (Kuma's DNS name) are `backend`; Kuma's service names hold for the
//   whole mesh, so no namespace is added, whatever namespace the document is in;
// - a Kubernetes service as Kuma tags it, `backend_kuma-demo_svc_8080`, or its DNS name
//   `backend.kuma-demo.svc.8080.mesh`, is `backend.kuma-demo`, as wasmesh's Kubernetes discovery
//   names it (the port is dropped: a wasmesh service is addressed by name, its ports on the Service);
// - a MeshService targetRef with `namespace` is `<name>.<namespace>`.
//
// One mesh: wasmesh runs one, so the Kuma documents of an input must all belong to the same Kuma mesh
// (whatever its name); one of another mesh is an error at its `mesh`.
import {
  type AccessLog,
  type AccessRule,
  type CircuitBreaker,
  type MtlsMode,
  type Resource,
  type Route,
  type RouteRule,
  type Service,
  ServiceName,
  type Tracing,
  type Workload,
} from "../resources/index.ts";
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
import { type AccessLogBackend, kumaTags, percentOf } from "./telemetry.ts";
import { duration, native } from "./translate.ts";
import type { SourceDocument, SourceMesh, Translation } from "./types.ts";

export const KUMA_API_VERSION = "kuma.io/v1alpha1";
const SERVICE_TAG = "kuma.io/service";
const PROTOCOL_TAG = "kuma.io/protocol";
const ZONE_TAG = "kuma.io/zone";
const MESH_LABEL = "kuma.io/mesh";

/** The kinds whose body sits beside the name (universal) or in `spec` (Kubernetes). */
const OLD_KINDS = ["Mesh", "Dataplane", "TrafficRoute", "TrafficPermission", "CircuitBreaker"] as const;
/** The targetRef policies: their body is `spec` in both forms. */
const NEW_KINDS = [
  "MeshHTTPRoute",
  "MeshTrafficPermission",
  "MeshCircuitBreaker",
  "MeshTrace",
  "MeshAccessLog",
] as const;
const KINDS: readonly string[] = [...OLD_KINDS, ...NEW_KINDS];

/** Fields of a universal document that are its name and bookkeeping, not its body. */
const UNIVERSAL_META = new Set(["type", "name", "mesh", "labels", "creationTime", "modificationTime"]);

const ANY_CALLER = (what: string) =>
  partly(`kuma.io/service: '*' only: ${what} applies to every caller (wasmesh has no per-caller ${what})`);
const WEIGHT = partly(
  "relative weights become percentages adding up to 100; shares that are no whole percentage are rounded, with a warning",
);
const BREAKER =
  "a CircuitBreaker: wasmesh's breaker also opens the circuit for the whole service or subset (503 while open) after that many consecutive errors, where Kuma only ejects hosts";
const ROUND_ROBIN = ignored("wasmesh balances round robin");
const KUMA_FORMAT =
  "Envoy's command operators; Kuma's own (%KUMA_MESH%, %KUMA_SOURCE_SERVICE%…), which Kuma's control plane fills in, are errors";

/** Every field of each kind the converter knows, with how far it is carried (see the file's head). */
export const FIELDS: Record<string, FieldTable> = {
  Mesh: {
    mtls: ok,
    "mtls.enabledBackend": ok,
    "mtls.backends": ok,
    "mtls.backends[].name": ok,
    "mtls.backends[].mode": ok,
    "mtls.backends[].type": ignored("wasmesh's own CA issues the mesh certificates"),
    "mtls.backends[].conf": ignored("wasmesh's own CA issues the mesh certificates"),
    "mtls.backends[].dpCert": ignored("certificate lifetimes are those of wasmesh's CA"),
    "mtls.backends[].rootChain": ignored("wasmesh's own CA issues the mesh certificates"),
    "mtls.skipValidation": ignored("wasmesh's CA is always validated"),
    logging: ignored("access logs are not converted"),
    metrics: ignored("metrics backends are not converted"),
    tracing: ignored("tracing backends are not converted"),
    networking: ignored("outbound passthrough and egress settings are not converted"),
    routing: ignored("zone routing settings are not converted"),
    constraints: ignored("which dataplanes may join is not checked by wasmesh"),
    skipCreatingInitialPolicies: ignored("wasmesh creates no initial policies"),
    meshServices: ignored("wasmesh names services itself"),
  },
  Dataplane: {
    networking: ok,
    "networking.address": ok,
    "networking.advertisedAddress": partly("the Workload's address when set: where other sidecars call it"),
    "networking.inbound": ok,
    "networking.inbound[].port": ok,
    "networking.inbound[].servicePort": ok,
    "networking.inbound[].address": ok,
    "networking.inbound[].tags": ok,
    "networking.inbound[].serviceAddress": ignored("the sidecar forwards to the application on its own host"),
    "networking.inbound[].health": ignored(
      "readiness is the Workload's lease, renewed by the data-plane agent",
    ),
    "networking.inbound[].serviceProbe": ignored("no health probes in wasmesh"),
    "networking.inbound[].state": ignored(
      "readiness is the Workload's lease, renewed by the data-plane agent",
    ),
    "networking.inbound[].name": ignored("a Service's port names are wasmesh's"),
    "networking.outbound": ignored("a wasmesh sidecar reaches every service by name"),
    "networking.transparentProxying": ignored("traffic capture is the data-plane agent's"),
    "networking.admin": ignored("the sidecar's admin port is the data-plane agent's"),
    "networking.gateway": refused("gateways are not supported"),
    metrics: ignored("metrics backends are not converted"),
    probes: ignored("no health probes in wasmesh"),
  },
  TrafficRoute: {
    sources: ANY_CALLER("a Route"),
    "sources[].match": ANY_CALLER("a Route"),
    destinations: ok,
    "destinations[].match": partly("kuma.io/service only"),
    conf: ok,
    "conf.destination": ok,
    "conf.split": ok,
    "conf.split[].weight": WEIGHT,
    "conf.split[].destination": ok,
    "conf.http": ok,
    "conf.http[].match": ok,
    "conf.http[].match.path": ok,
    "conf.http[].match.method": partly("exact only"),
    "conf.http[].match.headers": ok,
    "conf.http[].destination": ok,
    "conf.http[].split": ok,
    "conf.http[].split[].weight": WEIGHT,
    "conf.http[].split[].destination": ok,
    "conf.http[].modify": refused(
      "request and response changes (headers, path and host rewrites) are not converted",
    ),
    "conf.loadBalancer": partly("roundRobin only: wasmesh balances round robin"),
    "conf.loadBalancer.roundRobin": ok,
    "conf.loadBalancer.leastRequest": ROUND_ROBIN,
    "conf.loadBalancer.ringHash": ROUND_ROBIN,
    "conf.loadBalancer.random": ROUND_ROBIN,
    "conf.loadBalancer.maglev": ROUND_ROBIN,
  },
  TrafficPermission: {
    sources: ok,
    "sources[].match": partly("kuma.io/service only (a service or '*')"),
    destinations: ok,
    "destinations[].match": partly("kuma.io/service only"),
  },
  CircuitBreaker: {
    sources: ANY_CALLER("a CircuitBreaker"),
    "sources[].match": ANY_CALLER("a CircuitBreaker"),
    destinations: ok,
    "destinations[].match": partly("kuma.io/service and other tags: the service and its subset"),
    conf: ok,
    "conf.interval": ok,
    "conf.baseEjectionTime": ok,
    "conf.maxEjectionPercent": ok,
    "conf.splitExternalAndLocalErrors": ignored("local-origin errors are not counted apart"),
    "conf.detectors": partly(BREAKER),
    "conf.detectors.totalErrors": ok,
    "conf.detectors.totalErrors.consecutive": ok,
    "conf.detectors.gatewayErrors": partly("wasmesh's breaker counts every 5xx, not only 502, 503 and 504"),
    "conf.detectors.gatewayErrors.consecutive": partly(
      "wasmesh's breaker counts every 5xx, not only 502, 503 and 504",
    ),
    "conf.detectors.localErrors": ignored("local-origin errors are not counted apart"),
    "conf.detectors.standardDeviation": ignored("no success-rate ejection in wasmesh"),
    "conf.detectors.failure": ignored("no failure-percentage ejection in wasmesh"),
    "conf.thresholds": partly("maxRequests only"),
    "conf.thresholds.maxRequests": partly("the CircuitBreaker's maxConcurrent"),
    "conf.thresholds.maxConnections": ignored("no connection limits in wasmesh"),
    "conf.thresholds.maxPendingRequests": ignored("no pending-request limit in wasmesh"),
    "conf.thresholds.maxRetries": ignored("no limit on concurrent retries in wasmesh"),
  },
  MeshHTTPRoute: {
    "spec.targetRef": partly("kind Mesh only: a Route applies to every caller"),
    "spec.to": ok,
    "spec.to[].targetRef": partly("kind MeshService (name, namespace): the destination service"),
    "spec.to[].hostnames": ignored("hostnames apply at gateways, which are not supported"),
    "spec.to[].rules": ok,
    "spec.to[].rules[].matches": ok,
    "spec.to[].rules[].matches[].path": partly("Exact, PathPrefix and RegularExpression"),
    "spec.to[].rules[].matches[].method": ok,
    "spec.to[].rules[].matches[].headers": partly("Exact, Prefix, RegularExpression, Present and Absent"),
    "spec.to[].rules[].matches[].queryParams": partly("Exact and RegularExpression"),
    "spec.to[].rules[].default": ok,
    "spec.to[].rules[].default.backendRefs": ok,
    "spec.to[].rules[].default.backendRefs[].kind": partly("MeshService and MeshServiceSubset"),
    "spec.to[].rules[].default.backendRefs[].name": ok,
    "spec.to[].rules[].default.backendRefs[].namespace": ok,
    "spec.to[].rules[].default.backendRefs[].tags": ok,
    "spec.to[].rules[].default.backendRefs[].weight": WEIGHT,
    "spec.to[].rules[].default.backendRefs[].port": ignored(
      "a destination is a service, reached on the port the request came to",
    ),
    "spec.to[].rules[].default.filters": refused(
      "request changes, redirects, rewrites and mirrors are not converted",
    ),
    "spec.rules": refused("the rules form is not converted: use to"),
  },
  MeshTrafficPermission: {
    "spec.targetRef": partly("kind Mesh or MeshService: the destination"),
    "spec.from": ok,
    "spec.from[].targetRef": partly("kind Mesh (every caller) or MeshService"),
    "spec.from[].default": ok,
    "spec.from[].default.action": partly("Allow and Deny; AllowWithShadowDeny is Allow"),
    "spec.rules": refused("the rules form is not converted: use from"),
  },
  MeshCircuitBreaker: {
    "spec.targetRef": partly("kind Mesh only: a CircuitBreaker applies to every caller"),
    "spec.to": ok,
    "spec.to[].targetRef": partly("kind MeshService (name, namespace): the service"),
    "spec.to[].default": ok,
    "spec.to[].default.outlierDetection": partly(BREAKER),
    "spec.to[].default.outlierDetection.disabled": ok,
    "spec.to[].default.outlierDetection.interval": ok,
    "spec.to[].default.outlierDetection.baseEjectionTime": ok,
    "spec.to[].default.outlierDetection.maxEjectionPercent": ok,
    "spec.to[].default.outlierDetection.splitExternalAndLocalErrors": ignored(
      "local-origin errors are not counted apart",
    ),
    "spec.to[].default.outlierDetection.healthyPanicThreshold": ignored(
      "no panic threshold in wasmesh's breaker",
    ),
    "spec.to[].default.outlierDetection.detectors": ok,
    "spec.to[].default.outlierDetection.detectors.totalFailures": ok,
    "spec.to[].default.outlierDetection.detectors.totalFailures.consecutive": ok,
    "spec.to[].default.outlierDetection.detectors.gatewayFailures": partly(
      "wasmesh's breaker counts every 5xx, not only 502, 503 and 504",
    ),
    "spec.to[].default.outlierDetection.detectors.gatewayFailures.consecutive": partly(
      "wasmesh's breaker counts every 5xx, not only 502, 503 and 504",
    ),
    "spec.to[].default.outlierDetection.detectors.localOriginFailures": ignored(
      "local-origin errors are not counted apart",
    ),
    "spec.to[].default.outlierDetection.detectors.successRate": ignored(
      "no success-rate ejection in wasmesh",
    ),
    "spec.to[].default.outlierDetection.detectors.failurePercentage": ignored(
      "no failure-percentage ejection in wasmesh",
    ),
    "spec.to[].default.connectionLimits": partly("maxRequests only"),
    "spec.to[].default.connectionLimits.maxRequests": partly("the CircuitBreaker's maxConcurrent"),
    "spec.to[].default.connectionLimits.maxConnections": ignored("no connection limits in wasmesh"),
    "spec.to[].default.connectionLimits.maxPendingRequests": ignored("no pending-request limit in wasmesh"),
    "spec.to[].default.connectionLimits.maxRetries": ignored("no limit on concurrent retries in wasmesh"),
    "spec.to[].default.connectionLimits.maxConnectionPools": ignored("no connection limits in wasmesh"),
    "spec.from": refused("breakers on a service's inbound traffic are not supported"),
    "spec.rules": refused("the rules form is not converted: use to"),
  },
  MeshTrace: {
    "spec.targetRef": partly("kind Mesh (the mesh's Tracing) or MeshService (that service's)"),
    "spec.default": ok,
    "spec.default.backends": partly("one: OpenTelemetry or Zipkin; Datadog is an error"),
    "spec.default.backends[].type": partly("OpenTelemetry or Zipkin; Datadog is an error"),
    "spec.default.backends[].openTelemetry": ok,
    "spec.default.backends[].openTelemetry.endpoint": partly("host:port, OTLP over gRPC (otlp-grpc)"),
    "spec.default.backends[].zipkin": ok,
    "spec.default.backends[].zipkin.url": ok,
    "spec.default.backends[].zipkin.apiVersion": partly(
      "httpJson only (Zipkin v2 JSON); httpProto is an error",
    ),
    "spec.default.backends[].zipkin.traceId128bit": ignored(
      "trace ids are as Envoy's Zipkin tracer makes them",
    ),
    "spec.default.backends[].zipkin.sharedSpanContext": ignored("spans share context as Envoy's default"),
    "spec.default.backends[].datadog": refused(
      "the Datadog agent's protocol is not supported: use its OTLP intake",
    ),
    "spec.default.sampling": partly("Kuma's defaults (100%) are written out for the mesh's"),
    "spec.default.sampling.random": ok,
    "spec.default.sampling.client": ok,
    "spec.default.sampling.overall": ok,
    "spec.default.tags": ok,
    "spec.default.tags[].name": ok,
    "spec.default.tags[].literal": ok,
    "spec.default.tags[].header": ok,
    "spec.default.tags[].header.name": ok,
    "spec.default.tags[].header.default": ok,
  },
  MeshAccessLog: {
    "spec.targetRef": partly("kind Mesh (the mesh's AccessLog) or MeshService (that service's)"),
    "spec.from": partly(
      "requests to the service; wasmesh logs both listeners alike, so from without to is a warning (and the other way round)",
    ),
    "spec.from[].targetRef": partly("kind Mesh only: every peer (wasmesh logs every request of a listener)"),
    "spec.from[].default": ok,
    "spec.from[].default.backends": ok,
    "spec.from[].default.backends[].type": partly("File; Tcp and OpenTelemetry are errors"),
    "spec.from[].default.backends[].file": ok,
    "spec.from[].default.backends[].file.path": partly("a file; /dev/stdout is the stdout backend"),
    "spec.from[].default.backends[].file.format": partly("Plain; Json is an error"),
    "spec.from[].default.backends[].file.format.type": partly("Plain; Json is an error"),
    "spec.from[].default.backends[].file.format.plain": partly(KUMA_FORMAT),
    "spec.from[].default.backends[].file.format.json": refused(
      "JSON lines are not supported: wasmesh's format is one text line of Envoy's command operators",
    ),
    "spec.from[].default.backends[].file.format.omitEmptyValues": ignored(
      "empty values print as Envoy prints them (-)",
    ),
    "spec.from[].default.backends[].tcp": refused(
      "a TCP log collector is not supported: use a file or stdout",
    ),
    "spec.from[].default.backends[].openTelemetry": refused(
      "an OpenTelemetry access-log backend is not supported yet (docs/observability.md): use a file or stdout",
    ),
    "spec.to": partly("the service's calls; wasmesh logs both listeners alike (see from)"),
    "spec.to[].targetRef": partly("kind Mesh only: every peer (wasmesh logs every request of a listener)"),
    "spec.to[].default": ok,
    "spec.to[].default.backends": ok,
    "spec.to[].default.backends[].type": partly("File; Tcp and OpenTelemetry are errors"),
    "spec.to[].default.backends[].file": ok,
    "spec.to[].default.backends[].file.path": partly("a file; /dev/stdout is the stdout backend"),
    "spec.to[].default.backends[].file.format": partly("Plain; Json is an error"),
    "spec.to[].default.backends[].file.format.type": partly("Plain; Json is an error"),
    "spec.to[].default.backends[].file.format.plain": partly(KUMA_FORMAT),
    "spec.to[].default.backends[].file.format.json": refused(
      "JSON lines are not supported: wasmesh's format is one text line of Envoy's command operators",
    ),
    "spec.to[].default.backends[].file.format.omitEmptyValues": ignored(
      "empty values print as Envoy prints them (-)",
    ),
    "spec.to[].default.backends[].tcp": refused("a TCP log collector is not supported: use a file or stdout"),
    "spec.to[].default.backends[].openTelemetry": refused(
      "an OpenTelemetry access-log backend is not supported yet (docs/observability.md): use a file or stdout",
    ),
    "spec.rules": refused("the rules form is not converted: use from and to"),
  },
};

// --- Addressing ----------------------------------------------------------------------------------

const SERVICE_PATTERN = new RegExp(ServiceName.pattern as string);
/** Kuma's tag for a Kubernetes Service: <name>_<namespace>_svc_<port>. */
const KUBE_TAG = /^([^_]+)_([^_]+)_svc_(\d+)$/;
/** Kuma's DNS name of one: <name>.<namespace>.svc.<port>(.mesh). */
const KUBE_DNS = /^([^.]+)\.([^.]+)\.svc\.(\d+)$/;

export type ServiceOf = { ok: true; service: string; port?: number } | { ok: false; message: string };

/** The wasmesh service a `kuma.io/service` value names (see the file's head); "*" stays "*". */
export function serviceOfTag(value: unknown): ServiceOf {
  if (typeof value !== "string" || value === "")
    return { ok: false, message: "must be a kuma.io/service value" };
  if (value === "*") return { ok: true, service: "*" };
  const bare = value.endsWith(".mesh") ? value.slice(0, -".mesh".length) : value;
  const kube = KUBE_TAG.exec(bare) ?? KUBE_DNS.exec(bare);
  const service = kube !== null ? `${kube[1]}.${kube[2]}` : bare;
  if (!SERVICE_PATTERN.test(service) || service.length > 127) {
    return {
      ok: false,
      message: `'${value}' is no wasmesh service name (<name>, <name>.mesh or <name>_<namespace>_svc_<port>, lower-case letters, digits and '-')`,
    };
  }
  return kube !== null ? { ok: true, service, port: Number(kube[3]) } : { ok: true, service };
}

// --- Documents -----------------------------------------------------------------------------------

const universal = (doc: Obj): boolean => doc.apiVersion === undefined;

/** The document's body: the universal form's top level (without its name), or `spec`. */
function bodyOf(doc: Obj, kind: string): Obj {
  if (universal(doc) && (OLD_KINDS as readonly string[]).includes(kind)) {
    return Object.fromEntries(Object.entries(doc).filter(([k]) => !UNIVERSAL_META.has(k)));
  }
  return isObj(doc.spec) ? doc.spec : {};
}

/** Where the body's fields are reported: "" (universal older kinds), "spec." otherwise. */
function prefixOf(doc: Obj, kind: string): string {
  return universal(doc) && (OLD_KINDS as readonly string[]).includes(kind) ? "" : "spec.";
}

/** The Kuma mesh a document belongs to, and the path that says so. */
function meshOf(doc: Obj, kind: string): { mesh: string; path: string } {
  const metadata = isObj(doc.metadata) ? doc.metadata : {};
  if (kind === "Mesh") {
    return universal(doc)
      ? { mesh: String(doc.name), path: "name" }
      : { mesh: String(metadata.name), path: "metadata.name" };
  }
  if (universal(doc)) return { mesh: String(doc.mesh), path: "mesh" };
  if ((NEW_KINDS as readonly string[]).includes(kind)) {
    const labels = isObj(metadata.labels) ? metadata.labels : {};
    const m = labels[MESH_LABEL];
    return { mesh: typeof m === "string" ? m : "default", path: `metadata.labels["${MESH_LABEL}"]` };
  }
  return { mesh: typeof doc.mesh === "string" ? doc.mesh : "default", path: "mesh" };
}

/** A context whose paths are under `prefix` (the Kubernetes form's `spec.`). */
function under(ctx: Context, prefix: string): Context {
  if (prefix === "") return ctx;
  return {
    ...ctx,
    warn: (path, message) => ctx.warn(`${prefix}${path}`, message),
    error: (path, message) => ctx.error(`${prefix}${path}`, message),
  };
}

function wholeNumber(
  ctx: Context,
  value: unknown,
  path: string,
  min: number,
  max: number,
): number | undefined {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    ctx.error(path, `must be a whole number from ${min} to ${max}`);
    return undefined;
  }
  return value;
}

/**
 * Kuma's relative weights as percentages adding up to 100 (largest remainder, ties to the first),
 * with a warning at each weight whose share is not a whole percentage.
 */
function percentages(
  ctx: Context,
  weights: { value: unknown; path: string }[],
  listPath: string,
): number[] | undefined {
  const values: number[] = [];
  for (const w of weights) {
    const v = wholeNumber(ctx, w.value, w.path, 0, 1_000_000);
    if (v === undefined) return undefined;
    values.push(v);
  }
  const total = values.reduce((a, b) => a + b, 0);
  if (total === 0) {
    ctx.error(listPath, "the weights add up to 0: no destination takes traffic");
    return undefined;
  }
  const exact = values.map((v) => (v * 100) / total);
  const out = exact.map(Math.floor);
  let left = 100 - out.reduce((a, b) => a + b, 0);
  const order = exact
    .map((e, i) => ({ i, frac: e - Math.floor(e) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left === 0) break;
    out[i] = (out[i] as number) + 1;
    left--;
  }
  exact.forEach((e, i) => {
    if (e !== out[i]) {
      ctx.warn(
        weights[i]?.path as string,
        `${values[i]} of ${total} is ${e.toFixed(2)}%: rounded to ${out[i]}%`,
      );
    }
  });
  return out;
}

type Destination = RouteRule["destinations"][number];

/** A Kuma destination selector (kuma.io/service and tags) as a Route destination. */
function destinationOf(ctx: Context, value: unknown, path: string): Destination | undefined {
  if (!isObj(value)) {
    ctx.error(path, `must be a tag selector with ${SERVICE_TAG}`);
    return undefined;
  }
  const s = serviceOfTag(value[SERVICE_TAG]);
  if (!s.ok) {
    ctx.error(`${path}["${SERVICE_TAG}"]`, s.message);
    return undefined;
  }
  if (s.service === "*") {
    ctx.error(`${path}["${SERVICE_TAG}"]`, "'*' is no destination: name the service");
    return undefined;
  }
  const subset = subsetOf(value);
  return { service: s.service, ...(subset !== undefined ? { subset } : {}) };
}

/** The tags beside kuma.io/service as a subset (a `*` value selects any: left out). */
function subsetOf(tags: Obj): Record<string, string> | undefined {
  const entries = Object.entries(tags)
    .filter(([k, v]) => k !== SERVICE_TAG && v !== "*")
    .map(([k, v]) => [k, String(v)] as const);
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

/** `destination` or `split` of a TrafficRoute's conf (or of one of its http routes). */
function destinationsOf(ctx: Context, conf: Obj, at: string): Destination[] | undefined {
  if (conf.destination !== undefined && conf.split !== undefined) {
    ctx.error(`${at}split`, "destination and split exclude each other");
    return undefined;
  }
  if (conf.destination !== undefined) {
    const d = destinationOf(ctx, conf.destination, `${at}destination`);
    return d === undefined ? undefined : [d];
  }
  if (!Array.isArray(conf.split) || conf.split.length === 0) {
    ctx.error(`${at}destination`, "is required (or split): where the traffic goes");
    return undefined;
  }
  const split = conf.split;
  const weights = percentages(
    ctx,
    split.map((s, i) => ({ value: isObj(s) ? s.weight : undefined, path: `${at}split[${i}].weight` })),
    `${at}split`,
  );
  if (weights === undefined) return undefined;
  const out: Destination[] = [];
  split.forEach((s, i) => {
    const d = destinationOf(ctx, isObj(s) ? s.destination : undefined, `${at}split[${i}].destination`);
    if (d !== undefined) out.push(split.length > 1 ? { ...d, weight: weights[i] as number } : d);
  });
  return out.length === split.length ? out : undefined;
}

/** `sources` that name every caller (`kuma.io/service: '*'` and nothing else), else an error. */
function everyCaller(ctx: Context, sources: unknown, what: string): boolean {
  if (!Array.isArray(sources) || sources.length === 0) {
    ctx.error("sources", "is required");
    return false;
  }
  let every = true;
  sources.forEach((s, i) => {
    const match = isObj(s) && isObj(s.match) ? s.match : {};
    const keys = Object.keys(match);
    if (keys.length !== 1 || match[SERVICE_TAG] !== "*") {
      ctx.error(
        `sources[${i}].match`,
        `must be {${SERVICE_TAG}: '*'}: a wasmesh ${what} applies to every caller of the destination, not to some`,
      );
      every = false;
    }
  });
  return every;
}

/** The services `destinations` select by kuma.io/service ("*" included), with the other tags. */
function destinationSelectors(
  ctx: Context,
  destinations: unknown,
  otherTags: boolean,
): { service: string; subset?: Record<string, string>; path: string }[] | undefined {
  if (!Array.isArray(destinations) || destinations.length === 0) {
    ctx.error("destinations", "is required");
    return undefined;
  }
  const out: { service: string; subset?: Record<string, string>; path: string }[] = [];
  let good = true;
  destinations.forEach((d, i) => {
    const path = `destinations[${i}].match`;
    const match = isObj(d) && isObj(d.match) ? d.match : undefined;
    if (match === undefined) {
      ctx.error(path, `is required: a tag selector with ${SERVICE_TAG}`);
      good = false;
      return;
    }
    const s = serviceOfTag(match[SERVICE_TAG]);
    if (!s.ok) {
      ctx.error(`${path}["${SERVICE_TAG}"]`, s.message);
      good = false;
      return;
    }
    const subset = subsetOf(match);
    if (subset !== undefined && !otherTags) {
      ctx.error(path, `${Object.keys(subset).join(", ")}: only ${SERVICE_TAG} selects the destination`);
      good = false;
      return;
    }
    if (subset !== undefined && s.service === "*") {
      ctx.error(path, `tags of every service ('*'): a CircuitBreaker names one service`);
      good = false;
      return;
    }
    out.push({ service: s.service, ...(subset !== undefined ? { subset } : {}), path });
  });
  return good ? out : undefined;
}

type StringMatch = { exact?: string; prefix?: string; regex?: string };

/** TrafficRoute's {exact|prefix|regex: string}. */
function kumaStringMatch(ctx: Context, value: unknown, path: string): StringMatch | undefined {
  const keys = isObj(value) ? Object.keys(value) : [];
  const key = keys[0];
  if (
    !isObj(value) ||
    keys.length !== 1 ||
    (key !== "exact" && key !== "prefix" && key !== "regex") ||
    typeof value[key] !== "string"
  ) {
    ctx.error(path, "must have exactly one of exact, prefix, regex, as a string");
    return undefined;
  }
  return { [key]: value[key] as string };
}

function trafficRouteMatch(ctx: Context, m: unknown, at: string): RouteRule["match"] | undefined {
  if (!isObj(m)) {
    ctx.error(at, "must be a match (path, method, headers)");
    return undefined;
  }
  const match: NonNullable<RouteRule["match"]> = {};
  if (m.path !== undefined) {
    const p = kumaStringMatch(ctx, m.path, `${at}.path`);
    if (p !== undefined) match.path = p;
  }
  if (m.method !== undefined) {
    const p = kumaStringMatch(ctx, m.method, `${at}.method`);
    if (p !== undefined && p.exact === undefined) ctx.error(`${at}.method`, "exact methods only");
    else if (p?.exact !== undefined) match.methods = [p.exact];
  }
  if (m.headers !== undefined) {
    if (!isObj(m.headers)) ctx.error(`${at}.headers`, "must be a map of header names to matches");
    else {
      match.headers = Object.entries(m.headers).flatMap(([name, v]) => {
        const s = kumaStringMatch(ctx, v, `${at}.headers.${name}`);
        return s === undefined ? [] : [{ name: name.toLowerCase(), ...s }];
      });
    }
  }
  return Object.keys(match).length > 0 ? match : undefined;
}

// --- TrafficRoute, MeshHTTPRoute -----------------------------------------------------------------

function routesFor(base: string, services: string[], rules: RouteRule[]): Route[] {
  return services.map(
    (service): Route =>
      native("Route", services.length === 1 ? base : nativeName(base, service), {
        service,
        rules: structuredClone(rules),
      }),
  );
}

export function convertTrafficRoute(ctx: Context, body: Obj, base: string): Route[] {
  if (!everyCaller(ctx, body.sources, "Route")) return [];
  const targets = destinationSelectors(ctx, body.destinations, false);
  const conf = isObj(body.conf) ? body.conf : undefined;
  if (conf === undefined) {
    ctx.error("conf", "is required");
    return [];
  }
  if (targets === undefined) return [];
  const services = [...new Set(targets.map((t) => t.service))];
  if (services.includes("*")) {
    // Kuma's route-all-default: every service's traffic to itself, which is what wasmesh does
    // without a Route; anything else for every service has no Route form.
    const dest = isObj(conf.destination) ? conf.destination : {};
    const toItself =
      conf.http === undefined &&
      conf.split === undefined &&
      Object.keys(dest).length === 1 &&
      dest[SERVICE_TAG] === "*";
    if (!toItself) {
      ctx.error(
        targets.find((t) => t.service === "*")?.path ?? "destinations",
        `${SERVICE_TAG}: '*' routes every service: a wasmesh Route names one; only Kuma's default (every service to itself, what wasmesh does without a Route) is carried`,
      );
    }
    return [];
  }
  const rules: RouteRule[] = [];
  const http = conf.http;
  if (http !== undefined) {
    if (!Array.isArray(http)) ctx.error("conf.http", "must be a list of routes");
    else {
      http.forEach((h, i) => {
        const at = `conf.http[${i}]`;
        if (!isObj(h)) {
          ctx.error(at, "must be a route (a mapping)");
          return;
        }
        if (h.match === undefined) {
          ctx.error(`${at}.match`, "is required");
          return;
        }
        const match = trafficRouteMatch(ctx, h.match, `${at}.match`);
        const destinations = destinationsOf(ctx, h, `${at}.`);
        if (destinations === undefined) return;
        rules.push({ name: `http-${i}`, ...(match !== undefined ? { match } : {}), destinations });
      });
    }
  }
  const fallback = destinationsOf(ctx, conf, "conf.");
  if (fallback !== undefined) rules.push({ name: "default", destinations: fallback });
  return routesFor(base, services, rules);
}

/** A targetRef of kind MeshService (or Mesh when `mesh` says so) as a service name, "*" for Mesh. */
function targetService(
  ctx: Context,
  ref: unknown,
  path: string,
  kinds: readonly string[],
): string | undefined {
  // Kuma: a policy without a top-level targetRef applies to the whole mesh.
  if (ref === undefined && kinds.includes("Mesh") && path === "spec.targetRef") return "*";
  if (!isObj(ref)) {
    ctx.error(path, "is required");
    return undefined;
  }
  const kind = ref.kind;
  if (typeof kind !== "string" || !kinds.includes(kind)) {
    ctx.error(
      `${path}.kind`,
      `${JSON.stringify(kind)}: only ${kinds.join(" and ")} ${kinds.length > 1 ? "are" : "is"} supported here`,
    );
    return undefined;
  }
  if (kind === "Mesh") {
    if (ref.proxyTypes !== undefined)
      ctx.warn(`${path}.proxyTypes`, "not supported, ignored: every sidecar is meant");
    return "*";
  }
  return serviceOfRef(ctx, ref, path);
}

const DISPLAY_NAME = "kuma.io/display-name";
const NAMESPACE_LABEL = "k8s.kuma.io/namespace";

/** A MeshService reference by name (a kuma.io/service value), name and namespace, or Kuma's labels. */
function serviceOfRef(ctx: Context, ref: Obj, path: string): string | undefined {
  let name = ref.name;
  let namespace = ref.namespace;
  let at = `${path}.name`;
  if (name === undefined && isObj(ref.labels)) {
    const labels = ref.labels;
    const other = Object.keys(labels).filter((k) => k !== DISPLAY_NAME && k !== NAMESPACE_LABEL);
    if (other.length > 0 || typeof labels[DISPLAY_NAME] !== "string") {
      ctx.error(
        `${path}.labels`,
        `services are named by name, or by the labels ${DISPLAY_NAME} and ${NAMESPACE_LABEL} only`,
      );
      return undefined;
    }
    name = labels[DISPLAY_NAME];
    namespace = labels[NAMESPACE_LABEL] ?? namespace;
    at = `${path}.labels["${DISPLAY_NAME}"]`;
  } else if (ref.labels !== undefined) {
    ctx.error(`${path}.labels`, "name and labels exclude each other");
    return undefined;
  }
  const s: ServiceOf =
    typeof namespace === "string" && typeof name === "string"
      ? SERVICE_PATTERN.test(`${name}.${namespace}`)
        ? { ok: true, service: `${name}.${namespace}` }
        : { ok: false, message: `'${name}' in '${namespace}' gives no wasmesh service name` }
      : serviceOfTag(name);
  if (!s.ok || s.service === "*") {
    ctx.error(at, s.ok ? "must name a service" : s.message);
    return undefined;
  }
  if (ref.tags !== undefined) {
    ctx.error(`${path}.tags`, "a MeshService is the whole service: name its subsets in backendRefs");
    return undefined;
  }
  if (ref.sectionName !== undefined) {
    ctx.warn(`${path}.sectionName`, "not supported, ignored: every port of the service is meant");
  }
  return s.service;
}

/**
 * Kuma's order of MeshHTTPRoute matches (Gateway API's, meshhttproute's SortRules), whatever the
 * order written: a path before none; Exact, then PathPrefix, then RegularExpression, the longer
 * value first; a method before none; more headers, then more query parameters first.
 */
function specificity(match: RouteRule["match"]): number[] {
  const path = match?.path;
  const type = path?.exact !== undefined ? 0 : path?.prefix !== undefined ? 1 : 2;
  const length = path?.exact !== undefined ? 0 : (path?.prefix ?? path?.regex ?? "").length;
  return [
    path === undefined ? 1 : 0,
    path === undefined ? 0 : type,
    -length,
    match?.methods !== undefined ? 0 : 1,
    -(match?.headers?.length ?? 0),
    -(match?.query?.length ?? 0),
  ];
}

function compareSpecificity(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return 0;
}

const PATH_TYPES: Record<string, keyof StringMatch> = {
  Exact: "exact",
  PathPrefix: "prefix",
  RegularExpression: "regex",
};
const HEADER_TYPES: Record<string, string> = {
  Exact: "exact",
  Prefix: "prefix",
  RegularExpression: "regex",
  Present: "present",
  Absent: "absent",
};
const QUERY_TYPES: Record<string, string> = { Exact: "exact", RegularExpression: "regex" };

function meshHttpMatch(ctx: Context, m: unknown, at: string): RouteRule["match"] | undefined {
  if (!isObj(m)) {
    ctx.error(at, "must be a match (path, method, headers, queryParams)");
    return undefined;
  }
  const match: NonNullable<RouteRule["match"]> = {};
  if (m.path !== undefined) {
    const p = isObj(m.path) ? m.path : {};
    const type = PATH_TYPES[String(p.type)];
    if (type === undefined || typeof p.value !== "string") {
      ctx.error(`${at}.path`, "must have type (Exact, PathPrefix or RegularExpression) and value");
    } else match.path = { [type]: p.value };
  }
  if (m.method !== undefined) {
    if (typeof m.method !== "string") ctx.error(`${at}.method`, "must be a method name");
    else match.methods = [m.method];
  }
  const named = (key: "headers" | "queryParams", types: Record<string, string>) => {
    const list = m[key];
    if (list === undefined) return undefined;
    if (!Array.isArray(list)) {
      ctx.error(`${at}.${key}`, "must be a list of matches");
      return undefined;
    }
    return list.flatMap((h, i) => {
      const path = `${at}.${key}[${i}]`;
      const e = isObj(h) ? h : {};
      const type = types[String(e.type ?? "Exact")];
      if (typeof e.name !== "string" || e.name === "") {
        ctx.error(`${path}.name`, "is required");
        return [];
      }
      if (type === undefined) {
        ctx.error(
          `${path}.type`,
          `${JSON.stringify(e.type)}: only ${Object.keys(types).join(", ")} are supported`,
        );
        return [];
      }
      const name = key === "headers" ? e.name.toLowerCase() : e.name;
      if (type === "present" || type === "absent") return [{ name, [type]: true }];
      if (typeof e.value !== "string") {
        ctx.error(`${path}.value`, "is required");
        return [];
      }
      return [{ name, [type]: e.value }];
    });
  };
  const headers = named("headers", HEADER_TYPES);
  if (headers !== undefined) match.headers = headers;
  const query = named("queryParams", QUERY_TYPES);
  if (query !== undefined) match.query = query;
  return Object.keys(match).length > 0 ? match : undefined;
}

export function convertMeshHTTPRoute(ctx: Context, spec: Obj, base: string): Route[] {
  const from = targetService(ctx, spec.targetRef, "spec.targetRef", ["Mesh"]);
  if (from === undefined) return [];
  if (!Array.isArray(spec.to) || spec.to.length === 0) {
    ctx.error("spec.to", "is required");
    return [];
  }
  const out: { service: string; rules: RouteRule[] }[] = [];
  spec.to.forEach((t, i) => {
    const at = `spec.to[${i}]`;
    const to = isObj(t) ? t : {};
    const service = targetService(ctx, to.targetRef, `${at}.targetRef`, ["MeshService"]);
    if (service === undefined) return;
    if (!Array.isArray(to.rules) || to.rules.length === 0) {
      ctx.error(`${at}.rules`, "is required");
      return;
    }
    const rules: { rule: RouteRule; order: number[]; index: number }[] = [];
    to.rules.forEach((r, j) => {
      const rat = `${at}.rules[${j}]`;
      const rule = isObj(r) ? r : {};
      const dflt = isObj(rule.default) ? rule.default : {};
      let destinations: Destination[] | undefined = [{ service }];
      if (dflt.backendRefs !== undefined)
        destinations = backendRefs(ctx, dflt.backendRefs, `${rat}.default.backendRefs`);
      if (destinations === undefined) return;
      if (!Array.isArray(rule.matches) || rule.matches.length === 0) {
        ctx.error(`${rat}.matches`, "is required: which requests the rule takes");
        return;
      }
      const matches = rule.matches;
      matches.forEach((m, k) => {
        const match = meshHttpMatch(ctx, m, `${rat}.matches[${k}]`);
        const name = matches.length > 1 ? `rule-${j}-m${k}` : `rule-${j}`;
        rules.push({
          rule: {
            name,
            ...(match !== undefined ? { match } : {}),
            destinations: structuredClone(destinations),
          },
          order: specificity(match),
          index: rules.length,
        });
      });
    });
    rules.sort((a, b) => compareSpecificity(a.order, b.order) || a.index - b.index);
    if (rules.some((r, k) => r.index !== k)) {
      ctx.warn(
        `${at}.rules`,
        "reordered as Kuma applies them, most specific match first (an exact path, then the longest prefix, then the longest regular expression; a method; most headers; most query parameters)",
      );
    }
    if (out.some((o) => o.service === service)) {
      ctx.error(
        `${at}.targetRef`,
        `'${service}' is named by an earlier entry of spec.to: one route per destination service`,
      );
      return;
    }
    out.push({ service, rules: rules.map((r) => r.rule) });
  });
  return out.map(({ service, rules }) =>
    native("Route", out.length === 1 ? base : nativeName(base, service), { service, rules }),
  );
}

function backendRefs(ctx: Context, refs: unknown, at: string): Destination[] | undefined {
  if (!Array.isArray(refs) || refs.length === 0) {
    ctx.error(at, "must be a list of backends");
    return undefined;
  }
  const weights = percentages(
    ctx,
    refs.map((r, i) => ({ value: isObj(r) ? (r.weight ?? 1) : undefined, path: `${at}[${i}].weight` })),
    at,
  );
  if (weights === undefined) return undefined;
  const out: Destination[] = [];
  refs.forEach((r, i) => {
    const ref = isObj(r) ? r : {};
    const path = `${at}[${i}]`;
    if (ref.kind !== "MeshService" && ref.kind !== "MeshServiceSubset") {
      ctx.error(
        `${path}.kind`,
        `${JSON.stringify(ref.kind)}: only MeshService and MeshServiceSubset are supported`,
      );
      return;
    }
    const service = serviceOfRef(ctx, { ...ref, tags: undefined }, path);
    if (service === undefined) return;
    const subset = isObj(ref.tags) ? subsetOf(ref.tags) : undefined;
    out.push({
      service,
      ...(subset !== undefined ? { subset } : {}),
      ...(refs.length > 1 ? { weight: weights[i] as number } : {}),
    });
  });
  return out.length === refs.length ? out : undefined;
}

// --- CircuitBreaker, MeshCircuitBreaker ----------------------------------------------------------

interface BreakerSettings {
  consecutiveErrors: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
  maxConcurrent?: number;
}

const DAY_MS = 86_400_000;

/** Breaker settings from Kuma's detectors (Envoy's defaults where a field is absent). */
function breakerSettings(
  ctx: Context,
  od: Obj,
  at: string,
  detectors: { path: string; total: string; gateway: string; note: string },
  maxRequests: { value: unknown; path: string },
): BreakerSettings | undefined {
  const d = isObj(od.detectors) ? od.detectors : {};
  const consecutive = (key: string): number | undefined => {
    const det = d[key];
    if (det === undefined) return undefined;
    const v = isObj(det) ? det.consecutive : undefined;
    if (v === undefined) return 5; // Envoy's default, which Kuma leaves in place
    return wholeNumber(ctx, v, `${detectors.path}.${key}.consecutive`, 0, 10_000);
  };
  const total = consecutive(detectors.total);
  const gateway = consecutive(detectors.gateway);
  if (gateway !== undefined) {
    ctx.warn(
      `${detectors.path}.${detectors.gateway}`,
      total !== undefined
        ? `not carried: ${detectors.total} is the breaker's threshold`
        : "counted over every 5xx, not only 502, 503 and 504",
    );
  }
  const errors = total ?? gateway;
  if (errors === undefined) {
    ctx.error(
      detectors.path,
      `${detectors.total} (or ${detectors.gateway}) is required: wasmesh's breaker counts consecutive errors, and no other detector has a native form`,
    );
    return undefined;
  }
  ctx.warn(detectors.note, BREAKER);
  if (errors === 0) {
    ctx.error(
      `${detectors.path}.${total !== undefined ? detectors.total : detectors.gateway}.consecutive`,
      "must be at least 1",
    );
    return undefined;
  }
  const ms = (key: string, fallback: number) =>
    od[key] === undefined
      ? fallback
      : duration(ctx, od[key], `${at}.${key}`, { max: DAY_MS, zero: "refused" });
  const intervalMs = ms("interval", 10_000);
  const baseEjectionMs = ms("baseEjectionTime", 30_000);
  const percent =
    od.maxEjectionPercent === undefined
      ? 10
      : wholeNumber(ctx, od.maxEjectionPercent, `${at}.maxEjectionPercent`, 0, 100);
  if (intervalMs === undefined || baseEjectionMs === undefined || percent === undefined) return undefined;
  const settings: BreakerSettings = {
    consecutiveErrors: errors,
    intervalMs,
    baseEjectionMs,
    maxEjectionPercent: percent,
  };
  if (maxRequests.value !== undefined) {
    const max = wholeNumber(ctx, maxRequests.value, maxRequests.path, 1, 1_000_000);
    if (max === undefined) return undefined;
    settings.maxConcurrent = max;
  }
  return settings;
}

export function convertCircuitBreaker(ctx: Context, body: Obj, base: string): CircuitBreaker[] {
  if (!everyCaller(ctx, body.sources, "CircuitBreaker")) return [];
  const targets = destinationSelectors(ctx, body.destinations, true);
  const conf = isObj(body.conf) ? body.conf : undefined;
  if (conf === undefined) {
    ctx.error("conf", "is required");
    return [];
  }
  if (targets === undefined) return [];
  const any = targets.find((t) => t.service === "*");
  if (any !== undefined) {
    ctx.error(any.path, `${SERVICE_TAG}: '*': a wasmesh CircuitBreaker names one service`);
    return [];
  }
  const thresholds = isObj(conf.thresholds) ? conf.thresholds : {};
  const settings = breakerSettings(
    ctx,
    conf,
    "conf",
    { path: "conf.detectors", total: "totalErrors", gateway: "gatewayErrors", note: "conf.detectors" },
    { value: thresholds.maxRequests, path: "conf.thresholds.maxRequests" },
  );
  if (settings === undefined) return [];
  return targets.map((t) =>
    native(
      "CircuitBreaker",
      targets.length === 1 ? base : nativeName(base, t.service, ...Object.values(t.subset ?? {})),
      {
        service: t.service,
        ...(t.subset !== undefined ? { subset: t.subset } : {}),
        ...settings,
      },
    ),
  );
}

export function convertMeshCircuitBreaker(ctx: Context, spec: Obj, base: string): CircuitBreaker[] {
  if (targetService(ctx, spec.targetRef, "spec.targetRef", ["Mesh"]) === undefined) return [];
  if (!Array.isArray(spec.to) || spec.to.length === 0) {
    ctx.error("spec.to", "is required");
    return [];
  }
  const out: { service: string; settings: BreakerSettings }[] = [];
  spec.to.forEach((t, i) => {
    const at = `spec.to[${i}]`;
    const to = isObj(t) ? t : {};
    const service = targetService(ctx, to.targetRef, `${at}.targetRef`, ["MeshService"]);
    if (service === undefined) return;
    const dflt = isObj(to.default) ? to.default : {};
    const limits = isObj(dflt.connectionLimits) ? dflt.connectionLimits : {};
    const od = isObj(dflt.outlierDetection) ? dflt.outlierDetection : undefined;
    if (od === undefined || od.disabled === true) {
      if (limits.maxRequests !== undefined) {
        ctx.warn(
          `${at}.default.connectionLimits.maxRequests`,
          "not carried: wasmesh limits concurrent requests in a CircuitBreaker, which only outlierDetection makes",
        );
      }
      return;
    }
    const settings = breakerSettings(
      ctx,
      od,
      `${at}.default.outlierDetection`,
      {
        path: `${at}.default.outlierDetection.detectors`,
        total: "totalFailures",
        gateway: "gatewayFailures",
        note: `${at}.default.outlierDetection`,
      },
      { value: limits.maxRequests, path: `${at}.default.connectionLimits.maxRequests` },
    );
    if (settings === undefined) return;
    if (out.some((o) => o.service === service)) {
      ctx.error(`${at}.targetRef`, `'${service}' is named by an earlier entry of spec.to`);
      return;
    }
    out.push({ service, settings });
  });
  return out.map(({ service, settings }) =>
    native("CircuitBreaker", out.length === 1 ? base : nativeName(base, service), { service, ...settings }),
  );
}

// --- MeshTrace, MeshAccessLog --------------------------------------------------------------------

/** Kuma's default for each of MeshTrace's sampling percentages. */
const KUMA_SAMPLING_DEFAULT = 100;

/**
 * MeshTrace → a Tracing: the mesh's (targetRef Mesh, or none), with Kuma's sampling defaults
 * (100%) written out where wasmesh's differ; a service's (MeshService), whose sampling, when it
 * gives one, takes the fields it leaves out from the input's mesh MeshTrace (else Kuma's defaults),
 * since wasmesh's override replaces sampling as a whole.
 */
export function convertMeshTrace(ctx: Context, spec: Obj, base: string, index: KumaIndex): Tracing[] {
  const target = targetService(ctx, spec.targetRef, "spec.targetRef", ["Mesh", "MeshService"]);
  if (target === undefined) return [];
  const service = target === "*" ? undefined : target;
  const dflt = isObj(spec.default) ? spec.default : {};
  let usable = true;
  // The backend.
  let backend: Tracing["spec"]["backend"];
  const backends = Array.isArray(dflt.backends) ? dflt.backends : [];
  if (backends.length > 1) {
    ctx.error("spec.default.backends", "has more than one backend: a wasmesh Tracing has one");
    return [];
  }
  const b = isObj(backends[0]) ? backends[0] : undefined;
  if (b !== undefined) {
    const at = "spec.default.backends[0]";
    if (b.type === "OpenTelemetry") {
      const endpoint = isObj(b.openTelemetry) ? b.openTelemetry.endpoint : undefined;
      const url =
        typeof endpoint === "string" ? (/^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`) : "";
      const parsed = URL.canParse(url) ? new URL(url) : undefined;
      if (parsed === undefined || parsed.port === "" || (parsed.pathname !== "/" && parsed.pathname !== "")) {
        ctx.error(
          `${at}.openTelemetry.endpoint`,
          "must be host:port of an OTLP/gRPC collector (e.g. otel-collector.observability:4317)",
        );
        return [];
      }
      backend = { protocol: "otlp-grpc", url: `${parsed.protocol}//${parsed.host}` };
    } else if (b.type === "Zipkin") {
      const z = isObj(b.zipkin) ? b.zipkin : {};
      if (z.apiVersion !== undefined && z.apiVersion !== "httpJson") {
        ctx.error(
          `${at}.zipkin.apiVersion`,
          `${JSON.stringify(z.apiVersion)}: wasmesh sends Zipkin v2 JSON (httpJson) only`,
        );
        return [];
      }
      if (typeof z.url !== "string" || !/^https?:\/\//.test(z.url) || !URL.canParse(z.url)) {
        ctx.error(
          `${at}.zipkin.url`,
          "must be the collector's http(s) URL (e.g. http://zipkin:9411/api/v2/spans)",
        );
        return [];
      }
      backend = { protocol: "zipkin", url: z.url };
    } else if (b.type === "Datadog") {
      ctx.error(
        `${at}.type`,
        "Datadog: the Datadog agent's protocol is not supported; send OTLP to its OTLP intake with an OpenTelemetry backend",
      );
      return [];
    } else {
      ctx.error(`${at}.type`, `${JSON.stringify(b.type)}: OpenTelemetry or Zipkin`);
      return [];
    }
  } else if (service === undefined) {
    ctx.error(
      "spec.default.backends",
      "is required for the mesh's MeshTrace: wasmesh's mesh Tracing needs a backend",
    );
    return [];
  }
  // Sampling: Kuma's defaults are 100%, wasmesh's random one is 1%.
  let sampling: Tracing["spec"]["sampling"];
  const given = isObj(dflt.sampling) ? dflt.sampling : undefined;
  if (service === undefined || given !== undefined) {
    const inherited = service !== undefined ? (index.meshSampling ?? {}) : {};
    const pick = (key: "random" | "client" | "overall"): number | undefined => {
      const own = given?.[key];
      const value = own ?? inherited[key];
      if (value === undefined) return KUMA_SAMPLING_DEFAULT;
      // The mesh MeshTrace's own problems are its document's.
      const p = percentOf(own !== undefined ? ctx : quiet(ctx), value, `spec.default.sampling.${key}`);
      if (p === undefined) usable = false;
      return p;
    };
    const random = pick("random");
    const client = pick("client");
    const overall = pick("overall");
    if (random !== undefined && client !== undefined && overall !== undefined) {
      // Envoy caps random by overall; wasmesh's validation asks for overall ≥ random: the same.
      sampling = {
        randomPercent: Math.min(random, overall),
        ...(client !== 100 ? { clientPercent: client } : {}),
        ...(overall !== 100 ? { overallPercent: overall } : {}),
      };
    }
  }
  let tags: Tracing["spec"]["tags"];
  if (dflt.tags !== undefined) {
    tags = kumaTags(ctx, dflt.tags, "spec.default.tags");
    if (tags === undefined) usable = false;
  }
  if (!usable) return [];
  return [
    native("Tracing", base, {
      ...(service !== undefined ? { service } : {}),
      ...(backend !== undefined ? { backend } : {}),
      ...(sampling !== undefined ? { sampling } : {}),
      ...(tags !== undefined && tags.length > 0 ? { tags } : {}),
    }) as Tracing,
  ];
}

/** A context that reports nothing (for values another document reports). */
const quiet = (ctx: Context): Context => ({ ...ctx, warn: () => {}, error: () => {} });

/** Kuma's placeholders, which its control plane fills in and Envoy does not know. */
const KUMA_OPERATOR = /%KUMA_[A-Z_]+%/;

/**
 * MeshAccessLog → an AccessLog, the mesh's (targetRef Mesh) or a service's (MeshService). wasmesh
 * logs both listeners of a sidecar with one list of backends: `from` (inbound) and `to` (outbound)
 * entries must say the same, with targetRef Mesh (every peer); only one of them is a warning.
 */
export function convertMeshAccessLog(ctx: Context, spec: Obj, base: string): AccessLog[] {
  const target = targetService(ctx, spec.targetRef, "spec.targetRef", ["Mesh", "MeshService"]);
  if (target === undefined) return [];
  if (spec.rules !== undefined) return []; // refused by the audit
  const service = target === "*" ? undefined : target;
  let usable = true;
  let result: { backends: AccessLogBackend[]; format?: string; at: string } | undefined;
  const sides = (["from", "to"] as const).filter(
    (d) => Array.isArray(spec[d]) && (spec[d] as unknown[]).length > 0,
  );
  if (sides.length === 0) {
    ctx.error("spec.from", "is required (or spec.to): where requests are logged");
    return [];
  }
  for (const side of sides) {
    (spec[side] as unknown[]).forEach((entry, i) => {
      const at = `spec.${side}[${i}]`;
      const e = isObj(entry) ? entry : {};
      const ref = e.targetRef;
      if (!isObj(ref) || ref.kind !== "Mesh") {
        ctx.error(
          `${at}.targetRef.kind`,
          `${JSON.stringify(isObj(ref) ? ref.kind : ref)}: only Mesh (every peer): wasmesh logs every request of a sidecar's listeners`,
        );
        usable = false;
        return;
      }
      const dflt = isObj(e.default) ? e.default : {};
      const list = Array.isArray(dflt.backends) ? dflt.backends : [];
      const backends: AccessLogBackend[] = [];
      let format: string | undefined;
      list.forEach((b, j) => {
        const bat = `${at}.default.backends[${j}]`;
        const backend = isObj(b) ? b : {};
        if (backend.type === "Tcp" || backend.type === "OpenTelemetry") {
          ctx.error(`${bat}.type`, `${backend.type}: not supported; wasmesh logs to a file or stdout (File)`);
          usable = false;
          return;
        }
        if (backend.type !== "File" || !isObj(backend.file)) {
          ctx.error(`${bat}.type`, `${JSON.stringify(backend.type)}: File (with file.path)`);
          usable = false;
          return;
        }
        const path = backend.file.path;
        if (typeof path !== "string" || !path.startsWith("/")) {
          ctx.error(`${bat}.file.path`, "must be an absolute path");
          usable = false;
          return;
        }
        backends.push(path === "/dev/stdout" ? { stdout: {} } : { file: { path } });
        const f = backend.file.format;
        if (f === undefined) return;
        const fmt = isObj(f) ? f : {};
        if (fmt.type !== "Plain" || typeof fmt.plain !== "string") {
          if (fmt.json === undefined)
            ctx.error(`${bat}.file.format.type`, `${JSON.stringify(fmt.type)}: Plain (with plain) only`);
          usable = false;
          return;
        }
        const kumaOnly = KUMA_OPERATOR.exec(fmt.plain);
        if (kumaOnly !== null) {
          ctx.error(
            `${bat}.file.format.plain`,
            `${kumaOnly[0]} is Kuma's own placeholder, which Kuma's control plane fills in; Envoy does not know it: use Envoy's command operators (e.g. %UPSTREAM_CLUSTER% for the destination)`,
          );
          usable = false;
          return;
        }
        // Without its line end, as Kuma writes it: the translation adds one.
        const line = fmt.plain;
        if (format !== undefined && format !== line) {
          ctx.error(
            `${bat}.file.format.plain`,
            "differs from an earlier backend's: a wasmesh AccessLog has one format",
          );
          usable = false;
          return;
        }
        format = line;
      });
      if (list.length > 0 && backends.length < list.length) return;
      // Backends without a format print the default line: every backend must agree.
      if (
        format !== undefined &&
        list.some((b) => !(isObj(b) && isObj(b.file) && b.file.format !== undefined))
      ) {
        ctx.error(
          `${at}.default.backends`,
          "some backends give a format and some do not: a wasmesh AccessLog has one format",
        );
        usable = false;
        return;
      }
      const same = (x: AccessLogBackend[], y: AccessLogBackend[]) => JSON.stringify(x) === JSON.stringify(y);
      if (result === undefined) result = { backends, ...(format !== undefined ? { format } : {}), at };
      else if (!same(result.backends, backends) || result.format !== format) {
        ctx.error(
          `${at}.default`,
          `differs from ${result.at}.default: wasmesh logs both listeners of a sidecar to the same backends, in one format`,
        );
        usable = false;
      }
    });
  }
  if (!usable || result === undefined) return [];
  if (sides.length === 1) {
    const [side] = sides;
    ctx.warn(
      `spec.${side}`,
      `wasmesh logs both listeners of a sidecar alike: the ${side === "from" ? "service's own calls (outbound)" : "requests to the service (inbound)"} are logged too`,
    );
  }
  const stdout = result.backends.filter((b) => b.stdout !== undefined).length;
  if (stdout > 1) {
    ctx.error(`${result.at}.default.backends`, "names /dev/stdout more than once");
    return [];
  }
  return [
    native("AccessLog", base, {
      ...(service !== undefined ? { service } : {}),
      backends: result.backends,
      ...(result.format !== undefined ? { format: result.format } : {}),
    }) as AccessLog,
  ];
}

// --- TrafficPermission, MeshTrafficPermission ----------------------------------------------------

function accessRule(
  base: string,
  source: string,
  destination: string,
  action: "allow" | "deny",
  many: boolean,
): AccessRule {
  const name = many
    ? nativeName(base, source === "*" ? "any" : source, destination)
    : nativeName(base, source === "*" ? "any" : source);
  return native("AccessRule", name, { source, destination, action });
}

/** Whether a TrafficPermission allows every caller everything (Kuma's allow-all-<mesh>). */
function allowsAll(doc: Obj, kind: string): boolean {
  const body = bodyOf(doc, kind);
  const every = (list: unknown) =>
    Array.isArray(list) &&
    list.length > 0 &&
    list.every(
      (e) => isObj(e) && isObj(e.match) && e.match[SERVICE_TAG] === "*" && Object.keys(e.match).length === 1,
    );
  if (kind === "TrafficPermission") return every(body.sources) && every(body.destinations);
  if (kind === "MeshTrafficPermission") {
    const mesh = (ref: unknown) => isObj(ref) && ref.kind === "Mesh";
    return (
      mesh(body.targetRef) &&
      Array.isArray(body.from) &&
      body.from.some(
        (f) => isObj(f) && mesh(f.targetRef) && isObj(f.default) && allowAction(f.default.action),
      )
    );
  }
  return false;
}

const allowAction = (a: unknown) => a === "Allow" || a === "AllowWithShadowDeny";

export function convertTrafficPermission(ctx: Context, body: Obj, base: string): AccessRule[] {
  const targets = destinationSelectors(ctx, body.destinations, false);
  if (!Array.isArray(body.sources) || body.sources.length === 0) {
    ctx.error("sources", "is required");
    return [];
  }
  const sources: string[] = [];
  body.sources.forEach((s, i) => {
    const path = `sources[${i}].match`;
    const match = isObj(s) && isObj(s.match) ? s.match : undefined;
    if (match === undefined) {
      ctx.error(path, `is required: a tag selector with ${SERVICE_TAG}`);
      return;
    }
    const extra = Object.keys(match).filter((k) => k !== SERVICE_TAG);
    if (extra.length > 0) {
      ctx.error(path, `${extra.join(", ")}: AccessRules name the calling service, not its workloads by tags`);
      return;
    }
    const r = serviceOfTag(match[SERVICE_TAG]);
    if (!r.ok) ctx.error(`${path}["${SERVICE_TAG}"]`, r.message);
    else if (!sources.includes(r.service)) sources.push(r.service);
  });
  if (targets === undefined) return [];
  const destinations = [...new Set(targets.map((t) => t.service))];
  if (destinations.includes("*")) {
    // Every caller to every service: Kuma's allow-all, wasmesh's defaultAccess allow (see Mesh).
    if (!sources.includes("*")) {
      ctx.error(
        targets.find((t) => t.service === "*")?.path ?? "destinations",
        `${SERVICE_TAG}: '*' with some sources: AccessRules name one destination service (only every caller to every service, defaultAccess allow, is carried)`,
      );
    }
    return [];
  }
  const many = destinations.length > 1;
  return destinations.flatMap((d) => sources.map((s) => accessRule(base, s, d, "allow", many)));
}

export function convertMeshTrafficPermission(
  ctx: Context,
  spec: Obj,
  base: string,
): { rules: AccessRule[]; denyAll: boolean } {
  const none = { rules: [], denyAll: false };
  const destination = targetService(ctx, spec.targetRef, "spec.targetRef", ["Mesh", "MeshService"]);
  if (destination === undefined) return none;
  if (!Array.isArray(spec.from) || spec.from.length === 0) {
    ctx.error("spec.from", "is required");
    return none;
  }
  const rules: AccessRule[] = [];
  let denyAll = false;
  const seen = new Map<string, number>();
  spec.from.forEach((f, i) => {
    const at = `spec.from[${i}]`;
    const from = isObj(f) ? f : {};
    const source = targetService(ctx, from.targetRef, `${at}.targetRef`, ["Mesh", "MeshService"]);
    const action = isObj(from.default) ? from.default.action : undefined;
    if (action !== "Allow" && action !== "Deny" && action !== "AllowWithShadowDeny") {
      ctx.error(
        `${at}.default.action`,
        `${JSON.stringify(action)}: must be Allow, Deny or AllowWithShadowDeny`,
      );
      return;
    }
    if (action === "AllowWithShadowDeny") {
      ctx.warn(`${at}.default.action`, "AllowWithShadowDeny is Allow: wasmesh logs no shadow denials");
    }
    if (source === undefined) return;
    const earlier = seen.get(source);
    if (earlier !== undefined) {
      ctx.error(
        `${at}.targetRef`,
        `same caller as spec.from[${earlier}]: Kuma merges them, the later one winning; write one`,
      );
      return;
    }
    seen.set(source, i);
    if (destination === "*") {
      if (source !== "*") {
        ctx.error(
          `${at}.targetRef`,
          "a caller to every service (targetRef kind Mesh): AccessRules name one destination service",
        );
      } else if (action === "Deny") denyAll = true;
      // Mesh to Mesh Allow: defaultAccess allow, wasmesh's default (see Mesh).
      return;
    }
    rules.push(accessRule(base, source, destination, action === "Deny" ? "deny" : "allow", false));
  });
  return { rules, denyAll };
}

// --- Mesh ----------------------------------------------------------------------------------------

export function convertMesh(ctx: Context, body: Obj, index: KumaIndex): Translation {
  const mtls = isObj(body.mtls) ? body.mtls : undefined;
  const enabled = mtls?.enabledBackend;
  if (enabled === undefined || enabled === "") {
    return { resources: [], mtls: "disabled" };
  }
  const backends = Array.isArray(mtls?.backends) ? mtls.backends : [];
  const i = backends.findIndex((b) => isObj(b) && b.name === enabled);
  if (i < 0) {
    ctx.error("mtls.enabledBackend", `'${String(enabled)}' names no entry of mtls.backends`);
    return { resources: [] };
  }
  const backend = backends[i] as Obj;
  const mode = backend.mode ?? "STRICT";
  let native: MtlsMode;
  if (mode === "STRICT") native = "strict";
  else if (mode === "PERMISSIVE") native = "permissive";
  else {
    ctx.error(`mtls.backends[${i}].mode`, `must be STRICT or PERMISSIVE (got ${JSON.stringify(mode)})`);
    return { resources: [] };
  }
  // With mTLS on, Kuma lets through only what a TrafficPermission (MeshTrafficPermission) allows.
  if (index.allowAll === undefined) {
    ctx.warn(
      "mtls.enabledBackend",
      "with mTLS on, Kuma denies every call no traffic permission allows: MeshPolicy defaultAccess deny (Kuma creates the permission allow-all-<mesh> with a new mesh: include it to keep every call allowed)",
    );
    return { resources: [], mtls: native, denyByDefault: true };
  }
  return { resources: [], mtls: native };
}

// --- Dataplane -----------------------------------------------------------------------------------

const PROTOCOLS: Record<string, "http" | "grpc" | "tcp"> = {
  http: "http",
  http2: "http",
  grpc: "grpc",
  tcp: "tcp",
  kafka: "tcp",
};

interface Inbound {
  service: string;
  /** The Service's port: the one in a Kubernetes service tag, else servicePort, else port. */
  servicePort: number;
  protocol: "http" | "grpc" | "tcp";
}

function inboundOf(value: unknown): Inbound | undefined {
  if (!isObj(value) || !isObj(value.tags)) return undefined;
  const s = serviceOfTag(value.tags[SERVICE_TAG]);
  if (!s.ok || s.service === "*") return undefined;
  const port = s.port ?? value.servicePort ?? value.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  const protocol = PROTOCOLS[String(value.tags[PROTOCOL_TAG] ?? "tcp")];
  if (protocol === undefined) return undefined;
  return { service: s.service, servicePort: port, protocol };
}

export function convertDataplane(
  ctx: Context,
  body: Obj,
  base: string,
  document: number,
  index: KumaIndex,
): Resource[] {
  const net = isObj(body.networking) ? body.networking : undefined;
  if (net === undefined) {
    ctx.error("networking", "is required");
    return [];
  }
  if (net.gateway !== undefined) return [];
  if (!Array.isArray(net.inbound) || net.inbound.length === 0) {
    ctx.error("networking.inbound", "is required: the service this dataplane serves");
    return [];
  }
  const inbound = net.inbound;
  const out: Resource[] = [];
  inbound.forEach((entry, i) => {
    const at = `networking.inbound[${i}]`;
    const e = isObj(entry) ? entry : {};
    const tags = isObj(e.tags) ? e.tags : {};
    const s = serviceOfTag(tags[SERVICE_TAG]);
    if (!s.ok || s.service === "*") {
      ctx.error(`${at}.tags["${SERVICE_TAG}"]`, s.ok ? "must name a service" : s.message);
      return;
    }
    const port = wholeNumber(ctx, e.port, `${at}.port`, 1, 65_535);
    const appPort =
      e.servicePort === undefined
        ? undefined
        : wholeNumber(ctx, e.servicePort, `${at}.servicePort`, 1, 65_535);
    const protocol = PROTOCOLS[String(tags[PROTOCOL_TAG] ?? "tcp")];
    if (protocol === undefined) {
      ctx.error(
        `${at}.tags["${PROTOCOL_TAG}"]`,
        `${JSON.stringify(tags[PROTOCOL_TAG])}: must be http, http2, grpc, tcp or kafka`,
      );
      return;
    }
    if (tags[PROTOCOL_TAG] === "http2" || tags[PROTOCOL_TAG] === "kafka") {
      ctx.warn(
        `${at}.tags["${PROTOCOL_TAG}"]`,
        `${String(tags[PROTOCOL_TAG])} is served as wasmesh's ${protocol}`,
      );
    }
    const address = e.address ?? net.advertisedAddress ?? net.address;
    if (typeof address !== "string" || address === "") {
      ctx.error("networking.address", "is required: where the workload is reached");
      return;
    }
    if (port === undefined || (e.servicePort !== undefined && appPort === undefined)) return;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(tags)) {
      if (k === SERVICE_TAG) continue;
      if (typeof v !== "string" && typeof v !== "number") {
        ctx.error(`${at}.tags["${k}"]`, "must be a string");
        return;
      }
      labels[k] = String(v);
    }
    const zone = typeof tags[ZONE_TAG] === "string" ? tags[ZONE_TAG] : undefined;
    const known = index.services.get(s.service);
    const mine = inboundOf(entry);
    if (known !== undefined && mine !== undefined) {
      const other = known.ports.get(mine.servicePort);
      if (other !== undefined && other.protocol !== mine.protocol) {
        ctx.error(
          `${at}.tags["${PROTOCOL_TAG}"]`,
          `${mine.protocol} on port ${mine.servicePort} of '${s.service}', which document ${other.document} serves as ${other.protocol}`,
        );
        return;
      }
    }
    const workload: Workload = native("Workload", inbound.length === 1 ? base : nativeName(base, String(i)), {
      service: s.service,
      address,
      port,
      ...(Object.keys(labels).length > 0 ? { labels } : {}),
      ...(zone !== undefined ? { zone } : {}),
      ...(appPort !== undefined && appPort !== port ? { appPort } : {}),
    });
    if (known !== undefined && known.document === document && known.inbound === i) {
      const ports = [...known.ports.entries()]
        .sort(([a], [b]) => a - b)
        .map(([p, { protocol: proto }]) => ({ name: `${proto}-${p}`, port: p, protocol: proto }));
      const service: Service = native("Service", s.service, { ports });
      out.push(service);
    }
    out.push(workload);
  });
  return out;
}

// --- The mesh ------------------------------------------------------------------------------------

/**
 * A caller and destination that an earlier document allows and this one denies (or the reverse):
 * Kuma picks by the policies' targetRefs and names, wasmesh's AccessRules do not rank, so it is an
 * error here. The rules are recorded for later documents when this one has no error.
 */
function decided(
  ctx: Context,
  path: string,
  rules: AccessRule[],
  index: KumaIndex,
  record: boolean,
): AccessRule[] {
  let failed = false;
  for (const r of rules) {
    const earlier = index.access.get(`${r.spec.source} ${r.spec.destination}`);
    if (earlier !== undefined && earlier.action !== r.spec.action) {
      ctx.error(
        path,
        `${r.spec.action === "allow" ? "allows" : "denies"} '${r.spec.source}' to '${r.spec.destination}', which document ${earlier.document} ${earlier.action === "allow" ? "allows" : "denies"}: wasmesh's deny wins between AccessRules of one caller, where Kuma picks by the policies' targetRefs and names; keep one`,
      );
      failed = true;
    }
  }
  if (failed || !record) return [];
  for (const r of rules) {
    const key = `${r.spec.source} ${r.spec.destination}`;
    if (!index.access.has(key)) index.access.set(key, { document: ctx.document, action: r.spec.action });
  }
  return rules;
}

/**
 * Kuma enforces traffic permissions only with mTLS on: with the input's Mesh saying it is off, a
 * permission changes nothing in Kuma, and is not carried (a warning), lest wasmesh enforce it.
 */
function unenforced(ctx: Context, path: string, index: KumaIndex): boolean {
  if (index.mtlsOff === undefined) return false;
  ctx.warn(
    path,
    `not carried: Kuma enforces traffic permissions only with mTLS on, which the Mesh (document ${index.mtlsOff}) has off`,
  );
  return true;
}

export interface KumaIndex {
  /** The Kuma mesh of the input: the first document's. */
  mesh?: { name: string; document: number };
  /** Services the Dataplanes serve: the first inbound that names one makes the Service. */
  services: Map<
    string,
    {
      document: number;
      inbound: number;
      ports: Map<number, { protocol: Inbound["protocol"]; document: number }>;
    }
  >;
  /** The document of the input's Mesh when it has mTLS off (no mtls.enabledBackend). */
  mtlsOff?: number;
  /** The document of an allow-all traffic permission in the input, if any. */
  allowAll?: number;
  /** What earlier documents decided for a caller and a destination, as translate meets them. */
  access: Map<string, { document: number; action: "allow" | "deny" }>;
  /** The sampling of the input's MeshTrace for the whole mesh, which a service's inherits field by field. */
  meshSampling?: Obj;
}

function indexKuma(documents: readonly SourceDocument[]): KumaIndex {
  const index: KumaIndex = { services: new Map(), access: new Map() };
  for (const { doc, document, kind } of documents) {
    if (index.mesh === undefined) index.mesh = { name: meshOf(doc, kind).mesh, document };
    if (index.allowAll === undefined && allowsAll(doc, kind)) index.allowAll = document;
    if (kind === "MeshTrace" && index.meshSampling === undefined) {
      const spec = bodyOf(doc, kind);
      const ref = spec.targetRef;
      const dflt = isObj(spec.default) ? spec.default : {};
      if ((ref === undefined || (isObj(ref) && ref.kind === "Mesh")) && isObj(dflt.sampling))
        index.meshSampling = dflt.sampling;
    }
    if (kind === "Mesh") {
      const mtls = bodyOf(doc, kind).mtls;
      const enabled = isObj(mtls) ? mtls.enabledBackend : undefined;
      if ((enabled === undefined || enabled === "") && index.mtlsOff === undefined) index.mtlsOff = document;
    }
    if (kind !== "Dataplane") continue;
    const net = bodyOf(doc, kind).networking;
    const inbound = isObj(net) && Array.isArray(net.inbound) ? net.inbound : [];
    inbound.forEach((entry, i) => {
      const e = inboundOf(entry);
      if (e === undefined) return;
      let known = index.services.get(e.service);
      if (known === undefined) {
        known = { document, inbound: i, ports: new Map() };
        index.services.set(e.service, known);
      }
      if (!known.ports.has(e.servicePort)) known.ports.set(e.servicePort, { protocol: e.protocol, document });
    });
  }
  return index;
}

export const kuma: SourceMesh<KumaIndex> = {
  name: "Kuma",
  universalApiVersion: KUMA_API_VERSION,
  fields: FIELDS,
  identify(doc) {
    if (doc.apiVersion === KUMA_API_VERSION) {
      const kind = typeof doc.kind === "string" ? doc.kind : "";
      const metadata = isObj(doc.metadata) ? doc.metadata : {};
      const name = typeof metadata.name === "string" ? metadata.name : "";
      if (!KINDS.includes(kind)) {
        return {
          kind,
          name,
          error: { path: "kind", message: `Kuma kind '${kind}' is not supported (${KINDS.join(", ")} are)` },
        };
      }
      return {
        kind,
        name,
        ...(typeof metadata.namespace === "string" ? { namespace: metadata.namespace } : {}),
      };
    }
    // Universal: `type`, `name` and `mesh` (a Mesh names none), no apiVersion or kind.
    if (doc.apiVersion !== undefined || doc.kind !== undefined || typeof doc.type !== "string")
      return undefined;
    if (typeof doc.name !== "string" || (doc.type !== "Mesh" && typeof doc.mesh !== "string"))
      return undefined;
    if (!KINDS.includes(doc.type)) {
      return {
        kind: doc.type,
        name: doc.name,
        error: {
          path: "type",
          message: `Kuma kind '${doc.type}' is not supported (${KINDS.join(", ")} are)`,
        },
      };
    }
    return { kind: doc.type, name: doc.name };
  },
  index: indexKuma,
  translate(given, doc, index, base) {
    let errors = 0;
    const ctx: Context = {
      ...given,
      error: (path, message) => {
        errors++;
        given.error(path, message);
      },
    };
    const kind = ctx.kind;
    const body = bodyOf(doc, kind);
    const prefix = prefixOf(doc, kind);
    const inBody = under(ctx, prefix);
    // The older kinds' table is written as the universal form (`conf.split`), the Mesh* kinds' under `spec`.
    if ((NEW_KINDS as readonly string[]).includes(kind)) auditFields(body, "spec", FIELDS[kind] ?? {}, ctx);
    else auditFields(body, "", FIELDS[kind] ?? {}, inBody);
    const m = meshOf(doc, kind);
    if (index.mesh !== undefined && m.mesh !== index.mesh.name) {
      ctx.error(
        m.path,
        `mesh '${m.mesh}': wasmesh runs one mesh, and this input's Kuma documents are of mesh '${index.mesh.name}' (document ${index.mesh.document}); convert each mesh on its own`,
      );
      return { resources: [] };
    }
    switch (kind) {
      case "Mesh":
        return convertMesh(inBody, body, index);
      case "Dataplane":
        return { resources: convertDataplane(inBody, body, base, ctx.document, index) };
      case "TrafficRoute":
        return { resources: convertTrafficRoute(inBody, body, base) };
      case "CircuitBreaker":
        return { resources: convertCircuitBreaker(inBody, body, base) };
      case "TrafficPermission": {
        const rules = convertTrafficPermission(inBody, body, base);
        if (unenforced(inBody, "sources", index)) return { resources: [] };
        return { resources: decided(inBody, "sources", rules, index, errors === 0) };
      }
      case "MeshHTTPRoute":
        return { resources: convertMeshHTTPRoute(ctx, body, base) };
      case "MeshCircuitBreaker":
        return { resources: convertMeshCircuitBreaker(ctx, body, base) };
      case "MeshTrace":
        return { resources: convertMeshTrace(ctx, body, base, index) };
      case "MeshAccessLog":
        return { resources: convertMeshAccessLog(ctx, body, base) };
      case "MeshTrafficPermission": {
        const access = convertMeshTrafficPermission(ctx, body, base);
        if (unenforced(ctx, "spec.from", index)) return { resources: [] };
        const rules = decided(ctx, "spec.from", access.rules, index, errors === 0);
        return { resources: rules, ...(access.denyAll ? { denyByDefault: true } : {}) };
      }
      default:
        return { resources: [] };
    }
  },
};
