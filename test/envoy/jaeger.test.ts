// The real-Jaeger harness itself (test/support/jaeger.ts, issue 18): a span sent over OTLP/HTTP
// comes back from the query API with its trace id, service and operation; two Jaegers run side by
// side on ports of their own.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Jaeger, startJaeger } from "../support/jaeger.ts";

/** One OTLP/HTTP JSON export request holding a single span. */
function otlpSpan(service: string, name: string, traceId: string, spanId: string): object {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  return {
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
        scopeSpans: [
          {
            scope: { name: "wasmesh-test" },
            spans: [
              {
                traceId,
                spanId,
                name,
                kind: 2, // SPAN_KIND_SERVER
                startTimeUnixNano: String(nowNs - 5_000_000n),
                endTimeUnixNano: String(nowNs),
                attributes: [{ key: "http.request.method", value: { stringValue: "GET" } }],
              },
            ],
          },
        ],
      },
    ],
  };
}

describe("the Jaeger harness", () => {
  let jaeger: Jaeger;
  beforeAll(async () => {
    jaeger = await startJaeger();
  });
  afterAll(async () => {
    await jaeger?.stop();
  });

  it("stores a span sent over OTLP/HTTP and finds its trace by service, id and operation", async () => {
    const traceId = randomBytes(16).toString("hex");
    const spanId = randomBytes(8).toString("hex");
    const response = await fetch(jaeger.otlpHttpUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(otlpSpan("harness-check", "GET /harness", traceId, spanId)),
    });
    await response.arrayBuffer();
    expect(response.status).toBe(200);

    const traces = await jaeger.waitForTraces("harness-check", (ts) => ts.some((t) => t.traceID === traceId));
    expect(traces.map((t) => t.traceID)).toEqual([traceId]);
    const [trace] = traces;
    expect(trace?.spans).toHaveLength(1);
    const span = trace?.spans[0];
    expect(span?.spanID).toBe(spanId);
    expect(span?.operationName).toBe("GET /harness");
    expect(span?.references).toEqual([]);
    expect(trace?.processes[span?.processID ?? ""]?.serviceName).toBe("harness-check");
    expect(span?.tags).toContainEqual({ key: "http.request.method", type: "string", value: "GET" });

    expect(await jaeger.services()).toContain("harness-check");
    expect((await jaeger.trace(traceId))?.spans.map((s) => s.spanID)).toEqual([spanId]);
    expect(await jaeger.trace(randomBytes(16).toString("hex"))).toBeUndefined();
    expect(await jaeger.traces("harness-check", { limit: 10, lookback: "1h" })).toHaveLength(1);
    expect(await jaeger.traces("no-such-service")).toEqual([]);
  });

  it("runs a second Jaeger beside the first, on ports of its own", async () => {
    const second = await startJaeger();
    try {
      const addresses = (j: Jaeger) => [j.otlpGrpcAddress, j.otlpHttpUrl, j.zipkinUrl, j.queryUrl];
      const ports = (j: Jaeger) =>
        addresses(j).map((address) => /^(?:http:\/\/)?127\.0\.0\.1:(\d+)/.exec(address)?.[1]);
      const all = [...ports(jaeger), ...ports(second)];
      expect(all).not.toContain(undefined);
      expect(new Set(all).size).toBe(8);

      // Both answer, each with its own store: the first has the service, the second nothing yet.
      expect(await second.services()).toEqual([]);
      expect(await jaeger.services()).toContain("harness-check");
    } finally {
      await second.stop();
    }
  });
});
