// Validation of resources: the structure against the JSON Schema in schema.ts, then the rules JSON
// Schema cannot express, then (for a set of resources) the references between them. Every error
// names the field by its dotted path, e.g. `spec.rules[0].destinations[1].weight`.
import { Value } from "@sinclair/typebox/value";
import { type ConfigError, schemaErrors, validateFilterConfig } from "../../schema/filter-config.ts";
import {
  defaultDenyName,
  defaultRouteName,
  MAX_CLUSTER_NAME,
  MAX_FILTER_NAME,
  outboundCluster,
  pluginFilterName,
  ROUTING_FILTER,
  ruleName,
} from "./names.ts";
import {
  type AccessLog,
  API_VERSION,
  type CircuitBreaker,
  KINDS,
  type Kind,
  MESH_MODULE,
  Resource,
  type Route,
  resourceSchemas,
  type Service,
  type Subset,
  type Tracing,
  type WasmPlugin,
  type Workload,
} from "./schema.ts";

export type FieldError = ConfigError;

export type ResourceResult = { ok: true; resource: Resource } | { ok: false; errors: FieldError[] };

/** A problem with a reference from one resource of a set to another. */
export interface ReferenceError extends FieldError {
  kind: Kind;
  name: string;
  /** For a reference to a resource that is not in the set: the resource referred to. */
  target?: { kind: Kind; name: string };
}

export interface ReferenceResult {
  /** References to resources that do not exist, and duplicates: the set must not be stored. */
  errors: ReferenceError[];
  /** Legal but probably not meant, e.g. a subset that selects no workload (yet). */
  warnings: ReferenceError[];
}

/**
 * How deeply objects and arrays may nest in a resource (the resource itself is level 1). Real
 * resources need about 8 levels; a plugin's configuration gets the rest. The bound keeps every
 * recursive walk downstream (schema checks, JSON.stringify, the filters' parser) far from the
 * stack's limit, so that a deep document gets this message instead of V8's "Maximum call stack
 * size exceeded".
 */
export const MAX_DEPTH = 64;

const NUL = "contains a NUL character (\\u0000)";

/** A UTF-16 surrogate without its pair (JSON's "\ud800" can write one): no UTF-8 text holds it. */
const LONE_SURROGATE = /\p{Cs}/u;

function textErrors(text: string): string | undefined {
  if (text.includes("\0")) return NUL;
  const lone = LONE_SURROGATE.exec(text)?.[0];
  if (lone !== undefined) {
    const code = (lone.codePointAt(0) ?? 0).toString(16);
    return `contains an unpaired surrogate (\\u${code}): not Unicode text, which Envoy and the filters take as UTF-8`;
  }
  return undefined;
}

/**
 * What plain data must not hold: nesting past MAX_DEPTH (then the one error: a value that contains
 * itself, which a YAML alias can build, is infinitely deep), NUL characters in strings and keys
 * (C strings in Envoy and the filters end there), unpaired surrogates (no UTF-8 for them: the
 * filters' JSON parser refuses them) and objects other than plain ones and arrays. The recursion stops at MAX_DEPTH, so any input is
 * safe; a value shared by several parents is walked again only when reached deeper than before.
 */
function plainDataErrors(root: unknown): FieldError[] {
  const errors: FieldError[] = [];
  const deepest = new Map<object, number>();
  let tooDeep: FieldError | undefined;
  const walk = (value: unknown, path: string, depth: number, report: boolean): void => {
    const at = path === "" ? "(root)" : path;
    if (tooDeep !== undefined) return;
    if (typeof value === "string") {
      const problem = report ? textErrors(value) : undefined;
      if (problem !== undefined) errors.push({ path: at, message: problem });
      return;
    }
    if (typeof value !== "object" || value === null) return;
    const prototype = Object.getPrototypeOf(value);
    if (!Array.isArray(value) && prototype !== Object.prototype && prototype !== null) {
      // E.g. a Date: what a YAML 1.1 timestamp (`%YAML 1.1`) becomes, and JSON would turn into text.
      if (report) {
        const type = (prototype as { constructor?: { name?: string } }).constructor?.name ?? "object";
        errors.push({ path: at, message: `is a ${type}, not plain data: quote it to keep it as text` });
      }
      return;
    }
    if (depth > MAX_DEPTH) {
      tooDeep = { path: at, message: `nested more than ${MAX_DEPTH} levels deep (objects and arrays)` };
      return;
    }
    const before = deepest.get(value);
    if (before !== undefined && before >= depth) return;
    deepest.set(value, depth);
    // Reached again, deeper: only the depth is news, its strings were reported the first time.
    const fresh = report && before === undefined;
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(v, `${path}[${i}]`, depth + 1, fresh);
      return;
    }
    for (const [key, v] of Object.entries(value)) {
      const problem = fresh ? textErrors(key) : undefined;
      if (problem !== undefined) errors.push({ path: at, message: `key ${JSON.stringify(key)} ${problem}` });
      walk(v, path === "" ? key : `${path}.${key}`, depth + 1, fresh);
    }
  };
  walk(root, "", 1, true);
  return tooDeep !== undefined ? [tooDeep] : errors;
}

