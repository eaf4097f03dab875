// The real-Envoy harness itself: finding Envoy, starting and stopping it, routing through it to
// counting upstreams, the wasm filter helper and the load generator.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLUSTER_HEADER,
  clusterHeaderRouteConfig,
  DEFAULT_ENVOY_VENV_BIN,
  ENVOY_VERSION,
  type EnvoyProcess,
  envoyVersion,
  findEnvoy,
  freePort,
  httpListener,
  loopbackCluster,
  startEnvoy,
  staticBootstrap,
  wasmHttpFilter,
} from "../support/envoy.ts";
import { isLoopbackHost, runLoad, sequential } from "../support/load.ts";
import { ROUTE_TO_HEADER, writeRouteWasm } from "../support/route-wasm.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const state = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0];
      if (cmdline.includes(needle) && state !== "Z") found.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

describe("findEnvoy", () => {
  const missing = join(tmpdir(), "wasmesh-no-such-dir", "bin", "envoy");

  it("finds an executable Envoy (ENVOY_BIN or the project venv)", () => {
    const bin = findEnvoy();
    expect(existsSync(bin)).toBe(true);
    if (!process.env.ENVOY_BIN) expect(bin).toBe(DEFAULT_ENVOY_VENV_BIN);
  });

  it("throws, naming scripts/install-envoy.sh, when ENVOY_BIN is bogus and the venv is missing", () => {
    expect(() => findEnvoy({ env: { ENVOY_BIN: "/nonexistent/envoy" }, venvBin: missing })).toThrow(
      /ENVOY_BIN=\/nonexistent\/envoy.*bash scripts\/install-envoy\.sh/s,
    );
  });

  it("throws, naming scripts/install-envoy.sh and the venv path, when nothing is installed", () => {
    expect(() => findEnvoy({ env: {}, venvBin: missing })).toThrow(/scripts\/install-envoy\.sh/);
    expect(() => findEnvoy({ env: {}, venvBin: missing })).toThrow(missing);
  });

  it("does not fall back to the venv when ENVOY_BIN is set but wrong", () => {
    expect(() =>
      findEnvoy({ env: { ENVOY_BIN: "/nonexistent/envoy" }, venvBin: DEFAULT_ENVOY_VENV_BIN }),
    ).toThrow(/ENVOY_BIN/);
  });

  it("is Envoy 1.37.0", () => {
    expect(envoyVersion()).toContain(`/${ENVOY_VERSION}/`);
    expect(ENVOY_VERSION).toBe("1.37.0");
    // The installer carries the same pin.
    const installer = readFileSync(new URL("../../scripts/install-envoy.sh", import.meta.url), "utf8");
    expect(installer).toContain(`ENVOY_VERSION=${ENVOY_VERSION}`);
  });
});

