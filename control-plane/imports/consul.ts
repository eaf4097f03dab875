// Consul's config entries as wasmesh's resources (consul.hashicorp.com/v1alpha1, the CRDs of
// consul-k8s): ServiceIntentions → AccessRules (and MeshPolicy's defaultAccess), ServiceRouter,
// ServiceSplitter and ServiceResolver → one Route per service, ServiceDefaults → checked only,
// ProxyDefaults → MeshPolicy's mTLS mode.
//
// FIELDS below is the support matrix the converter runs on (as istio.ts's): unknown fields are
// warnings, `ignored` fields warnings and `refused` fields errors, each with the reason;
// docs/imports.md lists the same table (a test compares them).
//
// Addressing (a Consul service name → a wasmesh service name), decided once here: consul-k8s
// registers a Kubernetes Service under its own name, so a name `api` in a resource of namespace
// `prod` (metadata.namespace, else --namespace) is `api.prod`, as wasmesh's discovery names it; a
// `namespace` field next to the name (a Consul Enterprise namespace, mirrored from Kubernetes)
// replaces the resource's. Without a namespace (universal) the name is the service's; `namespace:
// default` there is the name alone too (a universal service's identity is namespace default's).
//
// One Route per service: Consul resolves a service's traffic through its router, then the
// splitter of the service a route leads to (when it names no subset), then the resolver (subsets,
// default subset). Here the router's document carries all of it: its routes in order, then a last
// rule without match for what Consul's router sends to the service's splitter or default subset;
// the splitter (or, failing both, a resolver with a default subset) produces the Route only when
// no router of the service is in the input.
import {
  type AccessRule,
  type MtlsMode,
  type Route,
  type RouteRule,
  ServiceName,
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
import { concatChanges, duration, type HeaderChanges, headerChanges, native, percents } from "./translate.ts";
import type { SourceDocument, SourceMesh, Translation } from "./types.ts";

export const CONSUL_GROUP = "consul.hashicorp.com";
export const CONSUL_VERSION = "v1alpha1";
export const CONSUL_KINDS = [
  "ServiceIntentions",
  "ServiceDefaults",
  "ServiceSplitter",
  "ServiceResolver",
  "ServiceRouter",
  "ProxyDefaults",
] as const;

const PARTITION = partly(
  'the default partition only ("default" or empty): admin partitions are not supported',
);
const PEER = refused("services of peered clusters are not supported");
const SAMENESS = refused("sameness groups (services across clusters) are not supported");
const HEADERS = "with one destination only (a rule's header changes)";

function headerModifierFields(at: string, support = ok): FieldTable {
  return {
    [at]: support,
    [`${at}.add`]: ok,
    [`${at}.set`]: ok,
    [`${at}.remove`]: ok,
  };
}

/** Every field of each kind's spec the converter knows, with how far it is carried. */
export const FIELDS: Record<string, FieldTable> = {
  ServiceIntentions: {
    "spec.destination": ok,
    "spec.destination.name": partly('a service, or "*" with only a "*" source (every service)'),
    "spec.destination.namespace": ok,
    "spec.sources": ok,
    "spec.sources[].name": ok,
    "spec.sources[].namespace": ok,
    "spec.sources[].partition": PARTITION,
    "spec.sources[].peer": PEER,
    "spec.sources[].samenessGroup": SAMENESS,
    "spec.sources[].action": ok,
    "spec.sources[].permissions": partly(
      "only a list that decides every request alike (one action, a permission without criteria); AccessRules allow or deny a whole service, not paths, methods or headers",
    ),
    "spec.sources[].permissions[].action": ok,
    "spec.sources[].permissions[].http": partly(
      "empty, or pathPrefix / only: a permission for every request",
    ),
    "spec.sources[].permissions[].jwt": refused("JWT requirements are not supported"),
    "spec.sources[].description": ignored("AccessRules carry no description"),
    "spec.jwt": refused("JWT requirements are not supported"),
  },
  ServiceDefaults: {
    "spec.protocol": partly(
      "checked, not carried: a wasmesh Service's port names its protocol (discovery: the port's appProtocol or name, else http)",
    ),
    "spec.mode": ignored("the data-plane agent decides how traffic reaches the sidecar"),
    "spec.transparentProxy": ignored("the data-plane agent decides how traffic reaches the sidecar"),
    "spec.mutualTLSMode": ignored("set spec.mtls on the wasmesh Service (or MeshPolicy's) instead"),
    "spec.meshGateway": ignored("mesh gateways are not supported"),
    "spec.expose": ignored("exposed paths are not supported: health checks reach the app directly"),
    "spec.externalSNI": refused("services outside the mesh (terminating gateways) are not supported"),
    "spec.upstreamConfig": ignored(
      "per-upstream limits and passive health checks are not carried: use a CircuitBreaker",
    ),
    "spec.destination": refused("services outside the mesh (terminating gateways) are not supported"),
    "spec.maxInboundConnections": ignored("no inbound connection limit in wasmesh"),
    "spec.localConnectTimeoutMs": ignored("no local connect timeout in wasmesh"),
    "spec.localRequestTimeoutMs": ignored(
      "no local request timeout in wasmesh: a Route rule's timeoutMs holds",
    ),
    "spec.balanceInboundConnections": ignored("inbound connections are balanced by Envoy's default"),
    "spec.rateLimits": ignored("rate limits are not supported"),
    "spec.envoyExtensions": ignored("Envoy extensions are not supported: use a WasmPlugin"),
  },
  ServiceSplitter: {
    "spec.splits": ok,
    "spec.splits[].weight": partly("whole percentages: fractions are rounded, with a warning"),
    "spec.splits[].service": ok,
    "spec.splits[].serviceSubset": ok,
    "spec.splits[].namespace": ok,
    "spec.splits[].partition": PARTITION,
    ...headerModifierFields("spec.splits[].requestHeaders", partly(HEADERS)),
    ...headerModifierFields("spec.splits[].responseHeaders", partly(HEADERS)),
  },
  ServiceResolver: {
    "spec.defaultSubset": ok,
    "spec.subsets": partly(
      "filters of equalities on Service.Meta.<key> (and-ed): the workload labels <key>: <value>",
    ),
    "spec.redirect": refused("redirecting a service's traffic to another is not supported"),
    "spec.failover": ignored("no failover: traffic stays with the service's own workloads"),
    "spec.connectTimeout": ignored("Envoy's default connect timeout applies"),
    "spec.requestTimeout": partly(
      "a Route rule's timeoutMs, in the Route of a resolver with a default subset only (a router's own requestTimeout wins)",
    ),
    "spec.loadBalancer": ignored(
      "wasmesh balances round robin; hash policies have no equivalent (a Route rule's sticky picks among destinations, not hosts)",
    ),
    "spec.prioritizeByLocality": ignored("no locality-aware routing in wasmesh"),
  },
  ServiceRouter: {
    "spec.routes": ok,
    "spec.routes[].match": ok,
    "spec.routes[].match.http": ok,
    "spec.routes[].match.http.pathExact": ok,
    "spec.routes[].match.http.pathPrefix": ok,
    "spec.routes[].match.http.pathRegex": ok,
    "spec.routes[].match.http.caseInsensitive": ok,
    "spec.routes[].match.http.header": partly("invert with present only (absent)"),
    "spec.routes[].match.http.queryParam": ok,
    "spec.routes[].match.http.methods": ok,
    "spec.routes[].destination": ok,
    "spec.routes[].destination.service": ok,
    "spec.routes[].destination.serviceSubset": ok,
    "spec.routes[].destination.namespace": ok,
    "spec.routes[].destination.partition": PARTITION,
    "spec.routes[].destination.prefixRewrite": refused("rewrites are not supported"),
    "spec.routes[].destination.idleTimeout": ignored("no stream idle timeout in wasmesh"),
    "spec.routes[].destination.requestTimeout": ok,
    "spec.routes[].destination.numRetries": partly("with a retry condition (retryOn, retryOnConnectFailure)"),
    "spec.routes[].destination.retryOnConnectFailure": ok,
    "spec.routes[].destination.retryOn": ok,
    "spec.routes[].destination.retryOnStatusCodes": refused("retrying on status codes is not supported"),
    ...headerModifierFields("spec.routes[].destination.requestHeaders"),
    ...headerModifierFields("spec.routes[].destination.responseHeaders"),
  },
  ProxyDefaults: {
    "spec.mutualTLSMode": ok,
    "spec.config": partly("protocol is checked; the rest configures Envoy, which wasmesh does itself"),
    "spec.config.protocol": partly("checked, not carried (as ServiceDefaults' protocol)"),
    "spec.mode": ignored("the data-plane agent decides how traffic reaches the sidecar"),
    "spec.transparentProxy": ignored("the data-plane agent decides how traffic reaches the sidecar"),
    "spec.meshGateway": ignored("mesh gateways are not supported"),
    "spec.expose": ignored("exposed paths are not supported: health checks reach the app directly"),
    "spec.accessLogs": ignored("access logs are configured by wasmesh's own settings"),
    "spec.envoyExtensions": ignored("Envoy extensions are not supported: use a WasmPlugin"),
    "spec.failoverPolicy": ignored("no failover: traffic stays with the service's own workloads"),
    "spec.prioritizeByLocality": ignored("no locality-aware routing in wasmesh"),
  },
};

// --- Addressing ----------------------------------------------------------------------------------

const SERVICE_PATTERN = new RegExp(ServiceName.pattern as string);
const LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

type Named = { ok: true; service: string } | { ok: false; message: string };

/**
 * The wasmesh service a Consul service name names (see the file's head): `namespace` is the field
 * next to it (Consul Enterprise), `resourceNamespace` the resource's own (or --namespace).
 */
export function serviceOfConsulName(
  name: unknown,
  namespace: unknown,
  resourceNamespace: string | undefined,
): Named {
  if (typeof name !== "string" || name === "") return { ok: false, message: "must be a service name" };
  if (name === "*") return { ok: false, message: '"*" is not supported here' };
  if (!LABEL.test(name)) {
    return {
      ok: false,
      message: `'${name}' is no DNS label: consul-k8s names a service after its Kubernetes Service`,
    };
  }
  if (namespace !== undefined && namespace !== "" && typeof namespace !== "string")
    return { ok: false, message: "its namespace must be a string" };
  const own = typeof namespace === "string" && namespace !== "" ? namespace : undefined;
  if (own === "*") return { ok: false, message: `'${name}' in every namespace ("*") is not supported` };
  if (own !== undefined && !LABEL.test(own))
    return { ok: false, message: `namespace '${own}' is no DNS label` };
  const ns = own ?? resourceNamespace;
  const service =
    ns === undefined || (resourceNamespace === undefined && own === "default") ? name : `${name}.${ns}`;
  if (!SERVICE_PATTERN.test(service) || service.length > 127) {
    return { ok: false, message: `'${name}' gives '${service}', which is no valid service name` };
  }
  return { ok: true, service };
}

// --- Index ---------------------------------------------------------------------------------------

/** A resolver's subset: its labels, or why its filter has none. */
type SubsetLabels = { ok: true; labels: Record<string, string> } | { ok: false; message: string };

interface ResolverInfo {
  document: number;
  subsets: Map<string, SubsetLabels>;
  defaultSubset?: string;
}

/** What Consul documents need to know of each other, by wasmesh service. */
export interface ConsulIndex {
  resolvers: Map<string, ResolverInfo>;
  splitters: Map<string, SourceDocument>;
  routers: Map<string, SourceDocument>;
}

function serviceOfEntry(source: { doc: Obj; namespace: string | undefined }): string | undefined {
  const metadata = isObj(source.doc.metadata) ? source.doc.metadata : {};
  const s = serviceOfConsulName(metadata.name, undefined, source.namespace);
  return s.ok ? s.service : undefined;
}

export function indexConsul(documents: readonly SourceDocument[]): ConsulIndex {
  const index: ConsulIndex = { resolvers: new Map(), splitters: new Map(), routers: new Map() };
  for (const source of documents) {
    const service = serviceOfEntry(source);
    if (service === undefined) continue;
    const spec = isObj(source.doc.spec) ? source.doc.spec : {};
    if (source.kind === "ServiceSplitter" && !index.splitters.has(service))
      index.splitters.set(service, source);
    if (source.kind === "ServiceRouter" && !index.routers.has(service)) index.routers.set(service, source);
    if (source.kind === "ServiceResolver" && !index.resolvers.has(service)) {
      const subsets = new Map<string, SubsetLabels>();
      if (isObj(spec.subsets)) {
        for (const [name, s] of Object.entries(spec.subsets)) {
          subsets.set(name, labelsOfFilter(isObj(s) ? s.filter : undefined));
        }
      }
      index.resolvers.set(service, {
        document: source.document,
        subsets,
        ...(typeof spec.defaultSubset === "string" && spec.defaultSubset !== ""
          ? { defaultSubset: spec.defaultSubset }
          : {}),
      });
    }
  }
  return index;
}

const LABEL_KEY =
  /^(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const META_EQUALS = /^Service\.Meta\.([A-Za-z0-9_.\-/]+)\s*==\s*(?:"([^"]*)"|`([^`]*)`|([A-Za-z0-9_.-]+))$/;

/**
 * A subset filter as workload labels: `Service.Meta.version == v1` (quoted or not), several joined
 * by `and`. consul-k8s takes a pod's service meta from its annotations
 * (consul.hashicorp.com/service-meta-<key>); wasmesh selects on the pod's labels of the same key.
 */
export function labelsOfFilter(filter: unknown): SubsetLabels {
  if (filter === undefined || filter === "") {
    return { ok: false, message: "a subset without a filter is every instance: name no subset instead" };
  }
  if (typeof filter !== "string") return { ok: false, message: "must be a filter expression (a string)" };
  const labels: Record<string, string> = {};
  for (const term of filter.trim().split(/\s+and\s+/)) {
    const m = META_EQUALS.exec(term.trim());
    if (m === null) {
      return {
        ok: false,
        message: `'${filter}': only equalities on Service.Meta.<key> joined by "and" have a label form (Service.Tags, Service.ID, or, not and in are not supported)`,
      };
    }
    const key = m[1] as string;
    const value = (m[2] ?? m[3] ?? m[4]) as string;
    if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value) || value.length > 63) {
      return { ok: false, message: `'${key}: ${value}' is no Kubernetes label, which a subset selects on` };
    }
    if (labels[key] !== undefined && labels[key] !== value) {
      return { ok: false, message: `'${filter}' asks ${key} to be two values: no instance matches` };
    }
    labels[key] = value;
  }
  return { ok: true, labels };
}

