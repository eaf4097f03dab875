// Tracing at the edge (issue 18 §2) in real workerd: the worker continues the client's W3C trace or
// starts one, sampled as Envoy samples, forwards its own `traceparent` to the origin, and exports
// one SERVER span per sampled request over OTLP/HTTP JSON in the background. A tiny OTLP receiver
// (a node http server recording what is POSTed) stands in for the collector; local origins record
// the headers they got. A collector that is down or hangs costs no request anything.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import type { FilterConfig } from "../../schema/filter-config.ts";
import type { EdgeTracing } from "../../schema/telemetry.ts";
import {
  type OtlpSpan,
  parseTraceparent,
  SCOPE_NAME,
  SpanExporter,
  sampleNew,
} from "../../workers/src/tracing.ts";
import { startJaeger } from "../support/jaeger.ts";
import type { HttpRequest } from "../support/mesh-envoy.ts";
import { startUpstream, type Upstream } from "../support/upstreams.ts";
import { until } from "../support/wait.ts";
import { type ConfigServer, type EdgeWorker, startConfigServer, startEdgeWorker } from "./harness.ts";

/** A span as received, with the resource and scope of the batch that carried it. */
interface Received {
  span: OtlpSpan;
  serviceName: string | undefined;
  instance: string | undefined;
  scope: string | undefined;
}

interface Collector {
  url: string;
  readonly spans: Received[];
  /** POSTs received (batches). */
  readonly posts: number;
  readonly contentTypes: string[];
  /** Answers this status from now on (spans of a non-2xx answer are not recorded). */
  setStatus(status: number): void;
  reset(): void;
  close(): Promise<void>;
}

