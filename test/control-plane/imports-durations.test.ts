// Durations as Istio, Kuma and Consul write them (control-plane/imports/durations.ts).
import { describe, expect, it } from "vitest";
import { parseDuration, wholeMillis } from "../../control-plane/imports/durations.ts";

const ms = (value: unknown) => {
  const r = parseDuration(value, "spec.http[0].timeout");
  if (!r.ok) throw new Error(r.error.message);
  return r.ms;
};

describe("parseDuration", () => {
  it.each([
    ["4s", 4000],
    ["30ms", 30],
    ["1.5s", 1500],
    ["0.5s", 500],
    ["5m", 300_000],
    ["15m", 900_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["2h45m30.5s", 9_930_500],
    ["1.000000001s", 1000.000001],
    [".5s", 500],
    ["1.s", 1000],
    ["+2s", 2000],
    ["0", 0],
    ["0s", 0],
    ["1500us", 1.5],
    ["1500µs", 1.5],
    ["1500μs", 1.5],
    ["2000000ns", 2],
    ["0.1s0.2s", 300],
  ])("%s is %d ms", (text, expected) => {
    expect(ms(text)).toBe(expected);
  });

  it.each([
    ["4", "a number needs a unit"],
    ["", "must be a duration"],
    ["4 s", "must be a duration"],
    ["4sec", "must be a duration"],
    ["1d", "must be a duration"],
    ["s", "must be a duration"],
    ["-1s", "must not be negative"],
    ["1h-30m", "must be a duration"],
  ])("refuses %j, naming the field", (text, message) => {
    const r = parseDuration(text, "spec.http[0].timeout");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.path).toBe("spec.http[0].timeout");
    expect(r.error.message).toContain(message);
    expect(r.error.message).toContain(JSON.stringify(text).slice(1, -1));
  });

  it("refuses what is no string (a bare number leaves its unit to guess)", () => {
    for (const value of [4, null, undefined, { seconds: 4 }]) {
      const r = parseDuration(value, "spec.trafficPolicy.outlierDetection.interval");
      expect(r).toMatchObject({ ok: false, error: { path: "spec.trafficPolicy.outlierDetection.interval" } });
    }
  });
});

describe("wholeMillis", () => {
  it("rounds a fraction up, so that a short timeout stays one, and says so", () => {
    expect(wholeMillis(1.5)).toEqual({ ms: 2, rounded: true });
    expect(wholeMillis(0.001)).toEqual({ ms: 1, rounded: true });
    expect(wholeMillis(500)).toEqual({ ms: 500, rounded: false });
  });
});
