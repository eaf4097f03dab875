// A small but honest ADS client over raw @grpc/grpc-js, for tests and the xDS benchmark: it speaks
// state of the world or delta like Envoy does (node only in the first request, ACK with the
// response's version and nonce, NACK with error_detail keeping the last good resources, the
// complete subscription in every SotW request, subscribe/unsubscribe deltas), and exposes what it
// received decoded with the same protobufjs Root the server uses.
import * as grpc from "@grpc/grpc-js";
import { decodeMessage } from "../../control-plane/envoy/index.ts";
import {
  DELTA_METHOD,
  type DecodedDeltaResponse,
  type DecodedResponse,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  decodeDeltaDiscoveryResponse,
  decodeDiscoveryResponse,
  encodeDeltaDiscoveryRequest,
  encodeDiscoveryRequest,
  type NodeInfo,
  SOTW_METHOD,
} from "../../control-plane/xds/codec.ts";

export type AdsProtocol = "sotw" | "delta";

export interface ReceivedResource {
  name: string;
  /** Delta: the server's resource version; SotW: "" (SotW has none per resource). */
  version: string;
  typeUrl: string;
  bytes: Uint8Array;
  /** Decoded as protos.ts decodeMessage does (snake_case fields); {} when decode is off. */
  resource: Record<string, unknown>;
}

export interface ReceivedResponse {
  typeUrl: string;
  /** version_info (SotW) or system_version_info (delta). */
  version: string;
  nonce: string;
  resources: ReceivedResource[];
  /** Delta removed_resources. */
  removed: string[];
  /** performance.now() at arrival. */
  at: number;
}

export interface AdsClientOptions {
  /** host:port of the xDS server. */
  address: string;
  node: { id: string; cluster?: string; metadata?: Record<string, unknown> };
  protocol?: AdsProtocol;
  /** ACK (or NACK, see reject) every response as it arrives, as Envoy does. Default true. */
  autoAck?: boolean;
  /** With autoAck: an error message to NACK a response with, or undefined to ACK it. */
  reject?: (response: ReceivedResponse) => string | undefined;
  /** Decode resources (default true). The benchmark turns it off to measure the server, not us. */
  decode?: boolean;
  /** Keep every response in `responses` (default true). */
  keepHistory?: boolean;
  /** Share a channel between clients; by default each client has its own connection, like a proxy. */
  client?: grpc.Client;
  /**
   * The stream's token (metadata `authorization: Bearer …`). Default: the one a test registered
   * for `address` (useXdsToken: a control plane's admin token); null sends none.
   */
  token?: string | null;
}

/** Tokens of the xDS servers tests started, by address (host:port). */
const xdsTokens = new Map<string, string>();

/** Makes connectAds() to `address` send this token unless told otherwise. */
export function useXdsToken(address: string, token: string): void {
  xdsTokens.set(address, token);
}

interface TypeState {
  /** SotW subscription (empty = wildcard); delta: explicit names. */
  names: string[];
  /** Latest nonce received. */
  nonce: string;
  /** version_info of the last response ACKed (SotW sends it back). */
  ackedVersion: string;
  /** Resources held after the ACKed responses, by name. */
  held: Map<string, ReceivedResource>;
  /** The latest response not yet ACKed or NACKed (manual mode). */
  unanswered: ReceivedResponse | undefined;
  /** Responses received for the type. */
  count: number;
  /** Those next() has not handed out yet. */
  queue: ReceivedResponse[];
}

export interface StreamStatus {
  code: grpc.status;
  details: string;
}

const resourceName = (resource: Record<string, unknown>) =>
  String(
    resource.name ??
      // ClusterLoadAssignment names itself by cluster_name.
      resource.cluster_name ??
      "",
  );

export class AdsClient {
  readonly nodeId: string;
  readonly protocol: AdsProtocol;
  /** Every response received, in order (when keepHistory). */
  readonly responses: ReceivedResponse[] = [];
  /** Resolves with the stream's final status (the server ended it, or close()). */
  readonly status: Promise<StreamStatus>;
  private readonly options: AdsClientOptions;
  private readonly grpcClient: grpc.Client;
  private readonly ownsClient: boolean;
  private readonly call: grpc.ClientDuplexStream<DiscoveryRequest | DeltaDiscoveryRequest, Uint8Array>;
  private readonly types = new Map<string, TypeState>();
  private readonly listeners = new Set<() => void>();
  /** Delta types subscribed at least once (the first request of a type is special). */
  private readonly subscribedDelta = new Set<string>();
  /** Delta types whose first subscription named nothing or "*": all of them (a wildcard). */
  private readonly wildcardDelta = new Set<string>();
  private nodeSent = false;
  private ended: StreamStatus | undefined;