export interface ValidateOptions {
  /**
   * The document was read back from the store. It was accepted when it was written, so the rules on
   * input added since (plain data: no NUL characters or unpaired surrogates, no nesting past MAX_DEPTH) do not drop it from
   * the mesh after an upgrade; everything else is checked as always. (A stored document came from
   * JSON text, so it holds no cycle, and its depth was within what JSON.stringify could write.)
   */
  stored?: boolean;
}

/** Validates one resource document: structure, then the rules JSON Schema cannot express. */
export function validateResource(value: unknown, options: ValidateOptions = {}): ResourceResult {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, errors: [{ path: "(root)", message: "must be an object (a resource)" }] };
  }
  // First: the schema checks below recurse, and must not meet a value deeper than the stack.
  const data = options.stored ? [] : plainDataErrors(value);
  if (data.length > 0) return { ok: false, errors: data };
  const doc = value as Record<string, unknown>;
  const header: FieldError[] = [];
  if (doc.apiVersion !== API_VERSION) {
    header.push({
      path: "apiVersion",
      message: `must be "${API_VERSION}" (got ${describe(doc.apiVersion)})`,
    });
  }
  const kind = doc.kind;
  if (typeof kind !== "string" || !(KINDS as string[]).includes(kind)) {
    header.push({
      path: "kind",
      message: `unknown kind ${describe(kind)} (expected one of: ${KINDS.join(", ")})`,
    });
  }
  if (header.length > 0) return { ok: false, errors: header };

  const structural = requiredOnce(schemaErrors(resourceSchemas[kind as Kind], value));
  if (structural.length > 0 || !Value.Check(Resource, value)) return { ok: false, errors: structural };
  const semantic = semanticErrors(value);
  return semantic.length > 0 ? { ok: false, errors: semantic } : { ok: true, resource: value };
}

/**
 * TypeBox reports a missing property twice (required, and the wrong type of `undefined`): keep one
 * error, in the filter module's words.
 */
function requiredOnce(errors: FieldError[]): FieldError[] {
  const missing = new Set(errors.filter((e) => e.message === REQUIRED).map((e) => e.path));
  return errors.flatMap((e) => {
    if (!missing.has(e.path)) return [e];
    return e.message === REQUIRED ? [{ path: e.path, message: "is required" }] : [];
  });
}
const REQUIRED = "Expected required property";

function describe(value: unknown): string {
  return value === undefined ? "nothing" : JSON.stringify(value);
}

function semanticErrors(resource: Resource): FieldError[] {
  const errors: FieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });
  switch (resource.kind) {
    case "Service":
      checkServiceName(resource.metadata.name, fail);
      checkPorts(resource, fail);
      break;
    case "Workload":
      checkAddress(resource.spec.address, fail);
      if (resource.spec.appPort !== undefined && resource.spec.appPort === resource.spec.port) {
        // Both on the workload's host: the sidecar's inbound listener cannot take the app's port.
        fail(
          "spec.appPort",
          `must differ from spec.port (${resource.spec.port}), the sidecar's inbound port`,
        );
      }
      break;
    case "Route":
      checkRoute(resource, fail);
      break;
    case "CircuitBreaker":
      checkBreaker(resource, fail);
      break;
    case "MeshPolicy":
      if (resource.metadata.name !== "default") {
        fail("metadata.name", 'must be "default": there is one MeshPolicy for the mesh');
      }
      break;
    case "WasmPlugin":
      checkPlugin(resource, fail);
      break;
    case "Tracing":
      checkTracing(resource, fail);
      break;
    case "AccessLog":
      if (resource.spec.format !== undefined) checkAccessLogFormat(resource.spec.format, fail);
      checkAccessLogPaths(resource, fail);
      break;
    case "AccessRule":
    case "WasmModule":
    case "ImportedResource":
      break;
  }
  return errors;
}

