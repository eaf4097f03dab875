// The gRPC xDS server: ADS, state of the world and delta, over gRPC on node:http2 (transport.ts:
// a response is framed once and the same bytes written to every stream sent it). It owns the
// connections; a ConfigCache (cache.ts; SnapshotCache in snapshot.ts) owns what each class of proxy
// is sent, and the streams (stream.ts) own the protocol rules. update() moves the cache to a new
// generation and lets every stream push what changed for it.
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type { ProxyIdentity, TypeUrl } from "../envoy/index.ts";
import type { Counter, Histogram, MetricsRegistry } from "../metrics.ts";
import type { ConfigCache } from "./cache.ts";
import {
  DELTA_METHOD,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  type NodeInfo,
  SOTW_METHOD,
  type WireResource,
} from "./codec.ts";
import type { ProxyStatus, Rejection } from "./status.ts";
import { DeltaStream, PUSH_ORDER, SHORT_TYPE, SotwStream, StreamCaches, type StreamHooks } from "./stream.ts";
import { type CallListener, type GrpcCall, GrpcServer } from "./transport.ts";

export type ParseNode = (node: {
  id?: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
}) => { ok: true; proxy: ProxyIdentity } | { ok: false; error: string };

/**
 * Whether an ADS stream may be served: from its gRPC metadata and the identity its node claims,
 * before anything is sent (security/proxy-auth.ts: a dataplane token of the claimed service, or an
 * admin token; a Kubernetes service-account token can take the dataplane token's place).
 */
export type ProxyAuthenticator = (
  metadata: { authorization: string | undefined },
  claimed: ProxyIdentity,
) => Promise<ProxyAdmission>;

export type ProxyAdmission =
  /** principal: who the stream is (e.g. the token's id), for logs and endStreams(). */
  | { ok: true; principal: string }
  | { ok: false; code: "unauthenticated" | "permission_denied"; message: string };

export type XdsLog = (
  level: "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface XdsServerOptions {
  /** What proxies are sent (e.g. a SnapshotCache); the server owns it from now on and clears it on close(). */
  cache: ConfigCache;
  parseNode: ParseNode;
  /** Checks each stream before it is served; without it, every stream is (tests of the protocol). */
  authenticate?: ProxyAuthenticator;
  metrics?: MetricsRegistry;
  log?: XdsLog;
  /** How long close() lets streams finish before forcing the server down (default 1000 ms). */
  shutdownGraceMs?: number;
}

/** Streams pushed to between two turns of the event loop, so ACKs are read while a push runs. */
const PUSH_BATCH = 250;
/** Version labels remembered for waitForAck(). */
const MAX_VERSIONS = 10_000;

interface Waiter {
  version: string;
  gen: number | undefined;
  remaining: Set<Connection>;
  resolve(): void;
  reject(error: Error): void;
}

interface Metrics {
  pushes: Counter;
  nacks: Counter;
  latency: Histogram;
  refused: Counter;
}

/** What a connection needs of its server: no more, so that it cannot reach into the rest. */
interface ConnectionContext {
  nonce(): string;
  /** Bytes written to a call (its responses, framed; gzipped or not). */
  sent(bytes: number, gzip: boolean): void;
  /** While a push runs, the write promises that update() waits for; otherwise undefined. */
  writes(): Promise<void>[] | undefined;
  readonly metrics: Metrics | undefined;
  log(level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>): void;
}

/** A metric's labels per type, one object each: the registry keys them once (metrics.ts). */
const TYPE_LABELS = Object.fromEntries(
  Object.entries(SHORT_TYPE).map(([typeUrl, type]) => [typeUrl, Object.freeze({ type })]),
) as Record<TypeUrl, Readonly<{ type: string }>>;

/** One ADS stream: the gRPC call, who is on it, and its protocol state. */
class Connection implements StreamHooks {
  private readonly context: ConnectionContext;
  readonly call: GrpcCall;
  readonly proxy: ProxyIdentity;
  readonly peer: string;
  readonly connectedAt: string;
  /** Who authenticated the stream (ProxyAdmission's principal), when it was authenticated. */
  readonly principal: string | undefined;
  key: string;
  stream!: SotwStream | DeltaStream;
  closed = false;
  private inFlight: Set<() => void> | undefined;

