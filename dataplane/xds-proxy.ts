// The agent's xDS proxy: Envoy's ADS cluster points here, on loopback, and every ADS stream Envoy
// opens (state of the world or delta) is relayed on a stream of its own to the control plane, both
// ways, as the bytes that arrived: nothing is decoded and encoded again on the way (a service
// definition with identity (de)serializers), so what Envoy gets is what the control plane sent.
//
// The one exception is module delivery (Contract 2 of issue 10, dataplane/README.md): a response
// of ECDS (TypedExtensionConfig) is decoded first, and for every Wasm filter whose code is the
// local file `modules/<name>/<sha256>.wasm` the module cache makes sure that file is there and
// verified before the response goes on, so Envoy, which reads the file as it applies the resource,
// always finds it. Responses stay in order per stream: one that waits for a download holds the
// ones behind it.
//
// A module that cannot be provided (not served, or bytes whose digest is not the one named): the
// response is not forwarded, Envoy keeps the configuration it has (its previous modules keep
// serving), and the proxy answers the control plane for Envoy with a NACK naming module, digest
// and reason, which `wasmesh status` shows. What Envoy sends next still refers to the responses
// it has seen, and the control plane must not be left waiting for an answer that never comes:
// - SotW: the control plane (control-plane/xds/stream.ts, as go-control-plane) ignores a request
//   whose response_nonce is not the latest it sent for the type; Envoy's later requests carry the
//   nonce of the last response it got, older than the dropped one, so a change of Envoy's
//   subscription (a new listener's ECDS name) would be ignored until the next push, and Envoy's
//   listener would wait for a resource nobody sends. So (1) the NACK carries Envoy's latest
//   subscription (resource_names) and the version Envoy runs (its latest version_info): a change
//   Envoy asked for while the response waited for its download, ignored then as stale, is
//   answered now; and (2) until the next response of that type is forwarded, a request of Envoy's
//   that answers the last response it was given is passed on as answering the dropped one instead
//   (its response_nonce replaced, the NACK's error_detail kept: the dropped configuration is still
//   refused), so the control plane reads it as current. The control plane's state stays true:
//   version acked = what Envoy runs, the dropped one rejected, and it offers the type again when
//   the configuration changes, as after a NACK from Envoy itself.
// - Delta: the control plane applies subscription changes whatever the nonce, so Envoy's requests
//   go on unchanged. But after the NACK it counts the dropped resources as held at their new
//   versions (as after a NACK from Envoy itself: delta servers send a resource again only when it
//   changes), so a push that changes another resource would leave Envoy on the old ones for good,
//   the refused module included, while `wasmesh status` shows the stream in sync. So the proxy
//   remembers the dropped resources' names and, once it forwards the next ECDS response (a later
//   push), unsubscribes and subscribes again those Envoy still subscribes to and that response did
//   not bring: the control plane forgets what it thought Envoy held and sends their current
//   versions, which go through the same check. One retry per push, never a loop on a module that
//   keeps failing. (A removal in a dropped response is not retried: Envoy keeps a filter its
//   listeners no longer name.)
// Envoy's own state stays consistent: it never saw the dropped response, so it holds and runs
// what it last ACKed.
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { EXTENSION_TYPE, envoyProtos, LOCAL_MODULE_FILE, TYPE_URL } from "../control-plane/envoy/index.ts";
import {
  DELTA_METHOD,
  decodeDeltaDiscoveryRequest,
  decodeDeltaDiscoveryResponse,
  decodeDiscoveryRequest,
  decodeDiscoveryResponse,
  type ErrorDetail,
  encodeDeltaDiscoveryRequest,
  encodeDiscoveryRequest,
  SOTW_METHOD,
} from "../control-plane/xds/codec.ts";
import { shutdownGrpcServer } from "./grpc-server.ts";
import { bearer, type Token } from "./http.ts";
import { createModuleCache, type ModuleCache, ModuleFetchError } from "./module-cache.ts";

export interface XdsProxyOptions {
  /** The control plane's xDS server, "host:port". */
  upstream: string;
  /** Where Envoy's ADS cluster points; port 0 picks a free one. */
  listen: { host: "127.0.0.1"; port: number };
  /** The module cache's root: `<dataDir>/modules/...` (Envoy runs in this directory). */
  dataDir: string;
  /** The control plane's HTTP API base URL, for module bytes. */
  api: string;
  /**
   * The agent's token (a dataplane token of its service): module bytes are fetched with it, and it
   * goes with every stream to the control plane (ADS metadata `authorization: Bearer …`).
   */
  token?: Token;
  /**
   * TLS to the control plane (a server started with --tls): its xDS over TLS, its API over https,
   * verified with `ca` (PEM; default the system's CAs). Envoy to this proxy stays plain, on loopback.
   */
  tls?: { ca?: string };
  log?: (line: string) => void;
  /** Module cache tuning (tests): tries and back-off of a download. */
  moduleFetch?: { attempts?: number; backoffMs?: number; timeoutMs?: number };
}

