// One HTTP request/response through a plugin, driven by the embedder in Envoy's order:
// request headers, body, trailers; response headers, body, trailers; complete().
import type { HeaderInput, HeaderPair } from "./headers.ts";
import { toBytes } from "./root-context.ts";
import type { Direction, StreamContext } from "./stream-context.ts";
import type { BodyResult, HeadersResult, LocalResponse, TrailersResult, VmFailure } from "./types.ts";

export class HttpStream {
  readonly #context: StreamContext;

  /** Made by Plugin.newHttpStream. */
  constructor(context: StreamContext) {
    this.#context = context;
  }

  get contextId(): number {
    return this.#context.id;
  }

  /** proxy_on_request_headers. endOfStream defaults to true (a request without body). */
  requestHeaders(headers: HeaderInput, endOfStream = true): HeadersResult {
    return this.#context.headers("request", headers, endOfStream);
  }

  requestBody(body: Uint8Array | string, endOfStream = true): BodyResult {
    return this.#context.body("request", toBytes(body), endOfStream);
  }

  requestTrailers(trailers: HeaderInput): TrailersResult {
    return this.#context.trailers("request", trailers);
  }

  /** proxy_on_response_headers (the upstream's response). endOfStream defaults to true. */
  responseHeaders(headers: HeaderInput, endOfStream = true): HeadersResult {
    return this.#context.headers("response", headers, endOfStream);
  }

  responseBody(body: Uint8Array | string, endOfStream = true): BodyResult {
    return this.#context.body("response", toBytes(body), endOfStream);
  }

  responseTrailers(trailers: HeaderInput): TrailersResult {
    return this.#context.trailers("response", trailers);
  }

  /** The stream is over: proxy_on_log, proxy_on_done, proxy_on_delete. */
  complete(): void {
    this.#context.complete();
  }

  /** The plugin stopped the request and has not continued it (proxy_continue_stream). */
  get paused(): boolean {
    return this.#context.request.stopped !== null;
  }

  get responsePaused(): boolean {
    return this.#context.response.stopped !== null;
  }

  /** How many times the plugin continued the request after stopping it. */
  get resumed(): number {
    return this.#context.request.resumed;
  }

  get localResponse(): LocalResponse | undefined {
    return this.#context.localResponse;
  }

  /** Set when the VM failed while serving this stream (or before it): the stream got a 503. */
  get failure(): VmFailure | undefined {
    return this.#context.failure;
  }

  /** The plugin reset the stream (proxy_close_stream). */
  get reset(): boolean {
    return this.#context.reset;
  }

  /** The request headers as they stand (what the upstream gets once the request continues). */
  get requestHeaderPairs(): HeaderPair[] {
    return this.#context.request.headers?.pairs() ?? [];
  }

  /** The response headers as they stand (the local reply's, after one). */
  get responseHeaderPairs(): HeaderPair[] {
    return this.#context.response.headers?.pairs() ?? [];
  }

  get requestTrailerPairs(): HeaderPair[] {
    return this.#context.request.trailers?.pairs() ?? [];
  }

  get responseTrailerPairs(): HeaderPair[] {
    return this.#context.response.trailers?.pairs() ?? [];
  }

  /** Body bytes the plugin has let through so far in one direction (since the last take). */
  releasedBody(direction: Direction): Uint8Array {
    return this.#context.releasedBody(direction);
  }

  /**
   * Body bytes released since the last take (by a body call or by a module continuing the stream
   * later), which the stream then forgets: what an embedder streaming the body forwards next.
   */
  takeReleasedBody(direction: Direction): Uint8Array {
    return this.#context.takeReleasedBody(direction);
  }

  /** How often this stream called a foreign function (by name), e.g. "clear_route_cache". */
  foreignCalls(name: string): number {
    return this.#context.foreignCalls(name);
  }
}