  /** Use connectAds(), which waits for the connection. */
  constructor(options: AdsClientOptions, grpcClient: grpc.Client, ownsClient: boolean) {
    this.options = options;
    this.nodeId = options.node.id;
    this.protocol = options.protocol ?? "sotw";
    this.grpcClient = grpcClient;
    this.ownsClient = ownsClient;
    const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    const metadata = new grpc.Metadata();
    const token = options.token === undefined ? xdsTokens.get(options.address) : options.token;
    if (token !== null && token !== undefined) metadata.set("authorization", `Bearer ${token}`);
    this.call =
      this.protocol === "sotw"
        ? this.grpcClient.makeBidiStreamRequest<DiscoveryRequest | DeltaDiscoveryRequest, Uint8Array>(
            SOTW_METHOD,
            (r) => asBuffer(encodeDiscoveryRequest(r as DiscoveryRequest)),
            (b) => b,
            metadata,
          )
        : this.grpcClient.makeBidiStreamRequest<DiscoveryRequest | DeltaDiscoveryRequest, Uint8Array>(
            DELTA_METHOD,
            (r) => asBuffer(encodeDeltaDiscoveryRequest(r as DeltaDiscoveryRequest)),
            (b) => b,
            metadata,
          );
    this.status = new Promise((resolve) => {
      this.call.on("status", (s: grpc.StatusObject) => {
        this.ended = { code: s.code, details: s.details };
        resolve(this.ended);
        this.notify();
      });
    });
    // The status event carries the outcome; 'error' would otherwise be an unhandled event.
    this.call.on("error", () => {});
    this.call.on("data", (bytes: Uint8Array) => this.receive(bytes));
  }

  /** The stream's status once it ended, else undefined. */
  get endedWith(): StreamStatus | undefined {
    return this.ended;
  }

  /** SotW: (re)subscribe to exactly `names` (empty = wildcard); delta: subscribe to `names` too. */
  subscribe(typeUrl: string, names: string[] = []): void {
    const state = this.typeState(typeUrl);
    if (this.protocol === "sotw") {
      state.names = [...names];
      this.sendSotw(typeUrl, state, state.nonce, state.ackedVersion);
    } else {
      const first = state.count === 0 && !this.subscribedDelta.has(typeUrl);
      this.subscribedDelta.add(typeUrl);
      if (first && (names.length === 0 || names.includes("*"))) this.wildcardDelta.add(typeUrl);
      const fresh = names.filter((n) => !state.names.includes(n));
      state.names.push(...fresh);
      if (!first && fresh.length === 0) return;
      this.send({
        typeUrl,
        subscribe: first ? names : fresh,
        unsubscribe: [],
        initialResourceVersions: {},
        responseNonce: "",
      });
    }
  }

  /** Delta: subscribe for the first time, telling the server what we already hold. */
  subscribeWith(typeUrl: string, names: string[], initialResourceVersions: Record<string, string>): void {
    if (this.protocol !== "delta") throw new Error("initial_resource_versions is a delta feature");
    const state = this.typeState(typeUrl);
    if (!this.subscribedDelta.has(typeUrl) && (names.length === 0 || names.includes("*")))
      this.wildcardDelta.add(typeUrl);
    this.subscribedDelta.add(typeUrl);
    state.names.push(...names);
    this.send({ typeUrl, subscribe: names, unsubscribe: [], initialResourceVersions, responseNonce: "" });
  }

  unsubscribe(typeUrl: string, names: string[]): void {
    const state = this.typeState(typeUrl);
    state.names = state.names.filter((n) => !names.includes(n));
    for (const n of names) state.held.delete(n);
    if (this.protocol === "sotw") this.sendSotw(typeUrl, state, state.nonce, state.ackedVersion);
    else
      this.send({
        typeUrl,
        subscribe: [],
        unsubscribe: names,
        initialResourceVersions: {},
        responseNonce: state.nonce,
      });
  }

  /** ACK the latest response of the type (manual mode). */
  ack(typeUrl: string): void {
    const state = this.typeState(typeUrl);
    const response = state.unanswered;
    if (!response) throw new Error(`no unanswered ${typeUrl} response to ACK`);
    this.answer(state, response, undefined);
  }