export interface XdsProxy {
  /** Where Envoy's ADS cluster points. */
  port: number;
  /**
   * Resolves when Envoy has ACKed at least one response of every type it subscribed to, clusters
   * and listeners among them (see synced()).
   */
  firstAck(): Promise<void>;
  /**
   * Whether Envoy currently has an open stream, and every type it subscribed to acknowledged once.
   * Clusters and listeners must be among them: Envoy subscribes to listeners only once its clusters
   * are initialised, so until then "every type" would be clusters and endpoints alone.
   */
  synced(): boolean;
  /** Module fetches made so far (HTTP requests for module bytes; for tests and logs). */
  readonly fetches: number;
  close(): Promise<void>;
}

type Protocol = "sotw" | "delta";
type Bytes = Buffer;

const identity = (bytes: Bytes) => bytes;
const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const relayMethod = (path: string): grpc.MethodDefinition<Bytes, Bytes> => ({
  path,
  requestStream: true,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});

/** The ADS service with messages as raw bytes: relayed without decoding and encoding again. */
const RELAY_SERVICE: grpc.ServiceDefinition = {
  StreamAggregatedResources: relayMethod(SOTW_METHOD),
  DeltaAggregatedResources: relayMethod(DELTA_METHOD),
};

/** gRPC's limit on a received message is 4 MiB by default; a large mesh's CDS or EDS is not. */
const CHANNEL_OPTIONS = { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 };

/** What an Envoy on a wasmesh bootstrap always subscribes to (lds_config and cds_config are ADS). */
const ALWAYS_SUBSCRIBED = [TYPE_URL.cluster, TYPE_URL.listener];

/** Nonces of forwarded responses remembered per type, to recognise Envoy's ACKs. */
const NONCES_KEPT = 16;

/** What the proxy knows of one type on one stream. */
interface TypeState {
  /** Envoy has ACKed a response of the type forwarded on this stream. */
  acked: boolean;
  /** Nonces of the latest responses forwarded to Envoy, newest last. */
  forwarded: string[];
  /** SotW: Envoy's latest resource_names and version_info (the version it runs). */
  names: string[];
  version: string;
  /** The latest response of the type was dropped and NACKed: its nonce and the NACK's error. */
  dropped: { nonce: string; error: ErrorDetail } | undefined;
  /** Delta: the names Envoy subscribes to (explicitly), and those dropped since (see the header). */
  subscribed: Set<string>;
  stale: Set<string>;
}

/**
 * The first fields of every discovery response, SotW and delta alike: (system_)version_info = 1,
 * type_url = 4, nonce = 5; the resources (2) are skipped, not decoded.
 */
function responseHeader(bytes: Uint8Array): { typeUrl: string; nonce: string } {
  const r = protobuf.Reader.create(bytes);
  let typeUrl = "";
  let nonce = "";
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 4 && wire === 2) typeUrl = r.string();
    else if (field === 5 && wire === 2) nonce = r.string();
    else r.skipType(wire);
  }
  return { typeUrl, nonce };
}

interface ModuleRef {
  module: string;
  sha256: string;
}

interface RawAny {
  type_url?: string;
  value?: Uint8Array;
}
interface RawWasm {
  config?: { vm_config?: { code?: { local?: { filename?: string } } } };
}

let ecdsTypes: { extension: protobuf.Type; wasm: protobuf.Type } | undefined;

