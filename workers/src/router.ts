// At the edge the worker is Envoy's router. The routing filter hands a route's timeout and retries
// to the router in x-envoy-* request headers (docs/filters.md); the worker takes them off the
// request (they are instructions to the router, not for the origin) and applies them to its fetch.
import type { HeaderPair } from "../../host/index.ts";
import { describe } from "./config-source.ts";

const TIMEOUT = "x-envoy-upstream-rq-timeout-ms";
const MAX_RETRIES = "x-envoy-max-retries";
const RETRY_ON = "x-envoy-retry-on";
const PER_TRY_TIMEOUT = "x-envoy-upstream-rq-per-try-timeout-ms";
const ROUTER_HEADERS: ReadonlySet<string> = new Set([TIMEOUT, MAX_RETRIES, RETRY_ON, PER_TRY_TIMEOUT]);
/** Envoy's default retry back-off: fully jittered, from 25 ms, at most 250 ms. */
const BACKOFF_BASE_MS = 25;
const BACKOFF_MAX_MS = 250;

export interface RouterPolicy {
  /** The whole exchange, response body included (Envoy's route timeout); none when undefined. */
  timeoutMs: number | undefined;
  retries: number;
  retryOn: ReadonlySet<string>;
  /** Each attempt, until its response headers. */
  perTryTimeoutMs: number | undefined;
}

/**
 * Splits the filtered request headers into what goes to the origin and the router's instructions,
 * which the origin must not see. Works on the pairs, before they become Headers: fewer calls into
 * the runtime than reading and deleting on a Headers object.
 */
export function takeRouterPolicy(pairs: readonly HeaderPair[]): {
  policy: RouterPolicy;
  forward: [string, string][];
} {
  const forward: [string, string][] = [];
  const found = new Map<string, string>();
  for (const [name, value] of pairs) {
    if (name.startsWith(":")) continue;
    if (ROUTER_HEADERS.has(name)) {
      // A repeated instruction: the first one counts.
      if (!found.has(name)) found.set(name, value);
    } else forward.push([name, value]);
  }
  const millis = (value: string | undefined) => {
    const ms = Number(value ?? Number.NaN);
    return Number.isInteger(ms) && ms > 0 ? ms : undefined;
  };
  const retries = Number(found.get(MAX_RETRIES) ?? 0);
  const retryOn = (found.get(RETRY_ON) ?? "").split(",").map((condition) => condition.trim());
  return {
    policy: {
      timeoutMs: millis(found.get(TIMEOUT)),
      retries: Number.isInteger(retries) && retries > 0 ? retries : 0,
      retryOn: new Set(retryOn.filter((condition) => condition !== "")),
      perTryTimeoutMs: millis(found.get(PER_TRY_TIMEOUT)),
    },
    forward,
  };
}

export type UpstreamOutcome =
  | { kind: "response"; response: Response }
  /** The route's timeout passed before the response headers (Envoy: 504). */
  | { kind: "timeout" }
  /** Connect failure, reset or per-try timeout of the last attempt (Envoy: 503). */
  | { kind: "failed"; reason: string };

/**
 * Calls `attempt` (one fetch, to the next origin of the cluster) under the route's timeout, and
 * again as its retry policy says. Only a request without a body is retried: bodies stream through
 * and are not kept to be sent twice.
 */
export async function fetchUpstream(
  attempt: (signal: AbortSignal | undefined) => Promise<Response>,
  policy: RouterPolicy,
  replayable: boolean,
): Promise<UpstreamOutcome> {
  const overall = policy.timeoutMs !== undefined ? AbortSignal.timeout(policy.timeoutMs) : undefined;
  const attempts = 1 + (replayable ? policy.retries : 0);
  for (let tried = 1; ; tried++) {
    // Signals and timers only for the timeouts the route has: most have none, and they cost.
    const perTry = policy.perTryTimeoutMs !== undefined ? new AbortController() : undefined;
    const timer =
      perTry !== undefined
        ? setTimeout(() => perTry.abort(new Error("per-try timeout")), policy.perTryTimeoutMs)
        : undefined;
    let outcome: UpstreamOutcome;
    try {
      const signal =
        overall && perTry ? AbortSignal.any([overall, perTry.signal]) : (overall ?? perTry?.signal);
      outcome = { kind: "response", response: await attempt(signal) };
    } catch (error) {
      if (overall?.aborted) return { kind: "timeout" };
      outcome = { kind: "failed", reason: perTry?.signal.aborted ? "per-try timeout" : describe(error) };
    } finally {
      clearTimeout(timer);
    }
    if (tried >= attempts || !retriable(outcome, policy.retryOn)) return outcome;
    if (outcome.kind === "response") await outcome.response.body?.cancel();
    const backoff = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (tried - 1));
    await new Promise((resolve) => setTimeout(resolve, backoff));
    if (overall?.aborted) return { kind: "timeout" };
  }
}

/** Envoy's retry_on conditions that make sense without Envoy's internals. */
function retriable(outcome: UpstreamOutcome, on: ReadonlySet<string>): boolean {
  if (outcome.kind === "timeout") return false;
  if (outcome.kind === "failed") {
    return on.has("5xx") || on.has("gateway-error") || on.has("reset") || on.has("connect-failure");
  }
  const status = outcome.response.status;
  if (status >= 500 && on.has("5xx")) return true;
  if ((status === 502 || status === 503 || status === 504) && on.has("gateway-error")) return true;
  return status === 409 && on.has("retriable-4xx");
}
