// The plugin configuration of the built-in routing filter (`wasmesh.outbound.routing`, build/mesh.wasm)
// on one source service's outbound listener: access decisions, Route rules, default routes and
// circuit breakers, as one FilterConfig (docs/filters.md).
//
// Header rules run before routes and every matching header rule applies, while only the first
// matching route routes. So a Route rule's header changes and faults cannot simply become a header
// rule with the rule's match: a request that an earlier rule routes would get them too. When a
// service's rules carry header changes or faults, each rule instead becomes a header rule that
// matches only while no earlier rule has claimed the request (RULE_HEADER absent), claims it by
// setting RULE_HEADER to its name and applies its changes; the routes then select on RULE_HEADER.
// The client's own RULE_HEADER is removed first, so it cannot claim a rule either.
import {
  type FilterConfig,
  type Route as FilterRoute,
  type HeaderRule,
  type RequestMatch,
  validateFilterConfig,
} from "../../schema/filter-config.ts";
import type { RouteRule, Service } from "../resources/index.ts";
import {
  CLUSTER_DOMAIN,
  defaultDenyName,
  defaultRouteName,
  outboundCluster,
  RULE_HEADER,
  ruleName,
  STRIP_RULE_HEADER,
  splitServiceName,
} from "../resources/names.ts";
import type { Mesh } from "./mesh.ts";

type StringMatch = NonNullable<RequestMatch["authority"]>;

/**
 * Whose short names a routing configuration answers to (see authorityMatch): a source's namespace
 * (namespaceOf), none (undefined), or EVERY_NAMESPACE for the write path's check (routing-check.ts),
 * whose one configuration must hold every source's. "*" is no namespace's name (a DNS label).
 */
export const EVERY_NAMESPACE = "*";

/** The namespace whose short names `source`'s sidecars may call by (undefined: a declared service, the edge). */
export function namespaceOf(source: string): string | undefined {
  return splitServiceName(source).namespace;
}

/**
 * Matches the authority a client sends for `service`, alone or with one of its ports, in any case
 * (host names are case-insensitive). A declared service answers to its name. A service discovered on
 * Kubernetes, `reviews.bookinfo`, answers to `reviews.bookinfo`, `reviews.bookinfo.svc` and
 * `reviews.bookinfo.svc.cluster.local`, and to the short `reviews` from callers in its own namespace
 * (`namespace`), as Kubernetes' DNS search path resolves it there. Names hold letters, digits, '-'
 * and the dots escaped here, so no other regex metacharacter.
 */
export function authorityMatch(service: Service, namespace?: string): StringMatch {
  const ports = [...new Set(service.spec.ports.map((p) => p.port))].sort((a, b) => a - b);
  const portPart = `(?::(?:${ports.join("|")}))?`;
  const { name, namespace: own } = splitServiceName(service.metadata.name);
  if (own === undefined) return { regex: `${name}${portPart}`, ignoreCase: true };
  const full = `${name}\\.${own}(?:\\.svc(?:\\.${CLUSTER_DOMAIN.replaceAll(".", "\\.")})?)?`;
  const short = namespace === own || namespace === EVERY_NAMESPACE ? `|${name}` : "";
  return { regex: `(?:${full}${short})${portPart}`, ignoreCase: true };
}

export type AccessDecision = { allow: true } | { allow: false; rule: string };

/**
 * Whether `source` may call `destination`: the AccessRules naming the source win over those for
 * every source ("*"); among equally specific rules a deny wins (as in Istio's and Kuma's policies);
 * with no rule, the MeshPolicy's defaultAccess applies, and without a MeshPolicy calls are allowed.
 */
