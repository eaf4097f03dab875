// The worker's live configuration in real workerd: it follows a split changed through the real
// control plane's API within its revalidation interval with no failed request, revalidates with
// If-None-Match, keeps its last good configuration whatever the source does, answers 503 until it
// has one, and reads the same EdgeConfig from a KV namespace (miniflare's real KV).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type ControlPlane, startControlPlane } from "../../control-plane/server.ts";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import { apiFetch, apiOf } from "../support/control-plane.ts";
import type { HttpResponse } from "../support/mesh-envoy.ts";
import { tempDir } from "../support/temp.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";
import {
  type ConfigServer,
  type EdgeWorker,
  edgeConfig,
  startConfigServer,
  startEdgeWorker,
} from "./harness.ts";

const REFRESH_MS = 100;
/** A request's time to notice a refresh is due, plus the refresh itself, on a busy CI machine. */
const SLACK_MS = 400;

let v1: Upstream;
let v2: Upstream;
let control: ConfigServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  [v1, v2] = await Promise.all([startUpstream({ name: "v1" }), startUpstream({ name: "v2" })]);
  control = await startConfigServer();
});
afterAll(async () => {
  await Promise.all([v1?.close(), v2?.close(), control?.close()]);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  v1.reset();
  v2.reset();
});

async function worker(vars: Record<string, string>, kv = false): Promise<EdgeWorker> {
  const started = await startEdgeWorker({ vars: { CONFIG_REFRESH_MS: String(REFRESH_MS), ...vars }, kv });
  cleanups.push(() => started.close());
  return started;
}

/** All traffic to one cluster. */
function allTo(version: string, cluster: "v1" | "v2"): EdgeConfig {
  const filter: FilterConfig = { routes: [{ name: "all", destinations: [{ cluster }] }] };
  return edgeConfig(version, filter, { v1: [v1.url], v2: [v2.url] });
}

const upstreamOf = (response: HttpResponse) =>
  response.headers.get("x-upstream") ?? `status ${response.status}`;

/**
 * Sends requests, each of which must reach `upstream`, until `done()` holds (the event that shows
 * the worker has dealt with what the source did, e.g. its log line), and one more after it.
 */
async function keepServing(edge: EdgeWorker, upstream: string, done: () => boolean): Promise<void> {
  const served = async () => {
    const response = await edge.send({ path: "/" });
    expect(upstreamOf(response), response.body).toBe(upstream);
  };
  await until(
    () => `the worker to deal with it; its logs:\n${edge.logs.join("\n")}`,
    async () => {
      await served();
      return done();
    },
  );
  await served();
}

/** The worker logged a line matching `pattern` `times` times (a failing refresh logs each time). */
const logged =
  (edge: EdgeWorker, pattern: RegExp, times = 1) =>
  () =>
    edge.logs.filter((line) => pattern.test(line)).length >= times;

/**
 * `first`, then three refresh intervals of requests. A KV read leaves no trace outside the worker:
 * the later (unchanged) refreshes are the only thing here waited out by the clock.
 */
function thenIntervals(first: () => boolean): () => boolean {
  let at: number | undefined;
  return () => {
    if (at === undefined && first()) at = Date.now();
    return at !== undefined && Date.now() >= at + 3 * REFRESH_MS;
  };
}

/**
 * `first`, then two more revalidations of the stand-in's answer (304s): the worker went on to later
 * refreshes (one at a time: the second shows the first was dealt with), keeping what it had.
 */
function thenRevalidated(first: () => boolean): () => boolean {
  let at: number | undefined;
  return () => {
    if (at === undefined && first()) at = control.notModified;
    return at !== undefined && control.notModified >= at + 2;
  };
}

