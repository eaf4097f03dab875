// Tracing and access logs (issue 18), the parts said once for every place that reads them: the
// sampling percentages and tag sources of a Tracing resource (control-plane/resources/schema.ts),
// and the tracing section of the edge configuration (schema/edge-config.ts) that edge workers
// follow. The control plane translates the same Tracing into Envoy's tracing configuration and into
// this section, so a sidecar and an edge worker sample and tag alike.
import { type Static, Type } from "@sinclair/typebox";

const strict = { additionalProperties: false } as const;

const percent = (description: string, defaultValue: number) =>
  Type.Number({ minimum: 0, maximum: 100, default: defaultValue, description });

/** The default share of requests traced when nothing forces a decision: Istio's default. */
export const DEFAULT_RANDOM_PERCENT = 1;

/**
 * Envoy's three sampling knobs (RouteAction's `tracing`), with Envoy's meaning:
 * - randomPercent: the share of requests traced when no caller forced a decision;
 * - clientPercent: the share of requests carrying `x-client-trace-id` that are traced (the client
 *   forces tracing for itself);
 * - overallPercent: a cap applied after both, over every request.
 * Envoy resolves them to a hundredth of a percent (its draw is the x-request-id modulo 10,000).
 * A request that arrives with a sampled trace context (`traceparent` flag 01, B3 `x-b3-sampled: 1`)
 * keeps that decision, so one trace is never cut in the middle.
 */
export const Sampling = Type.Object(
  {
    randomPercent: percent(
      "share of requests traced when no caller forced a decision (0 to 100, to a hundredth of a percent)",
      DEFAULT_RANDOM_PERCENT,
    ),
    clientPercent: Type.Optional(
      percent("share of requests with an x-client-trace-id header that are traced", 100),
    ),
    overallPercent: Type.Optional(percent("a cap over every request, applied after the others", 100)),
  },
  { ...strict, description: "which requests start a trace" },
);
export type Sampling = Static<typeof Sampling>;

/**
 * A span tag: the value of a request header (with a default when it is absent), or a literal.
 * One object with exclusive fields rather than a union, so that a Kubernetes structural schema
 * can hold it; the resource's validation requires exactly one of header and literal.
 */
export const TraceTag = Type.Object(
  {
    name: Type.String({ pattern: "^[A-Za-z0-9_.:/-]{1,128}$", description: "the tag's name" }),
    header: Type.Optional(
      Type.String({
        pattern: "^[a-z0-9!#$%&'*+.^_`|~-]{1,256}$",
        description: "a request header (lower case) whose value becomes the tag",
      }),
    ),
    default: Type.Optional(
      Type.String({ maxLength: 256, description: "with header: the value when the header is absent" }),
    ),
    literal: Type.Optional(Type.String({ maxLength: 256, description: "a fixed value" })),
  },
  { ...strict, description: "a tag on every span: {name, header[, default]} or {name, literal}" },
);
export type TraceTag = Static<typeof TraceTag>;

/**
 * What an edge worker does for tracing: the edge configuration's optional `tracing`. The worker
 * continues the client's W3C trace (`traceparent`, keeping its sampled flag) or starts one with
 * these percentages, forwards `traceparent` with its own span as the parent, and exports its span
 * over OTLP/HTTP (JSON) to `url` in the background (`ctx.waitUntil`).
 */
export const EdgeTracing = Type.Object(
  {
    url: Type.String({
      pattern: "^https?://[^\\s?#]+$",
      maxLength: 2048,
      description: "OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces",
    }),
    /** OpenTelemetry's service.name of the worker's spans (EDGE_NAME overrides it per worker). */
    serviceName: Type.String({ minLength: 1, maxLength: 128 }),
    sampling: Sampling,
    tags: Type.Optional(Type.Array(TraceTag, { maxItems: 64 })),
  },
  { ...strict, description: "tracing at the edge: where spans go and which requests are traced" },
);
export type EdgeTracing = Static<typeof EdgeTracing>;

/**
 * The access log line when an AccessLog gives no format: Envoy's default fields, then the mesh's
 * own decision: the cluster the routing filter chose (service, subset), the filter's route that
 * matched (`<Route>/<rule>`, which the filter hands Envoy as the `wasmesh_route` property), the rule
 * that denied it and an open circuit (the filter's reply headers), and the request's trace context.
 */
export const DEFAULT_ACCESS_LOG_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" destination=%UPSTREAM_CLUSTER% route=%FILTER_STATE(wasm.wasmesh_route:PLAIN)% denied=%RESP(X-WASMESH-DENIED)% circuit=%RESP(X-WASMESH-CIRCUIT)% request_id=%REQ(X-REQUEST-ID)% traceparent=%REQ(TRACEPARENT)%\n';
