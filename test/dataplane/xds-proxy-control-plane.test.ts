// The agent's xDS proxy (dataplane/xds-proxy.ts) in front of the real control plane: a real
// startControlPlane on a real SQLite file, modules pushed and resources applied through its API,
// ADS streams over real gRPC (test/support/xds-client.ts, speaking as Envoy does), and the module
// bytes fetched from the API through a front that counts requests and can tamper with the bytes
// (test/support/module-server.ts).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeMessage,
  LOCAL_MODULE_FILE,
  NODE_METADATA,
  TYPE_URL,
} from "../../control-plane/envoy/index.ts";
import { pluginFilterName, ROUTING_FILTER } from "../../control-plane/resources/names.ts";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import type { Token } from "../../dataplane/http.ts";
import { startXdsProxy, type XdsProxy } from "../../dataplane/xds-proxy.ts";
import { DEBUG_WASM, RELEASE_WASM } from "../support/artifacts.ts";
import { apiFetch, apiOf, proxyStatus, waitForStatus } from "../support/control-plane.ts";
import { type ModuleServer, moduleVariant, sha256, startModuleServer } from "../support/module-server.ts";
import { tempDir } from "../support/temp.ts";
import { until } from "../support/wait.ts";
import {
  type AdsClient,
  type AdsProtocol,
  connectAds,
  type ReceivedResource,
  type ReceivedResponse,
} from "../support/xds-client.ts";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.endpoint;
const LDS = TYPE_URL.listener;
const ECDS = TYPE_URL.extensionConfig;
const EXAMPLE = readFileSync(new URL("../../deploy/examples/mesh.yaml", import.meta.url), "utf8");
const PLUGIN_FILTER = pluginFilterName("outbound", "tagging");
const FILTERS = [ROUTING_FILTER, PLUGIN_FILTER];

/** The example with the canary rule's split set to v1/v2: a change of the routing filter only. */
const resplit = (v1: number, v2: number) =>
  EXAMPLE.replace("weight: 90", `weight: ${v1}`).replace("weight: 10", `weight: ${v2}`);

/** The local file an ECDS resource's Wasm filter names. */
function filenameOf(resource: ReceivedResource): string {
  const typed = resource.resource.typed_config as { type_url: string; value: Uint8Array };
  const wasm = decodeMessage(typed.type_url, typed.value) as {
    config: { vm_config: { code: { local: { filename?: string } } } };
  };
  return wasm.config.vm_config.code.local.filename ?? "";
}

/** What a response carries, nonce aside (a stream's own): to compare two streams' responses. */
const content = (responses: ReceivedResponse[]) =>
  responses.map((r) => ({
    typeUrl: r.typeUrl,
    version: r.version,
    resources: r.resources.map((x) => [x.name, x.version, Buffer.from(x.bytes).toString("base64")]),
    removed: r.removed,
  }));

