// The edge worker's decisions in real workerd: the conformance table gives the same answers as the
// TypeScript host and Envoy (test/filters, test/envoy), and the split, header routing, local
// replies and the breaker behave as in the mesh, proven by what each local origin received.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FilterConfig } from "../../schema/filter-config.ts";
import meshConfig from "../conformance/mesh-config.json" with { type: "json" };
import table from "../conformance/vectors.json" with { type: "json" };
import { type ConformanceVector, expectDecision, observedAt, requestFor } from "../support/conformance.ts";
import { probeAfterEjection } from "../support/mesh-envoy.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import {
  type ConfigServer,
  type EdgeWorker,
  edgeConfig,
  startConfigServer,
  startEdgeWorker,
} from "./harness.ts";

let v1: Upstream;
let v1b: Upstream;
let v2: Upstream;
let flaky: Upstream;
let slow: Upstream;
let retried: Upstream;
let control: ConfigServer;
/** An origin that answers 1 MiB in two parts, 300 ms apart. */
let big: http.Server;
const BIG_PART = 512 * 1024;

beforeAll(async () => {
  [v1, v1b, v2, flaky, slow, retried] = (await Promise.all(
    ["v1", "v1b", "v2", "flaky", "slow", "retried"].map((name) => startUpstream({ name })),
  )) as [Upstream, Upstream, Upstream, Upstream, Upstream, Upstream];
  slow.setDelay(1_000);
  control = await startConfigServer();
  big = http.createServer((req, res) => {
    if (req.url === "/big/chunked") {
      // Small, but of unknown length: streamed, not read whole.
      res.writeHead(200, { "x-upstream": "big" });
      res.write("small ");
      setTimeout(() => res.end("and chunked"), 50);
      return;
    }
    res.writeHead(200, { "content-length": String(2 * BIG_PART), "x-upstream": "big" });
    res.write(Buffer.alloc(BIG_PART, "a"));
    setTimeout(() => res.end(Buffer.alloc(BIG_PART, "b")), 300);
  });
  await new Promise<void>((resolve) => big.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  await Promise.all([v1, v1b, v2, flaky, slow, retried].map((u) => u?.close()));
  await control?.close();
  big?.closeAllConnections();
  await new Promise((resolve) => big?.close(resolve));
});

function resetCounts(): void {
  for (const upstream of [v1, v1b, v2, flaky, slow, retried]) upstream.reset();
}

describe("conformance vectors through the edge worker", () => {
  let worker: EdgeWorker;
  beforeAll(async () => {
    control.serve(edgeConfig("conformance", meshConfig as FilterConfig, { v1: [v1.url], v2: [v2.url] }));
    worker = await startEdgeWorker({ vars: { CONFIG_URL: control.url } });
  });
  afterAll(async () => {
    await worker?.close();
  });

  for (const vector of table.vectors as ConformanceVector[]) {
    it(vector.name, async () => {
      resetCounts();
      const response = await worker.send(requestFor(vector, "latin1"));
      expectDecision(vector, observedAt(response, [v1, v2]), "latin1");
    });
  }
});

describe("the edge worker's traffic policy", () => {
  const filter: FilterConfig = {
    headerRules: [
      {
        name: "deny-admin",
        match: { path: { prefix: "/admin" } },
        deny: { status: 403, body: "admin is closed\n" },
      },
      { name: "chaos", match: { path: { prefix: "/chaos" } }, fault: { abort: { status: 503 } } },
      { name: "slow", match: { path: { prefix: "/slow" } }, fault: { delay: { ms: 200 } } },
    ],
    routes: [
      {
        name: "testers",
        match: { headers: [{ name: "x-user", exact: "tester" }] },
        destinations: [{ cluster: "v2" }],
      },
      { name: "flaky", match: { path: { prefix: "/flaky" } }, destinations: [{ cluster: "flaky" }] },
      { name: "big", match: { path: { prefix: "/big" } }, destinations: [{ cluster: "big" }] },
      // A cluster without origins (its service has no Workload yet).
      {
        name: "unstaffed",
        match: { path: { prefix: "/unstaffed" } },
        destinations: [{ cluster: "unstaffed" }],
      },
      {
        name: "timeout",
        match: { path: { prefix: "/timeout" } },
        destinations: [{ cluster: "slow" }],
        timeoutMs: 200,
      },
      {
        name: "retry",
        match: { path: { prefix: "/retry" } },
        destinations: [{ cluster: "retried" }],
        retries: { attempts: 2, on: "5xx" },
      },
      {
        name: "canary",
        destinations: [
          { cluster: "v1", weight: 90 },
          { cluster: "v2", weight: 10 },
        ],
      },
    ],
    breakers: [{ cluster: "flaky", consecutiveErrors: 3, intervalMs: 10_000, baseEjectionMs: 800 }],
  };
  let worker: EdgeWorker;

  beforeAll(async () => {
    const bigUrl = `http://127.0.0.1:${(big.address() as AddressInfo).port}`;
    const origins = {
      v1: [v1.url, v1b.url],
      v2: [v2.url],
      flaky: [flaky.url],
      big: [bigUrl],
      slow: [slow.url],
      retried: [retried.url],
      unstaffed: [],
    };
    control.serve(edgeConfig("policy", filter, origins));
    worker = await startEdgeWorker({ vars: { CONFIG_URL: control.url } });
  });
  afterAll(async () => {
    await worker?.close();
  });

  it("splits 1,000 requests exactly 90/10, and v1's two origins take turns", async () => {
    resetCounts();
    const statuses = await sendMany(worker, 1_000, 8, () => ({ path: "/reviews" }));
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Smooth weighted round-robin in one isolate: exact, as on one Envoy worker thread.
    expect({ v1: v1.count + v1b.count, v2: v2.count }).toEqual({ v1: 900, v2: 100 });
    expect({ v1: v1.count, v1b: v1b.count }).toEqual({ v1: 450, v1b: 450 });
  });

  it("routes by header", async () => {
    resetCounts();
    const statuses = await sendMany(worker, 50, 4, () => ({
      path: "/reviews",
      headers: { "x-user": "tester" },
    }));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(v2.count).toBe(50);
    expect(v1.count + v1b.count).toBe(0);
    // Like Envoy's outbound route, the worker keeps its routing decision from the origin.
    expect(
      Object.keys(v2.requests[0]?.headers ?? {}).filter((name) => name.startsWith("x-wasmesh-")),
    ).toEqual([]);
  });

  it("tells the origin what the client asked for, in place of what the client claims, and its own Host", async () => {
    resetCounts();
    const response = await worker.send({
      path: "/reviews?page=2",
      headers: {
        host: "reviews.example",
        "x-user": "tester",
        "x-forwarded-host": "spoofed.example",
        "x-forwarded-proto": "gopher",
        "x-request-id": "r-1",
      },
    });
    expect(response.status).toBe(200);
    const received = v2.requests[0];
    expect(received?.path).toBe("/reviews?page=2");
    expect(received?.headers).toMatchObject({
      host: new URL(v2.url).host,
      "x-forwarded-host": "reviews.example",
      "x-forwarded-proto": "http",
      "x-request-id": "r-1",
    });
  });

  it("denies locally: 403 with x-wasmesh-denied, and no origin sees the request", async () => {
    resetCounts();
    const response = await worker.send({ path: "/admin/users" });
    expect(response.status).toBe(403);
    expect(response.headers.get("x-wasmesh-denied")).toBe("deny-admin");
    expect(response.body).toBe("admin is closed\n");
    expect(v1.count + v1b.count + v2.count + flaky.count).toBe(0);
  });

  it("answers a route to a cluster without origins with 503 'no healthy upstream', as Envoy does", async () => {
    resetCounts();
    const response = await worker.send({ path: "/unstaffed/1" });
    expect(response.status).toBe(503);
    expect(response.body).toBe("no healthy upstream: cluster unstaffed has no origins\n");
    expect(v1.count + v1b.count + v2.count + flaky.count + slow.count + retried.count).toBe(0);
    // The configuration is in force for every other route.
    expect((await worker.send({ path: "/reviews", headers: { "x-user": "tester" } })).status).toBe(200);
    expect(v2.count).toBe(1);
  });

  it("aborts locally with the injected fault", async () => {
    resetCounts();
    const response = await worker.send({ path: "/chaos" });
    expect(response.status).toBe(503);
    expect(response.headers.get("x-wasmesh-fault")).toBe("abort");
    expect(v1.count + v1b.count + v2.count + flaky.count).toBe(0);
  });

  it("delays with the module's ticks, driven by the worker, then forwards", async () => {
    resetCounts();
    const started = performance.now();
    const response = await worker.send({ path: "/slow", headers: { "x-user": "tester" } });
    const elapsed = performance.now() - started;
    expect(response.status).toBe(200);
    expect(response.headers.get("x-upstream")).toBe("v2");
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(1_000);
  });

  it("opens the breaker after 3 failures, keeps the origin untouched while open, closes after the ejection", async () => {
    resetCounts();
    flaky.setStatus(500);
    for (let i = 0; i < 3; i++) expect((await worker.send({ path: "/flaky" })).status).toBe(500);
    expect(flaky.count).toBe(3);

    for (let i = 0; i < 5; i++) {
      const response = await worker.send({ path: "/flaky" });
      expect(response.status).toBe(503);
      expect(response.headers.get("x-wasmesh-circuit")).toBe("open");
    }
    expect(flaky.count, "no request reaches the origin while the circuit is open").toBe(3);
    // Other clusters are unaffected.
    expect((await worker.send({ path: "/reviews", headers: { "x-user": "tester" } })).status).toBe(200);

    flaky.setStatus(200);
    // The first request after the ejection time is the probe; its success closes the circuit.
    expect((await probeAfterEjection(() => worker.send({ path: "/flaky" }))).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await worker.send({ path: "/flaky" })).status).toBe(200);
    expect(flaky.count).toBe(8);
  });

  it("enforces the route's timeout as Envoy's router does: 504", async () => {
    resetCounts();
    const started = performance.now();
    const response = await worker.send({ path: "/timeout" });
    const elapsed = performance.now() - started;
    expect(response.status).toBe(504);
    expect(response.body).toBe("upstream request timeout\n");
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(900);
    expect(slow.count).toBe(1);
  });

  it("retries as the route says, and keeps the router's headers from the origin", async () => {
    resetCounts();
    retried.setStatus(503);
    const failing = await worker.send({ path: "/retry" });
    expect(failing.status).toBe(503);
    expect(retried.count, "the first try and two retries").toBe(3);

    resetCounts();
    let answered = 0;
    retried.setStatus(() => (++answered === 1 ? 503 : 200));
    expect((await worker.send({ path: "/retry" })).status).toBe(200);
    expect(retried.count).toBe(2);
    const received = retried.requests[1]?.headers ?? {};
    expect(Object.keys(received).filter((name) => /^x-(?:envoy|wasmesh)-/.test(name))).toEqual([]);
  });

  it("reads a small request body whole, so it can retry it; a larger one streams and goes once", async () => {
    resetCounts();
    let answered = 0;
    retried.setStatus(() => (++answered === 1 ? 503 : 200));
    const small = await worker.send({ method: "POST", path: "/retry", body: "a small body" });
    expect(small.status).toBe(200);
    expect(retried.requests.map((r) => r.body)).toEqual(["a small body", "a small body"]);
    expect(retried.requests[1]?.headers["content-length"]).toBe("12");

    resetCounts();
    retried.setStatus(503);
    const large = "y".repeat(64 * 1024);
    expect((await worker.send({ method: "POST", path: "/retry", body: large })).status).toBe(503);
    expect(retried.count, "a streamed body cannot be sent again").toBe(1);
    expect(retried.requests[0]?.body).toBe(large);
  });

  it("streams a small response of unknown length as it comes", async () => {
    const answer = await worker.send({ path: "/big/chunked", headers: { host: "reviews" } });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("small and chunked");
    expect(answer.headers.get("x-upstream")).toBe("big");
    expect(answer.headers.get("content-length")).toBeUndefined();
  });

  it("streams request and response bodies with their lengths", async () => {
    resetCounts();
    const upload = "x".repeat(256 * 1024);
    const answer = await worker.send({
      method: "POST",
      path: "/upload",
      body: upload,
      headers: { "x-user": "tester" },
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("v2");
    expect(answer.headers.get("content-length")).toBe("2");
    const received = v2.requests[0];
    expect(received?.body.length).toBe(upload.length);
    expect(received?.headers["content-length"]).toBe(String(upload.length));
    expect(received?.headers["transfer-encoding"]).toBeUndefined();
  });

  it("streams a response as the origin sends it, whole and with its length", async () => {
    const started = performance.now();
    const { firstByteMs, endMs, bytes, headers } = await new Promise<{
      firstByteMs: number;
      endMs: number;
      bytes: Buffer;
      headers: http.IncomingHttpHeaders;
    }>((resolve, reject) => {
      const request = http.get(
        { host: "127.0.0.1", port: worker.port, path: "/big", headers: { host: "reviews" } },
        (response) => {
          const chunks: Buffer[] = [];
          let firstByteMs = 0;
          response.on("data", (chunk: Buffer) => {
            firstByteMs ||= performance.now() - started;
            chunks.push(chunk);
          });
          response.on("end", () =>
            resolve({
              firstByteMs,
              endMs: performance.now() - started,
              bytes: Buffer.concat(chunks),
              headers: response.headers,
            }),
          );
        },
      );
      request.on("error", reject);
    });
    expect(headers["x-upstream"]).toBe("big");
    expect(headers["content-length"]).toBe(String(2 * BIG_PART));
    expect(bytes.length).toBe(2 * BIG_PART);
    expect(bytes.subarray(0, BIG_PART).every((b) => b === 97)).toBe(true);
    expect(bytes.subarray(BIG_PART).every((b) => b === 98)).toBe(true);
    // The first part reaches the client while the origin still holds back the second.
    expect(endMs - firstByteMs).toBeGreaterThan(200);
  });
});

/** `total` requests, `parallel` at a time; returns the statuses in completion order. */
async function sendMany(
  worker: EdgeWorker,
  total: number,
  parallel: number,
  request: () => { path: string; headers?: Record<string, string> },
): Promise<number[]> {
  const statuses: number[] = [];
  let sent = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (sent < total) {
        sent++;
        statuses.push((await worker.send(request())).status);
      }
    }),
  );
  return statuses;
}