/** An OTLP/HTTP receiver: records each POSTed ExportTraceServiceRequest (JSON), answers 200 `{}`. */
async function startCollector(mode: "ok" | "hang" = "ok"): Promise<Collector> {
  let spans: Received[] = [];
  let posts = 0;
  let status = 200;
  const contentTypes: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      posts++;
      contentTypes.push(req.headers["content-type"] ?? "");
      if (mode === "hang") return; // never answers: the worker's timeout must let it go
      if (status !== 200) {
        res.writeHead(status).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      for (const resourceSpans of body.resourceSpans ?? []) {
        const attribute = (key: string) =>
          resourceSpans.resource?.attributes?.find((a: { key: string }) => a.key === key)?.value?.stringValue;
        const serviceName = attribute("service.name");
        const instance = attribute("service.instance.id");
        for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
          for (const span of scopeSpans.spans ?? [])
            spans.push({ span, serviceName, instance, scope: scopeSpans.scope?.name });
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    get spans() {
      return spans;
    },
    get posts() {
      return posts;
    },
    contentTypes,
    setStatus(next) {
      status = next;
    },
    reset() {
      status = 200;
      spans = [];
      posts = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port nothing listens on: a collector that is down. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const FILTER: FilterConfig = {
  headerRules: [{ name: "deny-admin", match: { path: { prefix: "/admin" } }, deny: { status: 403 } }],
  routes: [
    { name: "broken", match: { path: { prefix: "/broken" } }, destinations: [{ cluster: "broken" }] },
    { name: "reviews", match: { authority: { exact: "reviews" } }, destinations: [{ cluster: "v1" }] },
  ],
};

let origin: Upstream;
let broken: Upstream;
let collector: Collector;
let control: ConfigServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  [origin, broken] = await Promise.all([
    startUpstream({ name: "v1" }),
    startUpstream({ name: "broken", status: 500 }),
  ]);
  collector = await startCollector();
  control = await startConfigServer();
});
afterAll(async () => {
  await Promise.all([origin?.close(), broken?.close(), collector?.close(), control?.close()]);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  origin.reset();
  broken.reset();
  collector.reset();
});

function config(version: string, tracing: EdgeTracing | undefined): EdgeConfig {
  return {
    version,
    filter: FILTER,
    origins: { v1: [origin.url], broken: [broken.url] },
    ...(tracing ? { tracing } : {}),
  };
}

function tracingTo(url: string, sampling: EdgeTracing["sampling"], extra: Partial<EdgeTracing> = {}) {
  return { url, serviceName: "wasmesh-edge", sampling, ...extra } satisfies EdgeTracing;
}

/** A worker serving `edge` (EDGE_NAME unset unless given: service.name is the configuration's). */
async function workerWith(edge: EdgeConfig, vars: Record<string, string> = {}): Promise<EdgeWorker> {
  control.serve(edge);
  const worker = await startEdgeWorker({ vars: { CONFIG_URL: control.url, EDGE_NAME: "", ...vars } });
  cleanups.push(async () => {
    await worker.close();
    // Nothing but the worker's own lines: no runtime warning (e.g. about I/O across requests).
    expect(worker.logs.filter((line) => !line.startsWith("wasmesh edge: "))).toEqual([]);
  });
  return worker;
}

async function send(worker: EdgeWorker, request: HttpRequest) {
  const response = await worker.send(request);
  return response;
}

/** The traceparent the origin got with its `i`-th request. */
function forwarded(i: number): string {
  const value = origin.requests[i]?.headers.traceparent;
  if (typeof value !== "string") throw new Error(`request ${i} reached the origin without a traceparent`);
  return value;
}

const attributes = (span: OtlpSpan): Record<string, string | boolean> =>
  Object.fromEntries(
    span.attributes.map(({ key, value }) => [
      key,
      "stringValue" in value ? value.stringValue : "intValue" in value ? value.intValue : value.boolValue,
    ]),
  );

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";

/** Waits until the collector holds a span of `traceId`, and returns it. */
async function spanOf(traceId: string): Promise<Received> {
  await until(`a span of trace ${traceId} at the collector`, () =>
    collector.spans.some((r) => r.span.traceId === traceId),
  );
  return collector.spans.find((r) => r.span.traceId === traceId) as Received;
}

describe("the decision, as the worker's module computes it", () => {
  it("parses traceparent strictly: version 00, exact length, lower-case hex, ids not all zero", () => {
    expect(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-01`)).toEqual({
      traceId: TRACE_ID,
      parentId: CLIENT_SPAN,
      sampled: true,
    });
    expect(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-00`)?.sampled).toBe(false);
    // Other flags are kept apart from the sampled bit.
    expect(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-03`)?.sampled).toBe(true);
    expect(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-02`)?.sampled).toBe(false);
    for (const invalid of INVALID_TRACEPARENTS) expect(parseTraceparent(invalid), invalid).toBeUndefined();
  });

  it("samples as Envoy: client-forced under clientPercent, others under randomPercent, all capped by overallPercent", () => {
    const sampling = { randomPercent: 10, clientPercent: 50, overallPercent: 30 };
    expect(sampleNew(sampling, false, 9.99)).toBe(true);
    expect(sampleNew(sampling, false, 10)).toBe(false);
    expect(sampleNew(sampling, true, 29.9)).toBe(true);
    // Under clientPercent, but over the overall cap.
    expect(sampleNew(sampling, true, 40)).toBe(false);
    expect(sampleNew({ randomPercent: 0 }, true, 99.99)).toBe(true); // clientPercent defaults to 100
    expect(sampleNew({ randomPercent: 100, overallPercent: 0 }, false, 0)).toBe(false);
    expect(sampleNew({ randomPercent: 0 }, false, 0)).toBe(false);
  });
});

