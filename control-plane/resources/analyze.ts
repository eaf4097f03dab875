// Mesh-wide checks over a complete set of resources (what is stored): likely mistakes that are legal,
// and who refers to whom. One module for `wasmesh describe`, `wasmesh analyze` and the web console.
// It reuses validate.ts where that already finds a problem (validateReferences: references to what
// does not exist, subsets that select no workload) and adds what needs the whole mesh: rules an
// earlier rule shadows, and services no workload may call.
import type { RequestMatch } from "../../schema/filter-config.ts";
import type { AccessRule, Kind, Resource, Route, Service, Subset, Workload } from "./schema.ts";
import { selects, validateReferences } from "./validate.ts";

/**
 * error: the mesh refers to something that does not exist (the writes check this, so it shows only
 * in a store changed behind them, e.g. a Kubernetes Service gone); warning: legal, but traffic will
 * not go where it says (a subset with no workload, an unreachable rule, a service no workload may
 * call); info: worth knowing, not a mistake (nothing names a service as a destination).
 */
export type Severity = "error" | "warning" | "info";

/** One finding: the resource and field it is about, and what is wrong. */
export interface Finding {
  severity: Severity;
  kind: Kind;
  name: string;
  /** Dotted field path in the resource, e.g. spec.rules[1]; "metadata.name" for the whole resource. */
  path: string;
  message: string;
}

/** A reference from one resource to another (`path` is the referring field). */
export interface Reference {
  kind: Kind;
  name: string;
  path: string;
  target: { kind: Kind; name: string };
}

const of = <K extends Kind>(resources: readonly Resource[], kind: K) =>
  resources.filter((r): r is Extract<Resource, { kind: K }> => r.kind === kind);

const byName = (a: { metadata: { name: string } }, b: { metadata: { name: string } }) =>
  a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;

/** The workloads of `service` that `subset` selects (every workload of it without a subset). */
export function selectedWorkloads(
  resources: readonly Resource[],
  service: string,
  subset: Subset | undefined,
): Workload[] {
  return of(resources, "Workload")
    .filter((w) => w.spec.service === service && selects(subset, w))
    .sort(byName);
}

/** Every reference each resource makes to another (what validateReferences checks exists). */
export function referencesOf(resource: Resource): Reference[] {
  const refs: Reference[] = [];
  const ref = (path: string, kind: Kind, name: string) =>
    refs.push({ kind: resource.kind, name: resource.metadata.name, path, target: { kind, name } });
  switch (resource.kind) {
    case "Workload":
      ref("spec.service", "Service", resource.spec.service);
      break;
    case "Route":
      ref("spec.service", "Service", resource.spec.service);
      resource.spec.rules.forEach((rule, i) => {
        rule.destinations.forEach((d, j) => {
          ref(`spec.rules[${i}].destinations[${j}].service`, "Service", d.service);
        });
      });
      break;
    case "CircuitBreaker":
      ref("spec.service", "Service", resource.spec.service);
      if (resource.spec.fallback) ref("spec.fallback.service", "Service", resource.spec.fallback.service);
      break;
    case "AccessRule":
      if (resource.spec.source !== "*") ref("spec.source", "Service", resource.spec.source);
      ref("spec.destination", "Service", resource.spec.destination);
      break;
    case "WasmPlugin":
      ref("spec.module", "WasmModule", resource.spec.module);
      resource.spec.services.forEach((s, i) => {
        if (s !== "*") ref(`spec.services[${i}]`, "Service", s);
      });
      break;
    case "ImportedResource":
      resource.spec.produced.forEach((p, i) => {
        ref(`spec.produced[${i}]`, p.kind, p.name);
      });
      break;
    case "Tracing":
    case "AccessLog":
      if (resource.spec.service !== undefined) ref("spec.service", "Service", resource.spec.service);
      break;
    case "Service":
    case "MeshPolicy":
    case "WasmModule":
      break;
  }
  return refs;
}

/** The references to one resource, from every resource of the set. */
export function referencesTo(resources: readonly Resource[], kind: Kind, name: string): Reference[] {
  return resources.flatMap((r) =>
    referencesOf(r).filter((ref) => ref.target.kind === kind && ref.target.name === name),
  );
}