function checkTracing(tracing: Tracing, fail: Fail): void {
  const spec = tracing.spec;
  if (spec.service === undefined && spec.backend === undefined) {
    fail(
      "spec.backend",
      "is required for the mesh's Tracing (one without spec.service); an override may inherit it",
    );
  }
  const sampling = spec.sampling;
  if (sampling?.overallPercent !== undefined && sampling.overallPercent < sampling.randomPercent) {
    // Envoy would apply the cap silently: say that the random share cannot be reached.
    fail(
      "spec.sampling.overallPercent",
      `must not be less than randomPercent (${sampling.randomPercent}): it caps every request, so randomPercent could not be reached`,
    );
  }
  const names = new Map<string, number>();
  (spec.tags ?? []).forEach((tag, i) => {
    if ((tag.header === undefined) === (tag.literal === undefined)) {
      fail(`spec.tags[${i}]`, "must have exactly one of header, literal");
    }
    if (tag.default !== undefined && tag.header === undefined) {
      fail(`spec.tags[${i}].default`, "is for a header tag: a literal is its own value");
    }
    const earlier = names.get(tag.name);
    if (earlier !== undefined)
      fail(`spec.tags[${i}].name`, `duplicate tag '${tag.name}' (also tags[${earlier}])`);
    else names.set(tag.name, i);
  });
  if (spec.edge !== undefined && spec.service !== undefined) {
    // Edge traffic belongs to no service: only the mesh's Tracing reaches the edge workers.
    fail(
      "spec.edge",
      "is for the mesh's Tracing (one without spec.service): edge workers follow only that one",
    );
  } else if (spec.edge !== undefined && !URL.canParse(spec.edge.url)) fail("spec.edge.url", "is not a URL");
  if (spec.backend !== undefined) {
    if (!URL.canParse(spec.backend.url)) {
      fail("spec.backend.url", "is not a URL");
      return;
    }
    const url = new URL(spec.backend.url);
    if (url.port === "" && spec.backend.protocol === "otlp-grpc") {
      fail("spec.backend.url", "needs a port for otlp-grpc (OTLP's is 4317)");
    }
    if (spec.backend.protocol === "otlp-grpc" && url.pathname !== "/") {
      fail("spec.backend.url", "must have no path for otlp-grpc (the gRPC service names its own)");
    }
  }
}

/**
 * Envoy's format strings: `%OPERATOR%`, `%OPERATOR(arguments)%` or `%OPERATOR(arguments):length%`
 * (arguments may hold '%', as START_TIME's strftime does); anything else after a '%' makes Envoy
 * refuse the listener (a NACK), so it is refused here instead, with the offset.
 */
const FORMAT_OPERATOR = /%([A-Z][A-Z0-9_]*)(?:\([^()]*\))?(?::\d+)?%/y;

function checkAccessLogFormat(format: string, fail: Fail): void {
  let at = format.indexOf("%");
  while (at >= 0) {
    FORMAT_OPERATOR.lastIndex = at;
    const match = FORMAT_OPERATOR.exec(format);
    if (match === null) {
      const close = format.indexOf("%", at + 1);
      const shown = close < 0 || close - at > 64 ? format.slice(at, at + 24) : format.slice(at, close + 1);
      fail(
        "spec.format",
        `'${shown}' at offset ${at} is not one of Envoy's command operators (%NAME%, %NAME(args)% or %NAME(args):N%)`,
      );
      return;
    }
    at = format.indexOf("%", at + match[0].length);
  }
}

function checkAccessLogPaths(log: AccessLog, fail: Fail): void {
  log.spec.backends.forEach((backend, i) => {
    if ((backend.file === undefined) === (backend.stdout === undefined)) {
      fail(`spec.backends[${i}]`, "must have exactly one of file, stdout");
    }
    if (backend.file?.path.split("/").includes("..")) {
      fail(`spec.backends[${i}].file.path`, "must not contain '..'");
    }
  });
  const stdout = log.spec.backends.filter((b) => b.stdout !== undefined).length;
  if (stdout > 1) fail("spec.backends", "has stdout more than once");
}

type Fail = (path: string, message: string) => void;

