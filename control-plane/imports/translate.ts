// Pieces every mesh's translation uses the same way: the native document's shape, durations as
// whole milliseconds within the filter's limits, weights as whole percentages, header changes.
import { API_VERSION, type RouteRule } from "../resources/index.ts";
import { parseDuration, wholeMillis } from "./durations.ts";
import { type Context, isObj } from "./fields.ts";

/** A native resource, its fields in the order `get -o yaml` prints them. */
export const native = <K extends string, S>(kind: K, name: string, spec: S) => ({
  apiVersion: API_VERSION as typeof API_VERSION,
  kind,
  metadata: { name },
  spec,
});

/** The filter's limit on a route timeout (schema/filter-config.ts). */
export const MAX_TIMEOUT_MS = 3_600_000;

/**
 * A duration in whole milliseconds (rounded up, with a warning), or undefined after an error at
 * `path`: not a duration, longer than `max`, or 0 where `zero` is "refused".
 */
export function duration(
  ctx: Context,
  value: unknown,
  path: string,
  { max = MAX_TIMEOUT_MS, zero = "allowed" }: { max?: number; zero?: "allowed" | "refused" } = {},
): number | undefined {
  const parsed = parseDuration(value, path);
  if (!parsed.ok) {
    ctx.error(parsed.error.path, parsed.error.message);
    return undefined;
  }
  if (parsed.ms === 0) {
    if (zero === "allowed") return 0;
    ctx.error(path, "must be longer than 0");
    return undefined;
  }
  const { ms, rounded } = wholeMillis(parsed.ms);
  if (rounded)
    ctx.warn(path, `${String(value)} is rounded up to ${ms}ms (wasmesh counts whole milliseconds)`);
  if (ms > max) {
    ctx.error(path, `${String(value)} is longer than wasmesh's limit of ${max}ms`);
    return undefined;
  }
  return ms;
}

/** Weights (any positive total) as whole percentages adding up to 100: largest remainders, ties to the first. */
export function percents(weights: readonly number[]): number[] {
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

export type HeaderChanges = NonNullable<RouteRule["requestHeaders"]>;

/** `{set: {name: value}, add: {…}, remove: [name]}` (Istio's and Consul's shape) as a rule's changes. */
export function headerChanges(ctx: Context, value: unknown, path: string): HeaderChanges | undefined {
  if (value === undefined) return undefined;
  if (!isObj(value)) {
    ctx.error(path, "must be a mapping of set, add, remove");
    return undefined;
  }
  const out: HeaderChanges = {};
  for (const op of ["set", "add"] as const) {
    const map = value[op];
    if (map === undefined) continue;
    if (!isObj(map)) {
      ctx.error(`${path}.${op}`, "must be a map of header names to values");
      continue;
    }
    const entries = Object.entries(map).map(([name, v]) => ({ name, value: String(v) }));
    if (entries.length > 0) out[op] = entries;
  }
  if (value.remove !== undefined) {
    if (!Array.isArray(value.remove)) ctx.error(`${path}.remove`, "must be a list of header names");
    else if (value.remove.length > 0) out.remove = value.remove.map(String);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Both changes, a's first. */
export function concatChanges(
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
