// Live traffic figures (issue 14 §1): the control plane's table of the agents' reports (rates
// between a proxy's last two reports, counter resets, expiry after three intervals, the caps), the
// cluster names read back, the routes (a dataplane token reports only as its service; a read-only
// token reads) and the agent's reading of Envoy's /stats.
import { describe, expect, it } from "vitest";
import { createApi } from "../../control-plane/api/index.ts";
import { outboundCluster, parseOutboundCluster } from "../../control-plane/resources/index.ts";
import { createTokens } from "../../control-plane/security/tokens.ts";
import { createMemoryStore } from "../../control-plane/store/index.ts";
import { createTrafficTable, type StatsReport, TrafficRefusal } from "../../control-plane/traffic/index.ts";
import { reportOf } from "../../dataplane/stats.ts";

const V1 = "outbound|reviews|version=v1";
const V2 = "outbound|reviews|version=v2";
const RATINGS = "outbound|ratings";

function report(
  service: string,
  atMs: number,
  clusters: Record<string, [number, number]>,
  extra: Partial<StatsReport> = {},
) {
  return {
    service,
    at: new Date(atMs).toISOString(),
    clusters: Object.fromEntries(
      Object.entries(clusters).map(([c, [requests, errors5xx]]) => [c, { requests, errors5xx }]),
    ),
    circuits: {},
    denials: {},
    ...extra,
  };
}

/** A table on a clock the test moves. */
function table(options: Parameters<typeof createTrafficTable>[0] = {}) {
  let t = Date.parse("2026-12-07T08:00:00.000Z");
  const traffic = createTrafficTable({ now: () => t, viewCacheMs: 0, ...options });
  return {
    traffic,
    get t() {
      return t;
    },
    advance(ms: number) {
      t += ms;
    },
  };
}

describe("cluster names read back", () => {
  it("parseOutboundCluster inverts outboundCluster", () => {
    for (const [service, subset] of [
      ["reviews", undefined],
      ["reviews.bookinfo", { version: "v1" }],
      ["ratings", { version: "v2", zone: "a" }],
    ] as const) {
      expect(parseOutboundCluster(outboundCluster(service, subset))).toEqual({
        service,
        subset: subset ?? null,
      });
    }
    expect(parseOutboundCluster("inbound|9080")).toBeUndefined();
    expect(parseOutboundCluster("outbound|")).toBeUndefined();
    expect(parseOutboundCluster("outbound|a|b|c")).toBeUndefined();
    expect(parseOutboundCluster("outbound|a|novalue")).toBeUndefined();
  });
});

