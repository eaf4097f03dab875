// The filters' plugin configuration: parsed from JSON and validated in one pass. Every error names
// the field it is about (`routes[0].destinations[1].weight: ...`), and the first error rejects the
// whole configuration. The same shape is described for TypeScript by schema/filter-config.ts;
// test/conformance/invalid-configs.json holds the cases both must reject with the same field.
import {
  JsonArray,
  JsonBool,
  JsonNumber,
  JsonObject,
  JsonString,
  JsonValue,
  parseJsonBytes,
} from "../lib/json";
import { compileRegex, Regex } from "../lib/regex";
import { Counter, Gauge } from "../sdk/metrics";

export enum StringMatchKind {
  Exact,
  Prefix,
  Suffix,
  Contains,
  Regex,
  Present,
  Absent,
}

export class StringMatcher {
  kind: StringMatchKind = StringMatchKind.Exact;
  value: string = "";
  regex: Regex | null = null;
  ignoreCase: bool = false;

  /** `subject` is null when the header or parameter is missing. */
  matches(subject: string | null): bool {
    if (this.kind == StringMatchKind.Absent) return subject === null;
    if (subject === null) return false;
    if (this.kind == StringMatchKind.Present) return true;
    if (this.kind == StringMatchKind.Regex) {
      // Compiled case-insensitive when asked: lowering the subject would not be enough, and
      // lowering the pattern would turn \D into \d.
      const regex = this.regex;
      return regex !== null && regex.fullMatch(subject);
    }
    const s = this.ignoreCase ? lowerAscii(subject) : subject;
    switch (this.kind) {
      case StringMatchKind.Exact:
        return s == this.value;
      case StringMatchKind.Prefix:
        return s.startsWith(this.value);
      case StringMatchKind.Suffix:
        return s.endsWith(this.value);
      default:
        return s.includes(this.value);
    }
  }
}

/**
 * `s` with ASCII letters lowered and nothing else changed: ignoreCase folds ASCII letters only (as
 * Envoy's and the regex's do), so other bytes still compare as bytes; toLowerCase would also fold
 * É onto é and can change a string's length.
 */
export function lowerAscii(s: string): string {
  const n = s.length;
  const base = changetype<usize>(s);
  let i = 0;
  while (i < n && <u32>(load<u16>(base + ((<usize>i) << 1)) - 0x41) >= 26) i++;
  if (i == n) return s;
  // A copy to change in place (substring of the whole string would hand back `s` itself).
  const out = __new((<usize>n) << 1, idof<string>());
  memory.copy(out, base, (<usize>n) << 1);
  for (; i < n; i++) {
    const at = out + ((<usize>i) << 1);
    const c = <u32>load<u16>(at);
    if (c - 0x41 < 26) store<u16>(at, <u16>(c | 0x20));
  }
  return changetype<string>(out);
}

export class NamedMatcher {
  constructor(
    public name: string,
    public matcher: StringMatcher,
  ) {}
}

export class RequestMatch {
  path: StringMatcher | null = null;
  authority: StringMatcher | null = null;
  methods: string[] = [];
  headers: NamedMatcher[] = [];
  query: NamedMatcher[] = [];
}

