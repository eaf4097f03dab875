// An HTTP stream's context: drives the callbacks in Envoy's order and keeps what Envoy keeps
// (which maps and buffers the module may touch in which callback, pauses, local replies, failure).
import { BufferType, GRPC_UNAVAILABLE, MapType, Status, StreamType } from "./abi.ts";
import { BodyBuffer, concat, EMPTY_BUFFER, type HostBuffer } from "./buffers.ts";
import { Context } from "./context.ts";
import { HeaderMap, type HeaderPair } from "./headers.ts";
import type { ContextVm, LocalReplyRequest } from "./interfaces.ts";
import type { PropertyTree, PropertyValue } from "./properties.ts";
import type { RootContext } from "./root-context.ts";
import type {
  BodyResult,
  HeadersResult,
  LocalResponse,
  StreamAction,
  StreamOptions,
  TrailersResult,
  VmFailure,
} from "./types.ts";

export type Direction = "request" | "response";
type StopPoint = "headers" | "body" | "trailers";

/** One direction of the stream (request: decoding, response: encoding). */
class Side {
  headers: HeaderMap | null = null;
  /** Envoy keeps a pointer to a map only while the filter may use it; these flags are those pointers. */
  headersOpen = false;
  trailers: HeaderMap | null = null;
  trailersOpen = false;
  /** The chunk being processed, or the data buffered while the module stops in the body. */
  body: BodyBuffer | null = null;
  bodyOpen = false;
  /** Where the module stopped this direction; null when it flows. */
  stopped: StopPoint | null = null;
  /** Data that arrived while stopped at headers (Envoy buffers it and replays it on continue). */
  held: { body: Uint8Array | null; eos: boolean; trailers: HeaderPair[] | null } | null = null;
  /** Body bytes released past the plugin so far. */
  released: Uint8Array[] = [];
  /** How many times the module continued this direction after stopping it. */
  resumed = 0;
}

const EMPTY = new Uint8Array(0);

export class StreamContext extends Context {
  readonly rootContext: RootContext;
  private readonly options: StreamOptions;
  readonly request = new Side();
  readonly response = new Side();
  localResponse: LocalResponse | undefined;
  failure: VmFailure | undefined;
  /** The module reset the stream (proxy_close_stream). */
  reset = false;
  completed = false;
  /** Answered locally, failed or reset: the module sees nothing more of the upstream exchange. */
  private finished = false;
  private pendingReply: LocalReplyRequest | null = null;
  /** Made on the first proxy_set_property: most streams never set one. */
  private setProperties: Map<string, Uint8Array> | null = null;

  constructor(vm: ContextVm, id: number, root: RootContext, options: StreamOptions) {
    super(vm, id);
    this.rootContext = root;
    this.options = options;
  }

  get root(): RootContext {
    return this.rootContext;
  }

  get pluginName(): string {
    return this.rootContext.name;
  }

  /** proxy_on_context_create(id, rootId); Envoy skips it once the VM has failed. */
  create(): void {
    if (this.vm.failure) return;
    const result = this.vm.invoke(this, "proxy_on_context_create", [this.id, this.rootContext.id]);
    if (result.ok) this.created = true;
    else this.failStream();
  }

  // ---- What the ABI sees --------------------------------------------------------------------

  override mutableMap(type: number): HeaderMap | null {
    if (this.accessLogPhase) return null;
    switch (type) {
      case MapType.RequestHeaders:
        return this.request.headersOpen ? this.request.headers : null;
      case MapType.RequestTrailers:
        return this.request.trailersOpen ? this.request.trailers : null;
      case MapType.ResponseHeaders:
        return this.response.headersOpen ? this.response.headers : null;
      case MapType.ResponseTrailers:
        return this.response.trailersOpen ? this.response.trailers : null;
      default:
        return null;
    }
  }

  override constMap(type: number): HeaderMap | null {
    if (!this.accessLogPhase) return this.mutableMap(type) ?? super.constMap(type);
    // Access-log phase: the final maps, except request trailers, which Envoy does not keep.
    if (type === MapType.RequestHeaders) return this.request.headers;
    if (type === MapType.ResponseHeaders) return this.response.headers;
    if (type === MapType.ResponseTrailers) return this.response.trailers;
    return super.constMap(type);
  }

  override buffer(type: number): HostBuffer | null {
    if (type === BufferType.RequestBody || type === BufferType.ResponseBody) {
      const side = type === BufferType.RequestBody ? this.request : this.response;
      return side.bodyOpen && side.body ? side.body : EMPTY_BUFFER;
    }
    return super.buffer(type);
  }