// --- Conversion ----------------------------------------------------------------------------------

/** A native resource, its fields in the order `get -o yaml` prints them. */

function checkPartition(ctx: Context, value: unknown, path: string): void {
  if (value !== undefined && value !== "" && value !== "default") {
    ctx.error(path, `partition '${String(value)}': admin partitions are not supported`);
  }
}

type Destination = RouteRule["destinations"][number];

/** Where traffic to a target goes, and the header changes on the way (a splitter's). */
interface Target {
  destinations: Destination[];
  requestHeaders?: HeaderChanges;
  responseHeaders?: HeaderChanges;
}

/** Reports nothing, remembers whether there was an error: for another document's part. */
function silent(ctx: Context): Context & { failed: boolean } {
  const quiet = {
    ...ctx,
    failed: false,
    warn: () => undefined,
    error: () => {
      quiet.failed = true;
    },
  };
  return quiet;
}

/** The labels of subset `name` of `service` (a resolver of the input defines it), or an error. */
function subsetLabels(
  ctx: Context,
  index: ConsulIndex,
  service: string,
  name: string,
  path: string,
): Record<string, string> | undefined {
  const resolver = index.resolvers.get(service);
  const subset = resolver?.subsets.get(name);
  if (resolver === undefined || subset === undefined) {
    ctx.error(path, `subset '${name}' of '${service}' is defined by no ServiceResolver in the input`);
    return undefined;
  }
  if (!subset.ok) {
    ctx.error(
      path,
      `subset '${name}' of '${service}' (ServiceResolver, document ${resolver.document}) has no label form: ${subset.message}`,
    );
    return undefined;
  }
  return { ...subset.labels };
}