export class HeaderValue {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

export class HeaderChanges {
  toSet: HeaderValue[] = [];
  toAdd: HeaderValue[] = [];
  toRemove: string[] = [];
}

export class HeaderRule {
  name: string = "";
  match: RequestMatch = new RequestMatch();
  requestHeaders: HeaderChanges | null = null;
  responseHeaders: HeaderChanges | null = null;
  /** 0 when the rule does not deny. */
  denyStatus: u32 = 0;
  denyBody: string = "";
  /** 0 when the rule injects no abort. */
  abortStatus: u32 = 0;
  abortPercent: f64 = 0;
  delayMs: u32 = 0;
  delayPercent: f64 = 0;
}

export class Destination {
  cluster: string = "";
  /** The cluster name as the proxy wants it (UTF-8), encoded once instead of per request. */
  clusterBytes: ArrayBuffer = new ArrayBuffer(0);
  weight: u32 = 0;
  /** Defined by the root context when the configuration is applied. */
  requests: Counter | null = null;
}

export class Route {
  name: string = "";
  /** The name as UTF-8, set once: the filter hands it to Envoy on every request it routes. */
  nameBytes: ArrayBuffer = new ArrayBuffer(0);
  match: RequestMatch = new RequestMatch();
  destinations: Destination[] = [];
  totalWeight: u32 = 0;
  stickyHeader: string = "";
  stickyCookie: string = "";
  timeoutMs: u32 = 0;
  /** -1 when the route says nothing about retries. */
  retryAttempts: i32 = -1;
  retryOn: string = "";
  perTryTimeoutMs: u32 = 0;
  /** Smooth weighted round-robin state, per worker thread (per VM). */
  current: i64[] = [];
}

export class BreakerPolicy {
  cluster: string = "";
  consecutiveErrors: u32 = 5;
  intervalMs: u32 = 10_000;
  baseEjectionMs: u32 = 30_000;
  maxEjectionMs: u32 = 300_000;
  /** 0 means no limit. */
  maxConcurrent: u32 = 0;
  /** "" means answer locally with 503 while open. */
  fallback: string = "";
  fallbackBytes: ArrayBuffer = new ArrayBuffer(0);
  /** Shared-data keys, encoded once: wasmesh.breaker.<cluster>[.active]. */
  stateKey: ArrayBuffer = new ArrayBuffer(0);
  activeKey: ArrayBuffer = new ArrayBuffer(0);
  /** Defined by the root context when the configuration is applied. */
  metrics: BreakerMetrics | null = null;
}

export class BreakerMetrics {
  opened: Counter;
  closed: Counter;
  rejected: Counter;
  fallback: Counter;
  open: Gauge;
  /** Requests sent to the fallback cluster count as its requests too. */
  fallbackRequests: Counter;

  constructor(policy: BreakerPolicy) {
    const prefix = "wasmesh.breaker." + policy.cluster;
    this.opened = new Counter(prefix + ".opened");
    this.closed = new Counter(prefix + ".closed");
    this.rejected = new Counter(prefix + ".rejected");
    this.fallback = new Counter(prefix + ".fallback");
    this.open = new Gauge(prefix + ".open");
    this.fallbackRequests = new Counter(
      "wasmesh.route." + (policy.fallback.length > 0 ? policy.fallback : policy.cluster) + ".requests",
    );
  }
}

export class MeshConfig {
  headerRules: HeaderRule[] = [];
  routes: Route[] = [];
  breakers: BreakerPolicy[] = [];

  breakerFor(cluster: string): BreakerPolicy | null {
    for (let i = 0; i < this.breakers.length; i++) {
      if (this.breakers[i].cluster == cluster) return this.breakers[i];
    }
    return null;
  }
}

export class ConfigResult {
  constructor(
    public config: MeshConfig | null,
    public error: string,
  ) {}
}

const HEADER_NAME_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
const CLUSTER_NAME_MAX = 200;
const NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/";
const NAME_MAX = 128;

/**
 * Reads JSON into typed values, recording the first error with its field path. After an error
 * every read returns a neutral value, so parsing code stays linear instead of checking each step.
 */
class Reader {
  error: string = "";

  get failed(): bool {
    return this.error.length > 0;
  }

  fail(path: string, reason: string): void {
    if (this.error.length == 0) this.error = (path.length > 0 ? path : "(root)") + ": " + reason;
  }

  object(value: JsonValue | null, path: string, allowed: string[]): JsonObject | null {
    if (this.failed || value === null) return null;
    if (!(value instanceof JsonObject)) {
      this.fail(path, "must be an object");
      return null;
    }
    const obj = value as JsonObject;
    const keys = obj.keys();
    for (let i = 0; i < keys.length; i++) {
      if (!allowed.includes(keys[i])) {
        this.fail(join(path, keys[i]), "unknown field (allowed: " + allowed.join(", ") + ")");
        return null;
      }
    }
    return obj;
  }

