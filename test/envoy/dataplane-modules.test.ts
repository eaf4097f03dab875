// Module delivery through the data-plane agent's xDS proxy (dataplane/xds-proxy.ts), end to end
// with a real Envoy 1.37: its bootstrap (control-plane/envoy/bootstrap.ts, node metadata
// wasmesh.module_delivery: local) points its ADS cluster at the proxy, it runs in the agent's data
// directory, and the real control plane (startControlPlane, real SQLite, modules pushed through the
// API) names each Wasm filter's code as a local file. The module bytes come from the API through a
// front that counts requests and can damage the bytes (test/support/module-server.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrapYaml } from "../../control-plane/envoy/bootstrap.ts";
import { LOCAL_MODULE_FILE } from "../../control-plane/envoy/index.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import { startXdsProxy, type XdsProxy } from "../../dataplane/xds-proxy.ts";
import { RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf, revisionOf, waitForStatus, wasmesh } from "../support/control-plane.ts";
import { type EnvoyProcess, freePort, startEnvoy } from "../support/envoy.ts";
import { startLoad } from "../support/load.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import { type ModuleServer, sha256, startModuleServer } from "../support/module-server.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { eventually } from "../support/wait.ts";

const NODE_ID = "reviews-agent";
const tag = (version: 1 | 2, configuration: string) => `${version} ${configuration}`;

