import { describe, expect, it } from "vitest";
import { MeshUnderTest } from "../support/mesh-host.ts";

function tally(clusters: (string | null)[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const c of clusters) counts[String(c)] = (counts[String(c)] ?? 0) + 1;
  return counts;
}

const canary = (v1: number, v2: number, extra: object = {}) => ({
  routes: [
    {
      name: "canary",
      destinations: [
        { cluster: "v1", weight: v1 },
        { cluster: "v2", weight: v2 },
      ],
      ...extra,
    },
  ],
});

describe("weighted split", () => {
  it("gives exactly 900/100 of 1,000 requests at 90/10 on one worker", async () => {
    const mesh = await MeshUnderTest.start(canary(90, 10));
    const clusters = Array.from({ length: 1000 }, () => mesh.request({ path: "/" }).cluster);
    expect(tally(clusters)).toEqual({ v1: 900, v2: 100 });
  });

  it("spreads the minority evenly instead of in a burst", async () => {
    const mesh = await MeshUnderTest.start(canary(90, 10));
    const clusters = Array.from({ length: 100 }, () => mesh.request({ path: "/" }).cluster);
    for (let window = 0; window < 100; window += 10) {
      expect(clusters.slice(window, window + 10).filter((c) => c === "v2")).toHaveLength(1);
    }
  });

  it("is exact per worker when two workers share the traffic", async () => {
    const mesh = await MeshUnderTest.start(canary(90, 10), { vms: 2 });
    const perVm = [0, 1].map((vm) =>
      tally(Array.from({ length: 500 }, () => mesh.request({ path: "/" }, () => 200, vm).cluster)),
    );
    expect(perVm).toEqual([
      { v1: 450, v2: 50 },
      { v1: 450, v2: 50 },
    ]);
  });

  it("does A/B at 50/50 and blue/green at 100/0", async () => {
    const ab = await MeshUnderTest.start(canary(50, 50));
    expect(tally(Array.from({ length: 200 }, () => ab.request({ path: "/" }).cluster))).toEqual({
      v1: 100,
      v2: 100,
    });
    const blueGreen = await MeshUnderTest.start(canary(100, 0));
    expect(tally(Array.from({ length: 200 }, () => blueGreen.request({ path: "/" }).cluster))).toEqual({
      v1: 200,
    });
  });

  it("keeps a user on one version with a sticky header, and follows the weights across users", async () => {
    const mesh = await MeshUnderTest.start(canary(90, 10, { sticky: { header: "x-user" } }));
    const firstChoice = new Map<string, string | null>();
    for (let user = 0; user < 1000; user++) {
      firstChoice.set(
        `user-${user}`,
        mesh.request({ path: "/", headers: { "x-user": `user-${user}` } }).cluster,
      );
    }
    for (let round = 0; round < 3; round++) {
      for (let user = 0; user < 1000; user += 7) {
        const name = `user-${user}`;
        expect(mesh.request({ path: "/", headers: { "x-user": name } }).cluster).toBe(firstChoice.get(name));
      }
    }
    const onV2 = [...firstChoice.values()].filter((c) => c === "v2").length;
    expect(onV2).toBeGreaterThan(60);
    expect(onV2).toBeLessThan(140);
  });

  it("hashes a cookie when the route is sticky by cookie", async () => {
    const mesh = await MeshUnderTest.start(canary(50, 50, { sticky: { cookie: "session" } }));
    const seen = new Set<string | null>();
    for (let i = 0; i < 20; i++) {
      seen.add(mesh.request({ path: "/", headers: { cookie: "theme=dark; session=abc123; x=1" } }).cluster);
    }
    expect(seen.size).toBe(1);
    const spread = new Set<string | null>();
    for (let i = 0; i < 50; i++)
      spread.add(mesh.request({ path: "/", headers: { cookie: `session=s${i}` } }).cluster);
    expect(spread).toEqual(new Set(["v1", "v2"]));
  });

  it("hands timeouts and retries to Envoy's router in its own headers", async () => {
    const mesh = await MeshUnderTest.start({
      routes: [
        {
          name: "slow",
          destinations: [{ cluster: "v1" }],
          timeoutMs: 1500,
          retries: { attempts: 3, perTryTimeoutMs: 400 },
        },
      ],
    });
    const headers = mesh.request({ path: "/" }).upstreamHeaders;
    expect(headers?.get("x-envoy-upstream-rq-timeout-ms")).toBe("1500");
    expect(headers?.get("x-envoy-max-retries")).toBe("3");
    expect(headers?.get("x-envoy-retry-on")).toBe("5xx,reset,connect-failure");
    expect(headers?.get("x-envoy-upstream-rq-per-try-timeout-ms")).toBe("400");
  });

  it("asks Envoy to pick the route again after setting the routing header", async () => {
    const mesh = await MeshUnderTest.start(canary(90, 10));
    const stream = mesh.pick().newHttpStream();
    stream.requestHeaders(
      [
        [":method", "GET"],
        [":path", "/"],
        [":authority", "a"],
      ],
      true,
    );
    expect(stream.foreignCalls("clear_route_cache")).toBe(1);
    stream.complete();
  });

  it("leaves the routing header unset when no route matches", async () => {
    const mesh = await MeshUnderTest.start({
      routes: [{ name: "only-api", match: { path: { prefix: "/api" } }, destinations: [{ cluster: "v1" }] }],
    });
    expect(
      mesh
        .request({ path: "/other", headers: { "x-wasmesh-cluster": "v9" } })
        .upstreamHeaders?.has("x-wasmesh-cluster"),
    ).toBe(false);
    expect(mesh.request({ path: "/api/x" }).cluster).toBe("v1");
  });
});