  array(obj: JsonObject, key: string, path: string, required: bool): JsonValue[] {
    const value = obj.get(key);
    if (this.failed) return [];
    if (value === null) {
      if (required) this.fail(join(path, key), "is required");
      return [];
    }
    if (!(value instanceof JsonArray)) {
      this.fail(join(path, key), "must be an array");
      return [];
    }
    return (value as JsonArray).items;
  }

  string(obj: JsonObject, key: string, path: string, required: bool): string | null {
    const value = obj.get(key);
    if (this.failed) return null;
    if (value === null) {
      if (required) this.fail(join(path, key), "is required");
      return null;
    }
    if (!(value instanceof JsonString)) {
      this.fail(join(path, key), "must be a string");
      return null;
    }
    return (value as JsonString).value;
  }

  nonEmpty(obj: JsonObject, key: string, path: string, required: bool): string | null {
    const value = this.string(obj, key, path, required);
    if (value !== null && value.length == 0) {
      this.fail(join(path, key), "must not be empty");
      return null;
    }
    return value;
  }

  bool(obj: JsonObject, key: string, path: string, fallback: bool): bool {
    const value = obj.get(key);
    if (this.failed || value === null) return fallback;
    if (!(value instanceof JsonBool)) {
      this.fail(join(path, key), "must be a boolean");
      return fallback;
    }
    return (value as JsonBool).value;
  }

  number(obj: JsonObject, key: string, path: string): f64 {
    const value = obj.get(key);
    if (this.failed || value === null) return NaN;
    if (!(value instanceof JsonNumber)) {
      this.fail(join(path, key), "must be a number");
      return NaN;
    }
    return (value as JsonNumber).value;
  }

  /** An integer in [min, max]; `fallback` when absent (pass -1 to make it required). */
  integer(obj: JsonObject, key: string, path: string, min: f64, max: f64, fallback: f64): f64 {
    const value = this.number(obj, key, path);
    if (this.failed) return fallback;
    if (isNaN(value)) {
      if (fallback < 0) this.fail(join(path, key), "is required");
      return fallback;
    }
    if (value != Math.floor(value) || value < min || value > max) {
      this.fail(join(path, key), "must be an integer from " + fmt(min) + " to " + fmt(max));
      return fallback;
    }
    return value;
  }

  percent(obj: JsonObject, key: string, path: string): f64 {
    const value = this.number(obj, key, path);
    if (this.failed) return 0;
    if (isNaN(value)) return 100;
    if (value < 0 || value > 100) {
      this.fail(join(path, key), "must be a number from 0 to 100");
      return 0;
    }
    return value;
  }

  headerName(value: string | null, path: string): string {
    if (value === null || this.failed) return "";
    const name = value.toLowerCase();
    if (name.length == 0) {
      this.fail(path, "must not be empty");
      return "";
    }
    const start = name.charCodeAt(0) == 58 ? 1 : 0; // pseudo-headers such as ":path"
    for (let i = start; i < name.length; i++) {
      if (!HEADER_NAME_CHARS.includes(name.charAt(i))) {
        this.fail(path, "is not a valid header name: '" + value + "'");
        return "";
      }
    }
    if (start == 1 && name.length == 1) this.fail(path, "is not a valid header name: ':'");
    return name;
  }