  constructor(
    context: ConnectionContext,
    call: GrpcCall,
    proxy: ProxyIdentity,
    key: string,
    principal: string | undefined,
  ) {
    this.context = context;
    this.call = call;
    this.proxy = proxy;
    this.key = key;
    this.principal = principal;
    this.peer = call.peer;
    this.connectedAt = new Date().toISOString();
  }

  send(framed: Uint8Array): void {
    if (this.closed) return;
    const writes = this.context.writes();
    if (!writes) {
      this.context.sent(this.call.write(framed), this.call.gzip);
      return;
    }
    // A write on a call that is over is not called back, so close() settles what is in flight.
    writes.push(
      new Promise<void>((resolve) => {
        this.inFlight ??= new Set();
        this.inFlight.add(resolve);
        const bytes = this.call.write(framed, () => {
          this.inFlight?.delete(resolve);
          resolve();
        });
        this.context.sent(bytes, this.call.gzip);
      }),
    );
  }
  /** Marks the connection closed and settles its writes in flight. */
  markClosed(): void {
    this.closed = true;
    for (const resolve of this.inFlight ?? []) resolve();
    this.inFlight = undefined;
  }
  nonce(): string {
    return this.context.nonce();
  }
  pushed(typeUrl: TypeUrl): void {
    this.context.metrics?.pushes.inc(TYPE_LABELS[typeUrl]);
  }
  acked(_typeUrl: TypeUrl, pushedAt: number | undefined): void {
    if (pushedAt !== undefined) this.context.metrics?.latency.observe((performance.now() - pushedAt) / 1000);
  }
  nacked(typeUrl: TypeUrl, rejection: Rejection): void {
    this.context.metrics?.nacks.inc(TYPE_LABELS[typeUrl]);
    this.context.log("warn", "proxy rejected configuration", {
      nodeId: this.proxy.nodeId,
      type: SHORT_TYPE[typeUrl],
      version: rejection.version,
      message: rejection.message,
    });
  }
  unknownType(typeUrl: string): void {
    this.context.log("warn", "request for a type this server does not serve", {
      nodeId: this.proxy.nodeId,
      typeUrl,
    });
  }
}

const nodeArgument = (node: NodeInfo) => ({ id: node.id, cluster: node.cluster, metadata: node.metadata });

export class XdsServer {
  private readonly options: XdsServerOptions;
  // The snapshot cache and the caches its streams share are this server's alone, for its lifetime:
  // close() empties them, so nothing of its proxies stays in memory with a closed server.
  private readonly cache: ConfigCache;
  private readonly streamCaches = new StreamCaches();
  private readonly connections = new Set<Connection>();
  private readonly versionGens = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private grpcServer: GrpcServer | undefined;
  private pushing: Promise<void> = Promise.resolve();
  private nonces = 0;
  private closed = false;
  /** While a push runs, the write promises that update() waits for. */
  private collectWrites: Promise<void>[] | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly sentBytes = { identity: 0, gzip: 0 };
  private readonly context: ConnectionContext;