/** The local module files an ECDS response's Wasm filters name (each once), and its resources' names (delta). */
function inspect(bytes: Uint8Array, protocol: Protocol): { refs: ModuleRef[]; names: string[] } {
  ecdsTypes ??= {
    extension: envoyProtos().lookupType("envoy.config.core.v3.TypedExtensionConfig"),
    wasm: envoyProtos().lookupType("envoy.extensions.filters.http.wasm.v3.Wasm"),
  };
  const resources =
    protocol === "sotw"
      ? decodeDiscoveryResponse(bytes).resources.map((r) => ({ ...r, name: "" }))
      : decodeDeltaDiscoveryResponse(bytes).resources;
  const refs = new Map<string, ModuleRef>();
  for (const resource of resources) {
    if (resource.typeUrl !== TYPE_URL.extensionConfig) continue;
    const extension = ecdsTypes.extension.decode(resource.value) as unknown as { typed_config?: RawAny };
    const typed = extension.typed_config;
    if (typed?.type_url !== EXTENSION_TYPE.wasmFilter || !typed.value) continue;
    const wasm = ecdsTypes.wasm.decode(typed.value) as unknown as RawWasm;
    const filename = wasm.config?.vm_config?.code?.local?.filename;
    const match = filename === undefined ? null : LOCAL_MODULE_FILE.exec(filename);
    if (match?.[1] && match[2]) refs.set(filename as string, { module: match[1], sha256: match[2] });
  }
  return { refs: [...refs.values()], names: protocol === "delta" ? resources.map((r) => r.name) : [] };
}

/** What a relay needs of its proxy. */
interface RelayContext {
  readonly cache: ModuleCache;
  readonly upstream: grpc.Client;
  /** What each control plane stream carries: the agent's token, which proves its service. */
  metadata(): grpc.Metadata;
  log(line: string): void;
  /** A relay's state moved (subscribed, ACKed, closed). */
  changed(): void;
  closed(relay: Relay): void;
}

/** One Envoy ADS stream and the control plane stream it is relayed on. */
class Relay {
  readonly protocol: Protocol;
  private readonly context: RelayContext;
  private readonly down: grpc.ServerDuplexStream<Bytes, Bytes>;
  private readonly up: grpc.ClientDuplexStream<Bytes, Bytes>;
  private readonly types = new Map<string, TypeState>();
  /** Responses from the control plane still to be handled, in order (behind a download). */
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private nodeId = "";
  closed = false;

  constructor(context: RelayContext, down: grpc.ServerDuplexStream<Bytes, Bytes>, protocol: Protocol) {
    this.context = context;
    this.down = down;
    this.protocol = protocol;
    this.up = context.upstream.makeBidiStreamRequest(
      protocol === "sotw" ? SOTW_METHOD : DELTA_METHOD,
      identity,
      identity,
      context.metadata(),
    );
    down.on("data", (bytes: Bytes) => this.fromEnvoy(bytes));
    // Envoy half-closed: so does the relay, and the control plane ends the call.
    down.on("end", () => this.up.end());
    for (const event of ["cancelled", "close", "error"] as const) down.on(event, () => this.close());
    this.up.on("data", (bytes: Bytes) => this.fromControlPlane(bytes));
    this.up.on("status", (status: grpc.StatusObject) => this.upstreamEnded(status));
    // The status event carries the outcome; an 'error' event would otherwise be unhandled.
    this.up.on("error", () => {});
  }

  /** Every type Envoy subscribed to on this stream has been ACKed once, clusters and listeners among them. */
  synced(): boolean {
    if (this.closed) return false;
    for (const typeUrl of ALWAYS_SUBSCRIBED) if (!this.types.has(typeUrl)) return false;
    for (const state of this.types.values()) if (!state.acked) return false;
    return true;
  }

  close(status?: { code: grpc.status; details: string }): void {
    if (this.closed) return;
    this.closed = true;
    if (status && !this.down.writableEnded) {
      // grpc-js turns an 'error' event on a server stream into the call's status.
      if (status.code === grpc.status.OK) this.down.end();
      else this.down.emit("error", status);
    }
    this.up.cancel();
    this.context.closed(this);
  }

  private typeState(typeUrl: string): TypeState {
    let state = this.types.get(typeUrl);
    if (!state) {
      state = {
        acked: false,
        forwarded: [],
        names: [],
        version: "",
        dropped: undefined,
        subscribed: new Set(),
        stale: new Set(),
      };
      this.types.set(typeUrl, state);
    }
    return state;
  }