  override propertyLayers(top: string): PropertyTree[] {
    const layers = [this.options.properties ?? {}];
    // The derived attributes only live under request.* and response.*: built only for those.
    if (top === "request" || top === "response") layers.push(this.derivedProperties(top));
    return [...layers, ...super.propertyLayers(top)];
  }

  override property(path: readonly string[]): Uint8Array | undefined {
    return this.setProperties?.get(path.join("\0"))?.slice() ?? super.property(path);
  }

  override setProperty(path: string, value: Uint8Array): Status {
    this.setProperties ??= new Map();
    this.setProperties.set(path, value.slice());
    return Status.Ok;
  }

  /** Envoy's CEL attributes derived from the stream's headers: request.* or response.*. */
  private derivedProperties(top: "request" | "response"): PropertyTree {
    const tree: Record<string, PropertyValue> = {};
    const request = this.request.headers;
    if (request && top === "request") {
      const path = request.get(":path");
      const query = path?.includes("?") ? path.slice(path.indexOf("?") + 1) : undefined;
      tree.request = definedOnly({
        path,
        url_path: path?.split("?")[0],
        query,
        host: request.get(":authority"),
        scheme: request.get(":scheme"),
        method: request.get(":method"),
        id: request.get("x-request-id"),
        useragent: request.get("user-agent"),
        referer: request.get("referer"),
        headers: firstValues(request),
      });
    }
    const response = this.response.headers;
    if (response && top === "response") {
      const code = Number(response.get(":status"));
      tree.response = definedOnly({
        code: Number.isInteger(code) ? code : undefined,
        code_details: this.localResponse?.details,
        headers: firstValues(response),
      });
    }
    return tree;
  }

  /** Envoy nulls its request pointers at once and continues after the callback. */
  override continueStream(type: number): Status {
    if (type === StreamType.Request || type === StreamType.Response) {
      this.request.headersOpen = false;
      this.request.trailersOpen = false;
      this.request.bodyOpen = false;
      const direction: Direction = type === StreamType.Request ? "request" : "response";
      this.vm.afterCall(() => this.resume(direction));
      return Status.Ok;
    }
    return super.continueStream(type);
  }

  override closeStream(type: number): Status {
    if (type === StreamType.Request || type === StreamType.Response) {
      this.vm.afterCall(() => {
        if (this.finished) return;
        this.finished = true;
        this.reset = true;
        this.request.stopped = this.response.stopped = null;
      });
    }
    return Status.Ok;
  }

  /** Envoy sends the reply after the callback returns; the first one wins. */
  override sendLocalResponse(reply: LocalReplyRequest): void {
    if (this.accessLogPhase || this.completed || this.finished || this.pendingReply) return;
    this.pendingReply = reply;
    this.vm.afterCall(() => this.deliverLocalReply());
  }

  // ---- Driving the callbacks ----------------------------------------------------------------

  private sideOf(direction: Direction): Side {
    return direction === "request" ? this.request : this.response;
  }

  /**
   * Whether the module may be called: not once the stream is finished, and not on a failed VM,
   * where Envoy fails the stream with a 503 (or lets it through when the plugin fails open).
   */
  private gate(): "call" | "pass" | "stop" {
    if (this.finished || this.completed) return "stop";
    if (this.vm.failure) {
      if (this.rootContext.failOpen) return "pass";
      this.failStream();
      return "stop";
    }
    return this.created ? "call" : "pass";
  }

  private action(direction: Direction): StreamAction {
    return this.finished || this.sideOf(direction).stopped !== null ? "pause" : "continue";
  }

  /** Adds what the embedder must act on (a local reply, a reset) to a callback's result. */
  private withOutcome<T extends { localResponse?: LocalResponse; reset?: boolean }>(result: T): T {
    if (this.localResponse) result.localResponse = this.localResponse;
    if (this.reset) result.reset = true;
    return result;
  }

  headers(
    direction: Direction,
    pairs: Iterable<readonly [string, string]>,
    endOfStream: boolean,
  ): HeadersResult {
    const side = this.sideOf(direction);
    const headers = new HeaderMap(pairs);
    if (!(direction === "response" && this.finished)) side.headers = headers;
    const gate = this.gate();
    if (gate === "call") {
      side.headersOpen = true;
      const result = this.vm.invoke(
        this,
        direction === "request" ? "proxy_on_request_headers" : "proxy_on_response_headers",
        [this.id, headers.size, endOfStream ? 1 : 0],
        0,
        (value, stopped) => {
          if (value !== 0 || stopped) side.stopped = "headers";
          else side.headersOpen = false;
        },
      );
      if (!result.ok) this.failStream();
    }
    return this.withOutcome<HeadersResult>({
      action: gate === "pass" ? "continue" : this.action(direction),
      headers: headers.pairs(),
    });
  }

