import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  duration,
  EXTENSION_TYPE,
  type ModuleCode,
  type ProxyConfig,
  parseNodeIdentity,
  TYPE_URL,
  type VmConfig,
} from "../../control-plane/envoy/index.ts";
import { loadBuiltinModule } from "../../control-plane/modules/index.ts";
import { type Resource, validateResource } from "../../control-plane/resources/index.ts";
import { proxyClassKey, translateProxy } from "../../control-plane/translate/index.ts";
import { SnapshotCache, XdsServer } from "../../control-plane/xds/index.ts";
import {
  apiFetch,
  type ControlPlaneProcess,
  revisionOf,
  type Sidecar,
  startControlPlaneProcess,
  startSidecar,
  waitForStatus,
  wasmesh,
} from "../support/control-plane.ts";
import { runLoad, startLoad } from "../support/load.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import {
  flipLastByte,
  type ModuleServer,
  moduleVariant,
  sha256,
  startModuleServer,
} from "../support/module-server.ts";
import { tagModule } from "../support/tag-module.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { eventually, until } from "../support/wait.ts";

const API_VERSION = "wasmesh.io/v1alpha1";
/** The cluster name translation gave the control plane's HTTP API when it wrote remote code. */
const HTTP_CLUSTER = "wasmesh-control-plane-http";
/** What the translation asked for: one try and three retries. */
const FETCH_RETRIES = 3;

const raw = (kind: string, name: string, spec: unknown) => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name },
  spec,
});
const tag = (version: 1 | 2, configuration: string) => `${version} ${configuration}`;

// ---------------------------------------------------------------------------------------------
// 1. Envoy 1.37 and remote code over ECDS

/**
 * The translation's output with every module's code fetched from `server` instead of inline, as
 * translation wrote it for the remote mode it once had (http_uri over a cluster for the API, the
 * sha256 pinned, three retries), and optionally Envoy's nack_on_code_cache_miss.
 */
function withRemoteCode(
  config: ProxyConfig,
  server: ModuleServer,
  modules: ReadonlyMap<string, ModuleCode>,
  nackOnCacheMiss: boolean,
): ProxyConfig {
  const extensions = config[TYPE_URL.extensionConfig].map(({ name, resource }) => {
    const typed = resource.typed_config;
    // Translation makes every ECDS resource a Wasm filter (extensionResource).
    if (typed?.["@type"] !== EXTENSION_TYPE.wasmFilter) throw new Error(`${name}: not a Wasm filter`);
    const plugin = typed.config ?? {};
    const module = plugin.vm_config?.vm_id ?? "";
    const sha = modules.get(module)?.sha256 ?? "";
    const vmConfig: VmConfig = {
      ...plugin.vm_config,
      ...(nackOnCacheMiss ? { nack_on_code_cache_miss: true } : {}),
      code: {
        remote: {
          http_uri: {
            uri: `${server.url}/v1/modules/${module}/${sha}.wasm`,
            cluster: HTTP_CLUSTER,
            timeout: duration(30_000),
          },
          sha256: sha,
          retry_policy: { num_retries: { value: FETCH_RETRIES } },
        },
      },
    };
    return {
      name,
      resource: { ...resource, typed_config: { ...typed, config: { ...plugin, vm_config: vmConfig } } },
    };
  });
  const httpCluster = {
    name: HTTP_CLUSTER,
    resource: {
      name: HTTP_CLUSTER,
      connect_timeout: duration(5_000),
      load_assignment: {
        cluster_name: HTTP_CLUSTER,
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: server.port } } },
              },
            ],
          },
        ],
      },
    },
  };
  return {
    ...config,
    [TYPE_URL.cluster]: [...config[TYPE_URL.cluster], httpCluster],
    [TYPE_URL.extensionConfig]: extensions,
  };
}