  private fromEnvoy(bytes: Bytes): void {
    if (this.closed) return;
    let out = bytes;
    try {
      const request =
        this.protocol === "sotw" ? decodeDiscoveryRequest(bytes) : decodeDeltaDiscoveryRequest(bytes);
      if (request.node && !this.nodeId) {
        this.nodeId = request.node.id;
        this.context.log(`xds proxy: ${this.nodeId} connected (${this.protocol})`);
      }
      const state = this.typeState(request.typeUrl);
      const nonce = request.responseNonce;
      if (!state.acked && !request.errorDetail && nonce !== "" && state.forwarded.includes(nonce)) {
        state.acked = true;
      }
      if (this.protocol === "sotw" && "resourceNames" in request) {
        state.names = request.resourceNames;
        state.version = request.versionInfo;
        const dropped = state.dropped;
        // Answering the last response Envoy got, after a later one was dropped: see the header.
        if (dropped && nonce === (state.forwarded.at(-1) ?? "")) {
          out = asBuffer(
            encodeDiscoveryRequest({
              ...request,
              responseNonce: dropped.nonce,
              errorDetail: request.errorDetail ?? dropped.error,
            }),
          );
        }
      } else if ("subscribe" in request) {
        for (const name of request.subscribe) state.subscribed.add(name);
        for (const name of request.unsubscribe) state.subscribed.delete(name);
      }
      this.context.changed();
    } catch (error) {
      // Not ours to judge: the control plane answers a request it cannot read.
      this.context.log(`xds proxy: cannot read a request from Envoy: ${(error as Error).message}`);
    }
    this.up.write(out);
  }

  private fromControlPlane(bytes: Bytes): void {
    if (this.closed) return;
    let header: { typeUrl: string; nonce: string };
    try {
      header = responseHeader(bytes);
    } catch (error) {
      this.context.log(
        `xds proxy: cannot read a response from the control plane: ${(error as Error).message}`,
      );
      header = { typeUrl: "", nonce: "" };
    }
    // Nothing waiting and nothing to fetch: straight through.
    if (this.queued === 0 && header.typeUrl !== TYPE_URL.extensionConfig) {
      this.forward(bytes, header);
      return;
    }
    this.queued++;
    this.queue = this.queue
      .then(() => this.handle(bytes, header))
      .catch((error: unknown) => {
        this.context.log(`xds proxy: ${(error as Error).stack ?? String(error)}`);
        this.close({ code: grpc.status.INTERNAL, details: `wasmesh xDS proxy: ${(error as Error).message}` });
      })
      .finally(() => {
        this.queued--;
      });
  }

  /** A response in its turn: ECDS waits for the modules it names. */
  private async handle(bytes: Bytes, header: { typeUrl: string; nonce: string }): Promise<void> {
    if (this.closed) return;
    if (header.typeUrl !== TYPE_URL.extensionConfig) {
      this.forward(bytes, header);
      return;
    }
    let found: { refs: ModuleRef[]; names: string[] };
    try {
      found = inspect(bytes, this.protocol);
    } catch (error) {
      // Envoy decodes it too, and NACKs what it cannot read.
      this.context.log(`xds proxy: cannot read an ECDS response: ${(error as Error).message}`);
      found = { refs: [], names: [] };
    }
    const results = await Promise.allSettled(
      found.refs.map((r) => this.context.cache.ensure(r.module, r.sha256)),
    );
    if (this.closed) return;
    const failure = results.find((r) => r.status === "rejected");
    if (failure) this.refuse(header, failure.reason, found.names);
    else {
      this.forward(bytes, header);
      this.retryDropped(this.typeState(header.typeUrl), header.typeUrl, found.names);
    }
  }

  private forward(bytes: Bytes, header: { typeUrl: string; nonce: string }): void {
    const state = this.typeState(header.typeUrl);
    state.forwarded.push(header.nonce);
    if (state.forwarded.length > NONCES_KEPT) state.forwarded.shift();
    state.dropped = undefined;
    this.down.write(bytes);
  }

  /**
   * Delta, after forwarding an ECDS response that brought `names`: asks again for the resources of
   * dropped responses that it did not bring (see the header).
   */
  private retryDropped(state: TypeState, typeUrl: string, names: string[]): void {
    if (state.stale.size === 0) return;
    for (const name of names) state.stale.delete(name);
    const again = [...state.stale].filter((name) => state.subscribed.has(name));
    state.stale.clear();
    if (again.length === 0) return;
    this.context.log(`xds proxy: asking the control plane again for ${again.join(", ")}`);
    const request = (subscribe: string[], unsubscribe: string[]) =>
      asBuffer(
        encodeDeltaDiscoveryRequest({
          typeUrl,
          subscribe,
          unsubscribe,
          initialResourceVersions: {},
          responseNonce: "",
        }),
      );
    this.up.write(request([], again));
    this.up.write(request(again, []));
  }

