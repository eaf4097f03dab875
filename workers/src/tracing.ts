// Tracing at the edge (issue 18): the worker continues the client's W3C trace or starts one,
// sampled as Envoy samples (schema/telemetry.ts), forwards `traceparent` with its own span as the
// parent, and exports one SERVER span per sampled request over OTLP/HTTP (JSON) in the background
// (ctx.waitUntil). Nothing here is on the request's critical path but the decision and the header:
// a collector that is slow, failing or down costs a request nothing.
import type { HeaderPair } from "../../host/index.ts";
import {
  CIRCUIT_HEADER,
  CLUSTER_HEADER,
  DENIED_HEADER,
  FAULT_HEADER,
  RULE_HEADER,
} from "../../schema/headers.ts";
import type { EdgeTracing, TraceTag } from "../../schema/telemetry.ts";
import { describe } from "./config-source.ts";

export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";
/** Envoy's header by which a client asks for its request to be traced (clientPercent). */
export const CLIENT_TRACE_ID = "x-client-trace-id";
/** The instrumentation scope of the worker's spans. */
export const SCOPE_NAME = "wasmesh-edge";

/** W3C Trace Context, version 00: exactly `00-<32 lower hex>-<16 lower hex>-<2 lower hex>`. */
const TRACEPARENT_V00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);

/** A client's trace context, when its `traceparent` is valid. */
export interface ParentContext {
  traceId: string;
  parentId: string;
  sampled: boolean;
}

/**
 * Parses a `traceparent` strictly (version 00 only): the exact length, lower-case hex, ids that are
 * not all zero. Two headers arrive joined by ", " and are invalid, as the spec wants. Anything else
 * is undefined: the worker then starts a new trace.
 */