describe("the traffic table", () => {
  it("sums a source's proxies per destination cluster, rates from the last two reports", () => {
    const clock = table();
    const { traffic } = clock;
    traffic.report("pp-1", report("productpage", clock.t, { [V1]: [100, 0], [V2]: [10, 1] }));
    traffic.report("pp-2", report("productpage", clock.t, { [V1]: [50, 0] }));
    // First reports: counts, no rates yet.
    let view = traffic.view();
    expect(view.edges.map((e) => [e.cluster, e.requests, e.requestsPerSecond])).toEqual([
      [V1, 150, 0],
      [V2, 10, 0],
    ]);
    clock.advance(5000);
    traffic.report("pp-1", report("productpage", clock.t, { [V1]: [150, 0], [V2]: [20, 6] }));
    traffic.report("pp-2", report("productpage", clock.t, { [V1]: [75, 0] }));
    view = traffic.view();
    expect(view.windowSeconds).toBe(5);
    expect(view.edges).toEqual([
      {
        source: "productpage",
        destination: "reviews",
        subset: { version: "v1" },
        cluster: V1,
        requestsPerSecond: 15, // (50 + 25) / 5
        errorsPerSecond: 0,
        requests: 225,
        errors: 0,
      },
      {
        source: "productpage",
        destination: "reviews",
        subset: { version: "v2" },
        cluster: V2,
        requestsPerSecond: 2,
        errorsPerSecond: 1,
        requests: 20,
        errors: 6,
      },
    ]);
    expect(view.proxies).toEqual([
      { node: "pp-1", service: "productpage", reportedAt: new Date(clock.t).toISOString() },
      { node: "pp-2", service: "productpage", reportedAt: new Date(clock.t).toISOString() },
    ]);
  });

  it("a counter lower than before (Envoy restarted) counts from zero, never negative", () => {
    const clock = table();
    clock.traffic.report("pp-1", report("productpage", clock.t, { [V1]: [1000, 40] }));
    clock.advance(5000);
    clock.traffic.report("pp-1", report("productpage", clock.t, { [V1]: [30, 5] }));
    const [edge] = clock.traffic.view().edges;
    expect(edge).toMatchObject({ requests: 30, errors: 5, requestsPerSecond: 6, errorsPerSecond: 1 });
  });

  it("drops a proxy after three of its intervals without a report, and counts a new one afresh", () => {
    const clock = table();
    const { traffic } = clock;
    traffic.report("pp-1", report("productpage", clock.t, { [V1]: [1, 0] }));
    clock.advance(1000);
    traffic.report("pp-1", report("productpage", clock.t, { [V1]: [2, 0] }));
    // Its interval is 1 s (the time between its reports): gone after 3 s.
    clock.advance(3000);
    expect(traffic.size()).toBe(1);
    clock.advance(1);
    expect(traffic.size()).toBe(0);
    expect(traffic.view().edges).toEqual([]);
    // One report only: the default interval (5 s), so 15 s.
    traffic.report("pp-2", report("productpage", clock.t, { [V1]: [1, 0] }));
    clock.advance(15_000);
    expect(traffic.view().proxies).toHaveLength(1);
    clock.advance(1);
    expect(traffic.view().proxies).toHaveLength(0);
  });

  it("circuits per cluster, open where any proxy has it open; denials per source and rule", () => {
    const clock = table();
    const { traffic } = clock;
    traffic.report(
      "pp-1",
      report(
        "productpage",
        clock.t,
        {},
        {
          circuits: { [RATINGS]: { open: true, rejected: 7 }, [V1]: { open: false, rejected: 0 } },
          denials: { "no-ratings-from-productpage": 3 },
        },
      ),
    );
    traffic.report(
      "pp-2",
      report(
        "productpage",
        clock.t,
        {},
        {
          circuits: { [RATINGS]: { open: false, rejected: 0 } },
          denials: { "no-ratings-from-productpage": 2 },
        },
      ),
    );
    const view = traffic.view();
    expect(view.circuits).toEqual([
      { service: "ratings", subset: null, cluster: RATINGS, open: true, proxies: ["pp-1"] },
      { service: "reviews", subset: { version: "v1" }, cluster: V1, open: false, proxies: [] },
    ]);
    expect(view.denials).toEqual([{ source: "productpage", rule: "no-ratings-from-productpage", count: 5 }]);
  });

  it("caps the proxies kept and the entries of a report, naming the field", () => {
    const clock = table({ maxProxies: 2, maxEntries: 3 });
    const { traffic } = clock;
    traffic.report("a", report("productpage", clock.t, {}));
    traffic.report("b", report("productpage", clock.t, {}));
    expect(() => traffic.report("c", report("productpage", clock.t, {}))).toThrow(
      expect.objectContaining({ status: 429, field: "node" }),
    );
    // A kept proxy reports on; a place frees once one expires.
    traffic.report("a", report("productpage", clock.t, {}));
    clock.advance(15_001);
    traffic.report("c", report("productpage", clock.t, {}));
    expect(traffic.size()).toBe(1);

    const four = Object.fromEntries(
      ["a", "b", "c", "d"].map((s) => [outboundCluster(s), [1, 0] as [number, number]]),
    );
    const refusal = (() => {
      try {
        traffic.report("c", report("productpage", clock.t, four));
      } catch (error) {
        return error as TrafficRefusal;
      }
      return undefined;
    })();
    expect(refusal).toBeInstanceOf(TrafficRefusal);
    expect(refusal).toMatchObject({ status: 413, field: "clusters" });
    expect(() =>
      traffic.report("c", { ...report("productpage", clock.t, {}), denials: { a: 1, b: 1, c: 1, d: 1 } }),
    ).toThrow(expect.objectContaining({ status: 413, field: "denials" }));
  });

  it("aggregates at most once a second, however many read", () => {
    const clock = table({ viewCacheMs: 1000 });
    const { traffic } = clock;
    traffic.report("pp-1", report("productpage", clock.t, { [V1]: [1, 0] }));
    const first = traffic.view();
    traffic.report("pp-2", report("productpage", clock.t, { [V1]: [1, 0] }));
    clock.advance(999);
    expect(traffic.view()).toBe(first);
    clock.advance(1);
    expect(traffic.view().edges[0]?.requests).toBe(2);
  });

  it("refuses malformed reports naming the field", () => {
    const { traffic, t } = table();
    const cases: [unknown, string][] = [
      [[], "(root)"],
      [{ ...report("pp", t, {}), service: "" }, "service"],
      [{ ...report("pp", t, {}), at: "yesterday" }, "at"],
      [{ ...report("pp", t, {}), extra: 1 }, "extra"],
      [report("pp", t, { "inbound|9080": [1, 0] }), 'clusters["inbound|9080"]'],
      [{ ...report("pp", t, {}), clusters: { [V1]: { requests: -1, errors5xx: 0 } } }, `clusters["${V1}"]`],
      [{ ...report("pp", t, {}), circuits: { [V1]: { open: "yes", rejected: 0 } } }, `circuits["${V1}"]`],
      [{ ...report("pp", t, {}), denials: { r: 1.5 } }, 'denials["r"]'],
    ];
    for (const [body, field] of cases) {
      expect(() => traffic.report("pp-1", body), field).toThrow(
        expect.objectContaining({ status: 400, field }),
      );
    }
    expect(traffic.size()).toBe(0);
  });
});