/**
 * Whether `source` may call `destination`, and the rule that decides: the AccessRules naming the
 * source win over those for every source ("*"); among equally specific rules a deny wins; with no
 * rule, MeshPolicy/default's defaultAccess (allow without one). The same decision the sidecars
 * enforce (translate/routing-filter.ts accessDecision, which this layer cannot import; the model's
 * rule, stated once per layer).
 */
export function accessOf(
  resources: readonly Resource[],
  source: string,
  destination: string,
): { allow: boolean; rule?: AccessRule; byDefault: boolean } {
  const about = of(resources, "AccessRule")
    .filter((r) => r.spec.destination === destination)
    .sort(byName);
  const exact = about.filter((r) => r.spec.source === source);
  const applicable = exact.length > 0 ? exact : about.filter((r) => r.spec.source === "*");
  if (applicable.length > 0) {
    const deny = applicable.find((r) => r.spec.action === "deny");
    return deny
      ? { allow: false, rule: deny, byDefault: false }
      : { allow: true, rule: applicable[0] as AccessRule, byDefault: false };
  }
  const policy = of(resources, "MeshPolicy").find((p) => p.metadata.name === "default");
  return { allow: policy?.spec.defaultAccess !== "deny", byDefault: true };
}

/** The Routes of a service in the order the sidecars try their rules: by Route name, then rule order. */
export function routesOf(resources: readonly Resource[], service: string): Route[] {
  return of(resources, "Route")
    .filter((r) => r.spec.service === service)
    .sort(byName);
}

// --- Shadowed rules -------------------------------------------------------------------------------

type StringMatch = NonNullable<RequestMatch["path"]>;
type NamedMatch = NonNullable<RequestMatch["headers"]>[number];

const STRING_KEYS = ["exact", "prefix", "suffix", "contains", "regex"] as const;

function condition(m: StringMatch): { op: (typeof STRING_KEYS)[number]; value: string } | undefined {
  for (const op of STRING_KEYS) {
    const value = m[op];
    if (value !== undefined) return { op, value };
  }
  return undefined;
}

/**
 * Whether every value `a` matches, `b` matches too (so b's condition is no narrower). Conservative:
 * false when it cannot tell (regexes other than equal ones or `.*`).
 */
export function stringImplies(a: StringMatch, b: StringMatch): boolean {
  const ca = condition(a);
  const cb = condition(b);
  if (ca === undefined || cb === undefined) return false;
  // A case-insensitive `a` matches values a case-sensitive `b` does not.
  if (a.ignoreCase === true && b.ignoreCase !== true) return false;
  const fold = (s: string) => (b.ignoreCase === true ? s.toLowerCase() : s);
  const av = fold(ca.value);
  const bv = fold(cb.value);
  if (ca.op === cb.op && av === bv) return true;
  switch (cb.op) {
    case "exact":
      return false;
    case "prefix":
      return bv === "" || ((ca.op === "exact" || ca.op === "prefix") && av.startsWith(bv));
    case "suffix":
      return bv === "" || ((ca.op === "exact" || ca.op === "suffix") && av.endsWith(bv));
    case "contains":
      return bv === "" || (ca.op !== "regex" && av.includes(bv));
    case "regex":
      return cb.value === ".*";
  }
}

/** Whether every request `a` (a header or query condition) matches, `b` matches too. */
function namedImplies(a: NamedMatch, b: NamedMatch, caseInsensitiveNames: boolean): boolean {
  const same = caseInsensitiveNames ? a.name.toLowerCase() === b.name.toLowerCase() : a.name === b.name;
  if (!same) return false;
  if (b.absent === true) return a.absent === true;
  if (a.absent === true) return false;
  if (b.present === true) return a.present === true || condition(a) !== undefined;
  if (b.present !== undefined || b.absent !== undefined || a.present !== undefined) return false;
  return stringImplies(a, b);
}