  constructor(options: XdsServerOptions) {
    this.options = options;
    this.cache = options.cache;
    this.versionGens.set(this.cache.version, this.cache.gen);
    const registry = options.metrics;
    if (registry) {
      registry
        .gauge("wasmesh_xds_connected_proxies", "Proxies with an open ADS stream, by protocol (sotw, delta).")
        .collect(() => {
          const counts = { sotw: 0, delta: 0 };
          for (const c of this.connections) counts[c.stream.protocol]++;
          return Object.entries(counts).map(([protocol, n]) => [{ protocol }, n]);
        });
      this.metrics = {
        pushes: registry.counter(
          "wasmesh_xds_pushes_total",
          "xDS responses sent, by type (lds, rds, cds, eds, ecds).",
        ),
        nacks: registry.counter("wasmesh_xds_nacks_total", "xDS responses rejected by proxies, by type."),
        latency: registry.histogram(
          "wasmesh_xds_push_latency_seconds",
          "Time from a configuration change (update) to a proxy's ACK of the pushed response.",
        ),
        refused: registry.counter(
          "wasmesh_xds_refused_streams_total",
          "ADS streams refused before anything was sent, by gRPC status (unauthenticated, permission_denied).",
        ),
      };
      registry
        .counter(
          "wasmesh_xds_sent_bytes_total",
          "Bytes of xDS responses written to proxies' streams, by encoding: gzip for clients that accept it (the data-plane agent), identity for the others (Envoy connected directly).",
        )
        .collect(() => [
          [{ encoding: "identity" }, this.sentBytes.identity],
          [{ encoding: "gzip" }, this.sentBytes.gzip],
        ]);
    }
    this.context = {
      nonce: () => (++this.nonces).toString(36),
      sent: (bytes, gzip) => {
        if (gzip) this.sentBytes.gzip += bytes;
        else this.sentBytes.identity += bytes;
      },
      writes: () => this.collectWrites,
      metrics: this.metrics,
      log: (level, message, fields) => this.log(level, message, fields),
    };
  }

  private log(level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>): void {
    this.options.log?.(level, message, fields);
  }

  /** Binds (plain HTTP/2, or TLS with `tls`); returns the bound port (port 0 → ephemeral). */
  listen(port: number, host = "0.0.0.0", tls?: { cert: string; key: string }): Promise<number> {
    if (this.grpcServer) return Promise.reject(new Error("the xDS server is already listening"));
    if (this.closed) return Promise.reject(new Error("the xDS server is closed"));
    const server = new GrpcServer({
      [SOTW_METHOD]: { decode: decodeDiscoveryRequest, open: (call) => this.serve(call, "sotw") },
      [DELTA_METHOD]: { decode: decodeDeltaDiscoveryRequest, open: (call) => this.serve(call, "delta") },
    });
    this.grpcServer = server;
    // "[::1]" as a URL writes it; the socket wants the address alone.
    const address = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    return server.listen(port, address, tls).catch((error: unknown) => {
      this.grpcServer = undefined;
      throw error;
    });
  }

  /** A renewed certificate for new connections (a server listening with TLS). */
  setCertificate(tls: { cert: string; key: string }): void {
    if (!this.grpcServer) throw new Error("the xDS server is not listening");
    this.grpcServer.setCertificate(tls);
  }

  /**
   * The mesh changed: recompute every connected proxy's config (once per class) and push to each
   * proxy only what changed for it, labelled `version`. The promise resolves when those responses
   * are written (not ACKed) and never rejects; callers may ignore it.
   */
  update(version: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    const pushedAt = performance.now();
    const gen = this.cache.advance(version);
    this.versionGens.delete(version);
    this.versionGens.set(version, gen);
    if (this.versionGens.size > MAX_VERSIONS) {
      const oldest = this.versionGens.keys().next().value;
      if (oldest !== undefined) this.versionGens.delete(oldest);
    }
    for (const waiter of this.waiters) if (waiter.version === version) this.arm(waiter, gen);
    const run = this.pushing.then(() => this.pushAll(gen, pushedAt));
    this.pushing = run.catch((error: unknown) =>
      this.log("error", "push failed", {
        version,
        error: error instanceof Error ? error.stack : String(error),
      }),
    );
    return this.pushing;
  }