  /** NACK the latest response of the type (manual mode); the resources held stay as they were. */
  nack(typeUrl: string, message: string): void {
    const state = this.typeState(typeUrl);
    const response = state.unanswered;
    if (!response) throw new Error(`no unanswered ${typeUrl} response to NACK`);
    this.answer(state, response, message);
  }

  /** Sends a request as given (node added if it is the stream's first), to test protocol edges. */
  send(request: DiscoveryRequest | DeltaDiscoveryRequest): void {
    if (!this.nodeSent) {
      this.nodeSent = true;
      request = { ...request, node: this.node() };
    }
    this.call.write(request);
  }

  /** The resources held for a type (after ACKed responses), in the order received. */
  held(typeUrl: string): ReceivedResource[] {
    return [...this.typeState(typeUrl).held.values()];
  }

  /** The latest nonce received for the type. */
  nonce(typeUrl: string): string {
    return this.typeState(typeUrl).nonce;
  }

  /** How many responses of the type have arrived. */
  received(typeUrl: string): number {
    return this.types.get(typeUrl)?.count ?? 0;
  }

  /** The next response of the type not yet returned by next(). */
  async next(typeUrl: string, timeoutMs = 5000): Promise<ReceivedResponse> {
    const state = this.typeState(typeUrl);
    await this.waitFor(() => state.queue.length > 0, timeoutMs, `a ${typeUrl} response`);
    return state.queue.shift() as ReceivedResponse;
  }

  /** Discards responses received so far, so next() waits for new ones. */
  drain(typeUrl?: string): void {
    for (const [url, state] of this.types) if (!typeUrl || url === typeUrl) state.queue.length = 0;
  }

  /** Subscribes and resolves with the resources held after the next response (ACKed if autoAck). */
  async fetch(typeUrl: string, names: string[] = [], timeoutMs = 5000): Promise<ReceivedResource[]> {
    this.drain(typeUrl);
    this.subscribe(typeUrl, names);
    await this.next(typeUrl, timeoutMs);
    return this.held(typeUrl);
  }

  /**
   * A barrier: resolves once the server has read every request this client sent before, and all
   * it wrote before answering them has arrived. The stream is ordered both ways, so the answer to a
   * request the server certainly answers comes after all of that: a test that must show the server
   * sent nothing (more) waits for this instead of sleeping.
   *
   * The request asks again for `name` of `typeUrl`. SotW: the subscription with the name toggled,
   * then as it was (each change of names is answered); delta: the name unsubscribed and subscribed
   * again (answered with the resource, which must exist; a type subscribed by name). The
   * subscription ends as it was, but the type gets one or two more responses, answered as any
   * other: use a type and a resource the test does not count. Resolves with the number of
   * responses that had arrived before the barrier's (an end for `responses.slice`).
   */
  async barrier(typeUrl: string, name: string, timeoutMs = 5000): Promise<number> {
    if (!(this.options.autoAck ?? true))
      throw new Error("barrier() needs autoAck: it answers its own responses");
    const state = this.typeState(typeUrl);
    let upTo: number | undefined;
    const answered = async (request: () => void) => {
      const before = state.count;
      request();
      await this.waitFor(
        () => {
          if (state.count > before) upTo ??= this.responses.length - (state.count - before);
          return state.count > before;
        },
        timeoutMs,
        `the answer to a barrier request for ${typeUrl} ${name}`,
      );
    };
    const names = [...state.names];
    if (this.protocol === "sotw") {
      const toggled = names.includes(name) ? names.filter((n) => n !== name) : [...names, name];
      await answered(() => this.subscribe(typeUrl, toggled));
      await answered(() => this.subscribe(typeUrl, names));
    } else if (names.includes(name)) {
      await answered(() => {
        this.unsubscribe(typeUrl, [name]);
        this.subscribe(typeUrl, [name]);
      });
    } else {
      if (this.wildcardDelta.has(typeUrl)) {
        throw new Error(
          `barrier(): ${typeUrl} is a delta wildcard subscription; use a type subscribed by name`,
        );
      }
      await answered(() => this.subscribe(typeUrl, [name]));
      this.unsubscribe(typeUrl, [name]);
    }
    return Math.max(0, upTo ?? this.responses.length);
  }

