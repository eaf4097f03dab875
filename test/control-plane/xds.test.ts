// The xDS server over real gRPC on 127.0.0.1: ADS state of the world and delta, driven by the raw
// grpc-js client in test/support/xds-client.ts, with a small in-test ConfigProvider that returns
// real Envoy resources (encoded and verified by protobufjs) computed from data the tests change.

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProxyConfig, ProxyIdentity } from "../../control-plane/envoy/index.ts";
import { EXTENSION_TYPE, TYPE_URL } from "../../control-plane/envoy/index.ts";
import { MetricsRegistry } from "../../control-plane/metrics.ts";
import { type ConfigProvider, SnapshotCache, XdsServer } from "../../control-plane/xds/index.ts";
import { until } from "../support/wait.ts";
import {
  type AdsClient,
  type AdsClientOptions,
  connectAds,
  type ReceivedResponse,
} from "../support/xds-client.ts";

const { listener: LDS, route: RDS, cluster: CDS, endpoint: EDS, extensionConfig: ECDS } = TYPE_URL;
// Enums as numbers: encodeMessage verify()s before fromObject, and verify() wants enum values.
const V3 = 2; // envoy.config.core.v3.ApiVersion.V3
const EDS_DISCOVERY = 3; // envoy.config.cluster.v3.Cluster.DiscoveryType.EDS
const ADS_SOURCE = { ads: {}, resource_api_version: V3 };

// ---------------------------------------------------------------------------------------------
// A tiny mesh: each service calls some others; its sidecar gets an outbound listener, a route per
// called service, a cluster and endpoints per called service, and its own filter config (ECDS).

interface ServiceData {
  calls: string[];
  endpoints: { address: string; port: number }[];
  filter: string;
  /** The connect timeout of the service's cluster: changes the cluster, not its endpoints. */
  connectTimeoutS?: number;
}
let mesh: Record<string, ServiceData>;

function initialMesh(): Record<string, ServiceData> {
  return {
    productpage: {
      calls: ["reviews", "details"],
      endpoints: [{ address: "10.0.0.1", port: 9080 }],
      filter: "pp-1",
    },
    reviews: { calls: ["ratings"], endpoints: [{ address: "10.0.0.2", port: 9080 }], filter: "rv-1" },
    details: { calls: [], endpoints: [{ address: "10.0.0.3", port: 9080 }], filter: "dt-1" },
    ratings: { calls: [], endpoints: [{ address: "10.0.0.4", port: 9080 }], filter: "rt-1" },
  };
}

const routeName = (service: string) => `${service}-outbound`;
const filterName = (service: string) => `wasmesh.${service}`;