describe("the exporter (in Node: the module's fetch and timers are the same there)", () => {
  const span = (i: number): OtlpSpan => ({
    traceId: TRACE_ID,
    spanId: (i + 1).toString(16).padStart(16, "0"),
    name: `GET /${i}`,
    kind: 2,
    startTimeUnixNano: "1000000",
    endTimeUnixNano: "2000000",
    attributes: [],
    status: {},
  });

  it("batches spans that end together into one POST", async () => {
    const exporter = new SpanExporter(collector.url, { serviceName: "batch" }, () => undefined);
    const sending = exporter.add(span(0));
    expect(sending).toBeInstanceOf(Promise);
    // The batch is open: the next spans ride on it, and their requests have nothing to wait for.
    for (let i = 1; i < 10; i++) expect(exporter.add(span(i))).toBeUndefined();
    await sending;
    expect(collector.posts).toBe(1);
    expect(collector.spans.map((r) => r.span.name)).toEqual(
      Array.from({ length: 10 }, (_, i) => `GET /${i}`),
    );
    expect(new Set(collector.spans.map((r) => r.serviceName))).toEqual(new Set(["batch"]));
  });

  it("logs an outage once when it starts and once when it ends, dropping spans (not buffering them) meanwhile", async () => {
    const logs: string[] = [];
    const exporter = new SpanExporter(collector.url, { serviceName: "outage" }, (line) => logs.push(line), {
      retryAfterMs: 300,
    });
    collector.setStatus(500);
    await exporter.add(span(0));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/tracing: exporting spans failed: .* answered 500; dropping spans/);
    // Within the retry interval: dropped at once, no POST.
    expect(exporter.add(span(1))).toBeUndefined();
    expect(collector.posts).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 350));
    // One try after the interval: still failing, still one line.
    await exporter.add(span(2));
    expect(collector.posts).toBe(2);
    expect(logs).toHaveLength(1);
    collector.setStatus(200);
    await new Promise((resolve) => setTimeout(resolve, 350));
    await exporter.add(span(3));
    await exporter.add(span(4));
    expect(logs).toHaveLength(2);
    expect(logs[1]).toMatch(/accepts spans again \(3 dropped meanwhile\)/);
    expect(collector.spans.map((r) => r.span.name)).toEqual(["GET /3", "GET /4"]);
  });

  it("gives up on a collector that does not answer within its timeout", async () => {
    const hanging = await startCollector("hang");
    cleanups.push(() => hanging.close());
    const logs: string[] = [];
    const exporter = new SpanExporter(hanging.url, { serviceName: "slow" }, (line) => logs.push(line), {
      timeoutMs: 200,
    });
    await exporter.add(span(0));
    expect(hanging.posts).toBe(1);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/unreachable: .*(timeout|timed out|abort)/i);
  });
});

