// Issue 18's proof of tracing from the edge: a call chain edge → productpage → reviews → ratings,
// every service behind a real sidecar started by the agent (`wasmesh dataplane run`), yields one
// trace in a real Jaeger v2's query API with a span from each hop and the edge worker's span as the
// root. One Tracing resource, applied with the CLI to a real `wasmesh server`, turns it on for both:
// its backend (OTLP/gRPC) for the sidecars, its `edge.url` (OTLP/HTTP) for the edge worker, which
// runs the bundle that ships in real workerd and follows the control plane's edge configuration.
// Each app calls the next service through its own sidecar's outbound listener and passes the trace
// headers on, as bookinfo's apps do (test/envoy/tracing.test.ts is the same chain without the edge).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EdgeConfig } from "../../schema/edge-config.ts";
import { type CanaryMesh, resource, startCanaryMesh } from "../support/canary-mesh.ts";
import { wasmesh } from "../support/control-plane.ts";
import { type Jaeger, type JaegerTrace, startJaeger } from "../support/jaeger.ts";
import { callerApp } from "../support/trace-chain.ts";
import { until } from "../support/wait.ts";
import { type EdgeWorker, startEdgeWorker } from "./harness.ts";

let mesh: CanaryMesh;
let jaeger: Jaeger;
let edge: EdgeWorker;

const services = ["productpage", "reviews", "ratings"].map((name) =>
  resource("Service", name, { ports: [{ name: "http", port: 9080, protocol: "http" }] }),
);

/** The mesh's Tracing: the sidecars export to Jaeger over OTLP/gRPC, the edge over OTLP/HTTP. */
const tracing = (randomPercent: number) =>
  resource("Tracing", "mesh", {
    backend: { protocol: "otlp-grpc", url: `http://${jaeger.otlpGrpcAddress}` },
    sampling: { randomPercent },
    edge: { url: jaeger.otlpHttpUrl },
  });

async function edgeConfig(): Promise<EdgeConfig> {
  const { status, body } = await mesh.cp.request("GET", "/v1/edge/config");
  expect(status).toBe(200);
  return body as EdgeConfig;
}

/**
 * Resolves once the edge worker serves the control plane's current edge configuration (its version
 * in the worker's log) and a request through it to productpage is answered 200 by the chain.
 * Returns that configuration.
 */
async function edgeFollows(): Promise<EdgeConfig> {
  const config = await edgeConfig();
  await until(
    () => `the edge to serve configuration ${config.version}:\n${edge.logs.join("\n")}`,
    async () => {
      const response = await edge.send({ path: "/ready", authority: "productpage" });
      return (
        response.status === 200 &&
        edge.logs.some((line) => line.includes(`serving configuration ${config.version}`))
      );
    },
    30_000,
    100,
  );
  return config;
}

/** A path no other request takes, to find this request's spans and its calls at each app. */
const uniquePath = (label: string) => `/${label}/${crypto.randomUUID()}`;

/** The traceparent the app behind `agent` got with the request for `path`. */
function traceparentAt(agent: string, path: string): string {
  const request = mesh.app(agent).requests.find((r) => r.path === path);
  const value = request?.headers.traceparent;
  if (typeof value !== "string") throw new Error(`${agent}'s app got no traceparent with ${path}`);
  return value;
}

/** The ids of every trace in Jaeger with a span of these services that mentions `marker`. */
async function tracesMentioning(marker: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const service of ["wasmesh-edge", "productpage", "reviews", "ratings"]) {
    for (const trace of await jaeger.traces(service, { limit: 10_000 })) {
      const mentions = trace.spans.some(
        (span) =>
          span.operationName.includes(marker) ||
          span.tags.some((tag) => typeof tag.value === "string" && tag.value.includes(marker)),
      );
      if (mentions) ids.add(trace.traceID);
    }
  }
  return ids;
}

interface Hop {
  id: string;
  service: string | undefined;
  kind: string | undefined;
  parent: string | undefined;
}

function hops(trace: JaegerTrace): Hop[] {
  return trace.spans.map((s) => ({
    id: s.spanID,
    service: trace.processes[s.processID]?.serviceName,
    kind: s.tags.find((t) => t.key === "span.kind")?.value as string | undefined,
    parent: s.references.find((r) => r.refType === "CHILD_OF")?.spanID,
  }));
}

/** The spans from the trace's root down to ratings' span, following each span's parent. */
function pathToRatings(trace: JaegerTrace): string[] {
  const spans = hops(trace);
  const byId = new Map(spans.map((s) => [s.id, s]));
  const path: string[] = [];
  let at = spans.find((s) => s.service === "ratings");
  while (at !== undefined) {
    path.unshift(`${at.service} ${at.kind}`);
    if (at.parent === undefined) break;
    const parent = byId.get(at.parent);
    if (parent === undefined) path.unshift(`missing parent ${at.parent}`);
    at = parent;
  }
  return path;
}

const CHAIN = [
  "wasmesh-edge server",
  "productpage server",
  "productpage client",
  "reviews server",
  "reviews client",
  "ratings server",
];

/** Waits until Jaeger holds trace `traceId` with every hop's span, and returns it. */
async function completeTrace(traceId: string): Promise<JaegerTrace> {
  await jaeger.waitForTraces(
    "ratings",
    (ts) => ts.some((t) => t.traceID === traceId && t.spans.length >= CHAIN.length),
    30_000,
  );
  let found: JaegerTrace | undefined;
  // The edge exports its span on its own: wait for it too.
  await until(
    () => `trace ${traceId} to hold the edge's span: ${JSON.stringify(found && hops(found))}`,
    async () => {
      found = await jaeger.trace(traceId);
      return found !== undefined && hops(found).some((h) => h.service === "wasmesh-edge");
    },
    30_000,
    200,
  );
  return found as JaegerTrace;
}