/** The filter's names made from a service's (its default route, its denial) must fit the filter's limit. */
function checkServiceName(name: string, fail: Fail): void {
  const longest =
    [defaultRouteName(name), defaultDenyName(name)].sort((a, b) => b.length - a.length)[0] ?? "";
  if (longest.length > MAX_FILTER_NAME) {
    fail(
      "metadata.name",
      `too long: the routing filter's '${longest}' must be at most ${MAX_FILTER_NAME} characters (a service name of at most ${name.length - (longest.length - MAX_FILTER_NAME)})`,
    );
  }
}

function checkPorts(service: Service, fail: Fail): void {
  const names = new Set<string>();
  const numbers = new Set<number>();
  service.spec.ports.forEach((port, i) => {
    if (names.has(port.name)) fail(`spec.ports[${i}].name`, `duplicate port name '${port.name}'`);
    if (numbers.has(port.port)) fail(`spec.ports[${i}].port`, `duplicate port ${port.port}`);
    names.add(port.name);
    numbers.add(port.port);
  });
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$/;

function checkAddress(address: string, fail: Fail): void {
  if (address.includes(":")) {
    // The WHATWG URL parser is the IPv6 grammar every runtime (Node, workerd) already carries.
    if (!URL.canParse(`http://[${address}]/`))
      fail("spec.address", `'${address}' is not a valid IPv6 address`);
    return;
  }
  // A name whose last label is numeric would be read as an IPv4 address by resolvers and URLs.
  if (/(?:^|\.)\d+\.?$/.test(address)) {
    if (!IPV4.test(address)) fail("spec.address", `'${address}' is not a valid IPv4 address`);
    return;
  }
  if (!HOSTNAME.test(address)) fail("spec.address", `'${address}' is not a valid host name`);
}

const STRING_CONDITIONS = ["exact", "prefix", "suffix", "contains", "regex"] as const;
const PRESENCE_CONDITIONS = ["present", "absent"] as const;

/** Exactly one condition per matcher, as the filter module requires (present/absent count when given). */
function checkCondition(matcher: object, path: string, presence: boolean, fail: Fail): void {
  const allowed: readonly string[] = presence
    ? [...STRING_CONDITIONS, ...PRESENCE_CONDITIONS]
    : STRING_CONDITIONS;
  const given = allowed.filter((key) => (matcher as Record<string, unknown>)[key] !== undefined);
  if (given.length !== 1) {
    const expected = presence
      ? "exact, prefix, suffix, contains, regex, present or absent"
      : STRING_CONDITIONS.join(", ");
    const got = given.length === 0 ? "none" : given.join(" and ");
    fail(path, `must have exactly one of ${expected} (has ${got})`);
  }
}

function checkRoute(route: Route, fail: Fail): void {
  const names = new Map<string, number>();
  route.spec.rules.forEach((rule, i) => {
    const at = `spec.rules[${i}]`;
    const earlier = names.get(rule.name);
    if (earlier !== undefined)
      fail(`${at}.name`, `duplicate rule name '${rule.name}' (also rules[${earlier}])`);
    else names.set(rule.name, i);
    // The rule's route in the filter is named '<route>/<rule>', and the filter limits names.
    const filterRouteName = ruleName(route.metadata.name, rule.name);
    if (filterRouteName.length > MAX_FILTER_NAME) {
      fail(
        `${at}.name`,
        `too long: '${filterRouteName}' (the Route's name, '/', the rule's) must be at most ${MAX_FILTER_NAME} characters`,
      );
    }

    const match = rule.match;
    if (match?.path !== undefined) checkCondition(match.path, `${at}.match.path`, false, fail);
    if (match?.authority !== undefined) checkCondition(match.authority, `${at}.match.authority`, false, fail);
    for (const [j, m] of (match?.headers ?? []).entries()) {
      checkCondition(m, `${at}.match.headers[${j}]`, true, fail);
    }
    for (const [j, m] of (match?.query ?? []).entries())
      checkCondition(m, `${at}.match.query[${j}]`, true, fail);

    // As in the filter: one destination takes all traffic; a split states every share, summing to 100.
    const destinations = rule.destinations;
    let total = 0;
    let complete = true;
    destinations.forEach((d, j) => {
      if (d.weight === undefined && destinations.length > 1) {
        complete = false;
        fail(`${at}.destinations[${j}].weight`, "is required when a rule has more than one destination");
      }
      total += d.weight ?? 100;
      checkClusterName(d.service, d.subset, `${at}.destinations[${j}].subset`, fail);
      const same = destinations.findIndex((o) => o.service === d.service && sameSubset(o.subset, d.subset));
      if (same < j) fail(`${at}.destinations[${j}]`, `duplicate destination (same as destinations[${same}])`);
    });
    if (complete && total !== 100) {
      fail(`${at}.destinations`, `weights must add up to 100 (they add up to ${total})`);
    }

    if (
      rule.sticky !== undefined &&
      (rule.sticky.header === undefined) === (rule.sticky.cookie === undefined)
    ) {
      fail(`${at}.sticky`, "must have exactly one of header, cookie");
    }
    if (rule.fault !== undefined && rule.fault.abort === undefined && rule.fault.delay === undefined) {
      fail(`${at}.fault`, "must have abort or delay");
    }
  });
}

/** A subset's cluster name (`outbound|<service>|<k>=<v>,…`) must fit the filter's limit on cluster names. */
function checkClusterName(service: string, subset: Subset | undefined, path: string, fail: Fail): void {
  const name = outboundCluster(service, subset);
  if (name.length > MAX_CLUSTER_NAME) {
    fail(path, `too long: its cluster name '${name}' must be at most ${MAX_CLUSTER_NAME} characters`);
  }
}

function checkBreaker(breaker: CircuitBreaker, fail: Fail): void {
  const spec = breaker.spec;
  checkClusterName(spec.service, spec.subset, "spec.subset", fail);
  if (spec.fallback !== undefined) {
    checkClusterName(spec.fallback.service, spec.fallback.subset, "spec.fallback.subset", fail);
  }
  if (spec.maxEjectionMs !== undefined && spec.maxEjectionMs < spec.baseEjectionMs) {
    fail("spec.maxEjectionMs", `must not be less than baseEjectionMs (${spec.baseEjectionMs})`);
  }
  if (spec.fallback !== undefined && spec.fallback.service === spec.service) {
    if (sameSubset(spec.fallback.subset, spec.subset)) {
      fail("spec.fallback", "must differ from the service and subset the breaker protects");
    }
  }
}

function checkPlugin(plugin: WasmPlugin, fail: Fail): void {
  const services = plugin.spec.services;
  if (pluginFilterName(plugin.spec.direction ?? "inbound", plugin.metadata.name) === ROUTING_FILTER) {
    fail(
      "metadata.name",
      `'${plugin.metadata.name}' is reserved on the outbound side: ${ROUTING_FILTER} is the built-in routing filter`,
    );
  }
  if (services.includes("*") && services.length > 1) fail("spec.services", '"*" must be the only entry');
  services.forEach((service, i) => {
    if (services.indexOf(service) < i) fail(`spec.services[${i}]`, `duplicate service '${service}'`);
  });
  if (plugin.spec.module === MESH_MODULE) {
    // The built-in module's configuration has its own schema; report its paths inside this resource.
    const result = validateFilterConfig(plugin.spec.configuration);
    if (!result.ok) {
      for (const e of result.errors) {
        fail(e.path === "(root)" ? "spec.configuration" : `spec.configuration.${e.path}`, e.message);
      }
    }
  }
}

/** Equal selectors (an absent subset is the whole service). */
function sameSubset(a: Subset | undefined, b: Subset | undefined): boolean {
  const ak = Object.keys(a ?? {});
  const bk = Object.keys(b ?? {});
  return ak.length === bk.length && ak.every((k) => b?.[k] === a?.[k]);
}

/** Whether a workload's labels include every label of the subset. */
export function selects(subset: Subset | undefined, workload: Workload): boolean {
  const labels = workload.spec.labels ?? {};
  return Object.entries(subset ?? {}).every(([k, v]) => labels[k] === v);
}

/**
 * Checks the references between a set of (individually valid) resources: the complete state of
 * the mesh, e.g. what is stored plus what an apply adds. The built-in module "mesh" always exists.
 */
const subsetKey = (subset: Subset | undefined) =>
  Object.entries(subset ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

export function validateReferences(resources: readonly Resource[]): ReferenceResult {
  const result: ReferenceResult = { errors: [], warnings: [] };
  const names = (kind: Kind) => new Set(resources.filter((r) => r.kind === kind).map((r) => r.metadata.name));
  const services = names("Service");
  const modules = names("WasmModule").add(MESH_MODULE);
  const workloads = resources.filter((r): r is Workload => r.kind === "Workload");
  const present = new Set(resources.map((r) => `${r.kind}/${r.metadata.name}`));

  const seen = new Set<string>();
  // One breaker per cluster: the filter keeps one circuit state per cluster, so a second
  // CircuitBreaker on the same service and subset could only be ignored.
  const breakerOwners = new Map<string, string>();
  const tracingOwners = new Map<string, string>();
  const accessLogOwners = new Map<string, string>();
  for (const r of resources) {
    const at = (path: string, message: string): ReferenceError => ({
      kind: r.kind,
      name: r.metadata.name,
      path,
      message,
    });
    const error = (path: string, message: string) => result.errors.push(at(path, message));
    const missing = (path: string, kind: Kind, name: string) =>
      result.errors.push({ ...at(path, `${kind} '${name}' does not exist`), target: { kind, name } });
    const service = (path: string, name: string) => {
      if (!services.has(name)) missing(path, "Service", name);
    };
    const subset = (path: string, name: string, selector: Subset | undefined) => {
      if (selector === undefined || !services.has(name)) return;
      if (!workloads.some((w) => w.spec.service === name && selects(selector, w))) {
        result.warnings.push(at(path, `selects no workload of Service '${name}'`));
      }
    };

    const key = `${r.kind}/${r.metadata.name}`;
    if (seen.has(key)) error("metadata.name", `duplicate ${r.kind} '${r.metadata.name}'`);
    seen.add(key);

    switch (r.kind) {
      case "Workload":
        service("spec.service", r.spec.service);
        break;
      case "Route":
        service("spec.service", r.spec.service);
        r.spec.rules.forEach((rule, i) => {
          rule.destinations.forEach((d, j) => {
            const path = `spec.rules[${i}].destinations[${j}]`;
            service(`${path}.service`, d.service);
            subset(`${path}.subset`, d.service, d.subset);
          });
        });
        break;
      case "CircuitBreaker": {
        service("spec.service", r.spec.service);
        subset("spec.subset", r.spec.service, r.spec.subset);
        const target = `${r.spec.service}|${subsetKey(r.spec.subset)}`;
        const owner = breakerOwners.get(target);
        if (owner !== undefined && owner !== r.metadata.name) {
          error(
            "spec.subset",
            `CircuitBreaker '${owner}' already covers this service and subset; one breaker per subset`,
          );
        } else breakerOwners.set(target, r.metadata.name);
        if (r.spec.fallback !== undefined) {
          service("spec.fallback.service", r.spec.fallback.service);
          subset("spec.fallback.subset", r.spec.fallback.service, r.spec.fallback.subset);
        }
        break;
      }
      case "AccessRule":
        if (r.spec.source !== "*") service("spec.source", r.spec.source);
        service("spec.destination", r.spec.destination);
        break;
      case "WasmPlugin":
        if (!modules.has(r.spec.module)) missing("spec.module", "WasmModule", r.spec.module);
        r.spec.services.forEach((name, i) => {
          if (name !== "*") service(`spec.services[${i}]`, name);
        });
        break;
      case "ImportedResource":
        // What an original produced lives as long as it does: deleting one of them alone is refused.
        r.spec.produced.forEach((p, i) => {
          if (!present.has(`${p.kind}/${p.name}`)) missing(`spec.produced[${i}]`, p.kind, p.name);
        });
        break;
      case "Tracing":
      case "AccessLog": {
        // One per service and one for the mesh: two could only be merged in some arbitrary order.
        const scope = r.spec.service ?? "";
        const owners = r.kind === "Tracing" ? tracingOwners : accessLogOwners;
        const owner = owners.get(scope);
        if (owner !== undefined && owner !== r.metadata.name) {
          const whose = scope === "" ? "the mesh" : `Service '${scope}'`;
          error(
            r.spec.service === undefined ? "spec" : "spec.service",
            `${r.kind} '${owner}' already applies to ${whose}; one per service and one for the mesh`,
          );
        } else owners.set(scope, r.metadata.name);
        if (r.spec.service !== undefined) service("spec.service", r.spec.service);
        if (r.kind === "Tracing" && r.spec.backend === undefined && r.spec.service !== undefined) {
          const meshWide = resources.some((o) => o.kind === "Tracing" && o.spec.service === undefined);
          if (!meshWide)
            error(
              "spec.backend",
              "is required: there is no mesh Tracing (one without spec.service) to inherit it from",
            );
        }
        break;
      }
      case "Service":
      case "MeshPolicy":
      case "WasmModule":
        break;
    }
  }
  return result;
}