  cluster(value: string | null, path: string): string {
    if (value === null || this.failed) return "";
    if (value.length == 0 || value.length > CLUSTER_NAME_MAX) {
      this.fail(path, "must be 1 to " + CLUSTER_NAME_MAX.toString() + " characters");
      return "";
    }
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c <= 32 || c >= 127) {
        this.fail(path, "must be printable ASCII without spaces");
        return "";
      }
    }
    return value;
  }

  /** Rule and route names appear in headers and metric names: keep them to a safe alphabet. */
  name(obj: JsonObject, path: string, names: string[]): string {
    const value = this.nonEmpty(obj, "name", path, true);
    if (value === null || this.failed) return "";
    const namePath = join(path, "name");
    if (value.length > NAME_MAX) {
      this.fail(namePath, "must be at most " + NAME_MAX.toString() + " characters");
      return "";
    }
    for (let i = 0; i < value.length; i++) {
      if (!NAME_CHARS.includes(value.charAt(i))) {
        this.fail(namePath, "may contain only letters, digits and . _ - : / (got '" + value + "')");
        return "";
      }
    }
    if (names.includes(value)) {
      this.fail(namePath, "duplicate name '" + value + "'");
      return "";
    }
    names.push(value);
    return value;
  }

  headerValue(value: string | null, path: string): string {
    if (value === null || this.failed) return "";
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c == 0 || c == 10 || c == 13) {
        this.fail(path, "must not contain NUL, CR or LF");
        return "";
      }
    }
    return value;
  }
}

function join(path: string, key: string): string {
  return path.length == 0 ? key : path + "." + key;
}

function index(path: string, i: i32): string {
  return path + "[" + i.toString() + "]";
}

function fmt(n: f64): string {
  return (<i64>n).toString();
}

const STRING_MATCH_KEYS = ["exact", "prefix", "suffix", "contains", "regex", "ignoreCase"];
const HEADER_MATCH_KEYS = [
  "name",
  "exact",
  "prefix",
  "suffix",
  "contains",
  "regex",
  "present",
  "absent",
  "ignoreCase",
];

/** Reads the one condition of a string matcher from `obj`, which may hold other allowed keys. */
function readCondition(r: Reader, obj: JsonObject, path: string, allowPresence: bool): StringMatcher | null {
  const m = new StringMatcher();
  let conditions = 0;
  const kinds = ["exact", "prefix", "suffix", "contains", "regex"];
  for (let k = 0; k < kinds.length; k++) {
    const value = r.string(obj, kinds[k], path, false);
    if (value === null) continue;
    conditions++;
    m.kind = <StringMatchKind>k;
    m.value = value;
  }
  if (allowPresence) {
    if (obj.get("present") !== null) {
      conditions++;
      m.kind = r.bool(obj, "present", path, true) ? StringMatchKind.Present : StringMatchKind.Absent;
    }
    if (obj.get("absent") !== null) {
      conditions++;
      m.kind = r.bool(obj, "absent", path, true) ? StringMatchKind.Absent : StringMatchKind.Present;
    }
  }
  if (r.failed) return null;
  if (conditions != 1) {
    const expected = allowPresence
      ? "exact, prefix, suffix, contains, regex, present or absent"
      : kinds.join(", ");
    r.fail(path, "must have exactly one of " + expected);
    return null;
  }
  m.ignoreCase = r.bool(obj, "ignoreCase", path, false);
  if (m.kind == StringMatchKind.Regex) {
    const compiled = compileRegex(m.value, m.ignoreCase);
    if (compiled.regex === null) {
      r.fail(join(path, "regex"), compiled.error);
      return null;
    }
    m.regex = compiled.regex;
  } else if (m.ignoreCase) {
    m.value = lowerAscii(m.value);
  }
  return m;
}

function readStringMatch(r: Reader, value: JsonValue | null, path: string): StringMatcher | null {
  const obj = r.object(value, path, STRING_MATCH_KEYS);
  if (obj === null) return null;
  return readCondition(r, obj, path, false);
}

function readNamedMatchers(
  r: Reader,
  obj: JsonObject,
  key: string,
  path: string,
  isHeader: bool,
): NamedMatcher[] {
  const out = new Array<NamedMatcher>();
  const items = r.array(obj, key, path, false);
  for (let i = 0; i < items.length && !r.failed; i++) {
    const itemPath = index(join(path, key), i);
    const item = r.object(items[i], itemPath, HEADER_MATCH_KEYS);
    if (item === null) break;
    const rawName = r.nonEmpty(item, "name", itemPath, true);
    const name = isHeader ? r.headerName(rawName, join(itemPath, "name")) : rawName !== null ? rawName : "";
    const matcher = readCondition(r, item, itemPath, true);
    if (matcher !== null) out.push(new NamedMatcher(name, matcher));
  }
  return out;
}