beforeAll(async () => {
  jaeger = await startJaeger();
  mesh = await startCanaryMesh({ manifests: [] });
  await mesh.apply(...services);
  await mesh.startAgents([
    { name: "productpage-1", service: "productpage", app: callerApp(() => mesh, "productpage-1", "reviews") },
    { name: "reviews-1", service: "reviews", app: callerApp(() => mesh, "reviews-1", "ratings") },
    { name: "ratings-1", service: "ratings" },
  ]);
  await mesh.apply(tracing(100));
  await mesh.synced();
  const token = await wasmesh(["token", "create", "--role", "read-only", "--name", "edge"], {
    api: mesh.cp.api,
  });
  expect(token.code, token.stderr).toBe(0);
  edge = await startEdgeWorker({
    vars: {
      CONFIG_URL: `${mesh.cp.api}/v1/edge/config`,
      WASMESH_TOKEN: token.stdout.trim(),
      // The shortest refresh the worker takes: each change is served within a request or two.
      CONFIG_REFRESH_MS: "100",
      EDGE_NAME: "edge-1",
    },
  });
}, 120_000);

afterAll(async () => {
  await edge?.close();
  await mesh?.close();
  await jaeger?.stop();
});

describe("a trace from the edge through the agents' sidecars into Jaeger", () => {
  it("the edge's origins for productpage are its sidecar's inbound listener, and it traces", async () => {
    const config = await edgeConfig();
    const { inbound } = await mesh.agent("productpage-1").ports();
    expect(config.origins["outbound|productpage"]).toEqual([`http://127.0.0.1:${inbound}`]);
    expect(config.tracing).toMatchObject({
      url: jaeger.otlpHttpUrl,
      serviceName: "wasmesh-edge",
      sampling: { randomPercent: 100 },
    });
  });

  it("one request gives one trace: the edge's span the root, then a span per hop, each the child of the one before", async () => {
    await edgeFollows();
    const path = uniquePath("productpage");
    const response = await edge.send({ path, authority: "productpage" });
    expect(response.status, response.body).toBe(200);

    // The trace the edge started reaches the last app, sampled.
    const atRatings = traceparentAt("ratings-1", path);
    const match = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(atRatings);
    expect(match, atRatings).not.toBeNull();
    const traceId = (match as RegExpExecArray)[1] as string;
    expect(traceparentAt("productpage-1", path)).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(traceparentAt("reviews-1", path)).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));

    const trace = await completeTrace(traceId);
    const spans = hops(trace);
    expect(spans.map((s) => `${s.service} ${s.kind}`).sort()).toEqual([...CHAIN].sort());
    // The edge's span is the root: no parent, as the client sent no trace context.
    const root = spans.find((s) => s.service === "wasmesh-edge");
    expect(root?.parent).toBeUndefined();
    expect(spans.filter((s) => s.parent === undefined)).toEqual([root]);
    // Every other span's parents lead to it, one hop at a time.
    expect(pathToRatings(trace)).toEqual(CHAIN);
    const byId = new Map(spans.map((s) => [s.id, s]));
    for (const span of spans) {
      let at: Hop | undefined = span;
      for (let i = 0; at?.parent !== undefined && i < spans.length; i++) at = byId.get(at.parent);
      expect(at, `${span.service} ${span.kind}`).toBe(root);
    }
    // The edge's span names the worker that made it.
    const edgeProcess = trace.processes[trace.spans.find((s) => s.spanID === root?.id)?.processID ?? ""];
    expect(edgeProcess?.tags.find((t) => t.key === "service.instance.id")?.value).toBe("edge-1");

    // One trace: no span of this request landed in another.
    expect(await tracesMentioning(path)).toEqual(new Set([traceId]));
  }, 90_000);

  it("at 0% random sampling, a request is traced nowhere, while one with x-client-trace-id is traced end to end", async () => {
    await mesh.apply(tracing(0));
    await mesh.synced();
    const config = await edgeFollows();
    expect(config.tracing?.sampling.randomPercent).toBe(0);

    const unsampled = uniquePath("unsampled");
    const forced = uniquePath("forced");
    expect((await edge.send({ path: unsampled, authority: "productpage" })).status).toBe(200);
    expect(
      (
        await edge.send({
          path: forced,
          authority: "productpage",
          headers: { "x-client-trace-id": crypto.randomUUID() },
        })
      ).status,
    ).toBe(200);

    // The edge still starts a trace context for the unsampled request and passes it on, flag 00.
    const unsampledAt = /^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/.exec(traceparentAt("ratings-1", unsampled));
    expect(unsampledAt, traceparentAt("ratings-1", unsampled)).not.toBeNull();
    const forcedAt = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(traceparentAt("ratings-1", forced));
    expect(forcedAt, traceparentAt("ratings-1", forced)).not.toBeNull();

    // The client-forced request is traced end to end, under the edge's span.
    const trace = await completeTrace((forcedAt as RegExpExecArray)[1] as string);
    expect(pathToRatings(trace)).toEqual(CHAIN);
    expect(hops(trace).filter((s) => s.parent === undefined)).toHaveLength(1);

    // Spans leave the edge and each Envoy in order: with the later request's trace complete, the
    // earlier one's spans would be there.
    expect(await jaeger.trace((unsampledAt as RegExpExecArray)[1] as string)).toBeUndefined();
    expect(await tracesMentioning(unsampled)).toEqual(new Set());
  }, 90_000);

  it("the worker logged only its own lines, and no failed export", () => {
    expect(edge.logs.filter((line) => !line.startsWith("wasmesh edge: "))).toEqual([]);
    expect(edge.logs.filter((line) => line.includes("tracing:"))).toEqual([]);
  });
});