  /** Drops a response whose modules are missing, and NACKs it for Envoy (see the header). */
  private refuse(header: { typeUrl: string; nonce: string }, reason: unknown, names: string[]): void {
    const state = this.typeState(header.typeUrl);
    for (const name of names) state.stale.add(name);
    const error: ErrorDetail =
      reason instanceof ModuleFetchError
        ? {
            // A module that is not what its digest says is refused; one the agent could not get is its own failure.
            code: reason.failure === "fetch" ? grpc.status.INTERNAL : grpc.status.INVALID_ARGUMENT,
            message: `wasmesh agent: ${reason.message}`,
          }
        : { code: grpc.status.INTERNAL, message: `wasmesh agent: ${(reason as Error)?.message ?? reason}` };
    state.dropped = { nonce: header.nonce, error };
    this.context.log(`xds proxy: not forwarding ECDS response ${header.nonce} to Envoy: ${error.message}`);
    const nack =
      this.protocol === "sotw"
        ? encodeDiscoveryRequest({
            versionInfo: state.version,
            resourceNames: state.names,
            typeUrl: header.typeUrl,
            responseNonce: header.nonce,
            errorDetail: error,
          })
        : encodeDeltaDiscoveryRequest({
            typeUrl: header.typeUrl,
            subscribe: [],
            unsubscribe: [],
            initialResourceVersions: {},
            responseNonce: header.nonce,
            errorDetail: error,
          });
    this.up.write(asBuffer(nack));
  }

  private upstreamEnded(status: grpc.StatusObject): void {
    if (!this.closed)
      this.context.log(
        `xds proxy: control plane stream${this.nodeId ? ` of ${this.nodeId}` : ""} ended: ${grpc.status[status.code]} ${status.details}`,
      );
    // Envoy reconnects, and its new stream gets a new control plane stream.
    this.close({ code: status.code, details: status.details });
  }
}

export async function startXdsProxy(options: XdsProxyOptions): Promise<XdsProxy> {
  const log = options.log ?? (() => {});
  const cache = createModuleCache({
    dataDir: options.dataDir,
    api: options.api,
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.tls?.ca !== undefined ? { ca: options.tls.ca } : {}),
    log,
    ...options.moduleFetch,
  });
  const credentials = options.tls
    ? grpc.credentials.createSsl(options.tls.ca !== undefined ? Buffer.from(options.tls.ca) : null)
    : grpc.credentials.createInsecure();
  const upstream = new grpc.Client(options.upstream, credentials, CHANNEL_OPTIONS);
  const relays = new Set<Relay>();
  /** The newest open stream: Envoy's current one (an old one may linger a moment after a restart). */
  let current: Relay | undefined;
  let acked = false;
  let resolveFirstAck: () => void = () => {};
  const firstAck = new Promise<void>((resolve) => {
    resolveFirstAck = resolve;
  });
  const context: RelayContext = {
    cache,
    upstream,
    metadata() {
      const metadata = new grpc.Metadata();
      // Envoy's stream comes in without a token (loopback, the agent's own Envoy); it goes out with
      // the agent's, which the control plane checks against the service Envoy's node claims.
      if (options.token !== undefined) metadata.set("authorization", bearer(options.token));
      return metadata;
    },
    log,
    changed() {
      if (!acked && current?.synced()) {
        acked = true;
        resolveFirstAck();
      }
    },
    closed(relay) {
      relays.delete(relay);
      if (current === relay) current = [...relays].at(-1);
    },
  };
  const open = (call: grpc.ServerDuplexStream<Bytes, Bytes>, protocol: Protocol) => {
    const relay = new Relay(context, call, protocol);
    relays.add(relay);
    current = relay;
  };

  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(RELAY_SERVICE, {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<Bytes, Bytes>) => open(call, "sotw"),
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Bytes, Bytes>) => open(call, "delta"),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.listen.host}:${options.listen.port}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    ),
  ).catch((error: unknown) => {
    upstream.close();
    throw new Error(
      `xDS proxy: cannot listen on ${options.listen.host}:${options.listen.port}: ${(error as Error).message}`,
    );
  });
  log(`xds proxy: listening on ${options.listen.host}:${port}, relaying to ${options.upstream}`);

  let closing: Promise<void> | undefined;
  return {
    port,
    firstAck: () => firstAck,
    synced: () => current?.synced() ?? false,
    get fetches() {
      return cache.fetches;
    },
    close() {
      closing ??= (async () => {
        for (const relay of [...relays])
          relay.close({ code: grpc.status.UNAVAILABLE, details: "the wasmesh xDS proxy is shutting down" });
        await shutdownGrpcServer(server);
        upstream.close();
      })();
      return closing;
    },
  };
}
