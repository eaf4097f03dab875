// Smoke test for the benchmark's Envoy setups (test/support/bench-envoy.ts): each starts, sends
// x-user: tester to v2, and splits everything else 90/10.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RunningBenchSetup, startBenchSetup } from "../support/bench-envoy.ts";
import { runLoad, sequential } from "../support/load.ts";
import { ROUTE_TO_HEADER, writeRouteWasm } from "../support/route-wasm.ts";
import { tempDir } from "../support/temp.ts";

const TESTER = { "x-user": "tester" };

describe("bench setup (a): native weighted_clusters + header route + outlier detection", () => {
  let bench: RunningBenchSetup;
  beforeAll(async () => {
    bench = await startBenchSetup({ setup: "native", randomValueHeader: "x-split", baseEjectionMs: 60_000 });
  });
  afterAll(async () => {
    await bench?.stop();
  });
  afterEach(() => {
    bench.v1.reset();
    bench.v2.reset();
  });

  it("sends x-user: tester to v2", async () => {
    const result = await sequential(bench.url, 50, TESTER);
    expect(result.byUpstream).toEqual(new Map([["v2", 50]]));
    expect(bench.envoy.logs()).not.toMatch(/Deprecated field/);
  });

  it("splits 200 requests 180/20 when the random value comes from a header", async () => {
    const result = await runLoad({
      url: bench.url,
      headersFor: (i) => ({ "x-split": String(i) }),
      requests: 200,
      concurrency: 4,
      timeoutMs: 10_000,
    });
    expect(result.ok).toBe(200);
    expect([bench.v1.count, bench.v2.count]).toEqual([180, 20]);
  });

  it("splits about 90/10 with Envoy's own random numbers", async () => {
    const result = await runLoad({ url: bench.url, requests: 200, concurrency: 4, timeoutMs: 10_000 });
    expect(result.ok).toBe(200);
    // Binomial(200, 0.1): mean 20, sd 4.2; [6, 40] is beyond 3 sd on both sides.
    expect(bench.v2.count).toBeGreaterThanOrEqual(6);
    expect(bench.v2.count).toBeLessThanOrEqual(40);
    expect(bench.v1.count + bench.v2.count).toBe(200);
  });

  it("ejects a failing upstream after 5 consecutive 5xx and answers 503 without calling it", async () => {
    bench.v2.setStatus(500);
    try {
      const failing = await sequential(bench.url, 5, TESTER);
      expect(failing.statuses).toEqual(new Map([[500, 5]]));
      // The ejection happens on the 5th error, synchronously in the worker.
      const ejected = await bench.envoy.stats(
        "^cluster\\.v2\\.outlier_detection\\.ejections_enforced_consecutive_5xx$",
      );
      expect(ejected.get("cluster.v2.outlier_detection.ejections_enforced_consecutive_5xx")).toBe(1);
      const open = await sequential(bench.url, 10, TESTER);
      expect(open.statuses).toEqual(new Map([[503, 10]]));
      expect(bench.v2.count).toBe(5);
    } finally {
      bench.v2.setStatus(200);
    }
  });
});

describe("bench setup (b): Lua filter writing x-wasmesh-cluster", () => {
  let bench: RunningBenchSetup;
  beforeAll(async () => {
    bench = await startBenchSetup({ setup: "lua" });
  });
  afterAll(async () => {
    await bench?.stop();
  });
  afterEach(() => {
    bench.v1.reset();
    bench.v2.reset();
  });

  it("sends x-user: tester to v2", async () => {
    const result = await sequential(bench.url, 50, TESTER);
    expect(result.byUpstream).toEqual(new Map([["v2", 50]]));
    expect(bench.v2.requests[0]?.headers["x-wasmesh-cluster"]).toBe("v2");
    expect(bench.envoy.logs()).not.toMatch(/Deprecated field/);
  });

  it("splits 200 requests exactly 180/20 (a counter per worker; one worker)", async () => {
    const result = await runLoad({ url: bench.url, requests: 200, concurrency: 4, timeoutMs: 10_000 });
    expect(result.ok).toBe(200);
    expect([bench.v1.count, bench.v2.count]).toEqual([180, 20]);
  });

  it("spreads v2's share evenly: one in every ten consecutive requests", async () => {
    for (let block = 0; block < 5; block++) {
      const result = await sequential(bench.url, 10);
      expect(result.byUpstream).toEqual(
        new Map([
          ["v1", 9],
          ["v2", 1],
        ]),
      );
    }
  });

  it("overrides a client-supplied x-wasmesh-cluster", async () => {
    const result = await sequential(bench.url, 10, { "x-wasmesh-cluster": "v2" });
    expect(result.ok).toBe(10);
    // The split counter decides (at most one of 10 consecutive requests goes to v2), not the client.
    expect(bench.v1.count).toBeGreaterThanOrEqual(9);
    for (const upstream of [bench.v1, bench.v2]) {
      for (const request of upstream.requests)
        expect(request.headers["x-wasmesh-cluster"]).toBe(upstream.name);
    }
  });
});

describe("bench setup (c): Wasm filter", () => {
  let bench: RunningBenchSetup;
  let dir: string;
  beforeAll(async () => {
    // Until build/mesh.wasm exists, the routing fixture module stands in for it.
    dir = tempDir("bench-wasm");
    bench = await startBenchSetup({ setup: "wasm", wasmPath: writeRouteWasm(dir), configuration: "{}" });
  });
  afterAll(async () => {
    await bench?.stop();
  });

  it("starts, loads the module in V8 and routes by x-wasmesh-cluster", async () => {
    const stats = await bench.envoy.stats("^wasm\\.envoy\\.wasm\\.runtime\\.v8\\.active$");
    expect(stats.get("wasm.envoy.wasm.runtime.v8.active")).toBeGreaterThan(0);
    const result = await sequential(bench.url, 10, { [ROUTE_TO_HEADER]: "v2" });
    expect(result.byUpstream).toEqual(new Map([["v2", 10]]));
    expect(bench.envoy.logs()).not.toMatch(/Deprecated field/);
  });
});