export function accessDecision(mesh: Mesh, source: string, destination: string): AccessDecision {
  const about = mesh.accessRules.filter((r) => r.spec.destination === destination);
  const exact = about.filter((r) => r.spec.source === source);
  const applicable = exact.length > 0 ? exact : about.filter((r) => r.spec.source === "*");
  if (applicable.length > 0) {
    const deny = applicable.find((r) => r.spec.action === "deny"); // rules are sorted by name
    return deny === undefined ? { allow: true } : { allow: false, rule: deny.metadata.name };
  }
  if (mesh.meshPolicy?.spec.defaultAccess === "deny")
    return { allow: false, rule: defaultDenyName(destination) };
  return { allow: true };
}

/** The routing filter's configuration for the sidecars of `source`; throws if it would be invalid. */
export function routingFilterConfig(mesh: Mesh, source: string): FilterConfig {
  return assembleRoutingConfig(routingParts(mesh, namespaceOf(source)), denialsFor(mesh, source), source);
}

/** What the routing configuration of every source in a namespace shares: the routes, their claims, the breakers. */
export interface RoutingParts {
  claims: HeaderRule[];
  routes: FilterRoute[];
  breakers: NonNullable<FilterConfig["breakers"]>;
}

/**
 * The routes of every service, with the short names of `namespace`'s (authorityMatch). Its services
 * come first: a short name that a declared service holds too (`reviews` and `reviews.bookinfo`)
 * means the caller's namespace's, as Kubernetes' DNS search path resolves it.
 */
export function routingParts(mesh: Mesh, namespace?: string): RoutingParts {
  const claims: HeaderRule[] = [];
  const routes: FilterRoute[] = [];
  const local = (s: Service) =>
    namespace !== undefined && splitServiceName(s.metadata.name).namespace === namespace;
  const services = [...mesh.services.filter(local), ...mesh.services.filter((s) => !local(s))];
  for (const service of services) {
    const name = service.metadata.name;
    const authority = authorityMatch(service, namespace);
    const rules = mesh
      .routesFor(name)
      .flatMap((route) =>
        route.spec.rules.map((rule) => ({ name: ruleName(route.metadata.name, rule.name), rule })),
      );
    const claimed = rules.some(({ rule }) => hasEffects(rule));
    for (const { name: routeName, rule } of rules) {
      const match = withAuthority(rule.match, authority);
      if (claimed) {
        claims.push(claimRule(routeName, rule, match));
        routes.push(filterRoute(routeName, rule, { headers: [{ name: RULE_HEADER, exact: routeName }] }));
      } else {
        routes.push(filterRoute(routeName, rule, match));
      }
    }
    routes.push({
      name: defaultRouteName(name),
      match: { authority },
      destinations: [{ cluster: outboundCluster(name) }],
    });
  }

  const clusterNames = new Set(mesh.clusters.map((c) => c.name));
  const breakers = mesh.clusters.flatMap((cluster) => {
    const spec = cluster.breaker?.spec;
    if (spec === undefined) return [];
    const fallback = spec.fallback && outboundCluster(spec.fallback.service, spec.fallback.subset);
    return [
      {
        cluster: cluster.name,
        consecutiveErrors: spec.consecutiveErrors,
        intervalMs: spec.intervalMs,
        baseEjectionMs: spec.baseEjectionMs,
        ...(spec.maxEjectionMs !== undefined ? { maxEjectionMs: spec.maxEjectionMs } : {}),
        ...(spec.maxConcurrent !== undefined ? { maxConcurrent: spec.maxConcurrent } : {}),
        ...(fallback !== undefined && clusterNames.has(fallback) ? { fallback } : {}),
      },
    ];
  });
  return { claims, routes, breakers };
}

/**
 * What depends on the source: a denial for every service it may not call. It matches every
 * authority the routes do, and header rules run first, so no request reaches them. The routes stay
 * all the same: while the filter has any route it owns the routing header (see routeResources), so
 * a denied source cannot bring its own.
 */
export function denialsFor(mesh: Mesh, source: string): HeaderRule[] {
  return mesh.services.flatMap((service) => denialFor(mesh, source, service) ?? []);
}

