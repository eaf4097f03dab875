// What the write path loads into the built-in module before a revision is committed
// (revision/check.ts): one routing filter configuration that holds what every proxy and the edge
// would get, and the way back from a field of it to the field of the resource it was made from, so
// that a refusal by the module names `spec.rules[0].match.headers[0].regex` of Route 'reviews'.
import type { FilterConfig, HeaderRule, RequestMatch } from "../../schema/filter-config.ts";
import type { Kind, Route, RouteRule } from "../resources/index.ts";
import { defaultDenyName, RULE_HEADER, STRIP_RULE_HEADER } from "../resources/names.ts";
import { EDGE_SOURCE } from "./edge.ts";
import type { Mesh } from "./mesh.ts";
import { assembleRoutingConfig, denialFor, EVERY_NAMESPACE, routingParts } from "./routing-filter.ts";

/**
 * The routing filter's configuration with the denials of every source at once (each Service, each
 * source an AccessRule names, the edge "*"), merged by name. A proxy's configuration, and the
 * edge's, is this one without some of its denials, with narrower authorities: here every
 * discovered service answers to its short name too (EVERY_NAMESPACE), where a proxy's answer only
 * to those of its own namespace (authorityMatch), an alternative less in the same regex, which the
 * module compiles whenever it compiles this one; and a denial's name fixes the rest of its content
 * (an AccessRule's name, or `default-deny:<service>`; see denialFor). The built-in module checks each entry on its own and
 * names within a list (assembly/filters/config.ts), so a configuration it accepts stays accepted
 * without some denials: one load of this configuration vouches for every proxy class's. That keeps
 * the check of a write one configuration however many sets of denials the mesh has (with a
 * default-deny MeshPolicy, one per service: checking each would cost the square of the mesh).
 *
 * A source that no AccessRule about a service names is treated as the wildcard "*" for it
 * (accessDecision), so the denials of a service are those of "*" and of the sources its rules name:
 * found in time proportional to services and rules, not to services squared.
 */
export function routingSuperset(mesh: Mesh): FilterConfig {
  const named = new Map<string, Set<string>>();
  for (const rule of mesh.accessRules) {
    const sources = named.get(rule.spec.destination) ?? new Set<string>();
    sources.add(rule.spec.source);
    named.set(rule.spec.destination, sources);
  }
  const denials = new Map<string, HeaderRule>();
  for (const service of mesh.services) {
    for (const source of [EDGE_SOURCE, ...(named.get(service.metadata.name) ?? [])]) {
      const denial = denialFor(mesh, source, service, EVERY_NAMESPACE);
      if (denial !== undefined && !denials.has(denial.name)) denials.set(denial.name, denial);
    }
  }
  return assembleRoutingConfig(routingParts(mesh, EVERY_NAMESPACE), [...denials.values()], "every source");
}

/** A field of a stored resource. */
export interface ResourceField {
  kind: Kind;
  name: string;
  /** Dotted path in the resource, e.g. `spec.rules[0].match.headers[0].regex`. */
  path: string;
}

const ENTRY = /^(headerRules|routes|breakers)\[(\d+)\](.*)$/;
const INDEX = /^\[(\d+)\](.*)$/;

/**
 * The resource field that `path` (a field of `config`, in the module's notation) was made from;
 * undefined for what the translation adds itself (the claim marker, the strip rule) and for paths
 * outside any entry. `config` must be what the module was given, made from `mesh`.
 */
export function routingFieldOrigin(
  mesh: Mesh,
  config: FilterConfig,
  path: string,
): ResourceField | undefined {
  const entry = ENTRY.exec(path);
  if (entry === null) return undefined;
  const [, list, at, rest = ""] = entry;
  const index = Number(at);
  if (list === "breakers") {
    const cluster = config.breakers?.[index]?.cluster;
    const breaker = mesh.clusters.find((c) => c.name === cluster)?.breaker;
    if (breaker === undefined) return undefined;
    const field = rest === ".cluster" ? ".service" : rest;
    return { kind: "CircuitBreaker", name: breaker.metadata.name, path: `spec${field}` };
  }
  const name = (list === "routes" ? config.routes?.[index] : config.headerRules?.[index])?.name;
  if (name === undefined || name === STRIP_RULE_HEADER) return undefined;
  const slash = name.indexOf("/");
  if (slash < 0) return generatedOrigin(mesh, name);
  // `<route>/<rule>` (ruleName): Route names are DNS labels, so the first '/' ends the Route's.
  const route = findRoute(mesh, name.slice(0, slash));
  const ruleIndex = route?.spec.rules.findIndex((r) => r.name === name.slice(slash + 1)) ?? -1;
  const rule = route?.spec.rules[ruleIndex];
  if (route === undefined || rule === undefined) return undefined;
  const field =
    list === "headerRules" ? claimField(rule, rest) : routeField(rule, rest, config.routes?.[index]?.match);
  return { kind: "Route", name: route.metadata.name, path: `spec.rules[${ruleIndex}]${field}` };
}

