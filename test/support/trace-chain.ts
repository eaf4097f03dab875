// A call chain of apps behind agent-run sidecars for the tracing proofs (test/envoy/tracing.test.ts,
// test/workers/tracing-chain.test.ts): each app calls the next service through its own sidecar's
// outbound listener and passes the trace headers on, as bookinfo's apps (and OpenTelemetry's
// instrumentation) do.
import http from "node:http";
import type { CanaryMesh } from "./canary-mesh.ts";
import type { RecordedRequest, UpstreamOptions } from "./upstreams.ts";

/** The headers an app passes on to the calls it makes for a request. */
export const PROPAGATED: readonly string[] = [
  "traceparent",
  "tracestate",
  "x-request-id",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-flags",
  "b3",
  "x-client-trace-id",
  "end-user",
];

/** A GET on loopback with these headers, Host among them (fetch would put the URL's in its place). */
export function get(port: number, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path, headers, agent: false }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode ?? 0));
    });
    request.on("error", reject);
  });
}

/** The app of agent `self`: it calls `next` through that agent's sidecar before it answers. */
export function callerApp(mesh: () => CanaryMesh, self: string, next: string): Omit<UpstreamOptions, "name"> {
  return {
    before: async (request: RecordedRequest) => {
      const { outbound } = await mesh().agent(self).ports();
      const headers: Record<string, string> = { host: next };
      for (const name of PROPAGATED) {
        const value = request.headers[name];
        if (typeof value === "string") headers[name] = value;
      }
      return get(outbound, request.path, headers);
    },
  };
}

/** A fresh W3C trace context, as an edge or an instrumented client would send it. */
export function newTraceparent(sampled: boolean): { header: string; traceId: string; spanId: string } {
  const hex = (bytes: number) =>
    [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const traceId = hex(16);
  const spanId = hex(8);
  return { header: `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`, traceId, spanId };
}