/**
 * Where Consul sends a request for `service` (subset `subset`, if named): a named subset is the
 * resolver's; otherwise the service's splitter (unless `viaSplitter` is false), else the
 * resolver's default subset, else the whole service.
 */
function resolveTarget(
  ctx: Context,
  index: ConsulIndex,
  service: string,
  subset: string | undefined,
  path: string,
  viaSplitter: boolean,
): Target | undefined {
  if (subset !== undefined) {
    const labels = subsetLabels(ctx, index, service, subset, path);
    return labels === undefined ? undefined : { destinations: [{ service, subset: labels }] };
  }
  const splitter = viaSplitter ? index.splitters.get(service) : undefined;
  if (splitter !== undefined) {
    const quiet = silent({ ...ctx, namespace: splitter.namespace });
    const target = convertSplits(quiet, splitter.doc, index, service);
    if (quiet.failed || target === undefined) {
      ctx.error(
        path,
        `goes through the ServiceSplitter of '${service}' (document ${splitter.document}), which has errors`,
      );
      return undefined;
    }
    return target;
  }
  const fallback = index.resolvers.get(service)?.defaultSubset;
  if (fallback !== undefined) {
    const labels = subsetLabels(ctx, index, service, fallback, path);
    return labels === undefined ? undefined : { destinations: [{ service, subset: labels }] };
  }
  return { destinations: [{ service }] };
}

