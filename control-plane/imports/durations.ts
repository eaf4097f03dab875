// Durations as Istio, Kuma and Consul write them, in milliseconds. One grammar covers them all:
// - Go's time.Duration (Consul, Kuma's Kubernetes CRDs, `metav1.Duration`): a sequence of decimal
//   numbers, each with a unit, `300ms`, `1.5h`, `2h45m`; units ns, us, µs (U+00B5), μs (U+03BC), ms,
//   s, m, h; a lone `0` is zero.
// - protobuf's Duration in its JSON form (Istio, Kuma's universal policies): `4s`, `0.5s`,
//   `1.000000001s`, a number of seconds with up to nine fractional digits and the suffix `s`; it is
//   Go's grammar with one term in seconds.
// Negative durations mean nothing for a timeout or an interval: they are refused, as is any other
// value (a bare number, whose unit the author left to guess).

export interface DurationProblem {
  path: string;
  message: string;
}

export type DurationResult = { ok: true; ms: number } | { ok: false; error: DurationProblem };

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

const FORMS = "a duration such as 4s, 0.5s, 30ms, 1h30m (units ns, us, ms, s, m, h)";

/** `value` (the field at `path`) in milliseconds, possibly fractional (`1us` is 0.001). */
export function parseDuration(value: unknown, path: string): DurationResult {
  const fail = (message: string): DurationResult => ({ ok: false, error: { path, message } });
  if (typeof value !== "string") {
    return fail(`must be ${FORMS} (got ${value === undefined ? "nothing" : JSON.stringify(value)})`);
  }
  const text = value.trim();
  if (text === "0") return { ok: true, ms: 0 };
  if (text.startsWith("-")) return fail(`must not be negative (got "${value}")`);
  const body = text.startsWith("+") ? text.slice(1) : text;
  if (body === "") return fail(`must be ${FORMS} (got "${value}")`);
  let ms = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < body.length) {
    const at = TERM.lastIndex;
    const m = TERM.exec(body);
    if (m === null) {
      const rest = body.slice(at);
      const hint = /^\d+(?:\.\d*)?$/.test(rest) ? ": a number needs a unit" : "";
      return fail(`must be ${FORMS} (got "${value}"${hint})`);
    }
    ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  if (!Number.isFinite(ms)) return fail(`is too large (got "${value}")`);
  // Sums of fractions (0.1s + 0.2s) must not leave 300.00000000000006.
  return { ok: true, ms: Math.round(ms * 1e6) / 1e6 };
}

/**
 * A duration for a native field in whole milliseconds (at least 1): a fraction of a millisecond is
 * rounded up, so that a short timeout stays a timeout, and reported by `round` when it happens.
 */
export function wholeMillis(ms: number): { ms: number; rounded: boolean } {
  const whole = Math.max(1, Math.ceil(ms));
  return { ms: whole, rounded: whole !== ms };
}
