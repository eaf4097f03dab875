// One request through the mesh filters and on to an origin: request phase, origin chosen from the
// routing header, fetch with both bodies streamed through the plugin, response phase.
import type { Direction, HeaderPair, HttpStream, LocalResponse, ProxyWasmHost } from "../../host/index.ts";
import { CLUSTER_HEADER, ROUTING_HEADERS } from "../../schema/headers.ts";
import type { Generation } from "./edge-mesh.ts";
import { fetchUpstream, takeRouterPolicy } from "./router.ts";
import { type RequestTrace, TRACEPARENT, TRACESTATE } from "./tracing.ts";

/** Set by the worker itself, in place of any the client sent. */
/**
 * Not passed to an origin: what the worker sets itself, and the mesh's routing decision, which
 * Envoy's outbound route removes too (schema/headers.ts).
 */
const NOT_FORWARDED: ReadonlySet<string> = new Set([
  "x-forwarded-host",
  "x-forwarded-proto",
  ...ROUTING_HEADERS,
]);
/** Statuses whose responses cannot carry a body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
const EMPTY = new Uint8Array(0);

/**
 * Opens the stream before its first await, so `generation` must be the one in force. `trace`, when
 * the configuration has tracing: the worker's decision (its `traceparent` goes to the origin) and,
 * for a sampled request, the span that ends with the stream.
 */
export async function proxyThroughMesh(
  request: Request,
  generation: Generation,
  trace?: RequestTrace,
): Promise<Response> {
  const host = generation.host;
  const span = trace?.span;
  let opened: ReturnType<Generation["open"]>;
  try {
    // workerd gives an isolate no timers between requests: traffic drives the ticks that fell due.
    host.runDueTicks();
    opened = generation.open();
  } catch (error) {
    span?.fail(error);
    span?.end();
    throw error;
  }
  const { stream } = opened;
  const done = span
    ? () => {
        opened.done();
        span.end();
      }
    : opened.done;
  // A client that goes away ends the stream without a response; the breaker does not count it.
  request.signal?.addEventListener("abort", done);
  try {
    const response = await exchange(request, generation, host, stream, done, trace);
    span?.respond(response.status, response.headers);
    return response;
  } catch (error) {
    done();
    span?.fail(error);
    throw error;
  }
}