const sameLabels = (
  a: Record<string, string> | undefined,
  b: Record<string, string> | undefined,
): boolean => {
  const ak = Object.keys(a ?? {});
  return ak.length === Object.keys(b ?? {}).length && ak.every((k) => a?.[k] === b?.[k]);
};

/** A splitter's splits as weighted destinations (and the header changes of a single split). */
function convertSplits(ctx: Context, doc: Obj, index: ConsulIndex, service: string): Target | undefined {
  const spec = isObj(doc.spec) ? doc.spec : {};
  const splits = Array.isArray(spec.splits) ? spec.splits : [];
  if (splits.length === 0) {
    ctx.error("spec.splits", "is required: the shares of the service's traffic");
    return undefined;
  }
  const dests: { service: string; subset?: Record<string, string>; weight: number }[] = [];
  let target: Target = { destinations: [] };
  let failed = false;
  splits.forEach((s, i) => {
    const at = `spec.splits[${i}]`;
    if (!isObj(s)) {
      ctx.error(at, "must be a split (a mapping)");
      failed = true;
      return;
    }
    const weight = s.weight ?? 0;
    if (typeof weight !== "number" || !(weight >= 0 && weight <= 100)) {
      ctx.error(`${at}.weight`, "must be a number from 0 to 100");
      failed = true;
      return;
    }
    checkPartition(ctx, s.partition, `${at}.partition`);
    let to = service;
    if (s.service !== undefined || s.namespace !== undefined) {
      const named = serviceOfConsulName(s.service ?? nameOf(doc), s.namespace, ctx.namespace);
      if (!named.ok) {
        ctx.error(s.service !== undefined ? `${at}.service` : `${at}.namespace`, named.message);
        failed = true;
        return;
      }
      to = named.service;
    }
    const subsetName =
      typeof s.serviceSubset === "string" && s.serviceSubset !== "" ? s.serviceSubset : undefined;
    if (subsetName === undefined && to !== service && index.splitters.has(to)) {
      ctx.error(
        `${at}.service`,
        `'${to}' has a ServiceSplitter of its own: splitters in a chain are not supported (name a serviceSubset)`,
      );
      failed = true;
      return;
    }
    const resolved = resolveTarget(ctx, index, to, subsetName, `${at}.serviceSubset`, false);
    if (resolved === undefined) {
      failed = true;
      return;
    }
    const d = resolved.destinations[0] as Destination;
    const request = headerChanges(ctx, s.requestHeaders, `${at}.requestHeaders`);
    const response = headerChanges(ctx, s.responseHeaders, `${at}.responseHeaders`);
    if (request !== undefined || response !== undefined) {
      if (splits.length > 1) {
        const field = request !== undefined ? "requestHeaders" : "responseHeaders";
        ctx.error(`${at}.${field}`, "header changes per split are supported with one split only");
        failed = true;
        return;
      }
      target = {
        destinations: [],
        ...(request !== undefined ? { requestHeaders: request } : {}),
        ...(response !== undefined ? { responseHeaders: response } : {}),
      };
    }
    const same = dests.find((o) => o.service === d.service && sameLabels(o.subset, d.subset));
    if (same !== undefined) same.weight += weight;
    else dests.push({ service: d.service, ...(d.subset !== undefined ? { subset: d.subset } : {}), weight });
  });
  if (failed) return undefined;
  const total = dests.reduce((a, d) => a + d.weight, 0);
  if (Math.abs(total - 100) > 0.01) {
    ctx.error("spec.splits", `the weights add up to ${total}: Consul requires 100`);
    return undefined;
  }
  const whole = dests.every((d) => Number.isInteger(d.weight));
  const shares = whole ? dests.map((d) => d.weight) : percents(dests.map((d) => d.weight));
  if (!whole && dests.length > 1) {
    ctx.warn(
      "spec.splits",
      `weights ${dests.map((d) => d.weight).join("/")} are rounded to whole percentages (${shares.join("/")})`,
    );
  }
  target.destinations = dests.map((d, j) => ({
    service: d.service,
    ...(d.subset !== undefined ? { subset: { ...d.subset } } : {}),
    ...(dests.length > 1 ? { weight: shares[j] as number } : {}),
  }));
  return target;
}

const nameOf = (doc: Obj): string =>
  isObj(doc.metadata) && typeof doc.metadata.name === "string" ? doc.metadata.name : "";

