// The release mesh.wasm in a real Envoy (V8 runtime), with two upstreams that count requests.
import http from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type MeshEnvoy, probeAfterEjection, startMeshEnvoy } from "../support/mesh-envoy.ts";
import { until } from "../support/wait.ts";

const canary = {
  headerRules: [{ name: "deny-admin", match: { path: { prefix: "/admin" } }, deny: { status: 403 } }],
  routes: [
    {
      name: "testers",
      match: { headers: [{ name: "x-user", exact: "tester" }] },
      destinations: [{ cluster: "v2" }],
    },
    {
      name: "canary",
      destinations: [
        { cluster: "v1", weight: 90 },
        { cluster: "v2", weight: 10 },
      ],
    },
  ],
};

interface ListenerDump {
  name: string;
  active_state?: unknown;
  error_state?: { details?: string; failed_configuration?: unknown };
}

function findListenerDump(dump: unknown, name: string): ListenerDump {
  // With ?resource=dynamic_listeners, each entry of `configs` is one listener.
  const configs = (dump as { configs?: ListenerDump[] }).configs ?? [];
  const listener = configs.find((l) => l.name === name);
  if (!listener) throw new Error(`listener ${name} not in config_dump`);
  return listener;
}

describe("mesh.wasm in Envoy: split, header routing, deny", () => {
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({ config: canary });
  });
  afterAll(async () => {
    await mesh?.stop();
  });
  afterEach(() => {
    mesh.v1.reset();
    mesh.v2.reset();
  });

  it("runs the module in Envoy's V8 Wasm runtime", async () => {
    const stats = await mesh.envoy.stats();
    const active = [...stats].find(
      ([name]) => name.includes("wasm") && name.includes("v8") && name.endsWith("active"),
    );
    expect(active?.[1]).toBeGreaterThan(0);
    expect((await mesh.send({ path: "/" })).status).toBe(200);
  });

  it("splits 1,000 requests 900/100 at 90/10", async () => {
    for (let i = 0; i < 1000; i++) {
      const response = await mesh.send({ path: `/item/${i}` });
      expect(response.status).toBe(200);
    }
    // One worker thread: the smooth round-robin is exact.
    expect([mesh.v1.count, mesh.v2.count]).toEqual([900, 100]);
  });

  it("sends x-user: tester to v2 every time", async () => {
    for (let i = 0; i < 100; i++) {
      const response = await mesh.send({ path: "/", headers: { "x-user": "tester" } });
      expect(response.headers.get("x-upstream")).toBe("v2");
    }
    expect([mesh.v1.count, mesh.v2.count]).toEqual([0, 100]);
  });

  it("denies with 403 and x-wasmesh-denied, and no upstream sees the request", async () => {
    for (let i = 0; i < 10; i++) {
      const response = await mesh.send({ path: "/admin/users", headers: { "x-user": "tester" } });
      expect(response.status).toBe(403);
      expect(response.headers.get("x-wasmesh-denied")).toBe("deny-admin");
    }
    expect(mesh.v1.count + mesh.v2.count).toBe(0);
  });

  it("ignores a routing header sent by the client", async () => {
    for (let i = 0; i < 20; i++) await mesh.send({ path: "/", headers: { "x-wasmesh-cluster": "v2" } });
    expect(mesh.v1.count).toBe(18);
  });

  it("exports its metrics on /stats/prometheus", async () => {
    await mesh.send({ path: "/admin" });
    await mesh.send({ path: "/", headers: { "x-user": "tester" } });
    const text = await mesh.envoy.prometheus();
    expect(text).toMatch(/wasmesh_route_v2_requests\S* [1-9]/);
    expect(text).toMatch(/wasmesh_rule_deny-admin_denied\S* [1-9]|wasmesh_rule_deny_admin_denied\S* [1-9]/);
  });
});

describe("mesh.wasm in Envoy: circuit breaker", () => {
  const breaker = {
    routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
    breakers: [{ cluster: "v2", consecutiveErrors: 5, intervalMs: 10_000, baseEjectionMs: 1_500 }],
  };
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({ config: breaker });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("opens after N failures, answers locally while open, and a probe closes it", async () => {
    mesh.v2.setStatus(503);
    for (let i = 0; i < 5; i++) {
      const response = await mesh.send({ path: "/" });
      expect(response.status).toBe(503);
      expect(response.headers.get("x-upstream")).toBe("v2");
    }
    expect(mesh.v2.count).toBe(5);
    for (let i = 0; i < 20; i++) {
      const response = await mesh.send({ path: "/" });
      expect(response.status).toBe(503);
      expect(response.headers.get("x-wasmesh-circuit")).toBe("open");
    }
    expect(mesh.v2.count).toBe(5); // the open circuit kept every request away from v2

    mesh.v2.setStatus(200);
    const probe = await probeAfterEjection(() => mesh.send({ path: "/" }));
    expect(probe.status).toBe(200);
    expect(mesh.v2.count).toBe(6);
    for (let i = 0; i < 10; i++) expect((await mesh.send({ path: "/" })).status).toBe(200);
    expect(mesh.v2.count).toBe(16);
    const stats = await mesh.envoy.stats();
    expect(stats.get("wasmcustom.wasmesh.breaker.v2.opened")).toBe(1);
    expect(stats.get("wasmcustom.wasmesh.breaker.v2.closed")).toBe(1);
  });
});