describe("live configuration from the control plane (real control plane, its edge endpoint)", () => {
  let plane: ControlPlane;
  let dataDir: string;
  /** The worker's WASMESH_TOKEN: a read-only token. */
  let readOnly: string;

  beforeAll(async () => {
    dataDir = tempDir("worker-cp");
    plane = await startControlPlane({ dataDir, httpPort: 0, xdsPort: 0, log: () => {} });
    apiOf(plane);
    ({ secret: readOnly } = await plane.tokens.issue({ role: "read-only", name: "edge" }));
  });
  afterAll(async () => {
    await plane?.close();
  });

  async function split(weightV1: number, weightV2: number): Promise<void> {
    const response = await apiFetch(`http://127.0.0.1:${plane.httpPort}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: meshYaml(weightV1, weightV2),
    });
    expect(response.status, await response.text()).toBe(200);
  }

  it("needs a token: without WASMESH_TOKEN, or with a revoked one, it has no configuration and says why", async () => {
    await split(100, 0);
    const url = `http://127.0.0.1:${plane.httpPort}/v1/edge/config`;
    const without = await worker({ CONFIG_URL: url });
    const refused = await without.send({ path: "/" });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(
      /answered 401: the control plane needs a token; set the WASMESH_TOKEN secret/,
    );
    const { token, secret } = await plane.tokens.issue({ role: "read-only" });
    await plane.tokens.revoke(token.id);
    const revoked = await (await worker({ CONFIG_URL: url, WASMESH_TOKEN: secret })).send({ path: "/" });
    expect(revoked.status).toBe(503);
    expect(revoked.body).toMatch(/answered 401: WASMESH_TOKEN was refused/);
    expect(v1.count + v2.count).toBe(0);
  });

  it("follows a split change within its revalidation interval, with no failed request in between", async () => {
    await split(100, 0);
    const edge = await worker({
      CONFIG_URL: `http://127.0.0.1:${plane.httpPort}/v1/edge/config`,
      WASMESH_TOKEN: readOnly,
    });
    expect(upstreamOf(await edge.send({ path: "/" }))).toBe("v1");

    // Continuous traffic (two clients) across the change.
    const seen: { at: number; status: number; upstream: string }[] = [];
    let stop = false;
    const clients = [0, 1].map(async () => {
      while (!stop) {
        const response = await edge.send({ path: "/" });
        seen.push({ at: performance.now(), status: response.status, upstream: upstreamOf(response) });
      }
    });
    await until("traffic before the change", () => seen.length >= 20);
    const changing = performance.now();
    await split(0, 100);
    const changed = performance.now();
    const settledAt = changed + REFRESH_MS + SLACK_MS;
    await until("traffic after the bound", () => seen.filter((s) => s.at > settledAt).length >= 20);
    stop = true;
    await Promise.all(clients);

    expect(
      seen.filter((s) => s.status !== 200),
      "no failed request",
    ).toEqual([]);
    expect(seen.filter((s) => s.at < changing).every((s) => s.upstream === "v1")).toBe(true);
    const firstV2 = seen.find((s) => s.upstream === "v2");
    expect(firstV2, "the worker followed").toBeDefined();
    const lag = (firstV2?.at ?? 0) - changed;
    console.log(
      `edge worker followed the control plane ${Math.max(0, lag).toFixed(0)} ms after the write (interval ${REFRESH_MS} ms)`,
    );
    // Within one interval, plus a request's time to notice it is due and the refresh itself.
    expect(lag).toBeLessThan(REFRESH_MS + SLACK_MS);
    const settled = seen.filter((s) => s.at > settledAt);
    expect(settled.length).toBeGreaterThan(0);
    expect(settled.every((s) => s.upstream === "v2")).toBe(true);

    // The control plane goes away: the worker keeps its configuration.
    await plane.close();
    await keepServing(edge, "v2", logged(edge, /keeping configuration .*unreachable/, 2));
  });
});