/** Each is refused, and the worker starts a new trace in its place. */
const INVALID_TRACEPARENTS = [
  `00-${TRACE_ID.toUpperCase()}-${CLIENT_SPAN}-01`, // upper-case hex
  `01-${TRACE_ID}-${CLIENT_SPAN}-01`, // a version other than 00
  `ff-${TRACE_ID}-${CLIENT_SPAN}-01`, // the forbidden version
  `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`, // all-zero trace id
  `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero parent id
  `00-${TRACE_ID.slice(1)}-${CLIENT_SPAN}-01`, // trace id too short
  `00-${TRACE_ID}-${CLIENT_SPAN}0-01`, // parent id too long
  `00-${TRACE_ID}-${CLIENT_SPAN}-1`, // flags too short
  `00-${TRACE_ID}-${CLIENT_SPAN}-01-extra`, // a field too many for version 00
  `00-${TRACE_ID.replace("4", "g")}-${CLIENT_SPAN}-01`, // not hex
  `00_${TRACE_ID}_${CLIENT_SPAN}_01`, // not dashes
  `00-${TRACE_ID}-${CLIENT_SPAN}-01, 00-${TRACE_ID}-${CLIENT_SPAN}-01`, // two headers, joined
  "",
];

describe("tracing in real workerd", () => {
  it("(a) continues a sampled client trace: the origin's parent is the exported span, whose parent is the client's", async () => {
    const worker = await workerWith(
      config(
        "a",
        tracingTo(
          collector.url,
          { randomPercent: 0 },
          {
            tags: [
              { name: "user", header: "x-user", default: "anonymous" },
              { name: "team", header: "x-team", default: "none" },
              { name: "edge.region", literal: "test" },
            ],
          },
        ),
      ),
    );
    const response = await send(worker, {
      path: "/reviews/1?page=2",
      headers: {
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`,
        tracestate: "vendor=abc,other=1",
        "x-user": "tester",
      },
    });
    expect(response.status, response.body).toBe(200);
    const sent = forwarded(0);
    expect(sent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
    const workerSpanId = sent.split("-")[2] as string;
    expect(workerSpanId).not.toBe(CLIENT_SPAN);
    expect(origin.requests[0]?.headers.tracestate).toBe("vendor=abc,other=1");

    const { span, serviceName, scope } = await spanOf(TRACE_ID);
    expect(collector.contentTypes[0]).toBe("application/json");
    expect(serviceName).toBe("wasmesh-edge");
    expect(scope).toBe(SCOPE_NAME);
    expect(span.spanId).toBe(workerSpanId);
    expect(span.parentSpanId).toBe(CLIENT_SPAN);
    expect(span.traceState).toBe("vendor=abc,other=1");
    expect(span.kind).toBe(2);
    expect(span.name).toBe("GET /reviews/1");
    expect(span.status.code).toBeUndefined();
    expect(BigInt(span.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(span.startTimeUnixNano));
    expect(Number(BigInt(span.startTimeUnixNano) / 1_000_000n)).toBeGreaterThan(Date.now() - 60_000);
    expect(attributes(span)).toEqual({
      "http.request.method": "GET",
      "url.path": "/reviews/1",
      "server.address": "reviews",
      "http.response.status_code": "200",
      "wasmesh.cluster": "v1",
      user: "tester",
      team: "none",
      "edge.region": "test",
    });
    expect(collector.spans).toHaveLength(1);
  });

  it("(a) an unsampled client trace stays unsampled: same trace id, flag 00, nothing exported; EDGE_NAME names the worker", async () => {
    const worker = await workerWith(config("a2", tracingTo(collector.url, { randomPercent: 100 })), {
      EDGE_NAME: "edge-eu",
    });
    const unsampled = "0af7651916cd43dd8448eb211c80319c";
    expect(
      (await send(worker, { headers: { traceparent: `00-${unsampled}-b7ad6b7169203331-00` } })).status,
    ).toBe(200);
    expect(forwarded(0)).toMatch(new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`));
    expect(forwarded(0)).not.toContain("b7ad6b7169203331");
    // A sampled one after it: once its span is in, the unsampled one's would have been too.
    await send(worker, { headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` } });
    const { serviceName, instance } = await spanOf(TRACE_ID);
    expect(serviceName).toBe("wasmesh-edge");
    expect(instance).toBe("edge-eu");
    expect(collector.spans.map((r) => r.span.traceId)).toEqual([TRACE_ID]);
  });

  it("(b) randomPercent 100 without a traceparent: a new sampled trace, exported as a root span; a lone tracestate is dropped", async () => {
    const worker = await workerWith(config("b", tracingTo(collector.url, { randomPercent: 100 })));
    expect((await send(worker, { path: "/x", headers: { tracestate: "orphan=1" } })).status).toBe(200);
    const [, traceId, spanId, flags] = forwarded(0).split("-") as [string, string, string, string];
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(flags).toBe("01");
    expect(origin.requests[0]?.headers.tracestate).toBeUndefined();
    const { span } = await spanOf(traceId);
    expect(span.spanId).toBe(spanId);
    expect(span.parentSpanId).toBeUndefined();
    expect(span.traceState).toBeUndefined();
  });

  it("(b) local replies and errors get spans too: a denial, no route, an origin's 500", async () => {
    const worker = await workerWith(config("local", tracingTo(collector.url, { randomPercent: 100 })));
    const denied = await send(worker, { path: "/admin/x" });
    expect(denied.status).toBe(403);
    const noRoute = await send(worker, { path: "/", authority: "nowhere" });
    expect(noRoute.status).toBe(404);
    const failed = await send(worker, { path: "/broken", authority: "reviews" });
    expect(failed.status).toBe(500);
    expect(broken.requests[0]?.headers.traceparent).toMatch(/-01$/);
    await until("three spans", () => collector.spans.length >= 3);
    const byPath = new Map(collector.spans.map((r) => [attributes(r.span)["url.path"], r.span]));
    const admin = byPath.get("/admin/x") as OtlpSpan;
    expect(attributes(admin)).toMatchObject({
      "http.response.status_code": "403",
      "wasmesh.denied": "deny-admin",
    });
    expect(attributes(admin)["wasmesh.cluster"]).toBeUndefined();
    expect(attributes(byPath.get("/") as OtlpSpan)).toMatchObject({
      "http.response.status_code": "404",
      "server.address": "nowhere",
    });
    const brokenSpan = byPath.get("/broken") as OtlpSpan;
    expect(attributes(brokenSpan)).toMatchObject({
      "http.response.status_code": "500",
      "wasmesh.cluster": "broken",
    });
    expect(brokenSpan.status.code).toBe(2);
    expect(admin.status.code).toBeUndefined();
  });

  it("a streamed response's span ends with its body, not with its headers", async () => {
    const slow = http.createServer((_req, res) => {
      // No Content-Length: streamed through the filters; the second part 300 ms after the first.
      res.writeHead(200, { "x-upstream": "slow" });
      res.write("first ");
      setTimeout(() => res.end("last"), 300);
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          slow.closeAllConnections();
          slow.close(() => resolve());
        }),
    );
    const port = (slow.address() as AddressInfo).port;
    const worker = await workerWith({
      ...config("stream", tracingTo(collector.url, { randomPercent: 100 })),
      origins: { v1: [`http://127.0.0.1:${port}`], broken: [broken.url] },
    });
    const response = await send(worker, { path: "/stream" });
    expect(response.body).toBe("first last");
    await until("the span", () => collector.spans.length > 0);
    const span = collector.spans[0]?.span as OtlpSpan;
    const ms = Number((BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1_000_000n);
    expect(ms).toBeGreaterThanOrEqual(250);
  });

  it("(c) randomPercent 0: every request is forwarded with flag 00 and nothing is exported; x-client-trace-id forces one", async () => {
    const worker = await workerWith(config("c", tracingTo(collector.url, { randomPercent: 0 })));
    for (let i = 0; i < 20; i++) expect((await send(worker, { path: `/c/${i}` })).status).toBe(200);
    for (let i = 0; i < 20; i++) expect(forwarded(i)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    // The last request forces tracing (clientPercent defaults to 100). Spans are exported in order of
    // their requests' ends, so once its span is in, the other 20 would be there too were they sampled.
    expect((await send(worker, { path: "/forced", headers: { "x-client-trace-id": "me" } })).status).toBe(
      200,
    );
    const forcedTrace = forwarded(20).split("-")[1] as string;
    expect(forwarded(20)).toMatch(/-01$/);
    await spanOf(forcedTrace);
    expect(collector.spans).toHaveLength(1);
  });

  it("(c) overallPercent 0 caps even a client-forced request", async () => {
    const worker = await workerWith(
      config("c2", tracingTo(collector.url, { randomPercent: 100, clientPercent: 100, overallPercent: 0 })),
    );
    expect((await send(worker, { headers: { "x-client-trace-id": "me" } })).status).toBe(200);
    expect(forwarded(0)).toMatch(/-00$/);
    // A sampled parent keeps its decision: the barrier.
    await send(worker, { headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` } });
    await spanOf(TRACE_ID);
    expect(collector.spans).toHaveLength(1);
  });

  it("(d) randomPercent 10 over 1,000 requests: the exported count is within a binomial bound and matches the flags forwarded", async () => {
    const worker = await workerWith(config("d", tracingTo(collector.url, { randomPercent: 10 })));
    const N = 1000;
    let next = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          next++;
          statuses.push((await send(worker, { path: "/d" })).status);
        }
      }),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(N);
    expect(origin.count).toBe(N);
    const flags = origin.requests.map((r) => String(r.headers.traceparent).slice(-2));
    const sampledIds = new Set(
      origin.requests
        .filter((r) => String(r.headers.traceparent).endsWith("-01"))
        .map((r) => String(r.headers.traceparent).split("-")[1]),
    );
    expect(flags.filter((f) => f !== "01" && f !== "00")).toEqual([]);
    // Every sampled request's span, and no other, reaches the collector.
    await until(
      () => `${sampledIds.size} spans at the collector (have ${collector.spans.length})`,
      () => collector.spans.length >= sampledIds.size,
    );
    expect(new Set(collector.spans.map((r) => r.span.traceId))).toEqual(sampledIds);
    // Binomial(n = 1000, p = 0.1): mean 100, sd = sqrt(1000 · 0.1 · 0.9) ≈ 9.49. Accept 100 ± 4.5 sd
    // (58 to 142): a correct worker fails this about once in 150,000 runs.
    expect(sampledIds.size).toBeGreaterThanOrEqual(58);
    expect(sampledIds.size).toBeLessThanOrEqual(142);
    // Spans that finished together went in one POST.
    expect(collector.posts).toBeLessThanOrEqual(collector.spans.length);
  });

  it("(e) a collector that is down costs no request anything, and the outage is logged once", async () => {
    const down = `http://127.0.0.1:${await closedPort()}/v1/traces`;
    const worker = await workerWith(config("e", tracingTo(down, { randomPercent: 100 })));
    for (let i = 0; i < 30; i++) expect((await send(worker, { path: `/e/${i}` })).status).toBe(200);
    expect(origin.count).toBe(30);
    const failures = () => worker.logs.filter((line) => /tracing: exporting spans failed/.test(line));
    await until(
      () => `the outage to be logged:\n${worker.logs.join("\n")}`,
      () => failures().length > 0,
    );
    for (let i = 0; i < 30; i++) expect((await send(worker, { path: `/e/more/${i}` })).status).toBe(200);
    expect(origin.count).toBe(60);
    expect(failures()).toHaveLength(1);
    expect(failures()[0]).toMatch(/is unreachable/);
  });

  it("(e) a collector that hangs costs no request anything either", async () => {
    const hanging = await startCollector("hang");
    cleanups.push(() => hanging.close());
    const worker = await workerWith(config("e2", tracingTo(hanging.url, { randomPercent: 100 })));
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => send(worker, { path: `/h/${i}` })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(30).fill(200));
    expect(origin.count).toBe(30);
    // The exports did go out (and hang); the requests were long answered.
    await until("an export to reach the hanging collector", () => hanging.posts > 0);
    for (let i = 0; i < 10; i++) expect((await send(worker, { path: `/h/more/${i}` })).status).toBe(200);
    expect(origin.count).toBe(40);
    // The export's own timeout (3 s) ends it, once, as an outage.
    const timedOut = () => worker.logs.filter((line) => /tracing: exporting spans failed/.test(line));
    await until(
      () => `the export to time out:\n${worker.logs.join("\n")}`,
      () => timedOut().length > 0,
    );
    expect(timedOut()).toHaveLength(1);
    expect(timedOut()[0]).toMatch(/timeout|timed out|abort/i);
  });

  it("(f) an invalid traceparent is replaced by a new trace (and its tracestate dropped)", async () => {
    const worker = await workerWith(config("f", tracingTo(collector.url, { randomPercent: 100 })));
    for (const [i, invalid] of INVALID_TRACEPARENTS.entries()) {
      expect((await send(worker, { headers: { traceparent: invalid, tracestate: "v=1" } })).status).toBe(200);
      const [, traceId, , flags] = forwarded(i).split("-") as [string, string, string, string];
      expect(forwarded(i), invalid).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(traceId, invalid).not.toBe(TRACE_ID);
      expect(flags).toBe("01");
      expect(origin.requests[i]?.headers.tracestate, invalid).toBeUndefined();
      const { span } = await spanOf(traceId);
      expect(span.parentSpanId, invalid).toBeUndefined();
    }
  });

  it("without a tracing section the worker adds nothing: the client's trace headers go on as they came", async () => {
    const worker = await workerWith(config("off", undefined));
    const client = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;
    await send(worker, { headers: { traceparent: client, tracestate: "vendor=abc" } });
    await send(worker, { headers: { tracestate: "x=1" } });
    expect(origin.requests[0]?.headers.traceparent).toBe(client);
    expect(origin.requests[0]?.headers.tracestate).toBe("vendor=abc");
    expect(origin.requests[1]?.headers.traceparent).toBeUndefined();
    expect(origin.requests[1]?.headers.tracestate).toBe("x=1");
  });

  it("(g) a tracing section with a bad url is refused by the configuration's validation, with the field path", async () => {
    const bad = config("g", tracingTo("ftp://collector/v1/traces", { randomPercent: 100 }));
    const worker = await workerWith(bad);
    const refused = await send(worker, {});
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/invalid edge configuration: tracing\.url: /);
    // Past the schema's pattern, but no URL fetch could use.
    control.serve(config("g2", tracingTo("http://[::1/v1/traces", { randomPercent: 100 })));
    const worker2 = await startEdgeWorker({ vars: { CONFIG_URL: control.url } });
    cleanups.push(() => worker2.close());
    const refused2 = await send(worker2, {});
    expect(refused2.status).toBe(503);
    expect(refused2.body).toMatch(/invalid edge configuration: tracing\.url: not a URL/);
    // A percentage out of range, with its path.
    control.serve(config("g3", tracingTo(collector.url, { randomPercent: 101 })));
    const worker3 = await startEdgeWorker({ vars: { CONFIG_URL: control.url } });
    cleanups.push(() => worker3.close());
    expect((await send(worker3, {})).body).toMatch(/tracing\.sampling\.randomPercent/);
    expect(origin.count).toBe(0);
  });
});