describe("mesh.wasm in Envoy: per-route timeout and retries, enforced by Envoy's router", () => {
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({
      config: {
        routes: [
          {
            name: "slow",
            match: { path: { prefix: "/slow" } },
            destinations: [{ cluster: "v1" }],
            timeoutMs: 200,
          },
          { name: "flaky", destinations: [{ cluster: "v2" }], retries: { attempts: 2, on: "5xx" } },
        ],
      },
    });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("times a slow upstream out with Envoy's 504", async () => {
    mesh.v1.setDelay(2_000);
    const response = await mesh.send({ path: "/slow" });
    expect(response.status).toBe(504);
    expect(response.body).toContain("upstream request timeout");
    mesh.v1.setDelay(0);
  });

  it("retries a 503 and answers with the retry's 200", async () => {
    let calls = 0;
    mesh.v2.setStatus(() => (++calls === 1 ? 503 : 200));
    const response = await mesh.send({ path: "/flaky" });
    expect(response.status).toBe(200);
    expect(mesh.v2.count).toBe(2);
  });
});

describe("mesh.wasm in Envoy: clients that go away", () => {
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({
      config: {
        routes: [{ name: "all", destinations: [{ cluster: "v2" }] }],
        breakers: [{ cluster: "v2", consecutiveErrors: 2, baseEjectionMs: 60_000 }],
      },
    });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("do not open the breaker: a downstream reset says nothing about the upstream", async () => {
    const resets = async () => (await mesh.envoy.stats()).get("http.mesh.downstream_rq_rx_reset") ?? 0;
    mesh.v2.setDelay(1_000);
    for (let i = 0; i < 5; i++) {
      const req = http.request({
        host: "127.0.0.1",
        port: mesh.port,
        path: "/",
        headers: { host: "reviews" },
      });
      req.on("error", () => {});
      req.end();
      // The client goes away while v2 holds the request (it answers after 1 s).
      await until(`v2 to have request ${i + 1}`, () => mesh.v2.count === i + 1);
      req.destroy();
    }
    // Envoy has seen the resets (and the filter the ends of those streams) before the next request.
    await until("Envoy to count the five resets", async () => (await resets()) === 5);
    mesh.v2.setDelay(0);
    const response = await mesh.send({ path: "/" });
    expect(response.headers.get("x-wasmesh-circuit") ?? null).toBeNull();
    expect(response.status).toBe(200);
    expect((await mesh.envoy.stats()).get("wasmcustom.wasmesh.breaker.v2.opened") ?? 0).toBe(0);
  });
});

describe("mesh.wasm in Envoy: invalid plugin configuration", () => {
  let mesh: MeshEnvoy;
  beforeAll(async () => {
    mesh = await startMeshEnvoy({ config: canary });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("is rejected by Envoy, which keeps serving the last good configuration", async () => {
    const rejected = async () => (await mesh.envoy.stats()).get("listener_manager.lds.update_rejected") ?? 0;
    const before = await rejected();
    mesh.pushConfiguration(
      JSON.stringify({
        routes: [
          {
            name: "bad",
            destinations: [
              { cluster: "v1", weight: 90 },
              { cluster: "v2", weight: 20 },
            ],
          },
        ],
      }),
    );
    await until("Envoy to reject the listener update", async () => (await rejected()) > before, 15_000);
    expect(mesh.envoy.logs()).toContain(
      "wasmesh: invalid plugin configuration: routes[0].destinations: weights must add up to 100",
    );
    // Envoy's admin shows the rejection next to the listener that still serves the good one.
    const dump = await mesh.envoy.configDump("dynamic_listeners");
    const listener = findListenerDump(dump.json, "mesh");
    expect(JSON.stringify(listener.active_state)).toContain("deny-admin");
    expect(JSON.stringify(listener.active_state)).not.toContain('\\"weight\\":20');
    expect(listener.error_state?.details).toContain("Unable to create Wasm plugin wasmesh");
    expect(JSON.stringify(listener.error_state?.failed_configuration)).toContain('\\"weight\\":20');
    expect((await mesh.send({ path: "/admin" })).status).toBe(403);
    expect((await mesh.send({ path: "/", headers: { "x-user": "tester" } })).headers.get("x-upstream")).toBe(
      "v2",
    );
  });

  it("accepts a valid update without a restart", async () => {
    const uptime = (await mesh.envoy.serverInfo()).uptime_current_epoch;
    mesh.pushConfiguration(
      JSON.stringify({ routes: [{ name: "all-v2", destinations: [{ cluster: "v2" }] }] }),
    );
    await until(
      "the new configuration to serve",
      async () => (await mesh.send({ path: "/admin" })).headers.get("x-upstream") === "v2",
      15_000,
    );
    const info = await mesh.envoy.serverInfo();
    expect(info.state).toBe("LIVE");
    expect(Number.parseInt(String(info.uptime_current_epoch), 10)).toBeGreaterThanOrEqual(
      Number.parseInt(String(uptime), 10),
    );
  });
});