/** A rule sending everything to `target`, or none when that is the whole service (wasmesh's default). */
function defaultRule(
  name: string,
  service: string,
  target: Target,
  extra: Partial<RouteRule> = {},
): RouteRule | undefined {
  const only = target.destinations[0];
  const whole =
    target.destinations.length === 1 &&
    only?.service === service &&
    only.subset === undefined &&
    target.requestHeaders === undefined &&
    target.responseHeaders === undefined &&
    Object.keys(extra).length === 0;
  if (whole) return undefined;
  return {
    name,
    destinations: structuredClone(target.destinations) as RouteRule["destinations"],
    ...(target.requestHeaders !== undefined
      ? { requestHeaders: structuredClone(target.requestHeaders) }
      : {}),
    ...(target.responseHeaders !== undefined
      ? { responseHeaders: structuredClone(target.responseHeaders) }
      : {}),
    ...extra,
  } as RouteRule;
}

function ownService(ctx: Context, doc: Obj): string | undefined {
  const s = serviceOfConsulName(nameOf(doc), undefined, ctx.namespace);
  if (!s.ok) {
    ctx.error("metadata.name", `the service this configures: ${s.message}`);
    return undefined;
  }
  return s.service;
}

export function convertServiceSplitter(ctx: Context, doc: Obj, index: ConsulIndex, base: string): Route[] {
  const service = ownService(ctx, doc);
  if (service === undefined) return [];
  const target = convertSplits(ctx, doc, index, service);
  // The service's router carries the splits (as its last rule, and where its routes lead here).
  if (target === undefined || index.routers.has(service)) return [];
  const rule = defaultRule("split", service, target);
  if (rule === undefined) return [];
  return [native("Route", base, { service, rules: [rule] })];
}

type NamedMatch = NonNullable<NonNullable<RouteRule["match"]>["headers"]>[number];

function namedMatch(ctx: Context, m: unknown, at: string, header: boolean): NamedMatch | undefined {
  if (!isObj(m) || typeof m.name !== "string" || m.name === "") {
    ctx.error(`${at}.name`, "is required");
    return undefined;
  }
  const name = header ? m.name.toLowerCase() : m.name;
  const keys = (header ? ["exact", "prefix", "suffix", "regex"] : ["exact", "regex"]).filter(
    (k) => m[k] !== undefined && m[k] !== "",
  );
  const present = m.present === true;
  if (keys.length + (present ? 1 : 0) !== 1) {
    ctx.error(
      at,
      `must have exactly one of present, ${header ? "exact, prefix, suffix, regex" : "exact, regex"} (has ${[...(present ? ["present"] : []), ...keys].join(", ") || "none"})`,
    );
    return undefined;
  }
  if (m.invert === true) {
    if (present) return { name, absent: true };
    ctx.error(
      `${at}.invert`,
      "only an inverted present (the header is absent) is supported: a negated value match is not",
    );
    return undefined;
  }
  if (present) return { name, present: true };
  const key = keys[0] as string;
  return { name, [key]: String(m[key]) };
}