describe("a static Envoy routing to two upstreams", () => {
  let v1: Upstream;
  let v2: Upstream;
  let envoy: EnvoyProcess;
  let port: number;
  let url: string;

  beforeAll(async () => {
    v1 = await startUpstream({ name: "v1" });
    v2 = await startUpstream({ name: "v2" });
    port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    const routeConfig = {
      name: "edge",
      virtual_hosts: [
        // The mesh model: the cluster comes from x-wasmesh-cluster.
        {
          name: "by-header",
          domains: ["by-header", "by-header:*"],
          routes: [{ match: { prefix: "/" }, route: { cluster_header: CLUSTER_HEADER } }],
        },
        {
          name: "default",
          domains: ["*"],
          routes: [
            {
              match: { prefix: "/", headers: [{ name: "x-version", string_match: { exact: "v2" } }] },
              route: { cluster: "v2" },
            },
            { match: { prefix: "/" }, route: { cluster: "v1" } },
          ],
        },
      ],
    };
    envoy = await startEnvoy({
      name: "harness",
      // Admin on port 0: the harness learns the real port from --admin-address-path.
      bootstrap: staticBootstrap({
        adminPort: 0,
        listeners: [httpListener({ name: "edge", port, routeConfig })],
        clusters: [loopbackCluster("v1", v1.port), loopbackCluster("v2", v2.port)],
      }),
    });
  });
  afterAll(async () => {
    await envoy?.stop();
    await Promise.all([v1?.close(), v2?.close()]);
  });

  it("is live, with its admin API and the listener on the chosen port", async () => {
    expect(envoy.adminPort).toBeGreaterThan(0);
    const info = await envoy.serverInfo();
    expect(info.state).toBe("LIVE");
    expect(info.version).toContain(ENVOY_VERSION);
    expect(info.command_line_options.concurrency).toBe(1);
    expect(await envoy.waitForListener("edge")).toEqual({ name: "edge", address: "127.0.0.1", port });
    expect((await envoy.waitForListener(port)).name).toBe("edge");
    expect((await envoy.admin("/ready")).text.trim()).toBe("LIVE");
  });

  it("routes x-version: v2 to v2 and everything else to v1", async () => {
    v1.reset();
    v2.reset();
    const plain = await sequential(url, 30);
    const tagged = await sequential(url, 12, { "x-version": "v2" });
    expect(plain.ok).toBe(30);
    expect(plain.byUpstream).toEqual(new Map([["v1", 30]]));
    expect(tagged.byUpstream).toEqual(new Map([["v2", 12]]));
    expect([v1.count, v2.count]).toEqual([30, 12]);
    expect(v2.requests[0]?.headers["x-version"]).toBe("v2");
    expect(v2.requests[0]?.path).toBe("/");
  });

  it("routes by cluster_header: x-wasmesh-cluster, and answers 503 without it", async () => {
    v1.reset();
    v2.reset();
    const host = { host: "by-header" };
    const toV2 = await sequential(url, 7, { ...host, [CLUSTER_HEADER]: "v2" });
    const toV1 = await sequential(url, 5, { ...host, [CLUSTER_HEADER]: "v1" });
    const none = await sequential(url, 3, host);
    const unknown = await sequential(url, 2, { ...host, [CLUSTER_HEADER]: "v3" });
    expect(toV2.byUpstream).toEqual(new Map([["v2", 7]]));
    expect(toV1.byUpstream).toEqual(new Map([["v1", 5]]));
    expect(none.statuses).toEqual(new Map([[503, 3]]));
    expect(unknown.statuses).toEqual(new Map([[503, 2]]));
    expect([v1.count, v2.count]).toEqual([5, 7]);
  });

  it("reports upstream answers in its stats and Prometheus output", async () => {
    const stats = await envoy.stats("^cluster\\.v[12]\\.upstream_rq_total$");
    expect(stats.get("cluster.v1.upstream_rq_total")).toBeGreaterThanOrEqual(35);
    expect(stats.get("cluster.v2.upstream_rq_total")).toBeGreaterThanOrEqual(19);
    expect([...stats.keys()].every((name) => /^cluster\.v[12]\.upstream_rq_total$/.test(name))).toBe(true);
    expect(await envoy.prometheus()).toMatch(
      /envoy_cluster_upstream_rq_total\{envoy_cluster_name="v2"\} \d+/,
    );
    const dump = await envoy.configDump("static_clusters");
    expect(dump.status).toBe(200);
    expect(dump.text).toContain(`"port_value": ${v2.port}`);
  });

  it("propagates upstream status changes and counts under concurrent load", async () => {
    v1.reset();
    v1.setStatus(503);
    const failing = await sequential(url, 4);
    expect(failing.statuses).toEqual(new Map([[503, 4]]));
    expect(failing.byUpstream).toEqual(new Map([["v1", 4]]));
    v1.setStatus(200);
    v1.reset();
    const load = await runLoad({ url, requests: 200, concurrency: 8, timeoutMs: 10_000 });
    expect(load.ok).toBe(200);
    expect(load.errors + load.non2xx).toBe(0);
    expect(v1.count).toBe(200);
    expect(load.latenciesMs).toHaveLength(200);
    expect(load.p99).toBeGreaterThanOrEqual(load.p50);
    expect(load.rps).toBeGreaterThan(0);
  });
});