describe("module delivery through the agent's xDS proxy, with a real Envoy", () => {
  let plane: ControlPlane;
  let api: string;
  let front: ModuleServer;
  let proxy: XdsProxy;
  let envoy: EnvoyProcess;
  let app: Upstream;
  let dataDir: string;
  let outboundPort: number;
  let inboundPort: number;

  async function apply(...resources: { kind: string; name: string; spec: unknown }[]): Promise<number> {
    const body = resources
      .map((r) =>
        JSON.stringify({
          apiVersion: "wasmesh.io/v1alpha1",
          kind: r.kind,
          metadata: { name: r.name },
          spec: r.spec,
        }),
      )
      .join("\n---\n");
    const response = await apiFetch(`${api}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body,
    });
    const result = (await response.json()) as { revision: number };
    expect(response.status, JSON.stringify(result)).toBe(200);
    return result.revision;
  }
  async function pushModule(bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    const response = await apiFetch(`${api}/v1/modules/tagger`, {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: bytes,
    });
    expect(response.status, await response.text()).toBeLessThan(300);
  }
  const plugin = (configuration: unknown) => ({
    kind: "WasmPlugin",
    name: "tagger",
    spec: { module: "tagger", services: ["reviews"], direction: "inbound", configuration },
  });
  /** Resolves once Envoy has ACKed the store's current revision. */
  async function synced(): Promise<void> {
    const revision = await revisionOf(api);
    await waitForStatus(api, (proxies) =>
      proxies.some((p) => p.nodeId === NODE_ID && Number(p.syncedVersion ?? -1) >= revision),
    );
  }
  const get = () => sendHttp(outboundPort, { path: "/", headers: { host: "reviews" } });
  /** The code of every Wasm filter Envoy runs, from its config dump. */
  const ecdsCode = async () => (await envoy.configDump("ecds_filters")).text;

  beforeAll(async () => {
    plane = await startControlPlane({
      dataDir: tempDir("agent-cp"),
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      log: () => {},
    });
    api = apiOf(plane).api;
    front = await startModuleServer({ upstream: api });
    app = await startUpstream({ name: "reviews-app" });
    dataDir = tempDir("agent-data");
    proxy = await startXdsProxy({
      upstream: `127.0.0.1:${plane.xdsPort}`,
      listen: { host: "127.0.0.1", port: 0 },
      dataDir,
      api: front.url,
      // The agent's token: a dataplane token of reviews.
      token: (await plane.tokens.issue({ role: "dataplane", service: "reviews" })).secret,
    });
    [outboundPort, inboundPort] = [await freePort(), await freePort()];
    const bootstrap = bootstrapYaml({
      proxy: {
        nodeId: NODE_ID,
        service: "reviews",
        labels: { version: "v1" },
        outboundPort,
        inboundPort,
        appPort: app.port,
        outboundAddress: "127.0.0.1",
        inboundAddress: "127.0.0.1",
        appAddress: "127.0.0.1",
        moduleDelivery: "local",
      },
      xds: `127.0.0.1:${proxy.port}`,
      adminPort: await freePort(),
    });
    // The agent's way: Envoy runs in its data directory, where the module files are.
    envoy = await startEnvoy({ bootstrap, name: NODE_ID, cwd: dataDir, extraArgs: ["--drain-time-s", "2"] });
    await pushModule(await tagModule(1));
    await apply(
      { kind: "Service", name: "reviews", spec: { ports: [{ name: "http", port: 9080, protocol: "http" }] } },
      // The sidecar's outbound listener sends to its own inbound listener, which runs the plugin.
      {
        kind: "Workload",
        name: "reviews-1",
        spec: { service: "reviews", address: "127.0.0.1", port: inboundPort, labels: { version: "v1" } },
      },
      plugin({ tag: "a" }),
    );
    await synced();
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await proxy?.close();
    await front?.close();
    await app?.close();
    await plane?.close();
  });

  it("Envoy loads each module from the agent's cache, fetched once, and routes traffic through it", async () => {
    await eventually(async () => {
      const response = await get();
      expect(response.status).toBe(200);
      expect(response.headers.get("x-upstream")).toBe("reviews-app");
      expect(response.headers.get("x-tag")).toBe(tag(1, '{"tag":"a"}'));
    });
    await proxy.firstAck();
    expect(proxy.synced()).toBe(true);
    // Envoy was given file names, never bytes; each file is what its name says.
    const dump = await ecdsCode();
    expect(dump).not.toContain("inline_bytes");
    const files = [...dump.matchAll(/"filename": "([^"]+)"/g)].map((m) => m[1] as string).sort();
    expect(files.map((f) => f.split("/")[1])).toEqual(["mesh", "tagger"]);
    for (const file of files)
      expect(sha256(readFileSync(join(dataDir, file)))).toBe(LOCAL_MODULE_FILE.exec(file)?.[2]);
    expect(front.fetches()).toBe(2);

    // Ten configuration changes: ECDS pushes, no module fetched again.
    for (let i = 1; i <= 10; i++) {
      await apply(plugin({ tag: `a${i}` }));
      await synced();
    }
    expect((await get()).headers.get("x-tag")).toBe(tag(1, '{"tag":"a10"}'));
    expect(front.fetches()).toBe(2);
    expect(proxy.fetches).toBe(2);
  });

  it("a tampered module is refused under load: not one request fails, the previous module keeps serving, and wasmesh status names the digest", async () => {
    const before = await ecdsCode();
    front.tamper.add("tagger");
    const load = startLoad({
      url: `http://127.0.0.1:${outboundPort}/`,
      headers: { host: "reviews" },
      requests: 600,
      ratePerSecond: 200,
      concurrency: 4,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    try {
      await pushModule(await tagModule(2));
      const [rejected] = (
        await waitForStatus(api, (proxies) => proxies.some((p) => p.nodeId === NODE_ID && p.nacks >= 1))
      ).filter((p) => p.nodeId === NODE_ID);
      const message = rejected?.lastRejection?.message ?? "";
      expect(message).toMatch(/^wasmesh agent: module tagger sha256 [0-9a-f]{64}: digest mismatch/);
      const digest = /sha256 ([0-9a-f]{64})/.exec(message)?.[1] as string;
      const status = await wasmesh(["status"], { api });
      expect(status.code).toBe(0);
      expect(status.stdout).toContain(digest);
      const result = await load.result;
      expect(result.errorMessages).toEqual([]);
      expect(result.ok).toBe(600);
      expect(new Set(result.recorded)).toEqual(new Set([tag(1, '{"tag":"a10"}')]));
      // Envoy never saw the response: its filters are as they were.
      expect(await ecdsCode()).toBe(before);
    } finally {
      front.tamper.delete("tagger");
      await load.result;
    }
  });

  it("the next change, with good bytes, brings the new module under load without a failed request", async () => {
    const fetched = front.fetches();
    const load = startLoad({
      url: `http://127.0.0.1:${outboundPort}/`,
      headers: { host: "reviews" },
      requests: 1000,
      ratePerSecond: 200,
      concurrency: 4,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    await eventually(() => expect(load.progress.recorded.length).toBeGreaterThan(100));
    await apply(plugin({ tag: "b" }));
    await synced();
    const result = await load.result;
    expect(result.errorMessages).toEqual([]);
    expect(result.ok).toBe(1000);
    expect(new Set(result.recorded)).toEqual(new Set([tag(1, '{"tag":"a10"}'), tag(2, '{"tag":"b"}')]));
    expect(result.recorded.at(-1)).toBe(tag(2, '{"tag":"b"}'));
    // The new version, fetched once more, now with good bytes.
    expect(front.fetches() - fetched).toBe(1);
  });
});