describe("the routes", () => {
  async function api() {
    const store = createMemoryStore();
    const tokens = createTokens(store);
    const app = createApi({ store, auth: { tokens } });
    const issue = async (role: "read-only" | "dataplane" | "admin", service?: string) =>
      (await tokens.issue(role === "dataplane" ? { role, service: service as string } : { role })).secret;
    const call = (method: string, path: string, token: string, body?: unknown) =>
      app.request(`http://127.0.0.1${path}`, {
        method,
        headers: {
          host: "127.0.0.1",
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
      });
    return { call, issue };
  }

  it("a dataplane token reports for its service's node only; a read-only token reads GET /v1/traffic", async () => {
    const { call, issue } = await api();
    const productpage = await issue("dataplane", "productpage");
    const reviews = await issue("dataplane", "reviews");
    const reader = await issue("read-only");
    const body = report("productpage", Date.now(), { [V1]: [9, 1] });

    expect((await call("PUT", "/v1/proxies/pp-1/stats", productpage, body)).status).toBe(204);
    // Another service's token: neither as productpage, nor as itself for productpage's node.
    const asOther = await call("PUT", "/v1/proxies/pp-1/stats", reviews, body);
    expect(asOther.status).toBe(403);
    const takeover = await call("PUT", "/v1/proxies/pp-1/stats", reviews, { ...body, service: "reviews" });
    expect(takeover.status).toBe(403);
    expect(((await takeover.json()) as { error: { message: string } }).error.message).toContain(
      "reports as service 'productpage'",
    );
    // Read-only: reads, never reports; a dataplane token does not read the graph.
    expect((await call("PUT", "/v1/proxies/pp-2/stats", reader, body)).status).toBe(403);
    expect((await call("GET", "/v1/traffic", productpage)).status).toBe(403);
    const get = await call("GET", "/v1/traffic", reader);
    expect(get.status).toBe(200);
    const view = (await get.json()) as { edges: unknown[]; proxies: unknown[] };
    expect(view.edges).toEqual([
      expect.objectContaining({ source: "productpage", destination: "reviews", requests: 9, errors: 1 }),
    ]);
    expect(view.proxies).toHaveLength(1);
  });

  it("refuses oversized and malformed reports with the field named", async () => {
    const { call, issue } = await api();
    const admin = await issue("admin");
    const many = Object.fromEntries(
      Array.from({ length: 257 }, (_, i) => [outboundCluster(`s${i}`), { requests: 1, errors5xx: 0 }]),
    );
    const tooMany = await call("PUT", "/v1/proxies/n/stats", admin, {
      ...report("pp", Date.now(), {}),
      clusters: many,
    });
    expect(tooMany.status).toBe(413);
    expect(await tooMany.json()).toMatchObject({
      error: { code: "too_large", details: [{ path: "clusters" }] },
    });
    const huge = await call(
      "PUT",
      "/v1/proxies/n/stats",
      admin,
      JSON.stringify({ pad: "x".repeat(300_000) }),
    );
    expect(huge.status).toBe(413);
    const bad = await call("PUT", "/v1/proxies/n/stats", admin, { ...report("pp", Date.now(), {}), at: 5 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "invalid", details: [{ path: "at" }] } });
  });
});

describe("the agent's report", () => {
  it("reads Envoy's /stats JSON: outbound clusters called, breakers, denials", () => {
    const stats = {
      stats: [
        { name: `cluster.${V1}.upstream_rq_total`, value: 90 },
        { name: `cluster.${V1}.upstream_rq_5xx`, value: 2 },
        { name: `cluster.${V2}.upstream_rq_total`, value: 10 },
        { name: `cluster.${V2}.upstream_rq_5xx`, value: 0 },
        { name: "cluster.outbound|details.upstream_rq_total", value: 0 },
        { name: "cluster.outbound|details.upstream_rq_5xx", value: 0 },
        { name: `wasmcustom.wasmesh.breaker.${RATINGS}.open`, value: 1 },
        { name: `wasmcustom.wasmesh.breaker.${RATINGS}.rejected`, value: 4 },
        { name: "wasmcustom.wasmesh.rule.no-ratings.denied", value: 3 },
        { name: "wasmcustom.wasmesh.rule.other.denied", value: 0 },
        { histograms: { supported_quantiles: [] } },
      ],
    };
    const at = new Date("2026-12-07T08:00:00.000Z");
    expect(reportOf("productpage", at, JSON.stringify(stats))).toEqual({
      service: "productpage",
      at: at.toISOString(),
      clusters: { [V1]: { requests: 90, errors5xx: 2 }, [V2]: { requests: 10, errors5xx: 0 } },
      circuits: { [RATINGS]: { open: true, rejected: 4 } },
      denials: { "no-ratings": 3 },
    });
  });
});