describe("clusters without origins (real control plane)", () => {
  let plane: ControlPlane;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = tempDir("worker-cp");
    plane = await startControlPlane({ dataDir, httpPort: 0, xdsPort: 0, log: () => {} });
    apiOf(plane);
  });
  afterAll(async () => {
    await plane?.close();
  });

  it("answers 503 'no healthy upstream' for a cluster without Workloads and serves every other route", async () => {
    const resource = (kind: string, name: string, spec: object) =>
      stringify({ apiVersion: "wasmesh.io/v1alpha1", kind, metadata: { name }, spec });
    const http = { ports: [{ name: "http", port: 9080, protocol: "http" }] };
    const mesh = [
      resource("Service", "reviews", http),
      // A client-only service: no Workload, so its default route's cluster has no origin.
      resource("Service", "frontend", http),
      resource("Workload", "reviews-v1", {
        service: "reviews",
        address: "127.0.0.1",
        port: v1.port,
        labels: { version: "v1" },
      }),
      resource("Route", "reviews", {
        service: "reviews",
        rules: [
          {
            // v3 is not deployed yet.
            name: "testers",
            match: { headers: [{ name: "x-user", exact: "tester" }] },
            destinations: [{ service: "reviews", subset: { version: "v3" } }],
          },
          { name: "rest", destinations: [{ service: "reviews", subset: { version: "v1" } }] },
        ],
      }),
    ].join("---\n");
    const applied = await apiFetch(`http://127.0.0.1:${plane.httpPort}/v1/apply`, {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: mesh,
    });
    expect(applied.status, await applied.text()).toBe(200);

    const { secret } = await plane.tokens.issue({ role: "read-only", name: "edge" });
    const edge = await worker({
      CONFIG_URL: `http://127.0.0.1:${plane.httpPort}/v1/edge/config`,
      WASMESH_TOKEN: secret,
    });
    const served = await edge.send({ path: "/reviews/1" });
    expect(served.status, `${served.body}\n${edge.logs.join("\n")}`).toBe(200);
    expect(upstreamOf(served)).toBe("v1");

    const tester = await edge.send({ path: "/reviews/1", headers: { "x-user": "tester" } });
    expect(tester.status).toBe(503);
    expect(tester.body).toBe("no healthy upstream: cluster outbound|reviews|version=v3 has no origins\n");
    const frontend = await edge.send({ path: "/", authority: "frontend" });
    expect(frontend.status).toBe(503);
    expect(frontend.body).toBe("no healthy upstream: cluster outbound|frontend has no origins\n");
    expect(v1.count, "only the request routed to v1 reached an origin").toBe(1);
    // And the other routes go on working after those replies.
    expect(upstreamOf(await edge.send({ path: "/reviews/2" }))).toBe("v1");
  });
});

describe("revalidation and the last good configuration (a stand-in endpoint that misbehaves)", () => {
  it("revalidates with If-None-Match and reconfigures only when the version changes", async () => {
    control.serve(allTo("A", "v1"));
    const edge = await worker({ CONFIG_URL: control.url });
    await keepServing(edge, "v1", () => control.notModified >= 2);
    expect(control.full).toBe(1);
    // The same version with a new ETag is fetched, and not applied again.
    const revalidations = control.notModified;
    control.serve(allTo("A", "v1"));
    // A 304 after the full answer shows the worker dealt with it (one refresh at a time); two, as
    // one may have been on its way when the ETag changed.
    await keepServing(edge, "v1", () => control.full === 2 && control.notModified >= revalidations + 2);
    expect(edge.logs.filter((line) => line.includes("serving configuration A"))).toHaveLength(1);
  });

  it("keeps its last good configuration while the source is down, failing or serving garbage", async () => {
    control.serve(allTo("good", "v1"));
    const edge = await worker({ CONFIG_URL: control.url });
    expect(upstreamOf(await edge.send({ path: "/" }))).toBe("v1");

    await control.stop();
    await keepServing(edge, "v1", logged(edge, /keeping configuration good: .* is unreachable/, 2));
    await control.start();
    control.serveRaw(500, "internal error");
    await keepServing(edge, "v1", logged(edge, /keeping configuration good: .* answered 500/, 2));
    // Each poll names the worker (EDGE_NAME, default "edge"); a failure to fetch is no refusal of a
    // document, so it reports none.
    expect(control.lastHeaders["wasmesh-edge-name"]).toBe("edge");
    expect(control.lastHeaders["wasmesh-edge-rejected"]).toBeUndefined();
    control.serveRaw(200, "<html>definitely not JSON");
    await keepServing(
      edge,
      "v1",
      thenRevalidated(logged(edge, /keeping configuration good: .* served invalid JSON/)),
    );
    control.serveRaw(
      200,
      JSON.stringify({ version: "no-origins", filter: allTo("x", "v2").filter, origins: {} }),
    );
    await keepServing(
      edge,
      "v1",
      thenRevalidated(
        logged(edge, /invalid edge configuration: filter\.routes\[0\]\.destinations\[0\]\.cluster/),
      ),
    );
    // Valid for the schema, refused by the module (weights add up to 110): the old plugin stays.
    const refused = allTo("refused", "v2");
    refused.filter.routes = [
      {
        name: "bad",
        destinations: [
          { cluster: "v1", weight: 90 },
          { cluster: "v2", weight: 20 },
        ],
      },
    ];
    control.serve(refused);
    await keepServing(
      edge,
      "v1",
      thenRevalidated(logged(edge, /the module refused configuration refused: .*weights must add up to 100/)),
    );
    // Revalidating the refused document, it says why it refused it (for GET /v1/status).
    expect(control.lastHeaders["if-none-match"]).toMatch(/^"r\d+"$/);
    expect(control.lastHeaders["wasmesh-edge-rejected"]).toMatch(
      /^the module refused configuration refused: .*weights must add up to 100/,
    );

    control.serve(allTo("better", "v2"));
    await until("the worker to follow", async () => upstreamOf(await edge.send({ path: "/" })) === "v2");
    expect(v2.count).toBeGreaterThan(0);
    // Serving the new one, it reports no refusal any more.
    await until("a poll without a refusal", async () => {
      await edge.send({ path: "/" });
      return control.lastHeaders["wasmesh-edge-rejected"] === undefined;
    });
  });

  it("answers 503 with a clear body until it has ever had a configuration, never routing", async () => {
    await control.stop();
    const edge = await worker({ CONFIG_URL: control.url });
    const unreachable = await edge.send({ path: "/" });
    expect(unreachable.status).toBe(503);
    expect(unreachable.body).toMatch(/^wasmesh edge has no configuration yet: .* is unreachable/);

    await control.start();
    control.serveRaw(200, "garbage");
    await until("the garbage to be seen", async () =>
      /invalid JSON/.test((await edge.send({ path: "/" })).body),
    );
    expect(v1.count + v2.count).toBe(0);

    control.serve(allTo("first", "v2"));
    await until("the first configuration", async () => (await edge.send({ path: "/" })).status === 200);
    expect(v2.count).toBe(1);
  });

  it("says so when wrangler.toml is incomplete", async () => {
    const edge = await worker({ CONFIG_SOURCE: "kv" });
    const response = await edge.send({ path: "/" });
    expect(response.status).toBe(503);
    expect(response.body).toContain(
      'wasmesh edge is misconfigured: CONFIG_SOURCE is "kv" but no CONFIG_KV namespace is bound',
    );
    const misnamed = await (await worker({ CONFIG_URL: control.url, EDGE_NAME: "Edge_1" })).send({
      path: "/",
    });
    expect(misnamed.status).toBe(503);
    expect(misnamed.body).toContain("wasmesh edge is misconfigured: EDGE_NAME must be a DNS label");
  });
});