  body(direction: Direction, data: Uint8Array, endOfStream: boolean): BodyResult {
    const side = this.sideOf(direction);
    const gate = this.gate();
    if (gate !== "call") {
      if (gate === "pass") side.released.push(data);
      return this.withOutcome<BodyResult>({
        action: gate === "pass" ? "continue" : "pause",
        body: gate === "pass" ? data : EMPTY,
      });
    }
    if (side.stopped === "headers" || side.stopped === "trailers") {
      // Stopped at headers (StopAllIteration): Envoy holds the data and replays it on continue.
      side.held ??= { body: null, eos: false, trailers: null };
      side.held.body = concat(side.held.body ?? EMPTY, data);
      side.held.eos = endOfStream;
      return this.withOutcome<BodyResult>({ action: "pause", body: EMPTY });
    }
    const before = side.released.length;
    this.callBody(direction, data, endOfStream);
    return this.withOutcome<BodyResult>({
      action: this.action(direction),
      body: joined(side.released.slice(before)),
    });
  }

  /** Calls on_*_body with the buffered data plus this chunk, as Envoy does while buffering. */
  private callBody(direction: Direction, data: Uint8Array, endOfStream: boolean): void {
    const side = this.sideOf(direction);
    const buffered = side.stopped === "body" && side.body ? side.body.bytes() : EMPTY;
    side.body = new BodyBuffer(concat(buffered, data));
    side.bodyOpen = true;
    const result = this.vm.invoke(
      this,
      direction === "request" ? "proxy_on_request_body" : "proxy_on_response_body",
      [this.id, side.body.bytes().byteLength, endOfStream ? 1 : 0],
      0,
      (value, stopped) => {
        if (value !== 0 || stopped) {
          side.stopped = "body";
          return;
        }
        side.stopped = null;
        this.releaseBody(side);
      },
    );
    if (!result.ok) this.failStream();
  }

  private releaseBody(side: Side): void {
    if (side.body && side.body.bytes().byteLength > 0) side.released.push(side.body.bytes());
    side.body = null;
    side.bodyOpen = false;
  }

  trailers(direction: Direction, pairs: Iterable<readonly [string, string]>): TrailersResult {
    const side = this.sideOf(direction);
    const trailers = new HeaderMap(pairs);
    side.trailers = trailers;
    const gate = this.gate();
    if (gate === "call" && side.stopped === "headers") {
      side.held ??= { body: null, eos: true, trailers: null };
      side.held.trailers = trailers.pairs();
      return this.withOutcome<TrailersResult>({ action: "pause", trailers: trailers.pairs() });
    }
    if (gate === "call") this.callTrailers(direction, trailers);
    const action = gate === "pass" ? "continue" : this.action(direction);
    return this.withOutcome<TrailersResult>({ action, trailers: trailers.pairs() });
  }

  private callTrailers(direction: Direction, trailers: HeaderMap): void {
    const side = this.sideOf(direction);
    side.trailers = trailers;
    side.trailersOpen = true;
    const result = this.vm.invoke(
      this,
      direction === "request" ? "proxy_on_request_trailers" : "proxy_on_response_trailers",
      [this.id, trailers.size],
      0,
      (value, stopped) => {
        if (value !== 0 || stopped) {
          side.stopped = "trailers";
          return;
        }
        side.trailersOpen = false;
        // Trailers continuing release what the module was buffering.
        if (side.stopped === "body") this.releaseBody(side);
        side.stopped = null;
      },
    );
    if (!result.ok) this.failStream();
  }

  /** proxy_continue_stream took effect: release what was stopped and replay what was held. */
  private resume(direction: Direction): void {
    const side = this.sideOf(direction);
    if (direction === "response") {
      side.headersOpen = false;
      side.trailersOpen = false;
    }
    const stoppedAt = side.stopped;
    if (stoppedAt === null || this.finished) return;
    side.stopped = null;
    side.resumed++;
    if (stoppedAt === "body" || stoppedAt === "trailers") this.releaseBody(side);
    const held = side.held;
    side.held = null;
    if (stoppedAt === "headers" && held) {
      if (held.body && this.gate() === "call") this.callBody(direction, held.body, held.eos);
      // Trailers reach the module even while it buffers the body, as in Envoy.
      if (held.trailers && this.gate() === "call") this.callTrailers(direction, new HeaderMap(held.trailers));
    }
  }