function readMatch(r: Reader, value: JsonValue | null, path: string): RequestMatch {
  const match = new RequestMatch();
  const obj = r.object(value, path, ["path", "authority", "methods", "headers", "query"]);
  if (obj === null) return match;
  match.path = readStringMatch(r, obj.get("path"), join(path, "path"));
  match.authority = readStringMatch(r, obj.get("authority"), join(path, "authority"));
  const methods = r.array(obj, "methods", path, false);
  for (let i = 0; i < methods.length && !r.failed; i++) {
    const methodPath = index(join(path, "methods"), i);
    const m = methods[i];
    if (!(m instanceof JsonString) || (m as JsonString).value.length == 0) {
      r.fail(methodPath, "must be a non-empty string");
      break;
    }
    match.methods.push((m as JsonString).value.toUpperCase());
  }
  match.headers = readNamedMatchers(r, obj, "headers", path, true);
  match.query = readNamedMatchers(r, obj, "query", path, false);
  return match;
}

function readHeaderValues(r: Reader, obj: JsonObject, key: string, path: string): HeaderValue[] {
  const out = new Array<HeaderValue>();
  const items = r.array(obj, key, path, false);
  for (let i = 0; i < items.length && !r.failed; i++) {
    const itemPath = index(join(path, key), i);
    const item = r.object(items[i], itemPath, ["name", "value"]);
    if (item === null) break;
    const name = r.headerName(r.string(item, "name", itemPath, true), join(itemPath, "name"));
    const value = r.headerValue(r.string(item, "value", itemPath, true), join(itemPath, "value"));
    if (!r.failed) out.push(new HeaderValue(name, value));
  }
  return out;
}

function readHeaderChanges(r: Reader, value: JsonValue | null, path: string): HeaderChanges | null {
  const obj = r.object(value, path, ["set", "add", "remove"]);
  if (obj === null) return null;
  const changes = new HeaderChanges();
  changes.toSet = readHeaderValues(r, obj, "set", path);
  changes.toAdd = readHeaderValues(r, obj, "add", path);
  const removes = r.array(obj, "remove", path, false);
  for (let i = 0; i < removes.length && !r.failed; i++) {
    const itemPath = index(join(path, "remove"), i);
    const item = removes[i];
    if (!(item instanceof JsonString)) {
      r.fail(itemPath, "must be a string");
      break;
    }
    changes.toRemove.push(r.headerName((item as JsonString).value, itemPath));
  }
  return changes;
}

function readHeaderRule(r: Reader, value: JsonValue, path: string, names: string[]): HeaderRule {
  const rule = new HeaderRule();
  const obj = r.object(value, path, ["name", "match", "requestHeaders", "responseHeaders", "deny", "fault"]);
  if (obj === null) return rule;
  rule.name = r.name(obj, path, names);
  rule.match = readMatch(r, obj.get("match"), join(path, "match"));
  rule.requestHeaders = readHeaderChanges(r, obj.get("requestHeaders"), join(path, "requestHeaders"));
  rule.responseHeaders = readHeaderChanges(r, obj.get("responseHeaders"), join(path, "responseHeaders"));
  const denyPath = join(path, "deny");
  const deny = r.object(obj.get("deny"), denyPath, ["status", "body"]);
  if (deny !== null) {
    rule.denyStatus = <u32>r.integer(deny, "status", denyPath, 200, 599, 403);
    const body = r.string(deny, "body", denyPath, false);
    rule.denyBody = body !== null ? body : "denied by wasmesh rule " + rule.name + "\n";
  }
  const faultPath = join(path, "fault");
  const fault = r.object(obj.get("fault"), faultPath, ["abort", "delay"]);
  if (fault !== null) {
    const abortPath = join(faultPath, "abort");
    const abort = r.object(fault.get("abort"), abortPath, ["status", "percent"]);
    if (abort !== null) {
      rule.abortStatus = <u32>r.integer(abort, "status", abortPath, 200, 599, -1);
      rule.abortPercent = r.percent(abort, "percent", abortPath);
    }
    const delayPath = join(faultPath, "delay");
    const delay = r.object(fault.get("delay"), delayPath, ["ms", "percent"]);
    if (delay !== null) {
      rule.delayMs = <u32>r.integer(delay, "ms", delayPath, 1, 3_600_000, -1);
      rule.delayPercent = r.percent(delay, "percent", delayPath);
    }
    if (!r.failed && abort === null && delay === null) r.fail(faultPath, "must have abort or delay");
  }
  if (!r.failed && rule.denyStatus != 0 && fault !== null) {
    r.fail(path, "deny and fault cannot be combined in one rule");
  }
  return rule;
}