function convertRouteMatch(ctx: Context, match: unknown, at: string): RouteRule["match"] {
  if (match === undefined) return undefined;
  if (!isObj(match)) {
    ctx.error(at, "must be a match (a mapping)");
    return undefined;
  }
  if (match.http === undefined) return undefined;
  const http = match.http;
  const hat = `${at}.http`;
  if (!isObj(http)) {
    ctx.error(hat, "must be an HTTP match (a mapping)");
    return undefined;
  }
  const out: NonNullable<RouteRule["match"]> = {};
  const paths = (["pathExact", "pathPrefix", "pathRegex"] as const).filter(
    (k) => http[k] !== undefined && http[k] !== "",
  );
  if (paths.length > 1) {
    ctx.error(hat, `at most one of pathExact, pathPrefix, pathRegex (has ${paths.join(", ")})`);
  } else if (paths.length === 1) {
    const key = paths[0] as (typeof paths)[number];
    const value = String(http[key]);
    const ignoreCase = http.caseInsensitive === true && key !== "pathRegex" ? { ignoreCase: true } : {};
    if (http.caseInsensitive === true && key === "pathRegex") {
      ctx.warn(`${hat}.caseInsensitive`, "applies to pathExact and pathPrefix only (as in Consul)");
    }
    out.path =
      key === "pathExact"
        ? { exact: value, ...ignoreCase }
        : key === "pathPrefix"
          ? { prefix: value, ...ignoreCase }
          : { regex: value };
  }
  for (const [field, header] of [
    ["header", true],
    ["queryParam", false],
  ] as const) {
    const list = http[field];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      ctx.error(`${hat}.${field}`, "must be a list of matches");
      continue;
    }
    const matches = list.flatMap((m, i) => namedMatch(ctx, m, `${hat}.${field}[${i}]`, header) ?? []);
    if (matches.length > 0) out[header ? "headers" : "query"] = matches;
  }
  if (http.methods !== undefined) {
    if (!Array.isArray(http.methods) || http.methods.some((m) => typeof m !== "string" || m === "")) {
      ctx.error(`${hat}.methods`, "must be a list of HTTP methods");
    } else if (http.methods.length > 0) out.methods = http.methods.map((m) => String(m).toUpperCase());
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function convertRetries(ctx: Context, d: Obj, at: string): RouteRule["retries"] {
  const conditions: string[] = [];
  if (d.retryOn !== undefined) {
    if (
      !Array.isArray(d.retryOn) ||
      d.retryOn.some((c) => typeof c !== "string" || !/^[a-z0-9-]+$/.test(c))
    ) {
      ctx.error(`${at}.retryOn`, "must be a list of Envoy retry conditions (5xx, gateway-error, reset, …)");
      return undefined;
    }
    conditions.push(...(d.retryOn as string[]));
  }
  if (d.retryOnConnectFailure === true && !conditions.includes("connect-failure"))
    conditions.push("connect-failure");
  const n = d.numRetries;
  if (n !== undefined && (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 10)) {
    ctx.error(`${at}.numRetries`, "must be a whole number from 0 to 10 (wasmesh's limit)");
    return undefined;
  }
  if (conditions.length === 0) {
    if (typeof n === "number" && n > 0) {
      ctx.warn(
        `${at}.numRetries`,
        "not carried: without retryOn or retryOnConnectFailure Consul gives Envoy no retry condition, so nothing is retried",
      );
    }
    return undefined;
  }
  // Envoy's default of one retry when Consul sets conditions without numRetries.
  return { attempts: typeof n === "number" && n > 0 ? n : 1, on: conditions.join(",") };
}

export function convertServiceRouter(ctx: Context, doc: Obj, index: ConsulIndex, base: string): Route[] {
  const service = ownService(ctx, doc);
  if (service === undefined) return [];
  const spec = isObj(doc.spec) ? doc.spec : {};
  const routes = spec.routes === undefined ? [] : spec.routes;
  if (!Array.isArray(routes)) {
    ctx.error("spec.routes", "must be a list of routes");
    return [];
  }
  const rules: RouteRule[] = [];
  let catchAll = false;
  routes.forEach((r, i) => {
    const at = `spec.routes[${i}]`;
    if (!isObj(r)) {
      ctx.error(at, "must be a route (a mapping)");
      return;
    }
    const match = convertRouteMatch(ctx, r.match, `${at}.match`);
    if (match === undefined) catchAll = true;
    const d = r.destination === undefined ? {} : r.destination;
    const dat = `${at}.destination`;
    if (!isObj(d)) {
      ctx.error(dat, "must be a destination (a mapping)");
      return;
    }
    checkPartition(ctx, d.partition, `${dat}.partition`);
    let to = service;
    if (d.service !== undefined || d.namespace !== undefined) {
      const named = serviceOfConsulName(d.service ?? nameOf(doc), d.namespace, ctx.namespace);
      if (!named.ok) {
        ctx.error(d.service !== undefined ? `${dat}.service` : `${dat}.namespace`, named.message);
        return;
      }
      to = named.service;
    }
    const subset =
      typeof d.serviceSubset === "string" && d.serviceSubset !== "" ? d.serviceSubset : undefined;
    const target = resolveTarget(
      ctx,
      index,
      to,
      subset,
      subset !== undefined ? `${dat}.serviceSubset` : dat,
      true,
    );
    if (target === undefined) return;
    const rule: RouteRule = {
      name: `route-${i}`,
      ...(match !== undefined ? { match } : {}),
      destinations: structuredClone(target.destinations) as RouteRule["destinations"],
    };
    const request = concatChanges(
      target.requestHeaders,
      headerChanges(ctx, d.requestHeaders, `${dat}.requestHeaders`),
    );
    const response = concatChanges(
      target.responseHeaders,
      headerChanges(ctx, d.responseHeaders, `${dat}.responseHeaders`),
    );
    if (request !== undefined) rule.requestHeaders = structuredClone(request);
    if (response !== undefined) rule.responseHeaders = structuredClone(response);
    if (d.requestTimeout !== undefined) {
      const ms = duration(ctx, d.requestTimeout, `${dat}.requestTimeout`);
      // Consul's 0 is its default: Envoy's 15s, as a wasmesh rule without timeoutMs.
      if (ms !== undefined && ms > 0) rule.timeoutMs = ms;
    }
    const retries = convertRetries(ctx, d, dat);
    if (retries !== undefined) rule.retries = retries;
    rules.push(rule);
  });
  if (!catchAll) {
    // What no route matches goes to the service's default: its splitter, default subset or itself.
    const target = resolveTarget(ctx, index, service, undefined, "spec.routes", true);
    const name = index.splitters.has(service) ? "split" : "default";
    const rule = target === undefined ? undefined : defaultRule(name, service, target);
    if (rule !== undefined) rules.push(rule);
  }
  if (rules.length === 0) return [];
  return [native("Route", base, { service, rules })];
}

export function convertServiceResolver(ctx: Context, doc: Obj, index: ConsulIndex, base: string): Route[] {
  const service = ownService(ctx, doc);
  if (service === undefined) return [];
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (spec.subsets !== undefined && !isObj(spec.subsets)) {
    ctx.error("spec.subsets", "must be a map of subset names to subsets");
    return [];
  }
  const subsets = isObj(spec.subsets) ? spec.subsets : {};
  for (const [name, s] of Object.entries(subsets)) {
    const at = `spec.subsets.${name}`;
    if (!isObj(s)) {
      ctx.error(at, "must be a subset (a mapping with filter)");
      continue;
    }
    for (const key of Object.keys(s)) {
      if (key === "onlyPassing")
        ctx.warn(`${at}.onlyPassing`, "not supported, ignored: wasmesh has no health check states");
      else if (key !== "filter") ctx.warn(`${at}.${key}`, "unknown field: ignored");
    }
    const labels = labelsOfFilter(s.filter);
    if (!labels.ok) ctx.error(`${at}.filter`, labels.message);
  }
  const fallback = spec.defaultSubset;
  if (fallback !== undefined && fallback !== "") {
    if (typeof fallback !== "string" || !Object.hasOwn(subsets, fallback)) {
      ctx.error("spec.defaultSubset", `'${String(fallback)}' is no subset of this resolver`);
      return [];
    }
  }
  let timeoutMs: number | undefined;
  if (spec.requestTimeout !== undefined) {
    const ms = duration(ctx, spec.requestTimeout, "spec.requestTimeout");
    if (ms !== undefined && ms > 0) timeoutMs = ms;
  }
  // A router or splitter of the service makes its Route; else the default subset needs one here.
  if (index.routers.has(service) || index.splitters.has(service)) {
    if (timeoutMs !== undefined) {
      ctx.warn(
        "spec.requestTimeout",
        `not carried: the service's ${index.routers.has(service) ? "ServiceRouter" : "ServiceSplitter"} makes its Route (set the router's requestTimeout)`,
      );
    }
    return [];
  }
  const target = resolveTarget(ctx, index, service, undefined, "spec.defaultSubset", false);
  if (target === undefined) return [];
  const rule = defaultRule("default", service, target, timeoutMs !== undefined ? { timeoutMs } : {});
  if (rule === undefined) return [];
  return [native("Route", base, { service, rules: [rule] })];
}

/** A protocol of ServiceDefaults or ProxyDefaults' config: http is wasmesh's default; others are told. */
function checkProtocol(ctx: Context, value: unknown, path: string): void {
  if (value === undefined || value === "http") return;
  if (value === "http2" || value === "grpc") {
    ctx.warn(
      path,
      `${value}: not carried: give the Kubernetes Service's port appProtocol ${value === "grpc" ? "grpc" : "http2"} (or a name ${value}-…) for wasmesh to call it over HTTP/2`,
    );
    return;
  }
  if (value === "tcp") {
    ctx.warn(
      path,
      "tcp: not carried: wasmesh routes and authorizes HTTP; give the Kubernetes Service's port appProtocol tcp (or a name tcp-…) for wasmesh to pass it through as TCP",
    );
    return;
  }
  ctx.error(path, `${JSON.stringify(value)}: must be http, http2, grpc or tcp`);
}

export interface AccessResult {
  rules: AccessRule[];
  denyByDefault: boolean;
}

const ACTIONS = ["allow", "deny"] as const;
type Action = (typeof ACTIONS)[number];

/** Whether a permission decides every request (no criteria, or the path prefix "/" alone). */
function matchesEverything(http: unknown): boolean {
  if (http === undefined) return true;
  if (!isObj(http)) return false;
  const keys = Object.keys(http).filter((k) => {
    const v = http[k];
    return !(v === undefined || v === "" || (Array.isArray(v) && v.length === 0));
  });
  return keys.length === 0 || (keys.length === 1 && keys[0] === "pathPrefix" && http.pathPrefix === "/");
}

/** A source's action: its own, or that of a permission list that decides every request alike. */
function sourceAction(ctx: Context, src: Obj, at: string): Action | undefined {
  if (src.permissions !== undefined && src.action !== undefined && src.action !== "") {
    ctx.error(at, "action and permissions are mutually exclusive (as Consul says)");
    return undefined;
  }
  if (src.permissions === undefined) {
    if (!ACTIONS.includes(src.action as Action)) {
      ctx.error(`${at}.action`, `must be allow or deny (got ${JSON.stringify(src.action)})`);
      return undefined;
    }
    return src.action as Action;
  }
  const permissions = src.permissions;
  if (!Array.isArray(permissions) || permissions.length === 0) {
    ctx.error(`${at}.permissions`, "must be a list of permissions");
    return undefined;
  }
  // First match wins: trivially one action when every permission up to the first that matches
  // every request has the same action.
  let action: Action | undefined;
  for (const [i, p] of permissions.entries()) {
    const pat = `${at}.permissions[${i}]`;
    if (!isObj(p) || !ACTIONS.includes(p.action as Action)) {
      ctx.error(`${pat}.action`, "must be allow or deny");
      return undefined;
    }
    if (p.jwt !== undefined) return undefined; // refused by the field audit
    if (action !== undefined && p.action !== action) break;
    action = p.action as Action;
    if (matchesEverything(p.http)) return action;
  }
  ctx.error(
    `${at}.permissions`,
    "permissions by path, method or header have no AccessRule form (they allow or deny a whole service): only a list that decides every request alike is carried",
  );
  return undefined;
}

export function convertServiceIntentions(ctx: Context, doc: Obj, base: string): AccessResult {
  const result: AccessResult = { rules: [], denyByDefault: false };
  const spec = isObj(doc.spec) ? doc.spec : {};
  const dest = isObj(spec.destination) ? spec.destination : {};
  if (spec.jwt !== undefined) return result; // refused by the field audit
  const sources = Array.isArray(spec.sources) ? spec.sources : [];
  if (sources.length === 0) {
    ctx.error("spec.sources", "is required: at least one source (as Consul says)");
    return result;
  }
  const everyService = dest.name === "*";
  let destination: string | undefined;
  if (everyService) {
    if (dest.namespace !== undefined && dest.namespace !== "" && dest.namespace !== "*") {
      ctx.error(
        "spec.destination.namespace",
        `every service of namespace '${String(dest.namespace)}' has no native form: AccessRules name one destination, MeshPolicy holds for the mesh`,
      );
      return result;
    }
  } else {
    const d = serviceOfConsulName(dest.name, dest.namespace, ctx.namespace);
    if (!d.ok) {
      ctx.error("spec.destination.name", d.message);
      return result;
    }
    destination = d.service;
  }
  const seen = new Map<string, number>();
  const decided: { source: string; action: Action }[] = [];
  let usable = true;
  sources.forEach((src, i) => {
    const at = `spec.sources[${i}]`;
    if (!isObj(src)) {
      ctx.error(at, "must be a source (a mapping)");
      usable = false;
      return;
    }
    if (src.peer !== undefined || src.samenessGroup !== undefined) {
      usable = false; // refused by the field audit
      return;
    }
    checkPartition(ctx, src.partition, `${at}.partition`);
    let source: string;
    if (src.name === "*") {
      if (src.namespace !== undefined && src.namespace !== "" && src.namespace !== "*") {
        ctx.error(
          `${at}.namespace`,
          "every service of one namespace has no AccessRule form: name the services",
        );
        usable = false;
        return;
      }
      source = "*";
    } else {
      const s = serviceOfConsulName(src.name, src.namespace, ctx.namespace);
      if (!s.ok) {
        ctx.error(`${at}.name`, s.message);
        usable = false;
        return;
      }
      source = s.service;
    }
    const earlier = seen.get(source);
    if (earlier !== undefined) {
      ctx.error(`${at}.name`, `duplicate source '${source}' (also sources[${earlier}])`);
      usable = false;
      return;
    }
    seen.set(source, i);
    const action = sourceAction(ctx, src, at);
    if (action === undefined) {
      usable = false;
      return;
    }
    if (everyService && source !== "*") {
      ctx.error(
        `${at}.name`,
        `'${source}' to every service ("*" destination) has no AccessRule form (they name one destination service)`,
      );
      usable = false;
      return;
    }
    decided.push({ source, action });
  });
  if (!usable) return result;
  if (everyService) {
    // Only "*" → "*" is left: deny is MeshPolicy's defaultAccess; allow is wasmesh's default.
    const action = decided[0]?.action;
    if (action === "deny") result.denyByDefault = true;
    else {
      ctx.warn(
        "spec.sources[0].action",
        "allow from every service to every service is wasmesh's default (MeshPolicy defaultAccess: allow): nothing is produced, a stored MeshPolicy that denies by default stays",
      );
    }
    return result;
  }
  result.rules = decided.map(({ source, action }) =>
    native("AccessRule", nativeName(base, source === "*" ? "any" : source), {
      source,
      destination: destination as string,
      action,
    }),
  );
  return result;
}

const MTLS: Record<string, MtlsMode> = { strict: "strict", permissive: "permissive" };

function convertProxyDefaults(ctx: Context, doc: Obj): MtlsMode | undefined {
  if (nameOf(doc) !== "global") {
    ctx.error("metadata.name", `must be "global": Consul has one ProxyDefaults`);
    return undefined;
  }
  const spec = isObj(doc.spec) ? doc.spec : {};
  if (isObj(spec.config)) checkProtocol(ctx, spec.config.protocol, "spec.config.protocol");
  const mode = spec.mutualTLSMode;
  if (mode === undefined || mode === "") return undefined;
  const native = MTLS[String(mode)];
  if (native === undefined) {
    ctx.error("spec.mutualTLSMode", `must be strict, permissive or empty (got ${JSON.stringify(mode)})`);
  }
  return native;
}

// --- The mesh ------------------------------------------------------------------------------------

export const consul: SourceMesh<ConsulIndex> = {
  name: "Consul",
  fields: FIELDS,
  identify(doc) {
    const apiVersion = typeof doc.apiVersion === "string" ? doc.apiVersion : "";
    const [group, version] = apiVersion.split("/");
    if (group !== CONSUL_GROUP) return undefined;
    const kind = typeof doc.kind === "string" ? doc.kind : "";
    const metadata = isObj(doc.metadata) ? doc.metadata : {};
    const name = typeof metadata.name === "string" ? metadata.name : "";
    if (version !== CONSUL_VERSION) {
      return {
        kind,
        name,
        error: {
          path: "apiVersion",
          message: `version '${version}' of ${CONSUL_GROUP} is unknown (${CONSUL_VERSION})`,
        },
      };
    }
    if (!(CONSUL_KINDS as readonly string[]).includes(kind)) {
      return {
        kind,
        name,
        error: {
          path: "kind",
          message: `${CONSUL_GROUP} kind '${kind}' is not supported (${CONSUL_KINDS.join(", ")} are)`,
        },
      };
    }
    return {
      kind,
      name,
      ...(typeof metadata.namespace === "string" ? { namespace: metadata.namespace } : {}),
    };
  },
  index: indexConsul,
  translate(ctx, doc, index, base): Translation {
    if (isObj(doc.spec)) auditFields(doc.spec, "spec", FIELDS[ctx.kind] ?? {}, ctx);
    switch (ctx.kind) {
      case "ServiceIntentions": {
        const access = convertServiceIntentions(ctx, doc, base);
        // Consul's specific source wins over "*", as wasmesh's: no deniedToAll.
        return { resources: access.rules, ...(access.denyByDefault ? { denyByDefault: true } : {}) };
      }
      case "ServiceDefaults": {
        if (ownService(ctx, doc) === undefined) return { resources: [] };
        const spec = isObj(doc.spec) ? doc.spec : {};
        checkProtocol(ctx, spec.protocol, "spec.protocol");
        return { resources: [] };
      }
      case "ServiceSplitter":
        return { resources: convertServiceSplitter(ctx, doc, index, base) };
      case "ServiceRouter":
        return { resources: convertServiceRouter(ctx, doc, index, base) };
      case "ServiceResolver":
        return { resources: convertServiceResolver(ctx, doc, index, base) };
      case "ProxyDefaults": {
        const mtls = convertProxyDefaults(ctx, doc);
        return { resources: [], ...(mtls !== undefined ? { mtls } : {}) };
      }
      default:
        return { resources: [] };
    }
  },
};