/** The config of a service's sidecar in `of` (the tests' mesh unless told). */
function configFor(service: string, of = mesh): ProxyConfig {
  const self = of[service];
  if (!self) throw new Error(`unknown service ${service}`);
  const calls = self.calls.filter((c) => of[c]);
  return {
    [LDS]: [
      {
        name: `${service}-outbound`,
        resource: {
          name: `${service}-outbound`,
          address: { socket_address: { address: "127.0.0.1", port_value: 15001 } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type": EXTENSION_TYPE.httpConnectionManager,
                    stat_prefix: "outbound",
                    rds: { route_config_name: routeName(service), config_source: ADS_SOURCE },
                    http_filters: [
                      {
                        name: filterName(service),
                        config_discovery: {
                          config_source: ADS_SOURCE,
                          type_urls: [EXTENSION_TYPE.stringValue],
                        },
                      },
                      { name: "envoy.filters.http.router", typed_config: { "@type": EXTENSION_TYPE.router } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      },
    ],
    [RDS]: [
      {
        name: routeName(service),
        resource: {
          name: routeName(service),
          virtual_hosts: calls.map((c) => ({
            name: c,
            domains: [c],
            routes: [{ match: { prefix: "/" }, route: { cluster: c } }],
          })),
        },
      },
    ],
    [CDS]: calls.map((c) => ({
      name: c,
      resource: {
        name: c,
        type: EDS_DISCOVERY,
        eds_cluster_config: { eds_config: ADS_SOURCE },
        connect_timeout: { seconds: of[c]?.connectTimeoutS ?? 1, nanos: 0 },
      },
    })),
    [EDS]: calls.map((c) => ({
      name: c,
      resource: {
        cluster_name: c,
        endpoints: [
          {
            lb_endpoints: (of[c]?.endpoints ?? []).map((e) => ({
              endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } },
            })),
          },
        ],
      },
    })),
    [ECDS]: [
      {
        name: filterName(service),
        resource: {
          name: filterName(service),
          typed_config: { "@type": EXTENSION_TYPE.stringValue, value: self.filter },
        },
      },
    ],
  };
}

let configCalls: string[];
const provider: ConfigProvider = {
  keyFor: (proxy) => proxy.service,
  configFor: (proxy) => {
    configCalls.push(proxy.service);
    return configFor(proxy.service);
  },
};

/** What the translation module does, reduced: the service from metadata, else node.cluster. */
function parseNode(node: { id?: string; cluster?: string; metadata?: Record<string, unknown> }) {
  const service = node.metadata?.["wasmesh.service"] ?? node.cluster;
  if (!node.id) return { ok: false as const, error: "node.id is empty" };
  if (typeof service !== "string" || !service)
    return { ok: false as const, error: "node has no wasmesh.service" };
  if (!mesh[service]) return { ok: false as const, error: `unknown service '${service}'` };
  const labels = (node.metadata?.["wasmesh.labels"] ?? {}) as Record<string, string>;
  const proxy: ProxyIdentity = {
    nodeId: node.id,
    service,
    labels,
    outboundPort: 15001,
    inboundPort: 15006,
    outboundAddress: "127.0.0.1",
    inboundAddress: "0.0.0.0",
    appAddress: "127.0.0.1",
    moduleDelivery: "inline",
  };
  return { ok: true as const, proxy };
}

// ---------------------------------------------------------------------------------------------

let server: XdsServer;
let metrics: MetricsRegistry;
let address: string;
let clients: AdsClient[];
let logs: { level: string; message: string; fields?: Record<string, unknown> }[];

beforeEach(async () => {
  mesh = initialMesh();
  configCalls = [];
  clients = [];
  logs = [];
  metrics = new MetricsRegistry();
  server = new XdsServer({
    cache: new SnapshotCache(provider),
    parseNode,
    metrics,
    log: (level, message, fields) => logs.push({ level, message, fields }),
  });
  const port = await server.listen(0, "127.0.0.1");
  address = `127.0.0.1:${port}`;
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server.close();
});

async function proxy(
  service: string,
  options: Partial<AdsClientOptions> & { id?: string } = {},
): Promise<AdsClient> {
  const client = await connectAds({
    address,
    node: {
      id: options.id ?? `${service}-1`,
      cluster: service,
      metadata: { "wasmesh.service": service, "wasmesh.labels": { version: "v1" } },
    },
    ...options,
  });
  clients.push(client);
  return client;
}

/** Subscribes to all five types in Envoy's order, names taken from what arrived. */
async function subscribeAll(client: AdsClient, service: string): Promise<void> {
  const clusters = await client.fetch(CDS);
  await client.fetch(
    EDS,
    clusters.map((c) => c.name),
  );
  await client.fetch(LDS);
  await client.fetch(RDS, [routeName(service)]);
  await client.fetch(ECDS, [filterName(service)]);
}

const names = (resources: { name: string }[]) => resources.map((r) => r.name).sort();
// A full garbage collection on demand, to see what a closed server leaves in memory.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const types = (responses: ReceivedResponse[]) => responses.map((r) => r.typeUrl);

/**
 * The responses `client` received from index `from` on, up to a barrier on a type and resource the
 * test does not count there: all that the server sent before the barrier was asked for.
 */
async function sentUntilBarrier(
  client: AdsClient,
  from: number,
  barrierType: string,
  barrierName: string,
): Promise<ReceivedResponse[]> {
  return client.responses.slice(from, await client.barrier(barrierType, barrierName));
}
const statusOf = (nodeId: string) => server.status().find((s) => s.nodeId === nodeId);

describe("state of the world", () => {
  it("serves the initial fetch of all five types, and records the ACKs", async () => {
    const pp = await proxy("productpage");
    await subscribeAll(pp, "productpage");

    expect(names(pp.held(CDS))).toEqual(["details", "reviews"]);
    expect(names(pp.held(EDS))).toEqual(["details", "reviews"]);
    expect(names(pp.held(LDS))).toEqual(["productpage-outbound"]);
    expect(names(pp.held(RDS))).toEqual(["productpage-outbound"]);
    expect(names(pp.held(ECDS))).toEqual(["wasmesh.productpage"]);
    // Decoded with the same protos: real Envoy resources.
    const cla = pp.held(EDS).find((r) => r.name === "reviews")?.resource as {
      endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string } } } }[] }[];
    };
    expect(cla.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address.address).toBe("10.0.0.2");
    expect(pp.held(CDS)[0]?.resource.type).toBe("EDS");
    for (const r of pp.responses) {
      expect(r.version).toBe("0");
      expect(r.nonce).not.toBe("");
    }
    expect(new Set(pp.responses.map((r) => r.nonce)).size).toBe(pp.responses.length);

    await server.waitForAck("0", 2000);
    const status = statusOf("productpage-1");
    expect(status).toMatchObject({
      nodeId: "productpage-1",
      service: "productpage",
      labels: { version: "v1" },
      protocol: "sotw",
      nacks: 0,
      syncedVersion: "0",
    });
    expect(status?.peer).toMatch(/127\.0\.0\.1/);
    for (const t of [LDS, RDS, CDS, EDS, ECDS]) {
      expect(status?.sent[t]).toBe("0");
      expect(status?.acked[t]).toBe("0");
    }
    // One class, one computation, however many requests.
    expect(configCalls).toEqual(["productpage"]);
  });

  it("pushes only the changed types, only to the proxies they affect, and memoizes per class", async () => {
    const pp = await proxy("productpage");
    const pp2 = await proxy("productpage", { id: "productpage-2" });
    const rv = await proxy("reviews");
    await subscribeAll(pp, "productpage");
    await subscribeAll(pp2, "productpage");
    await subscribeAll(rv, "reviews");
    await server.waitForAck("0");
    const before = { pp: pp.responses.length, pp2: pp2.responses.length, rv: rv.responses.length };
    configCalls = [];

    // details' endpoints are used by productpage only.
    mesh.details = { ...(mesh.details as ServiceData), endpoints: [{ address: "10.0.0.33", port: 9080 }] };
    await server.update("1");
    await server.waitForAck("1", 2000);

    expect(configCalls.sort()).toEqual(["productpage", "reviews"]);
    // The unaffected proxy is still confirmed at the new version without being sent anything.
    expect(statusOf("reviews-1")).toMatchObject({ syncedVersion: "1", acked: { [EDS]: "0" } });
    expect(statusOf("productpage-1")).toMatchObject({
      syncedVersion: "1",
      acked: { [EDS]: "1", [CDS]: "0" },
    });
    const ppNew = await sentUntilBarrier(pp, before.pp, ECDS, filterName("productpage"));
    expect(ppNew.map((r) => r.typeUrl)).toEqual([EDS]);
    expect(ppNew[0]?.version).toBe("1");
    // SotW: the full set of subscribed resources of the type.
    expect(names(ppNew[0]?.resources ?? [])).toEqual(["details", "reviews"]);
    expect(types(await sentUntilBarrier(pp2, before.pp2, ECDS, filterName("productpage")))).toEqual([EDS]);
    expect(types(await sentUntilBarrier(rv, before.rv, ECDS, filterName("reviews")))).toEqual([]);

    // A change to one proxy class's filter config: ECDS only.
    const second = { pp: pp.responses.length, rv: rv.responses.length };
    mesh.reviews = { ...(mesh.reviews as ServiceData), filter: "rv-2" };
    await server.update("2");
    await server.waitForAck("2", 2000);
    expect(types(await sentUntilBarrier(rv, second.rv, RDS, routeName("reviews")))).toEqual([ECDS]);
    expect(types(await sentUntilBarrier(pp, second.pp, ECDS, filterName("productpage")))).toEqual([]);

    // An update that changes nothing sends nothing.
    const third = { pp: pp.responses.length, rv: rv.responses.length };
    await server.update("3");
    await server.waitForAck("3", 2000);
    expect(types(await sentUntilBarrier(pp, third.pp, ECDS, filterName("productpage")))).toEqual([]);
    expect(types(await sentUntilBarrier(rv, third.rv, ECDS, filterName("reviews")))).toEqual([]);
  });

  it("pushes clusters and endpoints before listeners and routes, and drops removed clusters last", async () => {
    const pp = await proxy("productpage");
    await subscribeAll(pp, "productpage");
    await server.waitForAck("0");

    // productpage now calls ratings too: new cluster, endpoints, route.
    (mesh.productpage as ServiceData).calls = ["reviews", "details", "ratings"];
    const start = pp.responses.length;
    await server.update("1");
    await pp.waitFor(() => pp.responses.length >= start + 2);
    // Envoy then subscribes the new cluster's endpoints.
    await pp.fetch(EDS, ["details", "ratings", "reviews"]);
    await server.waitForAck("1", 2000);
    expect(pp.responses.slice(start).map((r) => r.typeUrl)).toEqual([CDS, RDS, EDS]);
    expect(names(pp.held(EDS))).toEqual(["details", "ratings", "reviews"]);

    // productpage stops calling details, and its filter changes in the same revision: the
    // interim CDS response still has details, the last one drops it. (SotW EDS leaves out the
    // CLA; Envoy does not treat absence as removal for EDS.)
    (mesh.productpage as ServiceData).calls = ["reviews", "ratings"];
    (mesh.productpage as ServiceData).filter = "pp-2";
    const mid = pp.responses.length;
    await server.update("2");
    await server.waitForAck("2", 2000);
    const pushed = pp.responses.slice(mid);
    expect(pushed.map((r) => r.typeUrl)).toEqual([CDS, EDS, RDS, ECDS, CDS]);
    expect(names(pushed[0]?.resources ?? [])).toEqual(["details", "ratings", "reviews"]);
    expect(names(pushed[1]?.resources ?? [])).toEqual(["ratings", "reviews"]);
    expect(names(pushed[4]?.resources ?? [])).toEqual(["ratings", "reviews"]);
    expect(names(pp.held(CDS))).toEqual(["ratings", "reviews"]);
  });

  it("records a NACK with Envoy's message, does not resend in a loop, and ACKs a later good update", async () => {
    const pp = await proxy("productpage", {
      // The filter config is a StringValue inside an Any: look at the bytes.
      reject: (r) =>
        r.resources.some((x) => Buffer.from(x.bytes).toString("latin1").includes("bad"))
          ? "Proto constraint validation failed: bad filter config"
          : undefined,
    });
    await subscribeAll(pp, "productpage");
    await server.waitForAck("0");

    (mesh.productpage as ServiceData).filter = "bad";
    const start = pp.received(ECDS);
    await server.update("1");
    await expect(server.waitForAck("1", 2000)).rejects.toThrow(
      /productpage-1 rejected ecds version 1: .*bad filter/,
    );
    // A resend, in answer to the NACK or later in the push, arrives before the barrier's answers
    // (and is NACKed again before the barrier is read: nacks would say 2).
    await pp.barrier(EDS, "reviews");
    expect(pp.received(ECDS)).toBe(start + 1);
    const status = statusOf("productpage-1");
    expect(status?.nacks).toBe(1);
    expect(status?.lastRejection).toMatchObject({
      typeUrl: ECDS,
      version: "1",
      message: "Proto constraint validation failed: bad filter config",
    });
    expect(Date.parse(status?.lastRejection?.at ?? "")).toBeGreaterThan(Date.now() - 10_000);
    expect(status?.acked[ECDS]).toBe("0");
    expect(status?.sent[ECDS]).toBe("1");
    expect(status?.syncedVersion).toBe("0");
    // The proxy kept its last good config.
    expect(Buffer.from(pp.held(ECDS)[0]?.bytes ?? []).toString("latin1")).toContain("pp-1");

    // An update elsewhere in the mesh does not resend the rejected config.
    (mesh.details as ServiceData).endpoints = [{ address: "10.9.9.9", port: 1 }];
    const endpoints = pp.received(EDS);
    await server.update("2");
    await pp.waitFor(() => pp.received(EDS) > endpoints);
    await pp.barrier(RDS, routeName("productpage"));
    expect(pp.received(ECDS)).toBe(start + 1);
    expect(statusOf("productpage-1")?.acked[EDS]).toBe("2");
    expect(logs.some((l) => l.level === "warn" && l.message.includes("rejected"))).toBe(true);

    // A fix is sent and ACKed; the rejection stays visible.
    (mesh.productpage as ServiceData).filter = "pp-good";
    await server.update("3");
    await server.waitForAck("3", 2000);
    expect(pp.received(ECDS)).toBe(start + 2);
    const after = statusOf("productpage-1");
    expect(after).toMatchObject({ nacks: 1, syncedVersion: "3", acked: { [ECDS]: "3" } });
    expect(after?.lastRejection?.version).toBe("1");
    expect(metrics.render()).toMatch(/wasmesh_xds_nacks_total\{type="ecds"\} 1/);
  });

  it("sends the proxies of a class one shared response, and tracks each one's ACK or NACK on its own", async () => {
    const rejecting = await proxy("productpage", {
      reject: (r) =>
        r.typeUrl === ECDS &&
        r.resources.some((x) => Buffer.from(x.bytes).toString("latin1").includes("pp-2"))
          ? "rejected by this proxy only"
          : undefined,
    });
    const accepting = await proxy("productpage", { id: "productpage-2" });
    await subscribeAll(rejecting, "productpage");
    await subscribeAll(accepting, "productpage");
    await server.waitForAck("0");
    const start = { rejecting: rejecting.responses.length, accepting: accepting.responses.length };

    (mesh.productpage as ServiceData).filter = "pp-2";
    await server.update("1");
    // Waits for both: productpage-2's ACK, productpage-1's NACK.
    await expect(server.waitForAck("1", 2000)).rejects.toThrow(
      /productpage-1 rejected ecds version 1: rejected by this proxy only/,
    );
    const [toRejecting] = rejecting.responses.slice(start.rejecting);
    const [toAccepting] = accepting.responses.slice(start.accepting);
    // One encoding for the class: the same nonce, version and bytes.
    expect(toAccepting?.nonce).toBe(toRejecting?.nonce);
    expect(toAccepting?.version).toBe("1");
    expect(Buffer.from(toAccepting?.resources[0]?.bytes ?? []).toString("latin1")).toContain("pp-2");
    expect(statusOf("productpage-2")).toMatchObject({ nacks: 0, syncedVersion: "1", acked: { [ECDS]: "1" } });
    expect(statusOf("productpage-1")).toMatchObject({
      nacks: 1,
      syncedVersion: "0",
      acked: { [ECDS]: "0" },
      lastRejection: { typeUrl: ECDS, version: "1", message: "rejected by this proxy only" },
    });
    expect(Buffer.from(rejecting.held(ECDS)[0]?.bytes ?? []).toString("latin1")).toContain("pp-1");

    // The next push gets a new nonce, and an ACK of it clears the way for both.
    (mesh.productpage as ServiceData).filter = "pp-3";
    await server.update("2");
    await server.waitForAck("2", 2000);
    const nonces = [rejecting, accepting].map((c) => c.responses.at(-1)?.nonce);
    expect(nonces[0]).toBe(nonces[1]);
    expect(nonces[0]).not.toBe(toRejecting?.nonce);
  });

  it("answers the endpoints again when Envoy re-requests them after a cluster changed (warming), once", async () => {
    // Envoy's side, by hand: a changed cluster warms, Envoy asks for the endpoints with the names
    // and nonce it sent before, and ACKs the clusters only once the endpoints have arrived.
    const pp = await proxy("productpage", { autoAck: false });
    pp.subscribe(CDS);
    await pp.next(CDS);
    pp.ack(CDS);
    pp.subscribe(EDS, ["details", "reviews"]);
    await pp.next(EDS);
    pp.ack(EDS);
    await server.waitForAck("0", 2000);

    (mesh.reviews as ServiceData).connectTimeoutS = 2;
    await server.update("1");
    const clusters = await pp.next(CDS);
    expect(clusters.version).toBe("1");
    const acked = server.waitForAck("1", 2000);
    pp.subscribe(EDS, ["details", "reviews"]);
    const endpoints = await pp.next(EDS);
    expect(endpoints.version).toBe("1");
    expect(names(endpoints.resources)).toEqual(["details", "reviews"]);
    expect(statusOf("productpage-1")?.sent[EDS]).toBe("1");
    pp.ack(EDS);
    pp.ack(CDS);
    await acked;
    expect(statusOf("productpage-1")).toMatchObject({
      syncedVersion: "1",
      acked: { [CDS]: "1", [EDS]: "1" },
    });

    // Envoy asks once more when the old cluster is gone: nothing is warming, so no answer. The
    // answer to the next change of names, in order on the stream, shows the request was read.
    const count = pp.received(EDS);
    pp.subscribe(EDS, ["details", "reviews"]);
    pp.subscribe(EDS, ["reviews"]);
    const renamed = await pp.next(EDS);
    expect(names(renamed.resources)).toEqual(["reviews"]);
    expect(pp.received(EDS)).toBe(count + 1);
  });

  it("ignores requests with a stale nonce", async () => {
    const pp = await proxy("productpage", { autoAck: false });
    pp.subscribe(CDS);
    const first = await pp.next(CDS);
    (mesh.productpage as ServiceData).calls = ["reviews"];
    await server.update("1");
    const second = await pp.next(CDS);
    expect(second.nonce).not.toBe(first.nonce);

    // An ACK of the first response, now stale: ignored.
    pp.send({ versionInfo: "0", resourceNames: [], typeUrl: CDS, responseNonce: first.nonce });
    // A NACK with the stale nonce: ignored too, and so is a stale subscription change.
    pp.send({
      versionInfo: "0",
      resourceNames: ["reviews"],
      typeUrl: CDS,
      responseNonce: first.nonce,
      errorDetail: { code: 3, message: "stale" },
    });
    // A barrier (manual mode, so by hand): the answer to a first request for another type, in
    // order on the stream, comes after anything the server did on reading those two.
    pp.subscribe(EDS, ["reviews"]);
    await pp.next(EDS);
    expect(statusOf("productpage-1")).toMatchObject({ nacks: 0, acked: {} });
    expect(pp.received(CDS)).toBe(2);

    pp.ack(EDS);
    pp.ack(CDS);
    await server.waitForAck("1", 2000);
    expect(statusOf("productpage-1")?.acked[CDS]).toBe("1");
  });

  it("answers a change of subscribed names with the current set for those names", async () => {
    const pp = await proxy("productpage");
    await pp.fetch(CDS);
    expect(names(await pp.fetch(EDS, ["reviews"]))).toEqual(["reviews"]);
    expect(names(await pp.fetch(EDS, ["reviews", "details", "nonexistent"]))).toEqual(["details", "reviews"]);
    expect(names(await pp.fetch(EDS, []))).toEqual([]);
    // A wildcard type may be asked for by name; "*" is all of them.
    expect(names(await pp.fetch(CDS, ["reviews"]))).toEqual(["reviews"]);
    expect(names(await pp.fetch(CDS, ["*"]))).toEqual(["details", "reviews"]);
  });
});

