// Issue 14 §1's live figures through real sidecars: `wasmesh server` as a process, agents run by
// `wasmesh dataplane run --stats-interval 1`, each reading its Envoy's counters and reporting them
// (PUT /v1/proxies/<node>/stats); GET /v1/traffic then shows productpage's 100 calls to reviews as
// the 90 and 10 of the split (counts, not rates: exact), ratings' circuit open after three 500s,
// and an AccessRule's denials with their count.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TrafficView } from "../../control-plane/traffic/index.ts";
import { type CanaryMesh, resource, reviewsSplit, startCanaryMesh } from "../support/canary-mesh.ts";
import { REPO_ROOT } from "../support/envoy.ts";
import { startLoad } from "../support/load.ts";
import { sendHttp } from "../support/mesh-envoy.ts";
import { until } from "../support/wait.ts";

const CLIENT = "productpage-1";
const V1 = "outbound|reviews|version=v1";
const V2 = "outbound|reviews|version=v2";
const RATINGS = "outbound|ratings";

let mesh: CanaryMesh;

async function traffic(): Promise<TrafficView> {
  const { status, body } = await mesh.cp.request("GET", "/v1/traffic");
  if (status !== 200) throw new Error(`GET /v1/traffic: ${status} ${JSON.stringify(body)}`);
  return body as TrafficView;
}

/** Polls GET /v1/traffic until `check` holds; resolves with that view. */
async function trafficWhere(what: string, check: (view: TrafficView) => boolean): Promise<TrafficView> {
  let last: TrafficView | undefined;
  try {
    await until(
      what,
      async () => {
        last = await traffic();
        return check(last);
      },
      20_000,
      200,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last GET /v1/traffic: ${JSON.stringify(last)}`);
  }
  return last as TrafficView;
}

const edge = (view: TrafficView, cluster: string) =>
  view.edges.find((e) => e.source === "productpage" && e.cluster === cluster);

beforeAll(async () => {
  mesh = await startCanaryMesh({
    manifests: [join(REPO_ROOT, "test", "fixtures", "imports", "bookinfo-services.yaml")],
  });
  const args = ["--stats-interval", "1"];
  await mesh.startAgents([
    { name: CLIENT, service: "productpage", args },
    { name: "reviews-v1", service: "reviews", labels: { version: "v1" }, args },
    { name: "reviews-v2", service: "reviews", labels: { version: "v2" }, args },
    { name: "ratings-v1", service: "ratings", labels: { version: "v1" }, args },
  ]);
}, 120_000);

afterAll(async () => {
  await mesh?.close();
});

describe("live traffic figures from real sidecars", () => {
  it("productpage's 100 calls to reviews split 90/10 show as edges of 90 and 10", async () => {
    await mesh.synced(await mesh.apply(reviewsSplit(90, 10)));
    const { outbound } = await mesh.agent(CLIENT).ports();
    const load = await startLoad({
      url: `http://127.0.0.1:${outbound}/`,
      headers: { host: "reviews" },
      requests: 100,
      concurrency: 1,
      timeoutMs: 15_000,
    }).result;
    expect(load.ok).toBe(100);

    const view = await trafficWhere(
      "productpage → reviews v1 90, v2 10",
      (v) => edge(v, V1)?.requests === 90 && edge(v, V2)?.requests === 10,
    );
    expect(edge(view, V1)).toMatchObject({
      source: "productpage",
      destination: "reviews",
      subset: { version: "v1" },
      requests: 90,
      errors: 0,
    });
    expect(edge(view, V2)).toMatchObject({ destination: "reviews", subset: { version: "v2" }, requests: 10 });
    expect(typeof edge(view, V1)?.requestsPerSecond).toBe("number");
    // Every agent reports, and their nodes and services are listed.
    const all = await trafficWhere("every agent's report", (v) => v.proxies.length === 4);
    expect(all.proxies.map((p) => `${p.node}:${p.service}`).sort()).toEqual([
      "productpage-1:productpage",
      "ratings-v1:ratings",
      "reviews-v1:reviews",
      "reviews-v2:reviews",
    ]);
    expect(view.windowSeconds).toBeGreaterThan(0);
  });

  it("ratings answering 500 opens its circuit after 3, shown open in productpage-1", async () => {
    await mesh.synced(
      await mesh.apply(
        resource("CircuitBreaker", "ratings", {
          service: "ratings",
          consecutiveErrors: 3,
          intervalMs: 10_000,
          baseEjectionMs: 60_000,
        }),
      ),
    );
    const ratings = mesh.app("ratings-v1");
    ratings.setStatus(500);
    try {
      const { outbound } = await mesh.agent(CLIENT).ports();
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await sendHttp(outbound, { authority: "ratings" })).status);
      expect(statuses).toEqual([500, 500, 500, 503, 503]);
    } finally {
      ratings.setStatus(200);
    }
    const view = await trafficWhere("ratings' circuit open", (v) =>
      v.circuits.some((c) => c.cluster === RATINGS && c.open),
    );
    expect(view.circuits.find((c) => c.cluster === RATINGS)).toEqual({
      service: "ratings",
      subset: null,
      cluster: RATINGS,
      open: true,
      proxies: [CLIENT],
    });
    // The three 500s went upstream; the two refusals did not.
    expect(edge(view, RATINGS)).toMatchObject({
      destination: "ratings",
      subset: null,
      requests: 3,
      errors: 3,
    });
  });

  it("an AccessRule's denials show with the rule and their count", async () => {
    await mesh.synced(
      await mesh.apply(
        resource("AccessRule", "no-ratings-from-productpage", {
          source: "productpage",
          destination: "ratings",
          action: "deny",
        }),
      ),
    );
    const { outbound } = await mesh.agent(CLIENT).ports();
    for (let i = 0; i < 3; i++) expect((await sendHttp(outbound, { authority: "ratings" })).status).toBe(403);
    const view = await trafficWhere("3 denials by no-ratings-from-productpage", (v) =>
      v.denials.some((d) => d.rule === "no-ratings-from-productpage" && d.count === 3),
    );
    expect(view.denials).toContainEqual({
      source: "productpage",
      rule: "no-ratings-from-productpage",
      count: 3,
    });
  });
});