async function exchange(
  request: Request,
  generation: Generation,
  host: ProxyWasmHost,
  stream: HttpStream,
  done: () => void,
  trace: RequestTrace | undefined,
): Promise<Response> {
  const url = new URL(request.url);
  const authority = request.headers.get("host") ?? url.host;
  const scheme = url.protocol.slice(0, -1);
  const pairs: HeaderPair[] = [
    [":method", request.method],
    [":scheme", scheme],
    [":authority", authority],
    [":path", url.pathname + url.search],
  ];
  request.headers.forEach((value, name) => {
    if (name !== "host") pairs.push([name, value]);
  });
  const requestBody = request.body;

  const head = stream.requestHeaders(pairs, requestBody === null);
  if (head.action === "pause") await untilResumed(host, () => stream.paused);
  const span = trace?.span;
  if (span) {
    span.method = request.method;
    span.path = url.pathname;
    span.authority = authority;
    // As the filters leave them, a local reply's request too: the cluster, the rule, tag sources.
    span.request = stream.requestHeaderPairs;
  }
  const early = endedByFilter(stream, done);
  if (early) return early;
  if (stream.paused)
    return reply(stream, done, 503, "wasmesh edge: a filter holds the request and nothing resumes it\n");

  const forwarded = stream.requestHeaderPairs;
  const cluster = first(forwarded, CLUSTER_HEADER);
  // As Envoy's cluster_header route does: no header is no route (404), an unknown cluster a 503,
  // and a cluster without endpoints (here: origins) Envoy's 503 "no healthy upstream".
  if (cluster === undefined) return reply(stream, done, 404, "wasmesh edge: no route matches this request\n");
  const origins = generation.originsOf(cluster);
  if (origins === undefined)
    return reply(stream, done, 503, `wasmesh edge: cluster ${cluster} is not in the configuration\n`);
  if (origins.length === 0)
    return reply(stream, done, 503, `no healthy upstream: cluster ${cluster} has no origins\n`);

  const { policy, forward } = takeRouterPolicy(forwarded);
  // fetch sets Host from the origin's URL; the origin still learns what the client asked for
  // (in place of any X-Forwarded-Host or -Proto the client sent), and not how the mesh routed it.
  const toOrigin = forward.filter(([name]) => !NOT_FORWARDED.has(name));
  toOrigin.push(["x-forwarded-host", authority], ["x-forwarded-proto", scheme]);
  if (trace) traced(toOrigin, trace);
  // One constructor call rather than a call into the runtime per header.
  const headers = new Headers(toOrigin);
  const method = first(forwarded, ":method") ?? request.method;
  const path = first(forwarded, ":path") ?? "/";
  let body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null = null;
  if (requestBody !== null && isSmall(request.headers.get("content-length"))) {
    const chunk = new Uint8Array(await request.arrayBuffer());
    try {
      body = await filterChunk(stream, "request", host, chunk);
    } catch (error) {
      // Nothing has gone to the origin yet: a filter's local reply on the body is the answer.
      const ended = endedByFilter(stream, done);
      if (ended) return ended;
      throw error;
    }
  } else if (requestBody !== null) {
    body = throughFilter(requestBody, stream, "request", host, first(forwarded, "content-length"));
  }

  const outcome = await fetchUpstream(
    // Each attempt (a retry too) goes to the cluster's next origin.
    (signal) =>
      fetch(originUrl(generation.origin(cluster) ?? "", path), {
        method,
        headers,
        body,
        redirect: "manual",
        signal,
      }),
    policy,
    // A body read whole can be sent again; a streamed one is gone once sent.
    !(body instanceof ReadableStream),
  );
  if (outcome.kind !== "response") {
    const ended = endedByFilter(stream, done);
    if (ended) return ended;
    // Envoy's own answers; the breaker counts them as failures.
    if (outcome.kind === "timeout") return reply(stream, done, 504, "upstream request timeout\n");
    return reply(
      stream,
      done,
      503,
      `upstream connect error or disconnect/reset before headers: ${outcome.reason}\n`,
    );
  }
  const upstream = outcome.response;

  const responsePairs: HeaderPair[] = [[":status", String(upstream.status)]];
  upstream.headers.forEach((value, name) => {
    responsePairs.push([name, value]);
  });
  const upstreamBody = NULL_BODY_STATUSES.has(upstream.status) ? null : upstream.body;
  if (upstreamBody === null) await upstream.body?.cancel();
  const answer = stream.responseHeaders(responsePairs, upstreamBody === null);
  if (answer.action === "pause") await untilResumed(host, () => stream.responsePaused);
  const replaced = endedByFilter(stream, done);
  if (replaced) {
    await upstream.body?.cancel();
    return replaced;
  }
  if (upstreamBody === null) {
    done();
    return toClient(stream, upstream, responsePairs, null);
  }
  if (isSmall(upstream.headers.get("content-length"))) {
    let filtered: BodyInit;
    try {
      filtered = await filterChunk(stream, "response", host, new Uint8Array(await upstream.arrayBuffer()));
    } catch (error) {
      // The origin broke off, or a filter ended the stream: as when streaming, the headers go and
      // the body breaks.
      filtered = broken(error);
    }
    done();
    return toClient(stream, upstream, responsePairs, filtered);
  }
  const length = first(stream.responseHeaderPairs, "content-length");
  return toClient(
    stream,
    upstream,
    responsePairs,
    throughFilter(upstreamBody, stream, "response", host, length, done),
  );
}

/**
 * The origin's answer as the filters leave it. Most leave the headers alone: then the origin's
 * Headers are copied inside the runtime, rather than rebuilt from pairs, a call per header.
 */