function readRoute(r: Reader, value: JsonValue, path: string, names: string[]): Route {
  const route = new Route();
  const obj = r.object(value, path, ["name", "match", "destinations", "sticky", "timeoutMs", "retries"]);
  if (obj === null) return route;
  route.name = r.name(obj, path, names);
  route.nameBytes = String.UTF8.encode(route.name);
  route.match = readMatch(r, obj.get("match"), join(path, "match"));
  const destinations = r.array(obj, "destinations", path, true);
  const destinationsPath = join(path, "destinations");
  if (!r.failed && destinations.length == 0) r.fail(destinationsPath, "must have at least one destination");
  let total: u32 = 0;
  for (let i = 0; i < destinations.length && !r.failed; i++) {
    const itemPath = index(destinationsPath, i);
    const item = r.object(destinations[i], itemPath, ["cluster", "weight"]);
    if (item === null) break;
    const destination = new Destination();
    destination.cluster = r.cluster(r.string(item, "cluster", itemPath, true), join(itemPath, "cluster"));
    destination.clusterBytes = String.UTF8.encode(destination.cluster);
    // A single destination takes all traffic; a split must say each share explicitly.
    const fallback: f64 = destinations.length == 1 ? 100 : -1;
    destination.weight = <u32>r.integer(item, "weight", itemPath, 0, 100, fallback);
    for (let j = 0; j < route.destinations.length && !r.failed; j++) {
      if (route.destinations[j].cluster == destination.cluster) {
        r.fail(join(itemPath, "cluster"), "duplicate destination '" + destination.cluster + "'");
      }
    }
    total += destination.weight;
    route.destinations.push(destination);
    route.current.push(0);
  }
  if (!r.failed && total != 100) {
    r.fail(destinationsPath, "weights must add up to 100 (they add up to " + total.toString() + ")");
  }
  route.totalWeight = total;
  const stickyPath = join(path, "sticky");
  const sticky = r.object(obj.get("sticky"), stickyPath, ["header", "cookie"]);
  if (sticky !== null) {
    const header = r.string(sticky, "header", stickyPath, false);
    const cookie = r.nonEmpty(sticky, "cookie", stickyPath, false);
    if (!r.failed && (header === null) == (cookie === null)) {
      r.fail(stickyPath, "must have exactly one of header, cookie");
    }
    if (header !== null) route.stickyHeader = r.headerName(header, join(stickyPath, "header"));
    if (cookie !== null) route.stickyCookie = cookie;
  }
  route.timeoutMs = <u32>r.integer(obj, "timeoutMs", path, 1, 3_600_000, 0);
  const retriesPath = join(path, "retries");
  const retries = r.object(obj.get("retries"), retriesPath, ["attempts", "on", "perTryTimeoutMs"]);
  if (retries !== null) {
    route.retryAttempts = <i32>r.integer(retries, "attempts", retriesPath, 0, 10, -1);
    const on = r.string(retries, "on", retriesPath, false);
    route.retryOn = on !== null ? r.headerValue(on, join(retriesPath, "on")) : "5xx,reset,connect-failure";
    route.perTryTimeoutMs = <u32>r.integer(retries, "perTryTimeoutMs", retriesPath, 1, 3_600_000, 0);
  }
  return route;
}