/**
 * The denial of `source`'s calls to `service`, when it may not call it (see denialsFor). It matches
 * the authorities the routes of `namespace` (default: the source's) do, the short name included.
 */
export function denialFor(
  mesh: Mesh,
  source: string,
  service: Service,
  namespace = namespaceOf(source),
): HeaderRule | undefined {
  const access = accessDecision(mesh, source, service.metadata.name);
  if (access.allow) return undefined;
  return {
    name: access.rule,
    match: { authority: authorityMatch(service, namespace) },
    deny: { status: 403 },
  };
}

/** The parts as one configuration, validated with the filter's schema; throws if it is invalid. */
export function assembleRoutingConfig(
  parts: RoutingParts,
  denials: readonly HeaderRule[],
  source: string,
): FilterConfig {
  const { claims, routes, breakers } = parts;
  const headerRules = [
    ...denials,
    ...(claims.length > 0 ? [{ name: STRIP_RULE_HEADER, requestHeaders: { remove: [RULE_HEADER] } }] : []),
    ...claims,
  ];
  const config: FilterConfig = {
    ...(headerRules.length > 0 ? { headerRules } : {}),
    ...(routes.length > 0 ? { routes } : {}),
    ...(breakers.length > 0 ? { breakers } : {}),
  };
  const checked = validateFilterConfig(config);
  if (!checked.ok) {
    const detail = checked.errors.map((e) => `${e.path}: ${e.message}`).join("; ");
    throw new Error(`translation bug: invalid routing filter configuration for '${source}': ${detail}`);
  }
  return config;
}

function hasEffects(rule: RouteRule): boolean {
  return rule.requestHeaders !== undefined || rule.responseHeaders !== undefined || rule.fault !== undefined;
}

/**
 * A rule's match, restricted to its service's authority. A rule's own authority condition still
 * narrows it (e.g. one port), as an `:authority` header condition, since a match has one authority.
 */
function withAuthority(match: RequestMatch | undefined, authority: StringMatch): RequestMatch {
  const headers = [
    ...(match?.authority !== undefined ? [{ name: ":authority", ...match.authority }] : []),
    ...(match?.headers ?? []),
  ];
  return {
    ...(match?.path !== undefined ? { path: match.path } : {}),
    authority,
    ...(match?.methods !== undefined ? { methods: match.methods } : {}),
    ...(headers.length > 0 ? { headers } : {}),
    ...(match?.query !== undefined ? { query: match.query } : {}),
  };
}

/** The header rule that claims a request for a Route rule and applies the rule's changes and faults. */
function claimRule(name: string, rule: RouteRule, match: RequestMatch): HeaderRule {
  const changes = rule.requestHeaders;
  return {
    name,
    match: { ...match, headers: [...(match.headers ?? []), { name: RULE_HEADER, absent: true }] },
    requestHeaders: {
      set: [{ name: RULE_HEADER, value: name }, ...(changes?.set ?? [])],
      ...(changes?.add !== undefined ? { add: changes.add } : {}),
      ...(changes?.remove !== undefined ? { remove: changes.remove } : {}),
    },
    ...(rule.responseHeaders !== undefined ? { responseHeaders: rule.responseHeaders } : {}),
    ...(rule.fault !== undefined ? { fault: rule.fault } : {}),
  };
}

function filterRoute(name: string, rule: RouteRule, match: RequestMatch): FilterRoute {
  return {
    name,
    match,
    destinations: rule.destinations.map((d) => ({
      cluster: outboundCluster(d.service, d.subset),
      ...(d.weight !== undefined ? { weight: d.weight } : {}),
    })),
    ...(rule.sticky !== undefined ? { sticky: rule.sticky } : {}),
    ...(rule.timeoutMs !== undefined ? { timeoutMs: rule.timeoutMs } : {}),
    ...(rule.retries !== undefined ? { retries: rule.retries } : {}),
  };
}