  /** Resolves when `check` holds, re-checked on every response and at the end of the stream. */
  waitFor(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const listener = () => {
        if (check()) {
          done();
          resolve();
        } else if (this.ended) {
          done();
          reject(
            new Error(
              `${this.nodeId}: stream ended (${this.ended.code} ${this.ended.details}) waiting for ${what}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.nodeId}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
    });
  }

  /** Half-closes and cancels the stream, and closes the channel unless it was shared. */
  close(): void {
    this.call.end();
    this.call.cancel();
    if (this.ownsClient) this.grpcClient.close();
  }

  private node(): NodeInfo {
    return {
      id: this.nodeId,
      cluster: this.options.node.cluster ?? "",
      metadata: this.options.node.metadata ?? {},
    };
  }

  private typeState(typeUrl: string): TypeState {
    let state = this.types.get(typeUrl);
    if (!state) {
      state = {
        names: [],
        nonce: "",
        ackedVersion: "",
        held: new Map(),
        unanswered: undefined,
        count: 0,
        queue: [],
      };
      this.types.set(typeUrl, state);
    }
    return state;
  }

  private sendSotw(typeUrl: string, state: TypeState, nonce: string, version: string, error?: string): void {
    this.send({
      versionInfo: version,
      resourceNames: state.names,
      typeUrl,
      responseNonce: nonce,
      ...(error !== undefined ? { errorDetail: { code: grpc.status.INVALID_ARGUMENT, message: error } } : {}),
    });
  }

  private receive(bytes: Uint8Array): void {
    const response =
      this.protocol === "sotw"
        ? this.fromSotw(decodeDiscoveryResponse(bytes))
        : this.fromDelta(decodeDeltaDiscoveryResponse(bytes));
    const state = this.typeState(response.typeUrl);
    state.nonce = response.nonce;
    state.count++;
    state.queue.push(response);
    state.unanswered = response;
    if (this.options.keepHistory ?? true) this.responses.push(response);
    if (this.options.autoAck ?? true) this.answer(state, response, this.options.reject?.(response));
    this.notify();
  }

  private answer(state: TypeState, response: ReceivedResponse, error: string | undefined): void {
    state.unanswered = undefined;
    if (error === undefined) this.apply(state, response);
    if (this.protocol === "sotw") {
      this.sendSotw(response.typeUrl, state, response.nonce, state.ackedVersion, error);
    } else {
      this.send({
        typeUrl: response.typeUrl,
        subscribe: [],
        unsubscribe: [],
        initialResourceVersions: {},
        responseNonce: response.nonce,
        ...(error !== undefined
          ? { errorDetail: { code: grpc.status.INVALID_ARGUMENT, message: error } }
          : {}),
      });
    }
  }

  /** Applies an accepted response: SotW replaces the type's set, delta adds and removes. */
  private apply(state: TypeState, response: ReceivedResponse): void {
    state.ackedVersion = response.version;
    if (this.protocol === "sotw") state.held.clear();
    for (const name of response.removed) state.held.delete(name);
    for (const r of response.resources) state.held.set(r.name, r);
  }

  private decode(typeUrl: string, bytes: Uint8Array): Record<string, unknown> {
    return (this.options.decode ?? true) ? decodeMessage(typeUrl, bytes) : {};
  }

  private fromSotw(r: DecodedResponse): ReceivedResponse {
    return {
      typeUrl: r.typeUrl,
      version: r.versionInfo,
      nonce: r.nonce,
      resources: r.resources.map((a, i) => {
        const resource = this.decode(a.typeUrl, a.value);
        const name = (this.options.decode ?? true) ? resourceName(resource) : String(i);
        return { name, version: "", typeUrl: a.typeUrl, bytes: a.value, resource };
      }),
      removed: [],
      at: performance.now(),
    };
  }

  private fromDelta(r: DecodedDeltaResponse): ReceivedResponse {
    return {
      typeUrl: r.typeUrl,
      version: r.systemVersionInfo,
      nonce: r.nonce,
      resources: r.resources.map((x) => ({
        name: x.name,
        version: x.version,
        typeUrl: x.typeUrl,
        bytes: x.value,
        resource: this.decode(x.typeUrl, x.value),
      })),
      removed: r.removedResources,
      at: performance.now(),
    };
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** Connects (waiting for the channel to be ready) and returns the client; nothing is sent yet. */
export async function connectAds(options: AdsClientOptions, timeoutMs = 5000): Promise<AdsClient> {
  if (options.client) return new AdsClient(options, options.client, false);
  // One connection per client, as each proxy has its own.
  const client = new grpc.Client(options.address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  try {
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())),
    );
  } catch (error) {
    client.close();
    throw error;
  }
  return new AdsClient(options, client, true);
}