// A real Jaeger v2 (scripts/install-jaeger.sh, run by ./dev, builds it into .tools/jaeger; without
// it startJaeger says so) as the collector: the worker's OTLP/HTTP JSON is what a real backend
// accepts, and the trace is found by its query API.
describe("into a real Jaeger", () => {
  it("the worker's span is stored under its service, child of the client's span, with the mesh's attributes", async () => {
    const jaeger = await startJaeger();
    cleanups.push(() => jaeger.stop());
    const worker = await workerWith(
      config("jaeger", {
        url: jaeger.otlpHttpUrl,
        serviceName: "wasmesh-edge",
        sampling: { randomPercent: 0 },
        tags: [{ name: "edge.region", literal: "test" }],
      }),
    );
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4737";
    const response = await send(worker, {
      path: "/jaeger/1",
      headers: { traceparent: `00-${traceId}-${CLIENT_SPAN}-01` },
    });
    expect(response.status).toBe(200);
    const workerSpanId = forwarded(0).split("-")[2] as string;
    const traces = await jaeger.waitForTraces("wasmesh-edge", (found) =>
      found.some((t) => t.traceID === traceId),
    );
    const trace = traces.find((t) => t.traceID === traceId);
    expect(trace?.spans).toHaveLength(1);
    const span = trace?.spans[0];
    expect(span?.spanID).toBe(workerSpanId);
    expect(span?.operationName).toBe("GET /jaeger/1");
    expect(span?.references).toEqual([{ refType: "CHILD_OF", traceID: traceId, spanID: CLIENT_SPAN }]);
    expect(trace?.processes[span?.processID ?? ""]?.serviceName).toBe("wasmesh-edge");
    const tags = Object.fromEntries((span?.tags ?? []).map((t) => [t.key, t.value]));
    expect(tags).toMatchObject({
      "span.kind": "server",
      "http.request.method": "GET",
      "url.path": "/jaeger/1",
      "wasmesh.cluster": "v1",
      "edge.region": "test",
    });
    expect(Number(tags["http.response.status_code"])).toBe(200);
  });
});