describe("wasmHttpFilter in Envoy 1.37 (V8), with the routing model", () => {
  let v1: Upstream;
  let v2: Upstream;
  let envoy: EnvoyProcess;
  let url: string;
  let noClearUrl: string;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir("route-wasm");
    const wasmPath = writeRouteWasm(dir);
    v1 = await startUpstream({ name: "v1" });
    v2 = await startUpstream({ name: "v2" });
    const port = await freePort();
    const noClearPort = await freePort();
    url = `http://127.0.0.1:${port}/`;
    noClearUrl = `http://127.0.0.1:${noClearPort}/`;
    envoy = await startEnvoy({
      name: "route-wasm",
      concurrency: 2,
      bootstrap: staticBootstrap({
        adminPort: await freePort(),
        listeners: [
          httpListener({
            name: "mesh",
            port,
            routeConfig: clusterHeaderRouteConfig(),
            httpFilters: [
              wasmHttpFilter({
                name: "route",
                rootId: "route",
                vmId: "route",
                wasmPath,
                configuration: '{"unused":true}',
                failOpen: true,
              }),
            ],
          }),
          // The same module without the clear_route_cache call.
          httpListener({
            name: "mesh-no-clear",
            port: noClearPort,
            routeConfig: clusterHeaderRouteConfig(),
            httpFilters: [
              wasmHttpFilter({
                name: "route-no-clear",
                rootId: "route",
                wasmPath: writeRouteWasm(dir, { clearRouteCache: false }),
                configuration: "",
              }),
            ],
          }),
        ],
        clusters: [loopbackCluster("v1", v1.port), loopbackCluster("v2", v2.port)],
      }),
    });
  });
  afterAll(async () => {
    await envoy?.stop();
    await Promise.all([v1?.close(), v2?.close()]);
  });

  it("loads the module in the V8 runtime, with no deprecated fields", async () => {
    const stats = await envoy.stats("^wasm\\.");
    expect(stats.get("wasm.envoy.wasm.runtime.v8.active")).toBeGreaterThan(0);
    expect(envoy.logs()).not.toMatch(/Deprecated field/);
    const dump = await envoy.configDump("static_listeners");
    expect(dump.text).toContain('"failure_policy": "FAIL_OPEN"');
  });

  it("routes by the header the filter writes after clear_route_cache", async () => {
    const toV2 = await runLoad({
      url,
      headers: { [ROUTE_TO_HEADER]: "v2" },
      requests: 40,
      concurrency: 4,
      timeoutMs: 10_000,
    });
    const toV1 = await sequential(url, 10, { [ROUTE_TO_HEADER]: "v1" });
    expect(toV2.byUpstream).toEqual(new Map([["v2", 40]]));
    expect(toV1.byUpstream).toEqual(new Map([["v1", 10]]));
    expect(v2.requests[0]?.headers[CLUSTER_HEADER]).toBe("v2");
    // The filter leaves requests without x-route-to alone: no cluster header, no route, 503.
    expect((await sequential(url, 2)).statuses).toEqual(new Map([[503, 2]]));
  });

  it("also re-routes without clear_route_cache: Envoy 1.37 clears the route cache on any request-header write", async () => {
    // Pinned so that an Envoy upgrade that changes this shows up here. The mesh filter calls
    // clear_route_cache explicitly anyway, which is what the Proxy-Wasm contract promises.
    v2.reset();
    const result = await sequential(noClearUrl, 3, { [ROUTE_TO_HEADER]: "v2" });
    expect(result.byUpstream).toEqual(new Map([["v2", 3]]));
    expect(v2.count).toBe(3);
  });
});