describe("Envoy 1.37 with remote Wasm code over ECDS", () => {
  let app: Upstream;
  let modules: ModuleServer;
  let xds: XdsServer;
  let sidecar: Sidecar;
  const resources = new Map<string, unknown>();
  const codes = new Map<string, ModuleCode>();
  let nackOnCacheMiss = false;
  let version = 0;

  const set = (kind: string, name: string, spec: unknown) =>
    resources.set(`${kind}/${name}`, raw(kind, name, spec));
  const setModule = (name: string, bytes: Uint8Array) => {
    modules.add(bytes);
    codes.set(name, { sha256: sha256(bytes), bytes });
    set("WasmModule", name, { sha256: sha256(bytes), size: bytes.length, abiVersion: "0.2.1" });
  };
  const setPlugin = (name: string, configuration: unknown) =>
    set("WasmPlugin", name, { module: name, services: ["reviews"], direction: "inbound", configuration });
  const validated = (): Resource[] =>
    [...resources.values()].map((doc) => {
      const result = validateResource(doc);
      if (!result.ok) throw new Error(`invalid test resource: ${JSON.stringify(result.errors)}`);
      return result.resource;
    });
  /** Publishes the resources as a new version; resolves on ACK, rejects on NACK. */
  const publish = async () => {
    version += 1;
    await xds.update(String(version));
    return xds.waitForAck(String(version), 20_000);
  };
  /**
   * Publishes, and resolves with Envoy's reason once it NACKs the new version. (waitForAck can
   * resolve first when the version adds a filter: LDS is ACKed before Envoy subscribes to the new
   * ECDS name.)
   */
  const publishRejected = async () => {
    await publish().catch(() => undefined);
    let reason = "";
    await eventually(async () => {
      const rejection = xds.status()[0]?.lastRejection;
      expect(rejection?.version).toBe(String(version));
      reason = `${rejection?.typeUrl}: ${rejection?.message}`;
    });
    return reason;
  };
  const get = () => sendHttp(sidecar.outboundPort, { path: "/", headers: { host: "reviews" } });
  const stat = async (name: string) =>
    (await sidecar.envoy.stats(`^${name.replace(/\./g, "\\.")}$`)).get(name) ?? 0;
  /** What Envoy started towards the module server: connections, and requests sent or queued. */
  const moduleClusterTraffic = async () =>
    Object.fromEntries(
      await Promise.all(
        ["upstream_cx_total", "upstream_rq_total", "upstream_rq_pending_total"].map(
          async (counter) => [counter, await stat(`cluster.${HTTP_CLUSTER}.${counter}`)] as const,
        ),
      ),
    );
  /** Remote fetches Envoy started through a listener's init manager (init:debug log lines). */
  const initFetches = () =>
    sidecar.envoy
      .logs()
      .match(
        /init manager Listener-local-init-manager inbound \d+ initializing target RemoteAsyncDataProvider/g,
      )?.length ?? 0;

  let mesh: ModuleCode;
  let v1: Uint8Array;
  let v2: Uint8Array;

  beforeAll(async () => {
    [mesh, v1, v2] = await Promise.all([loadBuiltinModule(), tagModule(1), tagModule(2)]);
    app = await startUpstream({ name: "reviews-app" });
    modules = await startModuleServer();
    modules.add(mesh.bytes);
    codes.set("mesh", mesh);
    xds = new XdsServer({
      parseNode: parseNodeIdentity,
      cache: new SnapshotCache({
        keyFor: proxyClassKey,
        configFor: (proxy) =>
          withRemoteCode(
            translateProxy(validated(), proxy, { modules: codes }),
            modules,
            codes,
            nackOnCacheMiss,
          ),
      }),
      log: () => {},
    });
    const port = await xds.listen(0, "127.0.0.1");
    sidecar = await startSidecar({
      controlPlane: { xds: `127.0.0.1:${port}` },
      nodeId: "reviews-ecds",
      service: "reviews",
      labels: { version: "v1" },
      appPort: app.port,
      // init:debug shows which init manager starts a remote fetch.
      envoyArgs: ["--drain-time-s", "2", "--component-log-level", "init:debug"],
    });
    set("Service", "reviews", { ports: [{ name: "http", port: 9080, protocol: "http" }] });
    // The sidecar's outbound listener sends to its own inbound listener, which runs the plugins.
    set("Workload", "reviews-1", {
      service: "reviews",
      address: "127.0.0.1",
      port: sidecar.inboundPort,
      labels: { version: "v1" },
    });
    await publish();
  }, 120_000);

  afterAll(async () => {
    await sidecar?.envoy.stop();
    await xds?.close();
    await modules?.close();
    await app?.close();
  });

  it("at startup and on a first attach, Envoy fetches the module over HTTP while the listener warms, and runs it", async () => {
    // The routing filter's module, fetched once during Envoy's initialisation.
    expect(modules.fetches(mesh.sha256)).toBe(1);
    expect((await get()).status).toBe(200);

    setModule("tagger", v1);
    setPlugin("tagger", { tag: "a" });
    await publish();
    // Attaching changes the inbound listener: connections opened before keep the old chain until
    // they drain (2 s).
    await eventually(async () => expect((await get()).headers.get("x-tag")).toBe(tag(1, '{"tag":"a"}')));
    expect(modules.fetches(sha256(v1))).toBe(1);
    expect(await stat(`cluster.${HTTP_CLUSTER}.upstream_rq_200`)).toBe(2);
    // The new listener's init manager started the fetch, and the listener waited for it.
    expect(initFetches()).toBe(1);
  });

  it("with nack_on_code_cache_miss, a new version is NACKed and fetched in the background; the old one serves until the config is offered again", async () => {
    nackOnCacheMiss = true;
    const load = startLoad({
      url: `http://127.0.0.1:${sidecar.outboundPort}/`,
      headers: { host: "reviews" },
      requests: 300,
      ratePerSecond: 100,
      concurrency: 4,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    await until("100 answers before the change", () => load.progress.recorded.length >= 100);
    setModule("tagger", v2);
    expect(await publishRejected()).toBe(
      `${TYPE_URL.extensionConfig}: Unable to create Wasm plugin wasmesh.inbound.tagger`,
    );
    await eventually(async () => expect(modules.fetches(sha256(v2))).toBe(1));
    const during = await load.result;
    expect(during.errorMessages).toEqual([]);
    expect(during.ok).toBe(300);
    expect(new Set(during.recorded)).toEqual(new Set([tag(1, '{"tag":"a"}')]));

    // Offered again (here with a new configuration), it comes from Envoy's cache: no second fetch.
    setPlugin("tagger", { tag: "b" });
    await publish();
    expect((await get()).headers.get("x-tag")).toBe(tag(2, '{"tag":"b"}'));
    expect(modules.fetches(sha256(v2))).toBe(1);
  });

  it("with nack_on_code_cache_miss, a first attach is NACKed and the new listener answers 500 until the config is offered again", async () => {
    const late = moduleVariant(v1, "late");
    setModule("late", late);
    setPlugin("late", { tag: "late" });
    expect(await publishRejected()).toBe(
      `${TYPE_URL.extensionConfig}: Unable to create Wasm plugin wasmesh.inbound.late`,
    );
    // The NACK ends the ECDS warming, so the listener goes live without the filter's config.
    await eventually(async () => expect((await get()).status).toBe(500));
    await eventually(async () => expect(modules.fetches(sha256(late))).toBe(1));

    setPlugin("late", { tag: "late2" });
    await publish();
    expect((await get()).status).toBe(200);

    resources.delete("WasmPlugin/late");
    await publish();
    await eventually(async () => expect((await get()).headers.get("x-tag")).toBe(tag(2, '{"tag":"b"}')));
  });

  it("without it (Envoy's default), a new version on a warm listener is ACKed, never fetched, and the filter is skipped despite fail_open: false", async () => {
    nackOnCacheMiss = false;
    // One live filter chain, so one copy of the filter config. While older chains drain (a listener
    // changed less than --drain-time-s ago), each holds a copy and Envoy creates the new module for
    // each: the first waits for the fetch that never starts (filter skipped), the others find it
    // "in progress" in Envoy's code cache and fail closed (503). Which a request meets varies.
    await eventually(async () => {
      expect(await stat("listener_manager.total_listeners_draining")).toBe(0);
      expect(await stat("listener_manager.total_filter_chains_draining")).toBe(0);
    });
    const v3 = moduleVariant(v1, "v3");
    const fetchesBefore = initFetches();
    const trafficBefore = await moduleClusterTraffic();
    setModule("tagger", v3);
    await publish(); // ACKed
    const [status] = xds.status();
    expect(status?.syncedVersion).toBe(String(version));
    // No sleeping for a fetch: Envoy would start it on its main thread while it applies the update,
    // before the ACK, and count it on the module server's cluster at once (a connection or a request).
    expect(await moduleClusterTraffic()).toEqual(trafficBefore);
    expect(modules.fetches(sha256(v3))).toBe(0);
    // The fetch is an init target added to the warm listener's init manager, which has finished
    // initialising: nothing ever starts it.
    expect(initFetches()).toBe(fetchesBefore);
    const extension = (await sidecar.envoy.configDump("ecds_filters")).text;
    expect(extension).toContain(sha256(v3));
    expect(extension).not.toContain("fail_open"); // false, the default, so not printed

    // The old module is gone and the new one never loads: requests pass without the filter.
    const after = await runLoad({
      url: `http://127.0.0.1:${sidecar.outboundPort}/`,
      headers: { host: "reviews" },
      requests: 50,
      concurrency: 1,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    expect(after.statuses).toEqual(new Map([[200, 50]]));
    expect(after.byUpstream.get("reviews-app")).toBe(50);
    expect(new Set(after.recorded)).toEqual(new Set([""]));
  });

  it("bytes that break the sha256 pin are refused after every retry, yet the update is ACKed and the filter fails closed", async () => {
    const guard = moduleVariant(v2, "guard");
    modules.tamper.add(sha256(guard));
    const nacksBefore = xds.status()[0]?.nacks;
    const answeredBefore = await stat(`cluster.${HTTP_CLUSTER}.upstream_rq_200`);
    const servedBefore = modules.fetches();
    setModule("guard", guard);
    setPlugin("guard", { tag: "guard" });
    await publish(); // ACKed: Envoy's ECDS does not wait for the fetch's outcome
    // One try and every retry (a later attempt may start another round: Envoy's negative cache
    // reports the failure and still fetches again).
    await eventually(
      async () => expect(modules.fetches(sha256(guard))).toBeGreaterThanOrEqual(1 + FETCH_RETRIES),
      20_000,
    );
    await eventually(async () => expect((await get()).status).toBe(503), 20_000);
    // Every answer was a 200; Envoy refused each for its digest.
    expect((await stat(`cluster.${HTTP_CLUSTER}.upstream_rq_200`)) - answeredBefore).toBe(
      modules.fetches() - servedBefore,
    );
    expect(await stat("wasm.remote_load_fetch_failures")).toBeGreaterThanOrEqual(1);
    expect(sidecar.envoy.logs()).toContain("Retry limit exceeded for fetching data from remote data source");
    expect(sidecar.envoy.logs()).toContain("Plugin configured to fail closed failed to load");
    // Nothing for `wasmesh status` to show: no NACK.
    expect(xds.status()[0]?.nacks).toBe(nacksBefore);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. `wasmesh server`: module bytes inline

describe("wasmesh server delivers module bytes inline", () => {
  let cp: ControlPlaneProcess;
  let app: Upstream;
  let sidecar: Sidecar;
  let dir: string;

  const get = () => sendHttp(sidecar.outboundPort, { path: "/", headers: { host: "reviews" } });
  async function apply(...resources: unknown[]) {
    const yaml = resources.map((r) => JSON.stringify(r)).join("\n---\n");
    const result = await wasmesh(["apply", "-f", "-"], { api: cp.api, input: yaml });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
  }
  async function push(file: string, bytes: Uint8Array) {
    writeFileSync(join(dir, file), bytes);
    const result = await wasmesh(["modules", "push", join(dir, file), "--name", "tagger"], { api: cp.api });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
  }
  async function synced() {
    const revision = await revisionOf(cp.api);
    await waitForStatus(cp.api, (proxies) =>
      proxies.some((p) => p.nodeId === "reviews-1" && Number(p.syncedVersion ?? -1) >= revision),
    );
  }
  const moduleFetches = async () => {
    const metrics = await (await apiFetch(`${cp.api}/metrics`)).text();
    return [
      ...metrics.matchAll(
        /^wasmesh_api_requests_total\{[^}]*route="\/v1\/modules\/:name\/:file"[^}]*\} (\d+)$/gm,
      ),
    ]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
  };

  beforeAll(async () => {
    dir = tempDir("remote-modules");
    app = await startUpstream({ name: "reviews-app" });
    cp = await startControlPlaneProcess();
    sidecar = await startSidecar({
      controlPlane: cp,
      nodeId: "reviews-1",
      service: "reviews",
      labels: { version: "v1" },
      appPort: app.port,
    });
    await push("tag-v1.wasm", await tagModule(1));
    await apply(
      raw("Service", "reviews", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
      raw("Workload", "reviews-1", {
        service: "reviews",
        address: "127.0.0.1",
        port: sidecar.inboundPort,
        labels: { version: "v1" },
      }),
      raw("WasmPlugin", "tagger", {
        module: "tagger",
        services: ["reviews"],
        direction: "inbound",
        configuration: { tag: "a" },
      }),
    );
    await synced();
  }, 120_000);

  afterAll(async () => {
    await sidecar?.envoy.stop();
    await cp?.stop();
    await app?.close();
  });

  it("sends the module bytes inline: Envoy runs the modules and fetches nothing", async () => {
    await eventually(async () => expect((await get()).headers.get("x-tag")).toBe(tag(1, '{"tag":"a"}')));
    const clusters = (await sidecar.envoy.admin("/clusters?format=json")).text;
    expect(clusters).not.toContain(HTTP_CLUSTER);
    const extensions = (await sidecar.envoy.configDump("ecds_filters")).text;
    expect(extensions).toContain('"inline_bytes"');
    expect(extensions).not.toContain('"remote"');
    expect(await moduleFetches()).toBe(0);
  });

  it("a new module version under light load: no failed request, and responses switch to it", async () => {
    const load = startLoad({
      url: `http://127.0.0.1:${sidecar.outboundPort}/`,
      headers: { host: "reviews" },
      requests: 1200,
      ratePerSecond: 200,
      concurrency: 8,
      timeoutMs: 10_000,
      recordHeader: "x-tag",
    });
    await until("200 answers before the new version", () => load.progress.recorded.length >= 200);
    await push("tag-v2.wasm", await tagModule(2));
    await synced();
    const result = await load.result;
    expect(result.errorMessages).toEqual([]);
    expect(result.non2xx).toBe(0);
    expect(result.ok).toBe(1200);
    expect(new Set(result.recorded)).toEqual(new Set([tag(1, '{"tag":"a"}'), tag(2, '{"tag":"a"}')]));
    expect(result.recorded.slice(0, 100).every((t) => t === tag(1, '{"tag":"a"}'))).toBe(true);
    expect(result.recorded.slice(-100).every((t) => t === tag(2, '{"tag":"a"}'))).toBe(true);
  });

  it("the API serves module bytes by sha256 (the built-in too), and never bytes that no longer match it", async () => {
    const builtin = await loadBuiltinModule();
    for (const [name, bytes] of [
      ["mesh", builtin.bytes],
      ["tagger", await tagModule(2)],
    ] as const) {
      const response = await apiFetch(`${cp.api}/v1/modules/${name}/${sha256(bytes)}.wasm`);
      expect(response.status).toBe(200);
      expect(sha256(new Uint8Array(await response.arrayBuffer()))).toBe(sha256(bytes));
    }
    // v1 is no longer the current version, so the registry has dropped it from memory and reads
    // its blob from disk again, verifying it.
    const v1 = await tagModule(1);
    const blob = join(cp.dataDir, "modules", `${sha256(v1)}.wasm`);
    const damaged = readFileSync(blob);
    flipLastByte(damaged);
    writeFileSync(blob, damaged);
    const refused = await apiFetch(`${cp.api}/v1/modules/tagger/${sha256(v1)}.wasm`);
    expect(refused.status).toBe(404);
    expect(cp.logs()).toContain(`module blob ${blob} is damaged`);
  });
});