/**
 * Whether every request `later` matches, `earlier` matches too: then a rule with `earlier` that
 * comes first takes all of later's requests. An absent match matches every request.
 */
export function matchCovers(earlier: RequestMatch | undefined, later: RequestMatch | undefined): boolean {
  if (earlier === undefined) return true;
  const l = later ?? {};
  if (earlier.path !== undefined && (l.path === undefined || !stringImplies(l.path, earlier.path)))
    return false;
  if (
    earlier.authority !== undefined &&
    (l.authority === undefined || !stringImplies(l.authority, earlier.authority))
  )
    return false;
  if (earlier.methods !== undefined) {
    const allowed = new Set(earlier.methods.map((m) => m.toUpperCase()));
    if (l.methods === undefined || !l.methods.every((m) => allowed.has(m.toUpperCase()))) return false;
  }
  for (const h of earlier.headers ?? [])
    if (!(l.headers ?? []).some((lh) => namedImplies(lh, h, true))) return false;
  for (const q of earlier.query ?? [])
    if (!(l.query ?? []).some((lq) => namedImplies(lq, q, false))) return false;
  return true;
}

/** Rules that no request reaches: an earlier rule of the service's Routes matches all they match. */
export function shadowedRules(routes: readonly Route[]): Finding[] {
  const findings: Finding[] = [];
  const seen: { route: Route; index: number }[] = [];
  for (const route of routes) {
    route.spec.rules.forEach((rule, index) => {
      const cover = seen.find((s) => matchCovers(s.route.spec.rules[s.index]?.match, rule.match));
      if (cover !== undefined) {
        const earlier = cover.route.spec.rules[cover.index];
        const where =
          cover.route === route
            ? `rules[${cover.index}] ('${earlier?.name}')`
            : `Route '${cover.route.metadata.name}' rules[${cover.index}] ('${earlier?.name}')`;
        findings.push({
          severity: "warning",
          kind: "Route",
          name: route.metadata.name,
          path: `spec.rules[${index}]`,
          message:
            earlier?.match === undefined
              ? `unreachable: the earlier ${where} has no match and takes every request`
              : `unreachable: the earlier ${where} matches every request this rule matches`,
        });
      }
      seen.push({ route, index });
    });
  }
  return findings;
}

// --- Callers ------------------------------------------------------------------------------------

/** The services with workloads, other than `service`, that its access rules let call it. */
export function callersOf(resources: readonly Resource[], service: string): string[] {
  const withWorkloads = new Set(of(resources, "Workload").map((w) => w.spec.service));
  return of(resources, "Service")
    .map((s) => s.metadata.name)
    .filter((s) => s !== service && withWorkloads.has(s) && accessOf(resources, s, service).allow)
    .sort();
}

/**
 * What the control plane can say about who calls a service. It sees no traffic: a caller is a
 * workload of another service (a sidecar) whose calls the access rules let through, or another
 * resource that sends requests there (a Route's destination, a CircuitBreaker's fallback).
 * - warning: no workload of another service may call it (every one is denied, or there is none),
 *   though it has workloads of its own to serve;
 * - info: nothing names it as a destination: no Route, AccessRule or CircuitBreaker (a client-only
 *   service, or one called without any rule about it).
 */