export function parseTraceparent(value: string | null | undefined): ParentContext | undefined {
  if (value === null || value === undefined || value.length !== 55) return undefined;
  const match = TRACEPARENT_V00.exec(value);
  if (match === null) return undefined;
  const [, traceId, parentId, flags] = match as unknown as [string, string, string, string];
  if (traceId === ZERO_TRACE_ID || parentId === ZERO_SPAN_ID) return undefined;
  return { traceId, parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function hex(bytes: Uint8Array, from: number, to: number): string {
  let text = "";
  for (let i = from; i < to; i++) text += HEX[bytes[i] as number];
  return text;
}

/** Random ids (crypto.getRandomValues), never all zero. */
function randomIds(withTraceId: boolean): { traceId: string; spanId: string } {
  const bytes = crypto.getRandomValues(new Uint8Array(withTraceId ? 24 : 8));
  let spanId = hex(bytes, 0, 8);
  let traceId = withTraceId ? hex(bytes, 8, 24) : "";
  // One chance in 2^64 (2^128): draw again rather than send an invalid id.
  if (spanId === ZERO_SPAN_ID || traceId === ZERO_TRACE_ID) {
    const again = randomIds(withTraceId);
    spanId = spanId === ZERO_SPAN_ID ? again.spanId : spanId;
    traceId = traceId === ZERO_TRACE_ID ? again.traceId : traceId;
  }
  return { traceId, spanId };
}

/**
 * Envoy's decision for a request without a valid trace context. One draw in [0, 100) is compared
 * with each percentage, as Envoy compares one value derived from x-request-id: a request with
 * `x-client-trace-id` is traced under clientPercent (default 100), any other under randomPercent,
 * and either only if also under overallPercent (default 100), which therefore caps the others.
 */
export function sampleNew(sampling: EdgeTracing["sampling"], clientForced: boolean, draw: number): boolean {
  const percent = clientForced ? (sampling.clientPercent ?? 100) : sampling.randomPercent;
  return draw < percent && draw < (sampling.overallPercent ?? 100);
}

/** The worker's decision for one request, and (when sampled) its span. */
export interface RequestTrace {
  /** What the origin gets: `00-<trace id>-<the worker's span id>-<01|00>`. */
  readonly traceparent: string;
  /** A new trace: the client's `tracestate`, if any, belongs to no trace and is not forwarded. */
  readonly restarted: boolean;
  /** Present when the request is sampled. */
  readonly span: ServerSpan | undefined;
}

/** One isolate's tracing: the decision per request, and the exporters (one per collector). */
export class Tracer {
  readonly #exporters = new Map<string, SpanExporter>();
  readonly #log: (message: string) => void;
  /** For tests: the draw in [0, 100) compared with the percentages. */
  readonly #draw: () => number;

  constructor(log: (message: string) => void, draw: () => number = () => Math.random() * 100) {
    this.#log = log;
    this.#draw = draw;
  }

  /**
   * Decides for one request. `instance` is the worker's EDGE_NAME, its spans' service.instance.id
   * (service.name is the configuration's, the same for every worker, so that Jaeger shows one edge
   * service); `background` is ctx.waitUntil, called once for a sampled request and never for another.
   */
  begin(
    headers: Headers,
    tracing: EdgeTracing,
    instance: string,
    background: (work: Promise<unknown>) => void,
  ): RequestTrace {
    const parent = parseTraceparent(headers.get(TRACEPARENT));
    const sampled = parent
      ? parent.sampled
      : sampleNew(tracing.sampling, headers.has(CLIENT_TRACE_ID), this.#draw());
    const ids = randomIds(parent === undefined);
    const traceId = parent?.traceId ?? ids.traceId;
    const traceparent = `00-${traceId}-${ids.spanId}-${sampled ? "01" : "00"}`;
    if (!sampled) return { traceparent, restarted: parent === undefined, span: undefined };
    const span = new ServerSpan({
      traceId,
      spanId: ids.spanId,
      parentId: parent?.parentId,
      tracestate: parent ? (headers.get(TRACESTATE) ?? undefined) : undefined,
      tags: tracing.tags,
      exporter: this.#exporter(tracing.url, { serviceName: tracing.serviceName, instance }),
      background,
    });
    return { traceparent, restarted: parent === undefined, span };
  }

  #exporter(url: string, resource: ExportedResource): SpanExporter {
    const key = `${resource.serviceName} ${resource.instance ?? ""} ${url}`;
    let exporter = this.#exporters.get(key);
    if (exporter === undefined) {
      // A configuration change leaves the earlier collectors behind: keep only a few.
      if (this.#exporters.size >= 4) this.#exporters.delete(this.#exporters.keys().next().value as string);
      exporter = new SpanExporter(url, resource, this.#log);
      this.#exporters.set(key, exporter);
    }
    return exporter;
  }
}

type AttributeValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };
interface Attribute {
  key: string;
  value: AttributeValue;
}
/** A span as OTLP/JSON writes it (ids in hex, times as strings of unix nanoseconds). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  /** SPAN_KIND_SERVER */
  kind: 2;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Attribute[];
  /** STATUS_CODE_ERROR (2) for a 5xx; unset otherwise, as OpenTelemetry wants for servers. */
  status: { code?: 2; message?: string };
}

const str = (key: string, value: string): Attribute => ({ key, value: { stringValue: value } });
/** unix nanoseconds, as a string (workerd's clock has millisecond steps). */
const nanos = (ms: number) => `${Math.round(ms)}000000`;

interface SpanOptions {
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  tracestate: string | undefined;
  tags: readonly TraceTag[] | undefined;
  exporter: SpanExporter;
  background: (work: Promise<unknown>) => void;
}

/**
 * The worker's SERVER span of one sampled request. It ends when both are known: the response
 * (status and the filters' reply headers) and the end of the stream (a streamed body ends later).
 */
export class ServerSpan {
  readonly spanId: string;
  readonly #options: SpanOptions;
  readonly #startMs = Date.now();
  #endMs: number | undefined;
  #status: number | undefined;
  #responseHeaders: Headers | undefined;
  #error: string | undefined;
  #settle: () => void = () => undefined;
  #exported = false;
  method = "";
  path = "";
  authority = "";
  /** The request headers as the filters left them (the chosen cluster, the rule, tag sources). */
  request: readonly HeaderPair[] = [];

  constructor(options: SpanOptions) {
    this.#options = options;
    this.spanId = options.spanId;
    // Registered now, in the request's own context, and settled once the span is handed over.
    options.background(
      new Promise<void>((resolve) => {
        this.#settle = resolve;
      }),
    );
  }

  /** The answer the client got (a local reply of the filters too). */
  respond(status: number, headers: Headers): void {
    this.#status ??= status;
    this.#responseHeaders ??= headers;
    this.#finish();
  }

  /** The request failed inside the worker: the client gets workerd's 500. */
  fail(error: unknown): void {
    this.#error ??= describe(error);
    this.#status ??= 500;
    this.#finish();
  }

  /** The stream is over (its body sent, or the client gone). */
  end(): void {
    this.#endMs ??= Date.now();
    this.#finish();
  }

  #finish(): void {
    if (this.#exported || this.#endMs === undefined || this.#status === undefined) return;
    this.#exported = true;
    let span: OtlpSpan;
    try {
      span = this.#toOtlp(this.#status, this.#endMs);
    } catch {
      this.#settle();
      return;
    }
    const sending = this.#options.exporter.add(span);
    if (sending === undefined) this.#settle();
    else sending.then(this.#settle, this.#settle);
  }

  #toOtlp(status: number, endMs: number): OtlpSpan {
    const { traceId, spanId, parentId, tracestate, tags } = this.#options;
    const request = this.request;
    const header = (name: string): string | undefined => {
      for (const [key, value] of request) if (key === name) return value;
      return undefined;
    };
    const cluster = header(CLUSTER_HEADER);
    const rule = header(RULE_HEADER);
    const path = this.path.split("?", 1)[0] ?? "/";
    const attributes: Attribute[] = [
      str("http.request.method", this.method),
      str("url.path", path),
      str("server.address", this.authority),
      { key: "http.response.status_code", value: { intValue: String(status) } },
    ];
    if (cluster !== undefined) attributes.push(str("wasmesh.cluster", cluster));
    if (rule !== undefined) attributes.push(str("wasmesh.rule", rule));
    const reply = this.#responseHeaders;
    const denied = reply?.get(DENIED_HEADER);
    if (denied != null) attributes.push(str("wasmesh.denied", denied));
    const circuit = reply?.get(CIRCUIT_HEADER);
    if (circuit != null) attributes.push(str("wasmesh.circuit", circuit));
    const fault = reply?.get(FAULT_HEADER);
    if (fault != null) attributes.push(str("wasmesh.fault", fault));
    for (const tag of tags ?? []) {
      const value =
        "literal" in tag && tag.literal !== undefined
          ? tag.literal
          : "header" in tag && tag.header !== undefined
            ? (header(tag.header) ?? tag.default)
            : undefined;
      if (value !== undefined) attributes.push(str(tag.name, value));
    }
    const span: OtlpSpan = {
      traceId,
      spanId,
      name: `${this.method} ${rule ?? path}`,
      kind: 2,
      startTimeUnixNano: nanos(this.#startMs),
      endTimeUnixNano: nanos(Math.max(endMs, this.#startMs)),
      attributes,
      status: status >= 500 ? { code: 2, ...(this.#error ? { message: this.#error } : {}) } : {},
    };
    if (parentId !== undefined) span.parentSpanId = parentId;
    if (tracestate !== undefined && tracestate !== "") span.traceState = tracestate;
    return span;
  }
}

/** Spans that finish within this of one another go in one POST. */
const BATCH_WINDOW_MS = 10;
/** At most this many spans in one POST. */
const MAX_BATCH = 512;
/** Spans waiting for their batch; past this they are dropped (the collector does not keep up). */
const MAX_BUFFERED = 2048;
/** Exports under way at once; a batch beyond them is dropped. */
const MAX_IN_FLIGHT = 4;
/** An export that has not been answered within this has failed. */
export const EXPORT_TIMEOUT_MS = 3_000;
/** After a failed export, spans are dropped (not buffered) for this long, then exporting is tried again. */
export const RETRY_AFTER_MS = 5_000;

/** OpenTelemetry's resource of the worker's spans: the edge service, and which worker. */
export interface ExportedResource {
  serviceName: string;
  instance?: string;
}

/**
 * Spans of one isolate for one collector and service.name, posted together as OTLP/HTTP JSON.
 * Each batch is posted by the request whose span opened it, inside that request's waitUntil (a
 * request never waits on another's I/O, which workerd does not allow). Every failure is caught; an
 * outage is logged when it starts and when it ends, and spans are dropped while it lasts.
 */
export class SpanExporter {
  readonly #url: string;
  readonly #resource: { attributes: Attribute[] };
  readonly #log: (message: string) => void;
  readonly #timeoutMs: number;
  readonly #retryAfterMs: number;
  #buffer: OtlpSpan[] = [];
  #scheduled = false;
  #inFlight = 0;
  /** Set while the collector is failing: when to try again, and what was lost meanwhile. */
  #outage: { retryAtMs: number; dropped: number } | undefined;

  constructor(
    url: string,
    resource: ExportedResource,
    log: (message: string) => void,
    timing: { timeoutMs?: number; retryAfterMs?: number } = {},
  ) {
    this.#url = url;
    this.#resource = {
      attributes: [
        str("service.name", resource.serviceName),
        ...(resource.instance !== undefined ? [str("service.instance.id", resource.instance)] : []),
      ],
    };
    this.#log = log;
    this.#timeoutMs = timing.timeoutMs ?? EXPORT_TIMEOUT_MS;
    this.#retryAfterMs = timing.retryAfterMs ?? RETRY_AFTER_MS;
  }

  /**
   * Queues a span. Returns the export that will carry it when this call opened a batch (the
   * caller's waitUntil holds it), undefined when another request's batch will.
   */
  add(span: OtlpSpan): Promise<void> | undefined {
    const outage = this.#outage;
    if (outage !== undefined && Date.now() < outage.retryAtMs) {
      outage.dropped++;
      return undefined;
    }
    if (this.#buffer.length >= MAX_BUFFERED) {
      this.#dropped(1);
      return undefined;
    }
    this.#buffer.push(span);
    if (this.#scheduled) return undefined;
    this.#scheduled = true;
    return this.#flushSoon();
  }

  async #flushSoon(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, BATCH_WINDOW_MS));
    this.#scheduled = false;
    const spans = this.#buffer;
    this.#buffer = [];
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      this.#dropped(spans.length);
      return;
    }
    this.#inFlight++;
    try {
      for (let from = 0; from < spans.length; from += MAX_BATCH) {
        if (!(await this.#post(spans.slice(from, from + MAX_BATCH)))) {
          this.#dropped(Math.max(0, spans.length - from - MAX_BATCH));
          return;
        }
      }
    } finally {
      this.#inFlight--;
    }
  }

  /** One POST; false when it failed (the outage has been recorded). Never throws. */
  async #post(spans: OtlpSpan[]): Promise<boolean> {
    let problem: string;
    try {
      const body = JSON.stringify({
        resourceSpans: [{ resource: this.#resource, scopeSpans: [{ scope: { name: SCOPE_NAME }, spans }] }],
      });
      const response = await fetch(this.#url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      await response.body?.cancel().catch(() => undefined);
      if (response.ok) {
        this.#recovered();
        return true;
      }
      problem = `${this.#url} answered ${response.status}`;
    } catch (error) {
      problem = `${this.#url} is unreachable: ${describe(error)}`;
    }
    this.#failed(problem, spans.length);
    return false;
  }

  #dropped(count: number): void {
    if (this.#outage !== undefined) this.#outage.dropped += count;
  }

  #failed(problem: string, lost: number): void {
    const retryAtMs = Date.now() + this.#retryAfterMs;
    if (this.#outage === undefined) {
      this.#outage = { retryAtMs, dropped: lost };
      this.#log(
        `wasmesh edge: tracing: exporting spans failed: ${problem}; dropping spans, retrying every ${this.#retryAfterMs / 1000} s`,
      );
    } else {
      this.#outage.retryAtMs = retryAtMs;
      this.#outage.dropped += lost;
    }
  }

  #recovered(): void {
    const outage = this.#outage;
    if (outage === undefined) return;
    this.#outage = undefined;
    this.#log(
      `wasmesh edge: tracing: ${this.#url} accepts spans again (${outage.dropped} dropped meanwhile)`,
    );
  }
}
