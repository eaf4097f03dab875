// When the agent renews a workload certificate (control-plane/ca/renewal.ts): at half its lifetime
// plus a random share of up to a tenth by default, never later than the bound, at once when due.
import { describe, expect, it } from "vitest";
import { renewalDelayMs, renewalTime } from "../../control-plane/ca/index.ts";
import { openTestCa, workloadRequest } from "../support/ca.ts";

const HOUR = 3600_000;
const notBefore = new Date("2031-01-01T00:00:00.000Z");
const day = { notBefore, notAfter: new Date(notBefore.getTime() + 24 * HOUR) };
const at = (share: number) => notBefore.getTime() + share * 24 * HOUR;

describe("renewal time", () => {
  it("is half the lifetime with no jitter, and between 50% and 60% with the default", () => {
    expect(renewalTime(day, { random: () => 0 }).getTime()).toBe(at(0.5));
    expect(renewalTime(day, { jitter: 0, random: () => 0.99 }).getTime()).toBe(at(0.5));
    expect(renewalTime(day, { random: () => 0.5 }).getTime()).toBe(at(0.55));
    const latest = renewalTime(day, { random: () => 1 - Number.EPSILON }).getTime();
    expect(latest).toBeLessThan(at(0.6));
    expect(latest).toBeGreaterThan(at(0.599));
    // With the real randomness, a thousand draws stay within the bounds and spread across them.
    const shares = Array.from(
      { length: 1000 },
      () => (renewalTime(day).getTime() - notBefore.getTime()) / (24 * HOUR),
    );
    expect(Math.min(...shares)).toBeGreaterThanOrEqual(0.5);
    expect(Math.max(...shares)).toBeLessThan(0.6);
    expect(Math.max(...shares) - Math.min(...shares)).toBeGreaterThan(0.05);
  });

  it("takes a wider jitter up to 0.4 and refuses beyond, or a random() out of [0, 1)", () => {
    expect(renewalTime(day, { jitter: 0.4, random: () => 0.5 }).getTime()).toBe(at(0.7));
    expect(() => renewalTime(day, { jitter: 0.41 })).toThrow(/within 0\.\.0\.4 \(got 0\.41\)/);
    expect(() => renewalTime(day, { jitter: -0.1 })).toThrow(RangeError);
    expect(() => renewalTime(day, { jitter: Number.NaN })).toThrow(RangeError);
    expect(() => renewalTime(day, { random: () => 1 })).toThrow(/within \[0, 1\)/);
  });

  it("counts the delay from now: positive before, zero once due or expired", () => {
    const random = () => 0;
    expect(renewalDelayMs(day, notBefore.getTime(), { random })).toBe(12 * HOUR);
    expect(renewalDelayMs(day, at(0.25), { random })).toBe(6 * HOUR);
    expect(renewalDelayMs(day, at(0.5), { random })).toBe(0);
    expect(renewalDelayMs(day, at(0.75), { random })).toBe(0);
    expect(renewalDelayMs(day, at(2), { random })).toBe(0);
    // No lifetime at all: renew now.
    expect(renewalDelayMs({ notBefore, notAfter: notBefore }, notBefore.getTime(), { random })).toBe(0);
  });

  it("renews a certificate the CA issued between 12 h and 14.4 h after its start", async () => {
    const opened = await openTestCa();
    try {
      const { csr } = await workloadRequest();
      const issued = await opened.ca.issue({
        csr,
        identity: { namespace: "default", serviceAccount: "payments" },
      });
      const life = issued.notAfter.getTime() - issued.notBefore.getTime();
      const when = renewalTime(issued).getTime() - issued.notBefore.getTime();
      expect(when).toBeGreaterThanOrEqual(life * 0.5);
      expect(when).toBeLessThan(life * 0.6);
      expect(when).toBeGreaterThan(12 * HOUR);
    } finally {
      await opened.close();
    }
  });
});
