// The control plane driving real Envoy sidecars end to end (issue 3, "Proof"): `wasmesh server` as
// a process with its SQLite store, two sidecars started from `wasmesh bootstrap` output (one on
// state-of-the-world ADS, one on delta ADS), resources applied with the CLI and the API, and local
// upstreams for reviews v1 and v2. Every behaviour is observed from outside: which upstream
// answered, status codes, Envoy's admin API, `wasmesh status`.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  type ControlPlaneProcess,
  metricSum,
  proxyStatus,
  revisionOf,
  type Sidecar,
  type StatusProxy,
  startControlPlaneProcess,
  startSidecar,
  waitForStatus,
  wasmesh,
} from "../support/control-plane.ts";
import { runLoad, startLoad } from "../support/load.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { eventually, until } from "../support/wait.ts";
import { connectAds } from "../support/xds-client.ts";

const API_VERSION = "wasmesh.io/v1alpha1";

let cp: ControlPlaneProcess;
let v1: Upstream;
let v2: Upstream;
let client: Sidecar; // productpage's sidecar: SotW ADS, outbound only
let reviews: Sidecar; // reviews-v2's sidecar: delta ADS, inbound to the v2 app

const resource = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name },
  spec,
});

function reviewsRoute(v1Weight: number, v2Weight: number) {
  return resource("Route", "reviews", {
    service: "reviews",
    rules: [
      {
        name: "split",
        destinations: [
          { service: "reviews", subset: { version: "v1" }, weight: v1Weight },
          { service: "reviews", subset: { version: "v2" }, weight: v2Weight },
        ],
      },
    ],
  });
}

/** The newest revision every given proxy has fully acknowledged. */
function synced(proxies: StatusProxy[], nodeIds: string[], revision: number): boolean {
  return nodeIds.every((id) => {
    const proxy = proxies.find((p) => p.nodeId === id);
    return proxy !== undefined && Number(proxy.syncedVersion ?? -1) >= revision;
  });
}

async function waitForSync(revision?: number, nodeIds = [client.nodeId, reviews.nodeId]) {
  const target = revision ?? (await revisionOf(cp.api));
  return waitForStatus(cp.api, (proxies) => synced(proxies, nodeIds, target));
}

/** `wasmesh apply -f -` with the resources as YAML on stdin; fails the test on a non-zero exit. */
async function apply(...resources: unknown[]) {
  const yaml = resources.map((r) => JSON.stringify(r)).join("\n---\n");
  const result = await wasmesh(["apply", "-f", "-"], { api: cp.api, input: yaml });
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return result.stdout;
}

/** n requests to reviews through the client sidecar; answers counted by upstream. */
async function sendToReviews(n: number, headers: Record<string, string> = {}) {
  return runLoad({
    url: `http://127.0.0.1:${client.outboundPort}/reviews`,
    headers: { host: "reviews", ...headers },
    requests: n,
    concurrency: 1,
    timeoutMs: 10_000,
  });
}

