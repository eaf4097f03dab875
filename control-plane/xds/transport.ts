// ADS's transport: gRPC over HTTP/2, in plain text (h2c) or over TLS (ALPN h2; wasmesh server
// --tls), on node:http2, for bidirectional streaming methods only, which is all xDS needs.
//
// Not grpc-js's server: it frames every message it sends into a new buffer of its own
// (serializeMessage: allocate length + 5, copy the message in), with no way to hand it a message
// framed already. A push sends the same response to every proxy of a class, so that was one
// allocation and one copy of the response per stream: at 1,000–5,000 sidecars with the module
// delivered locally, 11–13% of the control plane's push time and much of its garbage. Here a
// response is framed once when it is encoded (stream.ts) and those same bytes are written to every
// stream that is sent it.
//
// What it does of gRPC (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): a request
// whose content-type is not application/grpc… gets HTTP 415; an unknown method, or a grpc-encoding
// other than identity (requests are not compressed), a trailers-only UNIMPLEMENTED; request
// messages over MAX_REQUEST_BYTES end the call with RESOURCE_EXHAUSTED, unreadable ones with
// INTERNAL. A call ends with grpc-status and grpc-message (percent-encoded) in trailers, or in the
// headers when nothing was sent (trailers-only). Deadlines (grpc-timeout) are not enforced: ADS
// streams have none.
//
// Responses are gzip-compressed for a client whose grpc-accept-encoding lists gzip (the data-plane
// agent's grpc-js client does; Envoy's own does not, and gets identity): the call answers with
// grpc-encoding gzip and compresses each message worth it, once per response however many streams
// get it (codec.ts gzipFramed). The module bytes left the pushes with local delivery; what is left
// of a route change, the routing filter's configuration, is repetitive JSON that gzip shrinks about
// 16 times.
import { once } from "node:events";
import * as http2 from "node:http2";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { FramingError, gzipFramed, MAX_REQUEST_BYTES, MessageReader } from "./codec.ts";

export interface CallStatus {
  code: GrpcStatus;
  details: string;
}

/** What a method's handler hears of its call. */
export interface CallListener<Req> {
  message(request: Req): void;
  /** The client half-closed (sends no more). */
  halfClose(): void;
  /** The call is over, for whatever reason (finished here, cancelled, reset, connection lost). Once. */
  closed(): void;
}

export interface StreamingMethod<Req> {
  decode(bytes: Uint8Array): Req;
  open(call: GrpcCall): CallListener<Req>;
}

const RESPONSE_HEADERS = {
  [http2.constants.HTTP2_HEADER_STATUS]: 200,
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc+proto",
  "grpc-accept-encoding": "identity",
};
const GZIP_RESPONSE_HEADERS = { ...RESPONSE_HEADERS, "grpc-encoding": "gzip" };

/** Whether a client's grpc-accept-encoding (e.g. "identity,deflate,gzip") lists gzip. */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  return values.some((value) => value.split(",").some((coding) => coding.trim().toLowerCase() === "gzip"));
}

function statusHeaders(status: CallStatus): Record<string, string> {
  // grpc-message is percent-encoded (as grpc-js does it: clients decode it with decodeURI).
  return { "grpc-status": String(status.code), "grpc-message": encodeURI(status.details) };
}

/** One call: a server-side HTTP/2 stream. */
export class GrpcCall {
  /** The client's address and port (as grpc-js's getPeer() says it), or "unknown". */
  readonly peer: string;
  private readonly stream: http2.ServerHttp2Stream;
  private responded = false;
  private finished = false;
  private trailers: Record<string, string> | undefined;

  /** Messages go gzip-compressed where that pays (the client accepts gzip). */
  readonly gzip: boolean;
  private readonly headers: http2.IncomingHttpHeaders;

  constructor(stream: http2.ServerHttp2Stream, gzip = false, headers: http2.IncomingHttpHeaders = {}) {
    this.stream = stream;
    this.gzip = gzip;
    this.headers = headers;
    const socket = stream.session?.socket;
    this.peer = socket?.remoteAddress
      ? socket.remotePort
        ? `${socket.remoteAddress}:${socket.remotePort}`
        : socket.remoteAddress
      : "unknown";
  }

  /** A metadata entry the client sent with the call (lower-case name; the first value of several). */
  metadata(name: string): string | undefined {
    const value = this.headers[name.toLowerCase()];
    return Array.isArray(value) ? value[0] : value;
  }

  /** finish() was called, or the stream is gone. */
  get ended(): boolean {
    return this.finished || this.stream.destroyed || this.stream.closed;
  }

  /**
   * Writes one message, framed already (codec.ts frameMessage): the bytes are written as they
   * are, so any number of calls can be given the same ones. The callback runs once the bytes are
   * handed to the connection; not at all if the call is over. Returns the bytes written (0 when
   * the call is over).
   */
  write(framed: Uint8Array, callback?: () => void): number {
    if (this.ended) return 0;
    if (!this.responded) {
      this.responded = true;
      this.stream.respond(this.gzip ? GZIP_RESPONSE_HEADERS : RESPONSE_HEADERS, { waitForTrailers: true });
      this.stream.once("wantTrailers", () => {
        // end() waits for this: the status goes in the trailers, set by finish() before it ends.
        this.stream.sendTrailers(this.trailers ?? statusHeaders({ code: GrpcStatus.OK, details: "" }));
      });
    }
    const bytes = this.gzip ? gzipFramed(framed) : framed;
    this.stream.write(bytes, callback);
    return bytes.length;
  }