describe("xDS proxy in front of the real control plane", () => {
  let plane: ControlPlane;
  let api: string;
  /** The agents' token: a dataplane token of productpage, the service their sidecars are. */
  let agentToken: string;
  let front: ModuleServer;
  const closing: (() => Promise<void> | void)[] = [];

  async function apply(yaml: string): Promise<number> {
    const response = await apiFetch(`${api}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: yaml,
    });
    const body = (await response.json()) as { revision: number };
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body.revision;
  }

  async function pushModule(name: string, bytes: Uint8Array<ArrayBuffer>): Promise<number> {
    const response = await apiFetch(`${api}/v1/modules/${name}`, {
      method: "POST",
      headers: { "content-type": "application/wasm" },
      body: bytes,
    });
    const body = (await response.json()) as { metadata: { resourceVersion: string } };
    expect(response.status, JSON.stringify(body)).toBeLessThan(300);
    // The store revision the write made.
    return Number(body.metadata.resourceVersion);
  }

  const local = { [NODE_METADATA.service]: "productpage", [NODE_METADATA.moduleDelivery]: "local" };

  /** A proxy of its own, with its own data directory. */
  async function agentProxy(token: Token = agentToken): Promise<{ proxy: XdsProxy; dataDir: string }> {
    const dataDir = tempDir("xds-proxy-cp");
    const proxy = await startXdsProxy({
      upstream: `127.0.0.1:${plane.xdsPort}`,
      listen: { host: "127.0.0.1", port: 0 },
      dataDir,
      api: front.url,
      token,
      moduleFetch: { attempts: 2, backoffMs: 10 },
    });
    closing.push(() => proxy.close());
    return { proxy, dataDir };
  }

  /**
   * A client speaking `protocol` to `address`; `dataDir` given, it records per ECDS response
   * whether every file it names was on disk, verified, as it arrived (before its ACK).
   */
  async function sidecar(id: string, address: string, protocol: AdsProtocol, dataDir?: string) {
    const filesAtArrival: boolean[] = [];
    const client = await connectAds({
      address,
      node: { id, cluster: "productpage", metadata: local },
      protocol,
      reject: (r) => {
        if (dataDir !== undefined && r.typeUrl === ECDS)
          filesAtArrival.push(
            r.resources.every((resource) => {
              const filename = filenameOf(resource);
              const file = join(dataDir, filename);
              return existsSync(file) && sha256(readFileSync(file)) === LOCAL_MODULE_FILE.exec(filename)?.[2];
            }),
          );
        return undefined;
      },
    });
    closing.push(() => client.close());
    return { client, filesAtArrival };
  }

  /** Subscribes as Envoy does: clusters, their endpoints, listeners, the Wasm filters. */
  async function subscribeAll(client: AdsClient): Promise<void> {
    const clusters = await client.fetch(CDS);
    await client.fetch(
      EDS,
      clusters.map((c) => c.name),
    );
    await client.fetch(LDS);
    await client.fetch(ECDS, FILTERS, 10_000);
  }

  const ecdsAt = (client: AdsClient, revision: number) =>
    client.waitFor(
      () => client.responses.some((r) => r.typeUrl === ECDS && r.version === String(revision)),
      10_000,
      `ECDS at revision ${revision}`,
    );

  beforeAll(async () => {
    plane = await startControlPlane({
      dataDir: tempDir("xds-proxy-cp"),
      httpPort: 0,
      xdsPort: 0,
      builtinModule: RELEASE_WASM,
      log: () => {},
    });
    api = apiOf(plane).api;
    ({ secret: agentToken } = await plane.tokens.issue({ role: "dataplane", service: "productpage" }));
    front = await startModuleServer({ upstream: api });
    // A module of its own (the filters' debug build) run as an outbound plugin of productpage.
    await pushModule("tagger", readFileSync(DEBUG_WASM));
    await apply(
      `${EXAMPLE}\n---\n${JSON.stringify({
        apiVersion: "wasmesh.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: { name: "tagging" },
        spec: {
          module: "tagger",
          services: ["productpage"],
          direction: "outbound",
          configuration: {
            headerRules: [{ name: "tag", requestHeaders: { set: [{ name: "x-tag", value: "1" }] } }],
          },
        },
      })}`,
    );
  });
  afterAll(async () => {
    for (const close of closing.reverse()) await close();
    await front?.close();
    await plane?.close();
  });

  it("relays Envoy's streams with the agent's token: another service's token is refused upstream, and nothing reaches Envoy", async () => {
    // Envoy's stream to the proxy carries no token (loopback, as the agent's Envoy's); the proxy
    // adds its own. A token of reviews proves nothing about a productpage node.
    const { secret: reviews } = await plane.tokens.issue({ role: "dataplane", service: "reviews" });
    const { proxy } = await agentProxy(reviews);
    const { client } = await sidecar("productpage-wrong-token", `127.0.0.1:${proxy.port}`, "sotw");
    client.subscribe(CDS);
    const status = await client.status;
    expect(status.code).toBe(7); // PERMISSION_DENIED, as the control plane said it
    expect(status.details).toMatch(/dataplane token of service 'reviews'.*claims service 'productpage'/);
    expect(client.responses).toEqual([]);
    // With the agent's own token, the same node is served through a proxy of its own.
    const { proxy: own } = await agentProxy();
    const { client: served } = await sidecar("productpage-own-token", `127.0.0.1:${own.port}`, "sotw");
    expect((await served.fetch(CDS)).length).toBeGreaterThan(0);
  });

  it("opens each control plane stream with the token as read then: after a rotation (the old token revoked) Envoy's next stream is served", async () => {
    // As the agent's --token-file, which the kubelet rewrites with a new projected token.
    const first = await plane.tokens.issue({ role: "dataplane", service: "productpage" });
    let current = first.secret;
    const { proxy } = await agentProxy(() => current);
    const { client: before } = await sidecar("productpage-rotating-1", `127.0.0.1:${proxy.port}`, "sotw");
    expect((await before.fetch(CDS)).length).toBeGreaterThan(0);
    current = (await plane.tokens.issue({ role: "dataplane", service: "productpage" })).secret;
    await plane.tokens.revoke(first.token.id);
    // Envoy's next stream (after a restart, or a stream the control plane ended) goes out anew.
    const { client: after } = await sidecar("productpage-rotating-2", `127.0.0.1:${proxy.port}`, "sotw");
    expect((await after.fetch(CDS)).length).toBeGreaterThan(0);
  });

  it.each<AdsProtocol>(["sotw", "delta"])(
    "%s: a stream through the proxy gets exactly what a direct one gets, with each module fetched once, on disk before its ECDS response",
    async (protocol) => {
      const { proxy, dataDir } = await agentProxy();
      const direct = await sidecar(`productpage-direct-${protocol}`, `127.0.0.1:${plane.xdsPort}`, protocol);
      const relayed = await sidecar(
        `productpage-relayed-${protocol}`,
        `127.0.0.1:${proxy.port}`,
        protocol,
        dataDir,
      );
      const fetchedBefore = front.fetches();
      await subscribeAll(direct.client);
      await subscribeAll(relayed.client);
      await proxy.firstAck();
      // Every type, ECDS last: its ACK is on its way, or there.
      await until("the proxy to see every ACK", () => proxy.synced());

      // Ten route changes: the routing filter's configuration changes, its module does not.
      // Weights no earlier test left in place, so each is a change.
      const splits = Array.from({ length: 10 }, (_, i) => (protocol === "sotw" ? 11 : 21) + i);
      let revision = 0;
      for (const v2 of splits) {
        revision = await apply(resplit(100 - v2, v2));
        await Promise.all([ecdsAt(direct.client, revision), ecdsAt(relayed.client, revision)]);
      }
      await plane.xds.waitForAck(String(revision), 10_000);
      expect(content(relayed.client.responses)).toEqual(content(direct.client.responses));
      expect(relayed.client.responses.filter((r) => r.typeUrl === ECDS).length).toBe(1 + splits.length);

      // Both modules were fetched once, by the proxy, and were there before any ECDS response.
      const files = relayed.client.held(ECDS).map(filenameOf).sort();
      expect(files).toHaveLength(2);
      expect(files.map((f) => f.split("/")[1])).toEqual(["mesh", "tagger"]);
      expect(front.fetches() - fetchedBefore).toBe(2);
      expect(proxy.fetches).toBe(2);
      expect(relayed.filesAtArrival).toEqual(Array(1 + splits.length).fill(true));
      // The control plane sees the relayed sidecar as a sidecar: every revision ACKed, no NACK.
      const status = (await proxyStatus(api)).find((p) => p.nodeId === `productpage-relayed-${protocol}`);
      expect(status?.syncedVersion).toBe(String(revision));
      expect(status?.nacks).toBe(0);
    },
  );

  it.each<AdsProtocol>(["sotw", "delta"])(
    "%s: a tampered module is refused: not forwarded, NACKed with its digest into the control plane's status, and a later push of good bytes gets through",
    async (protocol) => {
      const { proxy, dataDir } = await agentProxy();
      const nodeId = `productpage-tampered-${protocol}`;
      const { client } = await sidecar(nodeId, `127.0.0.1:${proxy.port}`, protocol, dataDir);
      await subscribeAll(client);
      const before = filenameOf(client.held(ECDS).find((r) => r.name === PLUGIN_FILTER) as ReceivedResource);

      // A new version of the plugin's module; its bytes come damaged.
      front.tamper.add("tagger");
      try {
        const revision = await pushModule("tagger", moduleVariant(readFileSync(RELEASE_WASM), protocol));
        const [rejected] = await waitForStatus(
          api,
          (proxies) => (proxies.find((p) => p.nodeId === nodeId)?.nacks ?? 0) >= 1,
        ).then((proxies) => proxies.filter((p) => p.nodeId === nodeId));
        expect(rejected?.lastRejection?.typeUrl).toBe(ECDS);
        expect(rejected?.lastRejection?.version).toBe(String(revision));
        expect(rejected?.lastRejection?.message).toMatch(
          /^wasmesh agent: module tagger sha256 [0-9a-f]{64}: digest mismatch: the \d+ bytes served by \S+ have sha256 [0-9a-f]{64}$/,
        );
        const digest = /sha256 ([0-9a-f]{64}): digest mismatch/.exec(
          rejected?.lastRejection?.message ?? "",
        )?.[1];
        expect(existsSync(join(dataDir, "modules", "tagger", `${digest}.wasm`))).toBe(false);
        // The client never got that revision's ECDS response, and still holds the version before.
        const end = await client.barrier(EDS, (client.held(EDS)[0] as ReceivedResource).name);
        expect(
          client.responses.slice(0, end).some((r) => r.typeUrl === ECDS && r.version === String(revision)),
        ).toBe(false);
        expect(filenameOf(client.held(ECDS).find((r) => r.name === PLUGIN_FILTER) as ReceivedResource)).toBe(
          before,
        );

        // The client changes its subscription, answering the last response it got: the control plane
        // answers (in SotW only because the proxy passes it on as answering the dropped one).
        const received = client.received(ECDS);
        client.unsubscribe(ECDS, [PLUGIN_FILTER]);
        // Delta answers no unsubscription: the client forgets the resource itself.
        if (protocol === "sotw") {
          await client.waitFor(
            () => client.received(ECDS) > received,
            5000,
            "the answer to the unsubscription",
          );
          expect(client.responses.at(-1)?.resources.map((r) => r.name)).toEqual([ROUTING_FILTER]);
        }
        // And back: the plugin's filter comes again, with the damaged module: refused again.
        client.subscribe(ECDS, FILTERS);
        await waitForStatus(api, (proxies) => (proxies.find((p) => p.nodeId === nodeId)?.nacks ?? 0) >= 2);
      } finally {
        front.tamper.delete("tagger");
      }

      // The next change (a route) brings the module again, with good bytes now (in delta, because
      // the proxy asks for what it dropped once it forwards the route change).
      const revision = await apply(protocol === "sotw" ? resplit(55, 45) : resplit(45, 55));
      await ecdsAt(client, revision);
      const plugin = () => {
        const held = client.held(ECDS).find((r) => r.name === PLUGIN_FILTER);
        return held && filenameOf(held);
      };
      await client.waitFor(() => (plugin() ?? before) !== before, 5000, "the plugin's new module");
      const after = plugin() as string;
      expect(sha256(readFileSync(join(dataDir, after)))).toBe(LOCAL_MODULE_FILE.exec(after)?.[2]);
      await waitForStatus(
        api,
        (proxies) => proxies.find((p) => p.nodeId === nodeId)?.syncedVersion === String(revision),
      );
    },
  );
});