function findRoute(mesh: Mesh, name: string): Route | undefined {
  for (const service of mesh.services) {
    const route = mesh.routesFor(service.metadata.name).find((r) => r.metadata.name === name);
    if (route !== undefined) return route;
  }
  return undefined;
}

/** A denial or a default route: made from a name, a port list and a policy, not from a user's field. */
function generatedOrigin(mesh: Mesh, name: string): ResourceField | undefined {
  const service = name.endsWith(":default") ? name.slice(0, -":default".length) : undefined;
  if (service !== undefined && mesh.service(service)) return { kind: "Service", name: service, path: "spec" };
  if (mesh.accessRules.some((r) => r.metadata.name === name))
    return { kind: "AccessRule", name, path: "spec" };
  const denied = mesh.services.find((s) => defaultDenyName(s.metadata.name) === name);
  if (denied !== undefined && mesh.meshPolicy !== undefined)
    return { kind: "MeshPolicy", name: mesh.meshPolicy.metadata.name, path: "spec.defaultAccess" };
  return undefined;
}

/** A field of the header rule that claims requests for a rule (claimRule) → the rule's field. */
function claimField(rule: RouteRule, rest: string): string {
  if (rest.startsWith(".match")) return matchField(rule, rest.slice(".match".length));
  const set = /^\.requestHeaders\.set(.*)$/.exec(rest);
  if (set !== null) {
    // set[0] is the claim marker (RULE_HEADER); the rule's own start at set[1].
    const item = INDEX.exec(set[1] ?? "");
    if (item === null) return ".requestHeaders.set";
    const k = Number(item[1]) - 1;
    return k < 0 ? "" : `.requestHeaders.set[${k}]${item[2]}`;
  }
  return rest; // name, requestHeaders.add/remove, responseHeaders, fault: as written
}

/** A field of a rule's filter route (filterRoute) → the rule's field. */
function routeField(rule: RouteRule, rest: string, match: RequestMatch | undefined): string {
  if (rest.startsWith(".match")) {
    // A claimed rule's route selects on the marker alone: nothing of the rule's match is in it.
    const marker = match?.headers?.length === 1 && match.headers[0]?.name === RULE_HEADER;
    return marker ? ".match" : matchField(rule, rest.slice(".match".length));
  }
  const destination = /^\.destinations\[(\d+)\](.*)$/.exec(rest);
  if (destination !== null) {
    // The cluster is the destination's service and subset.
    const field = destination[2] === ".cluster" ? "" : destination[2];
    return `.destinations[${destination[1]}]${field}`;
  }
  return rest; // name, sticky, timeoutMs, retries: as written
}

/**
 * A field of a match made by withAuthority → the rule's field: the authority is the service's (the
 * rule's own authority condition comes first among the headers, as `:authority`), the rule's headers
 * follow, and a claim ends them with the marker's absence.
 */
function matchField(rule: RouteRule, rest: string): string {
  const match = rule.match;
  if (rest.startsWith(".authority")) return ""; // the service's authority, made from its name and ports
  const header = /^\.headers\[(\d+)\](.*)$/.exec(rest);
  if (header === null) return `.match${rest}`; // path, methods, query: as written
  const offset = match?.authority !== undefined ? 1 : 0;
  const j = Number(header[1]);
  const field = header[2] ?? "";
  if (j < offset) return field === ".name" ? ".match.authority" : `.match.authority${field}`;
  if (j - offset < (match?.headers?.length ?? 0)) return `.match.headers[${j - offset}]${field}`;
  return ".match"; // the claim's `x-wasmesh-rule` absent condition
}