function uncalled(resources: readonly Resource[], service: Service): Finding[] {
  const name = service.metadata.name;
  const finding = (severity: Severity, message: string): Finding => ({
    severity,
    kind: "Service",
    name,
    path: "metadata.name",
    message,
  });
  const named = resources.some(
    (r) =>
      (r.kind === "Route" &&
        (r.spec.service === name ||
          r.spec.rules.some((rule) => rule.destinations.some((d) => d.service === name)))) ||
      (r.kind === "AccessRule" && r.spec.destination === name) ||
      (r.kind === "CircuitBreaker" && (r.spec.service === name || r.spec.fallback?.service === name)),
  );
  const sendsHere = resources.some(
    (r) =>
      (r.kind === "Route" &&
        r.spec.service !== name &&
        r.spec.rules.some((rule) => rule.destinations.some((d) => d.service === name))) ||
      (r.kind === "CircuitBreaker" && r.spec.service !== name && r.spec.fallback?.service === name),
  );
  const own = of(resources, "Workload").some((w) => w.spec.service === name);
  const others = of(resources, "Workload").filter((w) => w.spec.service !== name);
  if (own && !sendsHere && others.length > 0 && callersOf(resources, name).length === 0) {
    const denials = [...new Set(others.map((w) => w.spec.service))]
      .sort()
      .map((source) => accessOf(resources, source, name));
    const rules = [...new Set(denials.flatMap((d) => (d.rule ? [d.rule.metadata.name] : [])))];
    const byDefault = denials.some((d) => d.byDefault);
    const why = [
      ...(rules.length > 0
        ? [`AccessRule${rules.length === 1 ? "" : "s"} ${rules.map((r) => `'${r}'`).join(", ")}`]
        : []),
      ...(byDefault ? ["MeshPolicy 'default' (defaultAccess: deny)"] : []),
    ].join(" and ");
    const unnamed = accessOf(resources, "*", name).allow
      ? "; only callers no rule names may (the edge, clients outside the mesh)"
      : "";
    return [
      finding(
        "warning",
        `no workload of another service may call it: ${why} refuse${rules.length + (byDefault ? 1 : 0) === 1 ? "s" : ""} every one${unnamed}`,
      ),
    ];
  }
  if (!named) {
    return [
      finding(
        "info",
        "no Route, AccessRule or CircuitBreaker names it as a destination: the control plane knows of no caller",
      ),
    ];
  }
  return [];
}

// --- The analysis -------------------------------------------------------------------------------

const SEVERITY_ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/**
 * Likely mistakes across the mesh, in resource order (kind, name), then field path:
 * - references to what does not exist, and subsets that select no workload (validateReferences),
 *   with a route destination's share of its rule's traffic;
 * - rules an earlier rule of the service's Routes shadows;
 * - services no workload of another service may call, and services nothing names as a destination.
 */
export function analyzeMesh(resources: readonly Resource[]): Finding[] {
  const findings: Finding[] = [];
  const { errors, warnings } = validateReferences(resources);
  const routes = new Map(of(resources, "Route").map((r) => [r.metadata.name, r]));
  for (const e of errors)
    findings.push({ severity: "error", kind: e.kind, name: e.name, path: e.path, message: e.message });
  for (const w of warnings) {
    let message = w.message;
    const at = /^spec\.rules\[(\d+)\]\.destinations\[(\d+)\]\.subset$/.exec(w.path);
    const route = w.kind === "Route" && at ? routes.get(w.name) : undefined;
    if (route && at) {
      const rule = route.spec.rules[Number(at[1])];
      const weight = rule?.destinations[Number(at[2])]?.weight ?? 100;
      message +=
        weight > 0
          ? `: ${weight}% of rule '${rule?.name}' gets 503 (no healthy upstream)`
          : ` (weight 0: no traffic now)`;
    } else if (w.kind === "CircuitBreaker") {
      message += w.path.startsWith("spec.fallback")
        ? ": an open circuit falls back to nothing (503)"
        : ": the breaker protects no endpoint";
    }
    findings.push({ severity: "warning", kind: w.kind, name: w.name, path: w.path, message });
  }
  const services = of(resources, "Service").sort(byName);
  for (const service of services) findings.push(...shadowedRules(routesOf(resources, service.metadata.name)));
  for (const service of services) findings.push(...uncalled(resources, service));
  return findings.sort(
    (a, b) =>
      a.kind.localeCompare(b.kind) ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
      SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] ||
      a.path.localeCompare(b.path, "en", { numeric: true }),
  );
}

/** The findings about one resource, and those of resources that refer to it (e.g. a Service's Routes). */
export function findingsAbout(
  resources: readonly Resource[],
  findings: readonly Finding[],
  kind: Kind,
  name: string,
): Finding[] {
  const referring = new Set(referencesTo(resources, kind, name).map((r) => `${r.kind}/${r.name}`));
  return findings.filter((f) => (f.kind === kind && f.name === name) || referring.has(`${f.kind}/${f.name}`));
}