function toClient(
  stream: HttpStream,
  upstream: Response,
  given: readonly HeaderPair[],
  body: BodyInit | null,
): Response {
  const pairs = stream.responseHeaderPairs;
  const unchanged =
    pairs.length === given.length &&
    pairs.every(([name, value], i) => name === given[i]?.[0] && value === given[i]?.[1]);
  if (!unchanged) return toResponse(pairs, body);
  return new Response(NULL_BODY_STATUSES.has(upstream.status) ? null : body, {
    status: upstream.status,
    headers: upstream.headers,
  });
}

/**
 * Bodies of a known length up to this are read whole and go through the body callbacks as one
 * chunk with end_of_stream, as a small body usually reaches Envoy's filters (one HTTP/2 frame is
 * 16 KiB). Streaming them through JavaScript costs the isolate more than all the filters together
 * (npm run bench:worker), and a request body read whole can be retried. Anything larger, or of
 * unknown length, streams.
 */
const SMALL_BODY_BYTES = 16 * 1024;

function isSmall(contentLength: string | null): boolean {
  return (
    contentLength !== null && /^\d{1,5}$/.test(contentLength) && Number(contentLength) <= SMALL_BODY_BYTES
  );
}

/** A body that fails when read: the answer's headers stand, its body breaks off. */
function broken(error: unknown): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.error(error);
    },
  });
}

/**
 * The body, chunk by chunk, through the plugin's body callbacks: nothing is buffered unless a
 * filter holds the body, and the stream forgets each chunk once it has gone on. One loop reads the
 * source and writes into one of workerd's native streams (no JavaScript stream to pump on the other
 * side): a FixedLengthStream while the Content-Length survived the filters, so a body of known
 * length keeps it (origins that need a length, clients showing progress, HEAD); a filter that
 * changes a body's size removes Content-Length, as it must in Envoy.
 */
function throughFilter(
  source: ReadableStream<Uint8Array>,
  stream: HttpStream,
  direction: Direction,
  host: ProxyWasmHost,
  contentLength: string | undefined,
  onEnd?: () => void,
): ReadableStream<Uint8Array> {
  const { readable, writable } = passThrough(contentLength);
  const reader = source.getReader();
  const writer = writable.getWriter();
  // The consumer went away (client gone, fetch failed): stop reading the source at once, even
  // while a read is pending on a slow one.
  writer.closed.catch((reason: unknown) => {
    onEnd?.();
    reader.cancel(reason).catch(() => undefined);
  });
  pump(reader, writer, stream, direction, host).then(
    () => onEnd?.(),
    (error: unknown) => {
      // The source broke off (origin reset, route timeout) or a filter ended the stream mid-body:
      // headers have gone already, so like Envoy the only answer left is to break the stream.
      onEnd?.();
      writer.abort(error).catch(() => undefined);
      reader.cancel(error).catch(() => undefined);
    },
  );
  return readable;
}

async function pump(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  stream: HttpStream,
  direction: Direction,
  host: ProxyWasmHost,
): Promise<void> {
  for (;;) {
    const { done, value } = await reader.read();
    const released = await filterChunk(stream, direction, host, value ?? EMPTY, done);
    // Resolves as the consumer takes it: the origin (or client) sets the pace.
    if (released.byteLength > 0) await writer.write(released);
    if (done) return writer.close();
  }
}

/**
 * One chunk through the body callbacks, and what the filters release (of it and of what they held
 * before). Throws when a filter ends the stream: a local reply or a reset.
 */
async function filterChunk(
  stream: HttpStream,
  direction: Direction,
  host: ProxyWasmHost,
  chunk: Uint8Array,
  endOfStream = true,
): Promise<Uint8Array<ArrayBuffer>> {
  const result =
    direction === "request"
      ? stream.requestBody(chunk, endOfStream)
      : stream.responseBody(chunk, endOfStream);
  const paused = () => (direction === "request" ? stream.paused : stream.responsePaused);
  // A filter holding the body may release it later, from a tick.
  if (endOfStream && paused()) await untilResumed(host, paused);
  if (result.localResponse || result.reset || stream.localResponse || stream.reset) {
    throw new Error(`wasmesh edge: a filter ended the stream during the ${direction} body`);
  }
  // The host's chunks live in plain ArrayBuffers (its VMs have no shared memory).
  return stream.takeReleasedBody(direction) as Uint8Array<ArrayBuffer>;
}