  /**
   * Sends the local reply the module asked for. Like Envoy, the reply then passes through the
   * plugin's own response callbacks (unless the upstream response had already reached them).
   */
  private deliverLocalReply(): void {
    const reply = this.pendingReply;
    this.pendingReply = null;
    if (!reply || this.finished || this.completed) return;
    const headers = new HeaderMap([[":status", String(reply.status)]]);
    for (const [name, value] of reply.headers) headers.add(name, value);
    if (reply.body.byteLength > 0) {
      // Envoy's local reply sets content-length and, unless given, a text/plain content-type.
      headers.replace("content-length", String(reply.body.byteLength));
      if (!headers.has("content-type")) headers.add("content-type", "text/plain");
    }
    const upstreamResponseSeen = this.response.headers !== null;
    this.finished = true;
    for (const side of [this.request, this.response]) {
      side.stopped = null;
      side.held = null;
    }
    const base = {
      details: reply.details,
      ...(reply.grpcStatus !== undefined ? { grpcStatus: reply.grpcStatus } : {}),
    };
    this.localResponse = { status: reply.status, headers: headers.pairs(), body: reply.body, ...base };
    this.response.headers = headers;
    if (upstreamResponseSeen) return;

    const side = this.response;
    side.headersOpen = true;
    const eos = reply.body.byteLength === 0;
    let result = this.vm.invoke(this, "proxy_on_response_headers", [this.id, headers.size, eos ? 1 : 0]);
    side.headersOpen = false;
    let body = reply.body;
    if (result.ok && !eos) {
      side.body = new BodyBuffer(body);
      side.bodyOpen = true;
      result = this.vm.invoke(this, "proxy_on_response_body", [this.id, body.byteLength, 1]);
      body = side.body.bytes();
      side.body = null;
      side.bodyOpen = false;
    }
    side.stopped = null;
    if (!result.ok) {
      this.failStream();
      return;
    }
    const status = Number(headers.get(":status"));
    this.localResponse = {
      status: Number.isInteger(status) ? status : reply.status,
      headers: headers.pairs(),
      body,
      ...base,
    };
  }

  /** Envoy's failStream: a 503 local reply with details "wasm_fail_stream", once. */
  failStream(): void {
    if (this.failure) return;
    this.failure = this.vm.failure ?? {
      callback: "",
      contextId: this.id,
      message: "the VM failed",
    };
    this.finished = true;
    this.pendingReply = null;
    for (const side of [this.request, this.response]) {
      side.stopped = null;
      side.held = null;
      side.headersOpen = side.trailersOpen = side.bodyOpen = false;
    }
    this.localResponse = {
      status: 503,
      headers: [[":status", "503"]],
      body: EMPTY,
      details: "wasm_fail_stream",
      grpcStatus: GRPC_UNAVAILABLE,
    };
    this.response.headers = new HeaderMap(this.localResponse.headers);
  }

  /** The end of the stream: proxy_on_log (access-log phase), proxy_on_done, proxy_on_delete. */
  complete(): void {
    if (this.completed) return;
    this.completed = true;
    this.pendingReply = null;
    if (this.created && !this.vm.failure) {
      this.accessLogPhase = true;
      const logged = this.vm.invoke(this, "proxy_on_log", [this.id]);
      this.accessLogPhase = false;
      if (logged.ok) {
        const done = this.vm.invoke(this, "proxy_on_done", [this.id], 1);
        if (done.ok) this.vm.invoke(this, "proxy_on_delete", [this.id]);
      }
      if (this.vm.failure && !this.failure) this.failure = this.vm.failure;
    }
    this.vm.contexts.delete(this.id);
  }

  releasedBody(direction: Direction): Uint8Array {
    return joined(this.sideOf(direction).released);
  }

  /** The released bytes not taken yet, then forgotten: a streaming proxy keeps no copy of the body. */
  takeReleasedBody(direction: Direction): Uint8Array {
    const side = this.sideOf(direction);
    const taken = side.released.length === 1 ? (side.released[0] as Uint8Array) : joined(side.released);
    side.released = [];
    return taken;
  }
}

function joined(chunks: Uint8Array[]): Uint8Array {
  return chunks.reduce((all, chunk) => concat(all, chunk), EMPTY);
}

function firstValues(map: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of map.pairs()) if (!(name in out)) out[name] = value;
  return out;
}

function definedOnly(tree: Record<string, PropertyValue | undefined>): PropertyTree {
  return Object.fromEntries(Object.entries(tree).filter(([, v]) => v !== undefined)) as PropertyTree;
}