  private async pushAll(gen: number, pushedAt: number): Promise<void> {
    const writes: Promise<void>[] = [];
    let n = 0;
    for (const connection of [...this.connections]) {
      // A newer update supersedes this one: it will push everything, from newer snapshots.
      if (this.cache.gen !== gen || this.closed) break;
      if (connection.closed) continue;
      this.collectWrites = writes;
      try {
        this.pushTo(connection, pushedAt);
      } finally {
        this.collectWrites = undefined;
      }
      if (++n % PUSH_BATCH === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (this.cache.gen === gen) this.cache.retain(new Set([...this.connections].map((c) => c.key)));
    await Promise.all(writes);
  }

  private pushTo(connection: Connection, pushedAt: number): void {
    let key: string;
    try {
      key = this.cache.keyFor(connection.proxy);
    } catch (error) {
      this.log("error", "cannot classify proxy", { nodeId: connection.proxy.nodeId, error: String(error) });
      return;
    }
    connection.key = key;
    const { snapshot, error } = this.cache.get(connection.proxy, key);
    if (error)
      this.log("error", "cannot compute configuration; proxies of this class keep their last one", {
        nodeId: connection.proxy.nodeId,
        key,
        error,
      });
    if (!snapshot) return;
    connection.stream.push(snapshot, pushedAt);
    this.progress(connection);
  }

  private serve(
    call: GrpcCall,
    protocol: "sotw" | "delta",
  ): CallListener<DiscoveryRequest | DeltaDiscoveryRequest> {
    let connection: Connection | undefined;
    let ended = false;
    /** Requests that came while the stream's first one is being authenticated, in order. */
    let waiting: (DiscoveryRequest | DeltaDiscoveryRequest)[] | undefined;
    let admitted: { proxy: ProxyIdentity; principal: string | undefined } | undefined;
    const end = (code: grpc.status, details: string) => {
      if (ended) return;
      ended = true;
      call.finish({ code, details });
    };
    const cleanup = () => {
      ended = true;
      if (!connection || connection.closed) return;
      connection.markClosed();
      this.connections.delete(connection);
      this.progress(connection);
      this.log("info", "proxy disconnected", { nodeId: connection.proxy.nodeId, protocol });
    };
    const handle = (request: DiscoveryRequest | DeltaDiscoveryRequest) => {
      if (ended || this.closed) return;
      try {
        if (!connection) {
          if (!admitted) return;
          connection = this.open(call, protocol, admitted.proxy, admitted.principal, end);
          if (!connection) return;
        }
        if (connection.stream instanceof SotwStream) connection.stream.handle(request as DiscoveryRequest);
        else connection.stream.handle(request as DeltaDiscoveryRequest);
        this.progress(connection);
      } catch (error) {
        this.log("error", "xDS request failed", {
          error: error instanceof Error ? error.stack : String(error),
        });
        end(grpc.status.INTERNAL, error instanceof Error ? error.message : String(error));
        cleanup();
      }
    };
    return {
      message: (request) => {
        if (ended || this.closed) return;
        if (waiting) {
          waiting.push(request);
          return;
        }
        if (admitted) {
          handle(request);
          return;
        }
        const proxy = this.identify(request.node, end);
        if (!proxy) return;
        const authenticate = this.options.authenticate;
        if (!authenticate) {
          admitted = { proxy, principal: undefined };
          handle(request);
          return;
        }
        // Nothing is sent, nor the proxy counted as connected, before its stream is admitted.
        waiting = [request];
        authenticate({ authorization: call.metadata("authorization") }, proxy).then(
          (admission) => {
            if (ended || this.closed) return;
            if (!admission.ok) {
              this.refuse(call, proxy, admission, end);
              return;
            }
            admitted = { proxy, principal: admission.principal };
            const queued = waiting ?? [];
            waiting = undefined;
            for (const queuedRequest of queued) handle(queuedRequest);
          },
          (error: unknown) => {
            this.log("error", "cannot authenticate a stream", {
              nodeId: proxy.nodeId,
              error: error instanceof Error ? error.stack : String(error),
            });
            end(grpc.status.UNAVAILABLE, "the control plane cannot authenticate the stream now; retry");
          },
        );
      },
      // The proxy half-closed: finish the call too.
      halfClose: () => {
        cleanup();
        call.finish({ code: grpc.status.OK, details: "" });
      },
      closed: cleanup,
    };
  }

  /** The identity the first request's node claims; ends the call (INVALID_ARGUMENT) when it has none. */
  private identify(
    node: NodeInfo | undefined,
    end: (code: grpc.status, details: string) => void,
  ): ProxyIdentity | undefined {
    if (!node) {
      end(grpc.status.INVALID_ARGUMENT, "the first request of a stream must carry the node");
      return undefined;
    }
    const parsed = this.options.parseNode(nodeArgument(node));
    if (!parsed.ok) {
      this.log("warn", "rejected a stream with an invalid node", { nodeId: node.id, error: parsed.error });
      end(grpc.status.INVALID_ARGUMENT, parsed.error);
      return undefined;
    }
    return parsed.proxy;
  }

  private refuse(
    call: GrpcCall,
    proxy: ProxyIdentity,
    refusal: Extract<ProxyAdmission, { ok: false }>,
    end: (code: grpc.status, details: string) => void,
  ): void {
    const code =
      refusal.code === "unauthenticated" ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED;
    this.metrics?.refused.inc({ code: refusal.code });
    this.log("warn", "refused a stream", {
      nodeId: proxy.nodeId,
      service: proxy.service,
      peer: call.peer,
      code: refusal.code,
      reason: refusal.message,
    });
    end(code, refusal.message);
  }

  private open(
    call: GrpcCall,
    protocol: "sotw" | "delta",
    proxy: ProxyIdentity,
    principal: string | undefined,
    end: (code: grpc.status, details: string) => void,
  ): Connection | undefined {
    const key = this.cache.keyFor(proxy);
    const { snapshot, error } = this.cache.get(proxy, key);
    if (!snapshot) {
      end(
        grpc.status.INTERNAL,
        `cannot compute the configuration of ${proxy.nodeId}: ${error ?? "unknown error"}`,
      );
      return undefined;
    }
    const connection = new Connection(this.context, call, proxy, key, principal);
    connection.stream =
      protocol === "sotw"
        ? new SotwStream(snapshot, connection, this.streamCaches)
        : new DeltaStream(snapshot, connection, this.streamCaches);
    this.connections.add(connection);
    this.log("info", "proxy connected", {
      nodeId: proxy.nodeId,
      service: proxy.service,
      protocol,
      peer: connection.peer,
      ...(principal !== undefined ? { principal } : {}),
    });
    return connection;
  }

  /**
   * Ends the streams `principal` authenticated (its token was revoked), UNAUTHENTICATED: their
   * proxies reconnect, and are refused unless they have another token. Returns how many.
   */
  endStreams(principal: string, details: string): number {
    let ended = 0;
    for (const connection of [...this.connections]) {
      if (connection.principal !== principal) continue;
      connection.markClosed();
      this.connections.delete(connection);
      connection.call.finish({ code: grpc.status.UNAUTHENTICATED, details });
      this.progress(connection);
      this.log("info", "ended a stream", { nodeId: connection.proxy.nodeId, reason: details });
      ended++;
    }
    return ended;
  }

  /** One ProxyStatus per connected stream. */
  status(): ProxyStatus[] {
    return [...this.connections].map((c) => this.statusOf(c));
  }

  /**
   * What the proxy `nodeId` was last sent and holds, by type (PUSH_ORDER; the types it subscribed
   * to), with its status: undefined when no stream of it is open (the newest, if several are).
   * The resources are the encoded Any's the stream was sent, shared, not copied.
   */
  sentTo(nodeId: string): { status: ProxyStatus; types: Map<TypeUrl, WireResource[]> } | undefined {
    const connection = [...this.connections].findLast((c) => c.proxy.nodeId === nodeId && !c.closed);
    if (connection === undefined) return undefined;
    const types = new Map<TypeUrl, WireResource[]>();
    for (const typeUrl of PUSH_ORDER) {
      const held = connection.stream.held(typeUrl);
      if (held !== undefined) types.set(typeUrl, held);
    }
    return { status: this.statusOf(connection), types };
  }

  private statusOf(c: Connection): ProxyStatus {
    const sent: Record<string, string> = {};
    const acked: Record<string, string> = {};
    // The proxy is as current as its least current type.
    let syncedGen = Number.POSITIVE_INFINITY;
    let syncedVersion: string | undefined;
    for (const typeUrl of c.stream.subscribedTypes()) {
      const s = c.stream.typeStatus(typeUrl);
      if (!s) continue;
      if (s.sent) sent[typeUrl] = s.sent;
      if (s.acked) acked[typeUrl] = s.acked;
      if (s.ackedGen < syncedGen) {
        syncedGen = s.ackedGen;
        syncedVersion = s.ackedGen >= 0 ? s.synced : undefined;
      }
    }
    return {
      nodeId: c.proxy.nodeId,
      service: c.proxy.service,
      labels: { ...c.proxy.labels },
      protocol: c.stream.protocol,
      peer: c.peer,
      connectedAt: c.connectedAt,
      sent,
      acked,
      ...(syncedVersion !== undefined ? { syncedVersion } : {}),
      ...(c.stream.lastRejection ? { lastRejection: { ...c.stream.lastRejection } } : {}),
      nacks: c.stream.nacks,
    };
  }

  /**
   * Resolves when every proxy connected (and subscribed) has ACKed `version` for every type it
   * subscribes to — or runs config equal to it, ACKed under an earlier version because nothing
   * changed for it. Rejects at once if a proxy NACKs that config, and after timeoutMs otherwise.
   * A version not yet given to update() is waited for.
   */
  waitForAck(version: string, timeoutMs = 10_000): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the xDS server is closed"));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const behind = [...waiter.remaining].map((c) => c.proxy.nodeId);
        settle(
          new Error(
            waiter.gen === undefined
              ? `version ${version} was never pushed (waited ${timeoutMs} ms)`
              : `timed out after ${timeoutMs} ms waiting for ${behind.length} prox${behind.length === 1 ? "y" : "ies"} to ACK version ${version}: ${behind.slice(0, 10).join(", ")}`,
          ),
        );
      }, timeoutMs);
      let done = false;
      const settle = (error?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        if (error) reject(error);
        else resolve();
      };
      const waiter: Waiter = {
        version,
        gen: undefined,
        remaining: new Set(),
        resolve: () => settle(),
        reject: (error) => settle(error),
      };
      this.waiters.add(waiter);
      const gen = this.versionGens.get(version);
      if (gen !== undefined) this.arm(waiter, gen);
    });
  }

  /** Fixes the generation a waiter waits for and the proxies still short of it. */
  private arm(waiter: Waiter, gen: number): void {
    waiter.gen = gen;
    waiter.remaining = new Set(this.connections);
    if (waiter.remaining.size === 0) waiter.resolve();
    for (const connection of this.connections) this.check(waiter, connection);
  }

  /** Re-checks the waiters after a connection's state moved. */
  private progress(connection: Connection): void {
    if (this.waiters.size === 0) return;
    for (const waiter of [...this.waiters]) this.check(waiter, connection);
  }

  private check(waiter: Waiter, connection: Connection): void {
    if (waiter.gen === undefined || !waiter.remaining.has(connection)) return;
    if (connection.closed || connection.stream.ackedGen() >= waiter.gen) {
      waiter.remaining.delete(connection);
      if (waiter.remaining.size === 0) waiter.resolve();
      return;
    }
    const refused = connection.stream.refusing(waiter.gen);
    if (refused) {
      const r = connection.stream.lastRejection;
      waiter.reject(
        new Error(
          `proxy ${connection.proxy.nodeId} rejected ${SHORT_TYPE[refused]} version ${r?.version ?? waiter.version}: ${r?.message ?? ""}`,
        ),
      );
    }
  }

  /** Ends every stream (UNAVAILABLE, so proxies reconnect elsewhere) and shuts the server down. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of [...this.waiters]) waiter.reject(new Error("the xDS server closed"));
    for (const connection of [...this.connections]) {
      connection.markClosed();
      connection.call.finish({ code: grpc.status.UNAVAILABLE, details: "the xDS server is shutting down" });
    }
    this.connections.clear();
    await this.grpcServer?.close(this.options.shutdownGraceMs ?? 1000);
    await this.pushing;
    this.streamCaches.clear();
    this.cache.clear();
  }
}