describe("delta", () => {
  it("serves the initial subscription, then only what changed, and removals", async () => {
    const pp = await proxy("productpage", { protocol: "delta" });
    const clusters = await pp.fetch(CDS);
    expect(names(clusters)).toEqual(["details", "reviews"]);
    expect(clusters[0]?.version).toMatch(/^[0-9a-f]{16}$/);
    await pp.fetch(EDS, ["reviews", "details"]);
    await pp.fetch(LDS);
    await pp.fetch(RDS, [routeName("productpage")]);
    await pp.fetch(ECDS, [filterName("productpage")]);
    await server.waitForAck("0");
    expect(statusOf("productpage-1")).toMatchObject({ protocol: "delta", syncedVersion: "0" });
    const versionsBefore = new Map(pp.held(EDS).map((r) => [r.name, r.version]));

    // One CLA changes: only it is sent.
    const start = pp.responses.length;
    (mesh.reviews as ServiceData).endpoints = [{ address: "10.0.0.22", port: 9080 }];
    await server.update("1");
    await server.waitForAck("1", 2000);
    const changed = pp.responses.slice(start);
    expect(changed.map((r) => r.typeUrl)).toEqual([EDS]);
    expect(changed[0]?.version).toBe("1");
    expect(names(changed[0]?.resources ?? [])).toEqual(["reviews"]);
    expect(changed[0]?.resources[0]?.version).not.toBe(versionsBefore.get("reviews"));
    expect(pp.held(EDS).find((r) => r.name === "details")?.version).toBe(versionsBefore.get("details"));

    // details is no longer called: route changes, then the cluster and its endpoints are removed.
    (mesh.productpage as ServiceData).calls = ["reviews"];
    const mid = pp.responses.length;
    await server.update("2");
    await server.waitForAck("2", 2000);
    const removal = pp.responses.slice(mid);
    expect(removal.map((r) => [r.typeUrl, names(r.resources), r.removed])).toEqual([
      [RDS, ["productpage-outbound"], []],
      [CDS, [], ["details"]],
      [EDS, [], ["details"]],
    ]);
    expect(names(pp.held(CDS))).toEqual(["reviews"]);
  });

  it("sends the endpoints of a changed cluster again right after it (warming), though they did not change", async () => {
    const pp = await proxy("productpage", { protocol: "delta" });
    await pp.fetch(CDS);
    await pp.fetch(EDS, ["reviews", "details"]);
    await server.waitForAck("0");
    const held = new Map(pp.held(EDS).map((r) => [r.name, r.version]));

    (mesh.reviews as ServiceData).connectTimeoutS = 2;
    const start = pp.responses.length;
    await server.update("1");
    await server.waitForAck("1", 2000);
    const pushed = pp.responses.slice(start);
    expect(pushed.map((r) => [r.typeUrl, names(r.resources)])).toEqual([
      [CDS, ["reviews"]],
      [EDS, ["reviews"]],
    ]);
    expect(pushed[1]?.resources[0]?.version).toBe(held.get("reviews"));
    expect(statusOf("productpage-1")).toMatchObject({
      syncedVersion: "1",
      acked: { [CDS]: "1", [EDS]: "1" },
    });

    // Sent once: a later change of other endpoints sends only those.
    (mesh.details as ServiceData).endpoints = [{ address: "10.0.0.33", port: 9080 }];
    const mid = pp.responses.length;
    await server.update("2");
    await server.waitForAck("2", 2000);
    expect(pp.responses.slice(mid).map((r) => [r.typeUrl, names(r.resources)])).toEqual([[EDS, ["details"]]]);

    // A cluster and its endpoints changed together: the new endpoints, once.
    (mesh.reviews as ServiceData).connectTimeoutS = 3;
    (mesh.reviews as ServiceData).endpoints = [{ address: "10.0.0.22", port: 9080 }];
    const last = pp.responses.length;
    await server.update("3");
    await server.waitForAck("3", 2000);
    expect(pp.responses.slice(last).map((r) => [r.typeUrl, names(r.resources)])).toEqual([
      [CDS, ["reviews"]],
      [EDS, ["reviews"]],
    ]);
  });

  it("follows clusters sent in answer to a request with their endpoints (a reconnect)", async () => {
    const first = await proxy("productpage", { protocol: "delta" });
    const clusters = await first.fetch(CDS);
    const endpoints = await first.fetch(EDS, ["reviews", "details"]);
    first.close();
    (mesh.reviews as ServiceData).connectTimeoutS = 2;
    await server.update("1");

    // Envoy reconnects holding what it had: its endpoints are current, its reviews cluster is not.
    const again = await proxy("productpage", { protocol: "delta", id: "productpage-1" });
    const versions = (list: { name: string; version: string }[]) =>
      Object.fromEntries(list.map((r) => [r.name, r.version]));
    again.subscribeWith(EDS, ["reviews", "details"], versions(endpoints));
    expect((await again.next(EDS)).resources).toEqual([]);
    again.subscribeWith(CDS, [], versions(clusters));
    expect(names((await again.next(CDS)).resources)).toEqual(["reviews"]);
    const warmed = await again.next(EDS);
    expect(warmed.resources.map((r) => [r.name, r.version])).toEqual([
      ["reviews", versions(endpoints).reviews],
    ]);
    await server.waitForAck("1", 2000);
  });

  it("honours unsubscribe", async () => {
    const pp = await proxy("productpage", { protocol: "delta" });
    await pp.fetch(CDS);
    await pp.fetch(EDS, ["reviews", "details"]);
    await server.waitForAck("0");
    pp.unsubscribe(EDS, ["details"]);
    await pp.barrier(RDS, routeName("productpage"));
    const count = pp.received(EDS);
    expect(count).toBe(1); // unsubscribing is not answered

    (mesh.details as ServiceData).endpoints = [{ address: "10.0.0.99", port: 1 }];
    await server.update("1");
    await server.waitForAck("1", 2000);
    await pp.barrier(RDS, routeName("productpage"));
    expect(pp.received(EDS)).toBe(count);

    // Subscribing again sends the current version.
    const again = await pp.fetch(EDS, ["details"]);
    expect(again.find((r) => r.name === "details")?.resource).toMatchObject({ cluster_name: "details" });
    expect(pp.responses.at(-1)?.resources.map((r) => r.name)).toEqual(["details"]);
  });

  it("does not resend what initial_resource_versions says the proxy holds", async () => {
    const first = await proxy("productpage", { protocol: "delta" });
    const clusters = await first.fetch(CDS);
    const held = Object.fromEntries(clusters.map((c) => [c.name, c.version]));
    first.close();

    // A reconnect that holds the current clusters, plus one that no longer exists.
    const again = await proxy("productpage", { protocol: "delta", id: "productpage-1" });
    again.subscribeWith(CDS, [], { ...held, gone: "0123456789abcdef" });
    const response = await again.next(CDS);
    expect(response.resources).toEqual([]);
    expect(response.removed).toEqual(["gone"]);

    // One stale version: only that cluster is sent.
    const third = await proxy("productpage", { protocol: "delta", id: "productpage-3" });
    third.subscribeWith(CDS, [], { ...held, reviews: "0000000000000000" });
    const partial = await third.next(CDS);
    expect(names(partial.resources)).toEqual(["reviews"]);
    expect(partial.removed).toEqual([]);

    // Named types: only what is both subscribed and out of date.
    third.subscribeWith(EDS, ["reviews", "details"], { reviews: "stale" });
    const eds = await third.next(EDS);
    expect(names(eds.resources)).toEqual(["details", "reviews"]);
  });

  it("records a delta NACK and does not resend the rejected resource", async () => {
    const pp = await proxy("productpage", {
      protocol: "delta",
      reject: (r) =>
        r.resources.some((x) => JSON.stringify(x.resource).includes("10.6.6.6")) ? "bad endpoint" : undefined,
    });
    await pp.fetch(CDS);
    await pp.fetch(EDS, ["reviews", "details"]);
    await server.waitForAck("0");
    (mesh.reviews as ServiceData).endpoints = [{ address: "10.6.6.6", port: 1 }];
    await server.update("1");
    await expect(server.waitForAck("1", 2000)).rejects.toThrow(/bad endpoint/);
    (mesh.productpage as ServiceData).filter = "unrelated";
    await server.update("2");
    await pp.barrier(RDS, routeName("productpage"));
    expect(pp.received(EDS)).toBe(2);
    expect(statusOf("productpage-1")).toMatchObject({
      nacks: 1,
      lastRejection: { typeUrl: EDS, version: "1", message: "bad endpoint" },
      acked: { [EDS]: "0" },
    });
  });
});