describe("Envoy process lifetime", () => {
  it("stop() leaves no process behind", async () => {
    const envoy = await startEnvoy({
      name: "lifetime",
      concurrency: 2,
      bootstrap: staticBootstrap({ adminPort: 0, listeners: [], clusters: [] }),
    });
    expect(alive(envoy.pid)).toBe(true);
    expect(processesMentioning(envoy.dir).length).toBeGreaterThanOrEqual(1);
    await envoy.stop();
    await envoy.stop(); // idempotent
    expect(envoy.exited).toBe(true);
    expect(alive(envoy.pid)).toBe(false);
    expect(processesMentioning(envoy.dir)).toEqual([]);
    expect(processesMentioning(`wasmesh-envoy-watchdog ${process.pid} ${envoy.pid}`)).toEqual([]);
    expect(existsSync(envoy.dir)).toBe(process.env.WASMESH_KEEP_ENVOY === "1");
  });

  it("two Envoys run side by side", async () => {
    const bootstrap = staticBootstrap({ adminPort: 0, listeners: [], clusters: [] });
    const [a, b] = await Promise.all([
      startEnvoy({ name: "side-a", bootstrap }),
      startEnvoy({ name: "side-b", bootstrap }),
    ]);
    expect(a.adminPort).not.toBe(b.adminPort);
    expect((await a.serverInfo()).state).toBe("LIVE");
    expect((await b.serverInfo()).state).toBe("LIVE");
    await Promise.all([a.stop(), b.stop()]);
    expect([alive(a.pid), alive(b.pid)]).toEqual([false, false]);
  });

  it("a bad bootstrap fails startEnvoy with Envoy's own error, and nothing is left running", async () => {
    const before = processesMentioning("wasmesh-envoy-bad-");
    const bad = staticBootstrap({
      adminPort: 0,
      listeners: [],
      clusters: [{ name: "broken", type: "STATIC", connect_timeout: "1s", no_such_field: true }],
    });
    const error = await startEnvoy({ name: "bad", bootstrap: bad }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/Envoy "bad" exited with code 1/);
    expect(error?.message).toContain("no_such_field");
    expect(processesMentioning("wasmesh-envoy-bad-")).toEqual(before);
    // The bootstrap and the full log are kept for a post-mortem.
    const logPath = /full log: (\S+)/.exec(error?.message ?? "")?.[1] ?? "";
    expect(readFileSync(logPath, "utf8")).toContain("no_such_field");
    rmSync(dirname(logPath), { recursive: true, force: true });
  });

  it("accepts YAML bootstraps", async () => {
    const envoy = await startEnvoy({
      name: "yaml",
      bootstrap: "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n",
    });
    expect(envoy.bootstrapPath.endsWith(".yaml")).toBe(true);
    expect((await envoy.serverInfo()).state).toBe("LIVE");
    await envoy.stop();
  });
});

describe("load generator", () => {
  it("only sends to loopback", async () => {
    for (const host of ["127.0.0.1", "127.8.9.10", "localhost", "[::1]", "::ffff:127.0.0.1"]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of [
      "10.0.0.1",
      "128.0.0.1",
      "example.com",
      "[::2]",
      "0.0.0.0",
      "localhost.example.com",
    ]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
    await expect(
      runLoad({ url: "http://example.com/", requests: 1, concurrency: 1, timeoutMs: 100 }),
    ).rejects.toThrow(/refusing non-loopback host example\.com/);
    await expect(sequential("http://10.1.2.3:80/", 1)).rejects.toThrow(/non-loopback/);
  });

  it("counts connection errors instead of throwing", async () => {
    const port = await freePort(); // nothing listens there
    const result = await runLoad({
      url: `http://127.0.0.1:${port}/`,
      requests: 3,
      concurrency: 2,
      timeoutMs: 1_000,
    });
    expect(result.errors).toBe(3);
    expect(result.ok + result.non2xx).toBe(0);
    expect(result.errorMessages[0]).toMatch(/ECONNREFUSED/);
  });

  it("times requests out", async () => {
    const slow = await startUpstream({ name: "slow", delayMs: 500 });
    try {
      const result = await runLoad({ url: slow.url, requests: 2, concurrency: 2, timeoutMs: 100 });
      expect(result.errors).toBe(2);
      expect(result.errorMessages[0]).toMatch(/timed out/);
    } finally {
      await slow.close();
    }
  });
});