/** workerd's native pass-through streams (absent elsewhere; TransformStream stands in). */
type NativeStreamClass<A extends unknown[]> = new (...args: A) => TransformStream<Uint8Array, Uint8Array>;
const native = globalThis as {
  FixedLengthStream?: NativeStreamClass<[number]>;
  IdentityTransformStream?: NativeStreamClass<[]>;
};

function passThrough(contentLength: string | undefined): TransformStream<Uint8Array, Uint8Array> {
  const length = Number(contentLength ?? Number.NaN);
  if (native.FixedLengthStream && Number.isSafeInteger(length) && length >= 0) {
    return new native.FixedLengthStream(length);
  }
  return native.IdentityTransformStream ? new native.IdentityTransformStream() : new TransformStream();
}

/** Fires ticks as they fall due until the stream goes on, or until no tick could move it. */
async function untilResumed(host: ProxyWasmHost, paused: () => boolean): Promise<void> {
  while (paused()) {
    const wait = host.nextTickDelayMs();
    if (wait === undefined) return;
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(wait))));
    host.runDueTicks();
  }
}

/** A local reply (deny, open circuit, fault) or a reset: answered here, no origin involved. */
function endedByFilter(stream: HttpStream, done: () => void): Response | undefined {
  const local: LocalResponse | undefined = stream.localResponse;
  if (local) {
    done();
    return toResponse(local.headers, local.body.byteLength > 0 ? local.body.slice() : null);
  }
  if (stream.reset) {
    done();
    return new Response("wasmesh edge: a filter reset the stream\n", { status: 502 });
  }
  return undefined;
}

/** A reply made by the worker, through the response phase like Envoy's own local replies. */
function reply(stream: HttpStream, done: () => void, status: number, text: string): Response {
  const body = new TextEncoder().encode(text);
  stream.responseHeaders(
    [
      [":status", String(status)],
      ["content-type", "text/plain; charset=utf-8"],
      ["content-length", String(body.byteLength)],
    ],
    false,
  );
  stream.responseBody(body, true);
  const ended = endedByFilter(stream, done);
  if (ended) return ended;
  const released = stream.takeReleasedBody("response");
  done();
  return toResponse(stream.responseHeaderPairs, released.slice());
}

function toResponse(pairs: readonly HeaderPair[], body: BodyInit | null): Response {
  const status = Number(first(pairs, ":status"));
  const headers: [string, string][] = [];
  for (const [name, value] of pairs) if (!name.startsWith(":")) headers.push([name, value]);
  return new Response(NULL_BODY_STATUSES.has(status) ? null : body, { status, headers });
}

/**
 * The worker's trace context in place of the client's: its own `traceparent` (the origin's parent
 * is the worker's span, sampled or not, so the mesh's sidecars follow the edge's decision). The
 * client's `tracestate` goes on unchanged with the trace it belongs to, and is dropped with a
 * trace the worker restarted (W3C Trace Context: a tracestate without a valid traceparent is void).
 */
function traced(toOrigin: [string, string][], trace: RequestTrace): void {
  let kept = 0;
  for (const pair of toOrigin) {
    const name = pair[0];
    if (name === TRACEPARENT || (trace.restarted && name === TRACESTATE)) continue;
    toOrigin[kept++] = pair;
  }
  toOrigin.length = kept;
  toOrigin.push([TRACEPARENT, trace.traceparent]);
}

function first(pairs: readonly HeaderPair[], name: string): string | undefined {
  for (const [key, value] of pairs) if (key === name) return value;
  return undefined;
}

/** The origin's base URL (it may carry a path prefix) followed by the request's path and query. */
function originUrl(origin: string, path: string): string {
  return (origin.endsWith("/") ? origin.slice(0, -1) : origin) + (path.startsWith("/") ? path : `/${path}`);
}