/** Subscribes to EDS with 5,000 names of 500 characters, then disconnects (its client is dropped). */
async function subscribeAndLeave(client: AdsClient, i: number): Promise<void> {
  await client.fetch(
    EDS,
    Array.from({ length: 5000 }, (_, n) => `${String(i)}-${String(n)}-`.padEnd(500, "x")),
  );
  client.close();
  await client.status;
}

describe("server", () => {
  it("ends a stream whose node cannot be parsed with INVALID_ARGUMENT and the parse error", async () => {
    const bad = await connectAds({ address, node: { id: "x-1", cluster: "nosuch" } });
    clients.push(bad);
    bad.subscribe(CDS);
    const status = await bad.status;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toBe("unknown service 'nosuch'");

    const delta = await connectAds({ address, node: { id: "", cluster: "reviews" }, protocol: "delta" });
    clients.push(delta);
    delta.subscribe(CDS);
    expect(await delta.status).toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: "node.id is empty",
    });
    expect(server.status()).toEqual([]);
  });

  it("waitForAck waits for every connected proxy, and times out naming the laggards", async () => {
    const fast = await proxy("reviews");
    const slow = await proxy("productpage", { autoAck: false });
    await fast.fetch(CDS);
    slow.subscribe(CDS);
    await slow.next(CDS);
    await expect(server.waitForAck("0", 200)).rejects.toThrow(/1 proxy to ACK version 0: productpage-1/);

    // Waiting for a version before it is pushed.
    const waiting = server.waitForAck("1", 2000);
    (mesh.ratings as ServiceData).endpoints = [];
    await server.update("1");
    slow.ack(CDS);
    await waiting;
    await expect(server.waitForAck("9", 50)).rejects.toThrow(/version 9 was never pushed/);
  });

  it("exports connection, push, NACK and latency metrics", async () => {
    const pp = await proxy("productpage");
    const rv = await proxy("reviews", { protocol: "delta" });
    await subscribeAll(pp, "productpage");
    await rv.fetch(CDS);
    (mesh.reviews as ServiceData).endpoints = [{ address: "10.0.0.5", port: 1 }];
    await server.update("1");
    await server.waitForAck("1");
    const text = metrics.render();
    expect(text).toContain('wasmesh_xds_connected_proxies{protocol="sotw"} 1');
    expect(text).toContain('wasmesh_xds_connected_proxies{protocol="delta"} 1');
    expect(text).toContain('wasmesh_xds_pushes_total{type="cds"} 2');
    expect(text).toContain('wasmesh_xds_pushes_total{type="eds"} 2');
    expect(text).toContain('wasmesh_xds_pushes_total{type="lds"} 1');
    expect(text).toContain("# TYPE wasmesh_xds_nacks_total counter");
    expect(text).toContain("wasmesh_xds_push_latency_seconds_count 1");

    pp.close();
    await until("the closed stream to leave the gauge", () =>
      metrics.render().includes('wasmesh_xds_connected_proxies{protocol="sotw"} 0'),
    );
  });

  it("shares nothing with another server in the process, and keeps nothing of its proxies once closed", async () => {
    // A second server on a mesh of its own: the same services, classes and resource names, with
    // other endpoints, so that anything cached by class, name or subscription would leak across.
    const otherMesh = initialMesh();
    for (const data of Object.values(otherMesh)) data.endpoints = [{ address: "10.9.0.1", port: 1 }];
    const other = new XdsServer({
      cache: new SnapshotCache({
        keyFor: (p) => p.service,
        configFor: (p) => configFor(p.service, otherMesh),
      }),
      parseNode,
    });
    const otherAddress = `127.0.0.1:${await other.listen(0, "127.0.0.1")}`;
    const otherProxy = (id: string, protocol: "sotw" | "delta") =>
      connectAds({
        address: otherAddress,
        node: { id, cluster: "productpage", metadata: { "wasmesh.service": "productpage" } },
        protocol,
      });
    let theirs: AdsClient[] = [];
    try {
      const endpointOf = (client: AdsClient, name: string) =>
        JSON.stringify(client.held(EDS).find((r) => r.name === name)?.resource).match(
          /10\.\d+\.\d+\.\d+/,
        )?.[0];

      const mine = [
        await proxy("productpage"),
        await proxy("productpage", { id: "pp-delta", protocol: "delta" }),
      ];
      theirs = [await otherProxy("productpage-1", "sotw"), await otherProxy("pp-delta", "delta")];
      for (const client of [...mine, ...theirs]) await subscribeAll(client, "productpage");
      await server.waitForAck("0");
      await other.waitForAck("0");
      for (const client of mine) expect(endpointOf(client, "reviews")).toBe("10.0.0.2");
      for (const client of theirs) expect(endpointOf(client, "reviews")).toBe("10.9.0.1");
      // The same change in both meshes, and a change in one only: each proxy gets its own server's.
      (mesh.reviews as ServiceData).endpoints = [{ address: "10.0.0.7", port: 9080 }];
      (otherMesh.reviews as ServiceData).endpoints = [{ address: "10.9.0.7", port: 1 }];
      (mesh.details as ServiceData).connectTimeoutS = 4;
      await Promise.all([server.update("1"), other.update("1")]);
      await Promise.all([server.waitForAck("1", 2000), other.waitForAck("1", 2000)]);
      for (const client of mine) expect(endpointOf(client, "reviews")).toBe("10.0.0.7");
      for (const client of theirs) expect(endpointOf(client, "reviews")).toBe("10.9.0.7");
      const timeout = (client: AdsClient) =>
        JSON.stringify(client.held(CDS).find((r) => r.name === "details")?.resource).match(
          /"connect_timeout":\{"seconds":(\d+)/,
        )?.[1];
      for (const client of mine) expect(timeout(client)).toBe("4");
      for (const client of theirs) expect(timeout(client)).toBe("1");

      // Memory: proxies subscribe to large sets of names, which a server keeps to share between its
      // streams, also after they are gone. Each server keeps its own: closing the other frees all of
      // its proxies' and none of this one's.
      for (const client of theirs) client.close();
      theirs = [];
      const heap = () => {
        gc();
        gc();
        return process.memoryUsage().heapUsed;
      };
      // A subscription of 5,000 names of 500 characters takes two copies of them (the names and
      // their key) and more; what is freed leaves only the process's own noise (about 1-2 MB).
      const payload = 5000 * 500;
      const start = heap();
      await subscribeAndLeave(await connectAds({ address, node: { id: "big", cluster: "productpage" } }), 9);
      expect(heap() - start).toBeGreaterThan(payload);
      const before = heap();
      for (let i = 0; i < 4; i++) await subscribeAndLeave(await otherProxy(`big-${i}`, "sotw"), i);
      expect(heap() - before).toBeGreaterThan(4 * payload);
      await other.close();
      expect(heap() - before).toBeLessThan(2 * payload);
      expect(heap() - start).toBeGreaterThan(payload);

      // This server was not touched: it keeps serving its proxies.
      (mesh.reviews as ServiceData).endpoints = [{ address: "10.0.0.8", port: 9080 }];
      await server.update("2");
      await server.waitForAck("2", 2000);
      for (const client of mine) expect(endpointOf(client, "reviews")).toBe("10.0.0.8");
    } finally {
      for (const client of theirs) client.close();
      await other.close();
    }
  });

  it("close() ends the streams and shuts down promptly", async () => {
    const pp = await proxy("productpage");
    const rv = await proxy("reviews", { protocol: "delta" });
    await pp.fetch(CDS);
    await rv.fetch(CDS);
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(1500);
    expect((await pp.status).code).toBe(grpc.status.UNAVAILABLE);
    expect((await rv.status).code).toBe(grpc.status.UNAVAILABLE);
    expect(server.status()).toEqual([]);
  });
});