beforeAll(async () => {
  v1 = await startUpstream({ name: "reviews-v1" });
  v2 = await startUpstream({ name: "reviews-v2" });
  cp = await startControlPlaneProcess();
  client = await startSidecar({
    controlPlane: cp,
    nodeId: "productpage-1",
    service: "productpage",
    protocol: "sotw",
  });
  reviews = await startSidecar({
    controlPlane: cp,
    nodeId: "reviews-v2-1",
    service: "reviews",
    labels: { version: "v2" },
    appPort: v2.port,
    protocol: "delta",
  });
  await apply(
    resource("Service", "productpage", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    resource("Service", "reviews", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    // v1 is a workload without a sidecar; v2 is served through its sidecar's inbound listener.
    resource("Workload", "reviews-v1-1", {
      service: "reviews",
      address: "127.0.0.1",
      port: v1.port,
      labels: { version: "v1" },
    }),
    resource("Workload", "reviews-v2-1", {
      service: "reviews",
      address: "127.0.0.1",
      port: reviews.inboundPort,
      labels: { version: "v2" },
    }),
  );
  await waitForSync();
}, 120_000);

afterAll(async () => {
  await client?.envoy.stop();
  await reviews?.envoy.stop();
  await cp?.stop();
  await v1?.close();
  await v2?.close();
});

describe("sidecars from `wasmesh bootstrap`", () => {
  it("hold only node identity, admin and the ADS cluster; everything else arrives over ADS", async () => {
    const bootstrap = parse(client.bootstrap) as Record<string, unknown> & {
      node: { id: string; cluster: string };
      static_resources: { clusters: { name: string }[]; listeners?: unknown };
      dynamic_resources: { ads_config: { api_type: string } };
    };
    expect(Object.keys(bootstrap).sort()).toEqual(["admin", "dynamic_resources", "node", "static_resources"]);
    expect(bootstrap.node).toMatchObject({ id: "productpage-1", cluster: "productpage" });
    expect(bootstrap.static_resources.clusters.map((c) => c.name)).toEqual(["wasmesh-xds"]);
    expect(bootstrap.static_resources.listeners).toBeUndefined();
    expect(bootstrap.dynamic_resources.ads_config.api_type).toBe("GRPC");
    expect((parse(reviews.bootstrap) as typeof bootstrap).dynamic_resources.ads_config.api_type).toBe(
      "DELTA_GRPC",
    );

    const clientListeners = (await client.envoy.listeners()).map((l) => l.name);
    expect(clientListeners).toEqual(["outbound"]);
    const reviewsListeners = (await reviews.envoy.listeners()).map((l) => l.name).sort();
    expect(reviewsListeners).toEqual(["inbound", "outbound"]);

    const proxies = await proxyStatus(cp.api);
    expect(proxies.map((p) => [p.nodeId, p.service, p.protocol]).sort()).toEqual([
      ["productpage-1", "productpage", "sotw"],
      ["reviews-v2-1", "reviews", "delta"],
    ]);
    // Envoy's own gRPC client does not accept gzip: nothing was sent to these two compressed.
    const sent = (encoding: string) => metricSum(cp.api, "wasmesh_xds_sent_bytes_total", { encoding });
    expect(await sent("identity")).toBeGreaterThan(0);
    expect(await sent("gzip")).toBe(0);
  });

  it("route requests to a service without a Route over the whole service", async () => {
    const result = await sendToReviews(20);
    expect(result.ok).toBe(20);
    expect((result.byUpstream.get("reviews-v1") ?? 0) + (result.byUpstream.get("reviews-v2") ?? 0)).toBe(20);
  });
});

describe("routing updates without restarts", () => {
  it("a 90/10 route splits 90/10, and 50/50 replaces it without restarting Envoy", async () => {
    await apply(reviewsRoute(90, 10));
    await waitForSync();
    const before = await client.envoy.serverInfo();

    const canary = await sendToReviews(200);
    expect(canary.ok).toBe(200);
    expect(canary.byUpstream.get("reviews-v1")).toBe(180);
    expect(canary.byUpstream.get("reviews-v2")).toBe(20);

    // The API write, then the ACK: how long a change takes to reach a sidecar.
    const written = performance.now();
    const put = await cp.request("PUT", "/v1/routes/reviews", reviewsRoute(50, 50));
    expect(put.status).toBe(200);
    await waitForSync();
    const writeToAckMs = performance.now() - written;
    console.log(`route change: API write to ACK by both sidecars in ${writeToAckMs.toFixed(1)} ms`);

    const even = await sendToReviews(200);
    expect(even.ok).toBe(200);
    expect(even.byUpstream.get("reviews-v1")).toBe(100);
    expect(even.byUpstream.get("reviews-v2")).toBe(100);

    const after = await client.envoy.serverInfo();
    expect(client.envoy.exited).toBe(false);
    // Same process, same epoch, uptime still counting: no restart, hot or cold.
    expect(after.command_line_options).toEqual(before.command_line_options);
    expect(Number.parseInt(after.uptime_all_epochs, 10)).toBeGreaterThanOrEqual(
      Number.parseInt(before.uptime_all_epochs, 10),
    );
    expect(Number.parseInt(after.uptime_current_epoch, 10)).toBe(
      Number.parseInt(after.uptime_all_epochs, 10),
    );
  });
});

describe("filter and module updates", () => {
  it("under steady load, a new plugin configuration and then a new module version lose no request", async () => {
    const pushed = await pushModule("tagger", 1);
    expect(pushed.code).toBe(0);
    await apply(
      reviewsRoute(0, 100),
      resource("WasmPlugin", "tagger", {
        module: "tagger",
        services: ["reviews"],
        direction: "inbound",
        configuration: { tag: "a" },
      }),
    );
    await waitForSync();
    // Attaching a plugin changes the inbound listener's filter chain: connections the client
    // sidecar opened before keep the old chain until they drain (--drain-time-s 2 here).
    await eventually(async () => {
      const first = await sendHttp(client.outboundPort, { path: "/", headers: { host: "reviews" } });
      expect(first.headers.get("x-tag")).toBe('1 {"tag":"a"}');
    });

    // 200 requests/s for 10 s; the configuration changes after 400 answers, the module 200 later.
    const load = startLoad({
      url: `http://127.0.0.1:${client.outboundPort}/`,
      headers: { host: "reviews" },
      requests: 2000,
      ratePerSecond: 200,
      concurrency: 8,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    await until("400 answers with the first configuration", () => load.progress.recorded.length >= 400);
    const put = await cp.request("PUT", "/v1/wasmplugins/tagger", {
      ...resource("WasmPlugin", "tagger", {
        module: "tagger",
        services: ["reviews"],
        direction: "inbound",
        configuration: { tag: "b" },
      }),
    });
    expect(put.status).toBe(200);
    await waitForSync();
    const synced = load.progress.recorded.length;
    await until(
      "200 answers with the new configuration",
      () => load.progress.recorded.length >= synced + 200,
    );
    expect((await pushModule("tagger", 2)).code).toBe(0);
    await waitForSync();
    const result = await load.result;

    expect(result.errorMessages).toEqual([]);
    expect(result.errors).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.ok).toBe(2000);
    const seen = new Set(result.recorded);
    expect([...seen].sort()).toEqual(['1 {"tag":"a"}', '1 {"tag":"b"}', '2 {"tag":"b"}']);
    expect(result.recorded.slice(0, 100).every((tag) => tag === '1 {"tag":"a"}')).toBe(true);
    expect(result.recorded.slice(-100).every((tag) => tag === '2 {"tag":"b"}')).toBe(true);
  });

  it("a configuration the module refuses is refused by the API with its reason, nothing reaches Envoy, and traffic stays on the old one", async () => {
    // Before the API loaded configurations into the modules, this one was stored, pushed, and
    // NACKed by every sidecar (`wasmesh status` showed it); now the sidecars never see it.
    const revisionBefore = await revisionOf(cp.api);
    const put = await cp.request("PUT", "/v1/wasmplugins/tagger", {
      ...resource("WasmPlugin", "tagger", {
        module: "tagger",
        services: ["reviews"],
        direction: "inbound",
        configuration: { reject: true },
      }),
    });
    expect(put.status).toBe(400);
    expect((put.body as { error: { details: unknown[] } }).error.details).toEqual([
      expect.objectContaining({
        kind: "WasmPlugin",
        name: "tagger",
        path: "spec.configuration",
        message: "refused by module 'tagger': tag: configuration refused: it asks to be rejected",
      }),
    ]);
    expect(await revisionOf(cp.api)).toBe(revisionBefore);
    const sidecar = (await proxyStatus(cp.api)).find((p) => p.nodeId === reviews.nodeId);
    expect(
      Number(sidecar?.lastRejection?.version ?? 0),
      "no new version, so nothing to NACK",
    ).toBeLessThanOrEqual(revisionBefore);

    const during = await sendToReviews(50);
    expect(during.ok).toBe(50);
    const tagged = await sendHttp(client.outboundPort, { path: "/", headers: { host: "reviews" } });
    expect(tagged.headers.get("x-tag")).toBe('2 {"tag":"b"}');

    // A good configuration afterwards is taken.
    await cp.request("PUT", "/v1/wasmplugins/tagger", {
      ...resource("WasmPlugin", "tagger", {
        module: "tagger",
        services: ["reviews"],
        direction: "inbound",
        configuration: { tag: "c" },
      }),
    });
    await waitForSync();
    const fixed = await sendHttp(client.outboundPort, { path: "/", headers: { host: "reviews" } });
    expect(fixed.headers.get("x-tag")).toBe('2 {"tag":"c"}');
  });

  it("an invalid module is refused at upload and nothing changes", async () => {
    const revision = await revisionOf(cp.api);
    const dir = tempDir("bad-module");
    const file = join(dir, "bad.wasm");
    writeFileSync(file, Buffer.from("not a module"));
    const result = await wasmesh(["modules", "push", file, "--name", "tagger"], { api: cp.api });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/module/);
    expect(await revisionOf(cp.api)).toBe(revision);
  });
});

describe("control plane restart", () => {
  it("Envoy keeps serving while the control plane is down, then reconnects and resyncs from the same data", async () => {
    const revision = await revisionOf(cp.api);
    const load = startLoad({
      url: `http://127.0.0.1:${client.outboundPort}/`,
      headers: { host: "reviews" },
      requests: 800,
      ratePerSecond: 100,
      concurrency: 4,
      timeoutMs: 10_000,
    });
    const answered = () => load.progress.ok + load.progress.non2xx + load.progress.errors;
    await until("150 answers with the control plane up", () => answered() >= 150);
    await cp.kill();
    const down = answered();
    await until("200 answers with the control plane down", () => answered() >= down + 200);
    const { dataDir, httpPort, xdsPort } = cp;
    cp = await startControlPlaneProcess({ dataDir, httpPort, xdsPort });
    const result = await load.result;
    expect(result.errors).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result.ok).toBe(800);

    // Resources intact, and both sidecars back and in sync with the same revision.
    expect(await revisionOf(cp.api)).toBe(revision);
    const route = await cp.request("GET", "/v1/routes/reviews");
    expect(route.status).toBe(200);
    await waitForSync(revision);
    const after = await sendToReviews(10);
    expect(after.byUpstream.get("reviews-v2")).toBe(10);
  });
});

describe("a second, independent xDS client", () => {
  it("receives the same clusters, listeners and filter configuration as the SotW Envoy", async () => {
    const ads = await connectAds({
      address: cp.xds,
      node: { id: "observer-1", cluster: "productpage", metadata: { "wasmesh.service": "productpage" } },
      protocol: "sotw",
    });
    try {
      const clusters = await ads.fetch("type.googleapis.com/envoy.config.cluster.v3.Cluster");
      const dump = (await client.envoy.configDump("dynamic_active_clusters")).json as {
        configs: { cluster: { name: string } }[];
      };
      expect(clusters.map((c) => c.name).sort()).toEqual(dump.configs.map((c) => c.cluster.name).sort());

      const ecds = await ads.fetch("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", [
        "wasmesh.outbound.routing",
      ]);
      expect(ecds.map((r) => r.name)).toEqual(["wasmesh.outbound.routing"]);
    } finally {
      ads.close();
    }
  });
});

function pushModule(name: string, version: 1 | 2) {
  return tagModule(version).then((bytes) => {
    const dir = tempDir("module");
    const file = join(dir, `tag-v${version}.wasm`);
    writeFileSync(file, bytes);
    return wasmesh(["modules", "push", file, "--name", name], { api: cp.api });
  });
}
