// With two worker threads there are two Wasm VMs; the breaker's state is in shared data, so it
// opens after N failures in total. Per-thread state would need N failures on each thread.
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MeshEnvoy, sendHttp, startMeshEnvoy } from "../support/mesh-envoy.ts";

describe("mesh.wasm in Envoy with --concurrency 2", () => {
  const failures = 6;
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({
      concurrency: 2,
      exactBalance: true,
      config: {
        routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
        breakers: [
          { cluster: "v2", consecutiveErrors: failures, intervalMs: 30_000, baseEjectionMs: 60_000 },
        ],
      },
    });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("opens the breaker after N failures in total across both workers", async () => {
    mesh.v2.setStatus(503);
    // N connections held open at once: Envoy's exact balancer gives each worker N/2 of them.
    const agent = new http.Agent({ keepAlive: true, maxSockets: failures });
    const round = () =>
      Promise.all(Array.from({ length: failures }, () => sendHttp(mesh.port, { path: "/" }, agent)));
    const first = await round();
    expect(first.map((r) => r.status)).toEqual(Array(failures).fill(503));
    expect(mesh.v2.count).toBe(failures);

    const stats = await mesh.envoy.stats();
    const [worker0, worker1] = [0, 1].map(
      (w) =>
        [...stats].find(
          ([name]) => name.endsWith(`worker_${w}.downstream_cx_total`) && name.startsWith("listener.127"),
        )?.[1] ?? 0,
    );
    expect(worker0).toBeGreaterThan(0);
    expect(worker1).toBeGreaterThan(0);
    expect((worker0 ?? 0) + (worker1 ?? 0)).toBe(failures);

    const second = await round();
    expect(second.map((r) => r.headers.get("x-wasmesh-circuit"))).toEqual(Array(failures).fill("open"));
    expect(mesh.v2.count).toBe(failures);
    agent.destroy();
  });
});