describe("configuration from a KV namespace", () => {
  it("reads the key, follows changes and keeps its last good value", async () => {
    const edge = await worker({ CONFIG_SOURCE: "kv", CONFIG_KEY: "edge-test" }, true);
    const missing = await edge.send({ path: "/" });
    expect(missing.status).toBe(503);
    expect(missing.body).toContain('KV key "edge-test" does not exist');

    await edge.putKv("edge-test", JSON.stringify(allTo("kv-1", "v1")));
    await until("the first KV value", async () => upstreamOf(await edge.send({ path: "/" })) === "v1");
    await edge.putKv("edge-test", JSON.stringify(allTo("kv-2", "v2")));
    await until("the second KV value", async () => upstreamOf(await edge.send({ path: "/" })) === "v2");
    await edge.putKv("edge-test", "{ not json");
    await keepServing(
      edge,
      "v2",
      thenIntervals(logged(edge, /keeping configuration kv-2: KV key "edge-test" served invalid JSON/)),
    );
  });
});

/** A reviews service with v1 and v2 at the local origins, split by one Route. */
function meshYaml(weightV1: number, weightV2: number): string {
  const resource = (kind: string, name: string, spec: object) =>
    stringify({ apiVersion: "wasmesh.io/v1alpha1", kind, metadata: { name }, spec });
  const workload = (version: string, upstream: Upstream) =>
    resource("Workload", `reviews-${version}`, {
      service: "reviews",
      address: "127.0.0.1",
      port: upstream.port,
      labels: { version },
    });
  return [
    resource("Service", "reviews", { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
    workload("v1", v1),
    workload("v2", v2),
    resource("Route", "reviews", {
      service: "reviews",
      rules: [
        {
          name: "split",
          destinations: [
            { service: "reviews", subset: { version: "v1" }, weight: weightV1 },
            { service: "reviews", subset: { version: "v2" }, weight: weightV2 },
          ],
        },
      ],
    }),
  ].join("---\n");
}