function readBreaker(r: Reader, value: JsonValue, path: string): BreakerPolicy {
  const breaker = new BreakerPolicy();
  const obj = r.object(value, path, [
    "cluster",
    "consecutiveErrors",
    "intervalMs",
    "baseEjectionMs",
    "maxEjectionMs",
    "maxConcurrent",
    "fallback",
  ]);
  if (obj === null) return breaker;
  breaker.cluster = r.cluster(r.string(obj, "cluster", path, true), join(path, "cluster"));
  breaker.stateKey = String.UTF8.encode("wasmesh.breaker." + breaker.cluster);
  breaker.activeKey = String.UTF8.encode("wasmesh.breaker." + breaker.cluster + ".active");
  breaker.consecutiveErrors = <u32>r.integer(obj, "consecutiveErrors", path, 1, 10_000, 5);
  breaker.intervalMs = <u32>r.integer(obj, "intervalMs", path, 1, 86_400_000, 10_000);
  breaker.baseEjectionMs = <u32>r.integer(obj, "baseEjectionMs", path, 1, 86_400_000, 30_000);
  const maxDefault: f64 = Math.max(300_000, breaker.baseEjectionMs);
  breaker.maxEjectionMs = <u32>r.integer(obj, "maxEjectionMs", path, 1, 86_400_000, maxDefault);
  if (!r.failed && breaker.maxEjectionMs < breaker.baseEjectionMs) {
    r.fail(join(path, "maxEjectionMs"), "must not be less than baseEjectionMs");
  }
  breaker.maxConcurrent = <u32>r.integer(obj, "maxConcurrent", path, 1, 1_000_000, 0);
  const fallback = r.string(obj, "fallback", path, false);
  if (fallback !== null) {
    breaker.fallback = r.cluster(fallback, join(path, "fallback"));
    breaker.fallbackBytes = String.UTF8.encode(breaker.fallback);
    if (!r.failed && breaker.fallback == breaker.cluster) {
      r.fail(join(path, "fallback"), "must differ from cluster");
    }
  }
  return breaker;
}

/** Parses the plugin configuration bytes (UTF-8 JSON; invalid UTF-8 is refused with its offset). */
export function parseMeshConfig(bytes: ArrayBuffer): ConfigResult {
  const parsed = parseJsonBytes(bytes);
  if (parsed.value === null) return new ConfigResult(null, "(root): invalid JSON: " + parsed.error);
  const r = new Reader();
  const config = new MeshConfig();
  const root = r.object(parsed.value, "", ["headerRules", "routes", "breakers"]);
  if (root === null) return new ConfigResult(null, r.error);

  const ruleNames = new Array<string>();
  const rules = r.array(root, "headerRules", "", false);
  for (let i = 0; i < rules.length && !r.failed; i++) {
    config.headerRules.push(readHeaderRule(r, rules[i], index("headerRules", i), ruleNames));
  }
  const routeNames = new Array<string>();
  const routes = r.array(root, "routes", "", false);
  for (let i = 0; i < routes.length && !r.failed; i++) {
    config.routes.push(readRoute(r, routes[i], index("routes", i), routeNames));
  }
  const breakers = r.array(root, "breakers", "", false);
  for (let i = 0; i < breakers.length && !r.failed; i++) {
    const breaker = readBreaker(r, breakers[i], index("breakers", i));
    if (!r.failed && config.breakerFor(breaker.cluster) !== null) {
      r.fail(index("breakers", i) + ".cluster", "duplicate breaker for cluster '" + breaker.cluster + "'");
    }
    config.breakers.push(breaker);
  }
  if (r.failed) return new ConfigResult(null, r.error);
  return new ConfigResult(config, "");
}