  /** Ends the call with a status (once; later calls do nothing). */
  finish(status: CallStatus): void {
    if (this.ended) return;
    this.finished = true;
    if (!this.responded) {
      // Nothing sent yet: a trailers-only response.
      this.responded = true;
      this.stream.respond({ ...RESPONSE_HEADERS, ...statusHeaders(status) }, { endStream: true });
      return;
    }
    this.trailers = statusHeaders(status);
    this.stream.end();
  }
}

/** A gRPC server of streaming methods, by path ("/package.Service/Method"). */
export class GrpcServer {
  private readonly methods: ReadonlyMap<string, StreamingMethod<unknown>>;
  private server: http2.Http2Server | http2.Http2SecureServer | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(methods: Record<string, StreamingMethod<unknown>>) {
    this.methods = new Map(Object.entries(methods));
  }

  /**
   * Binds (port 0 → ephemeral) and resolves with the bound port; with `tls` (a certificate chain and
   * its key, PEM), over TLS with ALPN h2 only, as gRPC clients ask.
   */
  async listen(port: number, host: string, tls?: { cert: string; key: string }): Promise<number> {
    if (this.server) throw new Error("already listening");
    // Node counts data queued to send against this (10 MB by default) and refuses new streams
    // past it; a proxy's first response with modules inline is hundreds of KB. grpc-js lifts it too.
    const maxSessionMemory = Number.MAX_SAFE_INTEGER;
    const server = tls
      ? http2.createSecureServer({ ...tls, ALPNProtocols: ["h2"], maxSessionMemory })
      : http2.createServer({ maxSessionMemory });
    server.on("session", (session) => {
      this.sessions.add(session);
      session.on("close", () => this.sessions.delete(session));
      // Its streams end too, and their 'close' says so.
      session.on("error", () => {});
    });
    server.on("sessionError", () => {});
    server.on("stream", (stream, headers) => this.serve(stream, headers));
    this.server = server;
    server.listen(port, host);
    try {
      await Promise.race([
        once(server, "listening"),
        once(server, "error").then(([error]) => Promise.reject(error)),
      ]);
    } catch (error) {
      this.server = undefined;
      throw error;
    }
    const address = server.address();
    return typeof address === "object" && address ? address.port : port;
  }

  private serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // An error is followed by 'close', which tells the call's listener.
    stream.on("error", () => {});
    const contentType = headers[http2.constants.HTTP2_HEADER_CONTENT_TYPE];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) {
      stream.respond({ [http2.constants.HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
      return;
    }
    const call = new GrpcCall(stream, acceptsGzip(headers["grpc-accept-encoding"]), headers);
    const path = String(headers[http2.constants.HTTP2_HEADER_PATH] ?? "");
    const method = this.methods.get(path);
    if (!method) {
      call.finish({
        code: GrpcStatus.UNIMPLEMENTED,
        details: `The server does not implement the method ${path}`,
      });
      return;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      call.finish({
        code: GrpcStatus.UNIMPLEMENTED,
        details: `grpc-encoding ${String(encoding)} is not supported (identity only)`,
      });
      return;
    }
    const listener = method.open(call);
    const reader = new MessageReader(MAX_REQUEST_BYTES);
    stream.on("data", (chunk: Buffer) => {
      if (call.ended) return;
      try {
        reader.push(chunk, (bytes) => {
          let request: unknown;
          try {
            request = method.decode(bytes);
          } catch (error) {
            throw new UnreadableRequest(error instanceof Error ? error.message : String(error));
          }
          if (!call.ended) listener.message(request);
        });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (error instanceof FramingError && error.tooLarge)
          call.finish({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `Received ${message}` });
        else if (error instanceof FramingError)
          call.finish({ code: GrpcStatus.INTERNAL, details: `Received ${message}` });
        else if (error instanceof UnreadableRequest)
          call.finish({ code: GrpcStatus.INTERNAL, details: `Error deserializing request: ${message}` });
        // The handler's own failure: it logs what it must; the proxy gets an INTERNAL status.
        else call.finish({ code: GrpcStatus.INTERNAL, details: message });
      }
    });
    stream.on("end", () => listener.halfClose());
    stream.once("close", () => listener.closed());
  }

  /** New connections get this certificate from now on (a renewal); open ones keep theirs. */
  setCertificate(tls: { cert: string; key: string }): void {
    const server = this.server;
    if (server === undefined || !("setSecureContext" in server))
      throw new Error("the xDS server does not serve TLS");
    server.setSecureContext(tls);
  }

  /**
   * Stops taking connections; lets the open ones finish within graceMs (each is told to go away),
   * then closes what is left.
   */
  async close(graceMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    const timer = setTimeout(() => {
      for (const session of this.sessions) session.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }
}

/** A request message that did not decode. */
class UnreadableRequest extends Error {}
